//! The JUnit report: one test case per submission, in plan order, for CI systems
//! (written with quick-junit, which escapes and filters what XML cannot hold).
//!
//! `ok` is a pass; `error` a `<failure>` (the task said no); `timeout` and `crashed` an
//! `<error>` (it never gave an answer); `cancelled` and `skipped` are `<skipped>`.

use std::io;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::fmt;
use super::summary::Summary;
use crate::record::{Status, TaskRecord};

fn millis(ms: f64) -> Duration {
    Duration::from_secs_f64((ms / 1000.0).max(0.0))
}

/// The test case of one record: named by its index and arguments.
fn case(r: &TaskRecord, class: &str) -> TestCase {
    let mut status = match r.status {
        Status::Ok => TestCaseStatus::success(),
        Status::Error => TestCaseStatus::non_success(NonSuccessKind::Failure),
        Status::Timeout | Status::Crashed => TestCaseStatus::non_success(NonSuccessKind::Error),
        Status::Cancelled | Status::Skipped => TestCaseStatus::skipped(),
    };
    if r.status != Status::Ok {
        status.set_type(r.status.as_str());
        if let Some(e) = &r.error {
            status.set_message(fmt::cut(e, 500));
            status.set_description(e.as_str());
        }
    }
    let name = format!("[{}] {}", r.index, fmt::cut(&fmt::args(&r.args), 200));
    let mut case = TestCase::new(name, status);
    case.set_classname(class);
    case.set_time(millis(r.duration_ms));
    case.add_property(Property::new("key", r.key.as_str()));
    case.add_property(Property::new("attempts", r.attempts.to_string()));
    if let Some(w) = r.worker {
        case.add_property(Property::new("worker", w.to_string()));
    }
    if r.resumed {
        case.add_property(Property::new("resumed", "true"));
    }
    if let Some(v) = &r.value {
        case.set_system_out(fmt::value(v));
    }
    if let Some(e) = r.stderr.as_deref().filter(|e| !e.is_empty()) {
        case.set_system_err(e);
    }
    case
}

/// `records` (every submission, any order) as JUnit XML: one `<testsuite>` for the job,
/// its test cases in plan order. Each record becomes its test case as it is read.
pub fn render(
    summary: &Summary,
    records: impl IntoIterator<Item = io::Result<TaskRecord>>,
) -> io::Result<String> {
    let job = fmt::title(summary);
    let mut cases: Vec<(u64, TestCase)> = Vec::new();
    for r in records {
        let r = r?;
        cases.push((r.index, case(&r, &job)));
    }
    cases.sort_by_key(|c| c.0);
    let mut suite = TestSuite::new(job.as_str());
    suite.set_time(millis(summary.wall_ms));
    if let Some(id) = &summary.run.id {
        suite.add_property(Property::new("run", id.as_str()));
    }
    if let Some(f) = &summary.run.job_file {
        suite.add_property(Property::new("job_file", f.as_str()));
    }
    suite.add_test_cases(cases.into_iter().map(|c| c.1));
    let mut report = Report::new("jobpool");
    report.set_time(millis(summary.wall_ms));
    report.add_test_suite(suite);
    report.to_string().map_err(io::Error::other)
}
