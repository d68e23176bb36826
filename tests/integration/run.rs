//! End-to-end tests of `jobpool run`, driving the real binary on job files written into
//! temporary folders. Every test asserts behaviour (statuses, order, files, exit codes),
//! never speed, and checks that no process it started survives.

#[allow(unused_imports)]
use std::fs;
#[allow(unused_imports)]
use std::path::{Path, PathBuf};
#[allow(unused_imports)]
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::run_support::*;
use serde_json::Value;

#[test]
fn ok_records_reach_stdout_in_submission_order() {
    let job = Job::new(
        r#"
workers = 3
[task]
kind = "script"
script = "sleep(random() * 0.05); x * x"
[args]
x = { range = [0, 30] }
[[sink]]
to = "stdout"
format = "text"
template = "{x}:{value}"
"#,
    );
    let out = job.run(&["--progress", "never"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let want: Vec<String> = (0..30).map(|x| format!("{x}:{}", x * x)).collect();
    assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), want);
}

#[test]
fn every_sink_keeps_submission_order_and_completion_order_keeps_everything() {
    let toml = |order: &str| {
        format!(
            r#"
workers = 4
order = "{order}"
[task]
kind = "script"
script = "sleep(random() * 0.04); i"
[args]
i = {{ range = [0, 40] }}
[[sink]]
to = "out/r.jsonl"
format = "jsonl"
[[sink]]
to = "out/r.json"
format = "json"
[[sink]]
to = "out/r.csv"
format = "csv"
[[sink]]
to = "out/r.txt"
format = "text"
template = "{{index}} {{value}}"
"#
        )
    };
    let job = Job::new(&toml("submission"));
    let out = job.run(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let idx: Vec<u64> =
        job.jsonl("out/r.jsonl").iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, (0..40).collect::<Vec<_>>());
    let arr: Value =
        serde_json::from_str(&fs::read_to_string(job.path("out/r.json")).unwrap()).unwrap();
    let idx: Vec<u64> =
        arr.as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, (0..40).collect::<Vec<_>>());
    let csv = fs::read_to_string(job.path("out/r.csv")).unwrap();
    let first_col: Vec<String> =
        csv.lines().skip(1).map(|l| l.split(',').next().unwrap().into()).collect();
    assert_eq!(first_col, (0..40).map(|i| i.to_string()).collect::<Vec<_>>());
    let txt = fs::read_to_string(job.path("out/r.txt")).unwrap();
    assert_eq!(
        txt.lines().collect::<Vec<_>>(),
        (0..40).map(|i| format!("{i} {i}")).collect::<Vec<_>>()
    );

    let job = Job::new(&toml("completion"));
    let out = job.run(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut idx: Vec<u64> =
        job.jsonl("out/r.jsonl").iter().map(|r| r["index"].as_u64().unwrap()).collect();
    idx.sort();
    assert_eq!(idx, (0..40).collect::<Vec<_>>());
}

#[test]
fn a_failing_command_is_an_error_record_with_exit_code_and_stderr() {
    let job = Job::new(
        r#"
workers = 2
[task]
kind = "command"
shell = "if [ {n} = 2 ]; then echo broken >&2; exit 3; fi; echo {n}"
[args]
n = [1, 2, 3]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(statuses(&recs), ["ok", "error", "ok"]);
    assert_eq!(recs[0]["value"], "1");
    assert_eq!(recs[1]["exit_code"], 3);
    assert!(recs[1]["stderr"].as_str().unwrap().contains("broken"));
    // The first failure is shown as a diagnostic naming its index and arguments.
    let err = stderr(&out);
    assert!(err.contains("broken") || err.contains("exit code 3"), "{err}");
    assert!(err.contains("n"), "{err}");
}

#[test]
fn a_timed_out_command_loses_its_whole_process_group() {
    let job = Job::new(
        r#"
workers = 2
task-timeout = "500ms"
grace-period = "200ms"
[task]
kind = "command"
shell = "sleep 300 & echo $! > pids/{i}; sleep 300"
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
    assert_eq!(pids.len(), 2, "each task recorded its grandchild");
    assert_eq!(survivors(&pids), Vec::<i32>::new(), "grandchildren survived the timeout");
}

#[test]
fn a_worker_killed_mid_run_costs_exactly_its_task() {
    // The shell's parent is the worker process running the task: killing it is a worker
    // crash in the middle of a task, and must cost only that task.
    let job = Job::new(
        r#"
workers = 2
[task]
kind = "command"
shell = "if [ {i} = 3 ]; then kill -9 $PPID; sleep 5; fi; echo {i}"
[args]
i = { range = [0, 8] }
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    let st = statuses(&recs);
    assert_eq!(st.len(), 8);
    for (i, s) in st.iter().enumerate() {
        let want = if i == 3 { "crashed" } else { "ok" };
        assert_eq!(s, want, "record {i}: {:?}", recs[i]);
    }
}

#[test]
fn retries_rerun_a_failed_task_and_count_attempts() {
    let job = Job::new(
        r#"
workers = 1
retries = 2
[task]
kind = "command"
shell = "echo x >> tries; [ $(wc -l < tries) -ge 2 ]"
output = "none"
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(statuses(&recs), ["ok"]);
    assert_eq!(recs[0]["attempts"], 2);
}

#[test]
fn the_deadline_cancels_what_has_not_finished_and_exits_3() {
    let job = Job::new(
        r#"
workers = 2
timeout = "1s"
grace-period = "100ms"
[task]
kind = "command"
shell = "if [ {i} -lt 2 ]; then echo fast; else echo $$ > pids/{i}; exec sleep 300; fi"
[args]
i = { range = [0, 6] }
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    fs::create_dir(job.path("pids")).unwrap();
    let start = Instant::now();
    let out = job.run(&[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(60));
    let st = statuses(&job.jsonl("out.jsonl"));
    assert_eq!(&st[..2], ["ok", "ok"]);
    assert!(st[2..].iter().all(|s| s == "cancelled"), "{st:?}");
    assert_eq!(survivors(&read_pids(&job.path("pids"))), Vec::<i32>::new());
}

#[test]
fn on_failure_stop_skips_what_never_started() {
    let job = Job::new(
        r#"
workers = 1
chunk-size = 1
on-failure = "stop"
[task]
kind = "script"
script = "sleep(0.05); if i == 2 { throw \"boom\" } i"
[args]
i = { range = [0, 10] }
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    let st = statuses(&recs);
    assert_eq!(st.len(), 10, "every submission has a record");
    assert_eq!(&st[..3], ["ok", "ok", "error"]);
    assert!(recs[2]["error"].as_str().unwrap().contains("boom"));
    // A task already handed to the worker may finish before the failure is seen; after
    // that, nothing new starts.
    let first_skipped = st.iter().position(|s| s == "skipped").expect("some skipped");
    assert!(first_skipped <= 5, "{st:?}");
    assert!(st[3..first_skipped].iter().all(|s| s == "ok"), "{st:?}");
    assert!(st[first_skipped..].iter().all(|s| s == "skipped"), "{st:?}");
}

#[test]
fn shell_values_are_quoted() {
    let job = Job::new(
        r#"
[task]
kind = "command"
shell = "echo {v}"
[args]
v = ["\"; touch pwned #", "$(touch pwned2)", "a'b", "x && touch pwned3"]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for f in ["pwned", "pwned2", "pwned3"] {
        assert!(!job.path(f).exists(), "{f} was created: injection");
    }
    let vals: Vec<String> =
        job.jsonl("out.jsonl").iter().map(|r| r["value"].as_str().unwrap().to_string()).collect();
    assert_eq!(vals, ["\"; touch pwned #", "$(touch pwned2)", "a'b", "x && touch pwned3"]);
}

#[test]
fn file_sinks_appear_whole_at_the_end() {
    let job = Job::new(
        r#"
workers = 2
[task]
kind = "script"
script = "sleep(0.05); i"
[args]
i = { range = [0, 20] }
[[sink]]
to = "out/{name}.jsonl"
format = "jsonl"
"#,
    );
    let child = job.spawn(&[]);
    let target = job.path("out/job.jsonl");
    let start = Instant::now();
    let mut saw_partial = false;
    while start.elapsed() < Duration::from_millis(400) {
        if let Ok(t) = fs::read_to_string(&target)
            && t.lines().count() != 20
        {
            saw_partial = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = wait_output(child);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!saw_partial, "a reader saw a partial sink file");
    assert_eq!(job.jsonl("out/job.jsonl").len(), 20);
    let leftovers: Vec<_> = fs::read_dir(job.path("out")).unwrap().flatten().collect();
    assert_eq!(leftovers.len(), 1, "temporary files left beside the sink: {leftovers:?}");
}

#[test]
fn resume_after_adding_values_runs_only_the_new_ones() {
    let toml = |end: u32| {
        format!(
            r#"
workers = 2
[task]
kind = "command"
shell = "echo {{x}} >> ran.log; echo $(( {{x}} * 10 ))"
[args]
x = {{ range = [0, {end}] }}
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#
        )
    };
    let job = Job::new(&toml(3));
    assert_eq!(code(&job.run(&[])), 0);
    job.write("job.toml", &toml(5));
    let out = job.run(&["--resume"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut ran: Vec<u32> = fs::read_to_string(job.path("ran.log"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    ran.sort();
    assert_eq!(ran, [0, 1, 2, 3, 4], "each value ran exactly once over both runs");
    let recs = job.jsonl("out.jsonl");
    assert_eq!(recs.len(), 5);
    let resumed: Vec<bool> = recs.iter().map(|r| r["resumed"].as_bool().unwrap_or(false)).collect();
    assert_eq!(resumed, [true, true, true, false, false]);
    let vals: Vec<&str> = recs.iter().map(|r| r["value"].as_str().unwrap()).collect();
    assert_eq!(vals, ["0", "10", "20", "30", "40"]);
}

#[test]
fn resume_after_sigkill_of_jobpool_loses_nothing_and_redoes_nothing() {
    let job = Job::new(
        r#"
workers = 2
[task]
kind = "command"
shell = "sleep 0.1; echo {x} >> ran.log; echo {x}"
[args]
x = { range = [0, 30] }
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let mut child = job.spawn(&[]);
    // Wait until some records are journaled, then kill jobpool itself.
    let start = Instant::now();
    while job.journal().len() < 6 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    // Workers notice the parent's death and exit; give them a moment.
    std::thread::sleep(Duration::from_millis(500));
    let done_before: Vec<u64> = job
        .journal()
        .iter()
        .filter(|r| r["status"] == "ok")
        .map(|r| r["args"]["x"].as_u64().unwrap())
        .collect();
    assert!(done_before.len() >= 6);

    let out = job.run(&["--resume"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(recs.len(), 30);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["status"], "ok");
        assert_eq!(r["value"], i.to_string());
        let x = i as u64;
        assert_eq!(r["resumed"].as_bool().unwrap_or(false), done_before.contains(&x), "record {i}");
    }
    let log = fs::read_to_string(job.path("ran.log")).unwrap();
    for x in done_before {
        let n = log.lines().filter(|l| *l == x.to_string()).count();
        assert_eq!(n, 1, "x={x} finished before the kill and ran again");
    }
}

#[test]
fn interrupt_stops_everything_and_exits_130() {
    let job = Job::new(
        r#"
workers = 2
grace-period = "200ms"
[task]
kind = "command"
shell = "if [ {i} -lt 2 ]; then echo done; else echo $$ > pids/{i}; sleep 300 & echo $! >> pids/{i}; wait; fi"
[args]
i = { range = [0, 6] }
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    fs::create_dir(job.path("pids")).unwrap();
    let child = job.spawn(&[]);
    let start = Instant::now();
    while read_pids(&job.path("pids")).len() < 4 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = wait_output(child);
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(recs.len(), 6, "every submission has a record after an interrupt");
    assert_eq!(&statuses(&recs)[..2], ["ok", "ok"]);
    assert!(statuses(&recs)[2..].iter().all(|s| s == "cancelled"), "{recs:?}");
    assert_eq!(survivors(&read_pids(&job.path("pids"))), Vec::<i32>::new());
}

#[test]
fn invalid_job_exits_2_and_names_the_file() {
    let job = Job::new("workers = 0\n[task]\nkind = \"script\"\nscript = \"1\"\n");
    let out = job.run(&[]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("job.toml"), "{}", stderr(&out));
}

#[test]
fn dry_run_runs_nothing() {
    let job = Job::new(
        r#"
[task]
kind = "command"
shell = "touch ran"
[args]
i = [1, 2]
"#,
    );
    let out = job.run(&["--dry-run"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!job.path("ran").exists());
    assert!(!job.path(".jobpool").exists());
}

#[test]
fn set_and_workers_override_the_file() {
    let job = Job::new(
        r#"
[task]
kind = "script"
script = "x + 1"
[args]
x = [1]
"#,
    );
    let out = job.run(&["--set", "args.x=[10, 20]", "--workers", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "11\n21\n");
}

#[test]
fn the_summary_counts_statuses_on_stderr() {
    let job = Job::new(
        r#"
[task]
kind = "script"
script = "if i == 1 { throw \"no\" } i"
[args]
i = [0, 1, 2]
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(err.contains("2 ok"), "{err}");
    assert!(err.contains("1 error"), "{err}");
    assert_eq!(stdout(&out).lines().count(), 3, "failed records still print a line");
}

#[test]
fn the_threads_backend_gives_the_same_records() {
    let toml = |backend: &str| {
        format!(
            r#"
workers = 3
backend = "{backend}"
task-timeout = "300ms"
[task]
kind = "script"
script = "if i == 4 {{ sleep(10) }} if i == 6 {{ throw \"six\" }} i * 2"
[args]
i = {{ range = [0, 8] }}
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#
        )
    };
    let mut results = Vec::new();
    for backend in ["processes", "threads"] {
        let job = Job::new(&toml(backend));
        let out = job.run(&[]);
        assert_eq!(code(&out), 1, "{backend}: {}", stderr(&out));
        let recs = job.jsonl("out.jsonl");
        let view: Vec<(String, Value)> = recs
            .iter()
            .map(|r| (r["status"].as_str().unwrap().to_string(), r["value"].clone()))
            .collect();
        results.push(view);
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0][4].0, "timeout");
    assert_eq!(results[0][6].0, "error");
    assert_eq!(results[0][7], ("ok".to_string(), Value::from(14)));
}

#[test]
fn sigterm_is_an_interrupt_too() {
    let job = Job::new(
        r#"
workers = 1
[task]
kind = "command"
shell = "echo $$ > pids/{i}; exec sleep 300"
[args]
i = [0, 1]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    fs::create_dir(job.path("pids")).unwrap();
    let child = job.spawn(&[]);
    let start = Instant::now();
    while read_pids(&job.path("pids")).is_empty() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = wait_output(child);
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert_eq!(statuses(&job.jsonl("out.jsonl")), ["cancelled", "cancelled"]);
    assert_eq!(survivors(&read_pids(&job.path("pids"))), Vec::<i32>::new());
}

#[test]
fn a_second_interrupt_kills_at_once() {
    // The command ignores TERM and the grace period is long: only the second Ctrl-C can
    // end this quickly, and it must still leave nothing behind.
    let job = Job::new(
        r#"
workers = 1
grace-period = "60s"
[task]
kind = "command"
shell = "trap '' TERM; echo $$ > pids/0; sleep 300 & echo $! >> pids/0; wait; wait"
"#,
    );
    fs::create_dir(job.path("pids")).unwrap();
    let child = job.spawn(&[]);
    let start = Instant::now();
    while read_pids(&job.path("pids")).len() < 2 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let stopped = Instant::now();
    let out = wait_output(child);
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert!(
        stopped.elapsed() < Duration::from_secs(30),
        "the second interrupt waited for the grace period"
    );
    assert_eq!(survivors(&read_pids(&job.path("pids"))), Vec::<i32>::new());
}

#[test]
fn progress_always_prints_plain_lines_when_stderr_is_not_a_terminal() {
    let job = Job::new(
        r#"
workers = 2
[task]
kind = "script"
script = "sleep(0.25); i"
[args]
i = { range = [0, 12] }
"#,
    );
    let out = job.run(&["--progress", "always"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.lines().any(|l| l.contains("/12 done, 0 failed")), "{err}");
    // `auto` stays quiet when stderr is not a terminal: only the summary.
    let out = job.run(&[]);
    assert!(!stderr(&out).contains(" done, "), "{}", stderr(&out));
}

#[test]
fn tasks_do_not_outlive_a_killed_jobpool() {
    // SIGKILL cannot be caught: the workers notice their parent's death and stop their
    // tasks' process groups themselves.
    let job = Job::new(
        r#"
workers = 2
grace-period = "200ms"
[task]
kind = "command"
shell = "echo $$ > pids/{i}; sleep 300 & echo $! >> pids/{i}; wait"
[args]
i = [0, 1]
"#,
    );
    fs::create_dir(job.path("pids")).unwrap();
    let mut child = job.spawn(&[]);
    let start = Instant::now();
    while read_pids(&job.path("pids")).len() < 4 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pids = read_pids(&job.path("pids"));
    assert_eq!(pids.len(), 4);
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    assert_eq!(survivors(&pids), Vec::<i32>::new(), "tasks outlived jobpool");
}

/// Every record field the book documents is a template placeholder that `check` accepts
/// and the text sink renders (one list of fields for validator, sinks and book).
#[test]
fn every_record_field_is_a_template_placeholder() {
    let names = jobpool::record::FIELD_NAMES;
    let template: Vec<String> = names.iter().map(|n| format!("{n}={{{n}}}")).collect();
    let job = Job::new(&format!(
        "[task]\nkind = \"command\"\nprogram = [\"sh\", \"-c\", \"echo oops >&2; echo {{x}}\"]\n\
         [args]\nx = [7]\n[[sink]]\nto = \"stdout\"\ntemplate = \"{}\"\n",
        template.join(" ")
    ));
    let out = job.run(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let line = stdout(&out);
    for n in names {
        assert!(line.contains(&format!("{n}=")), "{n} missing from {line}");
    }
    assert!(
        line.contains("value=7 ") && line.contains("stderr=oops") && line.contains("index=0"),
        "{line}"
    );
    // The book's record table lists every field.
    let book =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/book/src/sinks-and-records.md"))
            .unwrap();
    for n in names {
        assert!(book.contains(&format!("`{n}`")), "the book does not document `{n}`");
    }
}

/// `run.json` records the exit code the process returns, and the cancel reason.
#[test]
fn run_json_agrees_with_the_exit_code() {
    let job = Job::new(
        "timeout = \"300ms\"\n[task]\nkind = \"command\"\nprogram = [\"sleep\", \"{s}\"]\n[args]\ns = [0, 30]\n",
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let runs = job.path(".jobpool/runs/job");
    let run = fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
    let info: Value =
        serde_json::from_str(&fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["exit_code"], 3);
    assert_eq!(info["state"], "finished");
    assert_eq!(info["cancelled"], "deadline");
    assert!(stderr(&out).contains("--resume"), "says how to resume: {}", stderr(&out));
}

/// `max-failures`: past it nothing new starts; the rest are `skipped` with one message.
#[test]
fn max_failures_skips_the_rest() {
    let job = Job::new(
        "workers = 1\nchunk-size = 1\nmax-failures = 1\n[task]\nkind = \"command\"\n\
         program = [\"sh\", \"-c\", \"exit $(( $0 % 2 ))\", \"{i}\"]\n[args]\ni = { range = [0, 40] }\n\
         [[sink]]\nto = \"out.jsonl\"\nformat = \"jsonl\"\n",
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(recs.len(), 40);
    let st = statuses(&recs);
    // The second failure is past the limit. Tasks the worker already had may still run
    // (a running task is never stopped by this policy, and a worker is sent a few tasks
    // ahead — more when tasks are fast — so allow some), but most are skipped.
    let errors = st.iter().filter(|s| *s == "error").count();
    assert!((2..=8).contains(&errors), "{st:?}");
    let skipped: Vec<&Value> = recs.iter().filter(|r| r["status"] == "skipped").collect();
    assert!(skipped.len() >= 20, "{st:?}");
    assert!(
        skipped.iter().all(|r| r["error"] == "skipped: more tasks failed than max-failures allows")
    );
    // Nothing after the first skipped submission ran.
    let first_skip = st.iter().position(|s| s == "skipped").unwrap();
    assert!(st[first_skip..].iter().all(|s| s == "skipped"), "{st:?}");
    assert!(stderr(&out).contains("--resume"), "{}", stderr(&out));
}

/// A folder with a `Cargo.toml` beside the job files: the TOML that is not a job is
/// passed over with a note, and the jobs run.
#[test]
fn run_passes_over_toml_files_that_are_not_jobs() {
    let job = Job::new("[task]\nkind = \"script\"\nscript = \"1 + 1\"\n");
    job.write("Cargo.toml", "[package]\nname = \"x\"\nversion = \"0.1.0\"\n");
    let out = Command::new(BIN)
        .args(["run", "-q"])
        .arg(job.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "2\n");
    assert!(stderr(&out).contains("Cargo.toml"), "{}", stderr(&out));
}

/// `retry-on`: `retries` applies only to the failures listed; a deterministic error is
/// not run twice when only timeouts and crashes are retried.
#[test]
fn retry_on_limits_retries_to_the_listed_failures() {
    let job = Job::new(
        "retries = 2\nretry-on = [\"timeout\", \"crashed\"]\ntask-timeout = \"300ms\"\n\
         grace-period = \"100ms\"\n[task]\nkind = \"command\"\n\
         program = [\"sh\", \"-c\", \"echo x >> ran-$0; if [ $0 = err ]; then exit 3; else sleep 5; fi\", \"{what}\"]\n\
         [args]\nwhat = [\"err\", \"slow\"]\n[[sink]]\nto = \"out.jsonl\"\nformat = \"jsonl\"\n",
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(
        (recs[0]["status"].as_str(), recs[0]["attempts"].as_u64()),
        (Some("error"), Some(1))
    );
    assert_eq!(
        (recs[1]["status"].as_str(), recs[1]["attempts"].as_u64()),
        (Some("timeout"), Some(3))
    );
    let lines = |f: &str| fs::read_to_string(job.path(f)).unwrap().lines().count();
    assert_eq!((lines("ran-err"), lines("ran-slow")), (1, 3));
}
