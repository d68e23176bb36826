//! The `slurm` backend against a real Slurm cluster (`.ci/slurm/start-local-slurm.sh`
//! starts a single-node one). `harness = false`: without `JOBPOOL_SLURM=1` this binary
//! prints that it did not run and reports no test as passed.
//!
//! ```sh
//! sudo bash .ci/slurm/start-local-slurm.sh
//! JOBPOOL_SLURM=1 cargo test --test slurm            # all, concurrently (~70-90 s: a time limit)
//! JOBPOOL_SLURM=1 cargo test --test slurm -- cancel  # the tests whose name contains "cancel"
//! sudo bash .ci/slurm/stop-local-slurm.sh
//! ```
//!
//! The tests run at the same time (each in its own folder, with its own Slurm job
//! name): the cluster, not this machine, sets the pace.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_jobpool");
/// Far above what any test needs: a hang fails the test, not the suite.
const HANG: Duration = Duration::from_secs(240);

/// A job file in its own folder. Under `target/`, not `/tmp`: on a real cluster the
/// nodes must see it (on the single-node cluster of CI either works).
struct Job {
    dir: tempfile::TempDir,
}

impl Job {
    fn new(toml: &str) -> Job {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let dir = tempfile::Builder::new().prefix("jp-slurm-").tempdir_in(base).unwrap();
        fs::write(dir.path().join("job.toml"), toml).unwrap();
        Job { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("run").args(extra).arg(self.path("job.toml")).current_dir(self.dir.path());
        c.env("NO_COLOR", "1").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    fn spawn(&self, extra: &[&str]) -> Child {
        self.command(extra).spawn().unwrap()
    }

    fn run(&self, extra: &[&str]) -> Output {
        wait_output(self.spawn(extra))
    }

    fn jsonl(&self, rel: &str) -> Vec<Value> {
        let text =
            fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"));
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// The one run's `slurm/submission.json`.
    fn submission(&self) -> Value {
        let runs = self.path(".jobpool/runs/job");
        let run = fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
        serde_json::from_str(&fs::read_to_string(run.join("slurm/submission.json")).unwrap())
            .unwrap()
    }
}

fn wait_output(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(HANG) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("jobpool (pid {pid}) still running after {HANG:?}");
        }
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What must agree between backends: index, args, status, value.
fn essence(records: &[Value]) -> Vec<(u64, Value, String, Value)> {
    records
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["args"].clone(),
                r["status"].as_str().unwrap().into(),
                r["value"].clone(),
            )
        })
        .collect()
}

/// `squeue` lines (`%i %T`) of the jobs named `name`, finished ones included.
fn squeue(name: &str) -> Vec<String> {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-t", "all", "-n", name, "-o", "%i %T"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

const SAME: &str = r#"
name = "job"
backend = "slurm"
workers = 1
[task]
kind = "command"
program = ["sh", "-c", "test {i} -ne 5 || exit 3; echo {{\"i\": {i}, \"sq\": $(( {i} * {i} )), \"w\": \"{w}\"}}"]
output = "json"
[args]
i = { range = [0, 14] }
w = ["a", "b"]
[slurm]
per-element = 4
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#;

/// The same job under `processes` and `slurm`: the same records, the same exit code.
fn same_records_as_processes() {
    let local = Job::new(SAME);
    let out = local.run(&["--set", "backend=processes"]);
    assert_eq!(code(&out), 1, "i = 5 fails: {}", stderr(&out));
    let expected = essence(&local.jsonl("out.jsonl"));
    assert_eq!(expected.len(), 28);

    let slurm = Job::new(SAME);
    let out = slurm.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(essence(&slurm.jsonl("out.jsonl")), expected);
    let sub = slurm.submission();
    assert_eq!(sub["elements"], 7, "{sub}");
    // The run's own journal has every record once; each element journaled its shard.
    let run = Path::new(sub["shard_journals"].as_str().unwrap()).to_path_buf();
    let journal = fs::read_to_string(run.join("records.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 28);
    let shards = fs::read_dir(&run)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".jsonl"))
        .count();
    assert_eq!(shards, 8, "records.jsonl and 7 shard journals");
    // `collect` over the shard journals gives the same again.
    let out = Command::new(BIN)
        .args(["collect", "--run-id", run.file_name().unwrap().to_str().unwrap()])
        .arg(slurm.path("job.toml"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(essence(&slurm.jsonl("out.jsonl")), expected);
}

/// `array-limit = 2`: never more than two elements at once; `--array=0-5%2`.
fn array_limit_is_respected() {
    let job = Job::new(
        r#"
name = "job"
backend = "slurm"
[task]
kind = "command"
program = ["sh", "-c", "date +%s.%N; sleep 1; date +%s.%N"]
output = "lines"
[args]
i = { range = [0, 6] }
[slurm]
per-element = 1
array-limit = 2
sbatch-args = ["--job-name=jp-test-limit"]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sbatch = job.submission()["sbatch"].to_string();
    assert!(sbatch.contains("--array=0-5%2"), "{sbatch}");
    let spans: Vec<(f64, f64)> = job
        .jsonl("out.jsonl")
        .iter()
        .map(|r| {
            let v = r["value"].as_array().unwrap();
            let t = |i: usize| v[i].as_str().unwrap().parse::<f64>().unwrap();
            (t(0), t(1))
        })
        .collect();
    assert_eq!(spans.len(), 6);
    for (start, _) in &spans {
        let at_once = spans.iter().filter(|(s, e)| s <= start && start < e).count();
        assert!(at_once <= 2, "{at_once} elements ran at once: {spans:?}");
    }
}

/// Ctrl-C: `scancel` of the array, `cancelled` records, exit 130, nothing left in the queue.
fn interrupt_cancels_the_array() {
    let job = Job::new(
        r#"
name = "job"
backend = "slurm"
[task]
kind = "command"
program = ["sleep", "{s}"]
[args]
s = [60, 60, 60, 60]
[slurm]
per-element = 1
sbatch-args = ["--job-name=jp-test-cancel"]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let child = job.spawn(&["--progress", "always"]);
    // Wait until an element runs.
    let t0 = Instant::now();
    while !squeue("jp-test-cancel").iter().any(|l| l.ends_with(" RUNNING")) {
        assert!(t0.elapsed() < Duration::from_secs(60), "no element started");
        std::thread::sleep(Duration::from_millis(200));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = wait_output(child);
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    let records = job.jsonl("out.jsonl");
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|r| r["status"] == "cancelled"), "{records:?}");
    let t0 = Instant::now();
    loop {
        let left: Vec<String> = squeue("jp-test-cancel")
            .into_iter()
            .filter(|l| !(l.ends_with(" CANCELLED") || l.ends_with(" COMPLETED")))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "still in the queue: {left:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// An element past its time limit: its unfinished submissions are `timeout`, with a
/// message naming the limit; the other elements' records are there.
fn time_limit_gives_timeout_records() {
    let job = Job::new(
        r#"
name = "job"
backend = "slurm"
[task]
kind = "command"
program = ["sh", "-c", "sleep {s}; echo done"]
[args]
s = [0, 600]
[slurm]
per-element = 1
time-limit = "1m"
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let records = job.jsonl("out.jsonl");
    assert_eq!(records[0]["status"], "ok", "{records:?}");
    assert_eq!(records[1]["status"], "timeout", "{records:?}");
    let error = records[1]["error"].as_str().unwrap();
    assert!(error.contains("time limit (time-limit = 1m)"), "{error}");
}

/// A submission Slurm refuses: its own message, exit 1.
fn a_refused_submission_shows_slurms_message() {
    let job = Job::new(
        r#"
name = "job"
backend = "slurm"
[task]
kind = "command"
program = ["true"]
[slurm]
partition = "no-such-partition"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("sbatch refused the submission"), "{err}");
    assert!(err.to_lowercase().contains("partition"), "Slurm's own words: {err}");
}

fn main() {
    if std::env::var_os("JOBPOOL_SLURM").is_none_or(|v| v != "1") {
        println!(
            "slurm tests not run: JOBPOOL_SLURM is not set (start a cluster with \
             .ci/slurm/start-local-slurm.sh, then JOBPOOL_SLURM=1 cargo test --test slurm)"
        );
        return;
    }
    let tests: &[(&str, fn())] = &[
        ("time_limit_gives_timeout_records", time_limit_gives_timeout_records),
        ("same_records_as_processes", same_records_as_processes),
        ("array_limit_is_respected", array_limit_is_respected),
        ("interrupt_cancels_the_array", interrupt_cancels_the_array),
        ("a_refused_submission_shows_slurms_message", a_refused_submission_shows_slurms_message),
    ];
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let chosen: Vec<_> = tests
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    let results: Vec<(&str, bool, Duration)> = std::thread::scope(|scope| {
        let handles: Vec<_> = chosen
            .iter()
            .map(|(name, f)| {
                scope.spawn(move || {
                    let t0 = Instant::now();
                    let ok = catch_unwind(AssertUnwindSafe(f)).is_ok();
                    println!(
                        "test {name} ... {} ({:.1?})",
                        if ok { "ok" } else { "FAILED" },
                        t0.elapsed()
                    );
                    (*name, ok, t0.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failed: Vec<&str> = results.iter().filter(|r| !r.1).map(|r| r.0).collect();
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        results.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(101);
    }
}
