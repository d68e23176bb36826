//! The general reader of a job document's values: what every table's validator uses.
//!
//! Owns: [`Ctx`] (what the walk knows and the problems found so far) with its typed
//! getters (strings, bounded integers, durations, choices, templates, placeholders) and
//! the unknown-key check with its "did you mean", and small shared readers
//! ([`table_or_error`], [`string_list`], [`non_empty`]). Each getter reports a mistake
//! as a [`Problem`] labelled on the exact value and returns `None`, so that the walk goes
//! on and a user sees every problem at once.
//! Must not: know what a particular key means (that is the per-table validators: `job`,
//! `task`, `sink`, `slurm`, `args`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{Problem, one_of, suggest};
use super::template;
use crate::model::Template;
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
    /// The argument names of the registered kinds that declare them.
    pub kind_args: std::collections::BTreeMap<String, super::KindArgs>,
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
        Ctx {
            sources,
            problems: Vec::new(),
            dir,
            path: path.to_path_buf(),
            kinds,
            kind_args: Default::default(),
        }
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

fn list_braced(choices: &[String]) -> String {
    let v: Vec<String> = choices.iter().map(|c| format!("{{{c}}}")).collect();
    v.join(", ")
}

pub(super) fn table_or_error<'n>(
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

pub(super) fn string_list(
    ctx: &mut Ctx,
    key: &str,
    node: &Node,
    example: &str,
) -> Option<Vec<String>> {
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

/// A string that is not empty or blank.
pub(super) fn non_empty(ctx: &mut Ctx, key: &str, node: &Node, example: &str) -> Option<String> {
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
