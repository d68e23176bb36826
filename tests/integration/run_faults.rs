//! Fault scenarios of `jobpool run`: every status from real jobs, grandchildren, worker
//! deaths, deadlines, signals, resume after kills and edits, hard sink values, injection.
//! Each test asserts behaviour with generous bounds and checks that nothing it started
//! survives.

#[allow(unused_imports)]
use std::fs;
#[allow(unused_imports)]
use std::path::{Path, PathBuf};
#[allow(unused_imports)]
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::run_support::*;
use serde_json::Value;

/// Extra helpers of this file.
fn wait_for(what: impl Fn() -> bool) {
    let start = Instant::now();
    while !what() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn jsonl_text(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Files in `dir` (not recursive) whose name contains `.tmp-`: temporary sink files.
fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

/// The `state` of every run.json of the job.
fn run_states(job: &Job) -> Vec<String> {
    let mut files = Vec::new();
    walk(&job.path(".jobpool/runs"), &mut files);
    files
        .iter()
        .filter(|f| f.ends_with("run.json"))
        .map(|f| {
            let v: Value = serde_json::from_str(&fs::read_to_string(f).unwrap()).unwrap();
            v["state"].as_str().unwrap().to_string()
        })
        .collect()
}

fn no_panic(o: &Output) {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(o.status.code(), Some(101), "{err}");
}

/// A value as text, as templates and CSV cells write it.
fn as_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Every status from real jobs, retries

#[test]
fn every_failing_status_from_real_commands_counts_its_attempts() {
    let job = Job::new(
        r#"
workers = 2
retries = 1
task-timeout = "1s"
grace-period = "100ms"
[task]
kind = "command"
shell = "echo {i} >> tries; case {i} in 0) echo fine;; 1) echo bad >&2; exit 3;; 2) sleep 30;; 3) kill -9 $PPID; sleep 5;; 4) kill -9 $$;; esac"
[args]
i = [0, 1, 2, 3, 4]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    no_panic(&out);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(statuses(&recs), ["ok", "error", "timeout", "crashed", "error"]);
    let attempts: Vec<u64> = recs.iter().map(|r| r["attempts"].as_u64().unwrap()).collect();
    assert_eq!(attempts, [1, 2, 2, 2, 2]);
    assert_eq!(recs[0]["value"], "fine");
    assert_eq!(recs[1]["exit_code"], 3);
    assert!(recs[1]["stderr"].as_str().unwrap().contains("bad"));
    assert_eq!(recs[2]["error"], "timed out after 1s");
    assert_eq!(recs[4]["signal"], 9);
    // Every retry really ran again: two lines per failing task.
    let tries = fs::read_to_string(job.path("tries")).unwrap();
    for i in 1..5 {
        assert_eq!(tries.lines().filter(|l| *l == i.to_string()).count(), 2, "{tries}");
    }
}

#[test]
fn cancelled_and_skipped_come_from_real_jobs() {
    let job = Job::new(
        r#"
workers = 1
chunk-size = 1
on-failure = "stop"
[task]
kind = "command"
shell = "if [ {i} = 1 ]; then exit 4; fi; if [ {i} -ge 2 ]; then sleep 0.5; fi; echo {i}"
[args]
i = { range = [0, 6] }
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    let st = statuses(&recs);
    assert_eq!(&st[..2], ["ok", "error"]);
    assert!(st[2..].iter().all(|s| s == "ok" || s == "skipped"), "{st:?}");
    assert_eq!(st.last().unwrap(), "skipped", "{st:?}");
    for r in recs.iter().filter(|r| r["status"] == "skipped") {
        assert_eq!(r["attempts"], 0);
        assert!(r.get("worker").is_none(), "{r}");
    }

    let job = Job::new(
        r#"
workers = 1
timeout = "300ms"
grace-period = "50ms"
[task]
kind = "script"
script = "sleep(30); i"
[args]
i = [0, 1, 2]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let start = Instant::now();
    let out = job.run(&[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(statuses(&job.jsonl("out.jsonl")), ["cancelled", "cancelled", "cancelled"]);
}

#[test]
fn a_worker_crash_is_retried_and_the_retry_can_succeed() {
    let job = Job::new(
        r#"
workers = 2
retries = 2
[task]
kind = "command"
shell = "if [ {i} = 1 ] && [ ! -e crashed ]; then touch crashed; kill -9 $PPID; sleep 5; fi; echo {i}"
[args]
i = [0, 1, 2, 3]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(statuses(&recs), ["ok", "ok", "ok", "ok"]);
    assert_eq!(recs[1]["attempts"], 2);
    assert_eq!(recs[1]["value"], "1");
}

// ---------------------------------------------------------------------------------------
// Grandchildren

#[test]
fn a_background_child_left_after_a_normal_exit_is_killed() {
    let job = Job::new(
        r#"
workers = 2
[task]
kind = "command"
shell = "sleep 300 & echo $! > pids/{i}; nohup sleep 300 > /dev/null 2>&1 & echo $! >> pids/{i}; echo done"
[args]
i = [0, 1, 2]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    fs::create_dir(job.path("pids")).unwrap();
    let start = Instant::now();
    let out = job.run(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(10), "waited for the background child");
    assert_eq!(statuses(&job.jsonl("out.jsonl")), ["ok", "ok", "ok"]);
    let pids = read_pids(&job.path("pids"));
    assert_eq!(pids.len(), 6);
    assert_eq!(survivors(&pids), Vec::<i32>::new(), "background children outlived their task");
}

#[test]
fn a_command_ignoring_term_is_killed_after_the_grace_period() {
    let job = Job::new(
        r#"
workers = 1
task-timeout = "300ms"
grace-period = "300ms"
[task]
kind = "command"
shell = "trap '' TERM; echo $$ > pids/0; sh -c 'trap \"\" TERM; sleep 300' & echo $! >> pids/0; wait; wait"
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    fs::create_dir(job.path("pids")).unwrap();
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(statuses(&recs), ["timeout"]);
    assert_eq!(recs[0]["signal"], 9, "{:?}", recs[0]);
    let ms = recs[0]["duration_ms"].as_f64().unwrap();
    assert!(ms >= 550.0, "killed before the grace period ended: {ms} ms");
    assert_eq!(survivors(&read_pids(&job.path("pids"))), Vec::<i32>::new());
}

#[test]
fn a_pipeline_that_times_out_loses_every_stage() {
    let job = Job::new(
        r#"
workers = 2
task-timeout = "1s"
grace-period = "100ms"
[task]
kind = "command"
shell = "sh -c 'echo $$ >> pids/{i}; exec sleep 300' | sh -c 'echo $$ >> pids/{i}; exec sleep 301' | cat"
[args]
i = [0, 1]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    fs::create_dir(job.path("pids")).unwrap();
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(statuses(&job.jsonl("out.jsonl")), ["timeout", "timeout"]);
    let pids = read_pids(&job.path("pids"));
    assert_eq!(pids.len(), 4);
    assert_eq!(survivors(&pids), Vec::<i32>::new());
}

#[test]
fn a_setsid_escape_survives_but_does_not_hold_the_task() {
    // What we cannot catch (documented): a process that leaves the group with setsid.
    // It must not hold the task (or the run) by keeping the command's output open.
    let job = Job::new(
        r#"
[task]
kind = "command"
shell = "setsid sh -c 'echo $$ > pids/0; exec sleep 300' & sleep 0.3; echo started"
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    fs::create_dir(job.path("pids")).unwrap();
    let start = Instant::now();
    let out = job.run(&[]);
    let took = start.elapsed();
    let pids = read_pids(&job.path("pids"));
    for &p in &pids {
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(took < Duration::from_secs(8), "the escaped process held the task: {took:?}");
    let recs = job.jsonl("out.jsonl");
    assert_eq!(recs[0]["value"], "started");
}

#[test]
fn threads_backend_commands_do_not_outlive_a_cancel() {
    // With threads, commands run on jobpool's own threads and the pool does not wait for
    // a thread it cancelled: the pool must kill their groups before it ends.
    let job = Job::new(
        r#"
workers = 2
backend = "threads"
timeout = "1500ms"
grace-period = "300ms"
[task]
kind = "command"
shell = "trap '' TERM; echo $$ > pids/{i}; sleep 300 & echo $! >> pids/{i}; wait; wait"
[args]
i = [0, 1]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    fs::create_dir(job.path("pids")).unwrap();
    let out = job.run(&[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(statuses(&job.jsonl("out.jsonl")), ["cancelled", "cancelled"]);
    let pids = read_pids(&job.path("pids"));
    assert_eq!(pids.len(), 4);
    // Gone when jobpool has exited, not eventually.
    let alive: Vec<i32> = pids.iter().copied().filter(|&p| pid_alive(p)).collect();
    for &p in &alive {
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    assert_eq!(alive, Vec::<i32>::new(), "task processes outlived jobpool");
}

/// With threads, a SIGKILLed jobpool leaves no command behind either, also not a later
/// task's: each thread worker's commands join a process group whose guard (a child of the
/// pool's dispatcher thread, outside the group) kills it when jobpool dies. Found by the
/// chaos runner (its `threads` notes).
#[test]
fn threads_backend_commands_do_not_outlive_a_sigkilled_jobpool() {
    let job = Job::new(
        r#"
workers = 2
backend = "threads"
chunk-size = 1
[task]
kind = "command"
program = ["sh", "-c", "if [ $0 -ge 2 ]; then sleep 30 & echo $! >> pids/$0; echo $$ >> pids/$0; wait; fi", "{i}"]
[args]
i = [0, 1, 2, 3]
"#,
    );
    fs::create_dir(job.path("pids")).unwrap();
    let mut child = job.spawn(&[]);
    wait_for_pids(&job.path("pids"), 4);
    child.kill().unwrap();
    child.wait().unwrap();
    let pids = read_pids(&job.path("pids"));
    assert_eq!(survivors(&pids), Vec::<i32>::new(), "task processes outlived jobpool");
}

// ---------------------------------------------------------------------------------------
// Worker deaths

#[test]
fn a_stopped_worker_still_hits_the_task_timeout() {
    let job = Job::new(
        r#"
workers = 2
task-timeout = "300ms"
grace-period = "100ms"
[task]
kind = "command"
shell = "if [ {i} = 1 ]; then (sleep 0.1; kill -STOP $PPID) & sleep 300 & echo $! > pids/1; wait; fi; echo {i}"
[args]
i = [0, 1, 2, 3]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    fs::create_dir(job.path("pids")).unwrap();
    let start = Instant::now();
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(20));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(statuses(&recs), ["ok", "timeout", "ok", "ok"]);
    // Reported in the job's terms, not the pool's backstop.
    let err = recs[1]["error"].as_str().unwrap();
    assert!(err.starts_with("timed out after 300ms"), "{err}");
    assert_eq!(survivors(&read_pids(&job.path("pids"))), Vec::<i32>::new());
}

// ---------------------------------------------------------------------------------------
// Scripts

#[test]
fn script_memory_blowups_are_errors_not_crashes() {
    let job = Job::new(
        r#"
workers = 2
[task]
kind = "script"
script = '''
switch i {
  0 => { let s = "ab"; loop { s += s; } },
  1 => { let a = [1]; loop { a += a; } },
  2 => { let b = blob(1000000000); b.len() },
  _ => i,
}
'''
[args]
i = [0, 1, 2, 3]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    no_panic(&out);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(statuses(&recs), ["error", "error", "error", "ok"]);
    assert!(recs[0]["error"].as_str().unwrap().contains("Length of string"));
    assert!(recs[1]["error"].as_str().unwrap().contains("Size of array"));
    assert!(recs[2]["error"].as_str().unwrap().contains("too large"));
}

#[test]
fn runaway_scripts_end_at_the_task_timeout() {
    // A busy loop, a loop of short sleeps, and an array growing by `push` (whose size
    // checks the operation limit does not see) all end promptly at the task timeout.
    // The busy loop does some work in each turn: an empty `loop { }` reaches the
    // operation limit (an `error`) in about 0.2 s in a release build.
    let job = Job::new(
        r#"
workers = 3
task-timeout = "400ms"
[task]
kind = "script"
script = '''
switch i {
  0 => { let s = 0; loop { s += 1; } },
  1 => { loop { sleep(0.001); } },
  _ => { let a = []; loop { a.push(1); } },
}
'''
[args]
i = [0, 1, 2]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let start = Instant::now();
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(8), "{:?}", start.elapsed());
    let recs = job.jsonl("out.jsonl");
    assert_eq!(statuses(&recs), ["timeout", "timeout", "timeout"]);
    for r in &recs {
        assert_eq!(r["attempts"], 1);
        assert!(r["duration_ms"].as_f64().unwrap() < 4000.0, "{r}");
    }
}

#[test]
fn the_script_cpu_limit_ends_work_the_operation_limit_misses() {
    use jobpool::task::script::{ScriptEngine, ScriptErrorKind, ScriptLimits};
    let limits =
        ScriptLimits { max_cpu_time: Duration::from_millis(300), ..ScriptLimits::default() };
    let engine = ScriptEngine::compile_with_limits(
        "let a = []; for k in 0..1000000 { a.push(k); } a.len()",
        &[],
        limits,
    )
    .unwrap();
    let start = Instant::now();
    let err = engine.eval(&[], &|| false, None).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    assert_eq!(err.kind, ScriptErrorKind::Runtime);
    assert!(err.message.contains("CPU time"), "{err}");
    // Sleeping is not work.
    let engine = ScriptEngine::compile_with_limits("sleep(0.5); 7", &[], limits).unwrap();
    assert_eq!(engine.eval(&[], &|| false, None).unwrap(), Value::from(7));
}

// ---------------------------------------------------------------------------------------
// Deadlines

#[test]
fn a_deadline_with_retries_then_resume_reruns_only_what_did_not_finish() {
    let toml = |sleep: &str| {
        format!(
            r#"
workers = 1
chunk-size = 1
retries = 2
timeout = "2s"
grace-period = "50ms"
[task]
kind = "command"
shell = "echo {{i}} >> ran.log; if [ {{i}} -ge 2 ]; then sleep {sleep}; fi; echo {{i}}"
[args]
i = [0, 1, 2, 3]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#
        )
    };
    let job = Job::new(&toml("30"));
    let start = Instant::now();
    let out = job.run(&[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(statuses(&job.jsonl("out.jsonl")), ["ok", "ok", "cancelled", "cancelled"]);
    // Cancelled is not retried.
    let log = fs::read_to_string(job.path("ran.log")).unwrap();
    assert_eq!(log.lines().filter(|l| *l == "2").count(), 1, "{log}");

    fs::write(job.path("ran.log"), "").unwrap();
    job.write("job.toml", &toml("0"));
    let out = job.run(&["--resume"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(statuses(&recs), ["ok", "ok", "ok", "ok"]);
    let resumed: Vec<bool> = recs.iter().map(|r| r["resumed"].as_bool().unwrap_or(false)).collect();
    // The task changed (sleep 30 -> sleep 0): every key changed, everything ran again.
    assert_eq!(resumed, [false, false, false, false]);

    // Unchanged task, deadline shorter than the first task: nothing finishes, then a
    // resume without the deadline runs only those.
    fs::write(job.path("ran.log"), "").unwrap();
    let out = job.run(&["--resume", "--timeout", "1ms"]);
    assert_eq!(code(&out), 0, "all were ok before: {}", stderr(&out));
    assert_eq!(fs::read_to_string(job.path("ran.log")).unwrap(), "", "finished work redone");
}

#[test]
fn a_deadline_shorter_than_the_first_task_cancels_everything() {
    let job = Job::new(
        r#"
workers = 2
timeout = "200ms"
grace-period = "100ms"
[task]
kind = "command"
shell = "echo $$ >> pids/{i}; sleep 300 & echo $! >> pids/{i}; wait"
[args]
i = { range = [0, 6] }
[[sink]]
to = "out.csv"
format = "csv"
"#,
    );
    fs::create_dir(job.path("pids")).unwrap();
    let start = Instant::now();
    let out = job.run(&[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(10));
    let rows = parse_csv(&fs::read_to_string(job.path("out.csv")).unwrap());
    assert_eq!(rows.len(), 7);
    assert!(rows[1..].iter().all(|r| r[1] == "cancelled"), "{rows:?}");
    assert!(stderr(&out).contains("timeout passed"), "{}", stderr(&out));
    assert_eq!(survivors(&read_pids(&job.path("pids"))), Vec::<i32>::new());
}

// ---------------------------------------------------------------------------------------
// Signals

#[test]
fn sighup_is_an_interrupt_with_complete_sinks() {
    let job = Job::new(
        r#"
workers = 2
grace-period = "100ms"
[task]
kind = "command"
shell = "if [ {i} = 0 ]; then echo zero; else echo $$ >> pids/{i}; sleep 300 & echo $! >> pids/{i}; wait; fi"
[args]
i = [0, 1, 2, 3]
[[sink]]
to = "out/r.json"
format = "json"
"#,
    );
    fs::create_dir(job.path("pids")).unwrap();
    let child = job.spawn(&[]);
    // Tasks 1 and 2 running: task 0 is done (two workers).
    wait_for(|| read_pids(&job.path("pids")).len() >= 4);
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let out = wait_output(child);
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    let arr: Value =
        serde_json::from_str(&fs::read_to_string(job.path("out/r.json")).unwrap()).unwrap();
    let st: Vec<&str> =
        arr.as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(st[0], "ok");
    assert!(st[1..].iter().all(|s| *s == "cancelled"), "{st:?}");
    assert_eq!(temp_files(&job.path("out")), Vec::<String>::new());
    assert_eq!(run_states(&job), ["finished"]);
    assert_eq!(survivors(&read_pids(&job.path("pids"))), Vec::<i32>::new());
}

#[test]
fn an_interrupt_at_any_early_moment_leaves_a_clean_state() {
    let job = Job::new(
        r#"
workers = 2
grace-period = "100ms"
[task]
kind = "command"
shell = "sleep 0.2; echo {i}"
[args]
i = { range = [0, 6] }
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    for delay_ms in [0u64, 2, 5, 10, 20, 40, 80] {
        let _ = fs::remove_file(job.path("out.jsonl"));
        let child = job.spawn(&[]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = wait_output(child);
        no_panic(&out);
        match out.status.code() {
            // Before the handlers were installed: the default action, nothing written.
            None => assert!(!job.path("out.jsonl").exists()),
            Some(c) => {
                assert!(c == 130 || c == 0, "{delay_ms} ms: {c} {}", stderr(&out));
                assert_eq!(job.jsonl("out.jsonl").len(), 6, "{delay_ms} ms");
            }
        }
        assert_eq!(temp_files(job.dir.path()), Vec::<String>::new(), "{delay_ms} ms");
    }
    // Every run that got a run folder finished it.
    assert!(run_states(&job).iter().all(|s| s == "finished"), "{:?}", run_states(&job));
}

#[test]
fn a_closed_stdout_pipe_ends_the_run_quietly() {
    let job = Job::new(
        r#"
workers = 2
grace-period = "100ms"
[task]
kind = "command"
shell = "echo $$ >> pids/{i}; sleep 0.05; echo {i}"
[args]
i = { range = [0, 300] }
"#,
    );
    fs::create_dir(job.path("pids")).unwrap();
    let mut child = job.spawn(&[]);
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 2];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    assert_eq!(&first, b"0\n");
    drop(stdout); // `jobpool run job.toml | head -1`
    let start = Instant::now();
    let out = wait_output(child);
    no_panic(&out);
    assert!(start.elapsed() < Duration::from_secs(10), "kept running after the reader left");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "a closed pipe is not worth a message");
    assert!(read_pids(&job.path("pids")).len() < 300, "ran everything");
    assert_eq!(survivors(&read_pids(&job.path("pids"))), Vec::<i32>::new());
    assert_eq!(run_states(&job), ["finished"]);
}

// ---------------------------------------------------------------------------------------
// Resume

#[test]
fn resume_after_random_sigkills_keeps_every_record_exactly_once() {
    let job = Job::new(
        r#"
workers = 3
[task]
kind = "command"
shell = "sleep 0.0$(( {x} % 7 )); echo {x} >> ran.log; echo $(( {x} * 3 ))"
[args]
x = { range = [0, 40] }
[[sink]]
to = "out.jsonl"
format = "jsonl"
[[sink]]
to = "out.json"
format = "json"
"#,
    );
    for round in 0..8u64 {
        let mut child = job.spawn(&["--resume"]);
        std::thread::sleep(Duration::from_millis(30 + (round * 37) % 250));
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
    }
    std::thread::sleep(Duration::from_millis(1100)); // temporary files count as stale
    let out = job.run(&["--resume"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(recs.len(), 40);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["index"], i as u64);
        assert_eq!(r["status"], "ok");
        assert_eq!(r["value"], (i * 3).to_string());
    }
    let arr: Value =
        serde_json::from_str(&fs::read_to_string(job.path("out.json")).unwrap()).unwrap();
    assert_eq!(arr.as_array().unwrap(), &recs);
    // Each key was computed fresh, and ok, exactly once over all runs.
    let mut fresh = std::collections::HashMap::<String, u32>::new();
    for r in job.journal() {
        if r["status"] == "ok" && r.get("resumed").is_none() {
            *fresh.entry(r["key"].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    assert_eq!(fresh.len(), 40);
    assert!(fresh.values().all(|&n| n == 1), "{fresh:?}");
    // Killed runs left temporary files; the last run removed them.
    assert_eq!(temp_files(job.dir.path()), Vec::<String>::new());
}

#[test]
fn resume_matches_keys_not_positions() {
    let toml = |values: &str, prefix: &str| {
        format!(
            r#"
[task]
kind = "command"
shell = "echo {{x}} >> ran.log; echo {prefix}{{x}}"
[args]
x = {values}
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#
        )
    };
    let ran = |job: &Job| {
        let t = fs::read_to_string(job.path("ran.log")).unwrap_or_default();
        let _ = fs::remove_file(job.path("ran.log"));
        let mut v: Vec<String> = t.lines().map(String::from).collect();
        v.sort();
        v
    };
    let job = Job::new(&toml(r#"["a", "b", "c"]"#, "v"));
    assert_eq!(code(&job.run(&["--resume"])), 0, "no earlier run: runs everything");
    assert_eq!(ran(&job), ["a", "b", "c"]);
    job.write("job.toml", &toml(r#"["c", "a", "b"]"#, "v"));
    assert_eq!(code(&job.run(&["--resume"])), 0);
    assert_eq!(ran(&job), Vec::<String>::new(), "reordering reran something");
    let recs = job.jsonl("out.jsonl");
    let got: Vec<(u64, &str)> =
        recs.iter().map(|r| (r["index"].as_u64().unwrap(), r["value"].as_str().unwrap())).collect();
    assert_eq!(got, [(0, "vc"), (1, "va"), (2, "vb")]);
    job.write("job.toml", &toml(r#"["b", "d"]"#, "v"));
    assert_eq!(code(&job.run(&["--resume"])), 0);
    assert_eq!(ran(&job), ["d"]);
    job.write("job.toml", &toml(r#"["b", "d"]"#, "w"));
    assert_eq!(code(&job.run(&["--resume"])), 0);
    assert_eq!(ran(&job), ["b", "d"], "a changed task must rerun everything");
}

#[test]
fn a_torn_or_garbled_journal_is_tolerated() {
    let job = Job::new(
        r#"
[task]
kind = "command"
shell = "echo {x} >> ran.log; echo {x}"
[args]
x = [1, 2, 3]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    assert_eq!(code(&job.run(&[])), 0);
    let mut files = Vec::new();
    walk(&job.path(".jobpool/runs"), &mut files);
    let journal = files.iter().find(|f| f.ends_with("records.jsonl")).unwrap();
    let mut text = fs::read(journal).unwrap();
    text.extend_from_slice(b"not json\n\xff\xfe\n{\"index\":0,\"key\":\"");
    fs::write(journal, text).unwrap();
    fs::remove_file(job.path("ran.log")).unwrap();
    let out = job.run(&["--resume"]);
    no_panic(&out);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!job.path("ran.log").exists(), "a torn line made finished work run again");
    assert_eq!(job.jsonl("out.jsonl").len(), 3);
}

#[test]
fn two_runs_of_one_job_at_once_both_finish_whole() {
    let job = Job::new(
        r#"
workers = 2
[task]
kind = "command"
shell = "sleep 0.02; echo {x}"
[args]
x = { range = [0, 30] }
[[sink]]
to = "out.csv"
format = "csv"
"#,
    );
    let a = job.spawn(&[]);
    let b = job.spawn(&[]);
    let (a, b) = (wait_output(a), wait_output(b));
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    assert_eq!(code(&b), 0, "{}", stderr(&b));
    // The last rename wins; the file is whole either way.
    assert_eq!(parse_csv(&fs::read_to_string(job.path("out.csv")).unwrap()).len(), 31);
    assert_eq!(temp_files(job.dir.path()), Vec::<String>::new());
    assert_eq!(run_states(&job), ["finished", "finished"]);
}

// ---------------------------------------------------------------------------------------
// Sinks

#[test]
fn every_format_agrees_record_by_record_on_hard_values() {
    let job = Job::new(
        r#"
workers = 3
[task]
kind = "script"
script = '''
switch i {
  0 => "uni 😀 ünï",
  1 => "line1\nline2\r\n",
  2 => "q\"uo'te,comma",
  3 => (),
  4 => { throw "bad, \"x\"" },
  5 => { let s = ""; s.pad(20000, 'y'); s },
  6 => #{a: [1, ()], "b c": "d"},
  7 => 1.5e300,
  _ => "\ttab",
}
'''
[args]
i = { range = [0, 9] }
s = ["a,b\"c\nd 😀"]
[[sink]]
to = "o/{name}-{run}.csv"
format = "csv"
[[sink]]
to = "o/r.jsonl"
format = "jsonl"
[[sink]]
to = "o/r.json"
format = "json"
[[sink]]
to = "stdout"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    // (Records on stdout stay under a pipe's buffer: `wait_output` reads it at the end.)
    let recs = job.jsonl("o/r.jsonl");
    assert_eq!(recs.len(), 9);
    assert_eq!(jsonl_text(&stdout(&out)), recs);
    let arr: Value =
        serde_json::from_str(&fs::read_to_string(job.path("o/r.json")).unwrap()).unwrap();
    assert_eq!(arr.as_array().unwrap(), &recs);
    // An independent computation of the values.
    let want = [
        Value::from("uni 😀 ünï"),
        Value::from("line1\nline2\r\n"),
        Value::from("q\"uo'te,comma"),
        Value::Null,
        Value::Null,
        Value::from("y".repeat(20000)),
        serde_json::json!({"a": [1, null], "b c": "d"}),
        serde_json::json!(1.5e300),
        Value::from("\ttab"),
    ];
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["index"], i as u64);
        assert_eq!(r["args"]["s"], "a,b\"c\nd 😀");
        if i == 4 {
            assert_eq!(r["status"], "error");
            assert!(r.get("value").is_none());
        } else {
            assert_eq!(r["value"], want[i], "record {i}");
        }
    }
    let csv_name = fs::read_dir(job.path("o"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".csv"))
        .unwrap();
    let run_id = csv_name.trim_start_matches("job-").trim_end_matches(".csv").to_string();
    assert!(stderr(&out).contains(&run_id), "{{run}} is the run id");
    let rows = parse_csv(&fs::read_to_string(job.path("o").join(csv_name)).unwrap());
    assert_eq!(rows[0], ["i", "s", "status", "value", "error", "duration_ms"]);
    assert_eq!(rows.len(), 10);
    for (r, row) in recs.iter().zip(&rows[1..]) {
        assert_eq!(row[1], "a,b\"c\nd 😀");
        assert_eq!(row[2], r["status"].as_str().unwrap());
        assert_eq!(row[3], as_text(r.get("value").unwrap_or(&Value::Null)));
        assert_eq!(row[4], as_text(r.get("error").unwrap_or(&Value::Null)));
    }
    assert_eq!(temp_files(&job.path("o")), Vec::<String>::new());
}

#[test]
fn two_sinks_to_one_file_spelled_differently_are_an_error() {
    let job = Job::new(
        r#"
[task]
kind = "command"
shell = "touch ran"
[[sink]]
to = "o/{name}.jsonl"
format = "jsonl"
[[sink]]
to = "./o/../o/job.jsonl"
format = "csv"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("two sinks write to"), "{}", stderr(&out));
    assert!(!job.path("ran").exists(), "a task ran");
    assert!(!job.path("o/job.jsonl").exists());
    assert_eq!(run_states(&job), ["finished"]);
}

#[test]
fn a_sink_folder_that_cannot_be_created_is_an_error_with_its_cause() {
    let job = Job::new(
        r#"
[task]
kind = "command"
shell = "touch ran"
[[sink]]
to = "o/r.jsonl"
format = "jsonl"
[[sink]]
to = "blocker/sub/r.csv"
format = "csv"
"#,
    );
    fs::write(job.path("blocker"), "a file, not a folder").unwrap();
    job.write("o/r.jsonl", "old\n");
    let out = job.run(&[]);
    no_panic(&out);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("os error 20"), "{}", stderr(&out));
    assert!(!job.path("ran").exists());
    assert_eq!(fs::read_to_string(job.path("o/r.jsonl")).unwrap(), "old\n");
    assert_eq!(temp_files(&job.path("o")), Vec::<String>::new());
    assert_eq!(run_states(&job), ["finished"], "the run folder must not stay `running`");
}

#[test]
fn completion_order_delivers_every_record_once() {
    let job = Job::new(
        r#"
workers = 4
order = "completion"
task-timeout = "1s"
[task]
kind = "script"
script = "if i % 7 == 3 { sleep(5) } if i % 5 == 1 { throw `no ${i}` } sleep(random() * 0.02); i"
[args]
i = { range = [0, 30] }
[[sink]]
to = "stdout"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = jsonl_text(&stdout(&out));
    let mut idx: Vec<u64> = recs.iter().map(|r| r["index"].as_u64().unwrap()).collect();
    idx.sort();
    assert_eq!(idx, (0..30).collect::<Vec<_>>());
    for r in &recs {
        let i = r["index"].as_u64().unwrap();
        let want = if i % 7 == 3 {
            "timeout"
        } else if i % 5 == 1 {
            "error"
        } else {
            "ok"
        };
        assert_eq!(r["status"], want, "{r}");
    }
}

#[test]
fn started_at_has_microseconds() {
    let job = Job::new(
        r#"
[task]
kind = "script"
script = "1"
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    assert_eq!(code(&job.run(&[])), 0);
    let recs = job.jsonl("out.jsonl");
    let t = recs[0]["started_at"].as_str().unwrap();
    // 2026-11-26T14:04:55.120041Z
    assert_eq!(t.len(), 27, "{t}");
    assert!(t.ends_with('Z') && t.as_bytes()[19] == b'.', "{t}");
}

// ---------------------------------------------------------------------------------------
// Injection

#[test]
fn no_templated_position_can_inject() {
    let job = Job::new(
        r#"
workers = 2
[task]
kind = "command"
program = ["sh", "-c", "printf '%s|%s|%s|' \"$1\" \"$V\" \"$(cat)\"; cat \"$2\"", "argv0", "{line}", "{f}"]
env = { V = "{line}" }
stdin = "{line}"
cwd = "."
[args]
combine = "zip"
line = { lines = "inputs.txt" }
f = { glob = "data/*" }
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let names = [
        "a b",
        "q'uote",
        "d\"q",
        "new\nline",
        "$(touch PWN1)",
        ";touch PWN2;",
        "`touch PWN3`",
        "*",
    ];
    for n in names {
        job.write(&format!("data/{n}"), &format!("content of {n}"));
    }
    let lines = [
        "$(touch PWN4)",
        "'; touch PWN5; '",
        "\"; touch PWN6 #",
        "-n",
        "--help",
        "  spaced  ",
        "{x}",
        "{{",
    ];
    job.write("inputs.txt", &(lines.join("\n") + "\n"));
    let out = job.run(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(recs.len(), 8);
    let mut sorted = names.to_vec();
    sorted.sort();
    for (r, (line, name)) in recs.iter().zip(lines.iter().zip(sorted)) {
        let want = format!("{line}|{line}|{line}|content of {name}");
        assert_eq!(r["value"].as_str().unwrap(), want.trim(), "{r}");
    }

    // The same through a shell line.
    let shell = r#"shell = "printf '%s|%s|%s|' {line} \"$V\" \"$(cat)\"; cat {f}""#;
    let text = fs::read_to_string(job.path("job.toml")).unwrap();
    let text: String = text
        .lines()
        .map(|l| if l.starts_with("program") { shell.to_string() } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    job.write("job.toml", &text);
    let out = job.run(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let again = job.jsonl("out.jsonl");
    let v = |rs: &[Value]| rs.iter().map(|r| r["value"].clone()).collect::<Vec<_>>();
    assert_eq!(v(&again), v(&recs));
    for n in 1..=6 {
        assert!(!job.path(&format!("PWN{n}")).exists(), "PWN{n}: injection");
    }
}

/// `jobpool run jobs/x.toml` from the folder above the job's.
fn run_from_parent(job: &Job, extra: &[&str]) -> Output {
    let parent = job.dir.path().parent().unwrap();
    let rel = job.dir.path().file_name().unwrap().to_string_lossy().into_owned();
    let mut c = Command::new(BIN);
    c.arg("run").args(extra).arg(format!("{rel}/job.toml")).current_dir(parent);
    c.env("NO_COLOR", "1").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    wait_output(c.spawn().unwrap())
}

#[test]
fn a_literal_cwd_works_when_the_job_is_named_from_another_folder() {
    let job = Job::new(
        r#"
[task]
kind = "command"
shell = "pwd"
cwd = "sub"
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    fs::create_dir(job.path("sub")).unwrap();
    let out = run_from_parent(&job, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    let want = fs::canonicalize(job.path("sub")).unwrap();
    assert_eq!(recs[0]["value"], want.to_string_lossy().as_ref());
}

#[test]
fn one_worker_runs_each_command_in_its_own_folder_as_the_folders_change() {
    // One worker, started from the folder above the job's: the submissions' folders
    // change from one to the next (a worker moves into a command's folder, so that it
    // starts without `current_dir`), one is missing, and the last runs in the job's
    // folder again; each relative folder is the job's, not the one the worker was in.
    let job = Job::new(
        r#"
workers = 1
[task]
kind = "command"
program = ["pwd"]
cwd = "{d}"
[args]
d = ["a", "b", "a/inner", "missing", "a", "."]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    fs::create_dir_all(job.path("a/inner")).unwrap();
    fs::create_dir(job.path("b")).unwrap();
    let out = run_from_parent(&job, &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    let dir = |d: &str| fs::canonicalize(job.path(d)).unwrap().to_string_lossy().into_owned();
    for (i, d) in ["a", "b", "a/inner"].iter().enumerate() {
        assert_eq!(recs[i]["value"], dir(d).as_str(), "{d}: {}", recs[i]);
    }
    assert_eq!(recs[3]["status"], "error", "{}", recs[3]);
    let error = recs[3]["error"].as_str().unwrap();
    assert!(error.contains(r#"/missing" is not a folder"#), "{error}");
    assert_eq!(recs[4]["value"], dir("a").as_str(), "{}", recs[4]);
    assert_eq!(recs[5]["value"], dir(".").as_str(), "{}", recs[5]);
}

/// A command given no stdin reads nothing, even when jobpool's own stdin has data (its
/// process workers pass theirs on: the null device); with `output = "none"` what it
/// prints goes nowhere: not to jobpool's stdout, nor its stderr, where a worker's own
/// stray output goes.
#[test]
fn a_command_without_stdin_reads_nothing_and_none_output_goes_nowhere() {
    let job = Job::new(
        r#"
workers = 2
[task]
kind = "command"
program = ["sh", "-c", "n=$(wc -c); echo read $n bytes > read-{i}; echo printed-{i}; echo to-stderr-{i} >&2"]
output = "none"
[args]
i = { range = [0, 6] }
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let mut c = Command::new(BIN);
    c.args(["run", "-q", "--progress", "never"]).arg(job.path("job.toml"));
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"data on jobpool's stdin\n").unwrap();
    }
    let out = wait_output(child);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stdout(&out).contains("printed"), "{}", stdout(&out));
    assert!(!stderr(&out).contains("printed"), "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(recs.len(), 6);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["value"], Value::Null, "{r}");
        let read = fs::read_to_string(job.path(&format!("read-{i}"))).unwrap();
        assert_eq!(read.split_whitespace().collect::<Vec<_>>(), ["read", "0", "bytes"]);
    }
}

/// What a command starts with in a worker of `jobpool run`: its three streams and no
/// other descriptor of jobpool's (its journal, sinks, channels, pipes), no signal blocked,
/// SIGPIPE not ignored (see `check_fds`, `check_signals`; in a thread worker:
/// `command_kind.rs`).
#[test]
fn a_command_starts_with_three_streams_and_default_signals() {
    for (program, check) in [(LIST_FDS, check_fds as fn(&str)), (SHOW_STATUS, check_signals)] {
        let job = Job::new(&format!(
            r#"
workers = 2
[task]
kind = "command"
program = {program:?}
output = "text"
[args]
i = {{ range = [0, 4] }}
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#
        ));
        let out = job.run(&[]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let recs = job.jsonl("out.jsonl");
        assert_eq!(recs.len(), 4);
        for r in &recs {
            check(r["value"].as_str().unwrap_or_else(|| panic!("{r}")));
        }
    }
}

#[test]
fn glob_values_do_not_depend_on_where_jobpool_is_started() {
    let job = Job::new(
        r#"
[task]
kind = "command"
shell = "cat {f}"
[args]
f = { glob = "data/*.txt" }
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    job.write("data/a.txt", "hello");
    let out = job.run(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let key = job.jsonl("out.jsonl")[0]["key"].clone();
    // Commands run in the job's folder: the value must name the file from there, and
    // the key must not change with the folder jobpool was started in.
    let out = run_from_parent(&job, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(recs[0]["value"], "hello");
    assert_eq!(recs[0]["key"], key);
}

// ---------------------------------------------------------------------------------------
// Several jobs

#[test]
fn several_jobs_take_the_most_serious_exit_code() {
    let dir = tempfile::Builder::new().prefix("jp-faults-").tempdir().unwrap();
    let jobs = dir.path().join("jobs");
    fs::create_dir(&jobs).unwrap();
    fs::write(jobs.join("a-ok.toml"), "[task]\nkind = \"script\"\nscript = \"1\"\n").unwrap();
    fs::write(jobs.join("b-fail.toml"), "[task]\nkind = \"script\"\nscript = \"throw 1\"\n")
        .unwrap();
    fs::write(
        jobs.join("c-late.toml"),
        "timeout = \"200ms\"\n[task]\nkind = \"script\"\nscript = \"sleep(5)\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.arg("run").arg("-q").args(args).current_dir(dir.path());
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        wait_output(c.spawn().unwrap())
    };
    assert_eq!(code(&run(&["jobs/a-ok.toml"])), 0);
    assert_eq!(code(&run(&["jobs/a-ok.toml", "jobs/b-fail.toml"])), 1);
    assert_eq!(code(&run(&["jobs/b-fail.toml", "jobs/c-late.toml", "jobs/a-ok.toml"])), 3);
    let out = run(&["jobs"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(stdout(&out), "1\n\n\n", "every job of the folder ran, in order");
    fs::write(jobs.join("d-bad.toml"), "workers = 0\n").unwrap();
    let out = run(&["jobs"]);
    assert_eq!(code(&out), 2);
    assert_eq!(stdout(&out), "", "an invalid file stops every job before any runs");
    let out = run(&["--dry-run", "jobs/a-ok.toml", "jobs/c-late.toml"]);
    assert_eq!(code(&out), 0);
}

// ---------------------------------------------------------------------------------------
// Pool bugs (src/pool is another engineer's): kept as ignored failing tests.

#[test]
fn a_task_cancelled_while_running_counts_its_attempt() {
    let job = Job::new(
        r#"
workers = 1
timeout = "500ms"
grace-period = "50ms"
[task]
kind = "command"
shell = "sleep 30"
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(statuses(&recs), ["cancelled"]);
    assert_eq!(recs[0]["attempts"], 1, "it ran: {}", recs[0]);
    assert_eq!(recs[0]["worker"], 0, "{}", recs[0]);
    assert!(recs[0]["started_at"].is_string(), "{}", recs[0]);
    assert!(recs[0]["duration_ms"].as_f64().unwrap() >= 400.0, "{}", recs[0]);
}

/// The first Ctrl-C says tasks are being stopped and that a second one kills; the second
/// kills tasks that ignore TERM at once, and the run still ends cleanly: `run.json`
/// finished (`interrupted`, 130), sinks complete, no temporary file, no process left.
#[test]
fn a_second_ctrl_c_kills_at_once_and_still_finishes_the_run() {
    let job = Job::new(
        r#"
workers = 2
grace-period = "60s"
[task]
kind = "command"
shell = "echo $$ >> pids/{i}; trap '' TERM; sleep 30 & wait; echo {i}"
[args]
i = { range = [0, 4] }
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    fs::create_dir(job.path("pids")).unwrap();
    let child = job.spawn(&[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while read_pids(&job.path("pids")).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = wait_output(child);
    no_panic(&out);
    assert!(started.elapsed() < Duration::from_secs(20), "the second Ctrl-C did not kill");
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert!(stderr(&out).contains("press Ctrl-C again"), "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(recs.len(), 4);
    assert!(statuses(&recs).iter().all(|s| s == "cancelled"), "{:?}", statuses(&recs));
    assert_eq!(temp_files(job.dir.path()), Vec::<String>::new());
    assert_eq!(run_states(&job), ["finished"]);
    let mut files = Vec::new();
    walk(&job.path(".jobpool/runs"), &mut files);
    let info = files.iter().find(|f| f.ends_with("run.json")).unwrap();
    let info: Value = serde_json::from_str(&fs::read_to_string(info).unwrap()).unwrap();
    assert_eq!(
        (info["exit_code"].as_i64(), info["cancelled"].as_str()),
        (Some(130), Some("interrupted"))
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(survivors(&read_pids(&job.path("pids"))), Vec::<i32>::new());
}

// ---------------------------------------------------------------------------------------
// Issue 13: defects a randomized run found

/// A worker killed by its task after nine fast ones: the nine keep their results and
/// never run again; the killer is `crashed` once (`retries = 0`).
#[test]
fn a_worker_killed_by_its_task_reruns_nothing_that_finished() {
    let job = Job::new(
        r#"
workers = 1
chunk-size = 10
retries = 0
[task]
kind = "command"
program = ["sh", "-c", "echo $0 >> ran.log; if [ $(($0 % 10)) = 9 ]; then kill -9 $PPID; fi; echo v$0", "{i}"]
[args]
i = { range = [0, 200] }
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    no_panic(&out);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let ran = fs::read_to_string(job.path("ran.log")).unwrap();
    let mut seen = vec![0; 200];
    for l in ran.lines() {
        seen[l.parse::<usize>().unwrap()] += 1;
    }
    assert!(
        seen.iter().all(|&n| n == 1),
        "ran.log: {} lines, counts {seen:?}",
        ran.lines().count()
    );
    let recs = job.jsonl("out.jsonl");
    assert_eq!(recs.len(), 200);
    for (i, r) in recs.iter().enumerate() {
        let want = if i % 10 == 9 { "crashed" } else { "ok" };
        assert_eq!((r["status"].as_str().unwrap(), r["attempts"].as_u64()), (want, Some(1)), "{r}");
    }
}

/// Pids of the workers of the jobpool `parent`: its `__jobpool-worker` children (exec'd)
/// and those of its `__jobpool-zygote` child (forked).
fn worker_children(parent: u32) -> Vec<i32> {
    let mut parents = vec![parent as i32];
    parents.extend(children_named(parent as i32, "__jobpool-zygote"));
    parents.into_iter().flat_map(|p| children_named(p, "__jobpool-worker")).collect()
}

/// Pids of the children of `parent` whose command line contains `needle`.
fn children_named(parent: i32, needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let ppid = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1));
        if ppid != Some(&parent.to_string()) {
            continue;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Pids of live processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(needle) && pid_alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// Workers SIGKILLed at random moments, often while they start a command: no process of
/// any command outlives the run (before the fix, a worker killed between the command's
/// fork and the registration of its group left that group running).
#[test]
fn a_worker_killed_while_it_starts_a_command_leaves_no_orphan() {
    // A sleep only this test starts (other tests may run at the same time).
    let marker = format!("31.{}", std::process::id());
    let job = Job::new(&format!(
        r#"
workers = 1
retries = 2
[task]
kind = "command"
program = ["sh", "-c", "sleep {marker} & echo v$0", "{{i}}"]
[args]
i = {{ range = [0, 1500] }}
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#
    ));
    let mut child = job.spawn(&[]);
    let pid = child.id();
    let mut kills = 0;
    // A bounded loop: at most 80 kills, 40 ms apart, while the run lasts.
    while kills < 80 && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(40));
        for w in worker_children(pid) {
            // SAFETY: kill(2) of a worker process of the run this test started.
            unsafe { libc::kill(w, libc::SIGKILL) };
            kills += 1;
        }
    }
    let out = wait_output(child);
    no_panic(&out);
    assert!([0, 1].contains(&code(&out)), "{}", stderr(&out));
    assert!(kills > 10, "only {kills} kills: the run was too short to test anything");
    assert_eq!(job.jsonl("out.jsonl").len(), 1500);
    let left = survivors(&processes_with(&format!("sleep {marker}")));
    assert_eq!(left, Vec::<i32>::new(), "orphaned commands after {kills} worker kills");
}

/// A worker killed during start-up is replaced like any other (before the fix the whole
/// run failed: "cannot start the workers: ... died during the handshake"). The tasks take
/// a moment, so that even a loaded machine sees a worker before the run is over; should
/// the kill land after start-up, on a running task, the retry keeps the run whole.
#[test]
fn a_worker_killed_during_start_up_is_replaced() {
    let job = Job::new(
        r#"
workers = 4
retries = 2
[task]
kind = "command"
program = ["sh", "-c", "sleep 0.2; echo v$0", "{i}"]
[args]
i = { range = [0, 10] }
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let mut child = job.spawn(&[]);
    let pid = child.id();
    let start = Instant::now();
    let mut killed = None;
    while killed.is_none()
        && child.try_wait().unwrap().is_none()
        && start.elapsed() < Duration::from_secs(30)
    {
        if let Some(&w) = worker_children(pid).first() {
            // SAFETY: kill(2) of a worker process of the run this test started.
            unsafe { libc::kill(w, libc::SIGKILL) };
            killed = Some(w);
        }
    }
    let out = wait_output(child);
    no_panic(&out);
    assert!(killed.is_some(), "no worker seen");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(statuses(&recs), vec!["ok"; 10]);
}

/// Command records always carry `stderr` (`""` when none) and the CPU time and peak
/// memory of the task's processes, from `wait4`.
#[test]
fn command_records_carry_stderr_cpu_time_and_peak_memory() {
    let job = Job::new(
        r#"
workers = 1
[task]
kind = "command"
shell = "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; if [ {i} = 1 ]; then echo oops >&2; exit 2; fi; echo done"
[args]
i = [0, 1]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(statuses(&recs), ["ok", "error"]);
    assert_eq!(recs[0]["stderr"], "");
    assert_eq!(recs[1]["stderr"], "oops");
    for r in &recs {
        // A 30 000-step shell loop takes well over a millisecond of CPU; a shell needs
        // well over 100 KiB of memory.
        assert!(r["cpu_ms"].as_f64().is_some_and(|ms| ms > 1.0), "{r}");
        assert!(r["max_rss_kb"].as_u64().is_some_and(|kb| kb > 100), "{r}");
    }
}

/// A task whose retry was still waiting when `max-failures` stopped the job ends as its
/// last attempt (`error`, 1 attempt, its exit code), not `skipped`: it did start (found
/// by the chaos runner, `CHAOS_SEED=3414065303791915612`).
#[test]
fn a_retry_left_waiting_by_max_failures_keeps_its_failure() {
    let job = Job::new(
        r#"
workers = 1
chunk-size = 4
retries = 1
retry-on = ["error"]
max-failures = 1
task-timeout = "300ms"
grace-period = "50ms"
[task]
kind = "command"
shell = "echo {i} >> ran.log; case {i} in 0) echo no >&2; exit 3;; 1|2) sleep 30;; esac; echo {i}"
[args]
i = [0, 1, 2, 3]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    no_panic(&out);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    let ran = fs::read_to_string(job.path("ran.log")).unwrap();
    let runs_of_0 = ran.lines().filter(|l| *l == "0").count() as u64;
    assert_eq!(statuses(&recs)[1..3], ["timeout", "timeout"], "{recs:?}");
    // Task 0 ran once or twice; its record is its last attempt, whatever stopped its retry.
    assert_eq!(recs[0]["attempts"], runs_of_0, "{}", recs[0]);
    assert_eq!(
        (recs[0]["status"].as_str(), recs[0]["exit_code"].as_i64()),
        (Some("error"), Some(3)),
        "{}",
        recs[0]
    );
    assert_eq!(recs[0]["stderr"], "no");
}

#[test]
fn a_worker_and_its_jobpool_killed_at_once_leave_no_task_behind() {
    // Found by the chaos runner (issue 13, seed 5655990288020630770): with both SIGKILLed
    // at the same moment, no process was left that knew the task's process group (the
    // pool kills the groups of a dead worker; a worker kills them when the pool dies).
    // The group's guard (a process outside the group) now kills it when the pool goes.
    // Also for a later task of the worker: the group's leader is killed with the first
    // task's leftovers, so it cannot be that guard (found after the chaos run).
    for (tasks, slow) in [("[0]", 0), ("[0, 1, 2]", 2)] {
        let job = Job::new(&format!(
            r#"workers = 1
chunk-size = 1
[task]
kind = "command"
program = ["sh", "-c", "if [ $0 = {slow} ]; then sleep 30 & echo $! >> pids/$0; echo $$ >> pids/$0; wait; fi", "{{i}}"]
[args]
i = {tasks}
"#
        ));
        fs::create_dir(job.path("pids")).unwrap();
        let mut child = job.spawn(&[]);
        wait_for_pids(&job.path("pids"), 2);
        let workers = worker_children(child.id());
        assert_eq!(workers.len(), 1);
        unsafe { libc::kill(workers[0], libc::SIGKILL) };
        child.kill().unwrap();
        child.wait().unwrap();
        let pids = read_pids(&job.path("pids"));
        assert_eq!(survivors(&pids), Vec::<i32>::new(), "task {slow} and its background sleep");
    }
}

#[test]
fn a_worker_stopped_with_sigstop_does_not_hang_the_run() {
    // A worker stopped (SIGSTOP) between tasks runs nothing and never exits: the run
    // waited for it forever. Now a worker that runs nothing for 10 s while it has tasks,
    // or after it was told to exit, is killed (its tasks, none started, run elsewhere).
    let job = Job::new(
        r#"workers = 2
chunk-size = 1
[task]
kind = "command"
program = ["sh", "-c", "echo $PPID > w$0; sleep $1; echo v$0", "{i}", "{s}"]
[args]
combine = "zip"
i = [0, 1]
s = [0, 3]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let child = job.spawn(&[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(job.path("w0").exists() && job.path("w1").exists()) {
        assert!(Instant::now() < deadline, "the tasks never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    // The worker of task 0, idle now (task 1 runs on the other for 3 s).
    let w0: i32 = fs::read_to_string(job.path("w0")).unwrap().trim().parse().unwrap();
    let w1: i32 = fs::read_to_string(job.path("w1")).unwrap().trim().parse().unwrap();
    assert_ne!(w0, w1, "one task per worker");
    unsafe { libc::kill(w0, libc::SIGSTOP) };
    let out = wait_output(child);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(statuses(&recs), ["ok", "ok"]);
    assert_eq!(survivors(&[w0, w1]), Vec::<i32>::new(), "the stopped worker was killed");
}

/// A journal that cannot be written fails the run, also when the write that fails is the
/// last one (the burst after the last record, which the runner cannot hear of): exit code
/// 1 and a message, never 0. Here the one record too long for the journal (a 128 KiB
/// value) is the only one, written by the flush after it. The file size limit (`ulimit -f`, with SIGXFSZ ignored) makes
/// every write past 80 KiB fail with EFBIG (the pool's 64 KiB shared slots still fit).
#[test]
fn a_journal_that_cannot_be_written_fails_the_run_even_at_the_last_write() {
    let job = Job::new(
        "name = \"j\"\nworkers = 2\n[task]\nkind = \"script\"\n\
         script = \"let s = `x`; for i in 0..17 { s += s; } if x == 0 { s } else { x }\"\n\
         [args]\nx = [0]\n[[sink]]\nto = \"stdout\"\nformat = \"jsonl\"\n",
    );
    let line = format!(
        "trap '' XFSZ; ulimit -f 160; exec {BIN} run -q --progress never {}",
        job.path("job.toml").display()
    );
    let out = Command::new("sh")
        .args(["-c", &line])
        .current_dir(job.dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    no_panic(&out);
    assert_eq!(code(&out), 1, "stderr:\n{}", stderr(&out));
    assert!(stderr(&out).contains("cannot write the journal"), "{}", stderr(&out));
    // Every record reached stdout all the same (the sinks are not the journal).
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stderr(&out));
}

/// Two workers, each with a task that sleeps 30 s.
const TWO_SLEEPING_TASKS: &str = r#"
workers = 2
[task]
kind = "script"
script = "sleep(30.0); i"
[args]
i = [0, 1]
"#;

/// Workers of `jobpool run` are forked by its zygote, a one-thread copy of jobpool made
/// before any thread starts, and named like exec'd workers (`jobpool __jobpool-worker`,
/// comm `jobpool-worker`) for `ps` and tools; a SIGKILLed jobpool takes its zygote and
/// every worker with it. A script job's workers have no command group: the zygote
/// (jobpool's only other child) is all there is besides them.
#[test]
fn workers_are_forked_by_the_zygote_and_die_with_jobpool() {
    let job = Job::new(TWO_SLEEPING_TASKS);
    let child = job.spawn(&[]);
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let workers = loop {
        let w = worker_children(pid);
        if w.len() == 2 || Instant::now() > deadline {
            break w;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(workers.len(), 2, "two workers");
    let zygote = the_zygote_of_its_workers(pid, &workers);
    for &w in &workers {
        assert_eq!(fs::read_to_string(format!("/proc/{w}/comm")).unwrap().trim(), "jobpool-worker");
    }
    assert_eq!(children_named(pid as i32, "").len(), 1, "no command group for a script job");
    kill_and_expect_gone(child, &workers, zygote);
}

/// The one zygote of jobpool `pid`, after checking that each of `workers` is its child.
fn the_zygote_of_its_workers(pid: u32, workers: &[i32]) -> i32 {
    let zygotes = children_named(pid as i32, "__jobpool-zygote");
    assert_eq!(zygotes.len(), 1, "one zygote");
    for &w in workers {
        let stat = fs::read_to_string(format!("/proc/{w}/stat")).unwrap();
        let ppid: i32 =
            stat.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(ppid, zygotes[0], "worker {w} is the zygote's child");
    }
    zygotes[0]
}

/// SIGKILL jobpool, then check that its workers and zygote died with it.
fn kill_and_expect_gone(mut child: std::process::Child, workers: &[i32], zygote: i32) {
    child.kill().unwrap();
    child.wait().unwrap();
    let mut all = workers.to_vec();
    all.push(zygote);
    assert_eq!(survivors(&all), Vec::<i32>::new(), "zygote and workers outlived jobpool");
}

/// With several job files, every job's workers are forked by the zygote: it is told to
/// end only once the last job's workers are gone, not after the first job.
#[test]
fn every_job_of_a_run_gets_forked_workers() {
    let job = Job::new(TWO_SLEEPING_TASKS);
    job.write("first.toml", "[task]\nkind = \"script\"\nscript = \"i\"\n[args]\ni = [0, 1, 2]\n");
    let child = job.spawn(&[job.path("first.toml").to_str().unwrap()]);
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    // The second job's workers: its run folder exists once it started, and the first
    // job's workers are gone by then (a run ends after its workers).
    let workers = loop {
        let w = worker_children(pid);
        if (job.path(".jobpool/runs/job").exists() && w.len() == 2) || Instant::now() > deadline {
            break w;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(workers.len(), 2, "the second job's two workers");
    let zygote = the_zygote_of_its_workers(pid, &workers);
    kill_and_expect_gone(child, &workers, zygote);
}

/// The worker zygote starts on another CPU than the one that forks it (so that it
/// prepares the workers beside the job's loading), then gives that back: its workers,
/// and the commands they start, may run on every CPU the run itself may.
#[test]
fn forked_workers_and_their_commands_may_run_on_every_cpu() {
    let job = Job::new(
        r#"
workers = 2
[task]
kind = "command"
program = ["grep", "Cpus_allowed_list", "/proc/self/status"]
[args]
i = { range = [0, 4] }
[[sink]]
to = "stdout"
format = "text"
template = "{value}"
"#,
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let ours = status.lines().find(|l| l.starts_with("Cpus_allowed_list")).unwrap();
    let out = job.run(&["--progress", "never"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(lines, vec![ours.to_string(); 4]);
}

/// A worker with nothing left to do exits while the last task still runs on another
/// (its exit overlaps that task instead of adding to the end of the run), and the run is
/// whole.
#[test]
fn an_idle_worker_exits_while_the_last_task_runs() {
    let job = Job::new(
        r#"
workers = 2
[task]
kind = "script"
script = "sleep(if i == 0 { 4.0 } else { 0.5 }); i"
[args]
i = [0, 1]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let mut child = job.spawn(&[]);
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut most = 0;
    let left = loop {
        let n = worker_children(pid).len();
        most = most.max(n);
        if (most == 2 && n == 1) || Instant::now() > deadline || child.try_wait().unwrap().is_some()
        {
            break n;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!((most, left), (2, 1), "two workers, then one while task 0 sleeps");
    assert!(child.try_wait().unwrap().is_none(), "the run ended before the check");
    let out = wait_output(child);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(statuses(&job.jsonl("out.jsonl")), vec!["ok"; 2]);
}

/// The CPU time of the workers is counted in jobpool's own children (what `time`,
/// `wait4` and hyperfine report): forked workers are the zygote's children, and the
/// zygote is reaped before jobpool exits.
#[test]
fn the_workers_cpu_time_is_counted_in_jobpool_s() {
    let job = Job::new(
        r#"
workers = 2
[task]
kind = "script"
script = "let t = timestamp(); let s = 0; while t.elapsed < 0.1 { s += 1 } s"
[args]
i = { range = [0, 4] }
"#,
    );
    let child = job.spawn(&[]);
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter; wait4 on our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut ru) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status}");
    let cpu = ru.ru_utime.tv_sec as f64 + ru.ru_utime.tv_usec as f64 / 1e6;
    // Four tasks each busy for 0.1 s are 0.4 s of CPU in either build profile (a fixed
    // number of loop turns is not: an optimised build runs 100,000 in a few ms);
    // jobpool itself uses a few milliseconds.
    assert!(cpu > 0.05, "only {cpu:.3} s of user CPU counted: the workers' is missing");
    drop(child);
}

/// Runs started within the same second share their id's time stamp and differ by a
/// random 16-bit suffix only: a run whose new id is taken takes another, never fails
/// with "File exists" (as it did when the command line fixed the id before the run
/// folder was made: 2 failures in 300 back-to-back runs). Every id of one second is
/// taken here, so the run must wait for the next second's.
#[test]
fn a_run_whose_new_id_is_taken_takes_another() {
    let job = Job::new("[task]\nkind = \"script\"\nscript = \"i\"\n[args]\ni = [1]\n");
    let runs = job.path(".jobpool/runs/job");
    fs::create_dir_all(&runs).unwrap();
    let stamp = |t: std::time::SystemTime| -> String {
        humantime::format_rfc3339_seconds(t).to_string().replace(['-', ':'], "")
    };
    // A second far enough ahead to take all of its ids before it comes (about 1 s here).
    let second = std::time::SystemTime::now() + Duration::from_secs(5);
    let taken = stamp(second);
    for suffix in 0..=u16::MAX {
        fs::create_dir(runs.join(format!("{taken}-{suffix:04x}"))).unwrap();
    }
    assert!(stamp(std::time::SystemTime::now()) < taken, "taking the ids took over 4 s");
    while stamp(std::time::SystemTime::now()) < taken {
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = job.run(&[]);
    assert_eq!(code(&out), 0, "stderr:\n{}", stderr(&out));
    let mine: Vec<String> = fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with(&taken))
        .collect();
    assert_eq!(mine.len(), 1, "one run folder of another second: {mine:?}");
    assert!(runs.join(&mine[0]).join("run.json").exists());
}
