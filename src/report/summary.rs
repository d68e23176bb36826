//! Analysis: records (and `run.json`) -> [`Summary`]. No formats here.
//!
//! [`Builder`] takes records one at a time, in any order (live during a run, in
//! completion order), and [`Builder::merge`]s with another builder, so a journal on disk
//! is read in parallel: large blocks of whole lines are parsed on rayon's threads, each
//! into its own builder, and merged ([`summarize_journal`]). What a builder holds per
//! record is small and fixed (a few numbers for the statistics and charts); records
//! themselves are kept only for failures and the slowest tasks.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::record::{Status, StatusCounts, TaskRecord};
use crate::store::{RunInfo, RunState};

/// Version of the report's JSON layout ([`Summary`] and [`super::Comparison`]).
/// Fields are only ever added within a version.
pub const REPORT_FORMAT: u32 = 1;

/// How many of the slowest tasks a summary lists.
pub const SLOWEST: usize = 10;

/// Past this many distinct values a parameter gets no per-value summary (a seed or an
/// input file per task is not a sweep dimension worth a table).
pub const MAX_PARAM_VALUES: usize = 100;

/// Statistics of one quantity over the tasks that ran.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Stats {
    /// How many tasks the statistics cover.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Median (the lower middle value for an even count).
    pub median: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sum.
    pub total: f64,
}

impl Stats {
    /// Statistics of `values` (reordered in place); `None` when empty.
    pub fn of(values: &mut [f32]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        let n = values.len();
        let total: f64 = values.iter().map(|v| f64::from(*v)).sum();
        let rank = |q: f64| ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        let mut pick = |i: usize| f64::from(*values.select_nth_unstable_by(i, f32::total_cmp).1);
        let median = pick((n - 1) / 2);
        let p95 = pick(rank(0.95));
        let min = pick(0);
        let max = pick(n - 1);
        Some(Stats { count: n as u64, min, median, p95, max, mean: total / n as f64, total })
    }
}

/// Which run a summary is about: from its `run.json` when there is one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunAbout {
    /// The run id; `null` for a bare records file.
    pub id: Option<String>,
    /// The job's name.
    pub job: Option<String>,
    /// The job's description.
    pub description: Option<String>,
    /// The job file the run was started with.
    pub job_file: Option<String>,
    /// The task's kind (`command`, `script`, ...).
    pub task_kind: Option<String>,
    /// `processes`, `threads` or `slurm`.
    pub backend: Option<String>,
    /// `running` (still running, or the process died), `finished`, or `unknown`.
    pub state: String,
    /// RFC 3339 UTC start time.
    pub started_at: Option<String>,
    /// RFC 3339 UTC end time.
    pub ended_at: Option<String>,
    /// The run's exit code, when it ended.
    pub exit_code: Option<u8>,
    /// Why the run was cancelled, if it was.
    pub cancelled: Option<String>,
    /// Whether the run was started with `--resume`.
    pub resume: bool,
    /// Submissions in the plan, when known.
    pub submissions: Option<u64>,
}

impl RunAbout {
    /// From a `run.json`.
    pub fn from_info(info: &RunInfo) -> RunAbout {
        RunAbout {
            id: Some(info.run_id.clone()),
            job: Some(info.job.clone()),
            description: info.description.clone(),
            job_file: Some(info.job_file.display().to_string()),
            task_kind: Some(info.task_kind.clone()),
            backend: Some(info.backend.clone()),
            state: match info.state {
                RunState::Running => "running",
                RunState::Finished => "finished",
            }
            .to_string(),
            started_at: Some(info.started_at.clone()),
            ended_at: info.ended_at.clone(),
            exit_code: info.exit_code,
            cancelled: info.cancelled.clone(),
            resume: info.resume,
            submissions: info.submissions,
        }
    }
}

/// One task, briefly (the slowest tasks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskBrief {
    /// Position in the plan.
    pub index: u64,
    /// Content key.
    pub key: String,
    /// Arguments by name.
    pub args: Map<String, Value>,
    /// How it ended.
    pub status: String,
    /// Wall time of the last attempt, ms.
    pub duration_ms: f64,
    /// The worker slot that ran it.
    pub worker: Option<u32>,
}

/// One failed task (`error`, `timeout` or `crashed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FailureBrief {
    /// Position in the plan.
    pub index: u64,
    /// Content key.
    pub key: String,
    /// Arguments by name.
    pub args: Map<String, Value>,
    /// `error`, `timeout` or `crashed`.
    pub status: String,
    /// The error message.
    pub error: String,
    /// How many times it was started.
    pub attempts: u32,
    /// Wall time of the last attempt, ms.
    pub duration_ms: f64,
    /// Commands: the exit code.
    pub exit_code: Option<i32>,
    /// Commands: the signal that ended it.
    pub signal: Option<i32>,
    /// Commands: the tail of standard error.
    pub stderr: Option<String>,
}

/// The result values of one group of tasks, when numeric (numbers, or text that is one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ValueStats {
    /// How many `ok` tasks gave a numeric value.
    pub count: u64,
    /// Median of those values.
    pub median: f64,
    /// Mean of those values.
    pub mean: f64,
}

/// One value of one parameter in a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ParamValue {
    /// The parameter's value.
    pub value: Value,
    /// Tasks with this value.
    pub count: u64,
    /// Of those, failures (`error`, `timeout`, `crashed`).
    pub failures: u64,
    /// Median duration (ms) of those that ran.
    pub median_duration_ms: Option<f64>,
    /// Their numeric results, if any.
    pub result: Option<ValueStats>,
}

/// The per-value summary of one parameter of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ParamSummary {
    /// The parameter's name.
    pub name: String,
    /// Whether every value is a number.
    pub numeric: bool,
    /// Distinct values seen.
    pub distinct: u64,
    /// One entry per value (numeric parameters in increasing order, others in plan
    /// order); empty when there are more than [`MAX_PARAM_VALUES`] distinct values.
    pub values: Vec<ParamValue>,
}

/// What a run did: everything every format shows, computed once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// The run, from `run.json`.
    pub run: RunAbout,
    /// Records read.
    pub total: u64,
    /// Records by status.
    pub counts: StatusCounts,
    /// Failures (`error` + `timeout` + `crashed`).
    pub failures: u64,
    /// Records taken from an earlier run by `--resume`.
    pub resumed: u64,
    /// Tasks that ran in this run (not resumed, skipped, or cancelled before starting).
    pub ran: u64,
    /// Wall time of the run in ms (`run.json`, or the span of the records' times).
    pub wall_ms: f64,
    /// Workers: `run.json`'s count, or the distinct worker slots seen.
    pub workers: Option<u64>,
    /// Tasks that ran, per second of wall time.
    pub throughput_per_s: Option<f64>,
    /// Duration (ms) of tasks that ran and finished (`ok`, `error`, `timeout`, `crashed`).
    pub duration_ms: Option<Stats>,
    /// Commands: CPU time (ms, user + system) per task.
    pub cpu_ms: Option<Stats>,
    /// Commands: peak resident memory (KiB) per task.
    pub max_rss_kb: Option<Stats>,
    /// Numeric results of `ok` tasks.
    pub value: Option<ValueStats>,
    /// The slowest tasks that ran, slowest first (at most [`SLOWEST`]).
    pub slowest: Vec<TaskBrief>,
    /// Every failure, by index.
    pub failure_list: Vec<FailureBrief>,
    /// Per-parameter summaries, for parameters with more than one value, in declared
    /// order.
    pub parameters: Vec<ParamSummary>,
    /// Journal lines that could not be read as records.
    pub unreadable_lines: u64,
    /// What the HTML charts draw; not part of the JSON report.
    #[serde(skip)]
    #[schemars(skip)]
    pub charts: ChartData,
}

/// Per-task data for the charts (compact: a few numbers per task).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChartData {
    /// Durations (ms) of the tasks in `duration_ms`.
    pub durations: Vec<f32>,
    /// Tasks that ran, for the timeline.
    pub spans: Vec<Span>,
    /// Per numeric parameter (same order as `Summary::parameters` where numeric): name
    /// and (parameter, result) points of `ok` tasks with a numeric result.
    pub points: Vec<(String, Vec<(f32, f32)>)>,
}

/// One task on the timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Start, µs since the Unix epoch.
    pub start_us: i64,
    /// Duration, ms.
    pub duration_ms: f32,
    /// Worker slot.
    pub worker: u32,
    /// How it ended.
    pub status: Status,
}

/// Per-value accumulation for one parameter.
#[derive(Debug, Clone, Default)]
struct ValueAcc {
    value: Value,
    first_index: u64,
    count: u64,
    failures: u64,
    durations: Vec<f32>,
    results: Vec<f32>,
}

#[derive(Debug, Clone, Default)]
struct ParamAcc {
    /// Value text -> accumulation; cleared past [`MAX_PARAM_VALUES`].
    values: HashMap<String, ValueAcc>,
    overflow: bool,
    numeric: bool,
    first_index: u64,
    /// (parameter, result) for numeric parameters.
    points: Vec<(f32, f32)>,
    order: usize,
}

/// Builds a [`Summary`] from records fed one at a time, in any order.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    counts: StatusCounts,
    resumed: u64,
    ran: u64,
    durations: Vec<f32>,
    cpu: Vec<f32>,
    rss: Vec<f32>,
    values: Vec<f32>,
    spans: Vec<Span>,
    first_start_us: Option<i64>,
    last_end_us: Option<i64>,
    slowest: Vec<TaskBrief>,
    failures: Vec<FailureBrief>,
    params: HashMap<String, ParamAcc>,
    unreadable: u64,
    /// Reused for parameter values' text (no allocation per record).
    scratch: String,
}

/// A number in a value: a JSON number, or text that parses as one.
pub fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    }
}

/// A value's text as a map key: a string as it is, anything else as JSON (into `buf`).
fn value_key<'a>(v: &'a Value, buf: &'a mut String) -> &'a str {
    use std::fmt::Write;
    match v {
        Value::String(s) => s,
        other => {
            buf.clear();
            let _ = write!(buf, "{other}");
            buf
        }
    }
}

/// `2026-11-26T14:04:55.123456Z` -> µs since the epoch.
fn micros(t: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(t).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_micros()).ok()
}

impl Builder {
    /// An empty builder.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Count a journal line that was not a record.
    pub fn unreadable(&mut self) {
        self.unreadable += 1;
    }

    /// Take one record.
    pub fn add(&mut self, r: &TaskRecord) {
        self.counts.add(r.status);
        if r.resumed {
            self.resumed += 1;
        }
        let ran = !r.resumed && r.attempts > 0 && r.status != Status::Skipped;
        let finished = ran && r.status != Status::Cancelled;
        self.ran += u64::from(ran);
        if finished {
            self.durations.push(r.duration_ms as f32);
            if let Some(c) = r.cpu_ms {
                self.cpu.push(c as f32);
            }
            if let Some(m) = r.max_rss_kb {
                self.rss.push(m as f32);
            }
            self.push_slowest(r);
        }
        if ran && let Some(start) = r.started_at.as_deref().and_then(micros) {
            let end = start + (r.duration_ms * 1000.0) as i64;
            self.first_start_us = Some(self.first_start_us.map_or(start, |s| s.min(start)));
            self.last_end_us = Some(self.last_end_us.map_or(end, |e| e.max(end)));
            self.spans.push(Span {
                start_us: start,
                duration_ms: r.duration_ms as f32,
                worker: r.worker.unwrap_or(0),
                status: r.status,
            });
        }
        let result = if r.status == Status::Ok { r.value.as_ref().and_then(numeric) } else { None };
        if let Some(v) = result {
            self.values.push(v as f32);
        }
        if r.status.is_failure() {
            self.failures.push(FailureBrief {
                index: r.index,
                key: r.key.to_string(),
                args: r.args.to_map(),
                status: r.status.as_str().to_string(),
                error: r.error.clone().unwrap_or_default(),
                attempts: r.attempts,
                duration_ms: r.duration_ms,
                exit_code: r.exit_code,
                signal: r.signal,
                stderr: r.stderr.clone(),
            });
        }
        for (order, (name, v)) in r.args.iter().enumerate() {
            let p = match self.params.get_mut(name.as_str()) {
                Some(p) => p,
                None => self.params.entry(name.clone()).or_insert_with(|| ParamAcc {
                    numeric: true,
                    first_index: r.index,
                    order,
                    ..ParamAcc::default()
                }),
            };
            p.first_index = p.first_index.min(r.index);
            let x = numeric(v);
            if x.is_none() {
                p.numeric = false;
                p.points = Vec::new();
            }
            if let (Some(x), Some(y)) = (x, result)
                && p.numeric
            {
                p.points.push((x as f32, y as f32));
            }
            if p.overflow {
                continue;
            }
            let key = value_key(v, &mut self.scratch);
            let acc = match p.values.get_mut(key) {
                Some(a) => a,
                None => {
                    if p.values.len() >= MAX_PARAM_VALUES {
                        p.overflow = true;
                        p.values = HashMap::new();
                        continue;
                    }
                    p.values.entry(key.to_string()).or_insert_with(|| ValueAcc {
                        value: v.clone(),
                        first_index: r.index,
                        ..ValueAcc::default()
                    })
                }
            };
            acc.first_index = acc.first_index.min(r.index);
            acc.count += 1;
            acc.failures += u64::from(r.status.is_failure());
            if finished {
                acc.durations.push(r.duration_ms as f32);
            }
            if let Some(y) = result {
                acc.results.push(y as f32);
            }
        }
    }

    fn push_slowest(&mut self, r: &TaskRecord) {
        let n = self.slowest.len();
        if n >= SLOWEST && self.slowest[n - 1].duration_ms >= r.duration_ms {
            return;
        }
        self.slowest.push(TaskBrief {
            index: r.index,
            key: r.key.to_string(),
            args: r.args.to_map(),
            status: r.status.as_str().to_string(),
            duration_ms: r.duration_ms,
            worker: r.worker,
        });
        sort_slowest(&mut self.slowest);
    }

    /// Combine with another builder (records of the same run).
    pub fn merge(mut self, other: Builder) -> Builder {
        for s in Status::ALL {
            for _ in 0..other.counts.get(s) {
                self.counts.add(s);
            }
        }
        self.resumed += other.resumed;
        self.ran += other.ran;
        self.durations.extend(other.durations);
        self.cpu.extend(other.cpu);
        self.rss.extend(other.rss);
        self.values.extend(other.values);
        self.spans.extend(other.spans);
        self.first_start_us = min_opt(self.first_start_us, other.first_start_us);
        self.last_end_us = max_opt(self.last_end_us, other.last_end_us);
        self.slowest.extend(other.slowest);
        sort_slowest(&mut self.slowest);
        self.failures.extend(other.failures);
        self.unreadable += other.unreadable;
        for (name, q) in other.params {
            let Some(p) = self.params.get_mut(&name) else {
                self.params.insert(name, q);
                continue;
            };
            p.first_index = p.first_index.min(q.first_index);
            p.order = p.order.min(q.order);
            p.numeric &= q.numeric;
            if p.numeric {
                p.points.extend(q.points);
            } else {
                p.points = Vec::new();
            }
            p.overflow |= q.overflow;
            if !p.overflow {
                for (k, b) in q.values {
                    match p.values.get_mut(&k) {
                        Some(a) => {
                            a.first_index = a.first_index.min(b.first_index);
                            a.count += b.count;
                            a.failures += b.failures;
                            a.durations.extend(b.durations);
                            a.results.extend(b.results);
                        }
                        None => {
                            p.values.insert(k, b);
                        }
                    }
                }
                if p.values.len() > MAX_PARAM_VALUES {
                    p.overflow = true;
                }
            }
            if p.overflow {
                p.values = HashMap::new();
            }
        }
        self
    }

    /// The summary, with what `run.json` says about the run (if there is one).
    pub fn finish(self, info: Option<&RunInfo>) -> Summary {
        let Builder {
            counts,
            resumed,
            ran,
            mut durations,
            mut cpu,
            mut rss,
            mut values,
            mut spans,
            first_start_us,
            last_end_us,
            slowest,
            mut failures,
            params,
            unreadable,
            scratch: _,
        } = self;
        let total = counts.total();
        let span_ms = match (first_start_us, last_end_us) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1000.0,
            _ => 0.0,
        };
        let wall_ms = info.and_then(|i| i.wall_ms).unwrap_or(span_ms);
        let mut slots: Vec<u32> = spans.iter().map(|s| s.worker).collect();
        slots.par_sort_unstable();
        slots.dedup();
        let workers = info
            .and_then(|i| i.workers)
            .map(|w| w as u64)
            .or((!slots.is_empty()).then_some(slots.len() as u64));
        let throughput_per_s = (wall_ms > 0.0 && ran > 0).then(|| ran as f64 / (wall_ms / 1000.0));
        failures.par_sort_unstable_by_key(|f| f.index);
        spans.par_sort_unstable_by_key(|s| s.start_us);

        let mut ordered: Vec<(String, ParamAcc)> = params.into_iter().collect();
        ordered.sort_by_key(|(_, p)| (p.order, p.first_index));
        let mut parameters = Vec::new();
        let mut points = Vec::new();
        for (name, p) in ordered {
            let distinct = if p.overflow { None } else { Some(p.values.len()) };
            if distinct == Some(1) {
                continue; // a constant
            }
            let mut vals: Vec<ValueAcc> = p.values.into_values().collect();
            if p.numeric {
                vals.sort_by(|a, b| {
                    let (x, y) = (numeric(&a.value), numeric(&b.value));
                    x.unwrap_or(0.0).total_cmp(&y.unwrap_or(0.0))
                });
            } else {
                vals.sort_by_key(|v| v.first_index);
            }
            let values = vals
                .into_iter()
                .map(|mut v| ParamValue {
                    value: v.value,
                    count: v.count,
                    failures: v.failures,
                    median_duration_ms: Stats::of(&mut v.durations).map(|s| s.median),
                    result: value_stats(&mut v.results),
                })
                .collect();
            if p.numeric {
                points.push((name.clone(), p.points));
            }
            parameters.push(ParamSummary {
                name,
                numeric: p.numeric,
                distinct: distinct.map_or(MAX_PARAM_VALUES as u64 + 1, |d| d as u64),
                values,
            });
        }

        let duration_ms = Stats::of(&mut durations);
        Summary {
            run: info
                .map(RunAbout::from_info)
                .unwrap_or_else(|| RunAbout { state: "unknown".into(), ..RunAbout::default() }),
            total,
            counts,
            failures: counts.failures(),
            resumed,
            ran,
            wall_ms,
            workers,
            throughput_per_s,
            duration_ms,
            cpu_ms: Stats::of(&mut cpu),
            max_rss_kb: Stats::of(&mut rss),
            value: value_stats(&mut values),
            slowest,
            failure_list: failures,
            parameters,
            unreadable_lines: unreadable,
            charts: ChartData { durations, spans, points },
        }
    }
}

fn value_stats(v: &mut [f32]) -> Option<ValueStats> {
    Stats::of(v).map(|s| ValueStats { count: s.count, median: s.median, mean: s.mean })
}

fn sort_slowest(v: &mut Vec<TaskBrief>) {
    v.sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms).then(a.index.cmp(&b.index)));
    v.truncate(SLOWEST);
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

/// Bytes per block of whole lines handed to one rayon task.
const BLOCK: usize = 4 << 20;

/// Read `reader` as blocks of whole lines, at most `max` blocks at a time; the torn
/// last line of a journal (no newline) is left out, as [`crate::store::records`] does.
fn read_blocks(
    reader: &mut impl Read,
    carry: &mut Vec<u8>,
    max: usize,
) -> io::Result<Vec<Vec<u8>>> {
    let mut blocks = Vec::new();
    while blocks.len() < max {
        let mut block = std::mem::take(carry);
        let start = block.len();
        block.resize(start + BLOCK, 0);
        let mut filled = start;
        while filled < block.len() {
            let n = reader.read(&mut block[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        let eof = filled < block.len();
        block.truncate(filled);
        match block.iter().rposition(|b| *b == b'\n') {
            Some(end) => {
                carry.extend_from_slice(&block[end + 1..]);
                block.truncate(end + 1);
                blocks.push(block);
            }
            None if eof => {}
            None => *carry = block, // one line longer than a block: read on
        }
        if eof {
            carry.clear(); // a torn last line
            break;
        }
    }
    Ok(blocks)
}

fn parse_block(block: &[u8]) -> Builder {
    let mut b = Builder::new();
    for line in block.split(|c| *c == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<TaskRecord>(line) {
            Ok(r) => b.add(&r),
            Err(_) => b.unreadable(),
        }
    }
    b
}

/// Summarise a journal (or any JSON-lines file of records), parsing blocks of lines in
/// parallel. Memory: a few blocks of the file at a time, plus what [`Builder`] keeps.
pub fn summarize_journal(path: &Path, info: Option<&RunInfo>) -> io::Result<Summary> {
    Ok(journal_builder(path)?.finish(info))
}

/// Summarise a run: its journal (as [`summarize_journal`]) and the records it took from
/// earlier runs (references resolved through the job's resume index, in parallel). A
/// reference whose record is gone counts as an unreadable line.
pub fn summarize_run(
    journal: &Path,
    run_dir: Option<&Path>,
    info: Option<&RunInfo>,
) -> io::Result<Summary> {
    let mut total = journal_builder(journal)?;
    if let Some(dir) = run_dir {
        let refs = crate::store::resumed_refs(dir, info)?;
        if !refs.is_empty() {
            let index = crate::store::job_index_of(dir)?;
            let part = refs
                .par_chunks(4096)
                .map(|chunk| {
                    let mut b = Builder::new();
                    for (i, key) in chunk {
                        match index.get(key) {
                            Some(r) => b.add(&r.resumed_at(*i)),
                            None => b.unreadable(),
                        }
                    }
                    b
                })
                .reduce(Builder::new, Builder::merge);
            total = total.merge(part);
        }
    }
    Ok(total.finish(info))
}

fn journal_builder(path: &Path) -> io::Result<Builder> {
    let file = File::open(path)?;
    let mut reader = file;
    let mut carry = Vec::new();
    let per_batch = rayon::current_num_threads().max(1) * 2;
    let mut total = Builder::new();
    loop {
        let blocks = read_blocks(&mut reader, &mut carry, per_batch)?;
        if blocks.is_empty() {
            break;
        }
        let part = blocks.par_iter().map(|b| parse_block(b)).reduce(Builder::new, Builder::merge);
        total = total.merge(part);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(index: u64, status: Status, x: i64, value: Option<Value>, ms: f64) -> TaskRecord {
        let mut args = Map::new();
        args.insert("x".into(), json!(x));
        args.insert("c".into(), json!("const"));
        TaskRecord {
            index,
            key: format!("k{index}").into(),
            args: args.into(),
            status,
            value,
            error: (status != Status::Ok).then(|| format!("e{index}")),
            attempts: u32::from(status != Status::Skipped),
            worker: Some((index % 2) as u32),
            started_at: Some(format!("2026-01-01T00:00:0{}.000000Z", index % 10).into()),
            duration_ms: ms,
            exit_code: None,
            signal: None,
            stderr: None,
            cpu_ms: None,
            max_rss_kb: None,
            resumed: false,
        }
    }

    #[test]
    fn stats_use_nearest_rank() {
        let mut v: Vec<f32> = (1..=100).map(|x| x as f32).collect();
        let s = Stats::of(&mut v).unwrap();
        assert_eq!((s.min, s.median, s.p95, s.max, s.count), (1.0, 50.0, 95.0, 100.0, 100));
        assert_eq!(Stats::of(&mut []), None);
        assert_eq!(Stats::of(&mut [7.0]).unwrap().p95, 7.0);
    }

    #[test]
    fn merged_builders_equal_one_builder() {
        let recs: Vec<TaskRecord> = (0..40)
            .map(|i| {
                let st = if i % 7 == 3 { Status::Error } else { Status::Ok };
                rec(i, st, (i % 4) as i64, Some(json!(i as f64 * 0.5)), (i * 3 % 17) as f64)
            })
            .collect();
        let mut one = Builder::new();
        recs.iter().for_each(|r| one.add(r));
        let mut a = Builder::new();
        let mut b = Builder::new();
        for (n, r) in recs.iter().enumerate() {
            if n % 3 == 0 { a.add(r) } else { b.add(r) }
        }
        let (s1, s2) = (one.finish(None), b.merge(a).finish(None));
        assert_eq!(serde_json::to_value(&s1).unwrap(), serde_json::to_value(&s2).unwrap());
        assert_eq!(s1.parameters.len(), 1, "the constant is left out");
        let x = &s1.parameters[0];
        assert!(x.numeric);
        assert_eq!(x.values.iter().map(|v| v.count).sum::<u64>(), 40);
        assert_eq!(s1.failure_list.len(), s1.failures as usize);
        assert!(s1.failure_list.windows(2).all(|w| w[0].index < w[1].index));
        assert_eq!(s1.slowest.len(), SLOWEST);
        assert_eq!(s1.slowest[0].duration_ms, 16.0);
    }

    #[test]
    fn blocks_hold_whole_lines_and_drop_a_torn_tail() {
        let mut text = Vec::new();
        for i in 0..1000 {
            text.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        text.extend_from_slice(b"torn");
        let mut reader = &text[..];
        let mut carry = Vec::new();
        let mut lines = 0;
        loop {
            let blocks = read_blocks(&mut reader, &mut carry, 3).unwrap();
            if blocks.is_empty() {
                break;
            }
            for b in blocks {
                assert_eq!(b.last(), Some(&b'\n'));
                lines += b.iter().filter(|c| **c == b'\n').count();
            }
        }
        assert_eq!(lines, 1000);
    }

    #[test]
    fn many_distinct_values_give_no_table() {
        let mut b = Builder::new();
        for i in 0..(MAX_PARAM_VALUES as u64 + 5) {
            b.add(&rec(i, Status::Ok, i as i64, Some(json!(1)), 1.0));
        }
        let s = b.finish(None);
        assert!(s.parameters[0].values.is_empty());
        assert!(s.parameters[0].distinct > MAX_PARAM_VALUES as u64);
        assert_eq!(s.charts.points[0].1.len(), MAX_PARAM_VALUES + 5);
    }
}
