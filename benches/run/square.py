"""Python peer of jobs/square-100k.toml: Pool(2).map_async of x*x, records as JSON lines."""
import json
import sys
from multiprocessing import Pool


def square(x):
    return x * x


if __name__ == "__main__":
    with Pool(2) as pool:
        values = pool.map_async(square, range(100_000)).get()
    with open(sys.argv[1], "w") as out:
        for i, v in enumerate(values):
            out.write(json.dumps({"index": i, "args": {"x": i}, "status": "ok", "value": v}) + "\n")
