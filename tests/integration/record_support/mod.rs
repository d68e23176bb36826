// Shared by tests/sinks.rs and tests/store.rs (`mod record_support;`): a minimal
// validated `Job` and records, built by hand.

#![allow(dead_code)]

use std::path::Path;

use jobpool::model::{
    ArgForm, ArgSpace, Backend, ChunkSize, Job, Limits, OnFailure, Order, SinkConfig, SinkFormat,
    SinkTarget, TaskTemplate, Template, TemplatePart,
};
use jobpool::record::{Status, TaskRecord};
use serde_json::{Map, Value, json};

pub fn job(dir: &Path, name: &str, args: &[&str], sinks: Vec<SinkConfig>) -> Job {
    Job {
        name: name.to_string(),
        description: None,
        path: dir.join(format!("{name}.toml")),
        dir: dir.to_path_buf(),
        workers: None,
        limits: Limits::default(),
        order: Order::Submission,
        on_failure: OnFailure::Continue,
        max_failures: None,
        chunk_size: ChunkSize::Auto,
        max_tasks_per_worker: 0,
        backend: Backend::Processes,
        watch: vec![],
        task: TaskTemplate::Registered { kind: "test".into() },
        args: ArgSpace {
            names: args.iter().map(|s| s.to_string()).collect(),
            form: ArgForm::Single,
            constants: vec![],
        },
        sinks,
        slurm: None,
    }
}

/// Parse `{name}` placeholders (no escapes needed in these tests).
pub fn template(text: &str) -> Template {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Literal(rest[..open].to_string()));
        }
        let close = rest[open..].find('}').expect("closed placeholder") + open;
        parts.push(TemplatePart::Placeholder(rest[open + 1..close].to_string()));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_string()));
    }
    Template { source: text.to_string(), parts }
}

pub fn file_sink(path: &str, format: SinkFormat) -> SinkConfig {
    SinkConfig { to: SinkTarget::Path(template(path)), format }
}

pub fn record(
    index: u64,
    status: Status,
    args: &[(&str, Value)],
    value: Option<Value>,
) -> TaskRecord {
    let mut map = Map::new();
    for (k, v) in args {
        map.insert(k.to_string(), v.clone());
    }
    let mut r = TaskRecord::new(index, format!("key-{index}"), map.into(), status);
    if status == Status::Ok {
        r.value = value;
    } else {
        r.error = Some(format!("failed #{index}"));
    }
    r.attempts = 1;
    r.worker = Some((index % 4) as u32);
    r.started_at = Some("2026-11-26T14:04:55.000001Z".into());
    r.duration_ms = 1.5 + index as f64;
    r
}

pub fn ok(index: u64) -> TaskRecord {
    record(
        index,
        Status::Ok,
        &[("x", json!(index)), ("name", json!(format!("n{index}")))],
        Some(json!(index * 10)),
    )
}
