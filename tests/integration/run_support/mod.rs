//! Helpers shared by the end-to-end tests of `jobpool run` (`tests/run.rs`,
//! `tests/run_faults.rs`): a job file in a temporary folder, the real binary with a hang
//! guard, and checks on records and process ids.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod csv;
pub use csv::parse_csv;

pub const BIN: &str = env!("CARGO_BIN_EXE_jobpool");
/// Upper bound for any one `jobpool run` in these tests: far above what they need, so a
/// hang fails the test instead of the suite.
pub const HANG: Duration = Duration::from_secs(90);

/// A job file in its own temporary folder.
pub struct Job {
    pub dir: tempfile::TempDir,
}

impl Job {
    pub fn new(toml: &str) -> Job {
        let dir = tempfile::Builder::new().prefix("jp-run-").tempdir().unwrap();
        fs::write(dir.path().join("job.toml"), toml).unwrap();
        Job { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    pub fn command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("run").args(extra).arg(self.path("job.toml")).current_dir(self.dir.path());
        c.env("NO_COLOR", "1").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    pub fn spawn(&self, extra: &[&str]) -> Child {
        self.command(extra).spawn().unwrap()
    }

    pub fn run(&self, extra: &[&str]) -> Output {
        wait_output(self.spawn(extra))
    }

    /// Records of a jsonl file the job wrote.
    pub fn jsonl(&self, rel: &str) -> Vec<Value> {
        let text =
            fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"));
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Every record journaled under `.jobpool/runs/` (all runs), in file order.
    pub fn journal(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let runs = self.path(".jobpool/runs");
        let mut files = Vec::new();
        walk(&runs, &mut files);
        files.sort();
        for f in files.iter().filter(|f| f.ends_with("records.jsonl")) {
            for line in fs::read_to_string(f).unwrap().lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    out.push(v);
                }
            }
        }
        out
    }
}

pub fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() { walk(&p, out) } else { out.push(p) }
        }
    }
}

/// Wait for a child with the hang guard; kill it and fail if it does not finish.
pub fn wait_output(mut child: Child) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > HANG {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "jobpool run hung for {HANG:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or_else(|| panic!("killed by a signal: {:?}\n{}", o.status, stderr(o)))
}

pub fn pid_alive(pid: i32) -> bool {
    // A zombie is dead for our purposes; /proc/PID/stat's third field is the state.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").split_whitespace().next();
            state != Some("Z")
        }
        Err(_) => false,
    }
}

pub fn read_pids(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if let Ok(t) = fs::read_to_string(e.path()) {
            pids.extend(t.split_whitespace().filter_map(|s| s.parse::<i32>().ok()));
        }
    }
    pids
}

/// Wait (up to 30 s) until the files in `dir` hold at least `n` pids (tasks write them
/// when they start); the pids. Panics when they do not come.
pub fn wait_for_pids(dir: &Path, n: usize) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pids = read_pids(dir);
        if pids.len() >= n {
            return pids;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} pids: the tasks never started",
            pids.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait (generously) for every pid to be gone; return those still alive.
pub fn survivors(pids: &[i32]) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive: Vec<i32> = pids.iter().copied().filter(|&p| pid_alive(p)).collect();
        if alive.is_empty() || Instant::now() > deadline {
            for &p in &alive {
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            return alive;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn statuses(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["status"].as_str().unwrap().to_string()).collect()
}

/// The programs that show what a command started with: its open descriptors (`ls` of
/// its own, which adds the one `ls` reads them with), and its signal mask, ignored and
/// handled signals (`cat` of its own `/proc/<pid>/status`). No shell: a shell holds
/// descriptors of its own (a pipeline's ends, saved streams).
pub const LIST_FDS: [&str; 2] = ["ls", "/proc/self/fd"];
pub const SHOW_STATUS: [&str; 2] = ["cat", "/proc/self/status"];

/// Check [`LIST_FDS`]'s output: the three streams, those this test process was given open
/// by whatever started it (which anything passes on), and `ls`'s own (the lowest free
/// one), nothing else.
pub fn check_fds(listing: &str) {
    let mut fds: Vec<i32> = listing.split_whitespace().map(|w| w.parse().unwrap()).collect();
    fds.sort();
    let mut expected = vec![0, 1, 2];
    expected.extend(inherited_fds());
    let own = (3..).find(|fd| !expected.contains(fd)).unwrap();
    expected.push(own);
    expected.sort();
    assert_eq!(fds, expected, "{listing}");
}

/// Check [`SHOW_STATUS`]'s output: no signal blocked, SIGPIPE not ignored.
pub fn check_signals(status: &str) {
    let mask = |field: &str| {
        let line = status.lines().find(|l| l.starts_with(field));
        let hex = line.and_then(|l| l.split_whitespace().nth(1));
        u64::from_str_radix(hex.unwrap_or_else(|| panic!("{status}")), 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "{status}");
    assert_eq!(mask("SigIgn:") & (1 << (libc::SIGPIPE - 1)), 0, "{status}");
}

/// This process's descriptors above 2 without close-on-exec: those it was started with.
fn inherited_fds() -> Vec<i32> {
    let listed: Vec<i32> = fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // SAFETY: F_GETFD only reads a descriptor's flags (an error for one closed since).
    let kept = |fd: &i32| unsafe { libc::fcntl(*fd, libc::F_GETFD) } == 0;
    listed.into_iter().filter(|fd| *fd > 2).filter(kept).collect()
}
