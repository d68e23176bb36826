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

fn values(line: &str) -> Vec<f64> {
    let inner =
        line.strip_prefix("Got: ").expect("a Got line").trim_matches(|c| c == '(' || c == ')');
    inner.split(", ").map(|x| x.parse().expect("a number")).collect()
}

#[test]
fn apply_async_example() {
    let out = run_example("apply_async");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], "Waiting for result...");
    let v = values(lines[1]);
    assert!(v.len() == 1 && (0.0..1.0).contains(&v[0]), "{out}");
}

#[test]
fn map_async_example() {
    let out = run_example("map_async");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert_eq!(lines[0], "Waiting for results...");
    for (i, line) in lines[1..].iter().enumerate() {
        let v = values(line);
        assert_eq!(v[0], i as f64, "{out}");
        assert!((0.0..1.0).contains(&v[1]), "{out}");
    }
}

#[test]
fn starmap_async_example() {
    let out = run_example("starmap_async");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert_eq!(lines[0], "Waiting for results...");
    for (i, line) in lines[1..].iter().enumerate() {
        let v = values(line);
        assert_eq!(&v[..3], &[i as f64, 2.0 * i as f64, 3.0 * i as f64], "{out}");
        assert!((0.0..1.0).contains(&v[3]), "{out}");
    }
}
