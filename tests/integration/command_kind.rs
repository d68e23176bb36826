//! The `command` task kind, driven through `jobpool::task::command::run_command`.
//!
//! Every status is reached, values are checked against what the child really saw, and
//! each test that starts a process group checks that nothing of it is left afterwards.

use std::path::Path;
use std::time::{Duration, Instant};

use jobpool::model::{CommandTask, Invocation, OutputMode, Template, TemplatePart};
use jobpool::task::command::{
    CommandOutcome, CommandRequest, CommandStatus, STDERR_TAIL_BYTES, run_command,
};
use serde_json::{Value, json};

use crate::run_support::{LIST_FDS, SHOW_STATUS, check_fds, check_signals};

/// Parse `{name}` placeholders (no `{{` escapes needed in these tests).
fn tpl(text: &str) -> Template {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}').expect("unclosed placeholder");
        if open > 0 {
            parts.push(TemplatePart::Literal(rest[..open].to_string()));
        }
        parts.push(TemplatePart::Placeholder(rest[open + 1..close].to_string()));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_string()));
    }
    Template { source: text.to_string(), parts }
}

fn program(argv: &[&str]) -> CommandTask {
    task(Invocation::Program(argv.iter().map(|a| tpl(a)).collect()))
}

fn shell(line: &str) -> CommandTask {
    task(Invocation::Shell(tpl(line)))
}

fn task(invocation: Invocation) -> CommandTask {
    CommandTask {
        invocation,
        cwd: None,
        env: Vec::new(),
        stdin: None,
        output: OutputMode::Text,
        success_codes: vec![0],
    }
}

/// Run options beyond the task.
struct Opts<'a> {
    dir: &'a Path,
    names: &'a [&'a str],
    args: Vec<Value>,
    timeout: Option<Duration>,
    grace: Duration,
    stop_after: Option<Duration>,
}

impl<'a> Opts<'a> {
    fn new(dir: &'a Path) -> Self {
        Opts {
            dir,
            names: &[],
            args: Vec::new(),
            timeout: None,
            grace: Duration::from_millis(500),
            stop_after: None,
        }
    }
}

/// Run and also return the process group id reported by `on_spawn`.
fn run_with(task: &CommandTask, opts: Opts<'_>) -> (CommandOutcome, Option<i32>) {
    let names: Vec<String> = opts.names.iter().map(|s| s.to_string()).collect();
    let start = Instant::now();
    let stop_after = opts.stop_after;
    let should_stop = move || stop_after.is_some_and(|d| start.elapsed() >= d);
    let mut pgid = None;
    let mut on_spawn = |g: i32| pgid = Some(g);
    let outcome = run_command(CommandRequest {
        task,
        job_dir: opts.dir,
        names: &names,
        args: &opts.args,
        timeout: opts.timeout,
        grace: opts.grace,
        should_stop: &should_stop,
        group: None,
        on_spawn: &mut on_spawn,
    });
    if let Some(g) = pgid {
        assert!(group_gone(g), "process group {g} still has members");
    }
    (outcome, pgid)
}

fn run(task: &CommandTask, opts: Opts<'_>) -> CommandOutcome {
    run_with(task, opts).0
}

/// Whether `pid` is gone (or a zombie waiting for init), waiting up to 5 s.
fn pid_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) => {
                // The state follows the parenthesised command name.
                let state = stat.rsplit(')').next().and_then(|s| s.split_whitespace().next());
                if state == Some("Z") || state == Some("X") {
                    return true;
                }
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether no live process is in group `pgid`, waiting up to 5 s.
fn group_gone(pgid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // SAFETY: kill with signal 0 only checks for existence.
        let alive = unsafe { libc::kill(-pgid, 0) } == 0;
        if !alive || group_members_all_zombies(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn group_members_all_zombies(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some(after) = stat.rsplit(')').next() else { continue };
        let fields: Vec<&str> = after.split_whitespace().collect();
        // fields[0] = state, fields[1] = ppid, fields[2] = pgrp
        if fields.get(2) == Some(&pgid.to_string().as_str()) && fields[0] != "Z" {
            return false;
        }
    }
    true
}

#[test]
fn program_gets_arguments_by_name_and_position_without_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let t = program(&["printf", "%s|%s|%s", "{a}", "{1}", "{c}"]);
    let mut o = Opts::new(dir.path());
    o.names = &["a", "b", "c"];
    o.args = vec![json!("two words; $(touch x)"), json!(2.5), json!(null)];
    let out = run(&t, o);
    assert_eq!(out.status, CommandStatus::Ok, "{out:?}");
    assert_eq!(out.value, Some(json!("two words; $(touch x)|2.5|")));
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(out.error, None);
    assert!(!dir.path().join("x").exists());
}

#[test]
fn shell_values_are_quoted_so_nothing_is_injected() {
    let dir = tempfile::tempdir().unwrap();
    let evil = [
        "\"; touch x #",
        "$(touch x)",
        "`touch x`",
        "a\ntouch x",
        "'; touch x; '",
        "x'\"'\"'; touch x",
        "; touch x",
        "| touch x",
        "&& touch x",
        "*",
        "",
    ];
    for value in evil {
        let t = shell("printf '<%s>' {v} && printf '|%s' {v}");
        let mut o = Opts::new(dir.path());
        o.names = &["v"];
        o.args = vec![json!(value)];
        let out = run(&t, o);
        assert_eq!(out.status, CommandStatus::Ok, "{value:?}: {out:?}");
        // Text output is trimmed; compare untrimmed pieces.
        let expected = format!("<{value}>|{value}");
        assert_eq!(out.value, Some(json!(expected.trim())), "value {value:?}");
        assert!(!dir.path().join("x").exists(), "value {value:?} ran a command");
    }
}

#[test]
fn shell_line_keeps_its_own_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let t = shell("seq 1 {n} | tail -1");
    let mut o = Opts::new(dir.path());
    o.names = &["n"];
    o.args = vec![json!(7)];
    assert_eq!(run(&t, o).value, Some(json!("7")));
}

#[test]
fn cwd_defaults_to_the_job_folder_and_is_relative_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("sub-3")).unwrap();
    let out = run(&program(&["pwd"]), Opts::new(&root));
    assert_eq!(out.value, Some(json!(root.to_str().unwrap())));

    let mut t = program(&["pwd"]);
    t.cwd = Some(tpl("sub-{n}"));
    let mut o = Opts::new(&root);
    o.names = &["n"];
    o.args = vec![json!(3)];
    let out = run(&t, o);
    assert_eq!(out.value, Some(json!(root.join("sub-3").to_str().unwrap())));

    let mut t = program(&["pwd"]);
    t.cwd = Some(tpl("missing"));
    let out = run(&t, Opts::new(&root));
    assert_eq!(out.status, CommandStatus::Error);
    let err = out.error.unwrap();
    assert!(err.starts_with("cannot start \"pwd\": working folder"), "{err}");
    assert!(err.contains("missing"), "{err}");
}

/// A command started by this (many-threaded) process, as a thread worker starts one (see
/// `check_fds`, `check_signals`): this process ignores SIGPIPE, as every Rust program does.
#[test]
fn a_command_starts_with_three_streams_and_default_signals() {
    let dir = tempfile::tempdir().unwrap();
    for (argv, check) in [(LIST_FDS, check_fds as fn(&str)), (SHOW_STATUS, check_signals)] {
        let out = run(&program(&argv), Opts::new(dir.path()));
        check(out.value.as_ref().and_then(|v| v.as_str()).unwrap_or_else(|| panic!("{out:?}")));
    }
}

#[test]
fn env_is_added_to_the_inherited_environment() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = shell("printf '%s ' \"$JOBPOOL_TEST_X\"; [ -n \"$PATH\" ] && printf has-path");
    t.env = vec![("JOBPOOL_TEST_X".to_string(), tpl("v={x}"))];
    let mut o = Opts::new(dir.path());
    o.names = &["x"];
    o.args = vec![json!("a b")];
    assert_eq!(run(&t, o).value, Some(json!("v=a b has-path")));

    // A variable the environment has already is replaced, not given twice.
    let mut t = shell("env | grep '^HOME='");
    t.env = vec![("HOME".to_string(), tpl("/elsewhere"))];
    assert_eq!(run(&t, Opts::new(dir.path())).value, Some(json!("HOME=/elsewhere")));
}

#[test]
fn stdin_is_written_and_absent_stdin_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = program(&["cat"]);
    t.stdin = Some(tpl("line: {x}"));
    let mut o = Opts::new(dir.path());
    o.names = &["x"];
    o.args = vec![json!("hello")];
    assert_eq!(run(&t, o).value, Some(json!("line: hello")));

    // No stdin: /dev/null, so `cat` ends at once.
    let out = run(&program(&["cat"]), Opts::new(dir.path()));
    assert_eq!(out.status, CommandStatus::Ok);
    assert_eq!(out.value, Some(json!("")));
}

#[test]
fn large_stdin_does_not_deadlock_and_early_exit_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(3_000_000);
    let mut t = program(&["wc", "-c"]);
    t.stdin = Some(Template::literal(&big));
    assert_eq!(run(&t, Opts::new(dir.path())).value, Some(json!("3000000")));

    // A child that never reads its stdin and exits: EPIPE must be ignored.
    let mut t = program(&["true"]);
    t.stdin = Some(Template::literal(&big));
    let out = run(&t, Opts::new(dir.path()));
    assert_eq!(out.status, CommandStatus::Ok, "{out:?}");

    // A child that never reads and keeps running: the timeout still applies.
    let mut t = program(&["sleep", "30"]);
    t.stdin = Some(Template::literal(&big));
    let mut o = Opts::new(dir.path());
    o.timeout = Some(Duration::from_millis(300));
    let out = run(&t, o);
    assert_eq!(out.status, CommandStatus::Timeout, "{out:?}");
}

#[test]
fn large_stdout_and_stderr_together_do_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let t = shell(
        "head -c 3000000 /dev/zero | tr '\\0' a; head -c 3000000 /dev/zero | tr '\\0' b >&2; printf '\\nend\\n' >&2",
    );
    let out = run(&t, Opts::new(dir.path()));
    assert_eq!(out.status, CommandStatus::Ok);
    let value = out.value.unwrap();
    let text = value.as_str().unwrap();
    assert_eq!(text.len(), 3_000_000);
    assert!(text.bytes().all(|b| b == b'a'));
    let stderr = out.stderr.unwrap();
    assert!(stderr.len() <= STDERR_TAIL_BYTES);
    assert!(stderr.ends_with("\nend"), "{:?}", &stderr[stderr.len() - 10..]);
}

#[test]
fn output_modes() {
    let dir = tempfile::tempdir().unwrap();
    // The tpl helper knows no brace escapes; build the literal directly.
    let mut t = task(Invocation::Shell(Template::literal("printf '{\"a\": [1, 2]}'")));
    t.output = OutputMode::Json;
    assert_eq!(run(&t, Opts::new(dir.path())).value, Some(json!({"a": [1, 2]})));

    let mut t = shell("echo this is not json");
    t.output = OutputMode::Json;
    let out = run(&t, Opts::new(dir.path()));
    assert_eq!(out.status, CommandStatus::Error);
    assert_eq!(out.exit_code, Some(0));
    let err = out.error.unwrap();
    assert!(err.starts_with("output is not valid JSON"), "{err}");
    assert!(err.ends_with("stdout starts with: this is not json"), "{err}");

    let mut t = shell("printf 'a\\n\\nb\\n  c\\n'");
    t.output = OutputMode::Lines;
    assert_eq!(run(&t, Opts::new(dir.path())).value, Some(json!(["a", "b", "  c"])));

    let mut t = shell("echo ignored");
    t.output = OutputMode::None;
    assert_eq!(run(&t, Opts::new(dir.path())).value, Some(Value::Null));
}

#[test]
fn exit_codes_and_success_codes() {
    let dir = tempfile::tempdir().unwrap();
    let t = shell("echo some output; echo first >&2; echo 'it broke' >&2; exit 3");
    let out = run(&t, Opts::new(dir.path()));
    assert_eq!(out.status, CommandStatus::Error);
    assert_eq!(out.exit_code, Some(3));
    assert_eq!(out.signal, None);
    assert_eq!(out.value, None);
    assert_eq!(out.error.as_deref(), Some("exit code 3: it broke"));
    assert_eq!(out.stderr.as_deref(), Some("first\nit broke"));

    let mut t = shell("echo fine; exit 3");
    t.success_codes = vec![0, 3];
    let out = run(&t, Opts::new(dir.path()));
    assert_eq!(out.status, CommandStatus::Ok);
    assert_eq!(out.value, Some(json!("fine")));
    assert_eq!(out.exit_code, Some(3));

    let mut t = program(&["true"]);
    t.success_codes = vec![1];
    let out = run(&t, Opts::new(dir.path()));
    assert_eq!(out.status, CommandStatus::Error);
    assert_eq!(out.error.as_deref(), Some("exit code 0"));
}

#[test]
fn killed_by_a_signal_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&shell("kill -9 $$"), Opts::new(dir.path()));
    assert_eq!(out.status, CommandStatus::Error);
    assert_eq!(out.signal, Some(9));
    assert_eq!(out.exit_code, None);
    assert_eq!(out.error.as_deref(), Some("killed by signal 9 (SIGKILL)"));
}

#[test]
fn missing_or_unexecutable_program() {
    let dir = tempfile::tempdir().unwrap();
    let (out, pgid) = run_with(&program(&["jobpool-no-such-program"]), Opts::new(dir.path()));
    assert_eq!(out.status, CommandStatus::Error);
    assert_eq!(
        out.error.as_deref(),
        Some("cannot start \"jobpool-no-such-program\": No such file or directory")
    );
    assert_eq!(pgid, None, "on_spawn must not be called");

    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let out = run(&program(&[script.to_str().unwrap()]), Opts::new(dir.path()));
    assert_eq!(out.status, CommandStatus::Error);
    let err = out.error.unwrap();
    assert!(err.ends_with(": Permission denied"), "{err}");
    assert!(err.contains("not-executable.sh"), "{err}");

    // Through the shell, a missing program is the shell's exit code 127.
    let out = run(&shell("jobpool-no-such-program"), Opts::new(dir.path()));
    assert_eq!(out.exit_code, Some(127));
    assert!(out.error.unwrap().starts_with("exit code 127: "));
}

#[test]
fn timeout_kills_the_whole_group_including_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let t = shell("sleep 60 & echo $! > grandchild.pid; sleep 60");
    let mut o = Opts::new(dir.path());
    o.timeout = Some(Duration::from_millis(400));
    let start = Instant::now();
    let (out, pgid) = run_with(&t, o);
    let elapsed = start.elapsed();
    assert_eq!(out.status, CommandStatus::Timeout, "{out:?}");
    assert_eq!(out.error.as_deref(), Some("timed out after 400ms"));
    assert_eq!(out.signal, Some(libc::SIGTERM));
    assert!(elapsed >= Duration::from_millis(400));
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    let grandchild: i32 =
        std::fs::read_to_string(dir.path().join("grandchild.pid")).unwrap().trim().parse().unwrap();
    assert!(pid_gone(grandchild), "grandchild {grandchild} survived");
    assert!(pgid.is_some());
}

#[test]
fn a_command_ignoring_term_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    // An ignored signal stays ignored across exec, so `sleep` ignores TERM too.
    let t = shell("trap '' TERM; sleep 60");
    let mut o = Opts::new(dir.path());
    o.timeout = Some(Duration::from_millis(200));
    o.grace = Duration::from_millis(400);
    let start = Instant::now();
    let out = run(&t, o);
    let elapsed = start.elapsed();
    assert_eq!(out.status, CommandStatus::Timeout);
    assert_eq!(out.signal, Some(libc::SIGKILL));
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
fn should_stop_cancels_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let t = shell("sleep 60 & sleep 60");
    let mut o = Opts::new(dir.path());
    o.stop_after = Some(Duration::from_millis(200));
    let start = Instant::now();
    let out = run(&t, o);
    assert_eq!(out.status, CommandStatus::Cancelled, "{out:?}");
    assert_eq!(out.error.as_deref(), Some("cancelled"));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn background_processes_left_by_a_finished_command_are_killed() {
    let dir = tempfile::tempdir().unwrap();
    // The background sleep keeps stdout open; the command still finishes at once.
    let t = shell("sleep 60 & echo $!");
    let start = Instant::now();
    let out = run(&t, Opts::new(dir.path()));
    assert_eq!(out.status, CommandStatus::Ok, "{out:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    let pid: i32 = out.value.unwrap().as_str().unwrap().parse().unwrap();
    assert!(pid_gone(pid), "background process {pid} survived");
}

#[test]
fn on_spawn_reports_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    // `ps -o pgid= -p $$` would need procps; read /proc instead.
    let t = shell("cut -d' ' -f5 /proc/$$/stat");
    let (out, pgid) = run_with(&t, Opts::new(dir.path()));
    let pgid = pgid.expect("on_spawn called");
    assert_eq!(out.value, Some(json!(pgid.to_string())));
}

#[test]
fn a_stop_before_start_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Opts::new(dir.path());
    o.stop_after = Some(Duration::ZERO);
    let (out, pgid) = run_with(&shell("touch started"), o);
    assert_eq!(out.status, CommandStatus::Cancelled);
    assert_eq!(pgid, None);
    assert!(!dir.path().join("started").exists());
}

#[test]
fn structured_values_are_substituted_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let t = program(&["printf", "%s %s %s", "{0}", "{1}", "{2}"]);
    let mut o = Opts::new(dir.path());
    o.names = &["a", "b", "c"];
    o.args = vec![json!([1, "x"]), json!({"k": true}), json!(false)];
    assert_eq!(run(&t, o).value, Some(json!("[1,\"x\"] {\"k\":true} false")));
}

#[test]
fn invalid_utf8_output_is_replaced_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&shell("printf 'a\\377b'; printf 'e\\377rr' >&2"), Opts::new(dir.path()));
    assert_eq!(out.status, CommandStatus::Ok);
    assert_eq!(out.value, Some(json!("a\u{FFFD}b")));
    assert_eq!(out.stderr.as_deref(), Some("e\u{FFFD}rr"));
}
