//! A program that embeds the library and registers its own kinds gets the whole command
//! line through `jobpool::cli::main_with`, and its functions run in worker processes.
//!
//! Its kinds declare their argument names, so `check` holds `[args]` to them: each file
//! in `tests/fixtures/custom-kinds/` holds one argument mistake on the line marked `# <-`
//! and its diagnostic is snapshotted. They are checked with this program, not the stock
//! binary, since only a program that registers the kinds knows their arguments.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Build the `custom_kinds` example once and return its path.
pub(crate) fn program() -> &'static Path {
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
fn kinds_lists_each_kinds_arguments() {
    let out = Command::new(program()).arg("kinds").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |kind: &str| {
        text.lines().find(|l| l.starts_with(&format!("{kind} "))).unwrap_or("").to_string()
    };
    assert!(line("greet").ends_with("  name, times"), "{text}");
    assert!(line("area").ends_with("  w, h"), "{text}");
    assert!(line("collatz").ends_with("  n"), "{text}");
}

/// Every fixture exits 2 before anything runs, names its marked line, and matches its
/// snapshot.
#[test]
fn argument_mistakes_are_reported_by_check_at_their_line() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/custom-kinds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "fixtures missing");
    for file in files {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let line = text.lines().position(|l| l.contains("# <-")).expect("marked line") + 1;
        let out = Command::new(program())
            .current_dir(&dir)
            .args(["check", &name])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{name}: exit code\n{stderr}");
        let at = format!("[{name}:{line}:");
        assert!(stderr.contains(&at), "{name}: expected {at} in\n{stderr}");
        assert_eq!(stderr.matches("jobpool::").count(), 2, "{name}: one problem\n{stderr}");
        let stem = name.trim_end_matches(".toml");
        insta::assert_snapshot!(format!("custom-kinds-{stem}"), stderr);
    }
}

/// The issue's example: a misspelled argument used to bind by position and give a wrong
/// `ok`. Now `run` refuses the job before any task starts.
#[test]
fn a_misspelled_argument_stops_the_run_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("typo.toml");
    std::fs::write(&job, "[task]\nkind = \"area\"\n\n[args]\nw = [2]\nhh = [10]\n").unwrap();
    let out = Command::new(program()).arg("run").arg(&job).env("NO_COLOR", "1").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(err.contains("unknown argument `hh` for kind `area`"), "{err}");
    assert!(err.contains("did you mean `h`?"), "{err}");
    assert!(err.contains("typo.toml:6:1"), "{err}");
    assert!(!dir.path().join(".jobpool").exists(), "nothing ran");
}

#[test]
fn declared_names_bind_to_a_tuple_by_name() {
    let (code, out, err) = run_job("area.toml");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["10 x 1 = 10.0", "20 x 2 = 40.0", "30 x 3 = 90.0"]
    );
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
