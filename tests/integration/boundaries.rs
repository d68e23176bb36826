//! Bad input at every boundary (issue 13): each gets a clear error or a correct record,
//! nothing else — no panic, no reinterpreted bytes, no exhausted memory.

use std::fs;

use serde_json::Value;

use crate::run_support::*;

#[test]
fn a_lines_file_that_is_not_utf8_is_an_error_naming_the_line() {
    let job =
        Job::new("[task]\nkind = \"script\"\nscript = \"l\"\n[args]\nl = { lines = \"in.txt\" }\n");
    fs::write(job.path("in.txt"), b"ok\nsecond\ncaf\xe9\n").unwrap();
    let out = job.run(&[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("line 3 of `lines` file"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not valid UTF-8") && stderr(&out).contains("iconv"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "", "nothing ran");
}

#[test]
fn a_huge_line_is_an_error_not_a_memory_blowup() {
    let job = Job::new(
        "[task]\nkind = \"command\"\nprogram = [\"echo\", \"{l}\"]\n[args]\nl = { lines = \"in.txt\" }\n",
    );
    let mut text = "small\n".to_string();
    text.push_str(&"x".repeat(17 << 20));
    text.push('\n');
    fs::write(job.path("in.txt"), text).unwrap();
    let out = job.run(&[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("line 2 of `lines` file") && stderr(&out).contains("17 MiB long"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn nul_bytes_newlines_and_shell_characters_in_values_are_records_not_surprises() {
    let job = Job::new(
        r#"[task]
kind = "command"
program = ["printf", "[%s]", "{v}"]
[args]
v = ["a\u0000b", "line1\nline2", "$(touch pwned); `touch pwned` \"q\" 's' | ; &", "-n"]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job.run(&[]);
    assert_eq!(code(&out), 1, "the NUL value cannot be an argument: {}", stderr(&out));
    let recs = job.jsonl("out.jsonl");
    assert_eq!(statuses(&recs), ["error", "ok", "ok", "ok"]);
    assert!(recs[0]["error"].as_str().unwrap().contains("nul byte"), "{}", recs[0]);
    assert_eq!(recs[1]["value"], "[line1\nline2]");
    assert_eq!(
        recs[2]["value"],
        Value::String("[$(touch pwned); `touch pwned` \"q\" 's' | ; &]".into())
    );
    assert_eq!(recs[3]["value"], "[-n]");
    assert!(!job.path("pwned").exists(), "no shell ran");
    // The same values through a shell line are quoted.
    let job2 = Job::new(
        r#"[task]
kind = "command"
shell = "printf '[%s]' {v}"
[args]
v = ["$(touch pwned)", "a b; touch pwned2", "it's"]
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#,
    );
    let out = job2.run(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let values: Vec<Value> = job2.jsonl("out.jsonl").iter().map(|r| r["value"].clone()).collect();
    assert_eq!(values, ["[$(touch pwned)]", "[a b; touch pwned2]", "[it's]"]);
    assert!(!job2.path("pwned").exists() && !job2.path("pwned2").exists());
}

#[test]
fn a_job_file_that_is_not_utf8_or_is_huge_is_a_clear_error() {
    let job = Job::new("");
    fs::write(
        job.path("job.toml"),
        b"name = \"x\xff\"\n[task]\nkind = \"script\"\nscript = \"1\"\n",
    )
    .unwrap();
    let out = job.run(&[]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("not valid UTF-8"), "{}", stderr(&out));
    // 100 MB of comments and one mistake: a diagnostic, not a hang or a crash.
    let mut text = String::with_capacity(100 << 20);
    while text.len() < 100 << 20 {
        text.push_str("# a comment line that pads the file to a hundred megabytes.........\n");
    }
    text.push_str("workers = 0\n[task]\nkind = \"script\"\nscript = \"1\"\n");
    fs::write(job.path("job.toml"), text).unwrap();
    let out = job.run(&[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("workers"), "{}", stderr(&out));
}

// A worker that breaks the protocol on its channel: the test-only worker mode of debug
// builds (`src/pool/abuse.rs`, `JOBPOOL_TEST_WORKER_ABUSE`). Every abuse gives a clear
// error or correct records: the affected tasks `crashed` (or retried) with an error that
// says what the worker did, every other result intact, the worker replaced, no panic,
// no hang, nothing left running.

const ABUSED: &str = r#"workers = 1
chunk-size = 5
retries = RETRIES
[task]
kind = "command"
program = ["echo", "v{i}"]
[args]
i = { range = [0, 30] }
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#;

/// Processes whose working folder is `dir` (workers and tasks of a job run there).
fn processes_in(dir: &std::path::Path) -> Vec<i32> {
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')));
        if !zombie && fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == dir) {
            found.push(pid);
        }
    }
    found
}

/// Run the 30-task job with one worker abusing its channel as `mode` (only the first
/// worker, after `after` proper messages); returns the records, checked for what holds
/// whatever the abuse: one record per submission in order, every `ok` with its own
/// value, every other record `crashed`, no panic, nothing left running.
fn abused(mode: &str, after: u32, retries: u32) -> (i32, Vec<Value>, String) {
    let job = Job::new(&ABUSED.replace("RETRIES", &retries.to_string()));
    let out = wait_output(
        job.command(&[])
            .env("JOBPOOL_TEST_WORKER_ABUSE", mode)
            .env("JOBPOOL_TEST_WORKER_ABUSE_AFTER", after.to_string())
            .env("JOBPOOL_TEST_WORKER_ABUSE_ONCE", job.path("abused"))
            .spawn()
            .unwrap(),
    );
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{mode}: {err}");
    assert!(job.path("abused").exists(), "{mode}: no worker took the abuse");
    let recs = job.jsonl("out.jsonl");
    assert_eq!(recs.len(), 30, "{mode}: {err}");
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["index"], i as u64, "{mode}: {r}");
        match r["status"].as_str() {
            Some("ok") => assert_eq!(r["value"], format!("v{i}"), "{mode}: {r}"),
            Some("crashed") => assert!(r["error"].is_string(), "{mode}: {r}"),
            _ => panic!("{mode}: {r}"),
        }
        assert!(r["attempts"].as_u64().unwrap() <= u64::from(retries) + 1, "{mode}: {r}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !processes_in(job.dir.path()).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(processes_in(job.dir.path()), Vec::<i32>::new(), "{mode}: left running");
    (code(&out), recs, err)
}

fn crashed(recs: &[Value]) -> Vec<&Value> {
    recs.iter().filter(|r| r["status"] == "crashed").collect()
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "the worker abuse hooks exist in debug builds only")]
fn a_worker_that_writes_garbage_or_a_truncated_message_is_killed_and_replaced() {
    for mode in ["garbage", "truncated"] {
        let (code, recs, err) = abused(mode, 1, 0);
        assert_eq!(code, 1, "{mode}: {err}");
        let c = crashed(&recs);
        assert!(!c.is_empty() && c.len() < 30, "{mode}: {recs:?}");
        for r in c {
            let e = r["error"].as_str().unwrap();
            assert!(
                e.contains("the worker broke the protocol (a message the pool cannot read"),
                "{mode}: {r}"
            );
            assert_eq!(r["attempts"], 1, "{r}");
        }
        // The replacement worker ran the rest.
        assert!(recs.iter().filter(|r| r["status"] == "ok").count() >= 20, "{mode}: {recs:?}");
    }
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "the worker abuse hooks exist in debug builds only")]
fn results_for_tasks_never_sent_skipped_or_malformed_are_a_protocol_error() {
    for (mode, says) in [
        ("unknown-id", "when task"),
        ("gap", "when task"),
        ("bad-ends", "payload ends at byte 4294967295, outside the message"),
        ("bad-codes", "unknown result code 200"),
        // Only the zygote says a worker's pid, before the handshake: never acted on later.
        ("forked", "a message only the zygote sends"),
    ] {
        let (code, recs, err) = abused(mode, 1, 0);
        assert_eq!(code, 1, "{mode}: {err}");
        let c = crashed(&recs);
        assert!(!c.is_empty(), "{mode}: {recs:?}");
        for r in c {
            let e = r["error"].as_str().unwrap();
            assert!(e.contains("the worker broke the protocol") && e.contains(says), "{mode}: {r}");
        }
    }
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "the worker abuse hooks exist in debug builds only")]
fn a_duplicated_result_message_never_makes_a_second_record() {
    // The copy is either refused (the worker is killed: a crash) or, when the worker is
    // already gone, ignored; never a second record, never another task's value.
    let (code, recs, err) = abused("duplicate", 1, 0);
    assert!(code == 0 || code == 1, "{err}");
    for r in crashed(&recs) {
        assert!(r["error"].as_str().unwrap().contains("the worker broke the protocol"), "{r}");
    }
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "the worker abuse hooks exist in debug builds only")]
fn protocol_crashes_are_retried_like_any_crash() {
    let (code, recs, err) = abused("garbage", 0, 2);
    assert_eq!(code, 0, "the replacement worker ran the retries: {err}");
    assert!(recs.iter().all(|r| r["status"] == "ok"), "{recs:?}");
    assert!(recs.iter().any(|r| r["attempts"] == 2), "some task was retried: {recs:?}");
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "the worker abuse hooks exist in debug builds only")]
fn a_value_that_cannot_be_read_is_a_crash_not_a_null() {
    let (code, recs, err) = abused("bad-value", 0, 0);
    assert_eq!(code, 1, "{err}");
    let c = crashed(&recs);
    assert!(!c.is_empty(), "{recs:?}");
    for r in c {
        assert!(r["error"].as_str().unwrap().contains("a value that cannot be read"), "{r}");
        assert!(r.get("value").is_none(), "{r}");
    }
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "the worker abuse hooks exist in debug builds only")]
fn a_worker_that_closes_its_channel_or_exits_mid_batch_loses_no_finished_result() {
    // Closed channel: what it ran afterwards never reached the pool, so those tasks
    // crashed (they started: an attempt each); the worker is killed and replaced.
    let (code, recs, err) = abused("close", 1, 0);
    assert_eq!(code, 1, "{err}");
    assert!(!crashed(&recs).is_empty(), "{recs:?}");
    // Exit mid-batch: every result it finished is in its log, none runs again.
    let (code, recs, err) = abused("exit", 1, 0);
    assert_eq!(code, 0, "{err}");
    assert!(recs.iter().all(|r| r["status"] == "ok" && r["attempts"] == 1), "{recs:?}");
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "the worker abuse hooks exist in debug builds only")]
fn a_worker_with_another_protocol_version_is_refused_with_a_clear_error() {
    // The first worker only: it is replaced, the job runs.
    let (status, recs, err) = abused("version", 0, 0);
    assert_eq!(status, 0, "{err}");
    assert!(recs.iter().all(|r| r["status"] == "ok" && r["attempts"] == 1), "{recs:?}");
    // Every worker: no worker can start, an error that says why, nothing ran.
    let job = Job::new(&ABUSED.replace("RETRIES", "0"));
    let out =
        wait_output(job.command(&[]).env("JOBPOOL_TEST_WORKER_ABUSE", "version").spawn().unwrap());
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("protocol version mismatch: pool")
            && !stderr(&out).contains("panicked"),
        "{}",
        stderr(&out)
    );
}
