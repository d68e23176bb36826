//! The job file's top level: the walk's entry point ([`job`]) and the top-level keys
//! (`name`, `workers`, limits, `retries`/`retry-on`, `on-failure`/`max-failures`,
//! `order`, `chunk-size`, `backend`, `watch`), handing `[args]`, `[task]`, `[[sink]]` and
//! `[slurm]` to their own validators, in the order that lets templates be checked against
//! the argument names.
//! Must not: read values by hand (the typed getters are in `read`).

use std::num::NonZeroUsize;

use super::error::one_of;
use super::read::{Ctx, string_list};
use super::sink::{sinks, value_template};
use super::slurm::slurm;
use super::task::{registered_names, script_names, task};
use crate::model::{
    Backend, ChunkSize, Failure, Job, Limits, MaxFailures, OnFailure, Order, RetryOn, SinkConfig,
    SinkFormat, SinkTarget, TaskTemplate,
};
use crate::source::{Loc, Node, NodeKind};
use crate::spec::keys;

/// The whole job. `None` only when something essential is missing; problems are in `ctx`.
pub fn job(ctx: &mut Ctx, doc: &Node) -> Option<Job> {
    let top = doc.as_table().unwrap_or(&[]);
    ctx.check_keys(top, keys::TOP, "a job file");
    let stem = ctx.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut job = Job {
        name: stem,
        description: None,
        path: ctx.path.clone(),
        dir: ctx.dir.clone(),
        workers: None,
        limits: Limits::default(),
        order: Order::default(),
        on_failure: OnFailure::default(),
        max_failures: None,
        chunk_size: ChunkSize::default(),
        max_tasks_per_worker: 0,
        backend: Backend::default(),
        watch: Vec::new(),
        task: TaskTemplate::Registered { kind: String::new() },
        args: crate::model::ArgSpace {
            names: Vec::new(),
            form: crate::model::ArgForm::Single,
            constants: Vec::new(),
        },
        sinks: Vec::new(),
        slurm: None,
    };
    let get = |k: &str| doc.get(k);
    if let Some(n) = get("name")
        && let Some(s) = ctx.string("name", n, "name = \"sweep\"")
    {
        if s.trim().is_empty()
            || s.contains(['/', '\\'])
            || s.contains(char::is_control)
            || s == "."
            || s == ".."
        {
            ctx.error(
                "jobpool::bad-value",
                "`name` must be non-empty and contain no `/`, `\\` or control characters",
                &n.loc,
                "not a usable name",
                Some("the name names the run folder; e.g. name = \"sweep\"".into()),
            );
        } else {
            job.name = s;
        }
    }
    if let Some(n) = get("description") {
        job.description = ctx.string("description", n, "description = \"what this job does\"");
    }
    if let Some(n) = get("workers") {
        if n.as_str() == Some("auto") {
            job.workers = None;
        } else if matches!(n.kind, NodeKind::Int(_)) {
            job.workers = ctx
                .bounded("workers", n, 1, 1 << 20, "workers = 4, or \"auto\" for the CPU count")
                .and_then(|w| NonZeroUsize::new(w as usize));
        } else {
            ctx.wrong_type("workers", n, "a positive integer or \"auto\"", "workers = 4");
        }
    }
    for (key, slot) in [("timeout", 0), ("task-timeout", 1), ("grace-period", 2)] {
        if let Some(n) = get(key) {
            let d = ctx.duration(key, n);
            match slot {
                0 => job.limits.timeout = d,
                1 => job.limits.task_timeout = d,
                _ => job.limits.grace_period = d.unwrap_or(job.limits.grace_period),
            }
        }
    }
    if let Some(n) = get("retries")
        && let Some(r) = ctx.bounded("retries", n, 0, u32::MAX as i64, "retries = 2")
    {
        job.limits.retries = r as u32;
    }
    if let Some(n) = get("retry-on")
        && let Some(set) = retry_on(ctx, n)
    {
        job.limits.retry_on = set;
    }
    if let Some(n) = get("max-failures") {
        job.max_failures = max_failures(ctx, n);
    }
    if let Some(n) = get("on-failure") {
        job.on_failure = match ctx.choice("on-failure", n, &["continue", "stop"]) {
            Some("stop") => OnFailure::Stop,
            _ => OnFailure::Continue,
        };
    }
    if let Some(n) = get("order") {
        job.order = match ctx.choice("order", n, &["submission", "completion"]) {
            Some("completion") => Order::Completion,
            _ => Order::Submission,
        };
    }
    if let Some(n) = get("chunk-size") {
        if n.as_str() == Some("auto") {
            job.chunk_size = ChunkSize::Auto;
        } else if matches!(n.kind, NodeKind::Int(_)) {
            if let Some(c) =
                ctx.bounded("chunk-size", n, 1, 1 << 32, "chunk-size = 64, or \"auto\"")
            {
                job.chunk_size =
                    ChunkSize::Fixed(NonZeroUsize::new(c as usize).unwrap_or(NonZeroUsize::MIN));
            }
        } else if let Some(s) = n.as_str() {
            ctx.error(
                "jobpool::bad-value",
                format!("`{s}` is not a valid `chunk-size`"),
                &n.loc,
                "unknown value",
                Some("write \"auto\" or a positive integer, e.g. chunk-size = 64".into()),
            );
        } else {
            ctx.wrong_type("chunk-size", n, "\"auto\" or a positive integer", "chunk-size = 64");
        }
    }
    if let Some(n) = get("max-tasks-per-worker")
        && let Some(m) = ctx.bounded(
            "max-tasks-per-worker",
            n,
            0,
            i64::MAX,
            "max-tasks-per-worker = 100 (0 = never)",
        )
    {
        job.max_tasks_per_worker = m as u64;
    }
    if let Some(n) = get("backend") {
        job.backend = match ctx.choice("backend", n, &["processes", "threads", "slurm"]) {
            Some("threads") => Backend::Threads,
            Some("slurm") => Backend::Slurm,
            _ => Backend::Processes,
        };
    }
    if let Some(n) = get("watch") {
        job.watch = string_list(ctx, "watch", n, "watch = [\"data/**/*.csv\"]").unwrap_or_default();
        if let NodeKind::Array(items) = &n.kind {
            for item in items.iter().filter(|i| i.as_str().is_some_and(|s| s.trim().is_empty())) {
                ctx.error(
                    "jobpool::bad-value",
                    "an item of `watch` is empty",
                    &item.loc,
                    "empty",
                    Some("each item is a path or glob relative to the job file, e.g. \"data/**/*.csv\"".into()),
                );
            }
        }
    }
    if let Some(n) = get("slurm") {
        job.slurm = slurm(ctx, n);
    }
    // [args] before [task] and [[sink]]: templates are checked against argument names.
    let mut names = Vec::new();
    let mut args_ok = true;
    if let Some(n) = get("args")
        && let Some(space) = super::args::args(ctx, n, &mut names, &mut args_ok)
    {
        job.args = space;
    }
    job.args.names = names.clone();
    let task = match get("task") {
        Some(n) => task(ctx, n, &names, args_ok),
        None => {
            ctx.error(
                "jobpool::missing-key",
                "missing `[task]` table",
                &Loc { origin: 0, span: 0..0 },
                "a job needs a task",
                Some("add e.g.\n[task]\nkind = \"command\"\nprogram = [\"echo\", \"{x}\"]".into()),
            );
            None
        }
    };
    if let Some(n) = get("sink") {
        job.sinks = sinks(ctx, n, &names, args_ok);
    }
    if job.sinks.is_empty() {
        job.sinks.push(SinkConfig {
            to: SinkTarget::Stdout,
            format: SinkFormat::Text(value_template()),
        });
    }
    if matches!(task, Some(TaskTemplate::Script(_)))
        && let Some(args) = get("args")
    {
        script_names(ctx, args);
    }
    if let Some(TaskTemplate::Registered { kind }) = &task
        && let Some(kind_node) = get("task").and_then(|t| t.get("kind"))
    {
        registered_names(ctx, kind, &kind_node.loc, get("args"));
    }
    job.task = task?;
    Some(job)
}

/// `retry-on = ["timeout", "crashed"]`: a non-empty list of failures.
fn retry_on(ctx: &mut Ctx, node: &Node) -> Option<RetryOn> {
    let names: Vec<&str> = Failure::ALL.iter().map(|f| f.name()).collect();
    let NodeKind::Array(items) = &node.kind else {
        let example = match node.as_str().filter(|s| names.contains(s)) {
            Some(one) => format!("retry-on = [\"{one}\"] (a list, even of one)"),
            None => "retry-on = [\"timeout\", \"crashed\"]".to_string(),
        };
        ctx.wrong_type("retry-on", node, "an array of failures", &example);
        return None;
    };
    if items.is_empty() {
        ctx.error(
            "jobpool::bad-value",
            "`retry-on` is empty",
            &node.loc,
            "no failure would be retried",
            Some(format!(
                "list the failures to retry, from {}; leave `retry-on` out to retry all three, \
                 or `retries` out to retry none",
                one_of(&names)
            )),
        );
        return None;
    }
    let mut set = RetryOn::NONE;
    let mut ok = true;
    for item in items {
        if let Some(status @ ("ok" | "cancelled" | "skipped")) = item.as_str() {
            ctx.error(
                "jobpool::bad-value",
                format!("`{status}` is not a failure that can be retried"),
                &item.loc,
                "not a failure",
                Some(format!(
                    "`retry-on` names failures of the task itself: {}; cancelled and skipped \
                     tasks did not fail",
                    one_of(&names)
                )),
            );
            ok = false;
            continue;
        }
        match ctx.choice("retry-on", item, &names) {
            Some(name) => {
                let f = Failure::ALL.into_iter().find(|f| f.name() == name)?;
                set = set.with(f);
            }
            None => ok = false,
        }
    }
    ok.then_some(set)
}

/// `max-failures = N` (N ≥ 1) or `"N%"` (0 < N ≤ 100).
fn max_failures(ctx: &mut Ctx, node: &Node) -> Option<MaxFailures> {
    const HOW: &str = "write a count, max-failures = 10, or a share of the submissions, \
                       max-failures = \"5%\"";
    match &node.kind {
        NodeKind::Int(Some(n)) if *n < 1 => {
            ctx.error(
                "jobpool::out-of-range",
                format!("`max-failures` must be at least 1, not {n}"),
                &node.loc,
                format!("{n} is not allowed"),
                Some(format!(
                    "to stop at the first failure, write on-failure = \"stop\"; otherwise {HOW}"
                )),
            );
            None
        }
        NodeKind::Int(_) => {
            ctx.int("max-failures", node, "max-failures = 10").map(|n| MaxFailures::Count(n as u64))
        }
        NodeKind::Float(f) if f.is_finite() && *f > 0.0 && *f <= 100.0 => {
            ctx.error(
                "jobpool::wrong-type",
                "`max-failures` must be a whole number or a percentage string",
                &node.loc,
                "a float here",
                Some(format!(
                    "for a count write a whole number, e.g. max-failures = {}; for a share, \
                     a string: max-failures = \"{f}%\"",
                    f.ceil() as i64
                )),
            );
            None
        }
        NodeKind::Str(text) => {
            let t = text.trim();
            let Some(number) = t.strip_suffix('%') else {
                let help = match t.parse::<i64>() {
                    Ok(n) => format!("numbers are written without quotes: max-failures = {n}"),
                    Err(_) => HOW.to_string(),
                };
                ctx.error(
                    "jobpool::bad-value",
                    format!("`{}` is not a valid `max-failures`", text.escape_debug()),
                    &node.loc,
                    "not a count or a percentage",
                    Some(help),
                );
                return None;
            };
            match number.trim().parse::<f64>() {
                Ok(p) if p.is_finite() && p > 0.0 && p <= 100.0 => Some(MaxFailures::Percent(p)),
                Ok(p) if p.is_finite() => {
                    ctx.error(
                        "jobpool::out-of-range",
                        format!("`max-failures` must be more than 0% and at most 100%, not {t}"),
                        &node.loc,
                        "out of range",
                        Some(
                            "a share of the submissions, e.g. max-failures = \"5%\"; to stop at \
                             the first failure, write on-failure = \"stop\""
                                .into(),
                        ),
                    );
                    None
                }
                _ => {
                    ctx.error(
                        "jobpool::bad-value",
                        format!("`{}` is not a valid `max-failures`", text.escape_debug()),
                        &node.loc,
                        "not a percentage",
                        Some("a percentage is a number and `%`, e.g. max-failures = \"5%\"".into()),
                    );
                    None
                }
            }
        }
        _ => {
            ctx.wrong_type(
                "max-failures",
                node,
                "a positive integer or a percentage string",
                "max-failures = 10, or max-failures = \"5%\"",
            );
            None
        }
    }
}
