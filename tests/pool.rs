//! Integration tests of the process pool. `harness = false`: this binary's `main` must
//! call `run_if_worker` first, because the pool re-executes it as its workers.
//!
//! Run one test: `cargo test --test pool -- NAME`. After every test the binary checks
//! that it has no child process left (`/proc/*/stat` whose parent is this process).

use std::collections::{BTreeSet, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobpool::pool::{
    Payload, Pool, PoolError, Registry, RetryOn, Submission, TaskContext, TaskError, WorkerExit,
    WorkerKind, worker,
};
use jobpool::record::Status;

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("square", |x: i64| Ok::<_, TaskError>(x * x));
    // Named, so that a JSON object `{"a": .., "b": ..}` binds to it (job files send those).
    r.register_named("add", &["a", "b"], |(a, b): (i64, i64)| Ok::<_, TaskError>(a + b));
    r.register("sleep_ms", |(ms, tag): (u64, i64)| {
        std::thread::sleep(Duration::from_millis(ms));
        Ok::<_, TaskError>(tag)
    });
    r.register("len_sleep", |(ms, data): (u64, Vec<u8>)| {
        std::thread::sleep(Duration::from_millis(ms));
        Ok::<_, TaskError>(data.len())
    });
    r.register("print", |text: String| {
        println!("{text}");
        Ok::<_, TaskError>(())
    });
    r.register("fail", |msg: String| Err::<(), _>(TaskError::new(msg).with_data(r#"{"code":7}"#)));
    r.register(
        "fail_if",
        |(x, bad): (i64, i64)| if x == bad { Err(format!("item {x} is bad")) } else { Ok(x) },
    );
    r.register("abort_if", |(x, bad): (i64, i64)| {
        if x == bad {
            std::process::abort();
        }
        Ok::<_, TaskError>(x)
    });
    r.register("exit_if", |(x, bad): (i64, i64)| {
        if x == bad {
            std::process::exit(3);
        }
        Ok::<_, TaskError>(x)
    });
    // Appends `x` to the file `log` (one line per start), then aborts the worker on `bad`.
    r.register("log_abort_if", |(x, bad, log): (i64, i64, String)| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&log)?;
        writeln!(f, "{x}")?;
        drop(f);
        if x == bad {
            std::process::abort();
        }
        Ok::<_, TaskError>(x)
    });
    // Appends `tag` to the file `log` (one line per start), then sleeps `ms`.
    r.register("log_sleep", |(ms, tag, log): (u64, i64, String)| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&log)?;
        // One write, so that lines of workers appending at once do not interleave.
        f.write_all(format!("{tag}\n").as_bytes())?;
        drop(f);
        std::thread::sleep(Duration::from_millis(ms));
        Ok::<_, TaskError>(tag)
    });
    // `x + 1`, except: mode 1 fails, mode 2 aborts the worker the first time (it leaves
    // the file `mark` behind), mode 3 sleeps 20 s.
    r.register("chunk_probe", |(x, mode, mark): (i64, u8, String)| match mode {
        1 => Err(format!("item {x} is bad")),
        2 if std::fs::OpenOptions::new().write(true).create_new(true).open(&mark).is_ok() => {
            std::process::abort()
        }
        3 => {
            std::thread::sleep(Duration::from_secs(20));
            Ok(x + 1)
        }
        _ => Ok(x + 1),
    });
    r.register("panic", |(): ()| -> Result<(), TaskError> { panic!("boom") });
    r.register("pid", |(): ()| Ok::<_, TaskError>(std::process::id()));
    r.register("ppid", |(): ()| Ok::<_, TaskError>(std::os::unix::process::parent_id()));
    r.register_with_context("has_group", |tc: &TaskContext, (): ()| {
        Ok::<_, TaskError>(tc.command_group().is_some())
    });
    r.register("square_u64", |x: u64| Ok::<_, TaskError>(x * x));
    // The number a zero-padded text spells.
    r.register("number_in", |text: String| {
        text.trim_start_matches('0')
            .parse::<u64>()
            .or_else(|e| if text.chars().all(|c| c == '0') { Ok(0) } else { Err(e.to_string()) })
    });
    r.register("sqr", |(x,): (u64,)| Ok::<_, TaskError>(x * x));
    r.register("point", |(): ()| Ok::<_, TaskError>(Point { x: 1, y: 2 }));
    r.register("fussy", |Fussy(x): Fussy| Ok::<_, TaskError>(x));
    r.register(
        "picky_if",
        |(x, bad): (i64, i64)| {
            if x == bad { Err(format!("item {x} is bad")) } else { Ok(Picky(x)) }
        },
    );
    r.register_with_context("ctx", |ctx: &TaskContext, (): ()| {
        let n = ctx.cached(|c| c.len());
        Ok::<_, TaskError>((
            ctx.context().to_string(),
            *n,
            ctx.worker(),
            ctx.task_timeout().map(|d| d.as_millis() as u64),
        ))
    });
    // What a worker's start hook made, or says it did not run.
    r.on_worker_start(|ctx| {
        ctx.cached::<String>(|c| format!("made at the start, from {c:?}"));
    });
    r.register_with_context("start_hook", |ctx: &TaskContext, (): ()| {
        Ok::<_, TaskError>(ctx.cached::<String>(|_| "made by the first task".into()).to_string())
    });
    r.register_with_context("until_stopped", |ctx: &TaskContext, (): ()| {
        while !ctx.should_stop() {
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok::<_, TaskError>("stopped")
    });
    r.register_with_context("grandchild", |ctx: &TaskContext, path: String| {
        use std::os::unix::process::CommandExt;
        let child = Command::new("sleep").arg("30").process_group(0).spawn()?;
        ctx.track_child_group(child.id() as i32);
        std::fs::write(&path, child.id().to_string())?;
        std::thread::sleep(Duration::from_secs(30));
        Ok::<_, TaskError>(())
    });
    r
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Point {
    x: i64,
    y: i64,
}

/// A value that cannot be sent when it is 3.
#[derive(Debug, serde::Deserialize)]
struct Fussy(i64);

impl serde::Serialize for Fussy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 3 {
            return Err(serde::ser::Error::custom("3 cannot be sent"));
        }
        s.serialize_newtype_struct("Fussy", &self.0)
    }
}

/// A value that cannot be received when it is 7 (it is sent like an `i64`).
#[derive(Debug, PartialEq, serde::Serialize)]
struct Picky(i64);

impl<'de> serde::Deserialize<'de> for Picky {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let x = <i64 as serde::Deserialize>::deserialize(d)?;
        if x == 7 {
            return Err(serde::de::Error::custom("7 cannot be received"));
        }
        Ok(Picky(x))
    }
}

/// The registry of a worker program that differs from the tests' (`square` takes
/// another type, and one kind more).
fn other_registry() -> Registry {
    let mut r = registry();
    r.register("square", |x: u32| Ok::<_, TaskError>(x * x));
    r.register("extra", |(): ()| Ok::<_, TaskError>(()));
    r
}

fn pool(workers: usize) -> jobpool::pool::PoolBuilder {
    Pool::builder().workers(workers).registry(registry())
}

/// The live workers: children of this process started as workers (each worker also has
/// a child of this process leading its command group, which is not one).
fn live_children() -> Vec<(u32, char)> {
    children()
        .into_iter()
        .filter(|k| k.1 != 'Z')
        .filter(|k| {
            std::fs::read(format!("/proc/{}/cmdline", k.0))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == b"__jobpool-worker"))
        })
        .collect()
}

fn children() -> Vec<(u32, char)> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // pid (comm) state ppid ...
        let Some(rest) = stat.rsplit_once(')').map(|x| x.1) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(me) {
            out.push((pid, f[0].chars().next().unwrap_or('?')));
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit_once(')').map(|x| x.1.trim_start().starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

// ---------------------------------------------------------------- tests

/// A worker program for `dir` that holds every worker but the first before its handshake
/// until `dir/open` exists (8 s at most: within the pool's 10 s for a handshake, so that
/// a `build` waiting for every worker gets them all), then leaves `dir/second-started`.
fn held_worker_program(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = dir.join("worker.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif mkdir '{d}/first' 2>/dev/null; then exec '{bin}' \"$@\"; fi\n\
             i=0; while [ ! -e '{d}/open' ] && [ $i -lt 800 ]; do sleep 0.01; i=$((i+1)); done\n\
             touch '{d}/second-started'\nexec '{bin}' \"$@\"\n",
            d = dir.display(),
            bin = std::env::current_exe().unwrap().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// A pool of two workers, the second held before its handshake ([`held_worker_program`]).
fn held_pool(dir: &std::path::Path) -> Pool {
    let program = held_worker_program(dir);
    Pool::builder().workers(2).registry(registry()).worker_program(program).build().unwrap()
}

/// `build` returns once one worker is ready, and tasks run on it while another is still
/// starting (here held before its handshake until the test lets it go): a pool on a busy
/// machine does not keep its first task waiting for its slowest worker.
fn build_returns_when_one_worker_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pool = held_pool(d);
    for x in 0..3 {
        assert_eq!(pool.apply::<_, i64>("square", x).unwrap(), x * x);
    }
    assert!(
        !d.join("second-started").exists(),
        "build waited for the second worker, which starts only when the test says so"
    );
    std::fs::write(d.join("open"), "").unwrap();
    // The second worker comes up and takes its share.
    type Ctx = (String, usize, u32, Option<u64>);
    let since = Instant::now();
    let mut seen = HashSet::new();
    while seen.len() < 2 && since.elapsed() < Duration::from_secs(30) {
        let got: Vec<Ctx> = pool.map("ctx", vec![(); 8]).unwrap();
        seen.extend(got.into_iter().map(|(_, _, w, _)| w));
    }
    assert_eq!(seen, HashSet::from([0, 1]), "both workers run tasks once the second is up");
    assert!(d.join("second-started").exists());
}

/// While a worker is still starting, slow tasks (or tasks of unknown length) are not
/// queued on the busy first worker ahead of time: the starting one takes the next task
/// as soon as it is up, in submission order. (Sent ahead, tasks 1 and 2 waited behind
/// task 0; the idle newcomer then took back only the later one, task 2, and task 1 ran
/// after task 0.)
fn a_starting_worker_gets_the_next_task_not_a_later_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = d.join("log");
    let pool = held_pool(d);
    let log_s = log.display().to_string();
    let r = pool
        .map_async::<_, i64>("log_sleep", (0..3i64).map(|i| (400u64, i, log_s.clone())))
        .unwrap();
    let since = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains('0')
        && since.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(d.join("open"), "").unwrap();
    assert_eq!(r.get(None).unwrap(), vec![0, 1, 2]);
    let starts: Vec<String> =
        std::fs::read_to_string(&log).unwrap().lines().map(String::from).collect();
    assert_eq!(starts, ["0", "1", "2"], "tasks started in this order");
}

fn apply_and_error_message() {
    let p = pool(2).build().unwrap();
    assert_eq!(p.apply::<_, i64>("square", 7i64).unwrap(), 49);
    assert_eq!(p.apply::<_, i64>("add", (2i64, 3i64)).unwrap(), 5);
    let e = p.apply::<_, ()>("fail", "it broke".to_string()).unwrap_err();
    assert_eq!(
        e,
        PoolError::Task {
            task: "fail".into(),
            message: "it broke".into(),
            data: Some(r#"{"code":7}"#.into())
        }
    );
    let e = p.apply::<_, ()>("nope", ()).unwrap_err();
    assert!(
        matches!(&e, PoolError::Task { message, .. } if message.contains("unknown task function")),
        "{e:?}"
    );
    let r = p.apply_async::<_, i64>("square", 3i64).unwrap();
    assert!(r.wait(Some(Duration::from_secs(10))));
    assert!(r.ready());
    assert_eq!(r.successful(), Some(true));
    p.join();
}

fn json_calls() {
    let p = pool(1).build().unwrap();
    let v: serde_json::Value =
        p.apply_json("add", r#"{"a": 1, "b": 41}"#).unwrap().get(None).unwrap();
    assert_eq!(v, serde_json::json!(42));
    let r = p.apply_json::<serde_json::Value>("fail", r#"{"msg": "bad"}"#).unwrap();
    assert!(matches!(r.get(None), Err(PoolError::Task { message, .. }) if message == "bad"));
}

fn sigkill_mid_task() {
    let p = pool(2).build().unwrap();
    let r = p.map_async::<_, i64>("sleep_ms", (0..4i64).map(|i| (600u64, i))).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let kids = live_children();
    assert_eq!(kids.len(), 2, "{kids:?}");
    unsafe { libc::kill(kids[0].0 as i32, libc::SIGKILL) };
    assert!(r.wait(Some(Duration::from_secs(10))), "hung after a SIGKILL");
    let items = r.items(None).unwrap();
    let crashed: Vec<_> =
        items.iter().filter(|x| matches!(x, Err(PoolError::Crashed { .. }))).collect();
    assert_eq!(crashed.len(), 1, "{items:?}");
    assert!(format!("{:?}", crashed[0]).contains("signal 9"), "{crashed:?}");
    assert_eq!(items.iter().filter(|x| x.is_ok()).count(), 3, "{items:?}");
    assert!(matches!(r.get(None), Err(PoolError::Crashed { .. })));
    // The worker was replaced.
    assert_eq!(p.apply::<_, i64>("square", 5i64).unwrap(), 25);
    assert_eq!(live_children().len(), 2);
}

fn sigkill_with_retries() {
    let p = pool(1).retries(1).build().unwrap();
    let r = p.apply_async::<_, i64>("sleep_ms", (400u64, 9i64)).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let kids = live_children();
    unsafe { libc::kill(kids[0].0 as i32, libc::SIGKILL) };
    assert_eq!(r.get(Some(Duration::from_secs(10))).unwrap(), 9);
    assert_eq!(r.outcome().unwrap().attempts, 2);
}

fn abort_inside_a_chunk_costs_one_task() {
    // One chunk of 10: the abort of item 4 must not lose the others.
    let p = pool(1).chunk_size(10).build().unwrap();
    let r = p.map_async::<_, i64>("abort_if", (0..10i64).map(|i| (i, 4i64))).unwrap();
    let items = r.items(Some(Duration::from_secs(15))).unwrap();
    for (i, x) in items.iter().enumerate() {
        if i == 4 {
            assert!(
                matches!(x, Err(PoolError::Crashed { message: m, .. }) if m.contains("signal 6")),
                "{x:?}"
            );
        } else {
            assert_eq!(x.as_ref().ok(), Some(&(i as i64)), "{items:?}");
        }
    }
    let outs = r.outcomes().unwrap();
    assert_eq!(outs[4].status, Status::Crashed);
    assert_eq!(outs[4].attempts, 1);
    assert!(outs.iter().enumerate().all(|(i, o)| i == 4 || o.attempts == 1), "{outs:?}");
    // exit() is reported with its code.
    let e = p.apply::<_, i64>("exit_if", (1i64, 1i64)).unwrap_err();
    assert!(
        matches!(
            &e,
            PoolError::Crashed { task, message, exit: Some(WorkerExit::Code(3)), pid: Some(_), .. }
                if task == "exit_if" && message == "worker crashed: exited with code 3"
        ),
        "{e:?}"
    );
}

/// Regression (issue 13): results of fast tasks held in the worker were thrown away when
/// it died, and their tasks run again as if never started (with `attempts: 1`). Every
/// task that finished keeps its result; the one running is `crashed`; nothing runs twice.
fn a_worker_death_never_reruns_a_finished_task() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ran.log").to_string_lossy().into_owned();
    for retries in [0, 1] {
        let _ = std::fs::remove_file(&log);
        let p = pool(1).chunk_size(10).retries(retries).build().unwrap();
        // Items 9, 19, 29, ... abort the worker after the 9 fast ones before them.
        let items: Vec<(i64, i64, String)> =
            (0..40).map(|i| (i, if i % 10 == 9 { i } else { -1 }, log.clone())).collect();
        let r = p.map_async::<_, i64>("log_abort_if", items).unwrap();
        assert!(r.wait(Some(Duration::from_secs(60))), "the map did not finish");
        let outs = r.outcomes().unwrap();
        let ran = std::fs::read_to_string(&log).unwrap();
        for i in 0..40i64 {
            let starts = ran.lines().filter(|l| *l == i.to_string()).count();
            let o = &outs[i as usize];
            if i % 10 == 9 {
                // Crashed every time: started once per allowed attempt, never more.
                assert_eq!(starts, 1 + retries as usize, "item {i} started {starts}x:\n{ran}");
                assert_eq!((o.status, o.attempts), (Status::Crashed, 1 + retries), "{o:?}");
            } else {
                assert_eq!(starts, 1, "item {i} started {starts} times:\n{ran}");
                assert_eq!((o.status, o.attempts), (Status::Ok, 1), "{o:?}");
            }
        }
        p.join();
    }
}

/// `retry_on` limits `retries` to the failure kinds it names.
fn retry_on_limits_which_failures_are_retried() {
    let attempts = |kinds: RetryOn| {
        let p = pool(1)
            .retries(2)
            .retry_on(kinds)
            .task_timeout(Duration::from_millis(300))
            .grace_period(Duration::from_millis(100))
            .build()
            .unwrap();
        let err = p.map_async::<_, i64>("fail_if", [(1i64, 1i64)]).unwrap();
        let crash = p.map_async::<_, i64>("abort_if", [(1i64, 1i64)]).unwrap();
        let slow = p.map_async::<_, i64>("sleep_ms", [(20_000u64, 1i64)]).unwrap();
        let mut out = Vec::new();
        for r in [&err, &crash, &slow] {
            assert!(r.wait(Some(Duration::from_secs(60))), "hung");
            let o = r.outcomes().unwrap().remove(0);
            out.push((o.status, o.attempts));
        }
        out
    };
    let (e, t, c) = (Status::Error, Status::Timeout, Status::Crashed);
    assert_eq!(attempts(RetryOn::ALL), [(e, 3), (c, 3), (t, 3)]);
    assert_eq!(attempts(RetryOn::NONE.with_crashed()), [(e, 1), (c, 3), (t, 1)]);
    assert_eq!(attempts(RetryOn::NONE.with_error().with_timeout()), [(e, 3), (c, 1), (t, 3)]);
}

fn task_timeout_stops_only_that_task() {
    let p = pool(2)
        .task_timeout(Duration::from_millis(300))
        .grace_period(Duration::from_millis(200))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let mut items: Vec<(u64, i64)> = (0..6i64).map(|i| (10, i)).collect();
    items[2] = (20_000, 2);
    let r = p.map_async::<_, i64>("sleep_ms", items).unwrap();
    let got = r.items(Some(Duration::from_secs(10))).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(
        matches!(&got[2], Err(PoolError::TaskTimeout { message: m, .. }) if m.contains("task timeout")),
        "{got:?}"
    );
    for (i, x) in got.iter().enumerate().filter(|(i, _)| *i != 2) {
        assert_eq!(x.as_ref().ok(), Some(&(i as i64)));
    }
    assert_eq!(r.outcomes().unwrap()[2].status, Status::Timeout);
    // A cooperative task sees should_stop() after the TERM.
    let e = p.apply::<_, String>("until_stopped", ()).unwrap_err();
    assert!(matches!(e, PoolError::TaskTimeout { .. }), "{e:?}");
    assert_eq!(p.apply::<_, i64>("square", 4i64).unwrap(), 16);
}

fn grandchild_killed_with_worker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pid");
    let p = pool(1)
        .task_timeout(Duration::from_millis(300))
        .grace_period(Duration::from_millis(100))
        .build()
        .unwrap();
    let e = p.apply::<_, ()>("grandchild", path.to_string_lossy().to_string()).unwrap_err();
    assert!(matches!(e, PoolError::TaskTimeout { .. }), "{e:?}");
    let gpid: u32 = std::fs::read_to_string(&path).unwrap().trim().parse().unwrap();
    let t0 = Instant::now();
    while alive(gpid) && t0.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(gpid), "grandchild {gpid} survived");
}

fn ordering_under_random_durations() {
    for kind in [WorkerKind::Processes, WorkerKind::Threads] {
        let p = pool(3).worker_kind(kind).build().unwrap();
        let items: Vec<(u64, i64)> = (0..60i64).map(|i| (fastrand::u64(0..15), i)).collect();
        let want: Vec<i64> = (0..60).collect();
        assert_eq!(
            p.map_async::<_, i64>("sleep_ms", items.clone()).unwrap().get(None).unwrap(),
            want
        );
        let got: Vec<i64> =
            p.imap::<_, i64>("sleep_ms", items.clone()).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(got, want);
        let mut seen = BTreeSet::new();
        for (i, r) in p.imap_unordered::<_, i64>("sleep_ms", items).unwrap() {
            assert_eq!(r.unwrap(), i as i64);
            assert!(seen.insert(i), "index {i} twice");
        }
        assert_eq!(seen.len(), 60);
        // starmap with several arguments
        let sums: Vec<i64> = p.starmap("add", (0..5i64).zip((0..10i64).step_by(2))).unwrap();
        assert_eq!(sums, vec![0, 3, 6, 9, 12]);
    }
}

/// Regression (issue 12): each worker is sent several batches ahead, so short tasks sat
/// behind a long one on its worker while the other worker went idle (1.3 s for 1.0 s of
/// work). Now the idle worker takes them back (`Dispatcher::rebalance`): every short task
/// runs on the other worker and ends before the long one does, whether the tasks came
/// one per batch or four per batch (taken back from inside the long task's batch).
fn uneven_tasks_never_wait_behind_a_busy_worker() {
    for kind in [WorkerKind::Processes, WorkerKind::Threads] {
        for chunk in [None, Some(4)] {
            let mut b = pool(2).worker_kind(kind);
            if let Some(c) = chunk {
                b = b.chunk_size(c);
            }
            let p = b.build().unwrap();
            let mut items = vec![(1000u64, 0i64)];
            items.extend((1..8).map(|i| (100u64, i)));
            let r = p.map_async::<_, i64>("sleep_ms", items).unwrap();
            assert_eq!(r.get(Some(Duration::from_secs(60))).unwrap(), (0..8).collect::<Vec<_>>());
            let outs = r.outcomes().unwrap();
            let long = &outs[0];
            let long_end = long.started_at.unwrap() + long.duration;
            for o in &outs[1..] {
                let why = format!("{kind:?}, chunk {chunk:?}: {o:?}\nlong task: {long:?}");
                assert_eq!((o.status, o.attempts), (Status::Ok, 1), "{why}");
                assert_ne!(o.worker, long.worker, "a short task waited for the long one: {why}");
                assert!(o.started_at.unwrap() + o.duration < long_end, "{why}");
            }
            p.join();
        }
    }
}

/// Taking tasks back never runs one twice and never loses one: uneven tasks in batches
/// of 8 over 3 workers, each start logged.
fn stolen_tasks_run_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ran.log").to_string_lossy().into_owned();
    for kind in [WorkerKind::Processes, WorkerKind::Threads] {
        let _ = std::fs::remove_file(&log);
        let p = pool(3).worker_kind(kind).chunk_size(8).build().unwrap();
        let items: Vec<(u64, i64, String)> = (0..120i64)
            .map(|i| (if i % 17 == 0 { 60 } else { fastrand::u64(0..4) }, i, log.clone()))
            .collect();
        let r = p.map_async::<_, i64>("log_sleep", items).unwrap();
        assert_eq!(r.get(Some(Duration::from_secs(60))).unwrap(), (0..120).collect::<Vec<_>>());
        for o in r.outcomes().unwrap() {
            assert_eq!((o.status, o.attempts), (Status::Ok, 1), "{kind:?}: {o:?}");
        }
        let ran = std::fs::read_to_string(&log).unwrap();
        for i in 0..120i64 {
            let starts = ran.lines().filter(|l| *l == i.to_string()).count();
            assert_eq!(starts, 1, "{kind:?}: item {i} started {starts} times");
        }
        p.join();
    }
}

/// Big map chunks (the automatic size, thousands of items each, described by their ends)
/// with a crash, an error and a timeout inside: every other item keeps its value, in
/// order; `get` answers the first failure in item order, or every value when the retry
/// succeeded (values from the per-item table and from whole result messages, mixed).
/// Items of 41 bytes in chunks of 1,000: a chunk is more than a busy worker's batch
/// takes (32 KiB), so a batch holds the rest of one chunk and the start of the next —
/// of the same call, or of the next call. Each chunk's share of a result message is
/// delivered on its own: every value, in order, to the right call, and every outcome
/// with its worker, one attempt and a share of its message's time.
fn big_items_split_across_batches_keep_every_value_and_outcome() {
    let p = pool(2).chunk_size(1_000).build().unwrap();
    let texts = |n: u64, add: u64| (0..n).map(move |i| format!("{:0>40}", i + add));
    // 12 calls at once, of 1,500 to 2,600 items: their chunks meet inside batches (how
    // often depends on timing: five rounds).
    for _ in 0..5 {
        twelve_calls_at_once(&p, &texts);
    }
}

fn twelve_calls_at_once<I: Iterator<Item = String>>(p: &Pool, texts: &impl Fn(u64, u64) -> I) {
    let t0 = std::time::Instant::now();
    let calls: Vec<(u64, u64, _)> = (0..12u64)
        .map(|c| {
            let (n, add) = (1_500 + 100 * c, 1_000_000 * c);
            (n, add, p.map_async::<_, u64>("number_in", texts(n, add)).unwrap())
        })
        .collect();
    for (n, add, r) in &calls {
        let want: Vec<u64> = (*add..add + n).collect();
        assert_eq!(r.get(Some(Duration::from_secs(60))).unwrap(), want);
    }
    let wall = t0.elapsed();
    for (n, _, r) in &calls {
        let outs = r.outcomes().unwrap();
        assert_eq!(outs.len(), *n as usize);
        let mut busy = Duration::ZERO;
        for (i, o) in outs.iter().enumerate() {
            assert_eq!((o.id, o.status, o.attempts), (i as u64, Status::Ok, 1));
            assert!(o.worker.is_some_and(|w| w < 2) && o.started_at.is_some());
            busy += o.duration;
        }
        assert!(busy <= 2 * wall, "{busy:?} of work in {wall:?} on 2 workers");
    }
}

fn big_chunks_keep_every_other_item() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool(2)
        .retries(1)
        .task_timeout(Duration::from_millis(300))
        .grace_period(Duration::from_millis(100))
        .build()
        .unwrap();
    let n = 12_000i64;
    let mark = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    // A crash mid-chunk, retried once: every value, in order.
    let m = mark("a");
    let items = (0..n).map(|x| (x, if x == 7_000 { 2u8 } else { 0 }, m.clone()));
    let r = p.map_async::<_, i64>("chunk_probe", items).unwrap();
    assert_eq!(r.get(Some(Duration::from_secs(60))).unwrap(), (1..=n).collect::<Vec<_>>());
    let outs = r.outcomes().unwrap();
    assert_eq!((outs[7_000].status, outs[7_000].attempts), (Status::Ok, 2));
    assert!(outs.iter().enumerate().all(|(i, o)| i == 7_000 || o.attempts == 1));
    // An error, a crash and a timeout: the error (first in item order) is the answer, and
    // nothing else is lost.
    let m = mark("b");
    let mode = |x: i64| match x {
        3_001 => 3u8,
        5_000 => 1,
        9_999 => 2,
        _ => 0,
    };
    let items = (0..n).map(|x| (x, mode(x), m.clone()));
    let r = p.map_async::<_, i64>("chunk_probe", items).unwrap();
    let got = r.get(Some(Duration::from_secs(60)));
    assert!(
        matches!(&got, Err(PoolError::TaskTimeout { .. })),
        "the timeout of item 3001 comes first: {got:?}"
    );
    let items = r.items(None).unwrap();
    for (x, v) in items.iter().enumerate() {
        match x {
            3_001 => assert!(matches!(v, Err(PoolError::TaskTimeout { .. })), "{v:?}"),
            5_000 => assert!(
                matches!(v, Err(PoolError::Task { message, .. }) if message == "item 5000 is bad"),
                "{v:?}"
            ),
            _ => assert_eq!(v.as_ref().ok(), Some(&(x as i64 + 1)), "item {x}"),
        }
    }
    let outs = r.outcomes().unwrap();
    assert_eq!(outs[9_999].attempts, 2, "crashed once, then ran: {:?}", outs[9_999]);
    assert_eq!(outs[3_001].status, Status::Timeout);
    p.join();
}

fn map_failure_keeps_other_items() {
    let p = pool(2).build().unwrap();
    let r = p.map_async::<_, i64>("fail_if", (0..20i64).map(|i| (i, 13i64))).unwrap();
    let items = r.items(None).unwrap();
    assert_eq!(items.iter().filter(|x| x.is_ok()).count(), 19);
    assert!(
        matches!(r.get(None), Err(PoolError::Task { message, .. }) if message == "item 13 is bad")
    );
    assert_eq!(r.successful(), Some(false));
}

/// `MapResult::get` decodes the results that arrive while it waits: the answer is the
/// same as decoding them all at the end, for every way a map can end.
fn map_get_while_running_is_the_same_answer() {
    let p = pool(2).chunk_size(500).build().unwrap();
    let n = 30_000i64;
    // All succeed: every value, in order.
    let v: Vec<i64> = p.map_async("square", 0..n).unwrap().get(None).unwrap();
    assert_eq!(v, (0..n).map(|x| x * x).collect::<Vec<_>>());
    // A value that does not decode, late in the map: that item's decoding error.
    let late = (0..n).map(|x| (if x == 25_000 { 7 } else { x + 8 }, -1i64));
    let r = p.map_async::<_, Picky>("picky_if", late).unwrap();
    let got = r.get(None);
    assert!(matches!(got, Err(PoolError::Decode(_))), "{got:?}");
    // A task error before it in item order wins; one after it does not.
    let bad_first = (0..n).map(|x| (if x == 25_000 { 7 } else { x + 8 }, 20_008i64));
    let r = p.map_async::<_, Picky>("picky_if", bad_first).unwrap();
    assert!(
        matches!(r.get(None), Err(PoolError::Task { message, .. }) if message == "item 20008 is bad")
    );
    let bad_after = (0..n).map(|x| (if x == 25_000 { 7 } else { x + 8 }, 29_008i64));
    let r = p.map_async::<_, Picky>("picky_if", bad_after).unwrap();
    assert!(matches!(r.get(None), Err(PoolError::Decode(_))));
    let items = r.items(None).unwrap();
    assert_eq!(items.iter().filter(|x| x.is_ok()).count(), n as usize - 2);
    // A `get` that times out half-way (having decoded what arrived) and a later one.
    let slow = (0..2_000i64).map(|i| (if i == 1_999 { 400u64 } else { 0 }, i));
    let r = p.map_async::<_, i64>("sleep_ms", slow).unwrap();
    assert_eq!(r.get(Some(Duration::from_millis(100))), Err(PoolError::WaitTimeout));
    assert_eq!(r.get(None).unwrap(), (0..2_000i64).collect::<Vec<_>>());
    // Two threads waiting in `get`, and one asking for every outcome meanwhile.
    let r = p.map_async::<_, i64>("square", 0..n).unwrap();
    std::thread::scope(|s| {
        let a = s.spawn(|| r.get(None).unwrap());
        let b = s.spawn(|| r.get(None).unwrap());
        let c = s.spawn(|| r.items(None).unwrap().len());
        let want: Vec<i64> = (0..n).map(|x| x * x).collect();
        assert_eq!(a.join().unwrap(), want);
        assert_eq!(b.join().unwrap(), want);
        assert_eq!(c.join().unwrap(), n as usize);
        assert_eq!(r.get(None).unwrap(), want);
    });
}

fn callbacks() {
    let p = pool(2).build().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let (t1, t2, t3, t4) = (tx.clone(), tx.clone(), tx.clone(), tx.clone());
    p.apply_async_with::<_, i64, _, _>(
        "square",
        6i64,
        move |v| t1.send(format!("ok {v}")).unwrap(),
        move |e| t2.send(format!("err {e}")).unwrap(),
    )
    .unwrap();
    p.apply_async_with::<_, (), _, _>(
        "fail",
        "x".to_string(),
        |_| panic!("not ok"),
        move |e| t3.send(format!("err {e}")).unwrap(),
    )
    .unwrap();
    let r = p
        .map_async_with::<_, i64, _, _>(
            "square",
            0..4i64,
            move |v| t4.send(format!("map {v:?}")).unwrap(),
            |_| panic!("not err"),
        )
        .unwrap();
    r.wait(None);
    let mut got: Vec<String> =
        (0..3).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
    got.sort();
    assert_eq!(got, vec!["err task `fail` failed: x", "map [0, 1, 4, 9]", "ok 36"]);
}

fn get_timeout_on_long_task() {
    let p = pool(1).build().unwrap();
    let r = p.apply_async::<_, i64>("sleep_ms", (500u64, 1i64)).unwrap();
    assert_eq!(r.get(Some(Duration::from_millis(50))), Err(PoolError::WaitTimeout));
    assert!(!r.ready());
    assert_eq!(r.successful(), None);
    assert_eq!(r.get(Some(Duration::from_secs(10))), Ok(1));
}

fn recycling_after_max_tasks() {
    let p = pool(1).max_tasks_per_worker(2).build().unwrap();
    let pids: Vec<u32> = (0..6).map(|_| p.apply::<_, u32>("pid", ()).unwrap()).collect();
    let distinct: HashSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "{pids:?}");
    let pids: Vec<u32> = p.map("pid", vec![(); 10]).unwrap();
    let distinct: HashSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 5, "{pids:?}");
}

/// Generous task timeout: on a loaded machine a 300 ms limit turned a panic into a
/// timeout now and then.
fn threads_backend_parity() {
    let p = pool(2)
        .worker_kind(WorkerKind::Threads)
        .task_timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    assert_eq!(p.apply::<_, i64>("square", 9i64).unwrap(), 81);
    assert!(
        matches!(p.apply::<_, ()>("fail", "m".to_string()), Err(PoolError::Task { message, .. }) if message == "m")
    );
    assert!(
        matches!(p.apply::<_, ()>("panic", ()), Err(PoolError::Crashed { message: m, .. }) if m.contains("boom"))
    );
    let e = p.apply::<_, i64>("sleep_ms", (6_000u64, 1i64)).unwrap_err();
    assert!(matches!(e, PoolError::TaskTimeout { .. }), "{e:?}");
    let r = p.map_async::<_, i64>("fail_if", (0..10i64).map(|i| (i, 3i64))).unwrap();
    assert_eq!(r.items(None).unwrap().iter().filter(|x| x.is_ok()).count(), 9);
    let e = p.apply::<_, String>("until_stopped", ()).unwrap_err();
    assert!(
        matches!(&e, PoolError::TaskTimeout { task, message, worker: Some(_) }
            if task == "until_stopped" && message == "task stopped after its task timeout of 1s 500ms"),
        "{e:?}"
    );
    // Process backend panics are crashes too, and the worker survives them.
    let q = pool(1).build().unwrap();
    assert!(
        matches!(q.apply::<_, ()>("panic", ()), Err(PoolError::Crashed { message: m, .. }) if m.contains("boom"))
    );
    assert_eq!(q.apply::<_, i64>("square", 2i64).unwrap(), 4);
}

fn context_and_cache() {
    for kind in [WorkerKind::Processes, WorkerKind::Threads] {
        let p = pool(2)
            .worker_kind(kind)
            .context("hello")
            .task_timeout(Duration::from_secs(9))
            .build()
            .unwrap();
        let v: Vec<(String, usize, u32, Option<u64>)> = p.map("ctx", vec![(); 8]).unwrap();
        for (c, n, w, t) in v {
            assert_eq!((c.as_str(), n, t), ("hello", 5, Some(9000)));
            assert!(w < 2);
        }
        // The registry's start hook ran in the worker before its first task.
        let made: String = p.apply("start_hook", ()).unwrap();
        assert_eq!(made, "made at the start, from \"hello\"", "{kind:?}");
    }
}

/// A worker has a command group unless the pool is built without them; then a command
/// a task starts gets a group of its own (`command_group()` is `None`).
fn command_groups_can_be_turned_off() {
    for kind in [WorkerKind::Processes, WorkerKind::Threads] {
        for on in [true, false] {
            let p = pool(1).worker_kind(kind).command_groups(on).build().unwrap();
            let has: bool = p.apply("has_group", ()).unwrap();
            assert_eq!(has, on, "{kind:?}, command_groups({on})");
        }
    }
}

/// This test binary run as a program that starts a zygote first thing in `main` (with a
/// zygote hook that panics when `panic`), then maps over a pool of 2: prints `main` and
/// its pid once, then the squares, then the pids of its workers' parents.
fn zygote_program(mode: &str) {
    let mut r = registry();
    match mode {
        "panic" => r.on_zygote_start(|| panic!("a zygote hook that panics")),
        "hang" => r.on_zygote_start(|| std::thread::sleep(Duration::from_secs(60))),
        _ => {}
    }
    jobpool::pool::zygote::start(&r);
    println!("main {}", std::process::id());
    let p = pool(2).build().unwrap();
    let v: Vec<u64> = p.map("square_u64", vec![1u64, 2, 3]).unwrap();
    println!("{v:?}");
    let pids: Vec<u32> = p.map("ppid", vec![(); 2]).unwrap();
    println!("{pids:?}");
    p.join();
    jobpool::pool::zygote::stop();
}

/// A program that starts a zygote gets forked workers (their parent is the zygote, not
/// the program); a zygote whose hook panics ends (it never returns into the program's
/// `main`, which would run twice) and the pool starts exec'd workers instead; so does a
/// zygote that does not answer (a hook that hangs), which `stop` then kills: nothing
/// hangs.
fn a_program_with_a_zygote() {
    for mode in ["ok", "panic", "hang"] {
        let t0 = Instant::now();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env("POOL_TEST_ZYGOTE", mode)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{mode}: main ran once: {stdout}");
        let program: u32 = lines[0].strip_prefix("main ").unwrap().parse().unwrap();
        assert_eq!(lines[1], "[1, 4, 9]", "{mode}");
        let parents: Vec<u32> = serde_json::from_str(lines[2]).unwrap();
        let forked = parents.iter().all(|&p| p != program);
        let execd = parents.iter().all(|&p| p == program);
        assert!(if mode == "ok" { forked } else { execd }, "{mode}: {program} {parents:?}");
        if mode == "hang" {
            // Given up after 10 s to answer, then killed after 10 s more at the end.
            assert!(t0.elapsed() < Duration::from_secs(40), "{mode}: {:?}", t0.elapsed());
        }
        if mode == "panic" {
            assert!(String::from_utf8_lossy(&out.stderr).contains("a zygote hook that panics"));
        }
    }
}

fn stream_all_items_bounded() {
    let p = pool(2).stream_capacity(64).build().unwrap();
    let pulled = Arc::new(AtomicUsize::new(0));
    let max_ahead = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let (pl, ma, rc) = (pulled.clone(), max_ahead.clone(), received.clone());
    let items = (0..20_000u64).map(move |i| {
        let n = pl.fetch_add(1, Ordering::SeqCst) + 1;
        ma.fetch_max(n - rc.load(Ordering::SeqCst), Ordering::SeqCst);
        let args = if i % 2 == 0 {
            Payload::Json(format!("[{i}, 1]"))
        } else {
            Payload::Bytes(postcard::to_allocvec(&(i as i64, 1i64)).unwrap())
        };
        Submission { id: i, func: "add".into(), args }
    });
    let mut seen = vec![false; 20_000];
    for o in p.run_stream(items).unwrap() {
        received.fetch_add(1, Ordering::SeqCst);
        assert_eq!(o.status, Status::Ok);
        let v = match o.value.as_ref().unwrap() {
            Payload::Json(s) => s.parse::<i64>().unwrap(),
            b @ Payload::Bytes(_) => b.decode::<i64>().unwrap(),
        };
        assert_eq!(v, o.id as i64 + 1);
        assert!(o.worker.unwrap() < 2 && o.started_at.is_some() && o.attempts == 1);
        assert!(!seen[o.id as usize]);
        seen[o.id as usize] = true;
    }
    assert!(seen.iter().all(|x| *x));
    assert!(max_ahead.load(Ordering::SeqCst) <= 64 + 1, "{}", max_ahead.load(Ordering::SeqCst));
}

fn stream_cancel() {
    let p = pool(2).build().unwrap();
    let items = (0..1000u64).map(|i| Submission {
        id: i,
        func: "sleep_ms".into(),
        args: Payload::Json(format!("[5000, {i}]")),
    });
    let s = p.run_stream(items).unwrap();
    let ctl = s.control();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        ctl.cancel();
    });
    let t0 = Instant::now();
    let outs: Vec<_> = s.collect();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(!outs.is_empty());
    assert!(
        outs.iter().all(|o| o.status == Status::Cancelled),
        "{:?}",
        outs.iter().find(|o| o.status != Status::Cancelled)
    );
    let ids: HashSet<u64> = outs.iter().map(|o| o.id).collect();
    assert_eq!(ids.len(), outs.len());
    assert_eq!(outs.iter().filter(|o| o.attempts == 1).count(), 2, "two were running");
}

/// Outcomes that come quickly one after another are taken together when the caller
/// lingers; the end of the run ends the wait at once (the last outcome is never held
/// for the whole `linger`).
fn stream_linger_gathers_outcomes_and_never_holds_the_last() {
    let p = pool(2).chunk_size(1).build().unwrap();
    let items = (0..40u64).map(|i| Submission {
        id: i,
        func: "sleep_ms".into(),
        args: Payload::Json(format!("[2, {i}]")),
    });
    let mut s = p.run_stream(items).unwrap();
    let t0 = Instant::now();
    let mut batches = Vec::new();
    while let Some(b) = s.next_batch_within(Duration::from_secs(20)) {
        batches.push(b.iter().map(|o| o.id).collect::<Vec<_>>());
    }
    // The first batch is not held (nothing came before it); the second waits for
    // everything else, until the stream ends.
    assert!(t0.elapsed() < Duration::from_secs(10), "held for {:?}", t0.elapsed());
    assert_eq!(batches.len(), 2, "{batches:?}");
    let ids: BTreeSet<u64> = batches.concat().into_iter().collect();
    assert_eq!(ids, (0..40).collect());
}

/// A lingering caller stops waiting once many outcomes wait: it does not hold the
/// stream's credits (and so the feed) for the whole `linger`.
fn stream_linger_ends_when_many_wait() {
    let p = pool(2).stream_capacity(64).build().unwrap();
    let items = (0..20_000u64).map(|i| Submission {
        id: i,
        func: "square".into(),
        args: Payload::Json(i.to_string()),
    });
    let mut s = p.run_stream(items).unwrap();
    let mut n = s.next_batch_within(Duration::from_secs(20)).unwrap().len();
    // Outcomes came just now: this one lingers, until half the capacity waits.
    let t0 = Instant::now();
    let second = s.next_batch_within(Duration::from_secs(20)).unwrap().len();
    assert!(t0.elapsed() < Duration::from_secs(10), "held for {:?}", t0.elapsed());
    assert!(second >= 32, "{second}");
    n += second;
    while let Some(b) = s.next_batch() {
        n += b.len();
    }
    assert_eq!(n, 20_000);
}

fn stream_stop_submitting() {
    let p = pool(2).chunk_size(4).stream_capacity(32).build().unwrap();
    let items = (0..1000u64).map(|i| Submission {
        id: i,
        func: "sleep_ms".into(),
        args: Payload::Json(format!("[300, {i}]")),
    });
    let s = p.run_stream(items).unwrap();
    let ctl = s.control();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        ctl.stop_submitting();
    });
    let outs: Vec<_> = s.collect();
    let ok = outs.iter().filter(|o| o.status == Status::Ok).count();
    let skipped = outs.iter().filter(|o| o.status == Status::Skipped).count();
    assert_eq!(ok, 2, "the two running tasks finish");
    assert_eq!(ok + skipped, outs.len());
    assert!(outs.len() <= 64);
    assert!(outs.iter().filter(|o| o.status == Status::Skipped).all(|o| o.attempts == 0));
}

fn dead_worker_program_is_an_error() {
    let t0 = Instant::now();
    let r = Pool::builder().workers(2).worker_program("/bin/true").build();
    assert!(matches!(r, Err(PoolError::Start(_))), "{:?}", r.err());
    assert!(t0.elapsed() < Duration::from_secs(5));
    let r = Pool::builder().workers(2).worker_program("/nonexistent/worker").build();
    assert!(
        matches!(&r, Err(PoolError::Start(m)) if m.contains("/nonexistent/worker")),
        "{:?}",
        r.err()
    );
}

fn terminate_and_close() {
    let p = pool(1).build().unwrap();
    let a = p.apply_async::<_, i64>("sleep_ms", (5000u64, 1i64)).unwrap();
    let b = p.apply_async::<_, i64>("sleep_ms", (5000u64, 2i64)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    p.terminate();
    assert_eq!(a.get(Some(Duration::from_secs(5))), Err(PoolError::Cancelled));
    assert_eq!(b.get(Some(Duration::from_secs(5))), Err(PoolError::Cancelled));
    assert!(matches!(p.apply_async::<_, i64>("square", 1i64), Err(PoolError::Closed)));
    // A map terminated half-way (chunks of 4 on one worker: some finished, some sent,
    // some still queued): the finished keep their values, every other item ends
    // cancelled, and nothing waits.
    let m = pool(1).chunk_size(4).build().unwrap();
    let r = m.map_async::<_, i64>("sleep_ms", (0..40i64).map(|i| (40u64, i))).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    m.terminate();
    assert_eq!(r.get(Some(Duration::from_secs(5))), Err(PoolError::Cancelled));
    let items = r.items(Some(Duration::from_secs(5))).unwrap();
    let done = items.iter().take_while(|x| x.is_ok()).count();
    assert!((1..40).contains(&done), "{items:?}");
    for (i, x) in items.iter().enumerate() {
        if i < done {
            assert_eq!(x.as_ref().ok(), Some(&(i as i64)));
        } else {
            assert!(matches!(x, Err(PoolError::Cancelled)), "item {i}: {x:?}");
        }
    }
    let q = pool(2).build().unwrap();
    let r = q.map_async::<_, i64>("square", 0..100i64).unwrap();
    q.close();
    assert!(matches!(q.apply_async::<_, i64>("square", 1i64), Err(PoolError::Closed)));
    q.join();
    assert_eq!(r.get(Some(Duration::from_secs(1))).unwrap().len(), 100);
}

fn drop_leaves_no_process() {
    let p = pool(2).build().unwrap();
    let _r = p.apply_async::<_, i64>("sleep_ms", (10_000u64, 1i64)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    drop(p);
}

fn stock_binary_is_a_worker() {
    // `jobpool` itself (cli::main_with calls run_if_worker) serves as a worker program.
    let p =
        Pool::builder().workers(1).worker_program(env!("CARGO_BIN_EXE_jobpool")).build().unwrap();
    let e = p
        .apply_json::<serde_json::Value>("no-such-kind", "{}")
        .unwrap()
        .get(Some(Duration::from_secs(10)))
        .unwrap_err();
    assert!(
        matches!(&e, PoolError::Task { message, .. } if message.contains("unknown task function")),
        "{e:?}"
    );
    p.join();
}

fn stream_mixed_functions_and_errors() {
    let p = pool(2).retries(2).build().unwrap();
    let items = (0..200u64).map(|i| match i % 3 {
        0 => Submission { id: i, func: "square".into(), args: Payload::Json(i.to_string()) },
        1 => Submission { id: i, func: "fail".into(), args: Payload::Json(format!("\"no {i}\"")) },
        _ => Submission {
            id: i,
            func: "add".into(),
            args: Payload::Json(format!("{{\"a\": {i}, \"b\": 1}}")),
        },
    });
    let mut n = 0;
    for o in p.run_stream(items).unwrap() {
        n += 1;
        match o.id % 3 {
            0 => assert_eq!(o.value.unwrap().json().unwrap(), (o.id * o.id).to_string()),
            1 => {
                assert_eq!(o.status, Status::Error);
                assert_eq!(o.error.as_deref(), Some(format!("no {}", o.id).as_str()));
                assert_eq!(o.error_data.as_deref(), Some(r#"{"code":7}"#));
                assert_eq!(o.attempts, 3, "retried twice");
            }
            _ => assert_eq!(o.value.unwrap().json().unwrap(), (o.id + 1).to_string()),
        }
    }
    assert_eq!(n, 200);
}

fn big_arguments_never_block_the_dispatcher() {
    // A 400 KB message blocks `send` until the worker reads it; while the only worker
    // runs a task past its timeout, the dispatcher must still be free to stop it.
    let p = pool(1)
        .task_timeout(Duration::from_millis(300))
        .grace_period(Duration::from_millis(100))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let slow = p.apply_async::<_, usize>("len_sleep", (20_000u64, vec![0u8; 10])).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let big: Vec<_> = (0..3)
        .map(|_| p.apply_async::<_, usize>("len_sleep", (0u64, vec![7u8; 400_000])).unwrap())
        .collect();
    assert!(matches!(slow.get(Some(Duration::from_secs(10))), Err(PoolError::TaskTimeout { .. })));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    for r in big {
        assert_eq!(r.get(Some(Duration::from_secs(10))).unwrap(), 400_000);
    }
}

fn worker_stdout_goes_to_stderr() {
    let out = Command::new(std::env::current_exe().unwrap()).arg("--print-probe").output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("probe done") && !stdout.contains("MARKER-"), "{stdout}");
    assert!(stderr.contains("MARKER-1"), "{stderr}");
}

/// `--print-probe`: a worker prints; with `worker_stdout_to_stderr` it lands on stderr.
fn print_probe() {
    let p = pool(1).worker_stdout_to_stderr(true).build().unwrap();
    p.apply::<_, ()>("print", "MARKER-1".to_string()).unwrap();
    p.join();
    println!("probe done");
}

/// Run this binary with `args` and `envs`, under a process limit, killed after `limit`;
/// returns (exit status, stdout, stderr).
fn run_self(args: &[&str], envs: &[(&str, &str)], limit: Duration) -> (String, String, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(args).envs(envs.iter().copied());
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    // A regression must not take the machine down: few processes (ignored by root with
    // CAP_SYS_RESOURCE; the depth fuse of `forgot_hook` is the real guard).
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 4096, rlim_max: 4096 };
            libc::setrlimit(libc::RLIMIT_NPROC, &lim);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break format!("{s}");
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break "killed after the time limit".to_string();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status, out, err)
}

fn forgotten_worker_hook_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("depth2");
    let mark_s = mark.to_string_lossy().to_string();
    let t0 = Instant::now();
    let (status, out, err) = run_self(
        &[],
        &[("POOL_TEST_FORGOT_HOOK", "0"), ("POOL_TEST_MARK", &mark_s)],
        Duration::from_secs(60),
    );
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert!(!mark.exists(), "a worker started a pool of its own: {status}\n{out}\n{err}");
    assert!(
        out.contains("build failed: ")
            && out.contains("jobpool::pool::worker::run_if_worker(&registry)"),
        "{status}\n{out}\n{err}"
    );
}

/// `POOL_TEST_FORGOT_HOOK=DEPTH`: a program that forgot `run_if_worker`. Its workers
/// inherit the variable with DEPTH + 1; a fuse stops a regression at depth 2.
fn forgot_hook(depth: u32) {
    if depth >= 2 {
        let _ = std::fs::write(std::env::var("POOL_TEST_MARK").unwrap(), "");
        std::process::exit(99);
    }
    // SAFETY: no other thread runs yet.
    unsafe { std::env::set_var("POOL_TEST_FORGOT_HOOK", (depth + 1).to_string()) };
    match Pool::builder().workers(1).registry(registry()).build() {
        Ok(p) => {
            println!("built");
            p.join();
        }
        Err(e) => println!("build failed: {e}"),
    }
}

fn worker_with_another_registry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("other-worker");
    let exe = std::env::current_exe().unwrap();
    std::fs::write(
        &script,
        format!("#!/bin/sh\nPOOL_TEST_OTHER_REGISTRY=1 exec '{}' \"$@\"\n", exe.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let t0 = Instant::now();
    let r = pool(2).worker_program(&script).build();
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let e = r.err().expect("refused");
    let msg = e.to_string();
    assert!(msg.contains("square") && msg.contains("extra"), "{msg}");
    assert!(
        matches!(&e, PoolError::RegistryMismatch { differences, .. } if differences.len() == 2),
        "{e:?}"
    );
}

fn types_are_checked_not_reinterpreted() {
    let p = pool(1).build().unwrap();
    // An i32 range for a function of u64.
    let e = p.map::<_, u64>("square_u64", 0..6).unwrap_err().to_string();
    assert!(e.contains("u64") && e.contains("i32"), "{e}");
    // A string where a number is expected.
    let e = p.apply::<_, u64>("sqr", ("a",)).unwrap_err().to_string();
    assert!(e.contains("(u64,)") && e.contains("(&str,)"), "{e}");
    // A struct read as a String.
    let e = p.apply::<_, String>("point", ()).unwrap_err();
    assert!(matches!(&e, PoolError::ValueType { task, .. } if task == "point"), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("Point") && e.contains("String"), "{e}");
    assert_eq!(
        p.apply::<_, u64>("sqr", ("a",)).unwrap_err(),
        PoolError::ArgumentType {
            task: "sqr".into(),
            registered: "(u64,)".into(),
            given: "(&str,)".into()
        }
    );
    let e = p.imap::<_, u64>("square_u64", 0..3i64).err().expect("checked").to_string();
    assert!(e.contains("i64"), "{e}");
    // The right types work; so do &str for String and a slice for a Vec.
    assert_eq!(p.map::<_, u64>("square_u64", 0..4u64).unwrap(), vec![0, 1, 4, 9]);
    assert_eq!(p.apply::<_, Point>("point", ()).unwrap(), Point { x: 1, y: 2 });
    assert_eq!(p.apply::<_, usize>("len_sleep", (0u64, &[1u8, 2][..])).unwrap(), 2);
    p.apply::<_, ()>("print", "&str for String").unwrap();
    // JSON calls are untyped and keep working.
    let v: serde_json::Value = p.apply_json("sqr", "[3]").unwrap().get(None).unwrap();
    assert_eq!(v, serde_json::json!(9));
    p.join();
}

fn close_then_join_never_hangs() {
    // A recycled worker must be replaced while joining (CPython bug 10332).
    let p = Arc::new(pool(1).max_tasks_per_worker(1).build().unwrap());
    let r = p.map_async::<_, i64>("sleep_ms", (0..6i64).map(|i| (20u64, i))).unwrap();
    p.close();
    let (tx, rx) = mpsc::channel();
    let p2 = p.clone();
    std::thread::spawn(move || {
        p2.join();
        let _ = tx.send(());
    });
    assert!(rx.recv_timeout(Duration::from_secs(30)).is_ok(), "join hung");
    assert_eq!(r.get(Some(Duration::from_secs(1))).unwrap(), (0..6).collect::<Vec<_>>());
    // After close, idle workers exit once the work is done, without join.
    let q = pool(2).build().unwrap();
    assert_eq!(q.apply::<_, i64>("square", 3i64).unwrap(), 9);
    q.close();
    let t0 = Instant::now();
    while !children().is_empty() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(children().is_empty(), "{:?}", children());
    q.join();
}

fn callbacks_finish_before_ready() {
    let p = pool(2).build().unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let r = p
        .apply_async_with::<_, i64, _, _>(
            "square",
            4i64,
            move |_| {
                std::thread::sleep(Duration::from_millis(300));
                d.store(1, Ordering::SeqCst);
            },
            |_| {},
        )
        .unwrap();
    // A slow callback does not stall the pool.
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(p.apply::<_, i64>("square", 5i64).unwrap(), 25);
    assert!(t0.elapsed() < Duration::from_millis(280), "{:?}", t0.elapsed());
    while !r.ready() {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(done.load(Ordering::SeqCst), 1, "ready before the callback ran");
    assert_eq!(r.get(None).unwrap(), 16);
    let d = done.clone();
    let m = p
        .map_async_with::<_, i64, _, _>(
            "square",
            0..3i64,
            move |_| {
                std::thread::sleep(Duration::from_millis(200));
                d.store(2, Ordering::SeqCst);
            },
            |_| {},
        )
        .unwrap();
    assert!(m.wait(Some(Duration::from_secs(10))));
    assert_eq!(done.load(Ordering::SeqCst), 2, "wait returned before the callback ran");
    // A panicking callback is reported as that result's error; the pool goes on.
    let r = p
        .apply_async_with::<_, i64, _, _>("square", 2i64, |_| panic!("callback boom"), |_| {})
        .unwrap();
    let e = r.get(Some(Duration::from_secs(10))).unwrap_err();
    assert!(e.to_string().contains("callback boom"), "{e:?}");
    assert_eq!(p.apply::<_, i64>("square", 6i64).unwrap(), 36);
    p.join();
}

fn errors_say_what_happened_as_data() {
    // A crash: the task, the worker's pid, the signal.
    let p = pool(1).build().unwrap();
    let r = p.apply_async::<_, i64>("sleep_ms", (5_000u64, 1i64)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let victim = live_children()[0].0;
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let e = r.get(Some(Duration::from_secs(10))).unwrap_err();
    assert_eq!(
        e,
        PoolError::Crashed {
            task: "sleep_ms".into(),
            message: "worker crashed: killed by signal 9 (SIGKILL)".into(),
            worker: Some(0),
            pid: Some(victim),
            exit: Some(WorkerExit::Signal(libc::SIGKILL)),
        }
    );
    let o = r.outcome().unwrap();
    assert_eq!((o.task, o.worker_pid), ("sleep_ms", Some(victim)));
    // A panic: the worker survives, no exit.
    let e = p.apply::<_, ()>("panic", ()).unwrap_err();
    assert!(
        matches!(&e, PoolError::Crashed { task, exit: None, pid: Some(_), .. } if task == "panic"),
        "{e:?}"
    );
    p.join();
    // Options the pool cannot use are errors, not silently changed.
    for (b, option) in [(pool(0), "workers"), (pool(1).chunk_size(0), "chunk_size")] {
        let e = b.build().err().expect("refused");
        assert!(matches!(e, PoolError::InvalidOption { option: o, .. } if o == option), "{e:?}");
    }
}

fn imap_is_lazy_and_bounded() {
    let p = pool(2).stream_capacity(64).build().unwrap();
    // An endless input, which must be taken only as workers need it.
    let pulled = Arc::new(AtomicUsize::new(0));
    let endless = |pulled: Arc<AtomicUsize>| {
        (0i64..).inspect(move |_| {
            let n = pulled.fetch_add(1, Ordering::SeqCst);
            assert!(n < 100_000, "the input is read ahead without bound");
        })
    };
    let mut it = p.imap::<_, i64>("square", endless(pulled.clone())).unwrap();
    for i in 0..2_000i64 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
        let ahead = pulled.load(Ordering::SeqCst) as i64 - (i + 1);
        assert!(ahead <= 64, "{ahead} items taken ahead of the reader");
    }
    drop(it);
    pulled.store(0, Ordering::SeqCst);
    let mut u = p.imap_unordered::<_, i64>("square", endless(pulled.clone())).unwrap();
    let mut seen = HashSet::new();
    for _ in 0..2_000 {
        let (i, v) = u.next().unwrap();
        assert_eq!(v.unwrap(), (i * i) as i64);
        assert!(seen.insert(i));
    }
    assert!(pulled.load(Ordering::SeqCst) <= 2_000 + 64);
    drop(u);
    // An input item that cannot be sent ends the input: the results before it come first.
    let got: Vec<_> = p.imap::<_, i64>("fussy", (0..6).map(Fussy)).unwrap().collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[..3].iter().map(|r| r.clone().unwrap()).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(matches!(&got[3], Err(PoolError::Encode(_))), "{got:?}");
    let mut got: Vec<_> = p.imap_unordered::<_, i64>("fussy", (0..6).map(Fussy)).unwrap().collect();
    assert!(matches!(got.pop(), Some((3, Err(PoolError::Encode(_))))), "{got:?}");
    assert_eq!(got.len(), 3);
    // A per-item timeout, as Python's next(timeout).
    let mut it = p.imap::<_, i64>("sleep_ms", vec![(400u64, 1i64)]).unwrap();
    assert_eq!(it.next_timeout(Duration::from_millis(50)), Err(PoolError::WaitTimeout));
    assert_eq!(it.next_timeout(Duration::from_secs(10)), Ok(Some(Ok(1))));
    assert_eq!(it.next_timeout(Duration::from_secs(1)), Ok(None));
    let mut u = p.imap_unordered::<_, i64>("sleep_ms", vec![(400u64, 1i64)]).unwrap();
    assert_eq!(u.next_timeout(Duration::from_millis(50)), Err(PoolError::WaitTimeout));
    assert_eq!(u.next_timeout(Duration::from_secs(10)), Ok(Some((0, Ok(1)))));
    assert_eq!(u.next_timeout(Duration::from_secs(1)), Ok(None));
    p.join();
}

// ---------------------------------------------------------------- runner

fn main() {
    if let Ok(depth) = std::env::var("POOL_TEST_FORGOT_HOOK") {
        forgot_hook(depth.parse().unwrap());
        return;
    }
    if std::env::var_os("POOL_TEST_OTHER_REGISTRY").is_some() {
        worker::run_if_worker(&other_registry());
    }
    worker::run_if_worker(&registry());
    if std::env::var_os("POOL_TEST_ZYGOTE").is_some() {
        zygote_program(&std::env::var("POOL_TEST_ZYGOTE").unwrap());
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("--print-probe") {
        print_probe();
        return;
    }
    let tests: &[(&str, fn())] = &[
        ("apply_and_error_message", apply_and_error_message),
        ("build_returns_when_one_worker_is_ready", build_returns_when_one_worker_is_ready),
        (
            "a_starting_worker_gets_the_next_task_not_a_later_one",
            a_starting_worker_gets_the_next_task_not_a_later_one,
        ),
        ("json_calls", json_calls),
        ("sigkill_mid_task", sigkill_mid_task),
        (
            "uneven_tasks_never_wait_behind_a_busy_worker",
            uneven_tasks_never_wait_behind_a_busy_worker,
        ),
        ("stolen_tasks_run_exactly_once", stolen_tasks_run_exactly_once),
        ("sigkill_with_retries", sigkill_with_retries),
        ("abort_inside_a_chunk_costs_one_task", abort_inside_a_chunk_costs_one_task),
        (
            "a_worker_death_never_reruns_a_finished_task",
            a_worker_death_never_reruns_a_finished_task,
        ),
        ("retry_on_limits_which_failures_are_retried", retry_on_limits_which_failures_are_retried),
        ("task_timeout_stops_only_that_task", task_timeout_stops_only_that_task),
        ("grandchild_killed_with_worker", grandchild_killed_with_worker),
        ("ordering_under_random_durations", ordering_under_random_durations),
        ("map_failure_keeps_other_items", map_failure_keeps_other_items),
        ("big_chunks_keep_every_other_item", big_chunks_keep_every_other_item),
        (
            "big_items_split_across_batches_keep_every_value_and_outcome",
            big_items_split_across_batches_keep_every_value_and_outcome,
        ),
        ("map_get_while_running_is_the_same_answer", map_get_while_running_is_the_same_answer),
        ("callbacks", callbacks),
        ("get_timeout_on_long_task", get_timeout_on_long_task),
        ("recycling_after_max_tasks", recycling_after_max_tasks),
        ("threads_backend_parity", threads_backend_parity),
        ("context_and_cache", context_and_cache),
        ("command_groups_can_be_turned_off", command_groups_can_be_turned_off),
        ("a_program_with_a_zygote", a_program_with_a_zygote),
        ("stream_all_items_bounded", stream_all_items_bounded),
        ("stream_cancel", stream_cancel),
        ("stream_stop_submitting", stream_stop_submitting),
        (
            "stream_linger_gathers_outcomes_and_never_holds_the_last",
            stream_linger_gathers_outcomes_and_never_holds_the_last,
        ),
        ("stream_linger_ends_when_many_wait", stream_linger_ends_when_many_wait),
        ("dead_worker_program_is_an_error", dead_worker_program_is_an_error),
        ("terminate_and_close", terminate_and_close),
        ("drop_leaves_no_process", drop_leaves_no_process),
        ("stock_binary_is_a_worker", stock_binary_is_a_worker),
        ("stream_mixed_functions_and_errors", stream_mixed_functions_and_errors),
        ("big_arguments_never_block_the_dispatcher", big_arguments_never_block_the_dispatcher),
        ("worker_stdout_goes_to_stderr", worker_stdout_goes_to_stderr),
        ("forgotten_worker_hook_is_an_error", forgotten_worker_hook_is_an_error),
        ("worker_with_another_registry_is_refused", worker_with_another_registry_is_refused),
        ("types_are_checked_not_reinterpreted", types_are_checked_not_reinterpreted),
        ("close_then_join_never_hangs", close_then_join_never_hangs),
        ("callbacks_finish_before_ready", callbacks_finish_before_ready),
        ("errors_say_what_happened_as_data", errors_say_what_happened_as_data),
        ("imap_is_lazy_and_bounded", imap_is_lazy_and_bounded),
    ];
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let failures = Mutex::new(Vec::new());
    let mut ran = 0;
    for (name, f) in tests {
        if !filters.is_empty() && !filters.iter().any(|x| name.contains(x.as_str())) {
            continue;
        }
        ran += 1;
        let t0 = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(f));
        let left = children();
        let verdict = match (&r, left.is_empty()) {
            (Ok(()), true) => "ok".to_string(),
            (Ok(()), false) => format!("FAILED: child processes left: {left:?}"),
            (Err(_), _) => "FAILED".to_string(),
        };
        println!("test {name} ... {verdict} ({:.2?})", t0.elapsed());
        if verdict != "ok" {
            failures.lock().unwrap().push(name.to_string());
        }
        // Reap anything left so that later tests start clean.
        for (pid, _) in left {
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
                libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
            }
        }
    }
    let failures = failures.into_inner().unwrap();
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failures.is_empty() { "ok" } else { "FAILED" },
        ran - failures.len(),
        failures.len()
    );
    if !failures.is_empty() {
        println!("failures: {failures:?}");
        std::process::exit(101);
    }
}
