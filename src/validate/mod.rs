//! Job file → [`model::Job`], collecting ALL problems of a file at once.
//!
//! Owns: [`load`] (read, apply `--set` overrides, check, build the model), [`collect`]
//! (files and folders of `*.toml`, passing over a folder's TOML files that are not jobs), and the diagnostics ([`JobFileError`], [`Problem`]).
//! The walk is over a spanned document tree ([`crate::source::Node`]) rather than serde,
//! so that one run reports every mistake with a label on the exact value. The accepted
//! keys are exactly those of the serde types in [`crate::spec`] (a test keeps them equal).
//! Must not: run tasks, print, or exit.
//!
//! The parts: `read` (the value reader every table uses: typed getters, spans, "did you
//! mean"), then one validator per table: `job` (the top level and the walk's order),
//! `args`, `task`, `sink`, `slurm`; [`script`] (a script's syntax, shared with the
//! worker's engine), [`template`] (`{placeholder}` strings), `error` (the diagnostics).

mod args;
mod error;
mod job;
mod read;
pub mod script;
mod sink;
mod slurm;
mod task;
pub mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::{JobFileError, Problem};

use crate::model;
use crate::source::{self, Key, Loc, Node, NodeKind, Sources};

/// How to load a job file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Task kinds the program registered beyond `command` and `script`
    /// (`Registry::kinds()`; the built-ins may be included or not).
    pub kinds: Vec<String>,
    /// The argument names of those kinds that declare them (`Registry::arg_names`), by
    /// kind: a job's `[args]` must give each name that is not optional, and no other.
    /// A kind not in the map takes any arguments (nothing can be checked).
    pub kind_args: BTreeMap<String, KindArgs>,
    /// Raw `KEY=VALUE` overrides from `--set`, applied before validation.
    pub overrides: Vec<String>,
}

/// The arguments a registered kind takes by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindArgs {
    /// Every argument, in order.
    pub names: Vec<String>,
    /// Those of `names` that may be left out.
    pub optional: Vec<String>,
}

/// Read, override, validate: the job of `path`, or every problem of the file.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<model::Job, JobFileError> {
    let bytes = std::fs::read(path).map_err(|e| JobFileError {
        path: path.to_path_buf(),
        problems: vec![
            Problem::bare("jobpool::io", format!("cannot read {}: {e}", path.display()))
                .help("check the path; `jobpool check` takes files and folders of *.toml"),
        ],
    })?;
    match String::from_utf8(bytes) {
        Ok(text) => load_str(path, &text, opts),
        Err(e) => {
            // Point at the first byte that is not UTF-8, in a lossy copy of the text (its
            // prefix up to there is unchanged).
            let at = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let sources = Sources::new(&path.display().to_string(), &text);
            let p = Problem::at(
                &sources,
                "jobpool::syntax",
                "the file is not valid UTF-8",
                &Loc { origin: 0, span: at..at + '\u{fffd}'.len_utf8() },
                "not UTF-8",
            )
            .help("TOML files are UTF-8: save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)");
            Err(JobFileError { path: path.to_path_buf(), problems: vec![p] })
        }
    }
}

/// A help line for a TOML syntax error, from toml's message.
fn syntax_help(message: &str) -> &'static str {
    let m = message;
    if m.contains("duplicate key") {
        "each key may appear only once in a table, and each `[table]` header once"
    } else if m.contains("carriage return") {
        "the file has a carriage return (\\r) without a newline: save it with \\n or \\r\\n \
         line endings"
    } else if m.contains("escape") {
        "in \"...\" strings a backslash starts an escape: write `\\\\` for a backslash, or \
         use a '...' literal string"
    } else if m.contains("unquoted key") {
        "bare keys are ASCII letters, digits, `-` and `_`; quote any other key: \"wörkers\" = 1"
    } else if m.contains("basic string") || m.contains("literal string\"") {
        "close the string on the same line; for text over several lines use \"\"\"...\"\"\""
    } else if m.contains("must be quoted") {
        "a value is missing or not quoted after `=`: write e.g. key = \"text\", key = 4, \
         key = [1, 2]"
    } else if m.contains("expected `=`") {
        "write `key = value` (TOML uses `=`, not `:`)"
    } else if m.contains("missing comma") {
        "separate the items of an array with commas: [1, 2, 3]"
    } else if m.contains("unclosed array table") {
        "close the header: `[[sink]]`"
    } else if m.contains("unclosed array") {
        "close the array with `]`; items are separated by commas"
    } else if m.contains("unclosed table") || m.contains("inline table") {
        "close the table: `[task]` for a header, `{ key = value, ... }` inline"
    } else if m.contains("extra `=`") {
        "write one `=` between a key and its value: workers = 4"
    } else if m.contains("recurs") {
        "the value is nested too deeply; flatten it"
    } else if m.contains("expected key") {
        "each line is `key = value`, a `[table]` header or a comment; TOML is not JSON or YAML"
    } else if m.contains("expected newline") {
        "put each `key = value` on its own line"
    } else {
        "this is not valid TOML here; see https://toml.io for the syntax"
    }
}

/// An array left open (`program = ["a", "b"` with no `]`) makes toml read every later
/// line as one more element: it reports "missing comma" at the next `key =` or `[table]`
/// line, then again at each line after it. That is one mistake: report it once, as an
/// unclosed array at the end of the line where the `]` is missing, and drop the cascade.
/// An array closed by the `}` of an inline table is reported at the `}`.
fn unclosed_cascade(text: &str, errors: Vec<source::SyntaxError>) -> Vec<source::SyntaxError> {
    let mut out = Vec::new();
    for mut e in errors {
        if e.message.contains("missing comma between array elements")
            && let Some(span) = e.span.clone()
            && let Some(rest) = text.get(span.start..)
        {
            let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
            let starts_line = text[line_start..span.start].trim().is_empty();
            let line = rest.lines().next().unwrap_or("").trim_end();
            if rest.starts_with('}') {
                e.message = "unclosed array, expected `]` before `}`".into();
                out.push(e);
                break;
            }
            if starts_line && (looks_like_header(line) || looks_like_key_value(line)) {
                // The end of the last line with content before it: where `]` belongs.
                let before = &text[..line_start];
                let end = before
                    .lines()
                    .scan(0, |at, l| {
                        let start = *at;
                        *at += l.len() + 1;
                        Some((start, l))
                    })
                    .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                    .last()
                    .map_or(0, |(start, l)| start + without_comment(l).trim_end().len());
                e.message = "unclosed array, expected `]`".into();
                e.span = Some(end..end);
                out.push(e);
                break;
            }
        }
        out.push(e);
    }
    out
}

/// A line up to its `#` comment (a `#` inside a one-line string is not one).
fn without_comment(line: &str) -> &str {
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some('"'), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(q), c) if c == q && !escaped => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => return &line[..i],
            _ => {}
        }
        escaped = false;
    }
    line
}

/// `[table]` or `[[table]]`, maybe followed by a comment.
fn looks_like_header(line: &str) -> bool {
    let l = line.trim();
    let inner = l.trim_start_matches('[');
    let Some(close) = inner.find(']') else { return false };
    let after = inner[close..].trim_start_matches(']').trim_start();
    l.starts_with('[')
        && looks_like_key_value(&format!("{} =", &inner[..close]))
        && (after.is_empty() || after.starts_with('#'))
}

/// `key = ...` (a bare or quoted, maybe dotted key).
fn looks_like_key_value(line: &str) -> bool {
    let Some((key, _)) = line.split_once('=') else { return false };
    let bare =
        |p: &str| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || "-_".contains(c));
    let quoted = |p: &str| {
        p.len() >= 2
            && ((p.starts_with('"') && p.ends_with('"'))
                || (p.starts_with('\'') && p.ends_with('\'')))
    };
    key.split('.').map(str::trim).all(|p| bare(p) || quoted(p))
}

/// [`load`] for a text already in memory (`path` names it and anchors relative paths).
pub fn load_str(path: &Path, text: &str, opts: &LoadOptions) -> Result<model::Job, JobFileError> {
    let mut sources = Sources::new(&path.display().to_string(), text);
    let fail = |problems| JobFileError { path: path.to_path_buf(), problems };
    let mut doc = match source::parse_document(text, 0) {
        Ok(doc) => doc,
        Err(errors) => {
            // toml recovers after an error, which often cascades on the same line: keep
            // the first error of each line.
            let line_of = |e: &source::SyntaxError| {
                let mut at = e.span.as_ref().map_or(0, |s| s.start.min(text.len()));
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text[..at].matches('\n').count()
            };
            let mut seen = std::collections::HashSet::new();
            let problems = unclosed_cascade(text, errors)
                .into_iter()
                .filter(|e| seen.insert(line_of(e)))
                .map(|e| {
                    let mut span = e.span.unwrap_or(0..0);
                    // A lone carriage return counts as a line break for the renderer but
                    // not for the editor: label the character before it instead.
                    let end = ((span.start + 1).min(text.len())..=text.len())
                        .find(|&i| text.is_char_boundary(i))
                        .unwrap_or(text.len());
                    if e.message.contains("carriage return")
                        && let Some(cr) = text[..end].rfind('\r')
                        && cr > 0
                    {
                        let prev = text[..cr].char_indices().next_back().map_or(0, |(i, _)| i);
                        span = prev..cr;
                    }
                    Problem::at(
                        &sources,
                        "jobpool::syntax",
                        format!("invalid TOML: {}", e.message.trim_end()),
                        &Loc { origin: 0, span: span.clone() },
                        "here",
                    )
                    .help(
                        match text[span.start.min(text.len())..].chars().next() {
                            Some(c) if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {
                                "the file holds a control character here (shown as is or \
                                 not at all): remove it"
                            }
                            _ => syntax_help(&e.message),
                        },
                    )
                })
                .collect();
            return Err(fail(problems));
        }
    };
    let mut problems = Vec::new();
    for raw in &opts.overrides {
        if let Err(p) = apply_override(&mut doc, &mut sources, raw) {
            problems.push(p);
        }
    }
    let mut ctx = read::Ctx::new(&sources, path, &opts.kinds);
    ctx.problems = problems;
    ctx.kind_args = opts.kind_args.clone();
    let job = job::job(&mut ctx, &doc);
    match job {
        Some(job) if ctx.problems.is_empty() => Ok(job),
        _ => {
            let mut problems = ctx.problems;
            // In the order of the sources (file, then each --set), then of the text.
            problems.sort_by_key(|p| p.sort_key());
            if problems.is_empty() {
                problems.push(Problem::bare("jobpool::invalid-job", "the job file is invalid"));
            }
            Err(fail(problems))
        }
    }
}

/// Apply one `--set KEY=VALUE` to the document. The value is parsed as TOML, and taken
/// as a plain string when it does not parse. Its nodes point into a source named
/// `--set KEY=VALUE`, so later diagnostics say where the value came from.
#[allow(clippy::result_large_err)] // one per --set, not a hot path
fn apply_override(doc: &mut Node, sources: &mut Sources, raw: &str) -> Result<(), Problem> {
    let name = format!("--set {raw}");
    let origin = sources.push(&name, raw);
    let Some((key, value)) = raw.split_once('=') else {
        return Err(Problem::at(
            sources,
            "jobpool::override",
            format!("`--set {raw}` is not of the form KEY=VALUE"),
            &Loc { origin, span: 0..raw.len() },
            "no `=`",
        )
        .help("write e.g. `--set workers=4` or `--set args.seed=[1,2,3]`"));
    };
    let key_loc = Loc { origin, span: 0..key.len() };
    let path: Vec<&str> = key.split('.').map(str::trim).collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(Problem::at(
            sources,
            "jobpool::override",
            format!("`--set {raw}` has an empty key"),
            &key_loc,
            "this key",
        )
        .help("a key is a dotted path: `workers`, `task.script`, `args.seed`"));
    }
    let offset = key.len() + 1;
    let value_loc = Loc { origin, span: offset..raw.len() };
    let parsed = source::parse_value(
        value.trim(),
        offset + (value.len() - value.trim_start().len()),
        origin,
    );
    // A value that starts like an array, a table or a quoted string was meant as TOML: a
    // typo there must not silently become a plain string.
    if parsed.is_none() && value.trim_start().starts_with(['[', '{', '"', '\'']) {
        return Err(Problem::at(
            sources,
            "jobpool::override",
            format!("the value of `--set {key}=...` is not valid TOML"),
            &value_loc,
            "not TOML",
        )
        .help("close the brackets and quotes, e.g. `--set args.seed=[1,2,3]`; quote the whole argument for the shell"));
    }
    let node = parsed.unwrap_or(Node { kind: NodeKind::Str(value.to_string()), loc: value_loc });
    let mut table = doc;
    for (i, part) in path.iter().enumerate() {
        let NodeKind::Table(entries) = &mut table.kind else {
            return Err(Problem::at(
                sources,
                "jobpool::override",
                format!("cannot set `{key}`: `{}` is not a table", path[..i].join(".")),
                &key_loc,
                "this key",
            )
            .help("only keys inside tables can be set (not inside `[[sink]]` arrays)"));
        };
        let last = i + 1 == path.len();
        let pos = entries.iter().position(|(k, _)| k.name == *part);
        let pos = match pos {
            Some(pos) => pos,
            None => {
                let fresh = Node { kind: NodeKind::Table(Vec::new()), loc: key_loc.clone() };
                entries.push((Key { name: part.to_string(), loc: key_loc.clone() }, fresh));
                entries.len() - 1
            }
        };
        if last {
            entries[pos].0.loc = key_loc.clone();
            entries[pos].1 = node.clone();
            break;
        }
        table = &mut entries[pos].1;
    }
    Ok(())
}

/// Error of [`collect`].
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CollectError {
    /// A path given on the command line does not exist.
    #[error("{} does not exist", .0.display())]
    #[diagnostic(code(jobpool::io), help("give job files or folders of *.toml files"))]
    NotFound(PathBuf),
    /// A folder could not be listed.
    #[error("cannot read folder {}", .0.display())]
    #[diagnostic(code(jobpool::io))]
    ReadDir(PathBuf, #[source] std::io::Error),
    /// A folder holds no `*.toml` file.
    #[error("folder {} holds no *.toml file", .0.display())]
    #[diagnostic(code(jobpool::io), help("job files end in .toml"))]
    EmptyDir(PathBuf),
    /// A folder's `*.toml` files are all something else (`Cargo.toml`, ...).
    #[error("folder {} holds no job file", .0.display())]
    #[diagnostic(
        code(jobpool::io),
        help("a job file has a `[task]` table; the *.toml files there have no job key")
    )]
    NoJobFile(PathBuf),
}

/// The job files named on the command line, and the files of its folders that were
/// passed over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// Job files, in command-line order (a folder's sorted).
    pub jobs: Vec<PathBuf>,
    /// `*.toml` files of folders that are not job files (see [`is_job_file`]), for a
    /// one-line note each.
    pub skipped: Vec<PathBuf>,
}

/// Expand the command line's `JOB...`: a file stays as is (it is checked as a job file,
/// whatever it holds); a folder gives every `*.toml` directly in it that is a job file
/// ([`is_job_file`]), sorted, and lists the others in [`Collected::skipped`]. Order is
/// kept otherwise.
pub fn collect(paths: &[PathBuf]) -> Result<Collected, CollectError> {
    let mut out = Collected::default();
    for path in paths {
        if path.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|e| CollectError::ReadDir(path.clone(), e))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
                .collect();
            if found.is_empty() {
                return Err(CollectError::EmptyDir(path.clone()));
            }
            found.sort();
            let (jobs, others): (Vec<PathBuf>, Vec<PathBuf>) =
                found.into_iter().partition(|p| is_job_file(p));
            if jobs.is_empty() {
                return Err(CollectError::NoJobFile(path.clone()));
            }
            out.jobs.extend(jobs);
            out.skipped.extend(others);
        } else if path.exists() {
            out.jobs.push(path.clone());
        } else {
            return Err(CollectError::NotFound(path.clone()));
        }
    }
    Ok(out)
}

/// Whether a `*.toml` file found in a folder is a job file: it has at least one top-level
/// key of the job format ([`crate::spec::keys::TOP`]) other than the generic `name` and
/// `description`, so that a job missing its `[task]` by mistake (`workers = 0` alone) is
/// still checked and reported. Other TOML files (`Cargo.toml`, `pyproject.toml`,
/// `rustfmt.toml`, an empty file) are passed over. A file that cannot be read or is not
/// valid TOML counts as a job file, so that its problem is reported, not hidden.
pub fn is_job_file(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else { return true };
    let Ok(doc) = source::parse_document(&text, 0) else { return true };
    doc.as_table().unwrap_or(&[]).iter().any(|(k, _)| {
        crate::spec::keys::TOP.contains(&k.name.as_str())
            && !matches!(k.name.as_str(), "name" | "description")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Invocation, TaskTemplate, TemplatePart};

    fn load_text(path: &str, text: &str, overrides: &[&str]) -> Result<model::Job, JobFileError> {
        let opts = LoadOptions {
            kinds: vec!["custom".into()],
            overrides: overrides.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        load_str(Path::new(path), text, &opts)
    }

    /// Found by the fuzz test: a syntax error next to a multi-byte character (and a
    /// lone carriage return after one) sliced the text inside a character.
    #[test]
    fn syntax_errors_next_to_multibyte_characters_do_not_panic() {
        for text in [
            "name = \"x\"\ré = 1\n",
            "é\r",
            "a = é\n",
            "[task]\nkind = \"script\"\nscript = \"1\"\né\r\n",
            "x = 1\rééé",
            "é = \"\r\"",
            "\"é\r",
        ] {
            let err = load_text("m.toml", text, &[]).expect_err(text);
            assert!(!err.problems.is_empty(), "{text:?}");
            let _ = crate::cli::diag::render_with(&err, crate::cli::diag::Style::Plain);
        }
    }

    /// An array without its `]` made toml report "missing comma" at every later line.
    #[test]
    fn an_unclosed_array_is_one_problem_where_the_bracket_is_missing() {
        let cases = [
            (
                "[task]\nkind = \"command\"\nprogram = [\"echo\", \"{x}\"\n\n[args]\nx = [1, 2]\n",
                "\"{x}\"",
            ),
            ("x = [1, 2 # two\n# note\ny = 3\n[task]\nkind = \"script\"\nscript = \"x\"\n", "2"),
        ];
        for (text, before) in cases {
            let err = load_text("a.toml", text, &[]).unwrap_err();
            assert_eq!(err.problems.len(), 1, "{text:?}: {:?}", err.problems);
            let p = &err.problems[0];
            assert_eq!(p.message, "invalid TOML: unclosed array, expected `]`");
            let at = p.labels[0].offset();
            assert!(text[..at].ends_with(before), "{text:?} at {at}");
        }
        // A genuine missing comma inside an array stays one.
        let err = load_text("a.toml", "x = [\"p\"\n\"a=b\"]\n", &[]).unwrap_err();
        assert!(err.problems[0].message.contains("missing comma"), "{:?}", err.problems);
    }

    #[test]
    fn defaults_are_applied() {
        let job = load_text("jobs/sim.toml", "[task]\nkind = \"custom\"\n", &[]).unwrap();
        assert_eq!(job.name, "sim");
        assert_eq!(job.dir, Path::new("jobs"));
        assert_eq!(job.workers, None);
        assert_eq!(job.limits, model::Limits::default());
        assert_eq!(job.sinks.len(), 1);
        assert_eq!(job.sinks[0].to, model::SinkTarget::Stdout);
        assert_eq!(job.args.form, model::ArgForm::Single);
        assert_eq!(job.task, TaskTemplate::Registered { kind: "custom".into() });
    }

    #[test]
    fn every_key_reaches_the_model() {
        let text = r#"
name = "n"
description = "d"
workers = 3
timeout = "1h 5m"
task-timeout = "250ms"
grace-period = "2s"
retries = 4
retry-on = ["timeout", "crashed"]
on-failure = "stop"
max-failures = "2.5 %"
order = "completion"
chunk-size = 16
max-tasks-per-worker = 9
backend = "slurm"
watch = ["a/*.csv"]
[task]
kind = "command"
shell = "run {x} {0}"
cwd = "work/{x}"
env = { A = "{x}", B = "b" }
stdin = "{x}"
output = "lines"
success-codes = [0, 3]
[args]
x = [1]
[[sink]]
to = "out/{name}-{run}.csv"
format = "csv"
[slurm]
partition = "p"
array-limit = 5
per-element = 100
time-limit = "2h"
sbatch-args = ["--mem=1G"]
shared-dir = "/scratch"
"#;
        let job = load_text("jobs/x.toml", text, &[]).unwrap();
        assert_eq!(job.name, "n");
        assert_eq!(job.workers.map(|w| w.get()), Some(3));
        assert_eq!(job.limits.timeout, Some(std::time::Duration::from_secs(3900)));
        assert_eq!(job.limits.task_timeout, Some(std::time::Duration::from_millis(250)));
        assert_eq!(job.limits.grace_period, std::time::Duration::from_secs(2));
        assert_eq!(job.limits.retries, 4);
        assert_eq!(job.on_failure, model::OnFailure::Stop);
        let retry_on: Vec<model::Failure> = job.limits.retry_on.iter().collect();
        assert_eq!(retry_on, [model::Failure::Timeout, model::Failure::Crashed]);
        assert_eq!(job.max_failures, Some(model::MaxFailures::Percent(2.5)));
        assert_eq!(job.order, model::Order::Completion);
        assert_eq!(job.chunk_size, model::ChunkSize::Fixed(16.try_into().unwrap()));
        assert_eq!(job.max_tasks_per_worker, 9);
        assert_eq!(job.backend, model::Backend::Slurm);
        assert_eq!(job.watch, ["a/*.csv"]);
        let TaskTemplate::Command(c) = &job.task else { panic!("{:?}", job.task) };
        assert!(matches!(&c.invocation, Invocation::Shell(t) if t.source == "run {x} {0}"));
        let cwd = c.cwd.as_ref().unwrap();
        assert_eq!(cwd.parts[0], TemplatePart::Literal("jobs/work/".into()));
        assert_eq!(c.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(c.output, model::OutputMode::Lines);
        assert_eq!(c.success_codes, [0, 3]);
        assert_eq!(job.sinks[0].format, model::SinkFormat::Csv);
        let slurm = job.slurm.unwrap();
        assert_eq!(slurm.array_limit, Some(5));
        assert_eq!(slurm.per_element, Some(100));
        assert_eq!(slurm.time_limit, Some(std::time::Duration::from_secs(7200)));
        assert_eq!(slurm.sbatch_args, ["--mem=1G"]);
    }

    #[test]
    fn max_failures_and_retry_on_forms() {
        let text = "[task]\nkind = \"script\"\nscript = \"1\"\n";
        let job = load_text("a.toml", text, &["max-failures=3", "retry-on=[\"error\"]"]).unwrap();
        assert_eq!(job.max_failures, Some(model::MaxFailures::Count(3)));
        assert_eq!(job.limits.retry_on.iter().collect::<Vec<_>>(), [model::Failure::Error]);
        let job = load_text("a.toml", text, &["max-failures=\"100%\""]).unwrap();
        assert_eq!(job.max_failures, Some(model::MaxFailures::Percent(100.0)));
        let job = load_text("a.toml", text, &[]).unwrap();
        assert_eq!(job.max_failures, None);
        assert_eq!(job.limits.retry_on, model::RetryOn::ALL);
        // Every bad item of `retry-on` is reported.
        let err = load_text("a.toml", text, &["retry-on=[\"eror\", \"skipped\", 3]"]).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{:?}", err.problems);
        for bad in [
            "max-failures=\"0.0%\"",
            "max-failures=\"inf%\"",
            "max-failures=\"%\"",
            "max-failures=[1]",
        ] {
            assert!(load_text("a.toml", text, &[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn overrides_apply_before_validation() {
        let text = "[task]\nkind = \"script\"\nscript = \"x\"\n";
        let job = load_text("a.toml", text, &["workers=2", "args.x=[1, 2]", "task.script=x * 2"])
            .unwrap();
        assert_eq!(job.workers.map(|w| w.get()), Some(2));
        assert_eq!(job.args.names, ["x"]);
        assert!(matches!(&job.task, TaskTemplate::Script(s) if s.source == "x * 2"));
        let job = load_text("a.toml", text, &["timeout=30s", "workers=auto"]).unwrap();
        assert_eq!(job.limits.timeout, Some(std::time::Duration::from_secs(30)));
        let err = load_text("a.toml", text, &["workers=0", "retries=x"]).unwrap_err();
        assert_eq!(err.problems.len(), 2);
        assert!(
            err.problems.iter().all(|p| p.source.as_ref().unwrap().name().starts_with("--set "))
        );
    }

    #[test]
    fn collect_expands_folders_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.toml", "a.toml", "notes.txt"] {
            std::fs::write(dir.path().join(f), "[task]\n").unwrap();
        }
        let got = collect(&[dir.path().to_path_buf()]).unwrap().jobs;
        assert_eq!(got, [dir.path().join("a.toml"), dir.path().join("b.toml")]);
        assert!(matches!(collect(&[dir.path().join("none.toml")]), Err(CollectError::NotFound(_))));
    }

    #[test]
    fn a_folder_passes_over_toml_files_that_are_not_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            ("Cargo.toml", "[package]\nname = \"x\"\n[dependencies]\n"),
            ("pyproject.toml", "[project]\nname = \"x\"\n[tool.ruff]\nline-length = 100\n"),
            ("rustfmt.toml", "max_width = 100\n"),
            ("wrangler.toml", "name = \"site\"\nmain = \"index.js\"\n"),
            ("workers-only.toml", "workers = 0\n"),
            ("empty.toml", ""),
            ("job.toml", "[task]\nkind = \"script\"\nscript = \"1\"\n"),
            ("no-task.toml", "workers = 2\n[args]\nx = [1]\n"),
            ("broken.toml", "[task\n"),
        ];
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let got = collect(&[dir.path().to_path_buf()]).unwrap();
        let names = |v: &[PathBuf]| -> Vec<String> {
            v.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
        };
        assert_eq!(
            names(&got.jobs),
            ["broken.toml", "job.toml", "no-task.toml", "workers-only.toml"]
        );
        assert_eq!(
            names(&got.skipped),
            ["Cargo.toml", "empty.toml", "pyproject.toml", "rustfmt.toml", "wrangler.toml"]
        );
        // Named on its own, any file is checked as a job.
        let cargo = dir.path().join("Cargo.toml");
        assert_eq!(collect(std::slice::from_ref(&cargo)).unwrap().jobs, [cargo]);
        // A folder of other TOML files only holds no job.
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("Cargo.toml"), "[package]\n").unwrap();
        assert!(matches!(collect(&[other.path().to_path_buf()]), Err(CollectError::NoJobFile(_))));
    }

    /// Loads `text` for kinds `point` (`x`, `y`, optional `z`) and `free` (undeclared);
    /// returns each problem as `code: message | help`.
    fn declared_problems(text: &str, overrides: &[&str]) -> Vec<String> {
        let mut kind_args = BTreeMap::new();
        kind_args.insert(
            "point".to_string(),
            KindArgs {
                names: vec!["x".into(), "y".into(), "z".into()],
                optional: vec!["z".into()],
            },
        );
        let opts = LoadOptions {
            kinds: vec!["point".into(), "free".into()],
            kind_args,
            overrides: overrides.iter().map(|s| s.to_string()).collect(),
        };
        match load_str(Path::new("t.toml"), text, &opts) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .problems
                .iter()
                .map(|p| format!("{}: {} | {}", p.code, p.message, p.help.as_deref().unwrap_or("")))
                .collect(),
        }
    }

    #[test]
    fn declared_argument_names_are_checked() {
        let ok = "[task]\nkind = \"point\"\n[args]\nx = [1]\ny = [2]\n";
        assert!(declared_problems(ok, &[]).is_empty());
        assert!(declared_problems(&format!("{ok}z = 3\n"), &[]).is_empty());
        // The issue's example: `yy` for `y`.
        assert_eq!(
            declared_problems("[task]\nkind = \"point\"\n[args]\nx = [1]\nyy = [10]\n", &[]),
            ["jobpool::unknown-argument: unknown argument `yy` for kind `point` | did you mean \
              `y`? `point` takes `x`, `y` and `z`"]
        );
        assert_eq!(
            declared_problems("[task]\nkind = \"point\"\n[args]\nx = [1]\n", &[]),
            ["jobpool::missing-argument: missing argument `y` for kind `point` | add it to \
              `[args]`, e.g. y = [1, 2]\n`point` takes `x`, `y` and `z` (`z` may be left out)"]
        );
        // From --set too, pointing there.
        let e = declared_problems(ok, &["args.w=1"]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("jobpool::unknown-argument: unknown argument `w`"), "{e:?}");
        // A kind that declares nothing takes anything.
        assert!(declared_problems("[task]\nkind = \"free\"\n[args]\nq = [1]\n", &[]).is_empty());
    }
}
