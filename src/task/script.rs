//! The `script` task kind: a sandboxed Rhai script evaluated once per submission.
//!
//! Owns: [`ScriptEngine`] (a sandboxed Rhai engine plus the compiled script, built once
//! per worker and evaluated many times), the extra functions scripts get (`random()`,
//! `sleep(seconds)`), the conversion between JSON values and Rhai values, and
//! [`ScriptError`] with line and column.
//! Must not: know about the pool, records or sinks; print anything (a script's `print`
//! and `debug` output is discarded, since the worker's stdout may be a sink).
//!
//! Sandbox: the crate is built with Rhai's `no_module` feature, so `import` does not
//! parse; Rhai has no file, process or network functions; `eval` is disabled (with
//! every symbol of [`ScriptTask::DISABLED_SYMBOLS`], as `jobpool check` does); operations,
//! call depth and string/array/map sizes are limited ([`ScriptLimits`]).
//!
//! Cancellation: `sleep` and Rhai's progress callback consult the current evaluation's
//! `should_stop` and deadline through a scoped thread-local (`EvalCtx`), because the
//! engine's functions are registered once but the stop condition is per evaluation.

use std::cell::Cell;
use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rhai::packages::{Package, StandardPackage};
use rhai::{
    AST, Dynamic, Engine, EvalAltResult, Module, NativeCallContext, Position, Scope, Shared,
};
use serde_json::{Map, Number, Value};

use crate::model::ScriptTask;
use crate::record::Status;

/// The limits a script runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptLimits {
    /// Rhai operations per evaluation (roughly: expressions evaluated). Guards against
    /// runaway loops when no `task-timeout` is set.
    pub max_operations: u64,
    /// Longest string, in bytes.
    pub max_string_size: usize,
    /// Most elements in an array (nested arrays count).
    pub max_array_size: usize,
    /// Most entries in an object map.
    pub max_map_size: usize,
    /// Deepest function call nesting.
    pub max_call_levels: usize,
    /// CPU time of one evaluation (sleeping does not count). The operation limit does
    /// not see all work: Rhai re-measures an array after each `push`, so a loop growing
    /// an array costs time quadratic in its length with few operations. The clock is
    /// first read at the first progress check (after 1024 operations), so a trivial
    /// script costs no CPU-clock read (a system call); the few microseconds before that
    /// reading do not count.
    pub max_cpu_time: Duration,
}

impl Default for ScriptLimits {
    /// 100 million operations (a few seconds of work), 16 MiB strings, 1 million array
    /// elements, 100 000 map entries, 64 call levels.
    fn default() -> Self {
        ScriptLimits {
            max_operations: 100_000_000,
            max_string_size: 16 << 20,
            max_array_size: 1_000_000,
            max_map_size: 100_000,
            max_call_levels: 64,
            max_cpu_time: Duration::from_secs(60),
        }
    }
}

/// What kind of failure a [`ScriptError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptErrorKind {
    /// The script does not parse.
    Syntax,
    /// Evaluation failed (an error in the script, a limit hit, a result with no JSON form).
    Runtime,
    /// The deadline passed.
    Timeout,
    /// `should_stop` returned `true`.
    Stopped,
}

/// A script that failed to compile or to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    /// What kind of failure.
    pub kind: ScriptErrorKind,
    /// Rhai's message, without the position.
    pub message: String,
    /// 1-based line in the script, when known.
    pub line: Option<usize>,
    /// 1-based column in the script, when known.
    pub column: Option<usize>,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ScriptErrorKind::Timeout => return f.write_str("timed out"),
            ScriptErrorKind::Stopped => return f.write_str("stopped"),
            ScriptErrorKind::Syntax => f.write_str("script syntax error")?,
            ScriptErrorKind::Runtime => f.write_str("script error")?,
        }
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, " at line {line}, column {column}")?,
            (Some(line), None) => write!(f, " at line {line}")?,
            _ => {}
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ScriptError {}

impl ScriptError {
    /// The record status a task that failed this way gets.
    pub fn record_status(&self) -> Status {
        match self.kind {
            ScriptErrorKind::Syntax | ScriptErrorKind::Runtime => Status::Error,
            ScriptErrorKind::Timeout => Status::Timeout,
            ScriptErrorKind::Stopped => Status::Cancelled,
        }
    }

    fn new(kind: ScriptErrorKind, message: String, pos: Position) -> Self {
        ScriptError { kind, message, line: pos.line(), column: pos.position() }
    }

    fn from_eval(mut err: EvalAltResult, limits: &ScriptLimits) -> Self {
        if let EvalAltResult::ErrorTerminated(token, pos) = err.unwrap_inner() {
            if token.clone().into_string().is_ok_and(|t| t == CPU_LIMIT) {
                let message = format!(
                    "Too much work: more than {} of CPU time (the limit per task)",
                    humantime::format_duration(limits.max_cpu_time)
                );
                return ScriptError::new(ScriptErrorKind::Runtime, message, *pos);
            }
            let kind = if token.clone().into_string().is_ok_and(|t| t == TIMED_OUT) {
                ScriptErrorKind::Timeout
            } else {
                ScriptErrorKind::Stopped
            };
            return ScriptError {
                kind,
                message: kind_message(kind).to_string(),
                line: None,
                column: None,
            };
        }
        // Report where the error really is (inside a function), naming the calls that led
        // there, instead of Rhai's nested "in call to function" text at the call site.
        let mut calls = Vec::new();
        while let EvalAltResult::ErrorInFunctionCall(name, _, inner, pos) = err {
            calls.push((name, pos));
            err = *inner;
        }
        let pos = err.take_position();
        let mut message = err.to_string();
        if matches!(err, EvalAltResult::ErrorTooManyOperations(_)) {
            message = format!("{message} (the limit is {} per task)", limits.max_operations);
        }
        for (name, at) in calls.iter().rev() {
            message.push_str(&format!(" (in function '{name}'"));
            if let (Some(line), Some(column)) = (at.line(), at.position()) {
                message.push_str(&format!(" called at line {line}, column {column}"));
            }
            message.push(')');
        }
        ScriptError::new(ScriptErrorKind::Runtime, message, pos)
    }
}

fn kind_message(kind: ScriptErrorKind) -> &'static str {
    match kind {
        ScriptErrorKind::Timeout => TIMED_OUT,
        _ => STOPPED,
    }
}

const TIMED_OUT: &str = "timed out";
const STOPPED: &str = "stopped";
const CPU_LIMIT: &str = "cpu time limit";

/// How long `sleep` sleeps at most before checking for a stop or the deadline again.
const SLEEP_SLICE: Duration = Duration::from_millis(10);

/// Progress callback checks stop/deadline once per this many operations (a power of two).
const PROGRESS_CHECK_EVERY: u64 = 1024;

/// The per-evaluation stop condition seen by `sleep` and the progress callback.
struct EvalCtx<'a> {
    should_stop: &'a dyn Fn() -> bool,
    deadline: Option<Instant>,
    /// The thread's CPU time at the first check (read then, not when the evaluation
    /// starts: most evaluations end before any check), and the most it may use.
    cpu_start: Cell<Option<Duration>>,
    max_cpu: Duration,
}

/// CPU time used by the calling thread so far.
fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write to.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

thread_local! {
    /// The [`EvalCtx`] of the evaluation running on this thread (null when none is).
    static CURRENT: Cell<*const EvalCtx<'static>> = const { Cell::new(std::ptr::null()) };
}

/// Installs an [`EvalCtx`] for the current thread and restores the previous one on drop
/// (also on unwinding), so the pointer never outlives the context it points to.
struct CtxGuard {
    previous: *const EvalCtx<'static>,
}

impl CtxGuard {
    fn set(ctx: &EvalCtx<'_>) -> Self {
        let ptr = (ctx as *const EvalCtx<'_>).cast::<EvalCtx<'static>>();
        CtxGuard { previous: CURRENT.with(|c| c.replace(ptr)) }
    }
}

impl Drop for CtxGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// Why the current evaluation must end now, if it must.
fn interruption() -> Option<&'static str> {
    let ptr = CURRENT.with(Cell::get);
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a non-null pointer was installed by a `CtxGuard` that is still alive on this
    // thread's stack (the guard outlives the whole evaluation and resets the pointer on
    // drop), so it points at a live `EvalCtx`.
    let ctx = unsafe { &*ptr };
    if ctx.deadline.is_some_and(|d| Instant::now() >= d) {
        Some(TIMED_OUT)
    } else if over_cpu_limit(ctx) {
        Some(CPU_LIMIT)
    } else if (ctx.should_stop)() {
        Some(STOPPED)
    } else {
        None
    }
}

/// Whether the evaluation used more CPU time than it may; the first call only starts
/// the count.
fn over_cpu_limit(ctx: &EvalCtx<'_>) -> bool {
    let Some(now) = thread_cpu_time() else { return false };
    match ctx.cpu_start.get() {
        None => {
            ctx.cpu_start.set(Some(now));
            false
        }
        Some(start) => now.saturating_sub(start) > ctx.max_cpu,
    }
}

/// `sleep(seconds)`: sleeps in slices so a stop or the deadline ends it promptly.
fn sleep_for(pos: Position, seconds: f64) -> Result<(), Box<EvalAltResult>> {
    let total = if seconds.is_nan() || seconds <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
    };
    let end = Instant::now().checked_add(total);
    loop {
        if let Some(why) = interruption() {
            return Err(Box::new(EvalAltResult::ErrorTerminated(why.into(), pos)));
        }
        let now = Instant::now();
        let left = match end {
            Some(end) if now >= end => return Ok(()),
            Some(end) => end - now,
            None => SLEEP_SLICE,
        };
        std::thread::sleep(left.min(SLEEP_SLICE));
    }
}

/// A sandboxed engine with one compiled script, ready to be evaluated many times.
///
/// Arguments become variables by their names (names that are not valid Rhai identifiers
/// cannot be referenced as variables); when the script mentions `args` and no argument is
/// called `args`, an `args` object map with every argument by name is also provided
/// (`args["my-arg"]`). Top-level `let`s do not carry over from one evaluation to the next.
pub struct ScriptEngine {
    engine: Engine,
    ast: AST,
    names: Vec<String>,
    args_map: bool,
    limits: ScriptLimits,
    /// Reused between evaluations (saves an allocation per task); a concurrent evaluation
    /// on another thread uses a fresh scope instead of waiting.
    scope: Mutex<Scope<'static>>,
}

impl fmt::Debug for ScriptEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptEngine")
            .field("names", &self.names)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ScriptEngine {
    /// Compile `source` with the default [`ScriptLimits`]; `names` are the argument names
    /// in the order `eval` receives their values.
    pub fn compile(source: &str, names: &[String]) -> Result<Self, ScriptError> {
        Self::compile_with_limits(source, names, ScriptLimits::default())
    }

    /// Compile a job's script task with the default limits.
    pub fn from_task(task: &ScriptTask, names: &[String]) -> Result<Self, ScriptError> {
        Self::compile(&task.source, names)
    }

    /// Compile `source` with explicit limits.
    pub fn compile_with_limits(
        source: &str,
        names: &[String],
        limits: ScriptLimits,
    ) -> Result<Self, ScriptError> {
        let engine = sandboxed_engine(&limits);
        let ast = engine
            .compile(source)
            .map_err(|e| ScriptError::new(ScriptErrorKind::Syntax, e.0.to_string(), e.1))?;
        let args_map = source.contains("args") && !names.iter().any(|n| n == "args");
        Ok(ScriptEngine {
            engine,
            ast,
            names: names.to_vec(),
            args_map,
            limits,
            scope: Mutex::new(Scope::new()),
        })
    }

    /// The limits it runs under.
    pub fn limits(&self) -> &ScriptLimits {
        &self.limits
    }

    /// Evaluate the script with `args` (aligned with the names given to `compile`). The
    /// value of the last expression is the result, converted to JSON.
    ///
    /// `should_stop` is asked every 1024 operations and every 10 ms of `sleep`; when it
    /// says so, or `deadline` passes, the script ends with a [`ScriptErrorKind::Stopped`]
    /// or [`ScriptErrorKind::Timeout`] error (scripts cannot catch these).
    pub fn eval(
        &self,
        args: &[Value],
        should_stop: &dyn Fn() -> bool,
        deadline: Option<Instant>,
    ) -> Result<Value, ScriptError> {
        let ctx = EvalCtx {
            should_stop,
            deadline,
            cpu_start: Cell::new(None),
            max_cpu: self.limits.max_cpu_time,
        };
        let _guard = CtxGuard::set(&ctx);
        // Stopped or past the deadline before it starts (no CPU used yet: no clock read).
        let early = if deadline.is_some_and(|d| Instant::now() >= d) {
            Some(ScriptErrorKind::Timeout)
        } else if should_stop() {
            Some(ScriptErrorKind::Stopped)
        } else {
            None
        };
        if let Some(kind) = early {
            let message = kind_message(kind).to_string();
            return Err(ScriptError { kind, message, line: None, column: None });
        }

        let mut fresh;
        let mut locked = self.scope.try_lock().ok();
        let scope: &mut Scope<'static> = match locked.as_deref_mut() {
            Some(scope) => scope,
            None => {
                fresh = Scope::new();
                &mut fresh
            }
        };
        scope.clear();
        for (name, value) in self.names.iter().zip(args) {
            scope.push_dynamic(name.as_str(), json_to_dynamic(value));
        }
        if self.args_map {
            let map: rhai::Map = self
                .names
                .iter()
                .zip(args)
                .map(|(n, v)| (n.as_str().into(), json_to_dynamic(v)))
                .collect();
            scope.push_dynamic("args", map.into());
        }
        let result = self.engine.eval_ast_with_scope::<Dynamic>(scope, &self.ast);
        scope.clear();
        match result {
            Ok(value) => dynamic_to_json(value).map_err(|message| ScriptError {
                kind: ScriptErrorKind::Runtime,
                message,
                line: None,
                column: None,
            }),
            Err(err) => Err(ScriptError::from_eval(*err, &self.limits)),
        }
    }
}

/// Rhai's standard library (what `Engine::new` registers), built once per process: it
/// is most of the cost of an engine (about 0.5 ms here), and immutable once built.
static STANDARD: OnceLock<Shared<Module>> = OnceLock::new();

/// `Engine::new()`'s size of the string interner (Rhai's `MAX_STRINGS_INTERNED`, which it
/// does not export).
const MAX_STRINGS_INTERNED: usize = 256;

/// Rhai's standard library, built on first use.
fn standard_library() -> &'static Shared<Module> {
    STANDARD.get_or_init(|| StandardPackage::new().as_shared_module())
}

/// Build Rhai's standard library now (the worker zygote does, so forked workers have it).
pub fn warm_up() {
    standard_library();
}

/// A Rhai engine with the sandbox limits and jobpool's extra functions.
fn sandboxed_engine(limits: &ScriptLimits) -> Engine {
    // `Engine::new()` is `new_raw()`, the string interner, the standard library and
    // print/debug to stdout (replaced below); with `no_module` it sets no module resolver.
    let mut engine = Engine::new_raw();
    engine.set_max_strings_interned(MAX_STRINGS_INTERNED);
    engine.register_global_module(standard_library().clone());
    // What `jobpool check` accepts is what a worker compiles.
    for symbol in ScriptTask::DISABLED_SYMBOLS {
        engine.disable_symbol(*symbol);
    }
    engine
        .set_max_operations(limits.max_operations)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_max_call_levels(limits.max_call_levels)
        .on_print(|_| {})
        .on_debug(|_, _, _| {})
        .on_progress(|ops| {
            if ops % PROGRESS_CHECK_EVERY != 0 {
                return None;
            }
            interruption().map(Dynamic::from)
        });
    engine.register_fn("random", fastrand::f64);
    engine.register_fn("sleep", |ctx: NativeCallContext, seconds: f64| {
        sleep_for(ctx.call_position(), seconds)
    });
    engine.register_fn("sleep", |ctx: NativeCallContext, seconds: rhai::INT| {
        sleep_for(ctx.call_position(), seconds as f64)
    });
    engine
}

/// A JSON value as a Rhai value: `null` -> `()`, integers -> `INT` (integers beyond
/// `i64` -> float), floats -> `FLOAT`, arrays -> arrays, objects -> object maps.
pub fn json_to_dynamic(value: &Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(rhai::ImmutableString::from(s.as_str())),
        Value::Array(items) => Dynamic::from_array(items.iter().map(json_to_dynamic).collect()),
        Value::Object(map) => Dynamic::from_map(
            map.iter().map(|(k, v)| (k.as_str().into(), json_to_dynamic(v))).collect(),
        ),
    }
}

/// A Rhai value as JSON: `()` -> `null`, characters -> one-character strings, blobs ->
/// arrays of byte values, non-finite floats -> `null`. Other types (function pointers,
/// timestamps, ...) have no JSON form and give an error naming the type.
pub fn dynamic_to_json(value: Dynamic) -> Result<Value, String> {
    let value = value.flatten();
    if value.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = value.as_int() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = value.as_float() {
        return Ok(Number::from_f64(f).map_or(Value::Null, Value::Number));
    }
    if let Ok(c) = value.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if value.is_string() {
        return Ok(Value::String(value.into_string().unwrap_or_default()));
    }
    if value.is_array() {
        let items = value.into_array().unwrap_or_default();
        return items
            .into_iter()
            .map(dynamic_to_json)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if value.is_blob() {
        let bytes = value.into_blob().unwrap_or_default();
        return Ok(Value::Array(bytes.into_iter().map(Value::from).collect()));
    }
    if value.is_map() {
        let map = value.cast::<rhai::Map>();
        let mut out = Map::with_capacity(map.len());
        for (k, v) in map {
            out.insert(k.to_string(), dynamic_to_json(v)?);
        }
        return Ok(Value::Object(out));
    }
    Err(format!("the script's result is a {}, which has no JSON form", value.type_name()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn never() -> bool {
        false
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn json_round_trip() {
        let value = json!({"a": [1, 2.5, "x", true, null], "b": {"c": -3}, "big": 1e300});
        assert_eq!(dynamic_to_json(json_to_dynamic(&value)).unwrap(), value);
        // u64 beyond i64 becomes a float.
        let big = json!(u64::MAX);
        assert!(json_to_dynamic(&big).is_float());
    }

    #[test]
    fn rhai_specific_values_convert() {
        let engine = ScriptEngine::compile("['a', blob(2, 7), 0.0 / 0.0]", &[]).unwrap();
        assert_eq!(engine.eval(&[], &never, None).unwrap(), json!(["a", [7, 7], null]));
        let engine = ScriptEngine::compile("|x| x + 1", &[]).unwrap();
        let err = engine.eval(&[], &never, None).unwrap_err();
        assert_eq!(err.kind, ScriptErrorKind::Runtime);
        assert!(err.message.contains("no JSON form"), "{err}");
    }

    #[test]
    fn display_forms() {
        let e = ScriptError {
            kind: ScriptErrorKind::Runtime,
            message: "boom".into(),
            line: Some(2),
            column: Some(7),
        };
        assert_eq!(e.to_string(), "script error at line 2, column 7: boom");
        let e = ScriptError {
            kind: ScriptErrorKind::Syntax,
            message: "bad".into(),
            line: None,
            column: None,
        };
        assert_eq!(e.to_string(), "script syntax error: bad");
        let e = ScriptError {
            kind: ScriptErrorKind::Timeout,
            message: "timed out".into(),
            line: None,
            column: None,
        };
        assert_eq!(e.to_string(), "timed out");
    }

    #[test]
    fn scope_is_reset_between_evaluations() {
        let engine = ScriptEngine::compile("let y = x * 2; y", &names(&["x"])).unwrap();
        for i in 0..5 {
            assert_eq!(engine.eval(&[json!(i)], &never, None).unwrap(), json!(i * 2));
        }
    }

    #[test]
    fn context_is_cleared_after_eval() {
        let engine = ScriptEngine::compile("1", &[]).unwrap();
        engine.eval(&[], &|| true, None).unwrap_err();
        assert!(CURRENT.with(Cell::get).is_null());
    }
}
