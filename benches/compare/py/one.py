"""Python peer of jobs/one.toml: Pool(2), one apply_async, shutdown."""
from multiprocessing import Pool


def task():
    return 40 + 2


if __name__ == "__main__":
    with Pool(2) as pool:
        print(pool.apply_async(task).get())
