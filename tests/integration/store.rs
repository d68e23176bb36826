//! The run store: run folders, the journal, torn lines, run listing, the resume index.

use std::fs::{self, OpenOptions};
use std::io::Write;

use crate::record_support::{job, ok, record};
use jobpool::record::{Status, TaskRecord};
use jobpool::store::{
    self, RunEnd, RunMeta, RunState, RunStore, latest_run, list_runs, read_records, records,
    resume_index,
};
use serde_json::{Value, json};

fn keyed(index: u64, key: &str, status: Status, value: i64) -> TaskRecord {
    let mut r = record(index, status, &[("x", json!(index))], Some(json!(value)));
    r.key = key.into();
    r
}

#[test]
fn create_writes_run_json_gitignore_and_an_empty_journal() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "sweep", &["x"], vec![]);
    let meta = RunMeta {
        argv: vec!["jobpool".into(), "run".into()],
        submissions: Some(5),
        workers: Some(2),
        ..RunMeta::default()
    };
    let run = RunStore::create(&j, meta).unwrap();
    let id = run.run_id().to_string();
    assert_eq!(run.dir(), dir.path().join(".jobpool/runs/sweep").join(&id));
    assert_eq!(
        fs::read_to_string(dir.path().join(".jobpool/.gitignore")).unwrap().lines().last(),
        Some("*")
    );
    let info = store::read_run_info(run.dir()).unwrap();
    assert_eq!(info.run_id, id);
    assert_eq!(info.job, "sweep");
    assert_eq!(info.state, RunState::Running);
    assert_eq!(info.submissions, Some(5));
    assert_eq!(info.workers, Some(2));
    assert_eq!(info.task_kind, "test");
    assert_eq!(info.args, vec!["x".to_string()]);
    assert_eq!(info.jobpool_version, env!("CARGO_PKG_VERSION"));
    assert!(info.ended_at.is_none() && info.exit_code.is_none());
    assert_eq!(read_records(run.dir()).unwrap(), vec![]);
}

#[test]
fn run_ids_are_sortable_utc_times_with_a_suffix() {
    let id = store::new_run_id();
    // 20261126T140455Z-3f9a
    assert_eq!(id.len(), 21, "{id}");
    let b = id.as_bytes();
    assert!(b[..8].iter().all(u8::is_ascii_digit), "{id}");
    assert_eq!((b[8], b[15], b[16]), (b'T', b'Z', b'-'), "{id}");
    assert!(b[9..15].iter().all(u8::is_ascii_digit), "{id}");
    assert!(b[17..].iter().all(u8::is_ascii_hexdigit), "{id}");
}

#[test]
fn the_journal_is_readable_record_by_record_while_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "j", &["x"], vec![]);
    let mut run = RunStore::create(&j, RunMeta::default()).unwrap();
    let mut written = Vec::new();
    for i in [2, 0, 1] {
        let r = ok(i);
        run.append(&r).unwrap();
        written.push(r);
        // Another reader, while `run` is still open and nothing was fsynced.
        assert_eq!(read_records(run.dir()).unwrap(), written);
    }
    let dir_of_run = run.dir().to_path_buf();
    drop(run); // a crash: no finish
    assert_eq!(read_records(&dir_of_run).unwrap(), written);
    assert_eq!(store::read_run_info(&dir_of_run).unwrap().state, RunState::Running);
}

#[test]
fn finish_records_counts_wall_time_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "j", &["x"], vec![]);
    let mut run = RunStore::create(&j, RunMeta::default()).unwrap();
    let mut resumed = ok(1);
    resumed.resumed = true;
    for r in
        [ok(0), resumed, record(2, Status::Error, &[], None), record(3, Status::Skipped, &[], None)]
    {
        run.append(&r).unwrap();
    }
    let run_dir = run.dir().to_path_buf();
    let info = run.finish(RunEnd { exit_code: 1, cancelled: None }).unwrap();
    let on_disk = store::read_run_info(&run_dir).unwrap();
    assert_eq!(on_disk, info);
    assert_eq!(on_disk.state, RunState::Finished);
    assert_eq!((on_disk.counts.ok, on_disk.counts.error, on_disk.counts.skipped), (2, 1, 1));
    assert_eq!(on_disk.counts.total(), 4);
    assert_eq!(on_disk.counts.failures(), 1);
    assert_eq!(on_disk.resumed, 1);
    assert_eq!(on_disk.exit_code, Some(1));
    assert!(on_disk.wall_ms.unwrap() >= 0.0);
    assert!(on_disk.ended_at.unwrap() >= on_disk.started_at);
    let leftovers: Vec<_> =
        fs::read_dir(&run_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 2, "only run.json and records.jsonl: {leftovers:?}");
}

#[test]
fn a_torn_last_line_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "j", &["x"], vec![]);
    let mut run = RunStore::create(&j, RunMeta::default()).unwrap();
    run.append(&ok(0)).unwrap();
    run.append(&ok(1)).unwrap();
    let run_dir = run.dir().to_path_buf();
    drop(run);
    // jobpool killed in the middle of writing the third line.
    let line = serde_json::to_string(&ok(2)).unwrap();
    let mut f = OpenOptions::new().append(true).open(run_dir.join("records.jsonl")).unwrap();
    f.write_all(&line.as_bytes()[..line.len() / 2]).unwrap();
    drop(f);

    let mut reader = records(&run_dir).unwrap();
    let got: Vec<TaskRecord> = reader.by_ref().map(Result::unwrap).collect();
    assert_eq!(got, vec![ok(0), ok(1)]);
    assert!(reader.torn());
    assert_eq!(reader.skipped(), 0);
}

#[test]
fn a_corrupt_complete_line_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "j", &["x"], vec![]);
    let mut run = RunStore::create(&j, RunMeta::default()).unwrap();
    run.append(&ok(0)).unwrap();
    let run_dir = run.dir().to_path_buf();
    let mut f = OpenOptions::new().append(true).open(run_dir.join("records.jsonl")).unwrap();
    f.write_all(b"{not json\n").unwrap();
    drop(f);
    run.append(&ok(1)).unwrap();
    let mut reader = records(&run_dir).unwrap();
    let got: Vec<TaskRecord> = reader.by_ref().map(Result::unwrap).collect();
    assert_eq!(got, vec![ok(0), ok(1)]);
    assert_eq!(reader.skipped(), 1);
    assert!(!reader.torn());
}

#[test]
fn runs_are_listed_oldest_first_even_within_one_second() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "j", &[], vec![]);
    assert!(list_runs(dir.path(), "j").unwrap().is_empty());
    assert!(latest_run(dir.path(), "j").unwrap().is_none());
    let mut ids = Vec::new();
    for _ in 0..5 {
        let run = RunStore::create(&j, RunMeta::default()).unwrap();
        ids.push(run.run_id().to_string());
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Another job's runs are not listed.
    RunStore::create(&job(dir.path(), "other", &[], vec![]), RunMeta::default()).unwrap();
    let listed: Vec<String> =
        list_runs(dir.path(), "j").unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(listed, ids);
    assert_eq!(latest_run(dir.path(), "j").unwrap().unwrap().id, ids[4]);
}

#[test]
fn a_fixed_run_id_is_used_and_must_be_new() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "j", &[], vec![]);
    let meta = RunMeta { run_id: Some("R1".into()), ..RunMeta::default() };
    let run = RunStore::create(&j, meta.clone()).unwrap();
    assert_eq!(run.run_id(), "R1");
    assert!(RunStore::create(&j, meta).is_err());
}

#[test]
fn job_names_become_safe_folder_names() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(store::job_runs_dir(dir.path(), "a/b c"), dir.path().join(".jobpool/runs/a_b_c"));
    assert_eq!(store::job_runs_dir(dir.path(), ".."), dir.path().join(".jobpool/runs/_.."));
    assert_eq!(store::job_runs_dir(dir.path(), "ok-1.x"), dir.path().join(".jobpool/runs/ok-1.x"));
}

#[test]
fn resume_index_keeps_the_latest_ok_record_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "j", &["x"], vec![]);
    let run_with = |records: &[TaskRecord]| {
        let mut run = RunStore::create(&j, RunMeta::default()).unwrap();
        for r in records {
            run.append(r).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
        run.dir().to_path_buf()
    };
    assert!(resume_index(&j).unwrap().is_empty());
    run_with(&[
        keyed(0, "a", Status::Ok, 1),
        keyed(1, "b", Status::Error, 0),
        keyed(2, "d", Status::Ok, 7),
    ]);
    run_with(&[keyed(0, "a", Status::Ok, 2), keyed(1, "c", Status::Ok, 3)]);
    let last = run_with(&[keyed(5, "b", Status::Timeout, 0), keyed(6, "a", Status::Crashed, 0)]);
    // The last run was killed while writing an ok record for b.
    let torn = serde_json::to_string(&keyed(7, "b", Status::Ok, 9)).unwrap();
    let mut f = OpenOptions::new().append(true).open(last.join("records.jsonl")).unwrap();
    f.write_all(&torn.as_bytes()[..torn.len() - 3]).unwrap();
    drop(f);
    // Another job beside it is not read.
    let mut other =
        RunStore::create(&job(dir.path(), "other", &["x"], vec![]), RunMeta::default()).unwrap();
    other.append(&keyed(0, "b", Status::Ok, 5)).unwrap();

    let mut index = resume_index(&j).unwrap();
    assert_eq!(index.runs(), 3);
    assert_eq!(index.len(), 3);
    assert!(!index.contains_key("b"));
    assert_eq!(
        index.get("a").unwrap().value,
        Some(json!(2)),
        "the latest ok wins over a later failure"
    );
    assert_eq!(index.get("c").unwrap().value, Some(json!(3)));
    assert_eq!(index.get("d").unwrap().value, Some(json!(7)));

    let taken = index.take("c").unwrap().resumed_at(42);
    assert_eq!((taken.index, taken.resumed, taken.key.as_str()), (42, true, "c"));
    assert!(!index.contains_key("c"));
    let map = index.into_map();
    assert_eq!(map.len(), 2);
    assert_eq!(map["a"].status, Status::Ok);
}

#[test]
fn resume_index_reads_records_back_across_odd_lines_and_removed_runs() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "j", &["x"], vec![]);
    let mut first = RunStore::create(&j, RunMeta::default()).unwrap();
    first.append(&keyed(0, "gone", Status::Ok, 1)).unwrap();
    let first_dir = first.dir().to_path_buf();
    drop(first);
    std::thread::sleep(std::time::Duration::from_millis(2));
    let mut run = RunStore::create(&j, RunMeta::default()).unwrap();
    let path = run.dir().join("records.jsonl");
    run.append(&keyed(0, "a", Status::Ok, 1)).unwrap();
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"\n{broken\n  \n").unwrap();
    drop(f);
    run.append(&keyed(1, "é\"b", Status::Ok, 2)).unwrap();

    let index = resume_index(&j).unwrap();
    assert_eq!(index.len(), 3);
    assert_eq!(index.get("a").unwrap().value, Some(json!(1)));
    assert_eq!(index.get("é\"b").unwrap().value, Some(json!(2)));
    assert!(index.get("zzz").is_none());
    // A run folder removed after the index was built: its records are simply not there.
    fs::remove_dir_all(&first_dir).unwrap();
    assert!(index.contains_key("gone"));
    assert!(index.get("gone").is_none());
}

/// A finished run of `j` with `records` appended.
fn finished_run(j: &jobpool::model::Job, records: &[TaskRecord]) -> std::path::PathBuf {
    let mut run = RunStore::create(j, RunMeta { resume: true, ..RunMeta::default() }).unwrap();
    for r in records {
        run.append(r).unwrap();
    }
    let dir = run.dir().to_path_buf();
    run.finish(RunEnd { exit_code: 0, cancelled: None }).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    dir
}

fn journal_lines(run: &std::path::Path) -> usize {
    fs::read_to_string(run.join("records.jsonl")).unwrap().lines().count()
}

#[test]
fn a_resumed_run_references_what_it_took_and_reads_back_complete() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "j", &["x"], vec![]);
    let runs = store::job_runs_dir(dir.path(), "j");
    finished_run(
        &j,
        &[
            keyed(0, "a", Status::Ok, 1),
            keyed(1, "b", Status::Ok, 2),
            keyed(2, "c", Status::Error, 0),
        ],
    );
    let mut index = resume_index(&j).unwrap();
    let took = |index: &mut store::ResumeIndex, key: &str, at: u64| {
        index.take(key).unwrap().resumed_at(at)
    };
    // The second run takes a and b (at new positions) and runs c again.
    let second = finished_run(
        &j,
        &[took(&mut index, "b", 5), took(&mut index, "a", 4), keyed(6, "c", Status::Ok, 3)],
    );
    assert_eq!(journal_lines(&second), 1, "only what it ran is journaled");
    let info = store::read_run_info(&second).unwrap();
    assert_eq!((info.resumed, info.counts.ok), (2, 3));
    let set = info.resumed_set.clone().expect("a shared references file");
    let shared = store::resumed_dir(&runs).unwrap();
    assert_eq!(shared, dir.path().join(".jobpool/resumed/j"));
    assert!(shared.join(format!("{set}.jsonl")).is_file());
    assert!(!second.join("resumed.jsonl").exists(), "moved to the shared folder");
    let mut all = read_records(&second).unwrap();
    all.sort_by_key(|r| r.index);
    let got: Vec<(u64, &str, bool, Option<Value>)> =
        all.iter().map(|r| (r.index, r.key.as_str(), r.resumed, r.value.clone())).collect();
    assert_eq!(
        got,
        vec![
            (4, "a", true, Some(json!(1))),
            (5, "b", true, Some(json!(2))),
            (6, "c", false, Some(json!(3)))
        ]
    );

    // Two fully resumed runs of the same plan share one references file and journal nothing.
    let mut sets = Vec::new();
    for _ in 0..2 {
        let mut index = resume_index(&j).unwrap();
        let run = finished_run(
            &j,
            &[took(&mut index, "a", 0), took(&mut index, "b", 1), took(&mut index, "c", 2)],
        );
        assert_eq!(journal_lines(&run), 0);
        assert_eq!(read_records(&run).unwrap().len(), 3);
        sets.push(store::read_run_info(&run).unwrap().resumed_set.unwrap());
    }
    assert_eq!(sets[0], sets[1]);
    assert_eq!(fs::read_dir(&shared).unwrap().count(), 2, "{sets:?} and {set}");
    // The job's runs folder holds runs only.
    assert!(fs::read_dir(&runs).unwrap().all(|e| e.unwrap().path().join("run.json").is_file()));
}

#[test]
fn a_killed_resumed_run_still_reads_back_what_it_took() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "j", &["x"], vec![]);
    finished_run(&j, &[keyed(0, "a", Status::Ok, 1), keyed(1, "b", Status::Ok, 2)]);
    let mut index = resume_index(&j).unwrap();
    let mut run = RunStore::create(&j, RunMeta::default()).unwrap();
    run.append(&index.take("a").unwrap().resumed_at(0)).unwrap();
    run.append(&keyed(1, "b", Status::Error, 0)).unwrap();
    let dir_of_run = run.dir().to_path_buf();
    drop(run); // no finish: what a crash leaves (the references are in the run's folder)
    let mut torn =
        fs::OpenOptions::new().append(true).open(dir_of_run.join(store::RESUMED_FILE)).unwrap();
    torn.write_all(b"{\"index\":7,\"ke").unwrap();
    let mut all = read_records(&dir_of_run).unwrap();
    all.sort_by_key(|r| r.index);
    assert_eq!(all.len(), 2);
    assert!(all[0].resumed && all[0].key == "a" && all[0].value == Some(json!(1)));
    assert_eq!(all[1].status, Status::Error);
    // A reference whose record is gone (its run removed by hand) is skipped and counted.
    let first = list_runs(dir.path(), "j").unwrap()[0].path.clone();
    fs::remove_dir_all(first).unwrap();
    let mut reader = records(&dir_of_run).unwrap();
    let read: Vec<TaskRecord> = reader.by_ref().map(Result::unwrap).collect();
    assert_eq!((read.len(), reader.skipped()), (1, 1));
}

#[test]
fn resume_reads_the_index_file_not_the_journals_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "j", &["x"], vec![]);
    let runs = store::job_runs_dir(dir.path(), "j");
    finished_run(&j, &[keyed(0, "a", Status::Ok, 1), keyed(1, "b", Status::Error, 0)]);
    finished_run(&j, &[keyed(0, "a", Status::Ok, 2), keyed(1, "b", Status::Ok, 3)]);
    // A plain run does not write the index: the first `--resume` reads both journals,
    // and (as `run --resume` does) saves the index for the next one.
    let index = resume_index(&j).unwrap();
    assert!(!index.used_index_file());
    assert_eq!((index.journals_read(), index.len()), (2, 2));
    assert!(!store::index_path(&runs).unwrap().exists());
    assert_eq!(store::resume_index_saved(&j).unwrap().journals_read(), 2);
    let index = resume_index(&j).unwrap();
    assert!(index.used_index_file());
    assert_eq!((index.journals_read(), index.len()), (0, 2));
    assert_eq!(index.get("a").unwrap().value, Some(json!(2)), "the latest ok");
    assert_eq!(index.get("b").unwrap().value, Some(json!(3)));

    // A run killed before it finished is not covered: only its journal is read.
    let mut killed = RunStore::create(&j, RunMeta::default()).unwrap();
    killed.append(&keyed(2, "c", Status::Ok, 4)).unwrap();
    drop(killed);
    let index = resume_index(&j).unwrap();
    assert!(index.used_index_file());
    assert_eq!((index.journals_read(), index.len()), (1, 3));
    assert_eq!(index.get("c").unwrap().value, Some(json!(4)));
    // The next compaction covers it.
    assert_eq!(store::compact(&runs).unwrap().journals_read(), 1);
    assert_eq!(resume_index(&j).unwrap().journals_read(), 0);

    // A damaged index file (cut short, or garbage) is ignored: the journals are read.
    let path = store::index_path(&runs).unwrap();
    assert_eq!(path, dir.path().join(".jobpool/index/j.jsonl"));
    let whole = fs::read(&path).unwrap();
    let huge = b"{\"jobpool_index\":1,\"journals\":[],\"entries\":1000000000000000}\n";
    for damaged in
        [&whole[..whole.len() - 5], &whole[..20], b"not json\n".as_slice(), huge.as_slice()]
    {
        fs::write(&path, damaged).unwrap();
        let index = resume_index(&j).unwrap();
        assert!(!index.used_index_file());
        assert_eq!((index.journals_read(), index.len()), (3, 3));
        assert_eq!(index.get("a").unwrap().value, Some(json!(2)));
    }
    // Missing: the same; compaction writes it again.
    fs::remove_file(&path).unwrap();
    assert_eq!(resume_index(&j).unwrap().len(), 3);
    store::compact(&runs).unwrap();
    assert!(resume_index(&j).unwrap().used_index_file());

    // A journal rewritten behind the index is read again, not trusted.
    let newest = list_runs(dir.path(), "j").unwrap().pop().unwrap().path;
    let line = serde_json::to_string(&keyed(0, "c", Status::Ok, 9)).unwrap();
    fs::write(newest.join("records.jsonl"), format!("{line}\n")).unwrap();
    let index = resume_index(&j).unwrap();
    assert_eq!(index.journals_read(), 1);
    assert_eq!(index.get("c").unwrap().value, Some(json!(9)));
    // A journal appended to since (a shard run again) is read on from where it was.
    store::compact(&runs).unwrap();
    let mut f = OpenOptions::new().append(true).open(newest.join("records.jsonl")).unwrap();
    writeln!(f, "{}", serde_json::to_string(&keyed(3, "d", Status::Ok, 5)).unwrap()).unwrap();
    let index = resume_index(&j).unwrap();
    assert_eq!((index.journals_read(), index.len()), (1, 4));
    assert_eq!(index.get("d").unwrap().value, Some(json!(5)));
    assert_eq!(index.get("c").unwrap().value, Some(json!(9)));
}

#[test]
fn journals_of_earlier_versions_with_every_record_copied_are_still_read() {
    // A fully resumed run as the version before references wrote it: every record copied
    // into its journal with `"resumed": true`, no `resumed_set`, no index file.
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "j", &["x"], vec![]);
    let runs = store::job_runs_dir(dir.path(), "j");
    for (id, resumed) in [("20260101T000000Z-0001", false), ("20260101T000001Z-0002", true)] {
        let run = runs.join(id);
        fs::create_dir_all(&run).unwrap();
        let mut text = String::new();
        for (i, key) in ["a", "b"].iter().enumerate() {
            let mut r = keyed(i as u64, key, Status::Ok, i as i64);
            r.resumed = resumed;
            text.push_str(&serde_json::to_string(&r).unwrap());
            text.push('\n');
        }
        fs::write(run.join("records.jsonl"), text).unwrap();
        let info = json!({
            "format": 1, "run_id": id, "job": "j", "job_file": "j.toml",
            "jobpool_version": "0.1.0", "state": "finished",
            "started_at": format!("2026-01-01T00:00:0{}.000000Z", u8::from(resumed)),
            "task_kind": "test", "backend": "processes", "order": "submission",
            "resume": resumed, "counts": {"ok": 2}, "resumed": if resumed { 2 } else { 0 },
        });
        fs::write(run.join("run.json"), info.to_string()).unwrap();
    }
    let index = resume_index(&j).unwrap();
    assert!(!index.used_index_file());
    assert_eq!((index.len(), index.get("b").unwrap().value), (2, Some(json!(1))));
    let latest = latest_run(dir.path(), "j").unwrap().unwrap();
    let recs = read_records(&latest.path).unwrap();
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| r.resumed));
    // The first compaction writes the index file; nothing else changes.
    store::compact(&runs).unwrap();
    let index = resume_index(&j).unwrap();
    assert!(index.used_index_file() && index.len() == 2 && index.journals_read() == 0);
}

/// A plain `jobpool run` never writes the resume index (it costs nothing at the end of a
/// run); the first `run --resume` after it reads the journals and saves the index.
#[test]
fn only_a_resume_writes_the_index_file() {
    use crate::run_support::{BIN, code, stderr};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sq.toml");
    fs::write(
        &file,
        "name = \"sq\"\n[task]\nkind = \"script\"\nscript = \"x * x\"\n[args]\nx = { range = [0, 50] }\n[[sink]]\nto = \"out.jsonl\"\nformat = \"jsonl\"\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(BIN)
            .arg("run")
            .args(extra)
            .arg(&file)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        stderr(&out)
    };
    let index = dir.path().join(".jobpool/index/sq.jsonl");
    run(&[]);
    run(&[]);
    assert!(!index.exists(), "a plain run wrote the index");
    assert!(run(&["--resume"]).contains("(0 ran, 50 resumed)"));
    assert!(index.exists(), "--resume did not save the index");
    let j = jobpool::validate::load(&file, &Default::default()).unwrap();
    let ix = resume_index(&j).unwrap();
    assert!(ix.used_index_file());
    // The resumed run's journal holds nothing it ran; the index covers the two first runs.
    assert_eq!((ix.journals_read(), ix.len()), (1, 50));
}
