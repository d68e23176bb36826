"""Python peer of loop-10k.toml: Pool(2).map_async of a 1,000-iteration loop over
range(N), records as JSON lines. Usage: loop.py OUT.jsonl [N]   (N: 10000)"""
import sys

from square import map_to_jsonl


def loop(x):
    s = 0
    for i in range(1000):
        s += i * x
    return s


if __name__ == "__main__":
    map_to_jsonl(loop, int(sys.argv[2]) if len(sys.argv) > 2 else 10_000, sys.argv[1])
