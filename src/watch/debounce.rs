//! The debouncer: changes collected for a window, then handed over once.
//!
//! Pure: time comes in as arguments (tests use a fake clock) and the file system as a
//! closure. A batch is ready when no change came for the window (a burst of writes, an
//! editor's save-by-rename, is one batch), or at the latest `10 × window` after its first
//! change (a file written for a long time still triggers).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What happened to a path, as far as debouncing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The path was created (a file or a folder).
    Created,
    /// Written, renamed or removed.
    Changed,
}

/// Changed paths handed over at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The paths, in the order they first changed, each once.
    pub paths: Vec<PathBuf>,
    /// When the first of them changed.
    pub first: Instant,
}

/// Collects changes until a batch is ready.
#[derive(Debug)]
pub struct Debouncer {
    window: Duration,
    paths: Vec<PathBuf>,
    seen: HashSet<PathBuf>,
    created: HashSet<PathBuf>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Debouncer {
    /// A debouncer with a quiet `window`.
    pub fn new(window: Duration) -> Debouncer {
        Debouncer {
            window,
            paths: Vec::new(),
            seen: HashSet::new(),
            created: HashSet::new(),
            first: None,
            last: None,
        }
    }

    /// A change of `path` at `now`.
    pub fn push(&mut self, path: PathBuf, change: Change, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
        if change == Change::Created {
            self.created.insert(path.clone());
        }
        if self.seen.insert(path.clone()) {
            self.paths.push(path);
        }
    }

    /// When the batch being collected is ready; `None` when nothing was collected.
    pub fn deadline(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + self.window).min(first + self.window * 10))
    }

    /// The batch, if it is ready at `now`. Paths that were created during the window and
    /// are gone again (`exists` says false: an editor's or `sed -i`'s temporary file) are
    /// left out; a batch left empty by that is dropped.
    pub fn take(&mut self, now: Instant, exists: impl Fn(&Path) -> bool) -> Option<Batch> {
        if self.deadline()? > now {
            return None;
        }
        let first = self.first.take()?;
        self.last = None;
        self.seen.clear();
        let created = std::mem::take(&mut self.created);
        let paths: Vec<PathBuf> = std::mem::take(&mut self.paths)
            .into_iter()
            .filter(|p| !created.contains(p) || exists(p))
            .collect();
        (!paths.is_empty()).then_some(Batch { paths, first })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(100);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn nothing_collected_is_never_ready() {
        let mut d = Debouncer::new(W);
        assert_eq!(d.deadline(), None);
        assert_eq!(d.take(Instant::now(), |_| true), None);
    }

    #[test]
    fn a_burst_is_one_batch_after_a_quiet_window() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(W);
        for i in 0..5 {
            d.push(p("job.toml"), Change::Changed, t0 + ms(20 * i));
        }
        d.push(p("in.txt"), Change::Changed, t0 + ms(90));
        assert_eq!(d.deadline(), Some(t0 + ms(190)));
        assert_eq!(d.take(t0 + ms(150), |_| true), None);
        let b = d.take(t0 + ms(190), |_| true).unwrap();
        assert_eq!(b.paths, [p("job.toml"), p("in.txt")]);
        assert_eq!(b.first, t0);
        assert_eq!(d.deadline(), None);
        assert_eq!(d.take(t0 + ms(1000), |_| true), None);
    }

    #[test]
    fn a_steady_stream_is_cut_at_ten_windows() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(W);
        let mut batches = 0;
        for i in 0..60 {
            let now = t0 + ms(50 * i);
            if d.take(now, |_| true).is_some() {
                batches += 1;
            }
            d.push(p("log.txt"), Change::Changed, now);
        }
        // 3 s of writes every 50 ms: a batch at the latest every second.
        assert_eq!(batches, 2);
        assert!(d.deadline().unwrap() <= t0 + ms(50 * 59) + W);
    }

    #[test]
    fn a_temporary_file_that_came_and_went_is_left_out() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(W);
        d.push(p("sedX1"), Change::Created, t0);
        d.push(p("data.txt"), Change::Changed, t0 + ms(1));
        d.push(p("new.txt"), Change::Created, t0 + ms(2));
        let b = d.take(t0 + ms(200), |q| q != Path::new("sedX1")).unwrap();
        assert_eq!(b.paths, [p("data.txt"), p("new.txt")]);
        // Only a temporary file: no batch at all.
        d.push(p(".x.swp"), Change::Created, t0 + ms(300));
        assert_eq!(d.take(t0 + ms(500), |_| false), None);
        assert_eq!(d.deadline(), None);
    }
}
