//! The job-file format, 1:1: serde types with kebab-case keys, and the JSON Schema
//! generated from them (`jobpool schema`).
//!
//! Owns: [`JobFile`] and its parts, and [`keys`], the accepted key names that `validate`
//! walks with (a test keeps them equal to these types' fields). `validate` does not
//! deserialise through these types, because serde stops at the first error; they are the
//! format's reference, the schema's source, and a cross-check in tests (every valid job
//! deserialises into them).
//! Must not: read files or check meaning (that is `validate`).

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Accepted keys per table; `validate` reports anything else as unknown.
pub mod keys {
    /// Top-level keys.
    pub const TOP: &[&str] = &[
        "name",
        "description",
        "workers",
        "timeout",
        "task-timeout",
        "grace-period",
        "retries",
        "retry-on",
        "on-failure",
        "max-failures",
        "order",
        "chunk-size",
        "max-tasks-per-worker",
        "backend",
        "watch",
        "task",
        "args",
        "sink",
        "slurm",
    ];
    /// `[task]` with `kind = "command"`.
    pub const TASK_COMMAND: &[&str] =
        &["kind", "program", "shell", "cwd", "env", "stdin", "output", "success-codes"];
    /// `[task]` with `kind = "script"`.
    pub const TASK_SCRIPT: &[&str] = &["kind", "script", "file"];
    /// `[task]` of a registered kind: only `kind`.
    pub const TASK_REGISTERED: &[&str] = &["kind"];
    /// A `[[sink]]`.
    pub const SINK: &[&str] = &["to", "format", "template"];
    /// `[slurm]`.
    pub const SLURM: &[&str] =
        &["partition", "array-limit", "per-element", "time-limit", "sbatch-args", "shared-dir"];
    /// Keys of `[args]` that are not parameters.
    pub const ARGS_RESERVED: &[&str] = &["combine", "names", "tuples"];
    /// A parameter table (`x = { range = [0, 5], step = 1 }`).
    pub const PARAM: &[&str] = &["range", "step", "glob", "lines", "value"];
}

/// A whole job file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(title = "jobpool job file")]
pub struct JobFile {
    /// The job's name; default: the file's stem.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Worker count: a positive integer or "auto" (default: available CPUs).
    pub workers: Option<Workers>,
    /// Deadline for the whole job, e.g. "30s" (exit code 3 when it passes).
    pub timeout: Option<DurationText>,
    /// A task running longer is killed (status "timeout").
    pub task_timeout: Option<DurationText>,
    /// Between TERM and KILL when a task is stopped (default "1s").
    pub grace_period: Option<DurationText>,
    /// Re-run error/timeout/crashed tasks up to N times.
    #[schemars(range(min = 0, max = 4294967295u32))]
    pub retries: Option<u32>,
    /// Which failures `retries` applies to (default: all three).
    #[schemars(length(min = 1))]
    pub retry_on: Option<Vec<RetryOn>>,
    /// "continue" (default) or "stop": no new submissions after a failure.
    pub on_failure: Option<OnFailure>,
    /// Past this many failed tasks (a count, or "N%" of the submissions), nothing new
    /// starts; the rest are skipped.
    pub max_failures: Option<MaxFailuresText>,
    /// "submission" (default) or "completion".
    pub order: Option<Order>,
    /// Submissions sent to a worker at once: "auto" or a positive integer.
    pub chunk_size: Option<Workers>,
    /// Recycle a worker after N tasks; 0 = never.
    pub max_tasks_per_worker: Option<u64>,
    /// "processes" (default), "threads" or "slurm".
    pub backend: Option<Backend>,
    /// Extra files (globs, relative to the job file) whose change reruns the job.
    pub watch: Option<Vec<String>>,
    /// What each submission runs.
    pub task: Task,
    /// How submissions are made; no `[args]` means one submission.
    pub args: Option<Args>,
    /// Where results go; default: stdout, text.
    pub sink: Option<Vec<Sink>>,
    /// Slurm settings for `backend = "slurm"`.
    pub slurm: Option<Slurm>,
}

/// A duration string: "250ms", "30s", "1h 5m"; greater than zero.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DurationText(pub String);

impl JsonSchema for DurationText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "a duration greater than zero: \"250ms\", \"30s\", \"1h 5m\"",
            "pattern": "^\\s*[0-9]"
        })
    }
}

/// `max-failures`: a positive integer, or a percentage string such as "5%".
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MaxFailuresText(pub toml::Value);

impl JsonSchema for MaxFailuresText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MaxFailures".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "a count (at least 1) or a share of the submissions (\"5%\", more than 0% and at most 100%)",
            "oneOf": [
                { "type": "integer", "minimum": 1 },
                { "type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*%\\s*$" }
            ]
        })
    }
}

/// A positive integer or "auto".
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Workers(pub toml::Value);

impl JsonSchema for Workers {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PositiveOrAuto".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "a positive integer or \"auto\"",
            "oneOf": [ { "type": "integer", "minimum": 1 }, { "const": "auto" } ]
        })
    }
}

macro_rules! choice {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name { $($(#[$vdoc])* $variant),* }
    };
}

choice!(
    /// What happens after the first failure.
    OnFailure { /// Keep going.
    Continue, /// No new submissions.
    Stop }
);
choice!(
    /// A failure `retries` applies to.
    RetryOn { /// The task returned an error.
    Error, /// The task ran past `task-timeout`.
    Timeout, /// The worker died under the task.
    Crashed }
);
choice!(
    /// The order records reach sinks in.
    Order { /// Submission order.
    Submission, /// As tasks finish.
    Completion }
);
choice!(
    /// Where tasks run.
    Backend { /// Worker processes.
    Processes, /// A thread pool.
    Threads, /// A Slurm job array.
    Slurm }
);
choice!(
    /// How a command's stdout becomes the value.
    Output { /// Trimmed text.
    Text, /// Parsed JSON.
    Json, /// Non-empty lines.
    Lines, /// null.
    None }
);
choice!(
    /// A sink's format.
    Format { /// One line per record from `template`.
    Text, /// JSON lines.
    Jsonl, /// One JSON array.
    Json, /// CSV.
    Csv }
);
choice!(
    /// How parameters combine.
    Combine { /// Every combination, first parameter slowest.
    Product, /// Element-wise.
    Zip }
);

/// `[task]`: `kind` picks the keys that are allowed (see `keys`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Task {
    /// "command", "script", or a kind registered by the program (`jobpool kinds`).
    pub kind: String,
    /// command: argv, each item a template (`{name}`, `{0}`).
    pub program: Option<Vec<String>>,
    /// command: a `/bin/sh -c` line; substituted values are shell-quoted.
    pub shell: Option<String>,
    /// command: working folder (template).
    pub cwd: Option<String>,
    /// command: extra environment variables (values are templates).
    pub env: Option<BTreeMap<String, String>>,
    /// command: text for standard input (template).
    pub stdin: Option<String>,
    /// command: how stdout becomes the value (default "text").
    pub output: Option<Output>,
    /// command: exit codes that count as success (default [0]).
    pub success_codes: Option<Vec<u8>>,
    /// script: inline Rhai.
    pub script: Option<String>,
    /// script: a Rhai file relative to the job file.
    pub file: Option<String>,
}

/// `[args]`: `combine`, `names` + `tuples`, and one key per parameter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Args(pub toml::Table);

impl JsonSchema for Args {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Args".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "parameters (one key each) and how they combine",
            "properties": {
                "combine": { "enum": ["product", "zip"], "description": "\"product\" (default) or \"zip\"" },
                "names": { "type": "array", "items": { "type": "string" }, "description": "names of the tuple elements" },
                "tuples": { "type": "array", "items": { "type": "array" }, "description": "explicit tuples, as wide as `names`" }
            },
            "additionalProperties": {
                "description": "a parameter: a list, a range/glob/lines/value table, or a constant",
                "anyOf": [
                    { "type": "array", "minItems": 1 },
                    { "type": "object", "additionalProperties": false, "required": ["range"],
                      "properties": { "range": { "type": "array", "items": { "type": "number" }, "minItems": 2, "maxItems": 2 }, "step": { "type": "number" } } },
                    { "type": "object", "additionalProperties": false, "required": ["glob"], "properties": { "glob": { "type": "string" } } },
                    { "type": "object", "additionalProperties": false, "required": ["lines"], "properties": { "lines": { "type": "string" } } },
                    { "type": "object", "additionalProperties": false, "required": ["value"], "properties": { "value": {} } },
                    { "type": ["string", "number", "boolean"] }
                ]
            }
        })
    }
}

/// One `[[sink]]`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Sink {
    /// "stdout" or a path template (`{name}`, `{run}`) relative to the job file.
    pub to: String,
    /// Default "text".
    pub format: Option<Format>,
    /// text only: one line per record (default "{value}").
    pub template: Option<String>,
}

/// `[slurm]`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Slurm {
    /// `sbatch --partition`.
    pub partition: Option<String>,
    /// The `%L` of `--array=0-K%L`.
    #[schemars(range(min = 1))]
    pub array_limit: Option<u32>,
    /// Submissions per array element.
    #[schemars(range(min = 1))]
    pub per_element: Option<u64>,
    /// `sbatch --time`, a duration.
    pub time_limit: Option<DurationText>,
    /// Extra `sbatch` arguments.
    pub sbatch_args: Option<Vec<String>>,
    /// Folder visible to every node.
    pub shared_dir: Option<String>,
}

/// The JSON Schema of a job file, pretty-printed with a final newline.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(JobFile);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(schema: &serde_json::Value, path: &[&str]) -> Vec<String> {
        let mut v = schema;
        for p in path {
            v = &v[*p];
        }
        let mut keys: Vec<String> = v["properties"].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn sorted(keys: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = keys.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn keys_match_types() {
        let schema: serde_json::Value = serde_json::from_str(&schema_json()).unwrap();
        assert_eq!(props(&schema, &[]), sorted(keys::TOP));
        assert_eq!(props(&schema, &["$defs", "Sink"]), sorted(keys::SINK));
        assert_eq!(props(&schema, &["$defs", "Slurm"]), sorted(keys::SLURM));
        assert_eq!(props(&schema, &["$defs", "Args"]), sorted(keys::ARGS_RESERVED));
        let mut task: Vec<&str> = keys::TASK_COMMAND.to_vec();
        task.extend(&keys::TASK_SCRIPT[1..]);
        assert_eq!(props(&schema, &["$defs", "Task"]), sorted(&task));
    }
}
