//! `jobpool watch`: run the jobs, then rerun a job when a path it depends on changes.
//!
//! Wiring and printing only. The watcher, debouncing, ignore rules, a job's paths, the
//! on-busy policy and the reasons per submission are [`crate::watch`]'s; one run is
//! [`run::run_job_with`] (the runner and its front ends), with resume semantics after the first
//! run, so only submissions whose key changed (or that have no `ok` record) run.
//!
//! Threads: this one runs the jobs, one after another; the watcher's thread hands over
//! batches (and cancels a run a batch concerns, under `--on-busy restart`); a signal
//! thread turns Ctrl-C into an interrupt of the run and the end of watching.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime};

use clap::Args;
use serde_json::Value;

use super::diag;
use super::exit_code::{INTERRUPTED, INVALID, TASK_FAILED};
use super::frontend::{ProgressWhen, say};
use super::run::{self, RunSettings};
use super::signals::Signals;
use crate::backend::LocalBackend;
use crate::event::CancelReason;
use crate::model::args_map;
use crate::pool::Registry;
use crate::runner::Control;
use crate::store;
use crate::validate::{self, LoadOptions};
use crate::watch::{
    Action, Batch, JobPaths, OnBusy, Reason, Snapshot, Trigger, WatchEvent, Watcher, absolute,
    assess, on_busy,
};

/// Arguments of `jobpool watch`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  jobpool watch jobs/sweep.toml
  jobpool watch jobs/                     # every job file in jobs/, also ones created later
  jobpool watch --on-busy queue --why .

A rerun runs only the submissions whose key changed: a new line of a `lines` file, a new
or edited file a `glob` matches, every submission after a task change; a change to a
path in `watch` reruns every submission. Ctrl-C stops (exit code 130).")]
pub struct WatchArgs {
    /// Job files, or folders (every job file in them, also ones created later).
    #[arg(value_name = "JOB|DIR", default_value = ".")]
    jobs: Vec<PathBuf>,
    /// How long to wait for more changes after one, e.g. `100ms`, `1s`.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_duration)]
    debounce: Duration,
    /// A change to the job being run: `restart` cancels the run (every process of it
    /// stopped) and runs again; `queue` lets it finish, then runs again.
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = OnBusy::Restart)]
    on_busy: OnBusy,
    /// Clear the screen before each run.
    #[arg(long)]
    clear: bool,
    /// Print why each submission runs (new, input changed, task changed, ...).
    #[arg(long)]
    why: bool,
    /// Let the first run reuse `ok` records of earlier runs too (later runs always do).
    #[arg(long)]
    resume: bool,
    /// Number of workers (overrides `workers`).
    #[arg(long, short = 'j', value_name = "N")]
    workers: Option<String>,
    /// Override a key of the job file (as `jobpool run --set`). Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Progress bar on stderr: `auto` shows it when stderr is a terminal.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ProgressWhen::Auto)]
    progress: ProgressWhen,
    /// No summary and no progress bar per run; headers and diagnostics still print.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 100ms, 1s)"))
}

/// What reaches the loop.
enum Msg {
    Watch(WatchEvent),
    Signal,
}

/// The run in progress: what the watcher's thread may cancel.
struct Busy {
    control: Control,
    paths: Arc<JobPaths>,
}

/// A change not run yet.
struct Pending {
    changed: Vec<(PathBuf, Trigger)>,
    at: SystemTime,
}

/// One watched job file.
struct Entry {
    /// As given or found (loaded and shown so).
    path: PathBuf,
    /// Found in a folder argument (dropped when removed).
    from_folder: bool,
    paths: Arc<JobPaths>,
    snapshot: Option<Snapshot>,
    pending: Option<Pending>,
    ran: bool,
}

impl Entry {
    fn new(path: PathBuf, from_folder: bool) -> Entry {
        // `./job.toml` (from the default folder `.`) shows as `job.toml`.
        let path = path.strip_prefix(".").map(Path::to_path_buf).unwrap_or(path);
        Entry {
            paths: Arc::new(JobPaths::of_file(&path)),
            path,
            from_folder,
            snapshot: None,
            pending: Some(Pending { changed: Vec::new(), at: SystemTime::now() }),
            ran: false,
        }
    }
}

struct Session<'a> {
    args: &'a WatchArgs,
    opts: LoadOptions,
    backend: LocalBackend,
    entries: Vec<Entry>,
    /// Folder arguments, absolute: a new job file in one is watched too.
    folders: Vec<PathBuf>,
    watcher: Watcher,
    busy: Arc<Mutex<Option<Busy>>>,
    signals: Signals,
    cwd: PathBuf,
}

/// Watch every job named on the command line; returns when interrupted.
pub fn run(args: WatchArgs, registry: &Registry) -> u8 {
    let mut entries = Vec::new();
    let mut folders = Vec::new();
    for path in &args.jobs {
        if path.is_dir() {
            folders.push(absolute(path));
            for p in job_files_in(path) {
                entries.push(Entry::new(p, true));
            }
        } else if path.exists() {
            entries.push(Entry::new(path.clone(), false));
        } else {
            say(&format!("error: {} does not exist\n", path.display()));
            return INVALID;
        }
    }
    let (tx, rx) = mpsc::channel::<Msg>();
    let busy: Arc<Mutex<Option<Busy>>> = Arc::default();
    let signals = {
        // Wake the loop, which may be waiting for file changes, not for a run.
        let tx = tx.clone();
        match Signals::install(move || {
            let _ = tx.send(Msg::Signal);
        }) {
            Ok(s) => s,
            Err(e) => {
                say(&format!("error: cannot install signal handlers: {e}\n"));
                return TASK_FAILED;
            }
        }
    };
    let watcher = {
        let (busy, policy, tx) = (busy.clone(), args.on_busy, tx);
        Watcher::start(args.debounce, move |ev| {
            if let WatchEvent::Changed(batch) = &ev {
                restart_if_concerned(&busy, policy, batch);
            }
            let _ = tx.send(Msg::Watch(ev));
        })
    };
    let watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            say(&format!("error: {}\n", super::frontend::error_chain(&e)));
            return TASK_FAILED;
        }
    };
    let mut session = Session {
        opts: load_options(registry, &args),
        args: &args,
        backend: LocalBackend::new(registry.clone()),
        entries,
        folders,
        watcher,
        busy,
        signals,
        cwd: std::env::current_dir().unwrap_or_default(),
    };
    session.sync_watches();
    session.main_loop(&rx);
    INTERRUPTED
}

/// The registry's kinds and the command line's overrides (`--workers`, `--set`).
fn load_options(registry: &Registry, args: &WatchArgs) -> LoadOptions {
    let mut overrides = Vec::new();
    if let Some(w) = &args.workers {
        overrides.push(format!("workers={w}"));
    }
    overrides.extend(args.set.iter().cloned());
    super::load_options(registry, overrides)
}

/// Under `--on-busy restart`, cancel the run in progress when `batch` concerns its job.
/// Runs on the watcher's thread, so a run is stopped while the loop is busy with it.
fn restart_if_concerned(busy: &Mutex<Option<Busy>>, policy: OnBusy, batch: &Batch) {
    let busy = busy.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = busy.as_ref() {
        let concerned = batch.paths.iter().any(|p| b.paths.trigger(p).is_some());
        if on_busy(policy, Some(concerned)) == Action::Restart {
            b.control.cancel(CancelReason::Superseded);
        }
    }
}

/// Every `*.toml` job file directly in `dir`, sorted.
fn job_files_in(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| is_toml(p) && p.is_file() && validate::is_job_file(p));
    found.sort();
    found
}

fn is_toml(p: &Path) -> bool {
    p.extension().is_some_and(|x| x == "toml")
}

impl Session<'_> {
    fn main_loop(&mut self, rx: &mpsc::Receiver<Msg>) {
        let mut told = false;
        loop {
            // Run what is pending, oldest change first, taking in what came meanwhile.
            loop {
                self.drain(rx);
                if self.signals.interrupted() {
                    return;
                }
                let next = (0..self.entries.len())
                    .filter(|i| self.entries[*i].pending.is_some())
                    .min_by_key(|i| self.entries[*i].pending.as_ref().map(|p| p.at));
                match next {
                    Some(i) => {
                        self.run_entry(i);
                        told = false;
                    }
                    None => break,
                }
            }
            if !told {
                let n = self.entries.len();
                say(&format!(
                    "[watch] watching {n} job file{} for changes; Ctrl-C to stop\n",
                    if n == 1 { "" } else { "s" }
                ));
                told = true;
            }
            match rx.recv() {
                Ok(msg) => self.take(msg),
                Err(_) => return,
            }
        }
    }

    fn drain(&mut self, rx: &mpsc::Receiver<Msg>) {
        while let Ok(msg) = rx.try_recv() {
            self.take(msg);
        }
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Signal => {} // `signals` knows; the loop looks after each message
            Msg::Watch(WatchEvent::Error(e)) => {
                say(&format!("[watch] warning: {}\n", super::frontend::error_chain(&e)))
            }
            Msg::Watch(WatchEvent::Changed(batch)) => self.absorb(batch),
        }
    }

    /// Note which jobs a batch concerns; a new job file in a watched folder is a new job.
    fn absorb(&mut self, batch: Batch) {
        let at = SystemTime::now() - batch.first.elapsed();
        for path in batch.paths {
            let known = self.entries.iter().any(|e| e.paths.job_file() == path);
            if !known
                && is_toml(&path)
                && path.parent().is_some_and(|d| self.folders.iter().any(|f| f == d))
                && path.is_file()
                && validate::is_job_file(&path)
            {
                let shown = self.shown(&path);
                say(&format!("[watch] new job file {}\n", shown.display()));
                let mut e = Entry::new(shown, true);
                e.pending = Some(Pending { changed: vec![(path.clone(), Trigger::JobFile)], at });
                self.entries.push(e);
                continue;
            }
            for e in &mut self.entries {
                if let Some(t) = e.paths.trigger(&path) {
                    let p = e.pending.get_or_insert_with(|| Pending { changed: Vec::new(), at });
                    if !p.changed.iter().any(|(q, _)| *q == path) {
                        p.changed.push((path.clone(), t));
                    }
                }
            }
        }
    }

    /// `path` relative to the current folder when it is under it.
    fn shown(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.cwd).map(Path::to_path_buf).unwrap_or_else(|_| path.to_path_buf())
    }

    fn sync_watches(&mut self) {
        let mut dirs: Vec<(PathBuf, bool)> =
            self.folders.iter().map(|f| (f.clone(), false)).collect();
        for e in &self.entries {
            dirs.extend(e.paths.watch_dirs());
        }
        for err in self.watcher.watch(&dirs) {
            say(&format!("[watch] warning: {}\n", super::frontend::error_chain(&err)));
        }
    }

    /// Header, reload, reasons, run: one pending change of one job.
    fn run_entry(&mut self, i: usize) {
        let Some(pending) = self.entries[i].pending.take() else { return };
        let path = self.entries[i].path.clone();
        if self.args.clear {
            clear_screen();
        }
        say(&format!(
            "[watch] {}: {} ({})\n",
            path.display(),
            self.what_changed(&pending, i),
            clock(pending.at)
        ));
        if self.entries[i].from_folder && !path.exists() {
            say(&format!("[watch] {}: removed; no longer watched\n", path.display()));
            self.entries.remove(i);
            return;
        }
        let job = match validate::load(&path, &self.opts) {
            Ok(job) => job,
            Err(e) => {
                eprint!("{}", diag::render(&e));
                say(&format!("[watch] {}: not valid; watching it for a fix\n", path.display()));
                // Keep watching what it depended on when it was valid, and the file.
                if !self.entries[i].ran {
                    self.entries[i].paths = Arc::new(JobPaths::of_file(&path));
                }
                self.sync_watches();
                return;
            }
        };
        let paths = Arc::new(JobPaths::of(&job));
        self.entries[i].paths = paths.clone();
        self.sync_watches();

        let first = !self.entries[i].ran;
        let all = if first && !self.args.resume {
            Some(Reason::FirstRun)
        } else if pending.changed.iter().any(|(_, t)| t.reruns_all()) {
            Some(Reason::Watched)
        } else {
            None
        };
        let resume = match all {
            Some(_) => None,
            None => match store::resume_index_saved(&job) {
                Ok(ix) => Some(ix),
                Err(e) => {
                    say(&format!(
                        "[watch] warning: cannot read earlier runs of {}: {e}; running every submission\n",
                        job.name
                    ));
                    None
                }
            },
        };
        let assessment = {
            let done = resume.as_ref().map(|ix| move |k: &str| ix.contains_key(k));
            let done = done.as_ref().map(|d| d as &dyn Fn(&str) -> bool);
            assess(&job, done, all, self.entries[i].snapshot.as_ref(), self.args.why)
        };
        let to_run = assessment.to_run();
        let line = if all == Some(Reason::FirstRun) {
            format!("{to_run} to run")
        } else if to_run == 0 {
            format!("nothing to run: {}", assessment.summary())
        } else {
            assessment.summary()
        };
        say(&format!("[watch] {}: {line}\n", job.name));
        if self.args.why {
            for (index, args, reason) in &assessment.runs {
                let args = Value::Object(args_map(&job.args.names, args));
                say(&format!("[watch]   [{index}] {args}: {}\n", reason.as_str()));
            }
        }
        self.entries[i].snapshot = assessment.snapshot;

        let control = Control::new();
        *self.busy.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Busy { control: control.clone(), paths });
        // A signal that came before cancels the run at once.
        self.signals.register(&control);
        let settings = RunSettings {
            resume: resume.is_some(),
            dry_run: false,
            progress: self.args.progress,
            quiet: self.args.quiet,
            shard: None,
            run_id: None,
            reports: Vec::new(),
            overrides: Vec::new(),
            rerun_hint: None,
            detach: false,
        };
        run::run_job_with(&job, &settings, resume, &self.backend, &control);
        self.signals.unregister();
        *self.busy.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.entries[i].ran = true;
        if control.reason() == Some(CancelReason::Superseded) {
            say(&format!("[watch] {}: superseded by a change; running again\n", job.name));
        }
    }

    /// `changed inputs.txt, data/a.csv and 3 more`, or `first run`.
    fn what_changed(&self, pending: &Pending, i: usize) -> String {
        // A job that never ran (a new file, or one invalid until now) runs for the first time.
        if !self.entries[i].ran {
            return "first run".into();
        }
        if pending.changed.is_empty() {
            return "run again".into();
        }
        const SHOWN: usize = 3;
        let names: Vec<String> = pending
            .changed
            .iter()
            .take(SHOWN)
            .map(|(p, _)| self.shown(p).display().to_string())
            .collect();
        let more = pending.changed.len().saturating_sub(SHOWN);
        let mut s = format!("changed {}", names.join(", "));
        if more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
        s
    }
}

/// `14:03:22Z`: the UTC time of day.
fn clock(t: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(t).to_string();
    stamp.get(11..).unwrap_or(&stamp).to_string()
}

/// Clear the terminal (only when stderr is one: a log file gets no escape codes).
fn clear_screen() {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        say("\x1b[2J\x1b[3J\x1b[H");
    }
}
