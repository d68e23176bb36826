//! The registry of named task functions and what a task function sees while it runs.
//!
//! Owns: [`Registry`] (name -> function, with a compact postcard path for library calls
//! and a JSON path for job files), how a job file's named arguments bind to a function
//! ([`ArgNames`], strictly by name: see [`Registry::call_json`]), [`TaskContext`],
//! [`TaskError`].
//! Must not: start processes or threads.

mod shape;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::protocol::Slot;
use crate::record::Status;

/// How a task says it ended when it returns an error. It travels to the pool as the
/// result's code, so the pool's outcome has the matching status (and `retry_on` sees it):
/// nobody parses a message or the error's data to learn it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TaskErrorKind {
    /// The task failed: status `error`.
    #[default]
    Failed,
    /// The task stopped itself at its time limit: status `timeout`.
    TimedOut,
    /// The task stopped because it was asked to ([`TaskContext::should_stop`]): status
    /// `cancelled`.
    Cancelled,
}

impl TaskErrorKind {
    /// The status of a task that ended with an error of this kind.
    pub fn status(self) -> Status {
        match self {
            TaskErrorKind::Failed => Status::Error,
            TaskErrorKind::TimedOut => Status::Timeout,
            TaskErrorKind::Cancelled => Status::Cancelled,
        }
    }
}

/// The error a task function returns: its kind, a message, and optional data as JSON
/// text (the command kind puts its exit code, signal and stderr tail there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    /// How the task ended: failed (the default), timed out or cancelled.
    pub kind: TaskErrorKind,
    /// What went wrong; shown to the caller as it is.
    pub message: String,
    /// Optional machine-readable details, as JSON text.
    pub data: Option<String>,
}

impl TaskError {
    /// A failure ([`TaskErrorKind::Failed`]) with a message and no data.
    pub fn new(message: impl Into<String>) -> Self {
        TaskError { kind: TaskErrorKind::Failed, message: message.into(), data: None }
    }

    /// The task stopped itself at its time limit ([`TaskErrorKind::TimedOut`]).
    pub fn timed_out(message: impl Into<String>) -> Self {
        TaskError { kind: TaskErrorKind::TimedOut, ..TaskError::new(message) }
    }

    /// The task stopped because it was asked to ([`TaskErrorKind::Cancelled`]).
    pub fn cancelled(message: impl Into<String>) -> Self {
        TaskError { kind: TaskErrorKind::Cancelled, ..TaskError::new(message) }
    }

    /// The same error with `data` (JSON text) attached.
    pub fn with_data(mut self, data: impl Into<String>) -> Self {
        self.data = Some(data.into());
        self
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for TaskError {
    fn from(message: String) -> Self {
        TaskError::new(message)
    }
}

impl From<&str> for TaskError {
    fn from(message: &str) -> Self {
        TaskError::new(message)
    }
}

impl From<std::io::Error> for TaskError {
    fn from(e: std::io::Error) -> Self {
        TaskError::new(e.to_string())
    }
}

/// What a running task can see: the pool's context string, a per-worker cache, its
/// limits, a cooperative stop flag, and the process group it must have killed with it.
pub struct TaskContext {
    pub(crate) context: Arc<str>,
    pub(crate) cache: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) grace_period: Duration,
    pub(crate) worker: u32,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) slot: Slot,
}

impl TaskContext {
    pub(crate) fn new(
        context: Arc<str>,
        task_timeout: Option<Duration>,
        grace_period: Duration,
        worker: u32,
        stop: Arc<AtomicBool>,
        slot: Slot,
    ) -> Self {
        TaskContext {
            context,
            cache: Mutex::new(HashMap::new()),
            task_timeout,
            grace_period,
            worker,
            stop,
            slot,
        }
    }

    /// A context for calling a function in this thread, outside any pool (tests, a
    /// dry run): worker 0, no timeout, a 1 s grace period, never asked to stop.
    pub fn detached(context: &str) -> Self {
        TaskContext::new(
            Arc::from(context),
            None,
            Duration::from_secs(1),
            0,
            Arc::new(AtomicBool::new(false)),
            Slot::local(),
        )
    }

    /// The opaque string given to [`PoolBuilder::context`](super::PoolBuilder::context)
    /// (empty when none was given).
    pub fn context(&self) -> &str {
        &self.context
    }

    /// A value built once per worker by `init` and shared by every later task of this
    /// worker that asks for the same type `T` (a compiled script, a parsed template).
    pub fn cached<T: Any + Send + Sync>(&self, init: impl FnOnce(&str) -> T) -> Arc<T> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let entry = cache
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(init(&self.context)) as Arc<dyn Any + Send + Sync>)
            .clone();
        drop(cache);
        // The map is keyed by `TypeId::of::<T>()`, so the downcast cannot fail.
        entry.downcast::<T>().unwrap_or_else(|_| unreachable!("cache keyed by type id"))
    }

    /// The pool's per-task timeout, if any.
    pub fn task_timeout(&self) -> Option<Duration> {
        self.task_timeout
    }

    /// The time between TERM and KILL when the pool stops a task.
    pub fn grace_period(&self) -> Duration {
        self.grace_period
    }

    /// The worker's slot number, from 0.
    pub fn worker(&self) -> u32 {
        self.worker
    }

    /// Whether the pool asked this worker to stop (it was sent SIGTERM, or, for a
    /// thread worker, its task timed out or the run was cancelled). Long tasks should
    /// check it and return early.
    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Register the process group of a command this task started: whenever the pool
    /// terminates or kills this worker it also signals that group, so no grandchild
    /// survives the worker, even after a SIGKILL of the worker.
    pub fn track_child_group(&self, pgid: i32) {
        self.slot.set_pgid(pgid);
    }

    /// The process group a command started by this task should join
    /// (`CommandExt::process_group`), when the worker has one (process workers do):
    /// the pool kills it with the worker however the worker ends, with no window in
    /// which a just-started command is unknown to the pool. `None` (thread workers):
    /// give the command a group of its own and [`track`](Self::track_child_group) it.
    pub fn command_group(&self) -> Option<i32> {
        self.slot.group()
    }

    /// Forget the group registered with [`track_child_group`](Self::track_child_group).
    pub fn untrack_child_group(&self) {
        self.slot.set_pgid(0);
    }
}

/// Decode the argument, run, append the encoded value to the output buffer. The error
/// is boxed: the result is then one register wide (a `TaskError` returned by value goes
/// through memory, a copy and a stalled load per task in the worker's loop, measured).
type TypedFn =
    dyn Fn(&TaskContext, &[u8], &mut Vec<u8>) -> Result<(), Box<TaskError>> + Send + Sync;
/// The same with JSON text in and out.
type JsonFn = dyn Fn(&TaskContext, &str, &mut Vec<u8>) -> Result<(), Box<TaskError>> + Send + Sync;

#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) typed: Arc<TypedFn>,
    pub(crate) json: Arc<JsonFn>,
    /// The argument and value types (`None`: a JSON kind, untyped).
    pub(crate) types: Option<(&'static str, &'static str)>,
    /// The argument names, when the function declares them.
    pub(crate) names: Option<ArgNames>,
}

/// The named arguments a registered kind takes: what a job file's `[args]` must give it.
/// Known for a function whose argument is a struct (its fields), `()` (none), or one
/// registered with [`Registry::register_named`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgNames {
    /// Every argument, in order.
    pub names: Vec<String>,
    /// Those of `names` that may be left out: struct fields that are `Option`s or have a
    /// serde default.
    pub optional: Vec<String>,
}

/// How a JSON object of named arguments (a job file's submission) becomes the
/// function's argument. Nothing binds by position unless names were declared.
#[derive(Debug, Clone)]
enum Binding {
    /// A struct: the object as it is, once its keys are known fields.
    Fields(&'static [&'static str]),
    /// Declared names, every one required: the object as it is (`whole`, for a map), or
    /// the values in declared order (an array; for one name and an argument that is not
    /// a tuple, the value itself).
    Declared { names: Vec<String>, into: Target },
    /// `()`: only an empty object.
    Unit,
    /// A map or `serde_json::Value`: the object as it is, unchecked.
    Whole,
    /// No names known: an object of one value gives that value (as a 1-tuple when
    /// `tuple`); any other object is an error.
    Single { tuple: bool },
}

impl Binding {
    /// The binding for argument type `A` (with `declared` names, if given) of kind `kind`.
    ///
    /// # Panics
    /// When `declared` does not fit `A`: names differing from a struct's fields, a
    /// tuple of another width, names for `()`, or a name given twice.
    fn of<A: DeserializeOwned>(
        kind: &str,
        declared: Option<&[&str]>,
    ) -> (Binding, Option<ArgNames>) {
        use shape::Shape;
        let shape = shape::shape_of::<A>();
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        if let Some(names) = declared {
            let mut seen = std::collections::HashSet::new();
            if let Some(twice) = names.iter().find(|n| !seen.insert(**n)) {
                panic!("register_named(\"{kind}\"): the name `{twice}` is given twice");
            }
            let fits = match shape {
                Shape::Struct(fields) => {
                    names.len() == fields.len() && names.iter().all(|n| fields.contains(n))
                }
                Shape::Tuple(n) => names.len() == n,
                Shape::Unit => names.is_empty(),
                Shape::Map | Shape::Value => true,
            };
            if !fits {
                panic!(
                    "register_named(\"{kind}\"): the names {names:?} do not fit its argument \
                     `{}` ({shape:?})",
                    std::any::type_name::<A>()
                );
            }
        }
        let fields = |fields: &'static [&'static str]| {
            let optional = shape::optional_fields::<A>(fields);
            ArgNames { names: strings(fields), optional: strings(&optional) }
        };
        match (shape, declared) {
            (Shape::Struct(f), _) => (Binding::Fields(f), Some(fields(f))),
            (Shape::Unit, _) => {
                (Binding::Unit, Some(ArgNames { names: Vec::new(), optional: Vec::new() }))
            }
            (_, Some(names)) => {
                let into = match shape {
                    Shape::Map => Target::Object,
                    Shape::Value if names.len() == 1 => Target::Value,
                    _ => Target::Array,
                };
                let names = strings(names);
                let info = ArgNames { names: names.clone(), optional: Vec::new() };
                (Binding::Declared { names, into }, Some(info))
            }
            (Shape::Map, None) => (Binding::Whole, None),
            (Shape::Tuple(n), None) => (Binding::Single { tuple: n == 1 }, None),
            (Shape::Value, None) => (Binding::Single { tuple: false }, None),
        }
    }

    /// The function's argument from JSON text. A JSON object (named arguments, as job
    /// files send) binds by name; any other JSON value is taken as it is.
    fn decode<A: DeserializeOwned>(&self, kind: &str, text: &str) -> Result<A, String> {
        use serde_json::Value;
        if !text.trim_start().starts_with(['{', '[']) {
            return serde_json::from_str(text).map_err(|e| e.to_string());
        }
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let value = match (self, value) {
            (Binding::Unit, Value::Object(m)) if m.is_empty() => Value::Null,
            (Binding::Unit, Value::Array(a)) if a.is_empty() => Value::Null,
            (_, Value::Object(m)) => self.bind(kind, m)?,
            (_, other) => other,
        };
        serde_json::from_value(value).map_err(|e| {
            // A struct's missing field is a missing argument.
            let text = e.to_string();
            match text.strip_prefix("missing field ") {
                Some(rest) => format!("missing argument {rest}"),
                None => text,
            }
        })
    }

    fn bind(
        &self,
        kind: &str,
        mut m: serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        use serde_json::Value;
        let unknown = |m: &serde_json::Map<String, Value>, names: &[&str]| match m
            .keys()
            .find(|k| !names.contains(&k.as_str()))
        {
            Some(k) if names.is_empty() => {
                Err(format!("unknown argument `{k}`: `{kind}` takes no arguments"))
            }
            Some(k) => Err(format!(
                "unknown argument `{k}`: `{kind}` takes {}",
                quoted_list(names.iter().copied())
            )),
            None => Ok(()),
        };
        match self {
            Binding::Fields(fields) => {
                unknown(&m, fields)?;
                Ok(Value::Object(m))
            }
            Binding::Declared { names, into } => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                unknown(&m, &names)?;
                if let Some(n) = names.iter().find(|n| !m.contains_key(**n)) {
                    return Err(format!("missing argument `{n}`"));
                }
                if *into == Target::Object {
                    return Ok(Value::Object(m));
                }
                let mut values: Vec<Value> = names.iter().filter_map(|n| m.remove(*n)).collect();
                if *into == Target::Value && values.len() == 1 {
                    return Ok(values.remove(0));
                }
                Ok(Value::Array(values))
            }
            Binding::Unit => {
                unknown(&m, &[])?;
                Ok(Value::Null)
            }
            Binding::Whole => Ok(Value::Object(m)),
            Binding::Single { tuple } => {
                if m.len() == 1 {
                    let v = m.into_iter().next().map(|(_, v)| v).unwrap_or(Value::Null);
                    return Ok(if *tuple { Value::Array(vec![v]) } else { v });
                }
                let given = quoted_list(m.keys().map(String::as_str));
                Err(format!(
                    "`{kind}` takes its arguments by position and declares no names, so the \
                     named arguments {given} cannot bind to it: register it with \
                     `register_named(\"{kind}\", &[...], f)`, or take a struct"
                ))
            }
        }
    }
}

/// What declared names bind to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The object whole (a map).
    Object,
    /// The values in declared order.
    Array,
    /// The one value.
    Value,
}

/// "`a`, `b` and `c`" (or "no arguments").
fn quoted_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    match quoted.len() {
        0 => "no arguments".to_string(),
        1 => quoted[0].clone(),
        n => format!("{} and {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

/// What a kind takes and returns, as the pool compares it between a program and its
/// workers, and between a caller and the registered function.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct KindSig {
    /// The kind's name.
    pub name: String,
    /// Its argument type, canonical (see [`canonical_type`]); empty for a JSON kind.
    pub args: String,
    /// Its value type, canonical; empty for a JSON kind.
    pub value: String,
}

/// A type's name as the pool compares it: [`std::any::type_name`] without references,
/// with `str` for `String` and `[T]` for `Vec<T>`, since serde encodes each pair the
/// same way (a caller may pass `&str` to a function of `String`).
pub fn canonical_type(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if c == '&' {
            rest = rest[1..].strip_prefix("mut ").unwrap_or(&rest[1..]);
            continue;
        }
        if c.is_alphanumeric() || c == '_' || c == ':' {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let ident = &rest[..end];
            rest = &rest[end..];
            if ident == "alloc::vec::Vec" && rest.starts_with('<') {
                // Vec<T> -> [T]: find the matching '>'.
                let mut depth = 0;
                let close = rest
                    .char_indices()
                    .find(|&(_, c)| {
                        match c {
                            '<' => depth += 1,
                            '>' => depth -= 1,
                            _ => {}
                        }
                        depth == 0
                    })
                    .map(|(i, _)| i)
                    .unwrap_or(rest.len() - 1);
                out.push('[');
                out.push_str(&canonical_type(&rest[1..close]));
                out.push(']');
                rest = &rest[close + 1..];
                continue;
            }
            out.push_str(match ident {
                "alloc::string::String" => "str",
                "std::path::PathBuf" => "std::path::Path",
                other => other,
            });
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// What differs between the kinds of a pool (`ours`) and of a worker (`theirs`), one
/// line per kind, empty when they agree.
pub(crate) fn differences(ours: &[KindSig], theirs: &[KindSig]) -> Vec<String> {
    let mut out = Vec::new();
    for a in ours {
        match theirs.iter().find(|b| b.name == a.name) {
            None => out.push(format!("`{}` is missing in the worker", a.name)),
            Some(b) if b != a => out.push(format!(
                "`{}` takes {} and returns {} in the pool, {} and {} in the worker",
                a.name,
                shown(&a.args),
                shown(&a.value),
                shown(&b.args),
                shown(&b.value)
            )),
            Some(_) => {}
        }
    }
    for b in theirs {
        if !ours.iter().any(|a| a.name == b.name) {
            out.push(format!("`{}` is only in the worker", b.name));
        }
    }
    out
}

fn shown(t: &str) -> &str {
    if t.is_empty() { "JSON" } else { t }
}

/// A function run by every worker at its start ([`Registry::on_worker_start`]).
type StartHook = Arc<dyn Fn(&TaskContext) + Send + Sync>;

/// A function run once by the worker zygote ([`Registry::on_zygote_start`]).
type ZygoteHook = Arc<dyn Fn() + Send + Sync>;

/// A function run by the worker zygote with a pool's context
/// ([`Registry::on_zygote_context`]).
type ContextHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Named task functions a worker can run.
///
/// Each function is callable two ways: with its argument encoded compactly (postcard;
/// what [`Pool::apply_async`](super::Pool::apply_async) and friends use) and with its
/// argument as JSON text (what job files use; see [`Registry::call_json`]).
#[derive(Default, Clone)]
pub struct Registry {
    entries: HashMap<String, Entry>,
    /// Run by every worker once it has its context, before its first task.
    on_start: Vec<StartHook>,
    /// Run once by the worker zygote, before it forks workers.
    on_zygote: Vec<ZygoteHook>,
    /// Run by the worker zygote with each new pool context, before it forks its workers.
    on_zygote_context: Vec<ContextHook>,
}

impl Registry {
    /// Run `f` in every worker (process or thread) as soon as it has its task context,
    /// before it waits for its first task: to build what [`TaskContext::cached`] would otherwise
    /// build on the first task (a compiled script), while the pool is still sending it.
    pub fn on_worker_start(&mut self, f: impl Fn(&TaskContext) + Send + Sync + 'static) {
        self.on_start.push(Arc::new(f));
    }

    /// Run the [`Registry::on_worker_start`] functions (the worker's start).
    pub(crate) fn worker_started(&self, ctx: &TaskContext) {
        for f in &self.on_start {
            f(ctx);
        }
    }

    /// Run `f` once in the worker zygote (see [`zygote`](super::zygote)), right after it
    /// is forked and before it forks any worker: to build what every worker of any job
    /// would build first (a shared library of functions), so that each forked worker
    /// starts with it in its memory. Workers started with `exec` (no zygote) build it
    /// themselves as before, so `f` must only warm a cache, never be needed.
    pub fn on_zygote_start(&mut self, f: impl Fn() + Send + Sync + 'static) {
        self.on_zygote.push(Arc::new(f));
    }

    /// Run the [`Registry::on_zygote_start`] functions (the zygote's start).
    pub(crate) fn zygote_started(&self) {
        for f in &self.on_zygote {
            f();
        }
    }

    /// Run `f` in the worker zygote with the context of a pool whose workers it is about
    /// to fork (once per context, before the first of them): to build once what each of
    /// them would build from it at its start (a compiled script), so that they start
    /// with it in their memory. `f` must only warm a cache that
    /// [`TaskContext::cached`]'s `init` then reads, never be needed: workers started
    /// with `exec`, and thread workers, never see it.
    pub fn on_zygote_context(&mut self, f: impl Fn(&str) + Send + Sync + 'static) {
        self.on_zygote_context.push(Arc::new(f));
    }

    /// Run the [`Registry::on_zygote_context`] functions (a new pool's context).
    pub(crate) fn zygote_context(&self, context: &str) {
        for f in &self.on_zygote_context {
            f(context);
        }
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// The registered kinds' names, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut v: Vec<String> = self.entries.keys().cloned().collect();
        v.sort();
        v
    }

    /// Whether a function called `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Register `f` under `name`; it replaces any function of that name.
    ///
    /// The argument deserializes into `A` (a tuple for several arguments, `()` for none),
    /// the value serializes back; an `Err` travels to the caller with its message.
    ///
    /// From a job file, the arguments arrive by name (see [`call_json`](Self::call_json)):
    /// a struct `A` takes them by field name, strictly, and its fields are the kind's
    /// [`arg_names`](Self::arg_names) that `jobpool check` holds `[args]` to. A tuple
    /// takes no named arguments: give it names with
    /// [`register_named`](Self::register_named).
    pub fn register<A, R, E, F>(&mut self, name: &str, f: F) -> &mut Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        E: Into<TaskError> + 'static,
        F: Fn(A) -> Result<R, E> + Send + Sync + 'static,
    {
        self.insert_typed(name, None, move |_ctx: &TaskContext, a: A| f(a))
    }

    /// Like [`register`](Self::register), for a function that also takes the
    /// [`TaskContext`].
    pub fn register_with_context<A, R, E, F>(&mut self, name: &str, f: F) -> &mut Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        E: Into<TaskError> + 'static,
        F: Fn(&TaskContext, A) -> Result<R, E> + Send + Sync + 'static,
    {
        self.insert_typed(name, None, f)
    }

    /// Like [`register`](Self::register), with the names of the function's arguments,
    /// in order: a job file's named arguments bind to them (`w` to the tuple's first
    /// value, `h` to its second), every name must be given and no other, and
    /// `jobpool check` reports an unknown or missing one before anything runs.
    ///
    /// ```
    /// # use jobpool::pool::{Registry, TaskContext, TaskError};
    /// let mut registry = Registry::new();
    /// registry.register_named("area", &["w", "h"], |(w, h): (f64, f64)| {
    ///     Ok::<_, TaskError>(w * h)
    /// });
    /// registry.register_named("square", &["x"], |x: f64| Ok::<_, TaskError>(x * x));
    /// let ctx = TaskContext::detached("");
    /// assert_eq!(registry.call_json(&ctx, "area", r#"{"h": 3, "w": 2}"#).unwrap(), "6.0");
    /// let e = registry.call_json(&ctx, "area", r#"{"w": 2, "hh": 3}"#).unwrap_err();
    /// assert_eq!(e.message, "bad arguments for `area`: unknown argument `hh`: `area` takes `w` and `h`");
    /// ```
    ///
    /// # Panics
    /// When the names do not fit the argument: as many names as a tuple has values, one
    /// name for a single value, exactly its fields for a struct (for which
    /// [`register`](Self::register) already knows them), none for `()`; each name once.
    pub fn register_named<A, R, E, F>(&mut self, name: &str, names: &[&str], f: F) -> &mut Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        E: Into<TaskError> + 'static,
        F: Fn(A) -> Result<R, E> + Send + Sync + 'static,
    {
        self.insert_typed(name, Some(names), move |_ctx: &TaskContext, a: A| f(a))
    }

    /// Like [`register_named`](Self::register_named), for a function that also takes the
    /// [`TaskContext`].
    pub fn register_named_with_context<A, R, E, F>(
        &mut self,
        name: &str,
        names: &[&str],
        f: F,
    ) -> &mut Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        E: Into<TaskError> + 'static,
        F: Fn(&TaskContext, A) -> Result<R, E> + Send + Sync + 'static,
    {
        self.insert_typed(name, Some(names), f)
    }

    fn insert_typed<A, R, E, F>(&mut self, name: &str, names: Option<&[&str]>, f: F) -> &mut Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        E: Into<TaskError> + 'static,
        F: Fn(&TaskContext, A) -> Result<R, E> + Send + Sync + 'static,
    {
        let (binding, names) = Binding::of::<A>(name, names);
        let f = Arc::new(f);
        let g = f.clone();
        let fname = name.to_string();
        let typed = move |ctx: &TaskContext,
                          bytes: &[u8],
                          out: &mut Vec<u8>|
              -> Result<(), Box<TaskError>> {
            let a: A = super::protocol::decode(bytes).map_err(|e| {
                Box::new(TaskError::new(format!("bad arguments for `{fname}`: {e}")))
            })?;
            let r = f(ctx, a).map_err(|e| Box::new(e.into()))?;
            super::protocol::encode_into(&r, out)
                .map_err(|e| Box::new(TaskError::new(format!("cannot encode the result: {e}"))))
        };
        let fname = name.to_string();
        let json =
            move |ctx: &TaskContext, text: &str, out: &mut Vec<u8>| -> Result<(), Box<TaskError>> {
                let a: A = binding.decode(&fname, text).map_err(|e| {
                    Box::new(TaskError::new(format!("bad arguments for `{fname}`: {e}")))
                })?;
                let r = g(ctx, a).map_err(|e| Box::new(e.into()))?;
                serde_json::to_writer(out, &r)
                    .map_err(|e| Box::new(TaskError::new(format!("cannot encode the result: {e}"))))
            };
        let types = Some((std::any::type_name::<A>(), std::any::type_name::<R>()));
        self.entries.insert(
            name.to_string(),
            Entry { typed: Arc::new(typed), json: Arc::new(json), types, names },
        );
        self
    }

    /// Register a function that takes its argument as JSON text and returns JSON text
    /// (the built-in kinds do). Library calls with typed arguments fail with an error.
    pub fn register_json<F>(&mut self, name: &str, f: F) -> &mut Self
    where
        F: Fn(&TaskContext, &str) -> Result<String, TaskError> + Send + Sync + 'static,
    {
        let fname = name.to_string();
        let typed =
            move |_: &TaskContext, _: &[u8], _: &mut Vec<u8>| -> Result<(), Box<TaskError>> {
                Err(Box::new(TaskError::new(format!("`{fname}` takes JSON arguments only"))))
            };
        let json =
            move |ctx: &TaskContext, text: &str, out: &mut Vec<u8>| -> Result<(), Box<TaskError>> {
                out.extend_from_slice(f(ctx, text)?.as_bytes());
                Ok(())
            };
        self.entries.insert(
            name.to_string(),
            Entry { typed: Arc::new(typed), json: Arc::new(json), types: None, names: None },
        );
        self
    }

    /// Every kind's name and types, sorted by name: what a worker's registry must match.
    pub fn signatures(&self) -> Vec<KindSig> {
        let mut v: Vec<KindSig> = self
            .entries
            .iter()
            .map(|(name, e)| {
                let (args, value) = match e.types {
                    Some((a, r)) => (canonical_type(a), canonical_type(r)),
                    None => (String::new(), String::new()),
                };
                KindSig { name: name.clone(), args, value }
            })
            .collect();
        v.sort();
        v
    }

    /// The argument names kind `name` takes from a job file's `[args]`, when it declares
    /// them (a struct argument, `()`, or [`register_named`](Self::register_named));
    /// `None` for an unknown kind or one whose arguments cannot be checked by name.
    pub fn arg_names(&self, name: &str) -> Option<&ArgNames> {
        self.entries.get(name)?.names.as_ref()
    }

    pub(crate) fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// Call `name` in this thread with its argument as JSON text; returns JSON text.
    ///
    /// A JSON object holds named arguments (what a job file sends) and binds strictly by
    /// name: to a struct's fields, or to the names given to
    /// [`register_named`](Self::register_named), in their order. An unknown or a missing
    /// name is an error that names it, never a value bound to the wrong parameter. A
    /// function that declares no names takes an object of one value (that value) or an
    /// empty one (for `()`); a map or `serde_json::Value` takes the object whole. Any
    /// other JSON (an array, a number) is the argument as it is.
    pub fn call_json(
        &self,
        ctx: &TaskContext,
        name: &str,
        args: &str,
    ) -> Result<String, TaskError> {
        let Some(e) = self.entries.get(name) else { return Err(unknown_function(name)) };
        let mut out = Vec::new();
        (e.json)(ctx, args, &mut out).map_err(|e| *e)?;
        String::from_utf8(out).map_err(|e| TaskError::new(format!("the result is not UTF-8: {e}")))
    }
}

pub(crate) fn unknown_function(name: &str) -> TaskError {
    TaskError::new(format!("unknown task function `{name}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> TaskContext {
        TaskContext::detached("ctx")
    }

    #[derive(serde::Deserialize)]
    struct Point {
        x: i64,
        y: i64,
        #[serde(default)]
        z: i64,
    }

    fn point(p: Point) -> Result<i64, TaskError> {
        Ok(p.x * 100 + p.y * 10 + p.z)
    }

    #[test]
    fn a_struct_takes_its_fields_by_name_strictly() {
        let mut r = Registry::new();
        r.register("point", point);
        assert_eq!(r.call_json(&ctx(), "point", r#"{"y":2,"x":1}"#).unwrap(), "120");
        assert_eq!(r.call_json(&ctx(), "point", r#"{"y":2,"x":1,"z":3}"#).unwrap(), "123");
        // A misspelled argument is an error naming it, not a value.
        let e = r.call_json(&ctx(), "point", r#"{"x":1,"yy":10}"#).unwrap_err();
        assert_eq!(
            e.message,
            "bad arguments for `point`: unknown argument `yy`: `point` takes `x`, `y` and `z`"
        );
        let e = r.call_json(&ctx(), "point", r#"{"x":1}"#).unwrap_err();
        assert_eq!(e.message, "bad arguments for `point`: missing argument `y`");
        let names = r.arg_names("point").unwrap();
        assert_eq!(names.names, ["x", "y", "z"]);
        assert_eq!(names.optional, ["z"]);
    }

    #[test]
    fn an_object_never_binds_to_a_tuple_by_position() {
        let mut r = Registry::new();
        r.register("sub", |(a, b): (i64, i64)| Ok::<_, TaskError>(a - b));
        let e = r.call_json(&ctx(), "sub", r#"{"x":5,"y":2}"#).unwrap_err();
        assert!(e.message.contains("declares no names"), "{e}");
        assert!(e.message.contains("register_named(\"sub\""), "{e}");
        // An explicit array is positional, as asked.
        assert_eq!(r.call_json(&ctx(), "sub", "[5,2]").unwrap(), "3");
        assert_eq!(r.arg_names("sub"), None);
    }

    #[test]
    fn declared_names_bind_to_positions_in_declared_order() {
        let mut r = Registry::new();
        r.register_named("sub", &["a", "b"], |(a, b): (i64, i64)| Ok::<_, TaskError>(a - b));
        r.register_named("neg", &["n"], |n: i64| Ok::<_, TaskError>(-n));
        r.register_named("one", &["n"], |(n,): (i64,)| Ok::<_, TaskError>(n));
        assert_eq!(r.call_json(&ctx(), "sub", r#"{"b":2,"a":5}"#).unwrap(), "3");
        assert_eq!(r.call_json(&ctx(), "neg", r#"{"n":4}"#).unwrap(), "-4");
        assert_eq!(r.call_json(&ctx(), "one", r#"{"n":4}"#).unwrap(), "4");
        let e = r.call_json(&ctx(), "sub", r#"{"a":5,"bb":2}"#).unwrap_err();
        assert_eq!(
            e.message,
            "bad arguments for `sub`: unknown argument `bb`: `sub` takes `a` and `b`"
        );
        let e = r.call_json(&ctx(), "sub", r#"{"a":5}"#).unwrap_err();
        assert_eq!(e.message, "bad arguments for `sub`: missing argument `b`");
        let e = r.call_json(&ctx(), "neg", r#"{"m":4}"#).unwrap_err();
        assert!(e.message.contains("unknown argument `m`"), "{e}");
        assert_eq!(
            r.arg_names("sub"),
            Some(&ArgNames { names: vec!["a".into(), "b".into()], optional: vec![] })
        );
    }

    #[test]
    #[should_panic(expected = "do not fit")]
    fn names_must_fit_the_tuple() {
        Registry::new()
            .register_named("sub", &["a"], |(a, b): (i64, i64)| Ok::<_, TaskError>(a - b));
    }

    #[test]
    #[should_panic(expected = "given twice")]
    fn names_are_unique() {
        Registry::new()
            .register_named("sub", &["a", "a"], |(a, b): (i64, i64)| Ok::<_, TaskError>(a - b));
    }

    #[test]
    fn maps_take_the_object_whole() {
        let mut r = Registry::new();
        r.register("count", |m: HashMap<String, i64>| Ok::<_, TaskError>(m.len()));
        assert_eq!(r.call_json(&ctx(), "count", r#"{"a":1,"b":2}"#).unwrap(), "2");
        assert_eq!(r.arg_names("count"), None);
    }

    #[test]
    fn json_unit_and_single_values() {
        let mut r = Registry::new();
        r.register("one", |(): ()| Ok::<_, TaskError>(1));
        r.register("sq", |x: i64| Ok::<_, TaskError>(x * x));
        assert_eq!(r.call_json(&ctx(), "one", "{}").unwrap(), "1");
        assert_eq!(r.call_json(&ctx(), "one", "null").unwrap(), "1");
        assert_eq!(r.call_json(&ctx(), "sq", r#"{"x":4}"#).unwrap(), "16");
        let e = r.call_json(&ctx(), "one", r#"{"x":4}"#).unwrap_err();
        assert_eq!(
            e.message,
            "bad arguments for `one`: unknown argument `x`: `one` takes no arguments"
        );
        assert!(r.arg_names("one").unwrap().names.is_empty());
        assert_eq!(r.arg_names("sq"), None);
    }

    #[test]
    fn errors_carry_message_and_data() {
        let mut r = Registry::new();
        r.register("bad", |(): ()| Err::<(), _>(TaskError::new("nope").with_data("{\"code\":3}")));
        let e = r.call_json(&ctx(), "bad", "null").unwrap_err();
        assert_eq!(e.message, "nope");
        assert_eq!(e.data.as_deref(), Some("{\"code\":3}"));
        let e = r.call_json(&ctx(), "missing", "null").unwrap_err();
        assert!(e.message.contains("unknown task function"), "{e}");
        let e = r.call_json(&ctx(), "bad", "[1,2,3]").unwrap_err();
        assert!(e.message.contains("bad arguments"), "{e}");
    }

    #[test]
    fn canonical_types_identify_what_serde_encodes_alike() {
        use std::any::type_name;
        let c = |s: &str| canonical_type(s);
        assert_eq!(c(type_name::<&str>()), c(type_name::<String>()));
        assert_eq!(c(type_name::<(u64, &[u8])>()), c(type_name::<(u64, Vec<u8>)>()));
        assert_eq!(c(type_name::<Vec<Vec<String>>>()), "[[str]]");
        assert_eq!(c(type_name::<&std::path::Path>()), c(type_name::<std::path::PathBuf>()));
        assert_ne!(c(type_name::<i32>()), c(type_name::<u64>()));
        assert_ne!(c(type_name::<[u8; 2]>()), c(type_name::<Vec<u8>>()));
        assert_eq!(c("(&str,)"), "(str,)");
        assert_eq!(c("&mut alloc::vec::Vec<u8>"), "[u8]");
    }

    #[test]
    fn registries_are_compared_kind_by_kind() {
        let mut a = Registry::new();
        a.register("sq", |x: i64| Ok::<_, TaskError>(x * x));
        a.register_json("j", |_, t| Ok(t.to_string()));
        let mut b = a.clone();
        assert!(differences(&a.signatures(), &b.signatures()).is_empty());
        b.register("sq", |x: u32| Ok::<_, TaskError>(x * x));
        b.register("more", |(): ()| Ok::<_, TaskError>(()));
        assert_eq!(
            differences(&a.signatures(), &b.signatures()),
            vec![
                "`sq` takes i64 and returns i64 in the pool, u32 and u32 in the worker",
                "`more` is only in the worker"
            ]
        );
    }

    #[test]
    fn cache_builds_once_per_type() {
        let c = ctx();
        let a = c.cached(|s| s.len());
        let b = c.cached::<usize>(|_| 99);
        assert_eq!((*a, *b), (3, 3));
    }
}
