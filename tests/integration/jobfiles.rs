//! Job files end to end: the real `jobpool` binary on fixtures, examples and overrides.
//!
//! Every file in `tests/fixtures/invalid/` holds exactly one mistake, on the line marked
//! `# <-`; its rendered diagnostic is snapshotted (no colour, width 100) and must name
//! the file and that line. `tests/fixtures/multi.toml` holds several mistakes at once.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A small builder around the real binary.
struct Jobpool {
    cmd: Command,
}

/// What a run left behind.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Jobpool {
    fn new() -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobpool"));
        cmd.env("NO_COLOR", "1").current_dir(root());
        Jobpool { cmd }
    }

    fn args<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(mut self, args: I) -> Self {
        self.cmd.args(args);
        self
    }

    fn dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    fn run(mut self) -> Run {
        let out = self.cmd.output().expect("run jobpool");
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(!run.stderr.contains("panicked"), "jobpool panicked:\n{}", run.stderr);
        run
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fixtures").join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_invalid_fixture_exits_2_names_its_line_and_matches_its_snapshot() {
    let files = fixtures("invalid");
    assert!(files.len() >= 40, "fixtures missing");
    for file in files {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let line = text.lines().position(|l| l.contains("# <-")).expect("marked line") + 1;
        let run = Jobpool::new().dir(file.parent().unwrap()).args(["check", &name]).run();
        assert_eq!(run.code, 2, "{name}: exit code\n{}", run.stderr);
        let at = format!("[{name}:{line}:");
        assert!(run.stderr.contains(&at), "{name}: expected {at} in\n{}", run.stderr);
        assert!(run.stdout.is_empty(), "{name}: stdout {}", run.stdout);
        let stem = name.trim_end_matches(".toml");
        insta::assert_snapshot!(format!("invalid-{stem}"), run.stderr);
    }
}

#[test]
fn several_mistakes_are_all_reported() {
    let run = Jobpool::new().dir(root().join("tests/fixtures")).args(["check", "multi.toml"]).run();
    assert_eq!(run.code, 2);
    for needle in [
        "unknown key `nmae`",
        "`workers` must be positive",
        "`timeout` is not a valid duration",
        "`submision` is not a valid `order`",
        "`{seeed}` in `program`",
        "range of `seed` is empty",
        "`{sise}` in `template`",
        "has no `to`",
        "`yaml` is not a valid `format`",
    ] {
        assert!(run.stderr.contains(needle), "missing {needle:?} in\n{}", run.stderr);
    }
    assert!(run.stderr.contains("9 problems"), "{}", run.stderr);
    insta::assert_snapshot!("multi", run.stderr);
}

#[test]
fn example_jobs_all_check() {
    let run = Jobpool::new().args(["check", "jobs"]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    for job in ["seed-apply", "seed-map", "seed-starmap"] {
        assert!(run.stdout.contains(&format!("jobs/{job}.toml: ok")), "{job}: {}", run.stdout);
    }
    assert!(lines.len() >= 5, "{}", run.stdout);
    assert!(run.stdout.contains("jobs/seed-apply.toml: ok, 1 submission\n"));
    assert!(run.stdout.contains("jobs/seed-starmap.toml: ok, 5 submissions\n"));
}

#[test]
fn example_jobs_deserialize_into_the_spec_types() {
    for file in std::fs::read_dir(root().join("jobs")).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(e) = toml::from_str::<jobpool::spec::JobFile>(&text) {
                panic!("{}: {e}", path.display());
            }
        }
    }
}

#[test]
fn check_mixes_valid_and_invalid_and_exits_2() {
    let run = Jobpool::new()
        .args(["check", "jobs/seed-map.toml", "tests/fixtures/invalid/zero-workers.toml"])
        .run();
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout, "jobs/seed-map.toml: ok, 5 submissions\n");
    assert!(run.stderr.contains("zero-workers.toml"));
    assert!(run.stderr.contains("1 of 2 job files invalid"));
}

#[test]
fn check_rejects_missing_paths_and_empty_folders() {
    let run = Jobpool::new().args(["check", "no/such/job.toml"]).run();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no/such/job.toml does not exist"), "{}", run.stderr);
    let empty = tempfile::tempdir().unwrap();
    let run = Jobpool::new().args(["check".as_ref(), empty.path().as_os_str()]).run();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("holds no *.toml file"), "{}", run.stderr);
}

#[test]
fn check_of_a_folder_passes_over_toml_files_that_are_not_jobs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
    std::fs::write(dir.path().join("rustfmt.toml"), "max_width = 100\n").unwrap();
    std::fs::write(dir.path().join("job.toml"), "[task]\nkind = \"script\"\nscript = \"1\"\n")
        .unwrap();
    let run = Jobpool::new().dir(dir.path()).args(["check", "."]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "./job.toml: ok, 1 submission\n");
    assert_eq!(
        run.stderr,
        "note: skipped ./Cargo.toml: not a job file (no `[task]` or other job key)\n\
         note: skipped ./rustfmt.toml: not a job file (no `[task]` or other job key)\n"
    );
    // Named on its own, a file is checked as a job file whatever it holds.
    let run = Jobpool::new().dir(dir.path()).args(["check", "Cargo.toml"]).run();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("unknown key `package`"), "{}", run.stderr);
    // A folder with no job file at all is an error.
    std::fs::remove_file(dir.path().join("job.toml")).unwrap();
    let run = Jobpool::new().dir(dir.path()).args(["check", "."]).run();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("holds no job file"), "{}", run.stderr);
}

#[test]
fn a_script_file_that_does_not_parse_is_shown_in_that_file() {
    let dir = root().join("tests/fixtures/script-file");
    let run = Jobpool::new().dir(&dir).args(["check", "job.toml"]).run();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("[tasks/score.rhai:4:12]"), "{}", run.stderr);
    assert!(run.stderr.contains("jobpool::script-syntax"), "{}", run.stderr);
    insta::assert_snapshot!("script-file-syntax", run.stderr);
    // From another folder, the script is named by its path from there.
    let run = Jobpool::new().args(["check", "tests/fixtures/script-file/job.toml"]).run();
    assert!(
        run.stderr.contains("[tests/fixtures/script-file/tasks/score.rhai:4:12]"),
        "{}",
        run.stderr
    );
    // `run` checks it too, before anything starts.
    let run = Jobpool::new().dir(&dir).args(["run", "job.toml"]).run();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn a_script_set_on_the_command_line_is_compiled_too() {
    let run =
        Jobpool::new().args(["check", "jobs/seed-apply.toml", "--set", "task.script=1 +"]).run();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("[--set task.script=1 +:1:15]"), "{}", run.stderr);
    assert!(run.stderr.contains("Script is incomplete"), "{}", run.stderr);
}

fn plan_lines(run: &Run) -> Vec<serde_json::Value> {
    run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn plan_prints_index_key_and_args_in_order() {
    let run = Jobpool::new().args(["plan", "jobs/seed-starmap.toml"]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = plan_lines(&run);
    assert_eq!(lines.len(), 5);
    for (i, l) in lines.iter().enumerate() {
        let i = i as i64;
        assert_eq!(l["index"], i);
        assert_eq!(l["args"], serde_json::json!({ "arg1": i, "arg2": 2 * i, "arg3": 3 * i }));
        assert_eq!(l["key"].as_str().unwrap().len(), 32);
        let keys: Vec<&String> = l.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["index", "key", "args"]);
    }
    let again = Jobpool::new().args(["plan", "jobs/seed-starmap.toml", "--limit", "2"]).run();
    assert_eq!(again.stdout.lines().count(), 2);
    assert_eq!(plan_lines(&again)[..], lines[..2]);
}

#[test]
fn plan_of_an_invalid_job_exits_2() {
    let run = Jobpool::new().args(["plan", "tests/fixtures/invalid/zip-unequal.toml"]).run();
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty());
    assert!(run.stderr.contains("`x` has 3, `y` has 2"), "{}", run.stderr);
}

#[test]
fn set_overrides_values_before_validation() {
    let run = Jobpool::new()
        .args([
            "plan",
            "jobs/seed-map.toml",
            "--set",
            "args.identifier=[7, 8]",
            "--set",
            "workers=2",
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ids: Vec<i64> =
        plan_lines(&run).iter().map(|l| l["args"]["identifier"].as_i64().unwrap()).collect();
    assert_eq!(ids, [7, 8]);
    // A new argument; a value that is not TOML is a plain string.
    let run = Jobpool::new()
        .args(["plan", "jobs/seed-apply.toml", "--set", "args.label=hello world"])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(plan_lines(&run)[0]["args"]["label"], "hello world");
    // The key follows the task: overriding the script changes it.
    let a = Jobpool::new().args(["plan", "jobs/seed-apply.toml"]).run();
    let b =
        Jobpool::new().args(["plan", "jobs/seed-apply.toml", "--set", "task.script=1 + 1"]).run();
    assert_ne!(plan_lines(&a)[0]["key"], plan_lines(&b)[0]["key"]);
    // Pool options do not change keys.
    let c = Jobpool::new().args(["plan", "jobs/seed-apply.toml", "--set", "workers=3"]).run();
    assert_eq!(plan_lines(&a)[0]["key"], plan_lines(&c)[0]["key"]);
}

#[test]
fn bad_overrides_say_they_came_from_set() {
    let run = Jobpool::new().args(["check", "jobs/seed-map.toml", "--set", "workers=0"]).run();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("[--set workers=0:1:9]"), "{}", run.stderr);
    insta::assert_snapshot!("set-workers-0", run.stderr);
    let run = Jobpool::new().args(["check", "jobs/seed-map.toml", "--set", "workrs=3"]).run();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("did you mean `workers`"), "{}", run.stderr);
    let run = Jobpool::new().args(["check", "jobs/seed-map.toml", "--set", "workers"]).run();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("not of the form KEY=VALUE"), "{}", run.stderr);
    let run = Jobpool::new().args(["check", "jobs/seed-map.toml", "--set", "name.x=1"]).run();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("`name` is not a table"), "{}", run.stderr);
}

#[test]
fn schema_output_matches_the_checked_in_file() {
    let run = Jobpool::new().args(["schema"]).run();
    assert_eq!(run.code, 0);
    let checked_in = std::fs::read_to_string(root().join("schemas/job.schema.json")).unwrap();
    assert!(
        run.stdout == checked_in,
        "schemas/job.schema.json is stale: run `cargo run -- schema > schemas/job.schema.json`"
    );
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["required"], serde_json::json!(["task"]));
}

#[test]
fn kinds_lists_the_builtins() {
    let run = Jobpool::new().args(["kinds"]).run();
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout,
        "command  built in: any arguments, as {name} placeholders\nscript   built in: any arguments, as variables\n"
    );
}

#[test]
fn help_has_examples_and_version_works() {
    for cmd in ["check", "plan", "schema", "kinds"] {
        let run = Jobpool::new().args([cmd, "--help"]).run();
        assert_eq!(run.code, 0, "{cmd}");
        assert!(run.stdout.contains("Examples:"), "{cmd}: {}", run.stdout);
    }
    let run = Jobpool::new().args(["--version"]).run();
    assert_eq!(run.code, 0);
    assert!(run.stdout.starts_with("jobpool "), "{}", run.stdout);
}

#[test]
fn the_library_reports_every_problem() {
    let path = root().join("tests/fixtures/multi.toml");
    let err = jobpool::validate::load(&path, &Default::default()).unwrap_err();
    assert_eq!(err.problems.len(), 9);
    let lines: Vec<usize> = err
        .problems
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(&path).unwrap();
            text[..p.labels[0].offset()].lines().count()
        })
        .collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "problems come in file order");
}

#[test]
fn globs_and_lines_are_relative_to_the_job_file() {
    let args = |run: &Run, name: &str| -> Vec<String> {
        plan_lines(run).iter().map(|l| l["args"][name].as_str().unwrap().to_string()).collect()
    };
    let from_root = Jobpool::new().args(["plan", "jobs/wordcount.toml"]).run();
    assert_eq!(from_root.code, 0, "{}", from_root.stderr);
    // Values are relative to the job file's folder (where commands run), so they and
    // the content keys are the same wherever jobpool is started.
    assert_eq!(
        args(&from_root, "file"),
        ["data/france.csv", "data/norway.csv", "data/portugal.csv"]
    );
    let from_jobs = Jobpool::new().dir(root().join("jobs")).args(["plan", "wordcount.toml"]).run();
    assert_eq!(from_jobs.stdout, from_root.stdout, "same values and keys from any folder");
    let lines = Jobpool::new().args(["plan", "jobs/greet.toml"]).run();
    assert_eq!(args(&lines, "who"), ["Ada", "Grace", "Linus"]);
}

#[test]
fn a_glob_skips_hidden_files_and_sorts() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["b.txt", "a.txt", ".hidden.txt", "c.dat"] {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        "[task]\nkind = \"script\"\nscript = \"f\"\n[args]\nf = { glob = \"*.txt\" }\n",
    )
    .unwrap();
    let run = Jobpool::new().dir(dir.path()).args(["plan", "job.toml"]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let files: Vec<String> =
        plan_lines(&run).iter().map(|l| l["args"]["f"].as_str().unwrap().to_string()).collect();
    assert_eq!(files, ["a.txt", "b.txt"]);
}
