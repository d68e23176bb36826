"""The tutorial's three programs (apply_async, map_async, starmap_async: each task sleeps
a random time), and a variant of many short random sleeps, as Python originals.

Each task also returns how long it slept (measured in the worker), printed as one JSON
line per task, so `benches/compare.py` can compute the ideal schedule of the same draws.
Usage: tutorial.py apply|map|starmap WORKERS
       tutorial.py sleeps WORKERS S1,S2,...   (fixed sleeps, in seconds)
"""
import json
import sys
import time
from multiprocessing import Pool
from random import random


def timed(value, result):
    t = time.perf_counter()
    time.sleep(value)
    return result, (time.perf_counter() - t) * 1e3


def task_apply():
    value = random()
    return timed(value, value)


def task_map(identifier):
    value = random()
    return timed(value, identifier + value)


def task_starmap(arg1, arg2, arg3):
    value = random()
    return timed(value, arg1 + arg2 + arg3 + value)


def task_sleep(s):
    return timed(s, s)


if __name__ == "__main__":
    which, workers = sys.argv[1], int(sys.argv[2])
    with Pool(workers) as pool:
        if which == "apply":
            results = [pool.apply_async(task_apply).get()]
        elif which == "map":
            results = pool.map_async(task_map, range(5)).get()
        elif which == "starmap":
            args = zip(range(5), range(0, 10, 2), range(0, 15, 3))
            results = pool.starmap_async(task_starmap, args).get()
        else:
            sleeps = [float(s) for s in sys.argv[3].split(",")]
            results = pool.map_async(task_sleep, sleeps).get()
    for value, ms in results:
        print(json.dumps({"value": value, "duration_ms": ms}))
