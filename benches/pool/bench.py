"""The same measurements with Python's multiprocessing.Pool(2), as `name value unit` lines."""
import multiprocessing
import os
import time


def noop(x):
    return x + 1


def length(s):
    return len(s)


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def main():
    runs = int(os.environ.get("POOL_BENCH_RUNS", "7"))
    with multiprocessing.Pool(2) as pool:
        pool.map(noop, range(10_000))
        n = 100_000
        rates = []
        for _ in range(runs):
            t0 = time.perf_counter()
            v = pool.map_async(noop, range(n)).get()
            rates.append(n / (time.perf_counter() - t0))
            assert v[-1] == n
        print(f"map_async {median(rates):.0f} items/s")
        rates = []
        for _ in range(runs):
            texts = [f"item number {i}" for i in range(n)]
            t0 = time.perf_counter()
            v = pool.map_async(length, texts).get()
            rates.append(n / (time.perf_counter() - t0))
            assert v[-1] == 17
        print(f"map_async_text {median(rates):.0f} items/s")
        n = 20_000
        rates = []
        for _ in range(runs):
            t0 = time.perf_counter()
            rs = [pool.apply_async(noop, (i,)) for i in range(n)]
            s = sum(r.get() for r in rs)
            rates.append(n / (time.perf_counter() - t0))
            assert s == sum(range(1, n + 1))
        print(f"apply_async {median(rates):.0f} tasks/s")
    times = []
    for _ in range(runs * 3):
        t0 = time.perf_counter()
        p = multiprocessing.Pool(2)
        p.close()
        p.join()
        times.append((time.perf_counter() - t0) * 1e3)
        time.sleep(0.005)
    print(f"start_shutdown {median(times):.2f} ms")


if __name__ == "__main__":
    main()
