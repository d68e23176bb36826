//! The JUnit report: one test case per submission, in plan order, for CI systems
//! (written with quick-junit, which escapes and filters what XML cannot hold).
//!
//! `ok` is a pass; `error` a `<failure>` (the task said no); `timeout` and `crashed` an
//! `<error>` (it never gave an answer); `cancelled` and `skipped` are `<skipped>`.

use std::io::{self, Write};
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use rayon::prelude::*;

use super::fmt;
use super::summary::Summary;
use crate::record::{Status, StatusCounts, TaskRecord};

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
    let name = format!("[{}] {}", r.index, fmt::cut(&fmt::args(&r.args.to_map()), 200));
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

/// Records held and serialized at a time.
const BATCH: usize = 4096;

/// The suite around the test cases: its name, time, properties and totals.
fn envelope(summary: &Summary, counts: StatusCounts) -> Report {
    let job = fmt::title(summary);
    let mut suite = TestSuite::new(job.as_str());
    suite.set_time(millis(summary.wall_ms));
    if let Some(id) = &summary.run.id {
        suite.add_property(Property::new("run", id.as_str()));
    }
    if let Some(f) = &summary.run.job_file {
        suite.add_property(Property::new("job_file", f.as_str()));
    }
    suite.add_property(Property::new("records", counts.total().to_string()));
    suite.tests = counts.total() as usize;
    suite.failures = counts.error as usize;
    suite.errors = (counts.timeout + counts.crashed) as usize;
    suite.skipped = (counts.cancelled + counts.skipped) as usize;
    let mut report = Report::new("jobpool");
    report.set_time(millis(summary.wall_ms));
    report.add_test_suite(suite);
    report
}

/// Where the test cases go in `xml` (a report of one suite): before the line of its last
/// `</testsuite>`.
fn cases_end(xml: &str) -> io::Result<usize> {
    let close = xml
        .rfind("</testsuite>")
        .ok_or_else(|| io::Error::other("quick-junit wrote no </testsuite>"))?;
    Ok(xml[..close].rfind('\n').map_or(close, |n| n + 1))
}

/// The test cases of `records`, serialized by quick-junit (whole lines, as they sit in
/// a suite).
fn serialize_cases(name: &str, records: &[TaskRecord]) -> io::Result<Vec<u8>> {
    let mut suite = TestSuite::new(name);
    suite.add_test_cases(records.iter().map(|r| case(r, name)));
    let mut report = Report::new("jobpool");
    report.add_test_suite(suite);
    let xml = report.to_string().map_err(io::Error::other)?;
    let first = xml.find("<testcase").ok_or_else(|| io::Error::other("no <testcase>"))?;
    let start = xml[..first].rfind('\n').map_or(first, |n| n + 1);
    Ok(xml.as_bytes()[start..cases_end(&xml)?].to_vec())
}

/// Write the test cases of `batch` (serialized in parallel, written in order) and empty it.
fn write_batch(name: &str, batch: &mut Vec<TaskRecord>, out: &mut dyn Write) -> io::Result<()> {
    let parts: Vec<io::Result<Vec<u8>>> =
        batch.par_chunks(256).map(|c| serialize_cases(name, c)).collect();
    for p in parts {
        out.write_all(&p?)?;
    }
    batch.clear();
    Ok(())
}

/// Write `records` — every submission, **in plan order** (as [`crate::store::ByIndex`]
/// reads a run) — as JUnit XML to `out`: one `<testsuite>` for the job. `counts` are
/// the records by status, known before: the totals come before the test cases in the
/// XML. Memory: [`BATCH`] records at a time, serialized in parallel; every piece of XML
/// is quick-junit's (a slice of cases is serialized in a suite of its own and its case
/// lines are spliced into the suite of the job).
///
/// Fails, after writing part of the XML, when the records do not match `counts` (the
/// run changed while being read).
pub fn write(
    summary: &Summary,
    counts: StatusCounts,
    records: impl IntoIterator<Item = io::Result<TaskRecord>>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let job = fmt::title(summary);
    let head = envelope(summary, counts).to_string().map_err(io::Error::other)?;
    let cut = cases_end(&head)?;
    out.write_all(&head.as_bytes()[..cut])?;
    let mut seen = StatusCounts::default();
    let mut batch = Vec::with_capacity(BATCH);
    for r in records {
        let r = r?;
        seen.add(r.status);
        batch.push(r);
        if batch.len() == BATCH {
            write_batch(&job, &mut batch, out)?;
        }
    }
    write_batch(&job, &mut batch, out)?;
    if seen != counts {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the run's records changed while being read",
        ));
    }
    out.write_all(&head.as_bytes()[cut..])
}

/// `records` (every submission, any order) as JUnit XML (see [`write`]): they are held
/// and sorted in memory; [`write`] with [`crate::store::ByIndex`] is for whole runs.
pub fn render(
    summary: &Summary,
    records: impl IntoIterator<Item = io::Result<TaskRecord>>,
) -> io::Result<String> {
    let mut all = records.into_iter().collect::<io::Result<Vec<TaskRecord>>>()?;
    all.sort_by_key(|r| r.index);
    let mut counts = StatusCounts::default();
    for r in &all {
        counts.add(r.status);
    }
    let mut out = Vec::new();
    write(summary, counts, all.into_iter().map(Ok), &mut out)?;
    String::from_utf8(out).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    /// The XML of the same suite built whole by quick-junit.
    fn whole(summary: &Summary, records: &[TaskRecord]) -> String {
        let mut counts = StatusCounts::default();
        records.iter().for_each(|r| counts.add(r.status));
        let mut report = envelope(summary, counts);
        let job = fmt::title(summary);
        let suite = &mut report.test_suites[0];
        suite.test_cases = records.iter().map(|r| case(r, &job)).collect();
        report.to_string().unwrap()
    }

    #[test]
    fn batches_spliced_into_the_suite_are_the_xml_quick_junit_writes_whole() {
        let statuses = [Status::Ok, Status::Error, Status::Timeout, Status::Skipped];
        for n in [0, 1, BATCH - 1, BATCH, 2 * BATCH + 3] {
            let records: Vec<TaskRecord> = (0..n as u64)
                .map(|i| {
                    let mut args = Map::new();
                    args.insert("x".into(), json!(format!("<{i}> & \"q\"")));
                    let st = statuses[i as usize % 4];
                    let mut r = TaskRecord::new(i, format!("k{i}"), args.into(), st);
                    r.value = (st == Status::Ok).then(|| json!(i));
                    r.error = (st != Status::Ok).then(|| format!("bad ]]> {i}"));
                    r.stderr = Some(if i % 3 == 0 { String::new() } else { format!("e{i}") });
                    r
                })
                .collect();
            let mut summary = crate::report::Builder::new().finish(None);
            summary.run.id = Some("r1".into());
            let streamed = render(&summary, records.iter().rev().cloned().map(Ok)).unwrap();
            assert_eq!(streamed, whole(&summary, &records), "{n} records");
        }
    }

    #[test]
    fn records_that_do_not_match_the_counts_are_an_error() {
        let r = TaskRecord::new(0, "k", Default::default(), Status::Ok);
        let counts = StatusCounts { error: 1, ..StatusCounts::default() };
        let mut out = Vec::new();
        let e = write(&crate::report::Builder::new().finish(None), counts, [Ok(r)], &mut out)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
