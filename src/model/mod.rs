//! The checked domain model of a job file.
//!
//! Owns: the types every later stage works from (`Job`, `TaskTemplate`, `ArgSpace`,
//! `SinkConfig`, `Limits`). These values are produced only by `validate`, so code that
//! holds a `Job` may assume it is consistent: templates name existing arguments, ranges
//! are non-empty, zip lengths agree, and so on.
//! Must not: read files, spawn anything, or print. Pure data with small helpers.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A validated job: everything `jobpool run` needs, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The job's name (`name` key, default: the file's stem).
    pub name: String,
    /// Free text from `description`.
    pub description: Option<String>,
    /// The job file as given on the command line.
    pub path: PathBuf,
    /// The folder relative paths in the file are resolved against.
    pub dir: PathBuf,
    /// Worker count; `None` means the machine's available parallelism.
    pub workers: Option<NonZeroUsize>,
    /// Time limits and retries.
    pub limits: Limits,
    /// Order in which records reach the sinks.
    pub order: Order,
    /// What to do after the first failure.
    pub on_failure: OnFailure,
    /// `max-failures`: past this many failed tasks, nothing new starts; `None`: no limit.
    pub max_failures: Option<MaxFailures>,
    /// Submissions sent to a worker at once.
    pub chunk_size: ChunkSize,
    /// Recycle a worker after this many tasks; 0 = never.
    pub max_tasks_per_worker: u64,
    /// Where tasks run.
    pub backend: Backend,
    /// Extra glob patterns (relative to `dir`) whose change reruns the job in watch mode.
    pub watch: Vec<String>,
    /// What each submission runs.
    pub task: TaskTemplate,
    /// How submissions are made.
    pub args: ArgSpace,
    /// Where records go; never empty (the default stdout text sink is filled in).
    pub sinks: Vec<SinkConfig>,
    /// `[slurm]` settings, when present.
    pub slurm: Option<SlurmConfig>,
}

/// Time limits of a job. `None` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deadline for the whole job (`timeout`).
    pub timeout: Option<Duration>,
    /// Limit for one task (`task-timeout`).
    pub task_timeout: Option<Duration>,
    /// Time between TERM and KILL when a task is stopped (`grace-period`).
    pub grace_period: Duration,
    /// Re-runs of a failed task (one whose failure is in `retry_on`).
    pub retries: u32,
    /// Which failures `retries` applies to (`retry-on`; default: all three).
    pub retry_on: RetryOn,
}

/// Default `grace-period` when the file leaves it out.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(1);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: None,
            task_timeout: None,
            grace_period: DEFAULT_GRACE_PERIOD,
            retries: 0,
            retry_on: RetryOn::ALL,
        }
    }
}

/// A way a task can fail, as `retry-on` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The task returned an error (status `error`).
    Error,
    /// The task ran past `task-timeout` (status `timeout`).
    Timeout,
    /// The worker died under the task (status `crashed`).
    Crashed,
}

impl Failure {
    /// All three, in the order the book lists them.
    pub const ALL: [Failure; 3] = [Failure::Error, Failure::Timeout, Failure::Crashed];

    /// The name used in job files and records.
    pub fn name(self) -> &'static str {
        match self {
            Failure::Error => "error",
            Failure::Timeout => "timeout",
            Failure::Crashed => "crashed",
        }
    }
}

/// Which failures `retries` applies to (`retry-on`): a set of [`Failure`]s, never empty
/// when it comes from a job file. A record's status gives its failure with
/// `Status::failure` (in `record`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetryOn {
    bits: u8,
}

impl RetryOn {
    /// Every failure: the default.
    pub const ALL: RetryOn = RetryOn { bits: 0b111 };
    /// No failure.
    pub const NONE: RetryOn = RetryOn { bits: 0 };

    fn bit(f: Failure) -> u8 {
        match f {
            Failure::Error => 1,
            Failure::Timeout => 2,
            Failure::Crashed => 4,
        }
    }

    /// Whether a task that failed this way may be retried.
    pub fn contains(self, f: Failure) -> bool {
        self.bits & Self::bit(f) != 0
    }

    /// The set with `f` added.
    pub fn with(self, f: Failure) -> RetryOn {
        RetryOn { bits: self.bits | Self::bit(f) }
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// The failures in the set, in [`Failure::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Failure> {
        Failure::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl Default for RetryOn {
    fn default() -> Self {
        RetryOn::ALL
    }
}

impl FromIterator<Failure> for RetryOn {
    fn from_iter<I: IntoIterator<Item = Failure>>(iter: I) -> Self {
        iter.into_iter().fold(RetryOn::NONE, RetryOn::with)
    }
}

/// `max-failures`: how many failed tasks a job tolerates before it stops submitting.
/// Past the limit, nothing new starts (the rest are `skipped`); tasks already running
/// finish, so a job may end with more failures than the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxFailures {
    /// `max-failures = N` (N ≥ 1).
    Count(u64),
    /// `max-failures = "N%"` (0 < N ≤ 100): a share of the job's submissions.
    Percent(f64),
}

impl MaxFailures {
    /// The number of failures a job of `total` submissions tolerates: once more than
    /// this many tasks have failed, nothing new starts. A count is itself; a percentage
    /// is `total × N / 100` rounded down (the most failures that are still at most N% of
    /// the job), so `"10%"` of 25 submissions is 2 and the third failure stops the job,
    /// and a share smaller than one submission tolerates none (the first failure stops
    /// it, as `on-failure = "stop"`). `total` is the job's whole plan, resumed
    /// submissions included.
    pub fn limit(&self, total: u64) -> u64 {
        match *self {
            MaxFailures::Count(n) => n,
            MaxFailures::Percent(p) => {
                // A little slack so that e.g. 7% of 100 is 7, whatever 0.07 rounds to.
                let share = (total as f64) * p / 100.0;
                ((share + 1e-9).floor() as u64).min(total)
            }
        }
    }

    /// Whether `failed` failures are past the limit for a job of `total` submissions.
    pub fn exceeded(&self, failed: u64, total: u64) -> bool {
        failed > self.limit(total)
    }
}

/// The order records reach sinks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Submission order, whatever order tasks finish in.
    #[default]
    Submission,
    /// Each record as soon as it finishes.
    Completion,
}

/// What happens after the first failed task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Keep going.
    #[default]
    Continue,
    /// Submit nothing new; what never started is `skipped`.
    Stop,
}

/// Submissions per message to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChunkSize {
    /// Chosen by the pool.
    #[default]
    Auto,
    /// Exactly this many.
    Fixed(NonZeroUsize),
}

/// Where tasks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Worker processes over ipc-channel.
    #[default]
    Processes,
    /// A rayon thread pool in this process.
    Threads,
    /// A Slurm job array.
    Slurm,
}

/// A string with `{placeholder}`s, parsed once. `{{` and `}}` are literal braces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// The text as written in the job file.
    pub source: String,
    /// The parsed pieces.
    pub parts: Vec<TemplatePart>,
}

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TemplatePart {
    /// Text copied as is (braces already unescaped).
    Literal(String),
    /// The text between `{` and `}`: an argument name, a position (`0`), or for sink
    /// templates a record field (`value`, `args.x`, ...).
    Placeholder(String),
}

/// What each submission runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TaskTemplate {
    /// `kind = "command"`.
    Command(CommandTask),
    /// `kind = "script"`.
    Script(ScriptTask),
    /// Any other kind: a function registered by a program that embeds the library.
    Registered {
        /// The kind's name.
        kind: String,
    },
}

impl TaskTemplate {
    /// The `kind` as written in the job file.
    pub fn kind(&self) -> &str {
        match self {
            TaskTemplate::Command(_) => "command",
            TaskTemplate::Script(_) => "script",
            TaskTemplate::Registered { kind } => kind,
        }
    }
}

/// A `command` task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandTask {
    /// The program and its arguments, or a shell line.
    pub invocation: Invocation,
    /// Working folder (already resolved against the job file's folder when relative).
    pub cwd: Option<Template>,
    /// Extra environment variables, in declared order.
    pub env: Vec<(String, Template)>,
    /// Text fed to the command's standard input.
    pub stdin: Option<Template>,
    /// How stdout becomes the result value.
    pub output: OutputMode,
    /// Exit codes that count as success (default `[0]`).
    pub success_codes: Vec<i32>,
}

/// How a command is started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Invocation {
    /// `program = [...]`: argv, no shell.
    Program(Vec<Template>),
    /// `shell = "..."`: `/bin/sh -c`, every substituted value shell-quoted.
    Shell(Template),
}

/// How a command's stdout becomes the record's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OutputMode {
    /// The text, trimmed.
    #[default]
    Text,
    /// Parsed as JSON.
    Json,
    /// A list of the non-empty lines.
    Lines,
    /// `null`.
    None,
}

/// A `script` task (Rhai).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptTask {
    /// The script's text (read from `file` when given).
    pub source: String,
    /// The file it came from, when `file` was used (resolved against the job's folder).
    pub file: Option<PathBuf>,
}

impl ScriptTask {
    /// Rhai keywords and symbols a job's script may not use: every engine that compiles
    /// one disables them (`validate` when checking, `task` in the worker), so that what
    /// `jobpool check` accepts is what a worker compiles. `eval` would compile code at
    /// run time, out of the check's sight.
    pub const DISABLED_SYMBOLS: &[&str] = &["eval"];
}

/// How submissions are made from `[args]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgSpace {
    /// Every argument name in declared order; a submission's values are in this order.
    pub names: Vec<String>,
    /// How the varying parameters combine.
    pub form: ArgForm,
    /// Constants that join every submission: (position in `names`, value).
    pub constants: Vec<(usize, Value)>,
}

/// How varying parameters combine into submissions.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgForm {
    /// Exactly one submission (no `[args]`, or constants only).
    Single,
    /// Every combination, first parameter varying slowest.
    Product(Vec<Param>),
    /// Element-wise; all parameters have the same length.
    Zip(Vec<Param>),
    /// Explicit tuples, each as wide as `positions`.
    Tuples {
        /// Position in `ArgSpace::names` of each tuple element.
        positions: Vec<usize>,
        /// The tuples.
        tuples: Vec<Vec<Value>>,
    },
}

/// One varying parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Position in `ArgSpace::names`.
    pub position: usize,
    /// Its values.
    pub values: ParamValues,
    /// Where the values came from (watch mode watches those files).
    pub origin: ParamOrigin,
}

/// Where a parameter's values came from.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ParamOrigin {
    /// A list or a range written in the job file.
    #[default]
    Inline,
    /// `{ glob = "..." }`: each value names a file, whose content is part of the
    /// submission's key.
    Glob {
        /// The pattern as written, relative to the job file's folder.
        pattern: String,
        /// A digest of each matched path's content (blake3, first 16 bytes), aligned with
        /// the values; a folder or an unreadable file has a fixed digest of its kind.
        digests: Vec<[u8; 16]>,
    },
    /// `{ lines = "..." }`: the non-empty lines of this file (resolved against the job
    /// file's folder).
    Lines {
        /// The file.
        file: PathBuf,
    },
}

/// The values of one parameter. Ranges stay lazy; everything else is materialised at
/// validation time (globs and `lines` are bounded by what is on disk).
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValues {
    /// A list of values (also the result of `glob` and `lines`).
    List(Vec<Value>),
    /// `start + i*step` for `i` in `0..len`.
    IntRange {
        /// First value.
        start: i64,
        /// Step, never zero.
        step: i64,
        /// Number of values, never zero.
        len: u64,
    },
    /// `start + i*step` for `i` in `0..len`, computed without drift.
    FloatRange {
        /// First value.
        start: f64,
        /// Step, never zero.
        step: f64,
        /// Number of values, never zero.
        len: u64,
    },
}

impl ParamValues {
    /// Number of values.
    pub fn len(&self) -> u64 {
        match self {
            ParamValues::List(v) => v.len() as u64,
            ParamValues::IntRange { len, .. } | ParamValues::FloatRange { len, .. } => *len,
        }
    }

    /// Whether there are no values (never true in a validated job).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th value. Panics when `i >= len()`, which the planner never asks for.
    pub fn get(&self, i: u64) -> Value {
        match self {
            ParamValues::List(v) => v[i as usize].clone(),
            ParamValues::IntRange { start, step, .. } => {
                // Wrapping is exact here: the true value lies between start and end, so it
                // fits in an i64 even when `i * step` alone does not.
                Value::from(start.wrapping_add((i as i64).wrapping_mul(*step)))
            }
            ParamValues::FloatRange { start, step, .. } => {
                let x = start + (i as f64) * step;
                serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
            }
        }
    }
}

/// One `[[sink]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// Where it writes.
    pub to: SinkTarget,
    /// What it writes.
    pub format: SinkFormat,
}

/// Where a sink writes.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkTarget {
    /// Standard output.
    Stdout,
    /// A path template (`{name}`, `{run}`), relative to the job file's folder.
    Path(Template),
}

/// A sink's format.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkFormat {
    /// One line per record from the template (default `{value}`).
    Text(Template),
    /// One JSON object per line.
    Jsonl,
    /// One JSON array.
    Json,
    /// One column per argument, then `status`, `value`, `error`, `duration_ms`.
    Csv,
}

/// `[slurm]` settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SlurmConfig {
    /// `--partition`.
    pub partition: Option<String>,
    /// The `%L` of `--array=0-K%L`.
    pub array_limit: Option<u32>,
    /// Submissions per array element; `None` = enough for at most 1000 elements.
    pub per_element: Option<u64>,
    /// `--time`.
    pub time_limit: Option<Duration>,
    /// Extra `sbatch` arguments.
    pub sbatch_args: Vec<String>,
    /// Folder visible to every node (relative to the job file's folder).
    pub shared_dir: Option<PathBuf>,
}

/// One expanded submission: what the planner yields.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// Position in the plan, from 0.
    pub index: u64,
    /// Content key: a stable hash of the task definition and the arguments.
    pub key: crate::text::Key,
    /// Argument values, aligned with `ArgSpace::names`.
    pub args: Vec<Value>,
}

impl Template {
    /// A template that is all literal text.
    pub fn literal(text: &str) -> Self {
        Template { source: text.to_string(), parts: vec![TemplatePart::Literal(text.to_string())] }
    }

    /// The placeholders it names, in order of appearance.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Placeholder(name) => Some(name.as_str()),
            TemplatePart::Literal(_) => None,
        })
    }

    /// Fill in the placeholders: `lookup` gives each one's text (validation guarantees it
    /// exists; a `None` renders as nothing). `quote` post-processes substituted values
    /// (shell quoting), never literal text.
    pub fn render_with(
        &self,
        mut lookup: impl FnMut(&str) -> Option<String>,
        quote: impl Fn(&str) -> String,
    ) -> String {
        let mut out = String::with_capacity(self.source.len() + 16);
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => out.push_str(text),
                TemplatePart::Placeholder(name) => {
                    if let Some(v) = lookup(name) {
                        out.push_str(&quote(&v));
                    }
                }
            }
        }
        out
    }

    /// Fill in the placeholders without quoting.
    pub fn render(&self, lookup: impl FnMut(&str) -> Option<String>) -> String {
        self.render_with(lookup, |s| s.to_string())
    }
}

/// A submission's arguments by name, in declared order.
pub fn args_map(names: &[String], values: &[Value]) -> serde_json::Map<String, Value> {
    names.iter().cloned().zip(values.iter().cloned()).collect()
}

/// How a JSON value reads when substituted into a template: strings without quotes,
/// `null` as the empty string, everything else as compact JSON.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_on_is_a_set_of_failures() {
        assert_eq!(RetryOn::default(), RetryOn::ALL);
        assert!(Failure::ALL.iter().all(|f| RetryOn::ALL.contains(*f)));
        let set: RetryOn =
            [Failure::Timeout, Failure::Crashed, Failure::Timeout].into_iter().collect();
        assert_eq!(set.iter().collect::<Vec<_>>(), [Failure::Timeout, Failure::Crashed]);
        assert!(!set.contains(Failure::Error));
        assert!(set.contains(Failure::Timeout) && set.contains(Failure::Crashed));
        assert!(RetryOn::NONE.is_empty() && !set.is_empty());
    }

    #[test]
    fn max_failures_limit_rounds_a_share_down() {
        assert_eq!(MaxFailures::Count(3).limit(1), 3);
        let ten = MaxFailures::Percent(10.0);
        assert_eq!(ten.limit(25), 2);
        assert_eq!(ten.limit(30), 3);
        assert_eq!(ten.limit(9), 0);
        assert_eq!(ten.limit(0), 0);
        assert_eq!(MaxFailures::Percent(7.0).limit(100), 7);
        assert_eq!(MaxFailures::Percent(100.0).limit(12), 12);
        assert_eq!(MaxFailures::Percent(0.5).limit(10_000_000), 50_000);
        assert!(!ten.exceeded(2, 25));
        assert!(ten.exceeded(3, 25));
        assert!(MaxFailures::Count(1).exceeded(2, 100));
    }
}
