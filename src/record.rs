//! `TaskRecord`: the one result row that sinks, the run journal and reports read.
//!
//! Owns: the record's fields and their JSON form (documented field by field in the
//! book's "Sinks and records" chapter). Must not: know how records are produced.

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod args;
pub use args::Args;

/// How a submission ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Finished and succeeded; `value` holds the result.
    Ok,
    /// The task reported an error (a non-success exit code, a script error, `Err`).
    Error,
    /// Stopped after `task-timeout`.
    Timeout,
    /// The worker died while running it (signal, abort, exit).
    Crashed,
    /// Stopped because the job's deadline passed or the run was interrupted.
    Cancelled,
    /// Never started (`on-failure = "stop"` after an earlier failure).
    Skipped,
}

impl Status {
    /// Every status, in the order summaries list them.
    pub const ALL: [Status; 6] = [
        Status::Ok,
        Status::Error,
        Status::Timeout,
        Status::Crashed,
        Status::Cancelled,
        Status::Skipped,
    ];

    /// The lowercase name used in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::Crashed => "crashed",
            Status::Cancelled => "cancelled",
            Status::Skipped => "skipped",
        }
    }

    /// Whether this status counts as a task failure (exit code 1).
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Error | Status::Timeout | Status::Crashed)
    }

    /// The failure this status stands for, as `retry-on` names it; `None` for `ok`,
    /// `cancelled` and `skipped`. A task may be retried when
    /// `status.failure().is_some_and(|f| job.limits.retry_on.contains(f))`.
    pub fn failure(self) -> Option<crate::model::Failure> {
        use crate::model::Failure;
        match self {
            Status::Error => Some(Failure::Error),
            Status::Timeout => Some(Failure::Timeout),
            Status::Crashed => Some(Failure::Crashed),
            Status::Ok | Status::Cancelled | Status::Skipped => None,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Records of one run by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "jobs", derive(schemars::JsonSchema))]
#[serde(default)]
pub struct StatusCounts {
    /// `ok` records.
    pub ok: u64,
    /// `error` records.
    pub error: u64,
    /// `timeout` records.
    pub timeout: u64,
    /// `crashed` records.
    pub crashed: u64,
    /// `cancelled` records.
    pub cancelled: u64,
    /// `skipped` records.
    pub skipped: u64,
}

impl StatusCounts {
    /// Count one more record of `status`.
    pub fn add(&mut self, status: Status) {
        *self.slot(status) += 1;
    }

    /// Count every record of `other` too.
    pub fn add_counts(&mut self, other: &StatusCounts) {
        for st in Status::ALL {
            *self.slot(st) += other.get(st);
        }
    }

    /// Records of `status`.
    pub fn get(&self, status: Status) -> u64 {
        let mut copy = *self;
        *copy.slot(status)
    }

    /// Every record.
    pub fn total(&self) -> u64 {
        Status::ALL.iter().map(|s| self.get(*s)).sum()
    }

    /// Failures (`error`, `timeout`, `crashed`).
    pub fn failures(&self) -> u64 {
        self.error + self.timeout + self.crashed
    }

    fn slot(&mut self, status: Status) -> &mut u64 {
        match status {
            Status::Ok => &mut self.ok,
            Status::Error => &mut self.error,
            Status::Timeout => &mut self.timeout,
            Status::Crashed => &mut self.crashed,
            Status::Cancelled => &mut self.cancelled,
            Status::Skipped => &mut self.skipped,
        }
    }
}

/// One submission's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Position in the plan, from 0.
    pub index: u64,
    /// Content key (hash of the task definition and the arguments).
    pub key: crate::text::Key,
    /// Arguments by name, in declared order.
    pub args: Args,
    /// How it ended.
    pub status: Status,
    /// The result, on `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The error message, on any other status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many times it was started (0 for skipped).
    pub attempts: u32,
    /// The worker that ran the last attempt (0-based slot), when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<u32>,
    /// RFC 3339 UTC time the last attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<crate::text::SmallText>,
    /// Wall time of the last attempt in milliseconds.
    #[serde(default)]
    pub duration_ms: f64,
    /// Commands: the exit code, when the process exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Commands: the signal that ended the process, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Commands: the tail of standard error (`""` when there was none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// Commands: user + system CPU time of the task's processes, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<f64>,
    /// Commands: peak resident memory of the task's processes, in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rss_kb: Option<u64>,
    /// True when the record was taken from an earlier run by `--resume`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
}

impl TaskRecord {
    /// A record with only its identity and status: no value, error, attempt, worker,
    /// timing or command fields yet. Producers fill in what they know.
    pub fn new(
        index: u64,
        key: impl Into<crate::text::Key>,
        args: Args,
        status: Status,
    ) -> TaskRecord {
        TaskRecord {
            index,
            key: key.into(),
            args,
            status,
            value: None,
            error: None,
            attempts: 0,
            worker: None,
            started_at: None,
            duration_ms: 0.0,
            exit_code: None,
            signal: None,
            stderr: None,
            cpu_ms: None,
            max_rss_kb: None,
            resumed: false,
        }
    }

    /// Append the record's compact JSON (exactly `serde_json::to_writer`'s bytes: the
    /// same fields, order and number forms) to `out`: the journal's and a jsonl sink's
    /// line, written without serde's per-field machinery (this runs once per record;
    /// see [`crate::text::json`]).
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        use crate::text::json;
        fn put<T: Serialize + ?Sized>(
            out: &mut Vec<u8>,
            key: &[u8],
            v: &T,
        ) -> serde_json::Result<()> {
            out.extend_from_slice(key);
            serde_json::to_writer(&mut *out, v)
        }
        fn opt<T: Serialize>(
            out: &mut Vec<u8>,
            key: &[u8],
            v: &Option<T>,
        ) -> serde_json::Result<()> {
            match v {
                Some(v) => put(out, key, v),
                None => Ok(()),
            }
        }
        out.extend_from_slice(b"{\"index\":");
        json::push_u64(out, self.index);
        out.extend_from_slice(b",\"key\":");
        json::push_str(out, &self.key);
        out.extend_from_slice(b",\"args\":");
        self.args.write_json(out)?;
        out.extend_from_slice(b",\"status\":\"");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b'"');
        if let Some(v) = &self.value {
            out.extend_from_slice(b",\"value\":");
            json::push_value(out, v)?;
        }
        if let Some(e) = &self.error {
            out.extend_from_slice(b",\"error\":");
            json::push_str(out, e);
        }
        out.extend_from_slice(b",\"attempts\":");
        json::push_u64(out, u64::from(self.attempts));
        if let Some(w) = self.worker {
            out.extend_from_slice(b",\"worker\":");
            json::push_u64(out, u64::from(w));
        }
        if let Some(t) = &self.started_at {
            out.extend_from_slice(b",\"started_at\":");
            json::push_str(out, t);
        }
        put(out, b",\"duration_ms\":", &self.duration_ms)?;
        opt(out, b",\"exit_code\":", &self.exit_code)?;
        opt(out, b",\"signal\":", &self.signal)?;
        opt(out, b",\"stderr\":", &self.stderr)?;
        opt(out, b",\"cpu_ms\":", &self.cpu_ms)?;
        opt(out, b",\"max_rss_kb\":", &self.max_rss_kb)?;
        if self.resumed {
            out.extend_from_slice(b",\"resumed\":true");
        }
        out.push(b'}');
        Ok(())
    }

    /// The same record taken over by `--resume` into a new plan: `resumed` set and `index`
    /// replaced by the submission's position in the current plan.
    pub fn resumed_at(mut self, index: u64) -> TaskRecord {
        self.index = index;
        self.resumed = true;
        self
    }

    /// A record field by its name in templates (`value`, `status`, `error`, `index`, `key`,
    /// `duration_ms`, `attempts`, `worker`, `exit_code`, `signal`, `started_at`, `stderr`,
    /// `cpu_ms`, `max_rss_kb`, `resumed`), as template text (see [`crate::model::value_text`]). Absent fields are
    /// the empty string; `None` means the name is not a record field.
    pub fn field_text(&self, name: &str) -> Option<String> {
        fn opt<T: ToString>(v: &Option<T>) -> String {
            v.as_ref().map(ToString::to_string).unwrap_or_default()
        }
        Some(match name {
            "value" => self.value.as_ref().map(crate::model::value_text).unwrap_or_default(),
            "status" => self.status.as_str().to_string(),
            "error" => opt(&self.error),
            "index" => self.index.to_string(),
            "key" => self.key.to_string(),
            "duration_ms" => self.duration_ms.to_string(),
            "attempts" => self.attempts.to_string(),
            "worker" => opt(&self.worker),
            "exit_code" => opt(&self.exit_code),
            "signal" => opt(&self.signal),
            "started_at" => opt(&self.started_at),
            "stderr" => opt(&self.stderr),
            "cpu_ms" => opt(&self.cpu_ms),
            "max_rss_kb" => opt(&self.max_rss_kb),
            "resumed" => self.resumed.to_string(),
            _ => return None,
        })
    }
}

/// One field of a record: THE list ([`FIELDS`]) that the template validator, the text
/// sink, the CSV columns, the book and reports all take their names from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The name in JSON records and in `{name}` templates.
    pub name: &'static str,
    /// One line for the book and `--help`.
    pub doc: &'static str,
    /// Whether CSV sinks write it as a column (after the arguments).
    pub csv: bool,
}

const fn field(name: &'static str, doc: &'static str, csv: bool) -> Field {
    Field { name, doc, csv }
}

/// Every record field besides `args`, in the order of a JSON record.
pub const FIELDS: [Field; 15] = [
    field("index", "position in the plan, from 0", false),
    field("key", "content key: a hash of the task definition and the arguments", false),
    field("status", "ok, error, timeout, crashed, cancelled or skipped", true),
    field("value", "the result, on ok", true),
    field("error", "the error message, on any other status", true),
    field("attempts", "how many times it was started (0 when it never ran)", false),
    field("worker", "the worker slot (from 0) that ran the last attempt", false),
    field("started_at", "RFC 3339 UTC time the last attempt started", false),
    field("duration_ms", "wall time of the last attempt in milliseconds", true),
    field("exit_code", "commands: the exit code, when the process exited", false),
    field("signal", "commands: the signal that ended the process, when one did", false),
    field("stderr", "commands: the tail of standard error (\"\" when there was none)", false),
    field("cpu_ms", "commands: user + system CPU time of the task's processes, in ms", false),
    field("max_rss_kb", "commands: peak resident memory of the task's processes, in KiB", false),
    field("resumed", "true when the record was taken from an earlier run by --resume", false),
];

/// The names of [`FIELDS`], in order: what a sink template may use besides arguments.
pub const FIELD_NAMES: [&str; FIELDS.len()] = {
    let mut names = [""; FIELDS.len()];
    let mut i = 0;
    while i < FIELDS.len() {
        names[i] = FIELDS[i].name;
        i += 1;
    }
    names
};

/// The CSV columns after the arguments, in order.
pub fn csv_fields() -> impl Iterator<Item = &'static str> {
    FIELDS.iter().filter(|f| f.csv).map(|f| f.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> TaskRecord {
        TaskRecord {
            index: 7,
            key: "k".into(),
            args: Args::default(),
            status: Status::Ok,
            value: Some(json!({"a": "b"})),
            error: None,
            attempts: 2,
            worker: None,
            started_at: None,
            duration_ms: 12.0,
            exit_code: Some(0),
            signal: None,
            stderr: None,
            cpu_ms: Some(1.5),
            max_rss_kb: None,
            resumed: false,
        }
    }

    #[test]
    fn every_field_name_is_a_field() {
        let r = record();
        for name in FIELD_NAMES {
            assert!(r.field_text(name).is_some(), "{name}");
        }
        assert_eq!(r.field_text("x"), None);
    }

    #[test]
    fn the_field_list_is_the_json_record() {
        // Every key a record can have in JSON is in the list (or is `args`), in order.
        let mut r = record();
        r.error = Some("e".into());
        r.worker = Some(1);
        r.started_at = Some("t".into());
        r.signal = Some(9);
        r.stderr = Some(String::new());
        r.max_rss_kb = Some(2048);
        r.resumed = true;
        let json = serde_json::to_value(&r).unwrap();
        let keys: Vec<&str> =
            json.as_object().unwrap().keys().map(String::as_str).filter(|k| *k != "args").collect();
        assert_eq!(keys, FIELD_NAMES);
        assert_eq!(csv_fields().collect::<Vec<_>>(), ["status", "value", "error", "duration_ms"]);
    }

    #[test]
    fn write_json_is_serdes_text() {
        let mut r = record();
        let mut cases = vec![r.clone()];
        r.args.insert("name \"quoted\"\n".into(), json!([1.5, -0.0, 1e300, "é\u{1}"]));
        r.args.insert("n".into(), json!(u64::MAX));
        r.args.insert("m".into(), json!(i64::MIN));
        r.args.insert("s".into(), json!("plain"));
        r.args.insert("o".into(), json!({"a": [true, null, 2.5]}));
        r.value = None;
        r.error = Some("tab\there".into());
        r.worker = Some(3);
        r.started_at = Some("2026-11-30T05:36:43.681504Z".into());
        r.duration_ms = 0.1 + 0.2;
        r.exit_code = Some(-1);
        r.signal = Some(9);
        r.stderr = Some(String::new());
        r.cpu_ms = None;
        r.max_rss_kb = Some(2048);
        r.resumed = true;
        cases.push(r.clone());
        r.status = Status::Crashed;
        r.duration_ms = f64::NAN; // serde writes null
        r.value = Some(json!(null));
        r.resumed = false;
        cases.push(r.clone());
        for v in [json!(0), json!(-3), json!(u64::MAX), json!(2.5), json!("a\"b"), json!("ok")] {
            r.value = Some(v);
            r.error = Some("plain".into());
            r.key = "0123456789abcdef0123456789abcdef".into();
            cases.push(r.clone());
        }
        for s in Status::ALL {
            let mut x = TaskRecord::new(u64::MAX, "k", Args::default(), s);
            x.duration_ms = 12345.678;
            cases.push(x);
        }
        for c in cases {
            let mut ours = Vec::new();
            c.write_json(&mut ours).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&c).unwrap(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn field_text_is_template_text() {
        let r = record();
        let text = |n| r.field_text(n).unwrap();
        assert_eq!(text("value"), r#"{"a":"b"}"#);
        assert_eq!(text("duration_ms"), "12");
        assert_eq!(text("worker"), "");
        assert_eq!(text("exit_code"), "0");
        assert_eq!((text("cpu_ms"), text("max_rss_kb")), ("1.5".into(), "".into()));
        assert_eq!(text("status"), "ok");
    }

    #[test]
    fn resumed_records_take_the_new_index() {
        let r = record().resumed_at(3);
        assert_eq!((r.index, r.resumed), (3, true));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["resumed"], json!(true));
        assert!(serde_json::to_value(record()).unwrap().get("resumed").is_none());
    }

    #[test]
    fn failures_are_what_retry_on_names() {
        use crate::model::{Failure, RetryOn};
        let failures: Vec<Failure> = Status::ALL.iter().filter_map(|s| s.failure()).collect();
        assert_eq!(failures, Failure::ALL);
        for s in Status::ALL {
            assert_eq!(s.failure().is_some(), s.is_failure(), "{s}");
            assert_eq!(s.failure().map(Failure::name), s.is_failure().then(|| s.as_str()));
        }
        let on: RetryOn = [Failure::Timeout].into_iter().collect();
        assert!(Status::Timeout.failure().is_some_and(|f| on.contains(f)));
        assert!(!Status::Error.failure().is_some_and(|f| on.contains(f)));
    }

    #[test]
    fn status_counts_add_up() {
        let mut c = StatusCounts::default();
        for s in Status::ALL {
            c.add(s);
        }
        c.add(Status::Ok);
        assert_eq!((c.get(Status::Ok), c.total(), c.failures()), (2, 7, 3));
    }
}
