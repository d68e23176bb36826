//! Watch mode's machinery: file events in, debounced batches of changed paths out.
//!
//! Owns: the [`Watcher`] (notify's watcher plus one thread that filters and debounces
//! its events: collect-then-act, as watchexec's `throttle_collect`), the [`Debouncer`]
//! (pure, fake clock in tests), the ignore rules ([`Ignore`]), the paths a job depends
//! on ([`JobPaths`]), the pure on-busy policy ([`on_busy`]) and why each submission of a
//! rerun runs ([`assess`]).
//! Must not: print, run jobs or decide exit codes (`cli::watch` does, on the runner).
//!
//! ```text
//!  notify (inotify) ─▶ kind filter ─▶ Ignore ─▶ Debouncer ─▶ rescan new folders ─▶ on_event(Batch)
//!                      create/modify/remove/close-write   .jobpool/, .gitignore, editors' temp files
//! ```
//!
//! Folders are watched, not files: editors save by writing a temporary file and renaming
//! it over the old one. A folder created under a watched one is scanned when its batch
//! is handed over, so a file written right after its folder was made is not missed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

mod debounce;
mod filter;
mod paths;
mod policy;
mod why;

pub use self::debounce::{Batch, Change, Debouncer};
pub use self::filter::{Ignore, is_noise};
pub use self::paths::{JobPaths, Trigger, absolute};
pub use self::policy::{Action, OnBusy, on_busy};
pub use self::why::{Assessment, Reason, Snapshot, assess};

/// The file watcher failed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// notify could not start (no inotify instance left, ...).
    #[error("cannot start the file watcher")]
    Start(#[source] notify::Error),
    /// A folder could not be watched.
    #[error("cannot watch {}", .0.display())]
    Watch(PathBuf, #[source] notify::Error),
    /// notify reported an error while watching (events may have been lost).
    #[error("the file watcher failed")]
    Notify(#[source] notify::Error),
}

/// What the watcher hands over.
#[derive(Debug)]
pub enum WatchEvent {
    /// Paths changed.
    Changed(Batch),
    /// Events may have been lost.
    Error(WatchError),
}

/// Watches folders; calls `on_event` on its own thread with each debounced batch.
pub struct Watcher {
    notify: Option<RecommendedWatcher>,
    watched: HashMap<PathBuf, bool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Start watching nothing yet; add folders with [`Watcher::watch`].
    pub fn start<F>(debounce: Duration, on_event: F) -> Result<Watcher, WatchError>
    where
        F: FnMut(WatchEvent) + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<notify::Result<notify::Event>>();
        let notify = notify::recommended_watcher(move |ev| {
            let _ = tx.send(ev);
        })
        .map_err(WatchError::Start)?;
        let thread = std::thread::Builder::new()
            .name("jobpool-watch".into())
            .spawn(move || collect_then_act(rx, debounce, on_event))
            .map_err(|e| WatchError::Start(notify::Error::io(e)))?;
        Ok(Watcher { notify: Some(notify), watched: HashMap::new(), thread: Some(thread) })
    }

    /// Watch each folder (recursively when its flag says so), unless it already is; a
    /// folder under one watched recursively is not watched again.
    pub fn watch(&mut self, dirs: &[(PathBuf, bool)]) -> Vec<WatchError> {
        let mut errors = Vec::new();
        let Some(notify) = self.notify.as_mut() else { return errors };
        for (dir, deep) in dirs {
            let covered = self.watched.get(dir).is_some_and(|d| *d || !deep)
                || self.watched.iter().any(|(w, d)| *d && w != dir && dir.starts_with(w));
            if covered {
                continue;
            }
            if self.watched.contains_key(dir) {
                let _ = notify.unwatch(dir);
            }
            let mode = if *deep { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
            match notify.watch(dir, mode) {
                Ok(()) => {
                    self.watched.insert(dir.clone(), *deep);
                }
                Err(e) => errors.push(WatchError::Watch(dir.clone(), e)),
            }
        }
        errors
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Dropping notify's watcher closes the channel: the thread ends.
        drop(self.notify.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The kinds of event that are a change: creating, writing (a close after writing
/// included: writes after a create show up only so), renaming, removing. Not: reading,
/// opening, metadata alone.
fn change_of(kind: &EventKind) -> Option<Change> {
    match kind {
        EventKind::Create(_) => Some(Change::Created),
        EventKind::Modify(ModifyKind::Metadata(_)) => None,
        EventKind::Modify(_) | EventKind::Remove(_) => Some(Change::Changed),
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Change::Changed),
        _ => None,
    }
}

/// The watcher thread: wait for the first event, gather more until the debouncer says
/// the batch is ready, filter, hand it over once.
fn collect_then_act<F>(
    rx: mpsc::Receiver<notify::Result<notify::Event>>,
    window: Duration,
    mut on_event: F,
) where
    F: FnMut(WatchEvent),
{
    let mut debouncer = Debouncer::new(window);
    let mut ignore = Ignore::new();
    let mut new_folders: Vec<PathBuf> = Vec::new();
    loop {
        let msg = match debouncer.deadline() {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
        };
        match msg {
            Ok(Ok(ev)) => {
                let Some(change) = change_of(&ev.kind) else { continue };
                let folder = matches!(ev.kind, EventKind::Create(CreateKind::Folder));
                for path in ev.paths {
                    ignore.changed(&path);
                    if ignore.is_ignored(&path) {
                        continue;
                    }
                    if folder || (change == Change::Created && path.is_dir()) {
                        new_folders.push(path.clone());
                    }
                    debouncer.push(path, change, Instant::now());
                }
            }
            Ok(Err(e)) => on_event(WatchEvent::Error(WatchError::Notify(e))),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        if debouncer.deadline().is_some_and(|d| d <= now) {
            // Files written into a new folder before its watch was in place.
            for dir in std::mem::take(&mut new_folders) {
                let mut found = Vec::new();
                scan(&dir, &mut found, 0);
                for f in found {
                    if !ignore.is_ignored(&f) {
                        debouncer.push(f, Change::Changed, now);
                    }
                }
            }
            if let Some(batch) = debouncer.take(now, |p| p.exists()) {
                on_event(WatchEvent::Changed(batch));
            }
        }
    }
}

/// Every path under `dir` (bounded depth; symbolic links not followed).
fn scan(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 32 || is_noise(dir) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            scan(&p, out, depth + 1);
        }
        out.push(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One real watcher: a file written right after its folder was made is reported,
    /// `.jobpool/` is not, and a burst of writes is one batch.
    #[test]
    fn real_events_are_filtered_and_batched() {
        let dir = tempfile::tempdir().unwrap();
        let root = absolute(dir.path());
        let (tx, rx) = mpsc::channel();
        let mut w = Watcher::start(Duration::from_millis(150), move |ev| {
            let _ = tx.send(ev);
        })
        .unwrap();
        assert!(w.watch(&[(root.clone(), true)]).is_empty());
        std::fs::create_dir_all(root.join(".jobpool/runs")).unwrap();
        std::fs::write(root.join(".jobpool/runs/x"), "1").unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/new.txt"), "1").unwrap();
        for i in 0..5 {
            std::fs::write(root.join("job.toml"), format!("{i}")).unwrap();
        }
        let mut paths = Vec::new();
        let until = Instant::now() + Duration::from_secs(10);
        while !(paths.contains(&root.join("sub/new.txt")) && paths.contains(&root.join("job.toml")))
        {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(WatchEvent::Changed(b)) => paths.extend(b.paths),
                Ok(WatchEvent::Error(e)) => panic!("{e}"),
                Err(_) => panic!("no batch with both paths: {paths:?}"),
            }
        }
        assert!(!paths.iter().any(|p| p.starts_with(root.join(".jobpool"))), "{paths:?}");
        let job_toml = paths.iter().filter(|p| **p == root.join("job.toml")).count();
        assert_eq!(job_toml, 1, "{paths:?}");
    }
}
