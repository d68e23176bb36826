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
