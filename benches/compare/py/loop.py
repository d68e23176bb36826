"""Python peer of loop-10k.toml: Pool(2).map_async of a 1,000-iteration loop over
range(N), records as JSON lines. Usage: loop.py OUT.jsonl [N]   (N: 10000)"""
import json
import sys
from multiprocessing import Pool


def loop(x):
    s = 0
    for i in range(1000):
        s += i * x
    return s


if __name__ == "__main__":
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    with Pool(2) as pool:
        values = pool.map_async(loop, range(n)).get()
    with open(sys.argv[1], "w") as out:
        for i, v in enumerate(values):
            out.write(json.dumps({"index": i, "args": {"x": i}, "status": "ok", "value": v}) + "\n")
