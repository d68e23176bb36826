//! `jobpool init`, `completions` and `man`.

use std::fs;
use std::process::Command;

use crate::run_support::*;

fn jp(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).current_dir(dir).env("NO_COLOR", "1").output().unwrap()
}

#[test]
fn init_writes_a_starter_that_checks_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(".gitignore"), "target").unwrap();
    let out = jp(dir.path(), &["init", "jobs/sweep"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let job = dir.path().join("jobs/sweep.toml");
    let text = fs::read_to_string(&job).unwrap();
    assert!(text.starts_with("#:schema ./jobpool.schema.json\n"), "{text}");
    let schema = fs::read_to_string(dir.path().join("jobs/jobpool.schema.json")).unwrap();
    assert_eq!(schema, stdout(&jp(dir.path(), &["schema"])));
    let check = jp(dir.path(), &["check", "jobs/sweep.toml"]);
    assert_eq!(code(&check), 0, "{}", stderr(&check));
    let run = jp(dir.path(), &["run", "jobs/sweep.toml"]);
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert_eq!(stdout(&run).lines().count(), 6);
    assert!(dir.path().join("jobs/results/sweep.csv").exists());
    // .jobpool/ is ignored in the job's folder, once.
    let again = jp(dir.path(), &["init", "jobs/other"]);
    assert_eq!(code(&again), 0);
    let ignore = fs::read_to_string(dir.path().join("jobs/.gitignore")).unwrap();
    assert_eq!(ignore.matches(".jobpool/").count(), 1, "{ignore}");
    assert_eq!(fs::read_to_string(dir.path().join(".gitignore")).unwrap(), "target");
}

#[test]
fn init_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("job.toml"), "mine").unwrap();
    let out = jp(dir.path(), &["init"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("exists already") && stderr(&out).contains("help:"));
    assert_eq!(fs::read_to_string(dir.path().join("job.toml")).unwrap(), "mine");
}

#[test]
fn completions_and_the_man_page_cover_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = jp(dir.path(), &["completions", shell]);
        assert_eq!(code(&out), 0, "{shell}");
        for sub in ["run", "check", "exec", "init"] {
            assert!(stdout(&out).contains(sub), "{shell} completions lack {sub}");
        }
    }
    let man = jp(dir.path(), &["man"]);
    assert_eq!(code(&man), 0);
    assert!(stdout(&man).contains(".TH jobpool 1"), "{}", stdout(&man));
    let bad = jp(dir.path(), &["completions", "tcsh"]);
    assert_eq!(code(&bad), 2);
}

#[test]
fn color_follows_the_flag_and_no_color() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("bad.toml"),
        "workers = 0\n[task]\nkind = \"script\"\nscript = \"1\"\n",
    )
    .unwrap();
    let esc = |o: &std::process::Output| stderr(o).contains('\u{1b}');
    let always = jp(dir.path(), &["--color", "always", "check", "bad.toml"]);
    assert_eq!(code(&always), 2);
    assert!(esc(&always), "--color always colours a pipe");
    // Piped stderr: plain by default, and with --color never.
    assert!(!esc(&jp(dir.path(), &["check", "bad.toml"])));
    assert!(!esc(&jp(dir.path(), &["check", "--color", "never", "bad.toml"])));
}
