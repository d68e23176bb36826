//! The runner's policies against the scripted fake backend: no processes.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::*;
use crate::backend::fake::{FakeBackend, Step};
use crate::store::{RunMeta, RunStore};
use crate::validate::{LoadOptions, load_str};

/// A script job over `x` in 0..n, with `extra` top-level keys, whose file sits in `dir`.
fn job_in(dir: &Path, extra: &str, n: u64) -> Job {
    let text = format!(
        "{extra}\n[task]\nkind = \"script\"\nscript = \"x\"\n\n[args]\nx = {{ range = [0, {n}] }}\n"
    );
    let opts = LoadOptions { kinds: vec!["command".into(), "script".into()], ..Default::default() };
    load_str(&dir.join("job.toml"), &text, &opts).expect("a valid job")
}

fn job(extra: &str, n: u64) -> Job {
    job_in(Path::new("/nonexistent-jobpool-test"), extra, n)
}

fn ok_step(s: &crate::model::Submission) -> Step {
    Step::Ok(json!(s.index * 10))
}

/// Run with the fake and collect the events.
fn run_events(backend: &FakeBackend, job: &Job, control: &Control) -> (Vec<RunEvent>, RunSummary) {
    run_with(backend, job, control, None, |_| Ok(()))
}

fn run_with(
    backend: &FakeBackend,
    job: &Job,
    control: &Control,
    resume: Option<ResumeIndex>,
    mut front_end: impl FnMut(&RunEvent) -> Result<(), FrontEndError>,
) -> (Vec<RunEvent>, RunSummary) {
    let mut events = Vec::new();
    let options = RunOptions { run_id: "r1".into(), resume, shard: None };
    let summary = Runner::new(backend)
        .run(job, options, control, |e| {
            // Flushes come whenever the runner waits: when is up to thread timing, so
            // they are left out here (see `a_flush_comes_before_the_runner_waits`).
            if !matches!(e, RunEvent::Flush) {
                events.push(e.clone());
            }
            let r = front_end(e);
            if let RunEvent::TaskFinished(rec) = e
                && !rec.resumed
            {
                backend.ack();
            }
            r
        })
        .expect("the run starts");
    (events, summary)
}

fn records(events: &[RunEvent]) -> Vec<TaskRecord> {
    events
        .iter()
        .filter_map(|e| match e {
            RunEvent::TaskFinished(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn cancellings(events: &[RunEvent]) -> Vec<CancelReason> {
    events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Cancelling(r) => Some(*r),
            _ => None,
        })
        .collect()
}

/// Exactly one record per index in 0..n.
fn assert_one_record_each(recs: &[TaskRecord], n: u64) {
    let mut ix: Vec<u64> = recs.iter().map(|r| r.index).collect();
    ix.sort_unstable();
    assert_eq!(ix, (0..n).collect::<Vec<_>>());
}

#[test]
fn events_come_in_a_fixed_order_with_one_record_per_submission() {
    let backend = FakeBackend::new(4, ok_step);
    let (events, summary) = run_events(&backend, &job("", 10), &Control::new());
    let RunEvent::RunStarted(start) = &events[0] else { panic!("first: {:?}", events[0]) };
    assert_eq!((start.total, start.resumed, start.backend.as_str()), (10, 0, "fake"));
    assert_eq!(start.run_id, "r1");
    assert!(matches!(events.last(), Some(RunEvent::RunFinished(s)) if *s == summary));
    let recs = records(&events);
    assert_one_record_each(&recs, 10);
    assert!(recs.iter().all(|r| r.status == Status::Ok && r.value == Some(json!(r.index * 10))));
    assert_eq!((summary.counts.ok, summary.ran(), summary.cancelled), (10, 10, None));
    assert_eq!(summary.first_failure, None);
}

/// Run `job` on `backend` with a front end that only watches; the summary and how long
/// the run took.
fn timed_run(
    backend: &FakeBackend,
    job: &Job,
    mut watch: impl FnMut(&RunEvent),
) -> (RunSummary, std::time::Duration) {
    let options = RunOptions { run_id: "r1".into(), resume: None, shard: None };
    let started = std::time::Instant::now();
    let summary = Runner::new(backend)
        .run(job, options, &Control::new(), |e| {
            watch(e);
            Ok(())
        })
        .expect("the run starts");
    (summary, started.elapsed())
}

#[test]
fn a_flush_comes_before_the_runner_waits() {
    // The fake backend hands over its next record only once acknowledged, and this front
    // end acknowledges only at a flush: the run gets through its records only if the
    // runner flushes whenever it is about to wait (otherwise each record would wait
    // for the fake's 10-second fallback).
    let backend = FakeBackend::new(1, ok_step);
    let mut log = Vec::new();
    let (summary, took) = timed_run(&backend, &job("", 4), |e| match e {
        RunEvent::TaskFinished(r) => log.push(format!("record {}", r.index)),
        RunEvent::Flush => {
            log.push("flush".into());
            backend.ack();
        }
        _ => {}
    });
    assert_eq!(summary.counts.ok, 4, "{log:?}");
    assert!(took < std::time::Duration::from_secs(8), "{log:?}");
    let first_flush = log.iter().position(|l| l == "flush");
    let second = log.iter().position(|l| l == "record 1");
    assert!(matches!((first_flush, second), (Some(f), Some(s)) if f < s), "{log:?}");
}

#[test]
fn the_run_finishes_with_its_last_record_not_when_the_backend_has_stopped() {
    // The fake ends its stream only once its last record is acknowledged, which this
    // front end does at the end of the run: a runner that waited for the stream's end
    // before finishing would wait for the fake's 10-second fallback.
    let backend = FakeBackend::new(1, ok_step);
    let mut log = Vec::new();
    let (summary, took) = timed_run(&backend, &job("", 3), |e| match e {
        RunEvent::TaskFinished(r) => {
            log.push(format!("record {}", r.index));
            if r.index < 2 {
                backend.ack();
            }
        }
        RunEvent::RunFinished(_) => {
            log.push("finished".into());
            backend.ack();
        }
        _ => {}
    });
    assert_eq!(summary.counts.ok, 3, "{log:?}");
    assert_eq!(log, ["record 0", "record 1", "record 2", "finished"]);
    assert!(took < std::time::Duration::from_secs(8), "{took:?}");
}

#[test]
fn workers_never_exceed_the_work() {
    let backend = FakeBackend::new(1, ok_step);
    let (events, _) = run_events(&backend, &job("workers = 8", 3), &Control::new());
    let RunEvent::RunStarted(start) = &events[0] else { panic!() };
    assert_eq!(start.workers, 3);
}

#[test]
fn the_first_failure_is_the_lowest_index_not_the_first_to_finish() {
    let mut backend = FakeBackend::new(10, |s| match s.index {
        2 | 7 => Step::Fail(Status::Error, format!("bad {}", s.index)),
        _ => Step::Ok(json!(1)),
    });
    backend.lifo = true; // 9, 8, 7 (fails first), ..., 2
    let (events, summary) = run_events(&backend, &job("", 10), &Control::new());
    let recs = records(&events);
    assert_eq!(recs[0].index, 9, "completion order differs from submission order");
    assert_eq!(summary.first_failure.as_ref().map(|r| r.index), Some(2));
    assert_eq!((summary.counts.error, summary.counts.ok), (2, 8));
}

#[test]
fn on_failure_stop_skips_the_rest_with_one_message() {
    let backend = FakeBackend::new(3, |s| {
        if s.index == 4 { Step::Fail(Status::Error, "boom".into()) } else { Step::Ok(json!(0)) }
    });
    let (events, summary) =
        run_events(&backend, &job("on-failure = \"stop\"", 20), &Control::new());
    let recs = records(&events);
    assert_one_record_each(&recs, 20);
    // Index 4 failed; 5 and 6 were taken (window 3) but not started; the rest never taken.
    assert_eq!(*backend.ran.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    let skipped: Vec<&TaskRecord> = recs.iter().filter(|r| r.status == Status::Skipped).collect();
    assert_eq!(skipped.len(), 15);
    for r in skipped {
        assert_eq!(r.error.as_deref(), Some(SkipReason::OnFailureStop.record_message()));
        assert_eq!(r.attempts, 0);
    }
    assert_eq!(summary.skipped, Some(SkipReason::OnFailureStop));
    assert_eq!(summary.cancelled, None);
    assert_eq!(summary.ran(), 5);
}

#[test]
fn on_failure_continue_runs_everything() {
    let backend = FakeBackend::new(3, |s| {
        if s.index % 2 == 0 { Step::Fail(Status::Crashed, "x".into()) } else { Step::Ok(json!(0)) }
    });
    let (_, summary) = run_events(&backend, &job("", 10), &Control::new());
    assert_eq!((summary.counts.crashed, summary.counts.ok, summary.skipped), (5, 5, None));
    assert_eq!(backend.ran.lock().unwrap().len(), 10);
}

#[test]
fn a_deadline_cancels_what_runs_and_what_waits() {
    let backend =
        FakeBackend::new(2, |s| if s.index == 1 { Step::Hang } else { Step::Ok(json!(0)) });
    let (events, summary) = run_events(&backend, &job("timeout = \"150ms\"", 50), &Control::new());
    let recs = records(&events);
    assert_one_record_each(&recs, 50);
    assert_eq!(summary.cancelled, Some(CancelReason::Deadline));
    assert_eq!(cancellings(&events), [CancelReason::Deadline]);
    assert_eq!(summary.counts.ok, 1);
    assert_eq!(summary.counts.cancelled, 49);
    for r in recs.iter().filter(|r| r.status == Status::Cancelled) {
        assert_eq!(r.error.as_deref(), Some(CancelReason::Deadline.record_message()));
    }
}

#[test]
fn a_deadline_after_the_last_record_cancels_nothing() {
    let backend = FakeBackend::new(2, ok_step);
    let (_, summary) = run_events(&backend, &job("timeout = \"1h\"", 5), &Control::new());
    assert_eq!(summary.cancelled, None);
}

#[test]
fn a_more_serious_reason_replaces_a_lesser_one_never_the_reverse() {
    let control = Control::new();
    let c2 = control.clone();
    let backend =
        FakeBackend::new(
            1,
            |s| {
                if s.index == 0 { Step::HangUntilKilled } else { Step::Ok(json!(0)) }
            },
        );
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        c2.cancel(CancelReason::Superseded);
        std::thread::sleep(std::time::Duration::from_millis(50));
        c2.cancel(CancelReason::Interrupt);
        c2.cancel(CancelReason::Deadline); // less serious: ignored
        c2.kill(); // the hung task ends only now
    });
    let (events, summary) = run_events(&backend, &job("", 5), &control);
    t.join().unwrap();
    assert_eq!(cancellings(&events), [CancelReason::Superseded, CancelReason::Interrupt]);
    assert_eq!(summary.cancelled, Some(CancelReason::Interrupt));
    assert_eq!(control.reason(), Some(CancelReason::Interrupt));
    let recs = records(&events);
    assert_one_record_each(&recs, 5);
    // Every cancelled record says the most serious reason.
    for r in recs.iter().filter(|r| r.status == Status::Cancelled) {
        assert_eq!(r.error.as_deref(), Some(CancelReason::Interrupt.record_message()));
    }
}

#[test]
fn cancelled_before_it_starts_runs_nothing() {
    let control = Control::new();
    control.cancel(CancelReason::Interrupt);
    let backend = FakeBackend::new(4, ok_step);
    let (events, summary) = run_events(&backend, &job("", 30), &control);
    assert!(backend.ran.lock().unwrap().is_empty());
    assert_one_record_each(&records(&events), 30);
    assert_eq!((summary.counts.cancelled, summary.cancelled), (30, Some(CancelReason::Interrupt)));
    assert_eq!(cancellings(&events), [CancelReason::Interrupt]);
    assert!(matches!(events[1], RunEvent::Cancelling(CancelReason::Interrupt)));
}

#[test]
fn a_failing_front_end_cancels_but_still_gets_every_record() {
    let backend = FakeBackend::new(2, ok_step);
    let mut seen = 0;
    let (events, summary) = run_with(&backend, &job("", 100), &Control::new(), None, |e| {
        if let RunEvent::TaskFinished(_) = e {
            seen += 1;
            if seen == 3 {
                return Err(FrontEndError {
                    reason: CancelReason::FrontEndFailed,
                    message: "disk full".into(),
                });
            }
        }
        Ok(())
    });
    assert_one_record_each(&records(&events), 100);
    assert_eq!(summary.cancelled, Some(CancelReason::FrontEndFailed));
    assert_eq!(summary.front_end_error.as_deref(), Some("disk full"));
    assert!(backend.ran.lock().unwrap().len() < 10, "the run stopped early");
}

#[test]
fn a_closed_output_stops_quietly() {
    let backend = FakeBackend::new(2, ok_step);
    let (_, summary) = run_with(&backend, &job("", 50), &Control::new(), None, |e| match e {
        RunEvent::TaskFinished(r) if r.index == 0 => {
            Err(FrontEndError { reason: CancelReason::OutputClosed, message: "broken pipe".into() })
        }
        _ => Ok(()),
    });
    assert_eq!(summary.cancelled, Some(CancelReason::OutputClosed));
    assert_eq!(summary.front_end_error, None);
}

#[test]
fn resume_takes_ok_records_and_runs_only_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let job = job_in(dir.path(), "", 10);
    // An earlier run recorded ok for even indexes, an error for 3.
    let mut store = RunStore::create(&job, RunMeta::default()).unwrap();
    for sub in Plan::new(&job) {
        let status = match sub.index {
            i if i % 2 == 0 => Status::Ok,
            3 => Status::Error,
            _ => continue,
        };
        let mut rec = TaskRecord::new(sub.index, sub.key.clone(), Default::default(), status);
        rec.value = Some(json!("old"));
        rec.attempts = 1;
        store.append(&rec).unwrap();
    }
    store.finish(crate::store::RunEnd { exit_code: 1, cancelled: None }).unwrap();
    let index = crate::store::resume_index(&job).unwrap();

    let backend = FakeBackend::new(3, ok_step);
    let (events, summary) = run_with(&backend, &job, &Control::new(), Some(index), |_| Ok(()));
    let RunEvent::RunStarted(start) = &events[0] else { panic!() };
    assert_eq!(start.resumed, 5);
    assert_eq!(start.workers.min(5), start.workers, "workers sized for what runs");
    assert_eq!(*backend.ran.lock().unwrap(), vec![1, 3, 5, 7, 9]);
    let recs = records(&events);
    assert_one_record_each(&recs, 10);
    for r in &recs {
        assert_eq!(r.resumed, r.index % 2 == 0, "{r:?}");
        if r.resumed {
            assert_eq!(r.value, Some(json!("old")));
        }
    }
    assert_eq!((summary.resumed, summary.ran(), summary.counts.ok), (5, 5, 10));
}

#[test]
fn waiting_events_are_passed_on_before_records() {
    let mut backend = FakeBackend::new(1, ok_step);
    backend.waiting = vec![crate::backend::BackendEvent::Waiting {
        queued: 3,
        running: 0,
        reason: Some("Priority".into()),
    }];
    let (events, _) = run_events(&backend, &job("", 3), &Control::new());
    assert!(
        matches!(&events[1], RunEvent::Waiting { queued: 3, reason: Some(r), .. } if r == "Priority")
    );
}

#[test]
fn a_backend_that_cannot_start_is_an_error_and_no_event() {
    let mut backend = FakeBackend::new(1, ok_step);
    backend.refuse = Some("no worker could start".into());
    let events = Arc::new(Mutex::new(0));
    let e2 = events.clone();
    let r = Runner::new(&backend).run(&job("", 3), RunOptions::default(), &Control::new(), |_| {
        *e2.lock().unwrap() += 1;
        Ok(())
    });
    assert!(matches!(r, Err(RunError::Backend(e)) if e.message == "no worker could start"));
    assert_eq!(*events.lock().unwrap(), 0);
}

#[test]
fn past_max_failures_nothing_new_starts() {
    let backend = FakeBackend::new(2, |s| {
        if s.index % 2 == 1 { Step::Fail(Status::Error, "odd".into()) } else { Step::Ok(json!(0)) }
    });
    let (events, summary) = run_events(&backend, &job("max-failures = 2", 20), &Control::new());
    let recs = records(&events);
    assert_one_record_each(&recs, 20);
    // Failures at 1, 3, 5: the third is past the limit of 2, so 6 and 7 (taken) and the
    // rest are skipped.
    assert_eq!(*backend.ran.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(summary.counts.error, 3);
    assert_eq!(summary.counts.skipped, 14);
    assert_eq!(summary.skipped, Some(SkipReason::MaxFailures));
    for r in recs.iter().filter(|r| r.status == Status::Skipped) {
        assert_eq!(r.error.as_deref(), Some(SkipReason::MaxFailures.record_message()));
    }
}

#[test]
fn max_failures_as_a_percentage_of_the_plan() {
    // 10% of 30 = 3 failures tolerated; every task fails, so the fourth stops it.
    let backend = FakeBackend::new(1, |_| Step::Fail(Status::Timeout, "slow".into()));
    let (_, summary) = run_events(&backend, &job("max-failures = \"10%\"", 30), &Control::new());
    assert_eq!(summary.counts.timeout, 4);
    assert_eq!(summary.counts.skipped, 26);
    // At the limit, not past it: everything runs.
    let backend = FakeBackend::new(1, |s| {
        if s.index < 3 { Step::Fail(Status::Error, "x".into()) } else { Step::Ok(json!(0)) }
    });
    let (_, summary) = run_events(&backend, &job("max-failures = \"10%\"", 30), &Control::new());
    assert_eq!((summary.counts.error, summary.counts.ok, summary.skipped), (3, 27, None));
}

#[test]
fn a_shard_runs_only_its_slice_with_plan_indexes() {
    let backend = FakeBackend::new(2, ok_step);
    let job = job("on-failure = \"stop\"", 10);
    let options = RunOptions {
        run_id: "r".into(),
        resume: None,
        shard: Some(crate::plan::Shard { index: 1, count: 3 }),
    };
    let mut recs = Vec::new();
    let summary = Runner::new(&backend)
        .run(&job, options, &Control::new(), |e| {
            if let RunEvent::TaskFinished(r) = e {
                recs.push(r.index);
                backend.ack();
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(recs, [3, 4, 5]);
    assert_eq!(*backend.ran.lock().unwrap(), vec![3, 4, 5]);
    assert_eq!((summary.total, summary.counts.ok), (3, 3));
}
