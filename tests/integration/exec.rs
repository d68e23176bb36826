//! `jobpool exec`: ad-hoc jobs without a file, GNU parallel's habits with jobpool's
//! guarantees.

use std::fs;
use std::process::{Command, Output, Stdio};

use crate::run_support::*;

fn exec(dir: &std::path::Path, args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .arg("exec")
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child)
}

#[test]
fn output_is_in_submission_order_whatever_finishes_first() {
    let dir = tempfile::tempdir().unwrap();
    let out = exec(
        dir.path(),
        &["-j", "3", "--", "sh", "-c", "sleep $0; echo $0", "{}", ":::", "0.3", "0.1", "0.2", "0"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "0.3\n0.1\n0.2\n0\n");
}

#[test]
fn groups_make_every_combination_or_pairs_with_link() {
    let dir = tempfile::tempdir().unwrap();
    let out = exec(dir.path(), &["--", "echo", "{1}-{2}", ":::", "a", "b", ":::", "1", "2"]);
    assert_eq!(stdout(&out), "a-1\na-2\nb-1\nb-2\n", "{}", stderr(&out));
    let out =
        exec(dir.path(), &["--link", "--", "echo", "{1}-{2}", ":::", "a", "b", ":::", "1", "2"]);
    assert_eq!(stdout(&out), "a-1\nb-2\n", "{}", stderr(&out));
    let out = exec(dir.path(), &["--link", "--", "echo", ":::", "a", "b", ":::", "1"]);
    assert_eq!(code(&out), 2, "zip of unequal lengths is invalid: {}", stderr(&out));
}

#[test]
fn values_are_appended_without_a_placeholder_and_lines_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("in.txt"), "x y\n\nz\n").unwrap();
    let out = exec(dir.path(), &["--", "echo", "v", ":::", "1", "2"]);
    assert_eq!(stdout(&out), "v 1\nv 2\n");
    // One argument per line, spaces kept: no shell splits it.
    let out = exec(dir.path(), &["--", "printf", "[%s]", "::::", "in.txt"]);
    assert_eq!(stdout(&out), "[x y]\n[z]\n", "{}", stderr(&out));
}

#[test]
fn other_braces_are_literal_and_values_are_never_split_by_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        exec(dir.path(), &["--", "awk", "BEGIN{print ARGV[1]}", "{}", ":::", "a b; rm -rf x"]);
    assert_eq!(stdout(&out), "a b; rm -rf x\n", "{}", stderr(&out));
    let out = exec(dir.path(), &["--shell", "--", "echo {} | tr a-z A-Z", ":::", "it's $HOME"]);
    assert_eq!(stdout(&out), "IT'S $HOME\n", "{}", stderr(&out));
}

#[test]
fn print_job_prints_a_job_file_that_runs_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--task-timeout", "5s", "--", "echo", "<{}>", ":::", "a", "b"];
    let direct = exec(dir.path(), &args);
    let mut with_print = vec!["--print-job"];
    with_print.extend(args);
    let job = exec(dir.path(), &with_print);
    assert_eq!(code(&job), 0);
    fs::write(dir.path().join("job.toml"), stdout(&job)).unwrap();
    let run = Command::new(BIN).args(["run", "job.toml"]).current_dir(dir.path()).output().unwrap();
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert_eq!(stdout(&run), stdout(&direct));
    assert_eq!(stdout(&direct), "<a>\n<b>\n");
}

#[test]
fn exit_codes_timeouts_and_resume_are_jobpool_s() {
    let dir = tempfile::tempdir().unwrap();
    // A failing task: exit 1; a timed-out one is killed with its group.
    let out = exec(
        dir.path(),
        &[
            "--task-timeout",
            "300ms",
            "--",
            "sh",
            "-c",
            "echo $$ >> pids; if [ $0 = slow ]; then sleep 30 & wait; fi; echo $0",
            "{}",
            ":::",
            "fast",
            "slow",
        ],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(stdout(&out), "fast\n\n");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pids: Vec<i32> = fs::read_to_string(dir.path().join("pids"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(survivors(&pids), Vec::<i32>::new());
    // --resume runs only what is not ok.
    let out = exec(
        dir.path(),
        &["--resume", "--", "sh", "-c", "echo $0 >> ran; echo $0", "{}", ":::", "1", "2"],
    );
    assert_eq!(code(&out), 0);
    let out = exec(
        dir.path(),
        &["--resume", "--", "sh", "-c", "echo $0 >> ran; echo $0", "{}", ":::", "1", "2", "3"],
    );
    assert_eq!(stdout(&out), "1\n2\n3\n", "{}", stderr(&out));
    // Two workers append in either order: each value ran exactly once.
    let mut ran: Vec<String> =
        fs::read_to_string(dir.path().join("ran")).unwrap().lines().map(String::from).collect();
    ran.sort();
    assert_eq!(ran, ["1", "2", "3"]);
}

#[test]
fn usage_mistakes_exit_2_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["--", "echo", "{}"][..], "no values"),
        (&["--", "echo", "{2}", ":::", "a"][..], "names group 2"),
        (&["--", "echo", ":::"][..], "followed by no value"),
    ] {
        let out = exec(dir.path(), args);
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(stderr(&out).contains(says) && stderr(&out).contains("help:"), "{}", stderr(&out));
    }
}

/// The one-liners of the book's "Coming from GNU parallel" table print what GNU parallel
/// (`-k`, keep order) prints for the same values. Needs GNU parallel (`.ci/run` installs
/// it); without it the test says so and checks nothing.
#[test]
fn the_books_one_liners_print_what_gnu_parallel_prints() {
    let has_parallel = Command::new("parallel").arg("--version").output().is_ok_and(|o| {
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("GNU parallel")
    });
    if !has_parallel {
        eprintln!("NOTE: GNU parallel is not installed: the comparison with it did NOT run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("lines.txt"), "one two\n  spaced  \nthree's\n").unwrap();
    let cases: &[&[&str]] = &[
        &["echo", "{}", ":::", "a", "b", "c"],
        &["echo", ":::", "a", "b"],
        &["echo", "{1}-{2}", ":::", "a", "b", ":::", "1", "2"],
        &["echo", "{2}/{1}", ":::", "a", "b", ":::", "x", "y", "z"],
        &["--link", "echo", "{1}", "{2}", ":::", "a", "b", ":::", "x", "y"],
        &["echo", "[{}]", "::::", "lines.txt"],
        &["echo", ":::", "a b; echo injected", "$(id)", "'quoted'", "*"],
        &["echo", "{}.", ":::", "tab\there", "x"],
    ];
    for case in cases {
        let (flags, cmd): (Vec<&str>, Vec<&str>) = match case[0] {
            "--link" => (vec!["--link"], case[1..].to_vec()),
            _ => (vec![], case.to_vec()),
        };
        let mut ours: Vec<&str> = flags.clone();
        ours.push("--");
        ours.extend(&cmd);
        let jp = exec(dir.path(), &ours);
        assert_eq!(code(&jp), 0, "{case:?}: {}", stderr(&jp));
        let gnu = Command::new("parallel")
            .args(["--will-cite", "-k", "-j", "2"])
            .args(&flags)
            .args(&cmd)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(gnu.status.success(), "{case:?}: {}", String::from_utf8_lossy(&gnu.stderr));
        assert_eq!(
            String::from_utf8_lossy(&jp.stdout),
            String::from_utf8_lossy(&gnu.stdout),
            "`jobpool exec` and `parallel -k` differ on {case:?}"
        );
    }
}
