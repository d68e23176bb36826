//! The walk over a job document: top-level keys, `[task]`, `[[sink]]`, `[slurm]`.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{Problem, one_of, suggest};
use super::template;
use crate::model::{
    Backend, ChunkSize, CommandTask, Failure, Invocation, Job, Limits, MaxFailures, OnFailure,
    Order, OutputMode, RetryOn, ScriptTask, SinkConfig, SinkFormat, SinkTarget, SlurmConfig,
    TaskTemplate, Template,
};
use crate::record::FIELD_NAMES;
use crate::source::{Key, Loc, Node, NodeKind, Sources};
use crate::spec::keys;

/// The longest duration accepted: longer ones are certainly typos, and would overflow
/// deadline arithmetic.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// What the walk knows and what it found wrong so far.
pub struct Ctx<'a> {
    pub sources: &'a Sources,
    pub problems: Vec<Problem>,
    pub dir: PathBuf,
    pub path: PathBuf,
    pub kinds: Vec<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(sources: &'a Sources, path: &Path, registered: &[String]) -> Self {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut kinds: Vec<String> = vec!["command".into(), "script".into()];
        for k in registered {
            if !kinds.contains(k) {
                kinds.push(k.clone());
            }
        }
        Ctx { sources, problems: Vec::new(), dir, path: path.to_path_buf(), kinds }
    }

    /// Record a problem at `loc`.
    pub fn error(
        &mut self,
        code: &'static str,
        message: impl Into<String>,
        loc: &Loc,
        label: impl Into<String>,
        help: Option<String>,
    ) {
        let mut p = Problem::at(self.sources, code, message, loc, label);
        p.help = help;
        self.problems.push(p);
    }

    pub fn push(&mut self, p: Problem) {
        self.problems.push(p);
    }

    /// Unknown keys of `table` (given the allowed ones) become problems.
    pub fn check_keys(&mut self, table: &[(Key, Node)], allowed: &[&str], what: &str) {
        for (k, _) in table {
            if !allowed.contains(&k.name.as_str()) {
                let kebab = to_kebab(&k.name);
                let close = allowed
                    .iter()
                    .copied()
                    .find(|a| *a == kebab)
                    .or_else(|| suggest(&k.name, allowed.iter().copied()));
                let mut help = match close {
                    Some(s) => format!("did you mean `{s}`? {what} takes {}", one_of(allowed)),
                    None if allowed.is_empty() => format!("{what} takes no other keys"),
                    None => format!("{what} takes {}", one_of(allowed)),
                };
                let name = k.name.as_str();
                if !std::ptr::eq(allowed, keys::TOP) && keys::TOP.contains(&name) {
                    help.push_str(&format!(
                        "\nkeys below a `[table]` header belong to that table: to set the \
                         job's `{name}`, move it above the first `[table]`"
                    ));
                }
                self.error(
                    "jobpool::unknown-key",
                    format!("unknown key `{}` in {what}", k.name),
                    &k.loc,
                    "unknown key",
                    Some(help),
                );
            }
        }
    }

    pub fn wrong_type(&mut self, key: &str, node: &Node, expected: &str, example: &str) {
        let mut help = format!("for example: {example}");
        if let NodeKind::Str(text) = &node.kind {
            let t = text.trim();
            let numeric = expected.contains("integer") || expected.contains("number");
            if numeric && (t.parse::<i64>().is_ok() || t.parse::<f64>().is_ok_and(f64::is_finite)) {
                help = format!("numbers are written without quotes: {key} = {t}");
            } else if expected.contains("\"auto\"") && t.eq_ignore_ascii_case("auto") {
                help = format!("write {key} = \"auto\" (lowercase)");
            }
        } else if let NodeKind::Float(f) = node.kind
            && expected.contains("integer")
            && f.is_finite()
            && f.fract() == 0.0
            && f.abs() < 1e15
        {
            help = format!("write a whole number without a decimal point: {key} = {}", f as i64);
        }
        self.error(
            "jobpool::wrong-type",
            format!("`{key}` must be {expected}, not {}", node.type_name()),
            &node.loc,
            format!("{} here", node.type_name()),
            Some(help),
        );
    }

    pub fn string(&mut self, key: &str, node: &Node, example: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Str(s) => Some(s.clone()),
            _ => {
                self.wrong_type(key, node, "a string", example);
                None
            }
        }
    }

    /// An integer of any sign, with a range check.
    pub fn int(&mut self, key: &str, node: &Node, example: &str) -> Option<i64> {
        match node.kind {
            NodeKind::Int(Some(i)) => Some(i),
            NodeKind::Int(None) => {
                self.error(
                    "jobpool::out-of-range",
                    format!("`{key}` is too large"),
                    &node.loc,
                    "does not fit in 64 bits",
                    Some(format!("for example: {example}")),
                );
                None
            }
            _ => {
                self.wrong_type(key, node, "an integer", example);
                None
            }
        }
    }

    /// An integer `>= min` that fits `max`.
    pub fn bounded(
        &mut self,
        key: &str,
        node: &Node,
        min: i64,
        max: i64,
        example: &str,
    ) -> Option<i64> {
        let i = self.int(key, node, example)?;
        if i < min {
            let what = if min == 1 { "positive" } else { "zero or more" };
            self.error(
                "jobpool::out-of-range",
                format!("`{key}` must be {what}, not {i}"),
                &node.loc,
                format!("{i} is not allowed"),
                Some(format!("for example: {example}")),
            );
            return None;
        }
        if i > max {
            self.error(
                "jobpool::out-of-range",
                format!("`{key}` is too large: {i}"),
                &node.loc,
                format!("at most {max}"),
                Some(format!("for example: {example}")),
            );
            return None;
        }
        Some(i)
    }

    pub fn duration(&mut self, key: &str, node: &Node) -> Option<Duration> {
        let example = format!("{key} = \"30s\" (units: ms, s, m, h, d; combine as \"1h 5m\")");
        let text = match &node.kind {
            NodeKind::Str(s) => s,
            NodeKind::Int(_) | NodeKind::Float(_) => {
                self.error(
                    "jobpool::bad-duration",
                    format!("`{key}` must be a duration string with a unit"),
                    &node.loc,
                    "a bare number has no unit",
                    Some(format!("write e.g. {key} = \"30s\"; durations are strings")),
                );
                return None;
            }
            _ => {
                self.wrong_type(key, node, "a duration string", &example);
                return None;
            }
        };
        let leave_out = if key == "grace-period" {
            format!("leave `{key}` out for the default (1s)")
        } else {
            format!("leave `{key}` out for no limit")
        };
        if text.trim().starts_with('-') {
            self.error(
                "jobpool::bad-duration",
                format!("`{key}` cannot be negative"),
                &node.loc,
                "negative",
                Some(format!("{leave_out}, or write e.g. {key} = \"30s\"")),
            );
            return None;
        }
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d.is_zero() => {
                self.error(
                    "jobpool::bad-duration",
                    format!("`{key}` must be greater than zero"),
                    &node.loc,
                    "zero",
                    Some(format!("{leave_out}, or write e.g. {key} = \"30s\"")),
                );
                None
            }
            Ok(d) if d > MAX_DURATION => {
                self.error(
                    "jobpool::bad-duration",
                    format!("`{key}` is too long: at most 365 days"),
                    &node.loc,
                    "too long",
                    Some(leave_out),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    "jobpool::bad-duration",
                    format!("`{key}` is not a valid duration: {e}"),
                    &node.loc,
                    "not a duration",
                    Some("write e.g. \"250ms\", \"30s\", \"1h 5m\"".to_string()),
                );
                None
            }
        }
    }

    /// One of `choices` (case-sensitive), with "did you mean".
    pub fn choice<'c>(&mut self, key: &str, node: &Node, choices: &[&'c str]) -> Option<&'c str> {
        let Some(text) = node.as_str() else {
            let ex = format!("{key} = \"{}\"", choices[0]);
            self.wrong_type(key, node, &format!("one of {}", one_of(choices)), &ex);
            return None;
        };
        if let Some(c) = choices.iter().find(|c| **c == text) {
            return Some(c);
        }
        if text.trim().is_empty() {
            self.error(
                "jobpool::bad-value",
                format!("`{key}` is empty"),
                &node.loc,
                "empty",
                Some(format!(
                    "valid values: {}; leave `{key}` out for the default",
                    one_of(choices)
                )),
            );
            return None;
        }
        let help = match suggest(text, choices.iter().copied()) {
            Some(s) => format!("did you mean `{s}`? valid values: {}", one_of(choices)),
            None => format!("valid values: {}", one_of(choices)),
        };
        self.error(
            "jobpool::bad-value",
            format!("`{text}` is not a valid `{key}`"),
            &node.loc,
            "unknown value",
            Some(help),
        );
        None
    }

    pub fn template(&mut self, key: &str, node: &Node) -> Option<Template> {
        let example = match key {
            "to" => "to = \"stdout\", or a path such as to = \"results/{name}.csv\"".to_string(),
            "template" => "template = \"Got: {value}\"".to_string(),
            _ => format!("{key} = \"{{x}}\""),
        };
        let text = self.string(key, node, &example)?;
        if let Some(at) = text.find('\0')
            && key != "stdin"
            && key != "template"
        {
            let loc = self.sources.inner_loc(node, at..at + 1);
            self.error(
                "jobpool::bad-value",
                format!("`{key}` contains a NUL character"),
                &loc,
                "NUL",
                Some(
                    "program arguments, paths and environment values cannot hold NUL; remove it"
                        .into(),
                ),
            );
            return None;
        }
        match template::parse(&text) {
            Ok(t) => Some(t),
            Err(e) => {
                let loc = self.sources.inner_loc(node, e.span.clone());
                self.error(
                    "jobpool::template",
                    format!("in `{key}`: {}", e.message),
                    &loc,
                    "here",
                    Some(e.help),
                );
                None
            }
        }
    }

    /// Check that every placeholder of `t` (written at `node`) is allowed.
    pub fn placeholders(
        &mut self,
        key: &str,
        t: &Template,
        node: &Node,
        allowed: &dyn Fn(&str) -> bool,
        choices: &[String],
    ) {
        for (name, span) in template::placeholder_spans(&t.source) {
            let name = name.as_str();
            if allowed(name) {
                continue;
            }
            let loc = self.sources.inner_loc(node, span);
            let bare = name.strip_prefix("args.").filter(|b| allowed(b));
            let help = match suggest(name, choices.iter().map(String::as_str)) {
                _ if bare.is_some() => format!(
                    "here an argument is named directly: write `{{{}}}`",
                    bare.unwrap_or_default()
                ),
                Some(s) => format!("did you mean `{{{s}}}`? available: {}", list_braced(choices)),
                None if choices.is_empty() => "the job has no arguments to substitute: declare \
                     them in `[args]`, or double the braces (`{{`, `}}`) for literal ones"
                    .to_string(),
                None => format!("available: {}", list_braced(choices)),
            };
            self.error(
                "jobpool::unknown-placeholder",
                format!("`{{{name}}}` in `{key}` names no argument"),
                &loc,
                format!("`{{{name}}}` is unknown"),
                Some(help),
            );
        }
    }
}

/// `taskTimeout`, `task_timeout`, `Task-Timeout` → `task-timeout`.
fn to_kebab(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 && !out.ends_with('-') {
            out.push('-');
        }
        out.push(if c == '_' { '-' } else { c.to_ascii_lowercase() });
    }
    out
}

/// A `cwd` that starts with relative literal text is resolved against the job file's
/// folder (the model's contract); one that starts with a placeholder is left as written.
fn resolve_cwd(tpl: Template, dir: &Path) -> Template {
    use crate::model::TemplatePart;
    let relative = match tpl.parts.first() {
        Some(TemplatePart::Literal(text)) => !Path::new(text).is_absolute(),
        _ => false,
    };
    if !relative || dir == Path::new(".") {
        return tpl;
    }
    let mut parts = tpl.parts;
    if let Some(TemplatePart::Literal(text)) = parts.first_mut() {
        *text = dir.join(text.as_str()).to_string_lossy().into_owned();
    }
    Template { source: tpl.source, parts }
}

fn value_template() -> Template {
    Template {
        source: "{value}".into(),
        parts: vec![crate::model::TemplatePart::Placeholder("value".into())],
    }
}

fn list_braced(choices: &[String]) -> String {
    let v: Vec<String> = choices.iter().map(|c| format!("{{{c}}}")).collect();
    v.join(", ")
}

fn table_or_error<'n>(
    ctx: &mut Ctx,
    key: &str,
    node: &'n Node,
    hint: &str,
) -> Option<&'n [(Key, Node)]> {
    match &node.kind {
        NodeKind::Table(t) => Some(t),
        _ => {
            let hint = if matches!(node.kind, NodeKind::Array(_))
                && (key == "task" || key == "slurm")
            {
                format!(
                    "write `[{key}]` (single brackets): a job has one `[{key}]` table; `[[{key}]]` makes an array"
                )
            } else {
                hint.to_string()
            };
            ctx.error(
                "jobpool::wrong-type",
                format!("`{key}` must be a table, not {}", node.type_name()),
                &node.loc,
                format!("{} here", node.type_name()),
                Some(hint),
            );
            None
        }
    }
}

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

/// The help line of a script's syntax error.
const SCRIPT_HELP: &str = "scripts are Rhai (https://rhai.rs/book/): statements end with `;`, \
     and the value of the last expression is the result, e.g. script = \"let y = x * 2; y + 1\"";

/// Words a Rhai script cannot use as a variable name.
const RHAI_RESERVED: &[&str] = &[
    "true",
    "false",
    "let",
    "const",
    "if",
    "else",
    "switch",
    "do",
    "while",
    "loop",
    "until",
    "for",
    "in",
    "continue",
    "break",
    "return",
    "throw",
    "try",
    "catch",
    "fn",
    "private",
    "import",
    "export",
    "as",
    "this",
    "var",
    "static",
    "shared",
    "goto",
    "match",
    "case",
    "public",
    "protected",
    "new",
    "use",
    "with",
    "module",
    "package",
    "super",
    "thread",
    "spawn",
    "go",
    "await",
    "async",
    "sync",
    "yield",
    "default",
    "void",
    "null",
    "nil",
    "is",
    "Fn",
    "call",
    "curry",
    "type_of",
    "print",
    "debug",
    "eval",
];

/// A script receives its arguments as variables: a name the language reserves could
/// never be read.
fn script_names(ctx: &mut Ctx, args: &Node) {
    let Some(entries) = args.as_table() else { return };
    let mut places: Vec<(&str, &Loc)> = Vec::new();
    for (k, v) in entries {
        match k.name.as_str() {
            "combine" | "tuples" => {}
            "names" => {
                if let NodeKind::Array(items) = &v.kind {
                    places.extend(items.iter().filter_map(|i| Some((i.as_str()?, &i.loc))));
                }
            }
            name => places.push((name, &k.loc)),
        }
    }
    for (name, loc) in places {
        if RHAI_RESERVED.contains(&name) {
            ctx.error(
                "jobpool::args-name",
                format!("`{name}` is a reserved word in scripts and cannot name an argument"),
                loc,
                "reserved in Rhai",
                Some(format!(
                    "a `script` task reads its arguments as variables; rename it, e.g. `{name}_`"
                )),
            );
        }
    }
}

fn string_list(ctx: &mut Ctx, key: &str, node: &Node, example: &str) -> Option<Vec<String>> {
    let NodeKind::Array(items) = &node.kind else {
        ctx.wrong_type(key, node, "an array of strings", example);
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        match item.as_str() {
            Some(s) => out.push(s.to_string()),
            None => {
                ok = false;
                ctx.error(
                    "jobpool::wrong-type",
                    format!("every item of `{key}` must be a string, not {}", item.type_name()),
                    &item.loc,
                    format!("{} here", item.type_name()),
                    Some(format!("quote it; for example: {example}")),
                );
            }
        }
    }
    ok.then_some(out)
}

/// The built-in kind a `[task]` key belongs to.
fn task_key_kind(key: &str) -> Option<&'static str> {
    if keys::TASK_COMMAND[1..].contains(&key) {
        Some("command")
    } else if keys::TASK_SCRIPT[1..].contains(&key) {
        Some("script")
    } else {
        None
    }
}

/// Unknown keys of `[task]`. With a known `kind`, only its keys are allowed, and a key of
/// another built-in kind says so; without one (missing, not a string, unknown), every
/// key of any built-in kind is accepted, so that the other mistakes still show.
fn check_task_keys(ctx: &mut Ctx, t: &[(Key, Node)], kind: Option<&str>) {
    let all: Vec<&str> =
        keys::TASK_COMMAND.iter().chain(&keys::TASK_SCRIPT[1..]).copied().collect();
    let (allowed, what): (&[&str], String) = match kind {
        Some("command") => (keys::TASK_COMMAND, "a `command` task".into()),
        Some("script") => (keys::TASK_SCRIPT, "a `script` task".into()),
        Some(other) => (keys::TASK_REGISTERED, format!("a `{other}` task (a registered kind)")),
        None => (&all, "`[task]`".into()),
    };
    type Entries = Vec<(Key, Node)>;
    let (own, foreign): (Entries, Entries) = t
        .iter()
        .cloned()
        .partition(|(k, _)| allowed.contains(&k.name.as_str()) || task_key_kind(&k.name).is_none());
    // Words users reach for, and the key they mean.
    const ALIASES: &[(&str, &str)] = &[
        ("command", "program"),
        ("cmd", "program"),
        ("argv", "program"),
        ("exec", "program"),
        ("run", "shell"),
        ("source", "script"),
        ("code", "script"),
        ("path", "file"),
    ];
    let (aliased, own): (Entries, Entries) = own.into_iter().partition(|(k, _)| {
        !allowed.contains(&k.name.as_str()) && ALIASES.iter().any(|(a, _)| *a == k.name)
    });
    ctx.check_keys(&own, allowed, &what);
    for (k, _) in &aliased {
        let meant = ALIASES.iter().find(|(a, _)| *a == k.name).map_or("", |(_, m)| *m);
        let help = if allowed.contains(&meant) {
            format!("did you mean `{meant}`? {what} takes {}", one_of(allowed))
        } else {
            format!("{what} takes {}", one_of(allowed))
        };
        ctx.error(
            "jobpool::unknown-key",
            format!("unknown key `{}` in {what}", k.name),
            &k.loc,
            "unknown key",
            Some(help),
        );
    }
    for (k, _) in &foreign {
        let belongs = task_key_kind(&k.name).unwrap_or("command");
        ctx.error(
            "jobpool::unknown-key",
            format!("`{}` is not a key of {what}", k.name),
            &k.loc,
            format!("a `{belongs}` key"),
            Some(format!(
                "`{}` belongs to kind = \"{belongs}\"; {what} takes {}",
                k.name,
                one_of(allowed)
            )),
        );
    }
}

fn task(ctx: &mut Ctx, node: &Node, names: &[String], args_ok: bool) -> Option<TaskTemplate> {
    let t = table_or_error(ctx, "task", node, "write a `[task]` table with a `kind`")?;
    let Some(kind_node) = node.get("kind") else {
        check_task_keys(ctx, t, None);
        let guess = t.iter().find_map(|(k, _)| task_key_kind(&k.name));
        let help = match guess {
            Some(g) => format!("add kind = \"{g}\" (the keys are those of a `{g}` task)"),
            None => format!(
                "add kind = one of {}",
                one_of(&ctx.kinds.iter().map(String::as_str).collect::<Vec<_>>())
            ),
        };
        ctx.error(
            "jobpool::missing-key",
            "`[task]` has no `kind`",
            &node.loc,
            "this table",
            Some(help),
        );
        return None;
    };
    let Some(kind) = ctx.string("kind", kind_node, "kind = \"command\"") else {
        check_task_keys(ctx, t, None);
        return None;
    };
    let check_args = |ctx: &mut Ctx, key: &str, tpl: &Template, n: &Node| {
        if !args_ok {
            return;
        }
        let mut choices: Vec<String> = names.to_vec();
        choices.extend((0..names.len()).map(|i| i.to_string()));
        let allowed = |p: &str| {
            names.iter().any(|n| n == p) || p.parse::<usize>().is_ok_and(|i| i < names.len())
        };
        ctx.placeholders(key, tpl, n, &allowed, &choices);
    };
    match kind.as_str() {
        "command" => {
            check_task_keys(ctx, t, Some("command"));
            let program = node.get("program");
            let shell = node.get("shell");
            let prog = program.map(|p| {
                let example = "program = [\"python3\", \"sim.py\", \"{seed}\"]";
                let NodeKind::Array(items) = &p.kind else {
                    let example = format!("{example}; for a shell line use shell = \"...\"");
                    ctx.wrong_type("program", p, "an array of strings", &example);
                    return None;
                };
                if items.is_empty() {
                    ctx.error(
                        "jobpool::bad-value",
                        "`program` is empty",
                        &p.loc,
                        "no program",
                        Some("the first item is the program: program = [\"echo\", \"hi\"]".into()),
                    );
                    return None;
                }
                // Every item is checked, so that one mistake does not hide the next.
                let mut tpls = Vec::new();
                for (i, n) in items.iter().enumerate() {
                    if n.as_str().is_none() {
                        ctx.error(
                            "jobpool::wrong-type",
                            format!("every item of `program` must be a string, not {}", n.type_name()),
                            &n.loc,
                            format!("{} here", n.type_name()),
                            Some(format!("quote it; for example: {example}")),
                        );
                        continue;
                    }
                    if i == 0 && n.as_str().is_some_and(|s| s.trim().is_empty()) {
                        ctx.error(
                            "jobpool::bad-value",
                            "the program name (the first item of `program`) is empty",
                            &n.loc,
                            "empty",
                            Some("the first item is the program to run: program = [\"echo\", \"hi\"]".into()),
                        );
                        continue;
                    }
                    if let Some(tpl) = ctx.template("program", n) {
                        check_args(ctx, "program", &tpl, n);
                        tpls.push(tpl);
                    }
                }
                (tpls.len() == items.len()).then_some(Invocation::Program(tpls))
            });
            let sh = shell.map(|s| {
                let tpl = ctx.template("shell", s)?;
                if tpl.source.trim().is_empty() {
                    ctx.error(
                        "jobpool::bad-value",
                        "`shell` is empty",
                        &s.loc,
                        "nothing to run",
                        Some("write the command line, e.g. shell = \"echo {x} | wc -c\"".into()),
                    );
                    return None;
                }
                check_args(ctx, "shell", &tpl, s);
                Some(Invocation::Shell(tpl))
            });
            let invocation = match (prog, sh) {
                (Some(_), Some(_)) => {
                    let (p, s) = (program?, shell?);
                    let p = Problem::at(
                        ctx.sources,
                        "jobpool::program-or-shell",
                        "a `command` task has both `program` and `shell`",
                        &s.loc,
                        "`shell` here",
                    )
                    .label(ctx.sources, &p.loc, "`program` here")
                    .help("keep one: `program` runs without a shell, `shell` runs /bin/sh -c");
                    ctx.push(p);
                    None
                }
                (None, None) => {
                    ctx.error(
                        "jobpool::program-or-shell",
                        "a `command` task needs `program` or `shell`",
                        &kind_node.loc,
                        "command task",
                        Some(
                            "add program = [\"echo\", \"{x}\"] or shell = \"echo {x} | wc -c\""
                                .into(),
                        ),
                    );
                    None
                }
                (Some(p), None) | (None, Some(p)) => p,
            };
            let mut cmd = CommandTask {
                invocation: Invocation::Program(Vec::new()),
                cwd: None,
                env: Vec::new(),
                stdin: None,
                output: OutputMode::Text,
                success_codes: vec![0],
            };
            for key in ["cwd", "stdin"] {
                if let Some(n) = node.get(key)
                    && let Some(tpl) = ctx.template(key, n)
                {
                    check_args(ctx, key, &tpl, n);
                    if key == "cwd" && tpl.source.trim().is_empty() {
                        ctx.error(
                            "jobpool::bad-value",
                            "`cwd` is empty",
                            &n.loc,
                            "empty",
                            Some("leave `cwd` out to run in the current folder, or write e.g. cwd = \"work/{x}\"".into()),
                        );
                        continue;
                    }
                    if key == "cwd" {
                        cmd.cwd = Some(resolve_cwd(tpl, &ctx.dir));
                    } else {
                        cmd.stdin = Some(tpl);
                    }
                }
            }
            if let Some(n) = node.get("env")
                && let Some(entries) = table_or_error(ctx, "env", n, "env = { SEED = \"{seed}\" }")
            {
                for (k, v) in entries {
                    if k.name.is_empty() || k.name.contains(['=', '\0']) {
                        ctx.error(
                            "jobpool::bad-value",
                            format!("`{}` is not a usable environment variable name", k.name.escape_debug()),
                            &k.loc,
                            "not a variable name",
                            Some("a variable name is non-empty and has no `=` or NUL, e.g. env = { SEED = \"{seed}\" }".into()),
                        );
                        continue;
                    }
                    let key = format!("env.{}", k.name);
                    if let Some(tpl) = ctx.template(&key, v) {
                        check_args(ctx, &key, &tpl, v);
                        cmd.env.push((k.name.clone(), tpl));
                    }
                }
            }
            if let Some(n) = node.get("output") {
                cmd.output = match ctx.choice("output", n, &["text", "json", "lines", "none"]) {
                    Some("json") => OutputMode::Json,
                    Some("lines") => OutputMode::Lines,
                    Some("none") => OutputMode::None,
                    _ => OutputMode::Text,
                };
            }
            if let Some(n) = node.get("success-codes") {
                match &n.kind {
                    NodeKind::Array(items) if !items.is_empty() => {
                        cmd.success_codes.clear();
                        for item in items {
                            if let NodeKind::Str(text) = &item.kind {
                                ctx.error(
                                    "jobpool::wrong-type",
                                    "every item of `success-codes` must be an integer, not a string",
                                    &item.loc,
                                    "a string here",
                                    Some(format!(
                                        "write exit codes without quotes, e.g. success-codes = [0, {}]",
                                        text.trim().parse::<u8>().unwrap_or(1)
                                    )),
                                );
                                continue;
                            }
                            if let Some(c) =
                                ctx.bounded("success-codes", item, 0, 255, "success-codes = [0, 1]")
                            {
                                cmd.success_codes.push(c as i32);
                            }
                        }
                    }
                    NodeKind::Array(_) => ctx.error(
                        "jobpool::bad-value",
                        "`success-codes` is empty",
                        &n.loc,
                        "no exit code would succeed",
                        Some("for example: success-codes = [0]".into()),
                    ),
                    _ => ctx.wrong_type(
                        "success-codes",
                        n,
                        "an array of exit codes",
                        "success-codes = [0, 1]",
                    ),
                }
            }
            cmd.invocation = invocation?;
            Some(TaskTemplate::Command(cmd))
        }
        "script" => {
            check_task_keys(ctx, t, Some("script"));
            match (node.get("script"), node.get("file")) {
                (Some(s), Some(f)) => {
                    let p = Problem::at(
                        ctx.sources,
                        "jobpool::script-or-file",
                        "a `script` task has both `script` and `file`",
                        &f.loc,
                        "`file` here",
                    )
                    .label(ctx.sources, &s.loc, "`script` here")
                    .help("keep one: `script` is inline Rhai, `file` names a .rhai file");
                    ctx.push(p);
                    None
                }
                (None, None) => {
                    ctx.error(
                        "jobpool::script-or-file",
                        "a `script` task needs `script` or `file`",
                        &kind_node.loc,
                        "script task",
                        Some("add script = \"x * x\" or file = \"tasks/score.rhai\"".into()),
                    );
                    None
                }
                (Some(s), None) => {
                    let source = ctx.string("script", s, "script = \"x * x\"")?;
                    if source.trim().is_empty() {
                        ctx.error(
                            "jobpool::bad-value",
                            "`script` is empty",
                            &s.loc,
                            "no script",
                            Some("write the Rhai expression whose value is the result, e.g. script = \"x * x\"".into()),
                        );
                        return None;
                    }
                    if let Err(e) = super::script::check_syntax(&source) {
                        let within = e.line.map_or(0..source.len(), |l| {
                            super::script::offset_of(&source, l, e.column.unwrap_or(1))
                        });
                        let loc = ctx.sources.inner_loc(s, within);
                        ctx.error(
                            "jobpool::script-syntax",
                            format!("syntax error in `script`: {}", e.message),
                            &loc,
                            "here",
                            Some(SCRIPT_HELP.into()),
                        );
                        return None;
                    }
                    Some(TaskTemplate::Script(ScriptTask { source, file: None }))
                }
                (None, Some(f)) => {
                    let rel = non_empty(ctx, "file", f, "file = \"tasks/score.rhai\"")?;
                    let path = ctx.dir.join(&rel);
                    match std::fs::read_to_string(&path) {
                        Ok(source) => {
                            if let Err(e) = super::script::check_syntax(&source) {
                                let span = e.line.map_or(0..0, |l| {
                                    super::script::offset_of(&source, l, e.column.unwrap_or(1))
                                });
                                // Named as the user would write it from where they are.
                                let name = if ctx.dir == Path::new(".") {
                                    PathBuf::from(&rel)
                                } else {
                                    path.clone()
                                };
                                let p = Problem::in_file(
                                    "jobpool::script-syntax",
                                    format!(
                                        "syntax error in script file {}: {}",
                                        name.display(),
                                        e.message
                                    ),
                                    &name.display().to_string(),
                                    &source,
                                    span,
                                    "here",
                                )
                                .help(SCRIPT_HELP);
                                ctx.push(p);
                                return None;
                            }
                            Some(TaskTemplate::Script(ScriptTask { source, file: Some(path) }))
                        }
                        Err(e) => {
                            ctx.error(
                                "jobpool::missing-file",
                                format!("cannot read script file {}: {e}", path.display()),
                                &f.loc,
                                "this file",
                                Some("the path is relative to the job file's folder".into()),
                            );
                            None
                        }
                    }
                }
            }
        }
        other if ctx.kinds.iter().any(|k| k == other) => {
            check_task_keys(ctx, t, Some(other));
            Some(TaskTemplate::Registered { kind: other.to_string() })
        }
        other => {
            check_task_keys(ctx, t, None);
            let kinds: Vec<&str> = ctx.kinds.iter().map(String::as_str).collect();
            let help = match suggest(other, kinds.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? known kinds: {}", one_of(&kinds)),
                None => format!("known kinds: {} (see `jobpool kinds`)", one_of(&kinds)),
            };
            ctx.error(
                "jobpool::unknown-kind",
                if other.trim().is_empty() {
                    "`kind` is empty".to_string()
                } else {
                    format!("unknown task kind `{other}`")
                },
                &kind_node.loc,
                if other.trim().is_empty() { "empty" } else { "unknown kind" },
                Some(help),
            );
            None
        }
    }
}

fn sinks(ctx: &mut Ctx, node: &Node, names: &[String], args_ok: bool) -> Vec<SinkConfig> {
    let items: Vec<&Node> = match &node.kind {
        NodeKind::Array(items) => items.iter().collect(),
        NodeKind::Table(_) => {
            ctx.error(
                "jobpool::wrong-type",
                "`sink` must be an array of tables: write `[[sink]]`, not `[sink]`",
                &node.loc,
                "a single table",
                Some("write [[sink]] (double brackets); a job may have several".into()),
            );
            return Vec::new();
        }
        _ => {
            ctx.wrong_type(
                "sink",
                node,
                "an array of tables (`[[sink]]`)",
                "[[sink]]\nto = \"stdout\"",
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for item in items {
        let Some(t) =
            table_or_error(ctx, "sink", item, "each sink is a `[[sink]]` table with `to`")
        else {
            continue;
        };
        ctx.check_keys(t, keys::SINK, "a `[[sink]]`");
        let to = match item.get("to") {
            None => {
                ctx.error(
                    "jobpool::missing-key",
                    "a `[[sink]]` has no `to`",
                    &item.loc,
                    "this sink",
                    Some(
                        "add to = \"stdout\" or a path such as to = \"results/{name}.csv\"".into(),
                    ),
                );
                None
            }
            Some(n) => match ctx.template("to", n) {
                Some(t) if t.source == "stdout" => Some(SinkTarget::Stdout),
                Some(t)
                    if ["-", "/dev/stdout", "stderr", "/dev/stderr"].contains(&t.source.trim())
                        || t.source.trim().eq_ignore_ascii_case("stdout") =>
                {
                    let help = if t.source.contains("err") {
                        "records go to stdout or to files; diagnostics and the summary go to \
                         stderr. Write to = \"stdout\" or a path"
                    } else {
                        "write to = \"stdout\" (lowercase), or a path such as \"results/{name}.csv\""
                    };
                    ctx.error(
                        "jobpool::bad-value",
                        format!("`to = \"{}\"` is not a sink target", t.source),
                        &n.loc,
                        "did you mean \"stdout\"?",
                        Some(help.into()),
                    );
                    None
                }
                Some(t) if t.source.trim().is_empty() => {
                    ctx.error(
                        "jobpool::bad-value",
                        "`to` is empty",
                        &n.loc,
                        "empty",
                        Some("write to = \"stdout\" or a path".into()),
                    );
                    None
                }
                Some(t) => {
                    let allowed = |p: &str| p == "name" || p == "run";
                    ctx.placeholders("to", &t, n, &allowed, &["name".into(), "run".into()]);
                    Some(SinkTarget::Path(t))
                }
                None => None,
            },
        };
        let format = match item.get("format") {
            None => Some("text"),
            Some(n) => ctx.choice("format", n, &["text", "jsonl", "json", "csv"]),
        };
        let template = match item.get("template") {
            Some(n) if format.is_some_and(|f| f != "text") => {
                ctx.error(
                    "jobpool::bad-value",
                    format!(
                        "`template` is only for `format = \"text\"`, not `{}`",
                        format.unwrap_or("")
                    ),
                    &n.loc,
                    "not used by this format",
                    Some("remove `template`, or use format = \"text\"".into()),
                );
                None
            }
            Some(n) => {
                let tpl = ctx.template("template", n);
                if let Some(tpl) = &tpl
                    && args_ok
                {
                    let mut choices: Vec<String> =
                        FIELD_NAMES.iter().map(|s| s.to_string()).collect();
                    choices.extend(names.iter().cloned());
                    choices.extend(names.iter().map(|n| format!("args.{n}")));
                    let allowed = |p: &str| {
                        FIELD_NAMES.contains(&p)
                            || names.iter().any(|n| n == p)
                            || p.strip_prefix("args.").is_some_and(|a| names.iter().any(|n| n == a))
                            || p.parse::<usize>().is_ok_and(|i| i < names.len())
                    };
                    ctx.placeholders("template", tpl, n, &allowed, &choices);
                }
                tpl
            }
            None => Some(value_template()),
        };
        let format = match format {
            Some("jsonl") => Some(SinkFormat::Jsonl),
            Some("json") => Some(SinkFormat::Json),
            Some("csv") => Some(SinkFormat::Csv),
            Some(_) => template.map(SinkFormat::Text),
            None => None,
        };
        if let (Some(to), Some(format)) = (to, format) {
            out.push(SinkConfig { to, format });
        }
    }
    out
}

/// A string that is not empty or blank.
fn non_empty(ctx: &mut Ctx, key: &str, node: &Node, example: &str) -> Option<String> {
    let s = ctx.string(key, node, example)?;
    if s.trim().is_empty() {
        ctx.error(
            "jobpool::bad-value",
            format!("`{key}` is empty"),
            &node.loc,
            "empty",
            Some(if key == "file" {
                format!("name a Rhai file relative to the job file, e.g. {example}")
            } else {
                format!("leave `{key}` out for the default, or write e.g. {example}")
            }),
        );
        return None;
    }
    Some(s)
}

fn slurm(ctx: &mut Ctx, node: &Node) -> Option<SlurmConfig> {
    let t = table_or_error(ctx, "slurm", node, "write a `[slurm]` table")?;
    ctx.check_keys(t, keys::SLURM, "`[slurm]`");
    let mut s = SlurmConfig::default();
    if let Some(n) = node.get("partition") {
        s.partition = non_empty(ctx, "partition", n, "partition = \"batch\"");
    }
    if let Some(n) = node.get("array-limit") {
        s.array_limit =
            ctx.bounded("array-limit", n, 1, u32::MAX as i64, "array-limit = 50").map(|v| v as u32);
    }
    if let Some(n) = node.get("per-element") {
        s.per_element =
            ctx.bounded("per-element", n, 1, i64::MAX, "per-element = 1000").map(|v| v as u64);
    }
    if let Some(n) = node.get("time-limit") {
        s.time_limit = ctx.duration("time-limit", n);
    }
    if let Some(n) = node.get("sbatch-args") {
        s.sbatch_args =
            string_list(ctx, "sbatch-args", n, "sbatch-args = [\"--mem=4G\"]").unwrap_or_default();
    }
    if let Some(n) = node.get("shared-dir") {
        s.shared_dir = non_empty(ctx, "shared-dir", n, "shared-dir = \"/scratch/me/jobpool\"")
            .map(PathBuf::from);
    }
    Some(s)
}
