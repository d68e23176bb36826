//! End to end: the real `jobpool watch` on a temporary folder, files edited under it.
//! Bounds are generous; the tests wait for what watch prints, never for a fixed time
//! (but for "nothing happens", which waits a little).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::run_support::BIN;

const WAIT: Duration = Duration::from_secs(30);

/// A running `jobpool watch` with its output collected.
struct Watching {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    marker: String,
}

impl Watching {
    fn start(dir: &Path, args: &[&str]) -> Watching {
        let marker = format!("jp-watch-test-{}-{}", std::process::id(), fastrand::u64(..));
        let mut child = Command::new(BIN)
            .arg("watch")
            .arg("--debounce")
            .arg("50ms")
            .args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env("JOBPOOL_WATCH_TEST", &marker)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let collect = |mut r: Box<dyn Read + Send>| {
            let buf = Arc::new(Mutex::new(String::new()));
            let b = buf.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    b.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            });
            buf
        };
        let out = collect(Box::new(child.stdout.take().unwrap()));
        let err = collect(Box::new(child.stderr.take().unwrap()));
        Watching { child, out, err, marker }
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    fn stdout(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Wait until stderr has `n` occurrences of `text`.
    fn wait_for(&self, text: &str, n: usize) {
        let until = Instant::now() + WAIT;
        while self.stderr().matches(text).count() < n {
            if Instant::now() > until {
                panic!("no {n}× {text:?} in time; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until stdout ends with `text` (its reader thread may lag behind stderr's).
    fn wait_stdout_ends_with(&self, text: &str) {
        let until = Instant::now() + WAIT;
        while !self.stdout().ends_with(text) {
            if Instant::now() > until {
                panic!("stdout does not end with {text:?}: {:?}", self.stdout());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ctrl-C; the exit code, after checking that nothing it started is left.
    fn interrupt(mut self) -> i32 {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let until = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!("watch did not stop after Ctrl-C; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let left = processes_with(&self.marker);
        assert!(left.is_empty(), "processes left behind: {left:?}");
        status.code().unwrap_or(-1)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Processes whose environment carries `marker` (the watch process and all it started).
fn processes_with(marker: &str) -> Vec<PathBuf> {
    let needle = format!("JOBPOOL_WATCH_TEST={marker}");
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            fs::read(p.join("environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
        })
        .collect()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn values(path: &Path) -> Vec<(String, bool)> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|r| (r["value"].as_str().unwrap_or("").to_string(), r["resumed"] == true))
        .collect()
}

const LINES_JOB: &str = r#"
[task]
kind = "command"
shell = "case {x} in slow) sleep 30;; esac; echo got-{x}"

[args]
x = { lines = "inputs.txt" }

[[sink]]
to = "stdout"

[[sink]]
to = "out/{name}.jsonl"
format = "jsonl"
"#;

#[test]
fn a_new_line_runs_alone_ignored_paths_do_not_run_and_ctrl_c_leaves_nothing() {
    let dir = tempfile::Builder::new().prefix("jp-watch-").tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("job.toml"), LINES_JOB).unwrap();
    fs::write(d.join("inputs.txt"), "a\nb\n").unwrap();
    let w = Watching::start(d, &[]);
    w.wait_for("watching 1 job file", 1);
    assert!(w.stderr().contains("[watch] job.toml: first run"), "{}", w.stderr());
    assert_eq!(
        values(&d.join("out/job.jsonl")),
        [("got-a".into(), false), ("got-b".into(), false)]
    );

    // A new line: only its submission runs; the sinks are complete and in order.
    append(&d.join("inputs.txt"), "c\n");
    w.wait_for("watching 1 job file", 2);
    let err = w.stderr();
    assert!(err.contains("[watch] job.toml: changed inputs.txt"), "{err}");
    assert!(err.contains("[watch] job: 1 new, 2 unchanged"), "{err}");
    assert_eq!(
        values(&d.join("out/job.jsonl")),
        [("got-a".into(), true), ("got-b".into(), true), ("got-c".into(), false)]
    );
    w.wait_stdout_ends_with("got-a\ngot-b\ngot-c\n");

    // jobpool's own state and the job's own sink do not trigger a run.
    fs::write(d.join(".jobpool/scratch"), "x").unwrap();
    fs::write(d.join("out/job.jsonl"), "").unwrap();
    fs::write(d.join("notes.txt"), "x").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(w.stderr().matches("[watch] job.toml:").count(), 2, "{}", w.stderr());

    // A slow task, then Ctrl-C while it runs: exit 130, no process left.
    append(&d.join("inputs.txt"), "slow\n");
    w.wait_for("[watch] job: 1 new, 3 unchanged", 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(w.interrupt(), 130);
}

#[test]
fn an_edited_glob_match_reruns_alone_and_a_broken_job_file_waits_for_its_fix() {
    let dir = tempfile::Builder::new().prefix("jp-watch-").tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("data")).unwrap();
    fs::write(d.join("data/a.txt"), "alpha").unwrap();
    fs::write(d.join("data/b.txt"), "beta").unwrap();
    let job = "[task]\nkind = \"command\"\nprogram = [\"cat\", \"{f}\"]\n\
               [args]\nf = { glob = \"data/*.txt\" }\n";
    fs::write(d.join("job.toml"), job).unwrap();
    let w = Watching::start(d, &["--why"]);
    w.wait_for("watching 1 job file", 1);

    fs::write(d.join("data/a.txt"), "ALPHA").unwrap();
    w.wait_for("watching 1 job file", 2);
    let err = w.stderr();
    assert!(err.contains("[watch] job: 1 input changed, 1 unchanged"), "{err}");
    assert!(err.contains(r#"[0] {"f":"data/a.txt"}: input changed"#), "{err}");
    w.wait_stdout_ends_with("ALPHA\nbeta\n");

    fs::write(d.join("data/c.txt"), "gamma").unwrap();
    w.wait_for("[watch] job: 1 new, 2 unchanged", 1);
    w.wait_for("watching 1 job file", 3);

    fs::write(d.join("job.toml"), "workers = 0\n").unwrap();
    w.wait_for("not valid; watching it for a fix", 1);
    w.wait_for("watching 1 job file", 4);
    fs::write(d.join("job.toml"), job.replace("cat", "/bin/cat")).unwrap();
    w.wait_for("[watch] job: 3 task changed", 1);
    w.wait_for("watching 1 job file", 5);
    w.wait_stdout_ends_with("ALPHA\nbeta\ngamma\n");
    assert_eq!(w.interrupt(), 130);
}

const BUSY_JOB: &str = r#"
workers = 1
grace-period = "100ms"
[task]
kind = "command"
shell = "case {x} in slow*) sleep 30;; esac; echo got-{x}"

[args]
x = { lines = "inputs.txt" }

[[sink]]
to = "out/{name}.jsonl"
format = "jsonl"
"#;

/// `--on-busy restart` (the default): a change during a run cancels it (its slow task
/// killed) and the next run starts at once with the change.
#[test]
fn a_change_during_a_run_restarts_it() {
    let dir = tempfile::Builder::new().prefix("jp-watch-").tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("job.toml"), BUSY_JOB).unwrap();
    fs::write(d.join("inputs.txt"), "a\n").unwrap();
    let w = Watching::start(d, &[]);
    w.wait_for("watching 1 job file", 1);
    append(&d.join("inputs.txt"), "slow1\n");
    w.wait_for("[watch] job: 1 new, 1 unchanged", 1);
    std::thread::sleep(Duration::from_millis(500)); // the slow task is running
    let started = Instant::now();
    // Replace the slow line: the run in progress is superseded, not waited for.
    fs::write(d.join("inputs.txt"), "a\nb\n").unwrap();
    // (A superseded run goes straight to the next: no "watching" line between them.)
    w.wait_for("watching 1 job file", 2);
    assert!(w.stderr().contains("superseded by a change; running again"), "{}", w.stderr());
    assert!(started.elapsed() < Duration::from_secs(20), "waited for the slow task");
    assert_eq!(values(&d.join("out/job.jsonl")), [("got-a".into(), true), ("got-b".into(), false)]);
    assert_eq!(w.interrupt(), 130);
}

/// `--on-busy queue`: the run in progress finishes; then the job runs once more with
/// everything that changed meanwhile (nothing lost).
#[test]
fn a_change_during_a_run_is_queued_and_not_lost() {
    let dir = tempfile::Builder::new().prefix("jp-watch-").tempdir().unwrap();
    let d = dir.path();
    let job = BUSY_JOB.replace("sleep 30", "sleep 2");
    fs::write(d.join("job.toml"), job).unwrap();
    fs::write(d.join("inputs.txt"), "a\n").unwrap();
    let w = Watching::start(d, &["--on-busy", "queue"]);
    w.wait_for("watching 1 job file", 1);
    append(&d.join("inputs.txt"), "slow1\n");
    w.wait_for("[watch] job: 1 new, 1 unchanged", 1);
    std::thread::sleep(Duration::from_millis(300));
    // Two changes while the slow task runs: both are in the next run.
    append(&d.join("inputs.txt"), "b\n");
    std::thread::sleep(Duration::from_millis(200));
    append(&d.join("inputs.txt"), "c\n");
    w.wait_for("watching 1 job file", 2);
    assert!(
        w.stderr().contains("[watch] job: 2 new, 2 unchanged"),
        "one run for both changes: {}",
        w.stderr()
    );
    let got = values(&d.join("out/job.jsonl"));
    assert_eq!(
        got.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>(),
        ["got-a", "got-slow1", "got-b", "got-c"],
        "{}",
        w.stderr()
    );
    // The slow run finished (it was not cancelled): its record is reused, not rerun.
    assert_eq!(got[1], ("got-slow1".into(), true), "{}", w.stderr());
    assert_eq!(w.interrupt(), 130);
}

/// `jobpool watch DIR` watches the job files of a folder, also those created after it
/// started: a new file is run as a first run, and a file written in two steps (created
/// empty, then filled, as editors do) runs once it is valid.
#[test]
fn a_job_file_created_in_a_watched_folder_is_run() {
    let dir = tempfile::Builder::new().prefix("jp-watch-").tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("jobs")).unwrap();
    let job = |word: &str| {
        format!(
            "[task]\nkind = \"command\"\nprogram = [\"echo\", \"{word}-{{x}}\"]\n[args]\nx = [1, 2]\n[[sink]]\nto = \"../out/{{name}}.jsonl\"\nformat = \"jsonl\"\n"
        )
    };
    fs::write(d.join("jobs/first.toml"), job("first")).unwrap();
    let w = Watching::start(d, &["jobs"]);
    w.wait_for("watching 1 job file", 1);
    assert_eq!(
        values(&d.join("out/first.jsonl")),
        [("first-1".into(), false), ("first-2".into(), false)]
    );

    // Created empty first (not a job file yet: nothing happens), then written whole.
    fs::write(d.join("jobs/second.toml"), "").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(!w.stderr().contains("second"), "{}", w.stderr());
    fs::write(d.join("jobs/second.toml"), job("second")).unwrap();
    w.wait_for("watching 2 job files", 1);
    assert!(w.stderr().contains("[watch] new job file jobs/second.toml"), "{}", w.stderr());
    assert!(w.stderr().contains("[watch] jobs/second.toml: first run"), "{}", w.stderr());
    assert_eq!(
        values(&d.join("out/second.jsonl")),
        [("second-1".into(), false), ("second-2".into(), false)],
        "{}",
        w.stderr()
    );
    // The first job did not run again for the second's arrival.
    assert_eq!(w.stderr().matches("[watch] jobs/first.toml:").count(), 1, "{}", w.stderr());
    assert_eq!(w.interrupt(), 130);
}

/// `--clear` clears the terminal before each rerun, and only a terminal: run under a
/// pseudo-terminal (`script`), the escape codes appear; with stderr in a pipe, never.
#[test]
fn clear_clears_a_terminal_only() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("NOTE: `script` (util-linux) is missing: the --clear terminal test did NOT run");
        return;
    }
    let dir = tempfile::Builder::new().prefix("jp-watch-").tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("job.toml"), LINES_JOB).unwrap();
    fs::write(d.join("inputs.txt"), "a\n").unwrap();
    // In a pipe: no escape codes.
    let w = Watching::start(d, &["--clear"]);
    w.wait_for("watching 1 job file", 1);
    append(&d.join("inputs.txt"), "b\n");
    w.wait_for("watching 1 job file", 2);
    assert!(!w.stderr().contains("\x1b[2J"), "{:?}", w.stderr());
    assert_eq!(w.interrupt(), 130);

    // Under a pseudo-terminal: the screen is cleared before the rerun.
    let marker = format!("jp-watch-test-{}-{}", std::process::id(), fastrand::u64(..));
    let line = format!("{BIN} watch --debounce 50ms --clear job.toml");
    let mut child = Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .current_dir(d)
        .env("JOBPOOL_WATCH_TEST", &marker)
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut pipe = child.stdout.take().unwrap();
    let o = out.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            o.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    let text = || String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    let wait_for = |what: &str, n: usize| {
        let until = Instant::now() + WAIT;
        while text().matches(what).count() < n {
            assert!(Instant::now() < until, "no {n}× {what:?} in time:\n{:?}", text());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("watching 1 job file", 1);
    append(&d.join("inputs.txt"), "c\n");
    wait_for("watching 1 job file", 2);
    let all = text();
    let rerun = all.rfind("changed inputs.txt").expect("the rerun header");
    assert!(all[..rerun].contains("\x1b[2J"), "no clear before the rerun: {all:?}");
    // Stop it: SIGINT to the watch process (the pty's child), then everything is gone.
    for p in processes_with(&marker) {
        let Some(pid) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if fs::read(p.join("cmdline")).is_ok_and(|c| c.starts_with(BIN.as_bytes())) {
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
    }
    let until = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            panic!("watch under script did not stop: {:?}", text());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let until = Instant::now() + Duration::from_secs(5);
    while !processes_with(&marker).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(processes_with(&marker).is_empty(), "left behind: {:?}", processes_with(&marker));
}
