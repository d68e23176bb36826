#!/usr/bin/env python3
"""Wall time beyond the ideal schedule (issue 12), side by side, alternating binaries.

For each workload: run `jobpool run` (whole process, jsonl to stdout), take each task's
`duration_ms` from its record, list-schedule those durations over the workers in
submission order (the ideal), and print wall - ideal in ms (median [min-max] over RUNS).
The process start (~7 ms here) is part of the difference.

    cargo build --release
    python3 benches/schedule.py [RUNS] [JOBPOOL ...]   # default: 5, target/release/jobpool
    # before/after: python3 benches/schedule.py 5 /tmp/old/jobpool target/release/jobpool
"""
import json, os, random, re, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
BINS = sys.argv[2:] or [os.path.join(ROOT, "target/release/jobpool")]
WORK = tempfile.mkdtemp()


def ideal(durs, workers):
    free = [0.0] * workers
    for d in durs:
        i = min(range(workers), key=lambda k: free[k])
        free[i] += d
    return max(free)


def write_job(name, workers, script, args):
    path = os.path.join(WORK, name + ".toml")
    with open(path, "w") as f:
        f.write(f'workers = {workers}\n[task]\nkind = "script"\nscript = "{script}"\n'
                f'[args]\n{args}\n[[sink]]\nto = "stdout"\nformat = "jsonl"\n')
    return path


random.seed(12)
sleeps = [round(random.uniform(0, 0.020), 6) for _ in range(1000)]
cases = {
    "1.0 s + 6 x 0.1 s, 2 workers": (write_job("uneven", 2, "sleep(s); s",
                                     "s = [1.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]"), 2),
    "1000 x U(0, 20 ms), 2 workers": (write_job("r1000", 2, "sleep(s); s",
                                      "s = [" + ", ".join(map(str, sleeps)) + "]"), 2),
}
for name in ["seed-map", "seed-starmap", "seed-apply"]:
    src = open(os.path.join(ROOT, "jobs", name + ".toml")).read()
    src = re.sub(r"\[\[sink\]\][\s\S]*", '[[sink]]\nto = "stdout"\nformat = "jsonl"\n', src)
    src = src.replace("#:schema ../schemas/job.schema.json", "")
    m = re.search(r"^workers = (\d+)", src, re.M)
    workers = int(m.group(1)) if m else os.cpu_count()
    path = os.path.join(WORK, name + ".toml")
    open(path, "w").write(src)
    cases[f"{name}, {workers} workers"] = (path, workers)

res = {}
for r in range(RUNS):
    for name, (path, workers) in cases.items():
        order = BINS if r % 2 == 0 else BINS[::-1]
        for b in order:
            t = time.perf_counter()
            out = subprocess.run([b, "run", "-q", "--progress", "never", path],
                                 capture_output=True, text=True, check=True).stdout
            wall = time.perf_counter() - t
            recs = sorted((json.loads(l) for l in out.splitlines() if l.strip()),
                          key=lambda x: x["index"])
            durs = [x["duration_ms"] / 1000 for x in recs]
            res.setdefault((name, b), []).append((wall - ideal(durs, workers)) * 1000)

for k, b in enumerate(BINS):
    print(f"[{k}] {b}")
print(f"{'workload (beyond ideal)':32s} " + "  ".join(f"{f'[{k}]':>26s}" for k in range(len(BINS))))
for name in cases:
    cells = []
    for b in BINS:
        v = res[(name, b)]
        cells.append(f"{statistics.median(v):8.1f} [{min(v):.1f}-{max(v):.1f}] ms")
    print(f"{name:32s} " + "  ".join(f"{c:>26s}" for c in cells))
