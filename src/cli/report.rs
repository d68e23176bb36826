//! `jobpool report` and `jobpool runs`: find runs on disk, then hand them to
//! [`crate::report`] (summary, comparison, formats) or [`crate::store`] (listing,
//! pruning). Also the `--report FORMAT=PATH` option of `jobpool run`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use super::diag;
use super::exit_code::{INVALID, OK, TASK_FAILED};
use super::frontend::{RunProblem, say};
use crate::pool::Registry;
use crate::report::{self, Format, RunSource};
use crate::store::{self, RunDir, RunState};
use crate::validate;

/// Arguments of `jobpool report`.
#[derive(Debug, Args)]
#[command(after_help = "RUN is a run folder, a run id, a job file (its latest run) or a JSON-lines
file of records; default: the latest run under ./.jobpool/.

Examples:
  jobpool report                          # the latest run here, as Markdown
  jobpool report sweep.toml -o report.html
  jobpool report --format junit -o junit.xml
  jobpool report --compare previous       # what changed since the run before
  jobpool report --compare 20261126T140455Z-3f9a 20261127T091500Z-0b1c")]
pub struct ReportArgs {
    /// The run to report on.
    #[arg(value_name = "RUN")]
    run: Option<String>,
    /// md (GitHub tables), html (one offline page with charts), json, junit (XML).
    /// Default: from the extension of -o, else md.
    #[arg(long, short, value_name = "FORMAT", value_parser = parse_format)]
    format: Option<Format>,
    /// Write to FILE instead of stdout (atomically: a reader never sees half a report).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Compare with another run, by content key: `--compare BASE` (or `previous`: the
    /// run before RUN), or `--compare BASE NEW`.
    #[arg(long, value_name = "RUN", num_args = 1..=2)]
    compare: Vec<String>,
    /// Print the JSON Schema of `--format json` and exit.
    #[arg(long, conflicts_with_all = ["run", "compare"])]
    schema: bool,
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::from_name(s).ok_or_else(|| format!("unknown format `{s}`; use md, html, json or junit"))
}

/// Arguments of `jobpool runs`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  jobpool runs                 # every job's runs under ./.jobpool/
  jobpool runs sweep.toml
  jobpool runs sweep.toml --prune 5

--prune never drops an `ok` record that `jobpool run --resume` would still take: those of
removed runs whose key has no `ok` in a kept run are kept in one compacted folder.")]
pub struct RunsArgs {
    /// A job file, or a folder (default: the current folder).
    #[arg(value_name = "JOB")]
    job: Option<PathBuf>,
    /// Keep the newest KEEP runs of each job and remove the others.
    #[arg(long, value_name = "KEEP")]
    prune: Option<usize>,
}

/// A problem finding a run: exit 2 with a diagnostic.
fn problem(what: String, help: Option<&str>) -> u8 {
    say(&diag::render(&RunProblem { what, help: help.map(str::to_string) }));
    INVALID
}

/// A job file's folder and name (its `name`, else its stem when it does not load).
fn job_of(path: &Path, registry: &Registry) -> (PathBuf, String) {
    let opts = super::load_options(registry, vec![]);
    match validate::load(path, &opts) {
        Ok(job) => (job.dir, job.name),
        Err(_) => (
            path.parent().map(Path::to_path_buf).unwrap_or_default(),
            path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        ),
    }
}

/// Every run under `dir/.jobpool/runs` (all jobs), oldest first, without the folders of
/// kept records.
fn runs_here(dir: &Path) -> std::io::Result<Vec<RunDir>> {
    let mut all: Vec<RunDir> = store::list_all_runs(dir)?
        .into_iter()
        .flat_map(|(_, runs)| runs)
        .filter(|r| !r.is_compacted())
        .collect();
    all.sort_by_cached_key(|r| {
        (r.info.as_ref().map(|i| i.started_at.clone()).unwrap_or_default(), r.id.clone())
    });
    Ok(all)
}

/// A reported run: where its records are, and its folder when it has one (for
/// `--compare previous`).
struct Found {
    source: RunSource,
    dir: Option<PathBuf>,
}

/// `RUN` as the user gave it (or the latest run here).
fn find(run: Option<&str>, registry: &Registry) -> Result<Found, (String, Option<&'static str>)> {
    let here = Path::new(".");
    let io = |e: std::io::Error| (format!("cannot read the runs under .jobpool/: {e}"), None);
    let Some(run) = run else {
        let latest = runs_here(here).map_err(io)?.pop().ok_or((
            "no runs here: ./.jobpool/runs/ has none".to_string(),
            Some("run a job first, or name a run folder, run id, job file or records file"),
        ))?;
        return Ok(Found { source: RunSource::run_dir(&latest.path), dir: Some(latest.path) });
    };
    let path = Path::new(run);
    if path.is_dir() {
        if path.join(store::RECORDS_FILE).is_file() {
            return Ok(Found { source: RunSource::run_dir(path), dir: Some(path.to_path_buf()) });
        }
        let latest = runs_here(path)
            .map_err(io)?
            .pop()
            .ok_or((format!("{run}: not a run folder, and has no runs under .jobpool/"), None))?;
        return Ok(Found { source: RunSource::run_dir(&latest.path), dir: Some(latest.path) });
    }
    if path.is_file() {
        if path.extension().is_some_and(|e| e == "toml") {
            let (dir, name) = job_of(path, registry);
            let latest = store::latest_run(&dir, &name).map_err(io)?.ok_or((
                format!("{run}: the job `{name}` has no runs yet"),
                Some("run it first: jobpool run JOB"),
            ))?;
            return Ok(Found { source: RunSource::run_dir(&latest.path), dir: Some(latest.path) });
        }
        let dir = (path.file_name().is_some_and(|n| n == store::RECORDS_FILE))
            .then(|| path.parent().map(Path::to_path_buf))
            .flatten();
        return Ok(Found { source: RunSource::records_file(path), dir });
    }
    // A run id (or a unique prefix of one) among the runs here.
    let runs = runs_here(here).map_err(io)?;
    let matches: Vec<&RunDir> = runs.iter().filter(|r| r.id.starts_with(run)).collect();
    match matches.as_slice() {
        [one] => Ok(Found { source: RunSource::run_dir(&one.path), dir: Some(one.path.clone()) }),
        [] => Err((
            format!("{run}: no such file, folder or run id"),
            Some("`jobpool runs` lists the runs here"),
        )),
        _ => Err((format!("{run}: more than one run id starts with it"), None)),
    }
}

/// The run before the one in `dir`, of the same job.
fn previous(dir: &Path) -> Result<Found, (String, Option<&'static str>)> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let job_dir = parent.parent().and_then(Path::parent).and_then(Path::parent);
    let job = parent.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let runs = job_dir
        .map(|d| store::list_runs(d, &job))
        .transpose()
        .map_err(|e| (format!("cannot list runs: {e}"), None))?
        .unwrap_or_default();
    let runs: Vec<&RunDir> = runs.iter().filter(|r| !r.is_compacted()).collect();
    let at = runs.iter().position(|r| r.id == id);
    match at {
        Some(i) if i > 0 => {
            let p = runs[i - 1].path.clone();
            Ok(Found { source: RunSource::run_dir(&p), dir: Some(p) })
        }
        _ => Err((format!("run {id} has no earlier run to compare with"), None)),
    }
}

/// Write `text` to `path` through a temporary file beside it, or to stdout.
pub fn write_out(path: Option<&Path>, text: &str) -> std::io::Result<()> {
    write_with(path, |out| out.write_all(text.as_bytes()))
}

/// Let `fill` write to `path` through a temporary file beside it (renamed into place
/// only when `fill` succeeds), or to stdout (a closed stdout is not an error).
pub fn write_with(
    path: Option<&Path>,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    match path {
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match fill(&mut out).and_then(|()| out.flush()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => r,
            }
        }
        Some(path) => {
            let name =
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let temp = path.with_file_name(format!(".{name}.tmp-{:04x}", fastrand::u16(..)));
            let result = std::fs::File::create(&temp)
                .and_then(|f| {
                    let mut out = std::io::BufWriter::with_capacity(256 * 1024, f);
                    fill(&mut out)?;
                    out.into_inner().map_err(|e| e.into_error())?.sync_all()
                })
                .and_then(|()| std::fs::rename(&temp, path));
            if result.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            result
        }
    }
}

/// A writer that remembers whether a write failed (to tell a report's read errors from
/// its write errors).
struct Tracked<'a> {
    inner: &'a mut dyn Write,
    failed: bool,
}

impl Write for Tracked<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).inspect_err(|_| self.failed = true)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

fn format_for(format: Option<Format>, output: Option<&Path>) -> Format {
    format.unwrap_or_else(|| match output.and_then(|p| p.extension()).and_then(|e| e.to_str()) {
        Some("html" | "htm") => Format::Html,
        Some("json") => Format::Json,
        Some("xml") => Format::Junit,
        _ => Format::Md,
    })
}

/// `jobpool report`.
pub fn run(args: ReportArgs, registry: &Registry) -> u8 {
    if args.schema {
        let _ = write_out(None, &report::json::schema_json());
        return OK;
    }
    let format = format_for(args.format, args.output.as_deref());
    let (base, new) = match args.compare.as_slice() {
        [] => (None, args.run.clone()),
        [base] => (Some(base.clone()), args.run.clone()),
        [base, new] => {
            if args.run.is_some() {
                return problem(
                    "give the run to report either as RUN or as the second value of --compare"
                        .into(),
                    None,
                );
            }
            (Some(base.clone()), Some(new.clone()))
        }
        _ => unreachable!("clap allows 1 or 2 values"),
    };
    let new = match find(new.as_deref(), registry) {
        Ok(f) => f,
        Err((what, help)) => return problem(what, help),
    };
    let base = match base.as_deref() {
        None => None,
        Some("previous") => match new.dir.as_deref().map(previous) {
            Some(Ok(f)) => Some(f),
            Some(Err((what, help))) => return problem(what, help),
            None => return problem("a records file has no previous run".into(), None),
        },
        Some(b) => match find(Some(b), registry) {
            Ok(f) => Some(f),
            Err((what, help)) => return problem(what, help),
        },
    };
    let read = |e: std::io::Error, s: &RunSource| {
        say(&diag::render(&RunProblem {
            what: format!("cannot read {}: {e}", s.journal.display()),
            help: None,
        }));
        TASK_FAILED
    };
    let summary = match new.source.summarize() {
        Ok(s) => s,
        Err(e) => return read(e, &new.source),
    };
    let comparison = match &base {
        None => None,
        Some(b) => {
            let (a, n) = match (b.source.records(), new.source.records()) {
                (Ok(a), Ok(n)) => (a, n),
                (Err(e), _) => return read(e, &b.source),
                (_, Err(e)) => return read(e, &new.source),
            };
            match report::compare(b.source.about(), a, new.source.about(), n) {
                Ok(c) => Some(c),
                Err(e) => return read(e, &new.source),
            }
        }
    };
    let mut read_error = None;
    let written = write_with(args.output.as_deref(), |out| {
        let mut out = Tracked { inner: out, failed: false };
        let r = report::render_to(format, &new.source, &summary, comparison.as_ref(), &mut out);
        if let Err(e) = &r
            && !out.failed
        {
            read_error = Some(std::io::Error::new(e.kind(), e.to_string()));
        }
        r
    });
    if let Some(e) = read_error {
        return read(e, &new.source);
    }
    if let Err(e) = written {
        let to = args.output.as_deref().map_or("stdout".into(), |p| p.display().to_string());
        say(&diag::render(&RunProblem { what: format!("cannot write {to}: {e}"), help: None }));
        return TASK_FAILED;
    }
    OK
}

/// A run's state in one word: `ok`, `failed`, `timed out`, `interrupted`, `running`.
fn state_word(r: &RunDir) -> String {
    match &r.info {
        None => "unknown".into(),
        Some(i) if i.compacted => "kept".into(),
        Some(i) if i.state == RunState::Running => "running".into(),
        Some(i) => match i.exit_code {
            Some(0) => "ok".into(),
            Some(1) => "failed".into(),
            Some(3) => "timed out".into(),
            Some(130) => "interrupted".into(),
            Some(c) => format!("exit {c}"),
            None => "finished".into(),
        },
    }
}

fn counts_text(c: &store::StatusCounts) -> String {
    let mut parts = Vec::new();
    for st in crate::record::Status::ALL {
        let n = c.get(st);
        if n > 0 {
            parts.push(format!("{n} {st}"));
        }
    }
    if parts.is_empty() { "-".into() } else { parts.join(", ") }
}

/// `jobpool runs`.
pub fn runs(args: RunsArgs, registry: &Registry) -> u8 {
    let target = args.job.unwrap_or_else(|| PathBuf::from("."));
    let jobs: Vec<(PathBuf, String)> = if target.is_file() {
        vec![job_of(&target, registry)]
    } else if target.is_dir() {
        match store::list_all_runs(&target) {
            Ok(all) => all.into_iter().map(|(name, _)| (target.clone(), name)).collect(),
            Err(e) => return problem(format!("cannot read {}: {e}", target.display()), None),
        }
    } else {
        return problem(format!("{}: no such job file or folder", target.display()), None);
    };
    let mut out = String::new();
    let mut rows: Vec<[String; 6]> = Vec::new();
    for (dir, name) in &jobs {
        if let Some(keep) = args.prune {
            match store::prune(dir, name, keep) {
                Ok(p) => {
                    let kept = if p.kept_records > 0 {
                        format!(
                            "; {} ok record{} that --resume uses kept in {}",
                            p.kept_records,
                            if p.kept_records == 1 { "" } else { "s" },
                            p.compacted.as_deref().unwrap_or("")
                        )
                    } else {
                        String::new()
                    };
                    say(&format!(
                        "{name}: removed {} run{}, kept {}{kept}\n",
                        p.removed.len(),
                        if p.removed.len() == 1 { "" } else { "s" },
                        p.kept
                    ));
                }
                Err(e) => return problem(format!("{name}: cannot prune: {e}"), None),
            }
        }
        let runs = match store::list_runs(dir, name) {
            Ok(r) => r,
            Err(e) => return problem(format!("{name}: cannot list runs: {e}"), None),
        };
        for r in runs {
            let (started, wall, counts) = match &r.info {
                Some(i) => (
                    i.started_at.get(..19).unwrap_or(&i.started_at).replace('T', " "),
                    i.wall_ms.map(report::fmt_ms).unwrap_or_else(|| "-".into()),
                    counts_text(&i.counts),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            rows.push([name.clone(), r.id.clone(), state_word(&r), started, wall, counts]);
        }
    }
    if rows.is_empty() {
        say("no runs\n");
        return OK;
    }
    let head = ["JOB", "RUN", "STATE", "STARTED (UTC)", "WALL", "RECORDS"];
    let mut widths = head.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for row in std::iter::once(head.map(String::from)).chain(rows) {
        let mut line = String::new();
        for (i, (c, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let _ = write_out(None, &out);
    OK
}
