//! Task kinds: `command`, `script`, and the hook that registers them in a pool
//! [`Registry`].
//!
//! Owns: executing ONE task of each built-in kind as a plain function with no knowledge
//! of the pool: [`command::run_command`] and [`script::ScriptEngine`], and
//! [`register_builtins`], which wraps them as pool task functions.
//! Must not: talk to workers, sinks or records directly.
//!
//! How `jobpool run` reaches them: the pool's context string is a [`BuiltinContext`]
//! (the job's task definition, folder, argument names and limits) as JSON, parsed once
//! per worker; each submission's argument is the JSON array of its values, aligned with
//! the names. A command's value travels as a [`CommandValue`] (value, exit code, stderr
//! tail); a failure's kind as the [`TaskError`]'s kind (a command or script that stopped
//! itself at its timeout returns [`TaskError::timed_out`]), its details as [`ErrorData`].

pub mod command;
pub mod quote;
pub mod script;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{Job, TaskTemplate};
use crate::pool::{Registry, TaskContext, TaskError};

use self::command::{CommandRequest, CommandStatus};
use self::script::{ScriptEngine, ScriptErrorKind};

/// What every worker of a job needs to run its built-in task: sent once, as the pool's
/// context.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuiltinContext {
    /// The task definition.
    pub task: TaskTemplate,
    /// The job file's folder (commands run there; `cwd` is relative to it).
    pub dir: PathBuf,
    /// Argument names, in declared order.
    pub names: Vec<String>,
    /// `task-timeout`.
    pub task_timeout: Option<Duration>,
    /// `grace-period`.
    pub grace_period: Duration,
}

impl BuiltinContext {
    /// The context of `job`.
    pub fn new(job: &Job) -> Self {
        BuiltinContext {
            task: job.task.clone(),
            dir: job.dir.clone(),
            names: job.args.names.clone(),
            task_timeout: job.limits.task_timeout,
            grace_period: job.limits.grace_period,
        }
    }
}

/// A successful command's value as it travels back from the worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CommandValue {
    /// The value made from stdout (per `output`).
    pub value: Value,
    /// The exit code.
    pub exit_code: Option<i32>,
    /// The tail of stderr (`""` when there was none).
    pub stderr: Option<String>,
    /// User + system CPU time of the command's processes, in ms.
    #[serde(default)]
    pub cpu_ms: Option<f64>,
    /// Peak resident memory of the command's processes, in KiB.
    #[serde(default)]
    pub max_rss_kb: Option<u64>,
}

/// Details of a failed built-in task, as the error's data (JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorData {
    /// A command's exit code.
    pub exit_code: Option<i32>,
    /// The signal that ended a command.
    pub signal: Option<i32>,
    /// The tail of a command's stderr (`""` when there was none).
    pub stderr: Option<String>,
    /// A command's user + system CPU time, in ms.
    #[serde(default)]
    pub cpu_ms: Option<f64>,
    /// A command's peak resident memory, in KiB.
    #[serde(default)]
    pub max_rss_kb: Option<u64>,
}

/// What a worker prepares once per job: the parsed context and, for scripts, the
/// compiled engine.
struct Prepared {
    ctx: BuiltinContext,
    script: Option<Result<ScriptEngine, String>>,
}

/// What the worker zygote prepared for the context of the pool whose workers it forks
/// (see [`Registry::on_zygote_context`]), with that context: a forked worker of that
/// pool finds it in its memory.
type ZygotePrepared = Option<(String, Result<Arc<Prepared>, String>)>;
static ZYGOTE_PREPARED: Mutex<ZygotePrepared> = Mutex::new(None);

fn prepared(tc: &TaskContext) -> Result<Arc<Prepared>, TaskError> {
    let p = tc.cached::<Result<Arc<Prepared>, String>>(|text| {
        let zygote = ZYGOTE_PREPARED.lock().unwrap_or_else(|e| e.into_inner());
        match zygote.as_ref() {
            Some((context, p)) if context == text => p.clone(),
            _ => prepare(text),
        }
    });
    p.as_ref().clone().map_err(TaskError::new)
}

/// Parse a worker's context and compile its script.
fn prepare(text: &str) -> Result<Arc<Prepared>, String> {
    let ctx: BuiltinContext = serde_json::from_str(text)
        .map_err(|e| format!("this worker got no valid task definition: {e}"))?;
    let script = match &ctx.task {
        TaskTemplate::Script(s) => {
            Some(ScriptEngine::from_task(s, &ctx.names).map_err(|e| e.to_string()))
        }
        _ => None,
    };
    Ok(Arc::new(Prepared { ctx, script }))
}

fn values(args: &str) -> Result<Vec<Value>, TaskError> {
    serde_json::from_str(args).map_err(|e| TaskError::new(format!("bad task arguments: {e}")))
}

fn with_data(e: TaskError, data: &ErrorData) -> TaskError {
    match serde_json::to_string(data) {
        Ok(d) => e.with_data(d),
        Err(_) => e,
    }
}

/// A registry with the built-in kinds (`command`, `script`): what the stock `jobpool`
/// binary runs; a program adds its own kinds to it.
pub fn builtins() -> Registry {
    let mut r = Registry::new();
    register_builtins(&mut r);
    r
}

/// Register the built-in kinds (`command`, `script`) in `registry`.
pub fn register_builtins(registry: &mut Registry) {
    registry.register_json("command", run_command_task);
    registry.register_json("script", run_script_task);
    // A script is compiled when the worker starts, not when its first task arrives (an
    // error is kept and reported by that task, as before).
    registry.on_worker_start(|tc| {
        let _ = prepared(tc);
    });
    // Rhai's standard library, built once in the zygote, is in every forked worker, and
    // so is a pool's compiled script.
    registry.on_zygote_start(script::warm_up);
    registry.on_zygote_context(|context| {
        let p = prepare(context);
        *ZYGOTE_PREPARED.lock().unwrap_or_else(|e| e.into_inner()) = Some((context.into(), p));
    });
}

fn run_command_task(tc: &TaskContext, args: &str) -> Result<String, TaskError> {
    let p = prepared(tc)?;
    let TaskTemplate::Command(task) = &p.ctx.task else {
        return Err(TaskError::new("this job's task is not a command"));
    };
    let values = values(args)?;
    let should_stop = || tc.should_stop();
    // A process worker's commands join its command group, which the pool always knows;
    // elsewhere (threads) each command has a group of its own, tracked while it runs.
    let group = tc.command_group();
    let mut on_spawn = |pgid: i32| {
        if Some(pgid) != group {
            tc.track_child_group(pgid)
        }
    };
    let out = command::run_command(CommandRequest {
        task,
        job_dir: &p.ctx.dir,
        names: &p.ctx.names,
        args: &values,
        timeout: p.ctx.task_timeout,
        grace: p.ctx.grace_period,
        should_stop: &should_stop,
        group,
        on_spawn: &mut on_spawn,
    });
    tc.untrack_child_group();
    // Always a string for a command that ran, so records keep the same fields.
    let stderr = Some(out.stderr.unwrap_or_default());
    match out.status {
        CommandStatus::Ok => {
            let v = CommandValue {
                value: out.value.unwrap_or(Value::Null),
                exit_code: out.exit_code,
                stderr,
                cpu_ms: out.cpu_ms,
                max_rss_kb: out.max_rss_kb,
            };
            serde_json::to_string(&v).map_err(|e| TaskError::new(e.to_string()))
        }
        status => {
            let data = ErrorData {
                exit_code: out.exit_code,
                signal: out.signal,
                stderr,
                cpu_ms: out.cpu_ms,
                max_rss_kb: out.max_rss_kb,
            };
            let message = out.error.unwrap_or_else(|| "command failed".into());
            let error = match status {
                CommandStatus::Timeout => TaskError::timed_out(message),
                CommandStatus::Cancelled => TaskError::cancelled(message),
                _ => TaskError::new(message),
            };
            Err(with_data(error, &data))
        }
    }
}

fn run_script_task(tc: &TaskContext, args: &str) -> Result<String, TaskError> {
    let p = prepared(tc)?;
    let engine = match &p.script {
        Some(Ok(engine)) => engine,
        Some(Err(e)) => return Err(TaskError::new(e.clone())),
        None => return Err(TaskError::new("this job's task is not a script")),
    };
    let values = values(args)?;
    let should_stop = || tc.should_stop();
    let deadline = p.ctx.task_timeout.map(|t| Instant::now() + t);
    match engine.eval(&values, &should_stop, deadline) {
        Ok(v) => serde_json::to_string(&v).map_err(|e| TaskError::new(e.to_string())),
        Err(e) => {
            let error = match e.kind {
                ScriptErrorKind::Timeout => TaskError::timed_out(match p.ctx.task_timeout {
                    Some(t) => format!("timed out after {}", humantime::format_duration(t)),
                    None => e.to_string(),
                }),
                ScriptErrorKind::Stopped => TaskError::cancelled(e.to_string()),
                _ => TaskError::new(e.to_string()),
            };
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_takes_what_the_zygote_prepared_for_its_own_context_only() {
        // What the zygote would have prepared: marked, so that its use shows.
        let ours = r#"{"zygote-prepared": "a context no other test uses"}"#;
        *ZYGOTE_PREPARED.lock().unwrap() = Some((ours.into(), Err("from the zygote".into())));
        let err = prepared(&TaskContext::detached(ours)).err().expect("the zygote's");
        assert_eq!(err.message, "from the zygote");
        // Another pool's context is prepared by the worker itself.
        let other = TaskContext::detached(r#"{"zygote-prepared": "another"}"#);
        let err = prepared(&other).err().expect("not a task definition");
        assert!(err.message.starts_with("this worker got no valid task definition"), "{err:?}");
    }
}
