"""Python peer of the `script` job (square-*.toml): Pool(2).map_async of x*x over
range(N), records as JSON lines. Usage: square.py OUT.jsonl [N]   (N: 100000)"""
import json
import sys
from multiprocessing import Pool


def square(x):
    return x * x


def map_to_jsonl(func, n, path):
    """Pool(2).map_async of `func` over range(n), then one JSON record a line in `path`."""
    with Pool(2) as pool:
        values = pool.map_async(func, range(n)).get()
    with open(path, "w") as out:
        for i, v in enumerate(values):
            out.write(json.dumps({"index": i, "args": {"x": i}, "status": "ok", "value": v}) + "\n")


if __name__ == "__main__":
    map_to_jsonl(square, int(sys.argv[2]) if len(sys.argv) > 2 else 100_000, sys.argv[1])
