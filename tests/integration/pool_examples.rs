//! The tutorial's three examples run as real programs (their workers are the example
//! binaries re-executed) and print what the tutorial prints.

use std::process::Command;

fn run_example(name: &str) -> String {
    let out = Command::new(env!("CARGO"))
        .args([
            "run",
            "-q",
            "--example",
            name,
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ])
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The number of a `Got: <number>` line, as the Python programs print it.
fn got(line: &str) -> f64 {
    let number = line.strip_prefix("Got: ").expect("a Got line");
    number.parse().unwrap_or_else(|_| panic!("not a number: {line:?}"))
}

/// A result is its task's arguments plus a random value in [0, 1) (the sleep). Sums of
/// small integers and such a value are exact up to the last bit, which may round up to
/// the next integer: hence the closed interval.
fn assert_value_of(value: f64, args_sum: f64, out: &str) {
    let drawn = value - args_sum;
    assert!((0.0..=1.0).contains(&drawn), "{value} is not {args_sum} + [0, 1):\n{out}");
}

#[test]
fn apply_async_example() {
    let out = run_example("apply_async");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], "Waiting for result...");
    assert_value_of(got(lines[1]), 0.0, &out);
}

#[test]
fn map_async_example() {
    let out = run_example("map_async");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert_eq!(lines[0], "Waiting for results...");
    // identifier + value, in submission order: identifier = 0, 1, 2, 3, 4.
    for (i, line) in lines[1..].iter().enumerate() {
        assert_value_of(got(line), i as f64, &out);
    }
}

#[test]
fn starmap_async_example() {
    let out = run_example("starmap_async");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert_eq!(lines[0], "Waiting for results...");
    // arg1 + arg2 + arg3 + value over zip(range(5), range(0, 10, 2), range(0, 15, 3)):
    // the arguments sum to i + 2i + 3i = 6i.
    for (i, line) in lines[1..].iter().enumerate() {
        assert_value_of(got(line), 6.0 * i as f64, &out);
    }
}

/// `examples/run_job.rs` (the book's "The library API"): the runner as a library runs a
/// job file on the local pool and hands every record to the program's own callback.
#[test]
fn the_runner_example_runs_a_job_file_through_its_own_callback() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("cubes.toml");
    std::fs::write(
        &job,
        "name = \"cubes\"\nworkers = 2\n[task]\nkind = \"script\"\nscript = \"if x == 3 { throw \\\"three\\\" } x * x * x\"\n[args]\nx = { range = [0, 6] }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO"))
        .args(["run", "-q", "--example", "run_job", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .arg("--")
        .arg(&job)
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "a failed task makes it exit 1:\n{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"started cubes: 6 submissions on 2 workers"), "{stdout}");
    assert!(lines.last().is_some_and(|l| l.starts_with("cubes: 5 ok of 6 in ")), "{stdout}");
    for x in 0..6u64 {
        let line = lines.iter().find(|l| l.starts_with(&format!("#{x} "))).unwrap();
        if x == 3 {
            assert!(line.starts_with("#3 error: ") && line.ends_with(": three"), "{stdout}");
        } else {
            assert!(line.starts_with(&format!("#{x} ok after ")), "{stdout}");
            assert!(line.ends_with(&format!(": {}", x * x * x)), "{stdout}");
        }
    }
    // The library run keeps no journal: only what the callback does happens.
    assert!(!dir.path().join(".jobpool").exists());
}
