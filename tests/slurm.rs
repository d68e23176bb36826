//! The `slurm` backend against a real Slurm cluster (`.ci/slurm/start-local-slurm.sh`
//! starts a single-node one). `harness = false`: without `JOBPOOL_SLURM=1` this binary
//! prints that it did not run and reports no test as passed.
//!
//! ```sh
//! sudo LOCAL_SLURM_ACCOUNTING=1 LOCAL_SLURM_MIN_JOB_AGE=10 bash .ci/slurm/start-local-slurm.sh
//! JOBPOOL_SLURM=1 cargo test --test slurm            # all, concurrently (~100 s: a time limit, then MinJobAge)
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

    /// The `slurm/submission.json` of the only run.
    fn submission(&self) -> Value {
        let runs = self.path(".jobpool/runs/job");
        let all: Vec<PathBuf> = fs::read_dir(&runs).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(all.len(), 1, "{all:?}");
        let id = all[0].file_name().unwrap().to_str().unwrap().to_string();
        self.submission_of(&id)
    }

    /// The `slurm/submission.json` of run `run_id`.
    fn submission_of(&self, run_id: &str) -> Value {
        let path = self.path(&format!(".jobpool/runs/job/{run_id}/slurm/submission.json"));
        serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
    }

    /// Run `run_id`'s `run.json`.
    fn run_json(&self, run_id: &str) -> Value {
        let path = self.path(&format!(".jobpool/runs/job/{run_id}/run.json"));
        serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The run id in a run's summary line (`...; run ID`).
fn run_id_of(out: &Output) -> String {
    let err = stderr(out);
    let at = err.rfind("; run ").unwrap_or_else(|| panic!("no run id in: {err}"));
    err[at + 6..].split_whitespace().next().unwrap().to_string()
}

/// Wait (bounded) until `squeue` no longer knows job `id`: it ended `MinJobAge` ago.
fn wait_until_forgotten(id: &str, within: Duration) {
    let t0 = Instant::now();
    loop {
        let out =
            Command::new("squeue").args(["-h", "-r", "-t", "all", "-j", id]).output().unwrap();
        if String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        assert!(t0.elapsed() < within, "squeue still knows job {id} after {within:?}");
        std::thread::sleep(Duration::from_secs(1));
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

/// What stderr says: its words one space apart, without miette's `│` gutter, however the
/// 100-column plain rendering wrapped them (a job's path under `target/` is long).
fn words(out: &Output) -> String {
    stderr(out).split_whitespace().filter(|w| *w != "│").collect::<Vec<_>>().join(" ")
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
    assert_eq!(sub["layout"]["chunks"], 28, "{sub}");
    // The run's own journal has every record once; each element journaled its shard.
    let run = Path::new(sub["shard_journals"].as_str().unwrap()).to_path_buf();
    let journal = fs::read_to_string(run.join("records.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 28);
    let shards = fs::read_dir(&run)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".jsonl"))
        .count();
    assert_eq!(shards, 29, "records.jsonl and 28 chunk journals");
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
program = ["sleep", "{s}"]
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
    let err = words(&out);
    assert!(err.contains("sbatch refused the submission"), "{err}");
    assert!(err.to_lowercase().contains("partition"), "Slurm's own words: {err}");
}

/// `--detach` submits and prints the run id; `--attach` follows the run: the same records
/// as a followed run; attaching again to the finished run only writes the sinks; an
/// unknown run id and an edited job file are clear errors.
fn detach_then_attach() {
    let local = Job::new(SAME);
    let out = local.run(&["--set", "backend=processes"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let expected = essence(&local.jsonl("out.jsonl"));

    let job = Job::new(SAME);
    let out = job.run(&["--detach"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run_id = stdout(&out).trim().to_string();
    assert!(
        words(&out).contains(&format!("jobpool run --attach {run_id} ")),
        "says how to attach: {}",
        stderr(&out)
    );
    assert!(!job.path("out.jsonl").exists(), "a detached run writes no sinks");
    assert_eq!(job.run_json(&run_id)["state"], "running");

    let out = job.run(&["--attach", &run_id]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(essence(&job.jsonl("out.jsonl")), expected);
    let run = job.run_json(&run_id);
    assert_eq!(run["state"], "finished", "{run}");
    assert_eq!(run["exit_code"], 1, "{run}");
    let journal = job.jsonl(&format!(".jobpool/runs/job/{run_id}/records.jsonl"));
    assert_eq!(journal.len(), 28);

    // Attaching to a run that ended: the sinks again, from the journals.
    fs::remove_file(job.path("out.jsonl")).unwrap();
    let out = job.run(&["--attach", &run_id]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(essence(&job.jsonl("out.jsonl")), expected);
    assert_eq!(job.jsonl(&format!(".jobpool/runs/job/{run_id}/records.jsonl")).len(), 28);

    let out = job.run(&["--attach", "no-such-run"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(words(&out).contains("job has no run no-such-run"), "{}", stderr(&out));

    // An edit that keeps the plan's size but changes an argument is a different plan.
    fs::write(job.path("job.toml"), SAME.replace(r#"["a", "b"]"#, r#"["a", "c"]"#)).unwrap();
    let out = job.run(&["--attach", &run_id]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(words(&out).contains("changed since run"), "{}", stderr(&out));
}

/// Attaching after `squeue` forgot the array: the element states come from `sacct`
/// (the element past its time limit gives a `timeout` record).
fn attach_after_squeue_forgot_uses_sacct() {
    let sacct = Command::new("sacct").args(["-n", "-X", "-j", "1"]).output().unwrap();
    let said = format!("{}{}", stdout(&sacct), stderr(&sacct));
    assert!(
        sacct.status.success() && !said.contains("disabled"),
        "this test needs Slurm accounting (start the cluster with LOCAL_SLURM_ACCOUNTING=1): {said}"
    );
    let config = Command::new("scontrol").args(["show", "config"]).output().unwrap();
    let min_job_age: Option<u64> = stdout(&config)
        .lines()
        .find(|l| l.starts_with("MinJobAge"))
        .and_then(|l| l.split('=').nth(1)?.split_whitespace().next()?.parse().ok());
    assert!(
        min_job_age.is_some_and(|s| s <= 60),
        "this test waits until squeue forgets a job: it needs MinJobAge <= 60 s, not \
         {min_job_age:?} (start the cluster with LOCAL_SLURM_MIN_JOB_AGE=10)"
    );
    let job = Job::new(
        r#"
name = "job"
backend = "slurm"
[task]
kind = "command"
program = ["sleep", "{s}"]
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
    let out = job.run(&["--detach"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run_id = stdout(&out).trim().to_string();
    let job_id = job.submission_of(&run_id)["job_id"].as_str().unwrap().to_string();
    wait_until_forgotten(&job_id, Duration::from_secs(200));
    let out = job.run(&["--attach", &run_id]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let records = job.jsonl("out.jsonl");
    assert_eq!(records[0]["status"], "ok", "{records:?}");
    assert_eq!(records[1]["status"], "timeout", "{records:?}");
    let error = records[1]["error"].as_str().unwrap();
    assert!(error.contains("time limit (time-limit = 1m)"), "{error}");
}

/// `--resume` submits only what is missing: one element for the one failed submission;
/// with nothing missing, nothing at all.
fn resume_submits_only_what_is_missing() {
    let job = Job::new(
        r#"
name = "job"
backend = "slurm"
[task]
kind = "command"
program = ["sh", "-c", "echo {i} >> ran.log; test {i} -ne 3 -o -e fixed && echo {i}"]
output = "json"
[args]
i = { range = [0, 8] }
[slurm]
per-element = 2
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(job.submission()["elements"], 4);
    fs::write(job.path("fixed"), "").unwrap();
    let out = job.run(&["--resume"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sub = job.submission_of(&run_id_of(&out));
    assert_eq!(sub["elements"], 1, "{sub}");
    assert_eq!(sub["todo"], serde_json::json!([3]), "{sub}");
    assert_eq!(sub["resumed"], 7, "{sub}");
    assert!(sub["sbatch"].to_string().contains("--array=0-0"), "{sub}");
    let records = job.jsonl("out.jsonl");
    let got: Vec<(u64, &str, bool, Value)> = records
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["status"].as_str().unwrap(),
                r["resumed"].as_bool().unwrap_or(false),
                r["value"].clone(),
            )
        })
        .collect();
    let want: Vec<(u64, &str, bool, Value)> =
        (0..8).map(|i| (i, "ok", i != 3, Value::from(i))).collect();
    assert_eq!(got, want);
    let mut ran: Vec<String> =
        fs::read_to_string(job.path("ran.log")).unwrap().lines().map(str::to_string).collect();
    ran.sort();
    assert_eq!(ran, ["0", "1", "2", "3", "3", "4", "5", "6", "7"], "only 3 ran again");

    // Nothing missing: nothing submitted, every record taken from earlier runs.
    let out = job.run(&["--resume"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sub = job.submission_of(&run_id_of(&out));
    assert_eq!(sub["job_id"], Value::Null, "{sub}");
    assert_eq!(sub["elements"], 0, "{sub}");
    let records = job.jsonl("out.jsonl");
    assert_eq!(records.len(), 8);
    assert!(records.iter().all(|r| r["status"] == "ok" && r["resumed"] == true), "{records:?}");
}

/// Elements claim chunks as they finish: the element stuck on the slow task claims
/// nothing else; the other runs every other chunk (fixed slices would give 4 and 4).
fn elements_claim_chunks_as_they_finish() {
    let job = Job::new(
        r#"
name = "job"
backend = "slurm"
workers = 1
[task]
kind = "command"
program = ["sh", "-c", "if [ {i} = 0 ]; then sleep 10; else sleep 0.2; fi; echo {i}"]
output = "json"
[args]
i = { range = [0, 8] }
[slurm]
per-element = 4
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sub = job.submission();
    assert_eq!((sub["elements"].as_u64(), sub["layout"]["chunks"].as_u64()), (Some(2), Some(8)));
    let values: Vec<Value> = job.jsonl("out.jsonl").iter().map(|r| r["value"].clone()).collect();
    assert_eq!(values, (0..8).map(Value::from).collect::<Vec<_>>());
    let run = Path::new(sub["shard_journals"].as_str().unwrap()).to_path_buf();
    let owner = |c: u64| -> u64 {
        let text = fs::read_to_string(run.join(format!("slurm/claims/chunk-{c:06}"))).unwrap();
        serde_json::from_str::<Value>(&text).unwrap()["element"].as_u64().unwrap()
    };
    let slow = owner(0);
    let others: Vec<u64> = (1..8).map(owner).collect();
    assert!(others.iter().all(|e| *e != slow), "the slow element claimed more: {slow} {others:?}");
}

/// Elements that cannot see the job's folder (here: they run as `nobody`, who cannot
/// read it) claim nothing: every submission says so, with where to look.
fn a_folder_the_elements_cannot_see_is_named() {
    let job = Job::new(
        r#"
name = "job"
backend = "slurm"
[task]
kind = "command"
program = ["true"]
[args]
i = [1, 2]
[slurm]
sbatch-args = ["--uid=nobody"]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let records = job.jsonl("out.jsonl");
    assert_eq!(records.len(), 2);
    for r in &records {
        assert_eq!(r["status"], "crashed", "{r}");
        let error = r["error"].as_str().unwrap();
        assert!(error.contains("visible and writable from the compute nodes"), "{error}");
    }
}

/// An element claims no chunk it has no time left for: with a 1-minute limit and 25-s
/// tasks, the one element runs one chunk and stops; the rest come back `timeout`, saying
/// why, without any element being killed.
fn an_element_claims_no_chunk_it_has_no_time_for() {
    let job = Job::new(
        r#"
name = "job"
backend = "slurm"
workers = 1
[task]
kind = "command"
program = ["sh", "-c", "sleep 25; echo {i}"]
[args]
i = { range = [0, 4] }
[slurm]
per-element = 4
time-limit = "1m"
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let statuses: Vec<String> =
        job.jsonl("out.jsonl").iter().map(|r| r["status"].as_str().unwrap().into()).collect();
    assert_eq!(statuses, ["ok", "timeout", "timeout", "timeout"]);
    let records = job.jsonl("out.jsonl");
    let error = records[1]["error"].as_str().unwrap();
    assert!(error.contains("no array element had enough of its time limit"), "{error}");
}

/// `on-failure = "stop"`: after the first failure the elements claim no more chunks and
/// what no element claimed comes back `skipped`; nothing after it is `cancelled`.
fn on_failure_stop_claims_no_more() {
    let job = Job::new(
        r#"
name = "job"
backend = "slurm"
workers = 1
on-failure = "stop"
[task]
kind = "command"
program = ["sh", "-c", "test {i} -ne 0 || exit 1; sleep 2; echo {i}"]
[args]
i = { range = [0, 8] }
[slurm]
per-element = 8
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let statuses: Vec<String> =
        job.jsonl("out.jsonl").iter().map(|r| r["status"].as_str().unwrap().into()).collect();
    assert_eq!(statuses[0], "error", "{statuses:?}");
    let ok = statuses.iter().filter(|s| *s == "ok").count();
    let skipped = statuses.iter().filter(|s| *s == "skipped").count();
    assert_eq!(1 + ok + skipped, 8, "{statuses:?}");
    assert!(skipped >= 4, "the element went on claiming: {statuses:?}");
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
        ("attach_after_squeue_forgot_uses_sacct", attach_after_squeue_forgot_uses_sacct),
        ("detach_then_attach", detach_then_attach),
        ("resume_submits_only_what_is_missing", resume_submits_only_what_is_missing),
        ("elements_claim_chunks_as_they_finish", elements_claim_chunks_as_they_finish),
        ("a_folder_the_elements_cannot_see_is_named", a_folder_the_elements_cannot_see_is_named),
        (
            "an_element_claims_no_chunk_it_has_no_time_for",
            an_element_claims_no_chunk_it_has_no_time_for,
        ),
        ("on_failure_stop_claims_no_more", on_failure_stop_claims_no_more),
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
