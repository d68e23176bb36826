//! Reports: every format on a run with every status, the per-parameter summary of a
//! sweep, comparisons by content key, the JSON against its schema, JUnit as CI systems
//! read it, `jobpool runs` and `--prune` keeping what `--resume` needs, `run --report`,
//! and the HTML page rendered in headless Chromium.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::record_support::{job, record};
use crate::run_support::{Job, code, stderr, stdout};
use jobpool::record::{Status, TaskRecord};
use jobpool::store::{self, RunEnd, RunMeta, RunStore};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_jobpool");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `jobpool ARGS` in `dir`.
fn jobpool(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).args(args).current_dir(dir).env("NO_COLOR", "1").output().unwrap()
}

/// A record of a sweep over `rate` (numeric) and `mode` (text).
fn sweep_record(index: u64, status: Status) -> TaskRecord {
    let rate = [0.5, 1.0, 2.0][(index % 3) as usize];
    let mode = ["fast", "slow"][(index / 3 % 2) as usize];
    let mut r = record(index, status, &[("rate", json!(rate)), ("mode", json!(mode))], None);
    r.key = format!("key-{index}").into();
    if status == Status::Ok {
        r.value = Some(json!(rate * 10.0 + index as f64 / 100.0));
    }
    if matches!(status, Status::Skipped) {
        r.attempts = 0;
        r.worker = None;
        r.started_at = None;
        r.duration_ms = 0.0;
    } else {
        r.started_at =
            Some(format!("2026-11-26T14:04:{:02}.{:06}Z", 10 + index / 4, index * 1000).into());
        r.exit_code = Some(if status == Status::Ok { 0 } else { 1 });
        r.stderr =
            Some(if status == Status::Ok { String::new() } else { "trace\nlast line".into() });
        r.cpu_ms = Some(2.0 + index as f64);
        r.max_rss_kb = Some(10_000 + index * 10);
    }
    if status == Status::Error {
        r.error = Some(format!("exit code 1: bad input <{index}> | \"quoted\""));
    }
    r
}

/// The status of the `index`-th record of [`every_status_run`].
fn status_at(index: u64) -> Status {
    match index {
        3 | 9 => Status::Error,
        5 => Status::Timeout,
        7 => Status::Crashed,
        10 => Status::Cancelled,
        11 => Status::Skipped,
        _ => Status::Ok,
    }
}

/// A finished run of a sweep job in `dir` with every status; returns its folder.
fn every_status_run(dir: &Path, status: impl Fn(u64) -> Status) -> PathBuf {
    let j = job(dir, "sweep", &["rate", "mode"], vec![]);
    let meta = RunMeta { submissions: Some(12), workers: Some(4), ..RunMeta::default() };
    let mut run = RunStore::create(&j, meta).unwrap();
    for i in [0, 2, 1, 3, 4, 6, 5, 7, 8, 9, 10, 11] {
        run.append(&sweep_record(i, status(i))).unwrap();
    }
    let path = run.dir().to_path_buf();
    run.finish(RunEnd { exit_code: 1, cancelled: Some("interrupted".into()) }).unwrap();
    path
}

#[test]
fn markdown_has_every_section_of_a_run_with_every_status() {
    let dir = tempfile::tempdir().unwrap();
    let run = every_status_run(dir.path(), status_at);
    let out = jobpool(dir.path(), &["report", run.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let md = stdout(&out);
    for want in [
        "# jobpool report: sweep",
        "❌ **4 of 12 failed** (cancelled: interrupted)",
        "| workers | 4 |",
        "| ok | 6 | 50.0% |",
        "| error | 2 | 16.7% |",
        "| timeout | 1 | 8.3% |",
        "| crashed | 1 | 8.3% |",
        "| cancelled | 1 | 8.3% |",
        "| skipped | 1 | 8.3% |",
        "## Resources per task",
        "| CPU time |",
        "| peak memory |",
        "## Slowest tasks",
        "## Failures (4)",
        // The error's `|` is escaped so the table holds.
        "| 3 | `rate=0.5, mode=slow` | error | 1 | exit code 1: bad input <3> \\| \"quoted\" — stderr: last line |",
        "## Parameters",
        "**rate**",
        "**mode**",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    // Every table row has as many cells as its header.
    let mut cols = 0;
    for line in md.lines() {
        if line.starts_with("|---") || line.starts_with("|--:") {
            continue;
        }
        let cells = line.replace("\\|", "").matches('|').count();
        if line.starts_with('|') {
            if cols == 0 {
                cols = cells;
            }
            assert_eq!(cells, cols, "{line}");
        } else {
            cols = 0;
        }
    }
}

#[test]
fn the_sweep_summary_has_a_row_per_parameter_value() {
    let dir = tempfile::tempdir().unwrap();
    let run = every_status_run(dir.path(), status_at);
    let out = jobpool(dir.path(), &["report", "--format", "json", run.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let params = v["summary"]["parameters"].as_array().unwrap();
    let names: Vec<&str> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["rate", "mode"]);
    let rate = &params[0];
    assert_eq!(rate["numeric"], true);
    let values: Vec<f64> =
        rate["values"].as_array().unwrap().iter().map(|v| v["value"].as_f64().unwrap()).collect();
    assert_eq!(values, [0.5, 1.0, 2.0]);
    // rate = 0.5: indexes 0 3 6 9 -> ok, error, ok, error.
    let half = &rate["values"][0];
    assert_eq!((half["count"].as_u64(), half["failures"].as_u64()), (Some(4), Some(2)));
    assert_eq!(half["result"]["count"], 2);
    assert_eq!(half["result"]["median"].as_f64().unwrap(), 5.0);
    let mode = &params[1];
    assert_eq!(mode["numeric"], false);
    let modes: Vec<&str> =
        mode["values"].as_array().unwrap().iter().map(|v| v["value"].as_str().unwrap()).collect();
    assert_eq!(modes, ["fast", "slow"], "text values in plan order");
}

#[test]
fn json_matches_its_checked_in_schema() {
    let out = jobpool(&root(), &["report", "--schema"]);
    let checked_in = fs::read_to_string(root().join("schemas/report.schema.json")).unwrap();
    assert!(
        stdout(&out) == checked_in,
        "schemas/report.schema.json is stale: run `cargo run -- report --schema > schemas/report.schema.json`"
    );
    let schema: Value = serde_json::from_str(&checked_in).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let run = every_status_run(dir.path(), status_at);
    let out = jobpool(dir.path(), &["report", "-o", "r.json", run.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(doc["report_format"], 1);
    let s = &doc["summary"];
    assert_eq!(s["total"], 12);
    assert_eq!(
        s["counts"],
        json!({"ok": 6, "error": 2, "timeout": 1, "crashed": 1, "cancelled": 1, "skipped": 1})
    );
    assert_eq!(s["failures"], 4);
    assert_eq!(s["failure_list"].as_array().unwrap().len(), 4);
    assert_eq!(s["failure_list"][0]["args"], json!({"rate": 0.5, "mode": "slow"}));
    assert_eq!(s["failure_list"][0]["stderr"], "trace\nlast line");
    assert_eq!(s["run"]["cancelled"], "interrupted");
    assert_eq!(s["duration_ms"]["count"], 10, "every task that ran and finished");
    assert!(s["max_rss_kb"]["max"].as_f64().unwrap() >= 10_090.0);

    // A comparison validates too.
    let out =
        jobpool(dir.path(), &["report", "--format", "json", "--compare", run.to_str().unwrap()]);
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn junit_has_one_test_case_per_submission_as_ci_systems_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = every_status_run(dir.path(), status_at);
    let out = jobpool(dir.path(), &["report", "-o", "junit.xml", run.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let xml = fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let suites = doc.root_element();
    assert_eq!(suites.tag_name().name(), "testsuites");
    let suite = suites.children().find(|n| n.has_tag_name("testsuite")).unwrap();
    assert_eq!(suite.attribute("name"), Some("sweep"));
    // The counts CI systems show come from these attributes; they must match the cases.
    let cases: Vec<_> = suite.children().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(cases.len(), 12);
    let with =
        |tag: &str| cases.iter().filter(|c| c.children().any(|n| n.has_tag_name(tag))).count();
    assert_eq!((with("failure"), with("error"), with("skipped")), (2, 2, 2));
    for (attr, n) in [("tests", 12), ("failures", 2), ("errors", 2), ("skipped", 2)] {
        assert_eq!(suite.attribute(attr), Some(n.to_string().as_str()), "{attr}");
        assert_eq!(suites.attribute(attr), Some(n.to_string().as_str()), "{attr}");
    }
    // Plan order; every case has a name, a classname and a time in seconds.
    for (i, c) in cases.iter().enumerate() {
        assert!(
            c.attribute("name").unwrap().starts_with(&format!("[{i}] rate=")),
            "{:?}",
            c.attribute("name")
        );
        assert_eq!(c.attribute("classname"), Some("sweep"));
        assert!(c.attribute("time").unwrap().parse::<f64>().is_ok());
    }
    let failure = cases[3].children().find(|n| n.has_tag_name("failure")).unwrap();
    assert_eq!(failure.attribute("type"), Some("error"));
    assert!(failure.attribute("message").unwrap().contains("bad input <3> | \"quoted\""));
    let error = cases[5].children().find(|n| n.has_tag_name("error")).unwrap();
    assert_eq!(error.attribute("type"), Some("timeout"));
    assert!(cases[3].children().any(|n| n.has_tag_name("system-err")));
}

#[test]
fn compare_lists_newly_failing_first_then_fixed_and_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    every_status_run(dir.path(), |_| Status::Ok);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = every_status_run(dir.path(), |i| if i == 4 { Status::Ok } else { status_at(i) });
    // The latest run here, against the one before it.
    let out = jobpool(dir.path(), &["report", "--compare", "previous", "--format", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let c = &doc["comparison"];
    let keys = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|c| c["key"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(keys(&c["newly_failing"]), ["key-3", "key-5", "key-7", "key-9"]);
    assert_eq!(keys(&c["status_changes"]), ["key-10", "key-11"]);
    assert_eq!(c["unchanged"], 6);
    assert_eq!(c["newly_failing"][0]["before"]["status"], "ok");
    assert_eq!(c["newly_failing"][0]["after"]["status"], "error");
    assert_eq!(c["duration_ratio"]["median"], 1.0);
    assert_eq!(doc["summary"]["run"]["id"], second.file_name().unwrap().to_str().unwrap());

    // The other way round, the failures are fixed; in Markdown, newly failing come first.
    let first = store::list_runs(dir.path(), "sweep").unwrap()[0].path.clone();
    let out = jobpool(
        dir.path(),
        &["report", "--compare", second.to_str().unwrap(), first.to_str().unwrap()],
    );
    let md = stdout(&out);
    assert!(md.contains("### Fixed (4)"), "{md}");
    assert!(md.starts_with("# jobpool comparison:"), "{md}");
    let out = jobpool(dir.path(), &["report", "--compare", "previous"]);
    let md = stdout(&out);
    let at = |s: &str| md.find(s).unwrap_or_else(|| panic!("{s} in {md}"));
    assert!(at("### Newly failing (4)") < at("### Other status changes (2)"));
}

/// Keys with an `ok` record, as `--resume` sees them.
fn resumable(dir: &Path) -> Vec<(String, Value)> {
    let j = job(dir, "sweep", &["rate", "mode"], vec![]);
    let mut v: Vec<(String, Value)> = store::resume_index(&j)
        .unwrap()
        .into_map()
        .into_iter()
        .map(|(k, r)| (k.to_string(), r.value.unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn run_with(dir: &Path, recs: &[(&str, Status, i64)]) {
    let j = job(dir, "sweep", &["rate", "mode"], vec![]);
    let mut run = RunStore::create(&j, RunMeta::default()).unwrap();
    for (i, (key, st, value)) in recs.iter().enumerate() {
        let mut r = record(i as u64, *st, &[("k", json!(key))], Some(json!(value)));
        r.key = (*key).into();
        run.append(&r).unwrap();
    }
    run.finish(RunEnd { exit_code: 0, cancelled: None }).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
}

#[test]
fn prune_keeps_every_ok_record_that_resume_uses() {
    use Status::*;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_with(d, &[("a", Ok, 1), ("b", Ok, 1), ("c", Error, 0)]);
    run_with(d, &[("a", Ok, 2), ("c", Error, 0), ("d", Ok, 2)]);
    run_with(d, &[("c", Ok, 3), ("e", Error, 0)]);
    run_with(d, &[("d", Ok, 4), ("e", Error, 0)]);
    let before = resumable(d);
    assert_eq!(before.len(), 4);

    let out = jobpool(d, &["runs", "--prune", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("removed 3 runs, kept 1; 3 ok records that --resume uses kept"),
        "{}",
        stderr(&out)
    );
    assert_eq!(resumable(d), before, "the latest ok of every key is still there");
    let runs = store::list_runs(d, "sweep").unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs[0].is_compacted() && !runs[1].is_compacted());
    // Only what resume takes was kept: a, b and c (d is ok in the kept run).
    let kept: Vec<String> = store::read_records(&runs[0].path)
        .unwrap()
        .into_iter()
        .map(|r| r.key.to_string())
        .collect();
    assert_eq!(kept.len(), 3);
    // The folder of kept records is not the latest run.
    assert_eq!(store::latest_run(d, "sweep").unwrap().unwrap().id, runs[1].id);
    let listing = stdout(&jobpool(d, &["runs"]));
    assert!(listing.contains("kept") && listing.contains("3 ok"), "{listing}");

    // Pruning again, after a newer run, replaces the kept folder and still loses nothing.
    run_with(d, &[("a", Ok, 5)]);
    let before = resumable(d);
    let out = jobpool(d, &["runs", "--prune", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(resumable(d), before);
    let runs = store::list_runs(d, "sweep").unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs.iter().filter(|r| r.is_compacted()).count(), 1);
}

#[test]
fn runs_lists_id_state_start_wall_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let run = every_status_run(dir.path(), status_at);
    let out = jobpool(dir.path(), &["runs"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let id = run.file_name().unwrap().to_str().unwrap();
    let line = text.lines().find(|l| l.contains(id)).unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with("sweep"), "{line}");
    assert!(line.contains("failed"), "{line}");
    assert!(line.contains("6 ok, 2 error, 1 timeout, 1 crashed, 1 cancelled, 1 skipped"), "{line}");
    assert!(text.starts_with("JOB"), "{text}");
}

#[test]
fn run_report_writes_every_format_from_the_live_summary() {
    let job = Job::new(
        r#"
workers = 2
task-timeout = "1s"
grace-period = "100ms"
[task]
kind = "command"
shell = "case {i} in 1) echo bad >&2; exit 3;; 2) sleep 30;; 3) kill -9 $PPID; sleep 5;; esac; echo $(( {i} * 2 ))"
[args]
i = [0, 1, 2, 3, 4, 5]
"#,
    );
    let out = job.run(&[
        "-q",
        "--report",
        "md=out/{name}.md",
        "--report",
        "json=r.json",
        "--report",
        "junit=r.xml",
        "--report",
        "html=r.html",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let md = fs::read_to_string(job.path("out/job.md")).unwrap();
    assert!(md.contains("| timeout | 1 |") && md.contains("| crashed | 1 |"), "{md}");
    let xml = fs::read_to_string(job.path("r.xml")).unwrap();
    assert_eq!(
        roxmltree::Document::parse(&xml)
            .unwrap()
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .count(),
        6
    );
    let html = fs::read_to_string(job.path("r.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Failures (3)"));
    // One renderer: the live summary is the one `jobpool report` reads back from disk.
    let live = fs::read_to_string(job.path("r.json")).unwrap();
    let later = jobpool(job.dir.path(), &["report", "--format", "json", "job.toml"]);
    assert_eq!(stdout(&later), live);
}

/// Headless Chromium, if installed (Debian's `chromium`; `.ci/run` installs it).
fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Render `html` to a PNG with headless Chromium; `None` (said on stderr) without it.
pub fn screenshot(html: &Path, png: &Path, height: u32) -> Option<Vec<u8>> {
    let Some(chrome) = chromium() else {
        eprintln!(
            "NOTE: chromium is not installed: the HTML report was not rendered (apt-get install chromium)"
        );
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--window-size=1000,{height}"),
            &format!("--screenshot={}", png.display()),
        ])
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(png.exists(), "chromium wrote no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    Some(fs::read(png).unwrap())
}

/// Whether a screenshot shows something: enough non-white pixels and colours (a page
/// that failed to load is white, or one grey error page).
pub fn png_is_not_blank(png: &[u8]) -> bool {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    let px = &buf[..info.buffer_size()];
    let mut colours = std::collections::HashSet::new();
    let mut inked = 0usize;
    for p in px.chunks(step) {
        let rgb = (p[0], p[1], p[2 % step]);
        colours.insert(rgb);
        if rgb.0 < 200 || rgb.1 < 200 || rgb.2 < 200 {
            inked += 1;
        }
    }
    let total = px.len() / step;
    eprintln!(
        "screenshot: {} colours, {:.1}% inked",
        colours.len(),
        inked as f64 * 100.0 / total as f64
    );
    colours.len() > 20 && inked * 100 > total
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let run = every_status_run(dir.path(), status_at);
    let out = jobpool(dir.path(), &["report", "-o", "report.html", run.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let html = fs::read_to_string(dir.path().join("report.html")).unwrap();
    // Self-contained: no URL to fetch anything from, a policy that forbids requests.
    assert!(html.contains("default-src 'none'"));
    for bad in ["<script", "src=\"http", "href=\"http", "@import", "url(http"] {
        assert!(!html.contains(bad), "{bad}");
    }
    assert_eq!(
        html.matches("<svg").count(),
        3,
        "histogram, timeline, result by rate (none by mode)"
    );
    let png = dir.path().join("report.png");
    if let Some(bytes) = screenshot(&dir.path().join("report.html"), &png, 2400) {
        assert!(png_is_not_blank(&bytes), "blank screenshot: {} bytes", bytes.len());
    }
}

/// The run folders of job `sq`, oldest first (no kept folders).
fn sq_runs(dir: &Path) -> Vec<PathBuf> {
    store::list_runs(dir, "sq")
        .unwrap()
        .into_iter()
        .filter(|r| !r.is_compacted())
        .map(|r| r.path)
        .collect()
}

fn report_json(dir: &Path, run: &Path) -> Value {
    let out = jobpool(dir, &["report", "--format", "json", run.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn resumed_runs_journal_only_what_ran_and_still_report_every_record() {
    let job = Job::new(
        "name = \"sq\"\n[task]\nkind = \"script\"\nscript = \"i * i\"\n[args]\ni = { range = [0, 20] }\n",
    );
    let d = job.dir.path();
    assert_eq!(code(&job.run(&["-q"])), 0);
    for _ in 0..2 {
        let out = job.run(&["-q", "--resume"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let runs = sq_runs(d);
    assert_eq!(runs.len(), 3);
    for run in &runs[1..] {
        assert_eq!(fs::read_to_string(run.join("records.jsonl")).unwrap(), "", "nothing ran");
    }
    let shared: Vec<_> = fs::read_dir(d.join(".jobpool/resumed/sq")).unwrap().collect();
    assert_eq!(shared.len(), 1, "two fully resumed runs share one references file");
    assert!(d.join(".jobpool/index/sq.jsonl").is_file());

    // Every format sees all 20 records of the latest run.
    let doc = report_json(d, &runs[2]);
    assert_eq!(
        (doc["summary"]["total"].as_u64(), doc["summary"]["resumed"].as_u64()),
        (Some(20), Some(20))
    );
    assert_eq!(doc["summary"]["value"]["count"], 20);
    let out = jobpool(d, &["report", "--format", "junit", runs[2].to_str().unwrap()]);
    let xml = stdout(&out);
    let parsed = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let cases: Vec<_> = parsed.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(cases.len(), 20);
    assert!(cases[19].attribute("name").unwrap().starts_with("[19] i=19"), "{xml}");
    let out = jobpool(d, &["report", "--compare", "previous", "--format", "json"]);
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["comparison"]["unchanged"], 20, "{doc}");
    // `runs` counts them too.
    assert!(stdout(&jobpool(d, &["runs"])).contains("20 ok"));

    // Prune to the latest run: its report is still complete, and resume takes everything.
    let out = jobpool(d, &["runs", "--prune", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sq_runs(d), runs[2..].to_vec());
    assert_eq!(report_json(d, &runs[2])["summary"]["total"], 20);
    assert_eq!(fs::read_dir(d.join(".jobpool/resumed/sq")).unwrap().count(), 1);
    assert_eq!(code(&job.run(&["-q", "--resume"])), 0);
    let latest = sq_runs(d).pop().unwrap();
    assert_eq!(fs::read_to_string(latest.join("records.jsonl")).unwrap(), "");
    assert_eq!(store::read_run_info(&latest).unwrap().resumed, 20);

    // Five more values: five run, twenty are referenced, the sink has all 25 in order.
    job.write(
        "job.toml",
        "name = \"sq\"\n[task]\nkind = \"script\"\nscript = \"i * i\"\n[args]\ni = { range = [0, 25] }\n[[sink]]\nto = \"out.jsonl\"\nformat = \"jsonl\"\n",
    );
    assert_eq!(code(&job.run(&["-q", "--resume"])), 0);
    let latest = sq_runs(d).pop().unwrap();
    assert_eq!(fs::read_to_string(latest.join("records.jsonl")).unwrap().lines().count(), 5);
    let values: Vec<u64> =
        job.jsonl("out.jsonl").iter().map(|r| r["value"].as_u64().unwrap()).collect();
    assert_eq!(values, (0..25).map(|i| i * i).collect::<Vec<u64>>());
    let doc = report_json(d, &latest);
    assert_eq!(
        (doc["summary"]["total"].as_u64(), doc["summary"]["ran"].as_u64()),
        (Some(25), Some(5))
    );
}
