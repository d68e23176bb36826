#!/usr/bin/env python3
"""jobpool side by side with its peers, in one run: one table of medians, spreads,
ratios and peak memory (the book's Performance page explains every row).

    python3 benches/compare.py                    # every workload, RUNS=5
    RUNS=3 ONLY=command,startup python3 benches/compare.py
    JOBPOOL=/tmp/old/jobpool python3 benches/compare.py   # another build of the binary

Groups (ONLY=, comma-separated): library, script, command, startup, tutorial, scale.

How it measures: every command of a workload runs once per round, the order rotating
from round to round (so a burst of load from elsewhere hits every tool alike), after
one warm-up round; RUNS rounds; before each command, `sync` (what the one before wrote
goes to disk first, not during it). The warm-up round runs each command under GNU time
(`/usr/bin/time -f %M`) for its peak memory: the largest resident set of the process or
of any descendant it waited for (not a sum over the workers). The timed rounds start
each command directly (no shell, no wrapper): its wall time is taken here around the
whole launch (Python's own fork and exec of it included, for every tool alike; the
"launch floor" row shows that cost), its CPU time is `wait4`'s (the process and every
descendant it waited for). The start-up rows are also timed by hyperfine (`-N`, no
shell) as a cross-check. Ratios are jobpool's median cost / the peer's median cost
(below 1: jobpool is faster); a spread is min-max over the rounds.

It installs what it lacks: GNU time, hyperfine and GNU parallel (apt-get), rust-parallel (`cargo install
--locked` into target/bench-tools, once, ~2 min; SKIP_RUST_PARALLEL=1 to skip), and it
builds jobpool in release mode. Python is the real interpreter (sys.executable), never a
version-manager shim, which adds ~0.1 s to every start.
"""
import json
import os
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "benches", "compare")
TIME = "/usr/bin/time"
RUNS = int(os.environ.get("RUNS", "5"))
GROUPS = ["library", "script", "command", "startup", "tutorial", "scale"]
ONLY = [g for g in os.environ.get("ONLY", ",".join(GROUPS)).split(",") if g]
for g in ONLY:
    if g not in GROUPS:
        sys.exit(f"ONLY: unknown group `{g}`; use any of {', '.join(GROUPS)}")
PY = sys.executable
TOOLS = os.path.join(ROOT, "target", "bench-tools")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- setup


def ensure_apt(command, package):
    """`command` (a name on PATH, or an absolute path) or install Debian's `package`."""
    have = lambda: os.path.exists(command) if command.startswith("/") else shutil.which(command)
    if have():
        return True
    log(f"installing {package} (apt-get)...")
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=False,
                   stdout=subprocess.DEVNULL)
    return bool(have())


def ensure_rust_parallel():
    exe = os.path.join(TOOLS, "bin", "rust-parallel")
    if os.path.exists(exe):
        return exe
    if os.environ.get("SKIP_RUST_PARALLEL"):
        return None
    log("installing rust-parallel into target/bench-tools (cargo install --locked, ~2 min)...")
    # From outside the repository: its .cargo/config.toml (a static link) is for jobpool.
    r = subprocess.run(["cargo", "install", "--locked", "--quiet", "rust-parallel",
                        "--root", TOOLS], cwd=tempfile.gettempdir())
    return exe if r.returncode == 0 and os.path.exists(exe) else None


def cargo_artifact(args, name, kind):
    """Build with cargo and return the path of the executable `name` of `kind`."""
    out = subprocess.run(["cargo", *args, "--message-format=json"], cwd=ROOT, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    found = None
    for line in out.splitlines():
        m = json.loads(line)
        if (m.get("reason") == "compiler-artifact" and m.get("executable")
                and m["target"]["name"] == name and kind in m["target"]["kind"]):
            found = m["executable"]
    if not found:
        sys.exit(f"cargo built no {kind} `{name}`")
    return found


# ---------------------------------------------------------------- measuring


class Sample:
    def __init__(self, wall, cpu, rss_kib, out):
        self.wall, self.cpu, self.rss_kib, self.out = wall, cpu, rss_kib, out


# How run_once measures peak memory: under GNU time (its %M), or not at all (wall and
# CPU only, with nothing between this script and the command). `rounds` takes the
# memory in its warm-up round and the times, unwrapped, in the timed rounds.
WITH_GNU_TIME = True


def run_once(argv, stdin=None, cwd=None, pipe_to=None, env=None):
    """Run argv (no shell): wall seconds (taken here, around the whole launch), CPU
    seconds (`wait4`'s rusage: the process and every descendant it waited for), peak RSS
    in KiB (GNU time's %M: the largest resident set of the process or of any descendant
    it waited for; None when WITH_GNU_TIME is off), and stdout (unless it is piped to
    `pipe_to`). (The rusage's own peak is useless here: a child forked from this Python
    process starts with Python's resident set on its books.)"""
    stdin_f = open(stdin) if stdin else subprocess.DEVNULL
    mem = tempfile.NamedTemporaryFile("r", prefix="jobpool-compare-time-") if WITH_GNU_TIME else None
    full = [TIME, "-f", "%M", "-o", mem.name, *argv] if mem else argv
    try:
        t = time.perf_counter()
        p = subprocess.Popen(full, stdin=stdin_f, stdout=subprocess.PIPE, cwd=cwd, env=env)
        if pipe_to:
            q = subprocess.Popen(pipe_to, stdin=p.stdout, stdout=subprocess.PIPE)
            p.stdout.close()
            out = q.communicate()[0]
        else:
            out = p.stdout.read()
            p.stdout.close()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        rss = int(mem.read().strip().splitlines()[-1]) if mem and p.returncode == 0 else None
    finally:
        if stdin:
            stdin_f.close()
        if mem:
            mem.close()
    if p.returncode != 0:
        sys.exit(f"failed (exit {p.returncode}): {' '.join(argv)}")
    return Sample(wall, ru.ru_utime + ru.ru_stime, rss, out.decode())


def rounds(cmds):
    """cmds: {label: callable() -> Sample}. One warm-up round (under GNU time, for the
    peak memory), then RUNS rounds with a rotating order, each command started directly
    (so GNU time's own start, about a millisecond, is in no time). Returns
    {label: [Sample]}, each sample with the warm-up's peak memory."""
    global WITH_GNU_TIME
    labels = list(cmds)
    res = {k: [] for k in labels}
    peak = {}
    try:
        for r in range(RUNS + 1):
            WITH_GNU_TIME = r == 0
            k = r % len(labels)
            for label in labels[k:] + labels[:k]:
                # The previous command's files go to disk now, not during this one (as
                # hyperfine's --prepare 'sync'): a 1 M job writes some 200 MB.
                os.sync()
                s = cmds[label]()
                if r == 0:
                    peak[label] = s.rss_kib
                else:
                    s.rss_kib = peak[label]
                    res[label].append(s)
    finally:
        WITH_GNU_TIME = True
    return res


# ---------------------------------------------------------------- the table

ROWS = []  # (workload, tool, median, spread, ratio, peak, cpu)
TARGETS = []  # (what, measured, op, bound, unit)


def target(what, measured, op, bound, unit):
    TARGETS.append((what, measured, op, bound, unit))


def fmt_time(s):
    if s >= 1:
        return f"{s:.2f} s"
    return f"{s * 1e3:.1f} ms"


def add(workload, tool, values, fmt, peak_kib=None, ratio=None, cpu=None):
    med = statistics.median(values)
    spread = f"{fmt(min(values))}–{fmt(max(values))}"
    peak = f"{peak_kib / 1024:.1f} MiB" if peak_kib else "—"
    ROWS.append((workload, tool, fmt(med), spread,
                 "" if ratio is None else f"{ratio:.2f}×", peak,
                 "—" if cpu is None else fmt_time(cpu)))
    return med


def median_wall(res, label):
    return statistics.median(s.wall for s in res[label])


def add_timed(workload, res, ours, peers, note=None):
    """Rows of a wall-time workload: jobpool first, then each peer with its ratio."""
    med_ours = statistics.median(s.wall for s in res[ours])
    for label in [ours] + peers:
        v = [s.wall for s in res[label]]
        ratio = None if label == ours else med_ours / statistics.median(v)
        add(workload, label, v, fmt_time, max(s.rss_kib for s in res[label]), ratio,
            statistics.median(s.cpu for s in res[label]))
    if note:
        ROWS.append((workload, note, "", "", "", "", ""))


def print_table():
    head = ("workload", "tool", "median", "spread (min–max)", "jobpool ÷ peer", "peak RSS",
            "CPU")
    widths = [max(len(r[i]) for r in ROWS + [head]) for i in range(7)]
    print()
    print(f"jobpool compare, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, {RUNS} rounds")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    last = None
    for r in ROWS:
        cells = list(r)
        if cells[0] == last:
            cells[0] = ""
        else:
            last = cells[0]
        print("| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |")
    print("\njobpool ÷ peer: jobpool's median time ÷ the peer's (for rates, the peer's rate ÷ "
          "jobpool's);\nbelow 1 means jobpool is faster. Spread: min–max over the rounds. "
          "Peak RSS: largest single process.\nCPU: median user + system time of the "
          "process and all it waited for (steadier than wall time on a busy machine).")
    if TARGETS:
        print("\nTargets (issue 12), from the medians above:")
        for what, measured, op, bound, unit in TARGETS:
            ok = measured <= bound if op == "≤" else measured >= bound
            print(f"  {'met ' if ok else 'MISS'}  {what}: {measured:.2f} {unit} (target {op} {bound} {unit})")


# ---------------------------------------------------------------- workloads


def ideal(durations, workers):
    """List scheduling of the durations over the workers, in submission order."""
    free = [0.0] * workers
    for d in durations:
        i = min(range(workers), key=lambda k: free[k])
        free[i] += d
    return max(free)


def library(pool_bin):
    def parse(sample):
        return {ln.split()[0]: float(ln.split()[1]) for ln in sample.out.splitlines() if ln.strip()}

    env = dict(os.environ, POOL_BENCH_RUNS="3")
    res = rounds({
        "jobpool": lambda: run_once([pool_bin], env=env),
        "python Pool(2)": lambda: run_once([PY, os.path.join(ROOT, "benches/pool/bench.py")],
                                           env=env),
    })
    ours = [parse(s) for s in res["jobpool"]]
    theirs = [parse(s) for s in res["python Pool(2)"]]
    rate = lambda unit: (lambda v: f"{v / 1e6:.2f} M{unit}/s" if v >= 1e6 else f"{v / 1e3:.0f} k{unit}/s")
    peak_a = max(s.rss_kib for s in res["jobpool"])
    peak_b = max(s.rss_kib for s in res["python Pool(2)"])
    for key, workload, bound in [("map_async", "library: map_async, 100,000 items", 5),
                                 ("apply_async", "library: 20,000 × apply_async", 30)]:
        a = [d[key] for d in ours]
        b = [d[key] for d in theirs]
        add(workload, "jobpool", a, rate(""), peak_a)
        add(workload, "python Pool(2)", b, rate(""), peak_b,
            ratio=statistics.median(b) / statistics.median(a))
        target(f"{key}: throughput × Python's", statistics.median(a) / statistics.median(b),
               "≥", bound, "×")
    a = [d["map_async_text"] for d in ours]
    b = [d["map_async_text"] for d in theirs]
    w = "library: map_async, 100,000 short texts"
    add(w, "jobpool", a, rate(""), peak_a)
    add(w, "python Pool(2)", b, rate(""), peak_b, ratio=statistics.median(b) / statistics.median(a))
    a = [d["start_shutdown"] / 1e3 for d in ours]
    b = [d["start_shutdown"] / 1e3 for d in theirs]
    add("library: pool start + shutdown, in process", "jobpool", a, fmt_time)
    add("library: pool start + shutdown, in process", "python Pool(2)", b, fmt_time,
        ratio=statistics.median(a) / statistics.median(b))


def script(jp, work):
    out = os.path.join(work, "square-py.jsonl")
    res = rounds({
        "jobpool": lambda: run_once([jp, "run", "-q", "--progress", "never",
                                     os.path.join(work, "jobs/square-100k.toml")]),
        "python Pool(2).map_async": lambda: run_once([PY, os.path.join(HERE, "py/square.py"), out]),
    })
    lines = sum(1 for _ in open(os.path.join(work, "jobs/out/square-100k.jsonl")))
    if lines != 100_000:
        sys.exit(f"the jsonl sink has {lines} lines, not 100000")
    add_timed("script job, 100,000 × x*x → jsonl", res, "jobpool", ["python Pool(2).map_async"])
    target("100 k script job: time ÷ Python's", median_wall(res, "jobpool")
           / median_wall(res, "python Pool(2).map_async"), "≤", 0.33, "×")
    # Work inside the script: Rhai's interpreter against Python's (not a target).
    out = os.path.join(work, "loop-py.jsonl")
    res = rounds({
        "jobpool": lambda: run_once([jp, "run", "-q", "--progress", "never",
                                     os.path.join(work, "jobs/loop-10k.toml")]),
        "python Pool(2).map_async": lambda: run_once([PY, os.path.join(HERE, "py/loop.py"), out]),
    })
    ours = [json.loads(ln)["value"] for ln in open(os.path.join(work, "jobs/out/loop-10k.jsonl"))]
    theirs = [json.loads(ln)["value"] for ln in open(out)]
    if ours != theirs:
        sys.exit("loop-10k: jobpool's values differ from Python's")
    add_timed("script job, 10,000 × a 1,000-step loop → jsonl", res, "jobpool",
              ["python Pool(2).map_async"])


def line_runners(jobs, program, lines, rust_parallel):
    """xargs, GNU parallel (when installed) and rust-parallel (when built), each running
    `program` once per line of the file `lines` (the line its argument), `jobs` at a time."""
    cmds = {f"xargs -P{jobs}": lambda: run_once(["xargs", f"-P{jobs}", "-n1", program],
                                                stdin=lines)}
    if shutil.which("parallel"):
        cmds[f"GNU parallel -j{jobs}"] = lambda: run_once(["parallel", f"-j{jobs}", program],
                                                          stdin=lines)
    if rust_parallel:
        cmds[f"rust-parallel -j{jobs}"] = lambda: run_once([rust_parallel, f"-j{jobs}", program],
                                                           stdin=lines)
    return cmds


def command_rows(workload, jp, job, ok, cmds):
    """Run jobpool's `job` against `cmds`; it must report `ok` ok records."""
    res = rounds({"jobpool": lambda: run_once([jp, "run", "-q", "--progress", "never", job]),
                  **cmds})
    if res["jobpool"][0].out.count("ok") != ok:
        sys.exit(f"{job}: jobpool did not report {ok} ok records")
    add_timed(workload, res, "jobpool", list(cmds))
    return res


def command(jp, work, floor, rust_parallel):
    seq = os.path.join(work, "seq-2000")
    with open(seq, "w") as f:
        f.writelines(f"{i}\n" for i in range(1, 2001))
    cmds = {"floor (Rust spawn loop)": lambda: run_once([floor, "2000"]),
            **line_runners(2, "/bin/true", seq, rust_parallel)}
    res = command_rows("command kind, true × 2000, 2 workers", jp,
                       os.path.join(work, "jobs/true-2000.toml"), 2000, cmds)
    target("true × 2000: time ÷ the floor", median_wall(res, "jobpool")
           / median_wall(res, "floor (Rust spawn loop)"), "≤", 1.1, "×")
    if "rust-parallel -j2" in res:
        target("true × 2000: time ÷ rust-parallel's", median_wall(res, "jobpool")
               / median_wall(res, "rust-parallel -j2"), "≤", 1.0, "×")
    # Few long commands on many workers: what starting 8 workers costs (not a target).
    sleeps = os.path.join(work, "sleep-8")
    with open(sleeps, "w") as f:
        f.writelines("0.05\n" for _ in range(8))
    command_rows("command kind, sleep 0.05 × 8, 8 workers", jp,
                 os.path.join(work, "jobs/sleep-8.toml"), 8,
                 line_runners(8, "sleep", sleeps, rust_parallel))


def startup(jp, work, hyperfine):
    job = os.path.join(work, "jobs/one.toml")
    res = rounds({
        "jobpool": lambda: run_once([jp, "run", "-q", "--progress", "never", job]),
        "python Pool(2) + apply_async": lambda: run_once([PY, os.path.join(HERE, "py/one.py")]),
        "launch floor (/bin/true)": lambda: run_once(["/bin/true"]),
    })
    add_timed("one-submission job, whole process", res, "jobpool",
              ["python Pool(2) + apply_async", "launch floor (/bin/true)"])
    target("one-submission job: whole process", median_wall(res, "jobpool") * 1e3, "≤", 5,
           "ms")
    if hyperfine:
        # The same, timed by hyperfine (no shell), as a cross-check of the figures above.
        out = os.path.join(work, "hyperfine.json")
        subprocess.run(["hyperfine", "-N", "--style", "none", "--warmup", "5", "--runs",
                        str(max(20, 10 * RUNS)), "--export-json", out,
                        shlex.join([jp, "run", "-q", "--progress", "never", job]),
                        shlex.join([PY, os.path.join(HERE, "py/one.py")])],
                       check=True, stdout=subprocess.DEVNULL)
        runs = [r["times"] for r in json.load(open(out))["results"]]
        w = "one-submission job, whole process (hyperfine -N)"
        a = add(w, "jobpool", runs[0], fmt_time)
        add(w, "python Pool(2) + apply_async", runs[1], fmt_time,
            ratio=a / statistics.median(runs[1]))


def tutorial(jp, work):
    random.seed(12)
    sleeps = [round(random.uniform(0, 0.020), 6) for _ in range(1000)]
    cases = []
    for name, which, workers in [("seed-apply", "apply", os.cpu_count()),
                                 ("seed-map", "map", None), ("seed-starmap", "starmap", None)]:
        src = open(os.path.join(ROOT, "jobs", name + ".toml")).read()
        src = re.sub(r"\[\[sink\]\][\s\S]*", '[[sink]]\nto = "stdout"\nformat = "jsonl"\n', src)
        src = src.replace("#:schema ../schemas/job.schema.json", "")
        m = re.search(r"^workers = (\d+)", src, re.M)
        workers = int(m.group(1)) if m else workers
        path = os.path.join(work, name + ".toml")
        open(path, "w").write(src)
        cases.append((f"tutorial {which}_async, {workers} workers", path,
                      [PY, os.path.join(HERE, "py/tutorial.py"), which, str(workers)], workers))
    path = os.path.join(work, "sleeps-1000.toml")
    with open(path, "w") as f:
        f.write('workers = 2\n[task]\nkind = "script"\nscript = "sleep(s); s"\n[args]\n'
                f"s = [{', '.join(map(str, sleeps))}]\n"
                '[[sink]]\nto = "stdout"\nformat = "jsonl"\n')
    cases.append(("1,000 × sleep U(0, 20 ms), 2 workers", path,
                  [PY, os.path.join(HERE, "py/tutorial.py"), "sleeps", "2",
                   ",".join(map(str, sleeps))], 2))
    for workload, job, py_argv, workers in cases:
        res = rounds({
            "jobpool": lambda: run_once([jp, "run", "-q", "--progress", "never", job]),
            "python original": lambda: run_once(py_argv),
        })
        beyond = {}
        for label, samples in res.items():
            v = []
            for s in samples:
                durs = [json.loads(ln)["duration_ms"] / 1e3 for ln in s.out.splitlines() if ln.strip()]
                v.append(s.wall - ideal(durs, workers))
            beyond[label] = v
        ideal_s = statistics.median(s.wall for s in res["jobpool"]) - statistics.median(beyond["jobpool"])
        w = f"{workload}: wall beyond the ideal (~{fmt_time(ideal_s)})"
        a = add(w, "jobpool", beyond["jobpool"], fmt_time,
                max(s.rss_kib for s in res["jobpool"]))
        b = statistics.median(beyond["python original"])
        add(w, "python original", beyond["python original"], fmt_time,
            max(s.rss_kib for s in res["python original"]), ratio=a / b if b > 0 else None)
        if workload.startswith("tutorial"):
            target(f"{workload}: beyond the ideal", a * 1e3, "≤", 5, "ms")
        else:
            target(f"{workload}: beyond the ideal", a / ideal_s * 100, "≤", 1, "%")


def scale(jp, work):
    res = rounds({
        "jobpool": lambda: run_once([jp, "run", "-q", "--progress", "never",
                                     os.path.join(work, "jobs/square-1m.toml")]),
        "python Pool(2).map_async": lambda: run_once(
            [PY, os.path.join(HERE, "py/square.py"), os.path.join(work, "square-1m-py.jsonl"),
             "1000000"]),
    })
    add_timed("script job, 1,000,000 × x*x → jsonl", res, "jobpool", ["python Pool(2).map_async"])
    rate = [1e6 / s.wall for s in res["jobpool"]]
    med = add("script job, 1,000,000 × x*x → jsonl", "jobpool throughput", rate,
              lambda v: f"{v / 1e6:.2f} M/s")
    target("1 M script job: submissions/s", med / 1e6, "≥", 1.0, "M/s")
    target("1 M script job: peak memory", max(s.rss_kib for s in res["jobpool"]) / 1024, "≤",
           100, "MiB")

    plan = os.path.join(HERE, "jobs/ten-million.toml")
    res = rounds({"jobpool plan | wc -l": lambda: run_once([jp, "plan", plan], pipe_to=["wc", "-l"])})
    s = res["jobpool plan | wc -l"]
    if int(s[0].out.split()[0]) != 10_000_000:
        sys.exit(f"jobpool plan printed {s[0].out.strip()} lines, not 10000000")
    add("plan, 10,000,000 submissions", "jobpool plan → wc -l", [x.wall for x in s], fmt_time,
        max(x.rss_kib for x in s))
    rate = add("plan, 10,000,000 submissions", "submissions/s printed",
               [1e7 / x.wall for x in s], lambda v: f"{v / 1e6:.2f} M/s")
    target("10 M plan: peak memory", max(x.rss_kib for x in s) / 1024, "≤", 50, "MiB")
    return rate


def main():
    if RUNS < 1:
        sys.exit("RUNS must be at least 1")
    log(f"python: {PY}")
    if not ensure_apt(TIME, "time"):
        sys.exit("cannot install GNU time (Debian package `time`), which measures peak memory")
    hyperfine = ensure_apt("hyperfine", "hyperfine") if "startup" in ONLY else False
    rust_parallel = None
    if "command" in ONLY:
        ensure_apt("parallel", "parallel")
        rust_parallel = ensure_rust_parallel()
        if not rust_parallel:
            log("rust-parallel is not available; its row is left out")
    log("building (release)...")
    pool_bin = None
    if "library" in ONLY:
        pool_bin = cargo_artifact(["bench", "--quiet", "--bench", "pool", "--no-run"], "pool", "bench")
    # After the bench: `cargo bench` links the `jobpool` program again, with the
    # features its dev-dependencies turn on in shared crates (a bigger, slower-starting
    # program than `cargo build --release` makes); the program measured is the latter,
    # copied out of `target/` so that no later cargo command replaces it mid-run.
    jp = os.environ.get("JOBPOOL") or cargo_artifact(
        ["build", "--release", "--quiet", "--bin", "jobpool"], "jobpool", "bin")
    work = tempfile.mkdtemp(prefix="jobpool-compare-")
    try:
        if not os.environ.get("JOBPOOL"):
            jp = shutil.copy2(jp, os.path.join(work, "jobpool"))
        shutil.copytree(os.path.join(HERE, "jobs"), os.path.join(work, "jobs"))
        src = open(os.path.join(work, "jobs/square-100k.toml")).read()
        open(os.path.join(work, "jobs/square-1m.toml"), "w").write(
            src.replace("100000", "1000000").replace("square-100k", "square-1m"))
        floor = None
        if "command" in ONLY:
            floor = os.path.join(work, "spawn_floor")
            subprocess.run(["rustc", "-O", "-o", floor, os.path.join(HERE, "spawn_floor.rs")],
                           check=True)
        for group in GROUPS:
            if group not in ONLY:
                continue
            log(f"== {group}")
            {"library": lambda: library(pool_bin),
             "script": lambda: script(jp, work),
             "command": lambda: command(jp, work, floor, rust_parallel),
             "startup": lambda: startup(jp, work, hyperfine),
             "tutorial": lambda: tutorial(jp, work),
             "scale": lambda: scale(jp, work)}[group]()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table()


if __name__ == "__main__":
    main()
