//! Micro-benchmarks (divan) of the parts a script job's records go through, so a
//! regression in the whole-process figures of `benches/compare.py` can be traced to one
//! of them: the planner, each sink format, the reorder buffer, the journal, and the pool's
//! ipc batch path.
//!
//!     cargo bench --bench micro                 # everything
//!     cargo bench --bench micro -- sink         # only names containing `sink`
//!
//! Throughputs are printed per item (submissions, records, tasks): divan's `item/s`.
//! `harness = false`: this binary is also the pool's worker program (the ipc group
//! starts real worker processes from it).

use std::io;
use std::path::Path;
use std::sync::OnceLock;

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use jobpool::model::{Job, Order, SinkFormat};
use jobpool::plan::Plan;
use jobpool::pool::{Pool, Registry, TaskError, WorkerKind, worker};
use jobpool::record::{Status, TaskRecord};
use jobpool::sink::{Destination, ReorderBuffer, with_destination};
use jobpool::store::{RunMeta, RunStore};
use jobpool::validate::{LoadOptions, load_str};
use serde_json::{Map, Value, json};

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register("noop", |x: i64| Ok::<_, TaskError>(x + 1));
    registry
}

fn main() {
    worker::run_if_worker(&registry());
    divan::main();
}

/// A job of `100 × 100 × 10` submissions with a sink of every format (to stdout: the
/// benchmarks give each sink its own destination).
fn job(dir: &Path) -> Job {
    let text = r#"
name = "micro"
[task]
kind = "script"
script = "a * b"
[args]
a = { range = [0, 100] }
b = { range = [0.0, 100.0], step = 1.0 }
c = ["small", "medium", "large", "x-large", "x-small", "huge", "tiny", "big", "mini", "maxi"]
[[sink]]
to = "stdout"
format = "text"
template = "{index} {a} {b} {c}: {value}"
[[sink]]
to = "stdout"
format = "jsonl"
[[sink]]
to = "stdout"
format = "json"
[[sink]]
to = "stdout"
format = "csv"
"#;
    load_str(&dir.join("micro.toml"), text, &LoadOptions::default()).expect("the bench job loads")
}

/// `n` finished records of [`job`]'s plan, as a run produces them.
fn records(job: &Job, n: usize) -> Vec<TaskRecord> {
    Plan::new(job)
        .take(n)
        .map(|s| {
            let args: Map<String, Value> =
                job.args.names.iter().cloned().zip(s.args.iter().cloned()).collect();
            let mut r = TaskRecord::new(s.index, s.key, args.into(), Status::Ok);
            r.value = Some(json!(s.index as f64 * 1.5));
            r.attempts = 1;
            r.worker = Some((s.index % 2) as u32);
            r.started_at = Some("2026-11-30T05:00:00.123Z".into());
            r.duration_ms = 0.012;
            r
        })
        .collect()
}

const N: usize = 10_000;

fn fixture() -> &'static (Job, Vec<TaskRecord>) {
    static F: OnceLock<(Job, Vec<TaskRecord>)> = OnceLock::new();
    F.get_or_init(|| {
        let job = job(Path::new(""));
        let recs = records(&job, N);
        (job, recs)
    })
}

/// The planner: expand the plan (arguments and content keys).
#[divan::bench(sample_count = 20)]
fn planner(bencher: Bencher) {
    let (job, _) = fixture();
    let n = Plan::new(job).len();
    bencher.counter(ItemsCount::new(n)).bench(|| {
        let mut check = 0usize;
        for s in Plan::new(job) {
            check = check.wrapping_add(s.key.len() + s.args.len());
        }
        black_box(check)
    });
}

/// Each sink format writing 10,000 records to a discarding writer (records/s).
#[divan::bench(args = ["text", "jsonl", "json", "csv"], sample_count = 20)]
fn sink(bencher: Bencher, format: &str) {
    let (job, recs) = fixture();
    let config = job
        .sinks
        .iter()
        .find(|s| match s.format {
            SinkFormat::Text(_) => format == "text",
            SinkFormat::Jsonl => format == "jsonl",
            SinkFormat::Json => format == "json",
            SinkFormat::Csv => format == "csv",
        })
        .expect("the bench job has a sink of every format");
    bencher.counter(ItemsCount::new(recs.len())).bench(|| {
        let mut sink =
            with_destination(job, &config.format, Destination::writer(io::sink())).unwrap();
        for r in recs {
            sink.write_record(r).unwrap();
        }
        sink.finish().unwrap();
    });
}

/// The reorder buffer: 10,000 records arriving in windows of 64 finished back to front
/// (every record but one per window waits), all released in submission order.
#[divan::bench(sample_count = 20)]
fn reorder(bencher: Bencher) {
    let (_, recs) = fixture();
    bencher
        .counter(ItemsCount::new(recs.len()))
        .with_inputs(|| {
            let mut v = recs.clone();
            for w in v.chunks_mut(64) {
                w.reverse();
            }
            v
        })
        .bench_values(|v| {
            let mut buf = ReorderBuffer::new(Order::Submission);
            let mut out = 0usize;
            for r in v {
                out += buf.push(r).count();
            }
            assert_eq!(out, N);
        });
}

/// The journal: create a run folder, append 10,000 records, finish (records/s).
#[divan::bench(sample_count = 10)]
fn journal(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path());
    let recs = records(&job, N);
    bencher.counter(ItemsCount::new(recs.len())).bench(|| {
        let meta = RunMeta {
            run_id: None,
            argv: Vec::new(),
            submissions: Some(N as u64),
            workers: None,
            resume: false,
            shard: None,
            into_existing: false,
        };
        let mut store = RunStore::create(&job, meta).unwrap();
        for r in &recs {
            store.append(r).unwrap();
        }
        store.finish(jobpool::store::RunEnd { exit_code: 0, cancelled: None }).unwrap();
    });
}

/// The pool's batch path: `map` of 100,000 trivial tasks on 2 workers, through worker
/// processes (postcard over ipc-channel) and, for comparison, worker threads (no ipc).
#[divan::bench(args = ["processes", "threads"], sample_count = 10)]
fn ipc_map(bencher: Bencher, kind: &str) {
    let kind = if kind == "threads" { WorkerKind::Threads } else { WorkerKind::Processes };
    let pool = Pool::builder().workers(2).worker_kind(kind).registry(registry()).build().unwrap();
    let n = 100_000i64;
    bencher.counter(ItemsCount::new(n as usize)).bench(|| {
        let v: Vec<i64> = pool.map("noop", 0..n).unwrap();
        assert_eq!(v.len(), n as usize);
    });
}

/// One `apply_async` round trip at a time through a worker process (latency per task).
#[divan::bench(sample_count = 10)]
fn ipc_apply_round_trip(bencher: Bencher) {
    let pool = Pool::builder().workers(1).registry(registry()).build().unwrap();
    bencher.counter(ItemsCount::new(1000usize)).bench(|| {
        for i in 0..1000i64 {
            let v: i64 = pool.apply("noop", i).unwrap();
            assert_eq!(v, i + 1);
        }
    });
}
