//! A program that embeds the library and registers its own kinds gets the whole command
//! line through `jobpool::cli::main_with`, and its functions run in worker processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Build the `custom_kinds` example once and return its path.
fn program() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let out = Command::new(env!("CARGO"))
            .args(["build", "-q", "--example", "custom_kinds", "--manifest-path", manifest])
            .output()
            .expect("cargo runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // Examples land beside the test binaries' folder: target/<profile>/examples.
        let deps = std::env::current_exe().unwrap();
        deps.parent().unwrap().parent().unwrap().join("examples").join("custom_kinds")
    })
}

/// Run the program on a copy of an example job in a temporary folder.
fn run_job(job: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/jobs").join(job);
    let dst = dir.path().join(job);
    std::fs::copy(src, &dst).unwrap();
    let out = Command::new(program()).arg("run").arg(&dst).env("NO_COLOR", "1").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn registered_kinds_are_listed_with_the_builtins() {
    let out = Command::new(program()).arg("kinds").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for kind in ["abort_if", "collatz", "command", "greet", "script"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(kind)), "{kind} missing:\n{text}");
    }
}

#[test]
fn a_registered_kind_runs_with_one_argument() {
    let (code, out, err) = run_job("collatz.toml");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[2], r#"3: {"start":3,"steps":7,"peak":16}"#);
    assert_eq!(lines[8], r#"9: {"start":9,"steps":19,"peak":52}"#);
}

#[test]
fn a_registered_kind_takes_named_arguments() {
    let (code, out, err) = run_job("greet.toml");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["hello, Ada", "hello, Ada / hello, Ada", "hello, Grace", "hello, Grace / hello, Grace"]
    );
}

#[test]
fn an_aborting_task_is_crashed_and_costs_only_itself() {
    let (code, out, err) = run_job("crash.toml");
    assert_eq!(code, 1, "{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["1", "", "2", "3", "", "4"]);
    assert!(err.contains("4 ok, 2 crashed"), "{err}");
    assert!(err.contains("SIGABRT"), "{err}");
}

#[test]
fn the_stock_binary_rejects_the_unknown_kind_and_lists_the_known_ones() {
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/jobs/collatz.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_jobpool")).arg("check").arg(job).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("collatz") && err.contains("command") && err.contains("script"), "{err}");
}
