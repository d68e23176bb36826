//! Sinks: formats, order under any completion order, atomic files.

use std::fs;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use crate::record_support::{file_sink, job, ok, record, template};
use jobpool::model::{Order, SinkFormat};
use jobpool::record::{Status, TaskRecord};
use jobpool::sink::{
    Destination, OrderedSinks, ReorderBuffer, Sink, SinkError, SinkManager, with_destination,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A writer whose bytes the test can read while the sink still owns it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn sink_to(format: SinkFormat, args: &[&str]) -> (Box<dyn Sink>, Shared) {
    let dir = std::env::temp_dir();
    let shared = Shared::default();
    let j = job(&dir, "t", args, vec![]);
    let sink = with_destination(&j, &format, Destination::writer(shared.clone())).unwrap();
    (sink, shared)
}

fn write_all(mut sink: Box<dyn Sink>, records: &[TaskRecord]) {
    for r in records {
        sink.write_record(r).unwrap();
    }
    sink.finish().unwrap();
}

#[test]
fn text_template_fields_and_arguments() {
    let (sink, out) = sink_to(
        SinkFormat::Text(template(
            "{index} {status} x={x} args.name={args.name} first={0} v={value} e={error} w={worker} a={attempts} d={duration_ms}",
        )),
        &["x", "name"],
    );
    let failed =
        record(1, Status::Timeout, &[("x", json!(1.5)), ("name", json!(["a", "b"]))], None);
    write_all(sink, &[ok(0), failed]);
    assert_eq!(
        out.text(),
        "0 ok x=0 args.name=n0 first=0 v=0 e= w=0 a=1 d=1.5\n\
         1 timeout x=1.5 args.name=[\"a\",\"b\"] first=1.5 v= e=failed #1 w=1 a=1 d=2.5\n"
    );
}

#[test]
fn text_values_strings_raw_null_empty_objects_json() {
    let (sink, out) = sink_to(SinkFormat::Text(template("<{value}>")), &[]);
    let values = [json!("a \"b\""), Value::Null, json!({"k": [1, 2]}), json!(true), json!(0.25)];
    let records: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, v)| record(i as u64, Status::Ok, &[], Some(v.clone())))
        .collect();
    write_all(sink, &records);
    assert_eq!(out.text(), "<a \"b\">\n<>\n<{\"k\":[1,2]}>\n<true>\n<0.25>\n");
}

#[test]
fn text_failure_keeps_one_line_per_record() {
    let (sink, out) = sink_to(SinkFormat::Text(template("{value}")), &[]);
    write_all(sink, &[ok(0), record(1, Status::Error, &[], None), ok(2)]);
    assert_eq!(out.text(), "0\n\n20\n");
}

#[test]
fn jsonl_round_trips_every_field() {
    let (sink, out) = sink_to(SinkFormat::Jsonl, &[]);
    let mut full = record(3, Status::Error, &[("x", json!("y"))], None);
    full.exit_code = Some(2);
    full.signal = Some(9);
    full.stderr = Some("boom\n".into());
    full.resumed = true;
    let records = vec![ok(0), full];
    write_all(sink, &records);
    let back: Vec<TaskRecord> =
        out.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(back, records);
    // Absent optional fields are left out, not null.
    let first: Value = serde_json::from_str(out.text().lines().next().unwrap()).unwrap();
    assert!(
        first.get("error").is_none()
            && first.get("exit_code").is_none()
            && first.get("resumed").is_none()
    );
}

#[test]
fn json_is_valid_when_empty_and_with_records() {
    let (sink, out) = sink_to(SinkFormat::Json, &[]);
    write_all(sink, &[]);
    assert_eq!(serde_json::from_str::<Value>(&out.text()).unwrap(), json!([]));

    let (sink, out) = sink_to(SinkFormat::Json, &[]);
    let records = vec![ok(0), ok(1), record(2, Status::Cancelled, &[], None)];
    write_all(sink, &records);
    let back: Vec<TaskRecord> = serde_json::from_str(&out.text()).unwrap();
    assert_eq!(back, records);
}

#[test]
fn csv_header_and_quoting() {
    let (sink, out) = sink_to(SinkFormat::Csv, &["name", "n"]);
    let tricky = record(
        0,
        Status::Ok,
        &[("name", json!("a,b \"c\"\nd")), ("n", json!([1, 2]))],
        Some(json!("x,y")),
    );
    let failed = record(1, Status::Error, &[("name", json!("plain")), ("n", Value::Null)], None);
    write_all(sink, &[tricky, failed]);
    let text = out.text();
    assert!(text.starts_with("name,n,status,value,error,duration_ms\n"), "{text}");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<Vec<String>> =
        reader.records().map(|r| r.unwrap().iter().map(String::from).collect()).collect();
    assert_eq!(
        rows,
        vec![
            vec!["a,b \"c\"\nd", "[1,2]", "ok", "x,y", "", "1.5"],
            vec!["plain", "", "error", "", "failed #1", "2.5"],
        ]
    );
}

fn formats() -> Vec<SinkFormat> {
    vec![
        SinkFormat::Text(template("{index}")),
        SinkFormat::Jsonl,
        SinkFormat::Json,
        SinkFormat::Csv,
    ]
}

/// The indexes a sink's output lists, whatever its format.
fn indexes(format: &SinkFormat, text: &str) -> Vec<u64> {
    match format {
        SinkFormat::Text(_) => text.lines().map(|l| l.parse().unwrap()).collect(),
        SinkFormat::Jsonl => {
            text.lines().map(|l| serde_json::from_str::<TaskRecord>(l).unwrap().index).collect()
        }
        SinkFormat::Json => {
            serde_json::from_str::<Vec<TaskRecord>>(text).unwrap().iter().map(|r| r.index).collect()
        }
        // Column `x` holds the index in these records.
        SinkFormat::Csv => csv::Reader::from_reader(text.as_bytes())
            .records()
            .map(|r| r.unwrap()[0].parse().unwrap())
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_sink_writes_submission_order(perm in (1usize..200).prop_flat_map(|n| Just((0..n as u64).collect::<Vec<_>>()).prop_shuffle())) {
        for format in formats() {
            let (sink, out) = sink_to(format.clone(), &["x", "name"]);
            let manager = SinkManager::from_sinks(vec![("test".into(), sink)]);
            let mut ordered = OrderedSinks::new(ReorderBuffer::new(Order::Submission), manager);
            for &i in &perm {
                ordered.accept(ok(i)).unwrap();
            }
            prop_assert_eq!(ordered.buffer().held(), 0);
            ordered.finish().unwrap();
            let expected: Vec<u64> = (0..perm.len() as u64).collect();
            prop_assert_eq!(indexes(&format, &out.text()), expected);
        }
    }

    #[test]
    fn completion_order_passes_records_through(perm in (1usize..100).prop_flat_map(|n| Just((0..n as u64).collect::<Vec<_>>()).prop_shuffle())) {
        for format in formats() {
            let (sink, out) = sink_to(format.clone(), &["x", "name"]);
            let manager = SinkManager::from_sinks(vec![("test".into(), sink)]);
            let mut ordered = OrderedSinks::new(ReorderBuffer::new(Order::Completion), manager);
            for &i in &perm {
                ordered.accept(ok(i)).unwrap();
            }
            ordered.finish().unwrap();
            prop_assert_eq!(indexes(&format, &out.text()), perm.clone());
        }
    }

    #[test]
    fn journal_lines_reach_every_sink_in_submission_order(
        (n, swaps) in (1usize..150).prop_flat_map(|n| (Just(n), proptest::collection::vec((0..n, 0usize..4), 0..n / 2 + 1))),
        both in any::<bool>(),
    ) {
        // Mostly in order with local swaps (as two workers' batches arrive), so records
        // that are due at once (written straight through) and records that must wait
        // alternate; with `both`, a jsonl sink (lines) and a csv sink (records) at once.
        let mut perm: Vec<u64> = (0..n as u64).collect();
        for (at, by) in swaps {
            let other = (at + by).min(n - 1);
            perm.swap(at, other);
        }
        let (jsonl, jsonl_out) = sink_to(SinkFormat::Jsonl, &["x", "name"]);
        let mut sinks = vec![("jsonl".to_string(), jsonl)];
        let (csv, csv_out) = sink_to(SinkFormat::Csv, &["x", "name"]);
        if both {
            sinks.push(("csv".to_string(), csv));
        }
        let mut ordered = OrderedSinks::new(ReorderBuffer::new(Order::Submission), SinkManager::from_sinks(sinks));
        for &i in &perm {
            let rec = ok(i);
            let mut line = Vec::new();
            rec.write_json(&mut line).unwrap();
            line.push(b'\n');
            let record = (!ordered.lines_only()).then(|| Box::new(rec));
            ordered.push_line(i, record, &line).unwrap();
        }
        prop_assert_eq!(ordered.buffer().held(), 0);
        prop_assert_eq!(ordered.written(), n as u64);
        ordered.finish().unwrap();
        let expected: Vec<u64> = (0..n as u64).collect();
        prop_assert_eq!(indexes(&SinkFormat::Jsonl, &jsonl_out.text()), expected.clone());
        if both {
            prop_assert_eq!(indexes(&SinkFormat::Csv, &csv_out.text()), expected);
        }
    }

    #[test]
    fn each_record_is_visible_as_soon_as_its_turn_comes(perm in (1usize..60).prop_flat_map(|n| Just((0..n as u64).collect::<Vec<_>>()).prop_shuffle())) {
        // A stream reader sees exactly the prefix that is complete, after every push.
        let (sink, out) = sink_to(SinkFormat::Text(template("{index}")), &[]);
        let manager = SinkManager::from_sinks(vec![("test".into(), sink)]);
        let mut ordered = OrderedSinks::new(ReorderBuffer::new(Order::Submission), manager);
        let mut arrived = std::collections::HashSet::new();
        for &i in &perm {
            ordered.accept(ok(i)).unwrap();
            arrived.insert(i);
            let prefix = (0..).take_while(|k| arrived.contains(k)).count() as u64;
            prop_assert_eq!(indexes(&SinkFormat::Text(template("{index}")), &out.text()), (0..prefix).collect::<Vec<_>>());
        }
        ordered.finish().unwrap();
    }
}

#[test]
fn reorder_buffer_drains_over_gaps_and_drops_duplicates() {
    let mut buffer = ReorderBuffer::new(Order::Submission);
    assert_eq!(buffer.push(ok(1)).count(), 0);
    assert_eq!(buffer.push(ok(3)).count(), 0);
    let ready: Vec<u64> = buffer.push(ok(0)).map(|r| r.index).collect();
    assert_eq!(ready, vec![0, 1]);
    assert_eq!(buffer.push(ok(0)).count(), 0, "a duplicate of an emitted index is dropped");
    assert_eq!(buffer.stale(), 1);
    assert_eq!(buffer.push(ok(5)).count(), 0);
    assert_eq!(buffer.held(), 2);
    assert_eq!(buffer.peak(), 2);
    let rest: Vec<u64> = buffer.drain().map(|r| r.index).collect();
    assert_eq!(rest, vec![3, 5]);
    assert_eq!(buffer.held(), 0);
}

#[test]
fn a_record_passes_the_buffer_only_when_nothing_waits_on_it() {
    let mut buffer = ReorderBuffer::new(Order::Submission);
    assert!(!buffer.pass(1), "not due yet");
    assert!(buffer.pass(0));
    assert_eq!(buffer.push(ok(2)).count(), 0);
    assert!(!buffer.pass(1), "2 is held behind it: it must be pushed to release 2");
    let ready: Vec<u64> = buffer.push(ok(1)).map(|r| r.index).collect();
    assert_eq!(ready, vec![1, 2]);
    assert!(buffer.pass(3));
    assert_eq!(buffer.next_index(), 4);
    let mut any: ReorderBuffer = ReorderBuffer::new(Order::Completion);
    assert!(any.pass(7) && any.pass(3));
}

#[test]
fn ready_records_not_taken_stay_in_the_buffer() {
    let mut buffer = ReorderBuffer::new(Order::Completion);
    let _ = buffer.push(ok(4));
    let ready: Vec<u64> = buffer.push(ok(2)).map(|r| r.index).collect();
    assert_eq!(ready, vec![4, 2]);
}

#[test]
fn file_sink_is_written_beside_and_renamed_at_finish() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(
        dir.path(),
        "sweep",
        &["x", "name"],
        vec![
            file_sink("out/{name}/{run}.jsonl", SinkFormat::Jsonl),
            file_sink("out/{name}.csv", SinkFormat::Csv),
        ],
    );
    let target = dir.path().join("out/sweep/R1.jsonl");
    let mut sinks = SinkManager::open(&j, "R1").unwrap();
    for i in 0..1000 {
        sinks.write(&ok(i)).unwrap();
    }
    sinks.flush().unwrap();
    assert!(!target.exists(), "the target appears only at finish");
    let temps = temp_files(&dir.path().join("out/sweep"));
    assert_eq!(temps.len(), 1, "{temps:?}");
    assert!(temps[0].starts_with(".R1.jsonl.tmp-"), "{temps:?}");
    sinks.finish().unwrap();
    assert_eq!(fs::read_to_string(&target).unwrap().lines().count(), 1000);
    assert_eq!(fs::read_to_string(dir.path().join("out/sweep.csv")).unwrap().lines().count(), 1001);
    assert!(temp_files(&dir.path().join("out/sweep")).is_empty());
    assert!(temp_files(&dir.path().join("out")).is_empty());
}

fn temp_files(dir: &std::path::Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

#[test]
fn abort_removes_the_temporary_file_and_keeps_the_old_target() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("res.json"), "old").unwrap();
    let j = job(dir.path(), "j", &[], vec![file_sink("res.json", SinkFormat::Json)]);
    let mut sinks = SinkManager::open(&j, "R").unwrap();
    sinks.write(&ok(0)).unwrap();
    assert_eq!(temp_files(dir.path()).len(), 1);
    sinks.abort();
    assert!(temp_files(dir.path()).is_empty());
    assert_eq!(fs::read_to_string(dir.path().join("res.json")).unwrap(), "old");
}

#[test]
fn dropping_an_unfinished_manager_removes_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "j", &[], vec![file_sink("res.jsonl", SinkFormat::Jsonl)]);
    let mut sinks = SinkManager::open(&j, "R").unwrap();
    sinks.write(&ok(0)).unwrap();
    drop(sinks);
    assert!(temp_files(dir.path()).is_empty());
    assert!(!dir.path().join("res.jsonl").exists());
}

#[test]
fn a_reader_never_sees_a_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("res.json");
    let old: Vec<TaskRecord> = (0..3).map(ok).collect();
    fs::write(&target, serde_json::to_string(&old).unwrap()).unwrap();
    let j = job(dir.path(), "j", &["x", "name"], vec![file_sink("res.json", SinkFormat::Json)]);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (target, stop) = (target.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            let mut lengths = std::collections::BTreeSet::new();
            loop {
                // One more read after the writer finished: it must see the new file.
                let last = stop.load(std::sync::atomic::Ordering::SeqCst);
                let text = fs::read_to_string(&target).expect("the target always exists");
                let records: Vec<TaskRecord> =
                    serde_json::from_str(&text).expect("the target is always whole JSON");
                lengths.insert(records.len());
                reads += 1;
                if last {
                    break;
                }
            }
            (reads, lengths)
        })
    };
    let mut sinks = SinkManager::open(&j, "R").unwrap();
    for i in 0..20_000 {
        sinks.write(&ok(i)).unwrap();
    }
    sinks.finish().unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (reads, lengths) = reader.join().unwrap();
    assert!(reads > 0);
    assert!(lengths.iter().all(|n| *n == 3 || *n == 20_000), "{lengths:?}");
    assert!(lengths.contains(&20_000));
}

#[test]
fn two_sinks_on_one_path_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(
        dir.path(),
        "j",
        &[],
        vec![file_sink("{name}.txt", SinkFormat::Jsonl), file_sink("j.txt", SinkFormat::Json)],
    );
    let err = SinkManager::open(&j, "R").unwrap_err();
    assert!(matches!(err, SinkError::SamePath { .. }), "{err}");
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn unwritable_target_is_a_create_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("file"), "").unwrap();
    // A file where a folder must be.
    let j = job(dir.path(), "j", &[], vec![file_sink("file/res.jsonl", SinkFormat::Jsonl)]);
    let err = SinkManager::open(&j, "R").unwrap_err();
    assert!(matches!(err, SinkError::Create { .. }), "{err}");
    assert!(err.to_string().starts_with("cannot create sink file "), "{err}");
}

struct ClosedPipe;

impl Write for ClosedPipe {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
    fn flush(&mut self) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

#[test]
fn a_closed_pipe_is_an_error_the_caller_can_recognise() {
    let j = job(&std::env::temp_dir(), "j", &[], vec![]);
    let sink = with_destination(&j, &SinkFormat::Jsonl, Destination::writer(ClosedPipe)).unwrap();
    let mut ordered = OrderedSinks::new(
        ReorderBuffer::new(Order::Submission),
        SinkManager::from_sinks(vec![("stdout".into(), sink)]),
    );
    let err = ordered.accept(ok(0)).unwrap_err();
    assert!(err.is_broken_pipe(), "{err:?}");
    ordered.abort();
}

/// Throughput, for humans: `cargo test --release --test sinks -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn throughput_jsonl_file_and_journal() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000u64;
    let j = job(
        dir.path(),
        "bench",
        &["x", "name"],
        vec![file_sink("out.jsonl", SinkFormat::Jsonl), file_sink("out.csv", SinkFormat::Csv)],
    );
    // Completion order: blocks of 64 reversed, as 64 workers finishing out of order.
    let arrivals: Vec<TaskRecord> =
        (0..n).map(|i| ok((i / 64) * 64 + 63 - i % 64)).filter(|r| r.index < n).collect();
    let start = std::time::Instant::now();
    let mut ordered = OrderedSinks::open(&j, "R").unwrap();
    for r in arrivals.iter().cloned() {
        ordered.accept(r).unwrap();
    }
    ordered.finish().unwrap();
    let sinks = start.elapsed();

    let start = std::time::Instant::now();
    let mut run = jobpool::store::RunStore::create(&j, Default::default()).unwrap();
    for r in &arrivals {
        run.append(r).unwrap();
    }
    run.finish(Default::default()).unwrap();
    let journal = start.elapsed();

    let start = std::time::Instant::now();
    let mut index = jobpool::store::resume_index(&j).unwrap();
    let resume = start.elapsed();
    assert_eq!(index.len() as u64, n - n % 64);
    let start = std::time::Instant::now();
    let taken = arrivals.iter().filter(|r| index.take(&r.key).is_some()).count();
    let take = start.elapsed();
    assert_eq!(taken as u64, n - n % 64);
    let rate = |d: std::time::Duration| (n as f64 / d.as_secs_f64()) as u64;
    println!(
        "{n} records: jsonl+csv file sinks {sinks:?} ({}/s), journal {journal:?} ({}/s), resume index {resume:?} ({}/s), taking every record back {take:?} ({}/s)",
        rate(sinks),
        rate(journal),
        rate(resume),
        rate(take)
    );
}

#[test]
fn two_sinks_on_one_stream_interleave_only_between_records() {
    let shared = Shared::default();
    let j = job(&std::env::temp_dir(), "j", &["x", "name"], vec![]);
    let mut sinks = Vec::new();
    for format in [SinkFormat::Jsonl, SinkFormat::Text(template("T{index}")), SinkFormat::Csv] {
        let sink = with_destination(&j, &format, Destination::writer(shared.clone())).unwrap();
        sinks.push(("shared".to_string(), sink));
    }
    let mut manager = SinkManager::from_sinks(sinks);
    for i in 0..200u64 {
        // Some records larger than a sink's buffer.
        let big = "v".repeat(if i % 7 == 0 { 100_000 } else { 10 + i as usize });
        let r = record(i, Status::Ok, &[("x", json!(i)), ("name", json!("n"))], Some(json!(big)));
        manager.write(&r).unwrap();
        if i % 13 == 0 {
            manager.flush().unwrap();
        }
    }
    manager.finish().unwrap();
    let text = shared.text();
    let (mut jsonl, mut lines, mut rows) = (0, 0, 0);
    for line in text.lines() {
        if line.starts_with('{') {
            serde_json::from_str::<TaskRecord>(line).unwrap();
            jsonl += 1;
        } else if let Some(index) = line.strip_prefix('T') {
            index.parse::<u64>().unwrap();
            lines += 1;
        } else {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 6, "a csv row cut in two: {:.80}", line);
            rows += 1;
        }
    }
    assert_eq!((jsonl, lines, rows), (200, 200, 201));
}

/// Run by `a_closed_stdout_is_a_quiet_broken_pipe_error` in a child process whose stdout
/// is a pipe that the parent closes.
#[test]
#[ignore = "run as a child process by another test"]
fn child_writes_to_stdout_until_the_pipe_closes() {
    if std::env::var_os("JOBPOOL_TEST_STDOUT_CHILD").is_none() {
        return;
    }
    let j = job(
        &std::env::temp_dir(),
        "j",
        &["x", "name"],
        vec![jobpool::model::SinkConfig {
            to: jobpool::model::SinkTarget::Stdout,
            format: SinkFormat::Text(template("record {index}")),
        }],
    );
    let mut ordered = OrderedSinks::open(&j, "R").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    for i in 0.. {
        if let Err(e) = ordered.accept(ok(i)) {
            eprintln!("SINK-ERROR broken_pipe={} {e}", e.is_broken_pipe());
            ordered.abort();
            eprintln!("CHILD-DONE");
            return;
        }
        if std::time::Instant::now() > deadline {
            break;
        }
    }
    eprintln!("CHILD-NEVER-SAW-AN-ERROR");
}

#[test]
fn a_closed_stdout_is_a_quiet_broken_pipe_error() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sinks::child_writes_to_stdout_until_the_pipe_closes",
            "--ignored",
            "--nocapture",
        ])
        .env("JOBPOOL_TEST_STDOUT_CHILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the child's stdout ended early");
        // libtest may print "test NAME ... " on the same line first.
        if line.contains("record ") {
            break;
        }
    }
    assert!(line.ends_with("record 0\n"), "{line:?}");
    drop(stdout); // `jobpool run job.toml | head -1`
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SINK-ERROR broken_pipe=true"), "{stderr}");
    let before_done = stderr.split("CHILD-DONE").next().unwrap();
    assert!(!before_done.contains("panicked"), "{stderr}");
}
