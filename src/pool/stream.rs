//! The streaming run API: what `jobpool run` drives.
//!
//! [`Pool::run_stream`](super::Pool::run_stream) takes a lazy iterator of
//! [`Submission`]s (each with the caller's own `id`) and returns a [`RunStream`], an
//! iterator of [`Outcome`]s in completion order. A feeder thread pulls from the
//! submission iterator only while fewer than `stream_capacity` submissions are taken
//! and not yet handed back to the caller, so millions of submissions stream in constant
//! memory. Retries happen inside the pool (`Outcome::attempts`).
//!
//! From any thread, a [`RunControl`] can do one of two different things (the pool uses
//! the two words for these two meanings only):
//! - [`cancel`](RunControl::cancel): stop running tasks now. They are stopped (TERM,
//!   grace period, KILL of their worker, and of the process group it registered) and
//!   come back `cancelled`, as does every submission taken but not finished.
//! - [`stop_submitting`](RunControl::stop_submitting): take no more. Nothing more is
//!   taken from the iterator; submissions taken but not started come back `skipped`;
//!   running ones finish (nothing is stopped). Tasks already sent to a worker but not started there are skipped too; this
//!   applies to every task of the pool sent before the call, so use one run at a time on
//!   a pool when you use it.
//!
//! The stream ends (returns `None`) once every taken submission has its outcome and the
//! feeder has stopped.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use super::delivery::Reply;
use super::dispatcher::{Event, Item, Parcel};
use super::result::{Outcome, Payload, PoolError};

/// One submission of a streaming run.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// The caller's id; comes back in [`Outcome::id`].
    pub id: u64,
    /// The registered function (task kind) to call (shared: a run's submissions usually
    /// all name the same one).
    pub func: Arc<str>,
    /// Its argument: JSON text (the value comes back as JSON text) or postcard bytes.
    pub args: Payload,
}

/// The sending end of a streaming run's channel of batches, shared by the run's feeder
/// and parcels: the stream is over when the last of them drops it, and that rings the
/// [`Bell`] of a caller waiting in [`RunStream::next_batch_within`].
pub(crate) struct BatchChannel {
    tx: Sender<Vec<Outcome>>,
    bell: Arc<Bell>,
}

impl BatchChannel {
    pub(crate) fn send(&self, batch: Vec<Outcome>) {
        // Counted before it is sent, so that the receiver's count never goes below zero.
        let n = batch.len();
        let queued = self.bell.queued.fetch_add(n, Ordering::SeqCst) + n;
        if self.tx.send(batch).is_ok() && queued >= self.bell.full {
            self.bell.ring();
        }
    }
}

impl Drop for BatchChannel {
    fn drop(&mut self) {
        self.bell.closed.store(true, Ordering::SeqCst);
        self.bell.ring();
    }
}

/// Wakes a caller lingering in [`RunStream::next_batch_within`] early: when the stream
/// ends, or when many outcomes wait.
pub(crate) struct Bell {
    /// How many waiting outcomes are many: at most half the stream's capacity, so that
    /// the feeder, which waits for the caller to take outcomes, never waits for long.
    full: usize,
    /// Outcomes sent and not yet received.
    queued: AtomicUsize,
    /// The last sender is gone: no outcome is coming.
    closed: AtomicBool,
    /// The thread lingering, if one is.
    lingering: Mutex<Option<Thread>>,
}

impl Bell {
    fn ring(&self) {
        if let Some(t) = &*self.lingering.lock().unwrap_or_else(|e| e.into_inner()) {
            t.unpark();
        }
    }

    /// Whether a lingering caller should stop waiting.
    fn rung(&self) -> bool {
        self.closed.load(Ordering::SeqCst) || self.queued.load(Ordering::SeqCst) >= self.full
    }
}

/// A caller lingering for more outcomes stops once this many wait (or half the stream's
/// capacity); a first batch this big is not held at all.
const LINGER_FULL: usize = 256;

pub(crate) struct RunShared {
    credits: Mutex<usize>,
    cv: Condvar,
    /// The feeder takes no more submissions (cancel or stop submitting).
    halted: AtomicBool,
}

/// Controls a streaming run from any thread; cheap to clone.
#[derive(Clone)]
pub struct RunControl {
    shared: Arc<RunShared>,
    tx: Sender<Event>,
    run: u64,
}

impl RunControl {
    /// Cancel: stop running tasks now, and end everything taken `cancelled`; never
    /// hangs, leaves no process.
    pub fn cancel(&self) {
        self.halt();
        let _ = self.tx.send(Event::Cancel { run: self.run });
    }

    /// Stop submitting: take no more submissions; not-started ones come back
    /// `skipped`, running ones finish.
    pub fn stop_submitting(&self) {
        self.halt();
        let _ = self.tx.send(Event::StopSubmitting { run: self.run });
    }

    fn halt(&self) {
        self.shared.halted.store(true, Ordering::SeqCst);
        let _g = self.shared.credits.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.cv.notify_all();
    }
}

/// The outcomes of a streaming run, in completion order: one at a time (as an
/// [`Iterator`]) or as they arrived, a batch at a time ([`RunStream::next_batch`]).
pub struct RunStream {
    rx: Receiver<Vec<Outcome>>,
    bell: Arc<Bell>,
    /// When [`next_batch_within`](Self::next_batch_within) last received outcomes.
    last_batch: Option<Instant>,
    /// The rest of the last batch received, when taken one at a time.
    held: std::vec::IntoIter<Outcome>,
    /// Outcomes of `held`'s batch handed back and not yet released to the feeder.
    handed: usize,
    control: RunControl,
}

impl RunStream {
    /// A handle to cancel this run, or stop submitting to it, from another thread.
    pub fn control(&self) -> RunControl {
        self.control.clone()
    }

    /// The next outcome, waiting at most `timeout`; `Ok(None)` when the run is over,
    /// `Err(())` on timeout.
    #[allow(clippy::result_unit_err)]
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Outcome>, ()> {
        if self.held.len() == 0 {
            match self.rx.recv_timeout(timeout) {
                Ok(batch) => self.held = self.received(batch).into_iter(),
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(()),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(None),
            }
        }
        Ok(self.take_one())
    }

    /// Every outcome that has arrived (or what is left of the last batch after
    /// [`next`](Iterator::next)), waiting for the first; `None` when the run is over.
    /// Never empty.
    pub fn next_batch(&mut self) -> Option<Vec<Outcome>> {
        self.next_batch_within(Duration::ZERO)
    }

    /// Like [`next_batch`](Self::next_batch), but when outcomes have been coming less
    /// than `linger` apart, waits up to `linger` after the first for more, unless the run
    /// ends (or many outcomes wait) first. For a caller that pays for every wake-up and
    /// can take outcomes a little late: tasks that each take about a millisecond then
    /// come back a few at a time, not one by one. The last outcome is never held back,
    /// and outcomes that come far apart are not held at all.
    pub fn next_batch_within(&mut self, linger: Duration) -> Option<Vec<Outcome>> {
        let mut batch: Vec<Outcome> = if self.held.len() > 0 {
            std::mem::take(&mut self.held).collect()
        } else {
            let batch = self.rx.recv().ok()?;
            self.received(batch)
        };
        if !linger.is_zero() && batch.len() < self.bell.full {
            let now = Instant::now();
            if self.last_batch.is_some_and(|t| now.duration_since(t) < linger) {
                self.linger(now + linger);
            }
            self.last_batch = Some(now);
        }
        while let Ok(more) = self.rx.try_recv() {
            batch.extend(self.received(more));
        }
        self.handed += batch.len();
        self.release();
        Some(batch)
    }

    /// Wait until `until`, less when the bell rings.
    fn linger(&self, until: Instant) {
        // Registered before `rung` is checked: a sender that rings after this sees the
        // thread; one that rang before set what `rung` reads.
        *self.bell.lingering.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread::current());
        while !self.bell.rung() {
            let now = Instant::now();
            if now >= until {
                break;
            }
            thread::park_timeout(until - now);
        }
        *self.bell.lingering.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn received(&self, batch: Vec<Outcome>) -> Vec<Outcome> {
        self.bell.queued.fetch_sub(batch.len(), Ordering::SeqCst);
        batch
    }

    fn take_one(&mut self) -> Option<Outcome> {
        let o = self.held.next()?;
        self.handed += 1;
        if self.held.len() == 0 {
            // The whole batch is handed back: one release for all of it.
            self.release();
        }
        Some(o)
    }

    fn release(&mut self) {
        let n = std::mem::take(&mut self.handed);
        let mut c = self.control.shared.credits.lock().unwrap_or_else(|e| e.into_inner());
        *c += n;
        self.control.shared.cv.notify_all();
    }
}

impl Iterator for RunStream {
    type Item = Outcome;

    fn next(&mut self) -> Option<Outcome> {
        while self.held.len() == 0 {
            // Batches are never empty; a loop costs nothing and guards the invariant.
            let batch = self.rx.recv().ok()?;
            self.held = self.received(batch).into_iter();
        }
        self.take_one()
    }
}

impl Drop for RunStream {
    fn drop(&mut self) {
        // Nobody reads the outcomes any more: stop feeding.
        self.control.halt();
    }
}

/// Most submissions handed to the dispatcher in one message.
pub(crate) const FEED_BATCH: usize = 256;

/// Tells the dispatcher that a run's feed is over when dropped: when its feeder ends
/// (every submission handed over, or the run halted), or with the closure of a feeder
/// thread that could not start.
struct FeedDone {
    tx: Sender<Event>,
}

impl Drop for FeedDone {
    fn drop(&mut self) {
        let _ = self.tx.send(Event::Feeding { open: false });
    }
}

/// What feeds a run's submissions to the dispatcher, a round at a time.
struct Feed {
    shared: Arc<RunShared>,
    tx: Sender<Event>,
    /// The outcomes' channel, handed to each parcel; dropped with the feed, so the
    /// stream ends when the last parcel's outcomes are in.
    otx: Arc<BatchChannel>,
    run: u64,
    chunk: usize,
}

impl Feed {
    /// Hand the dispatcher the next submissions, as many as the run's credits allow (at
    /// most [`FEED_BATCH`]); with no credits, wait for some when `wait`, else hand none.
    /// Whether there may be more to feed (false: the items ran out, or the run halted,
    /// or the pool is gone).
    fn round(&mut self, items: &mut impl Iterator<Item = Submission>, wait: bool) -> bool {
        let take = {
            let mut c = self.shared.credits.lock().unwrap_or_else(|e| e.into_inner());
            while wait && *c == 0 && !self.shared.halted.load(Ordering::SeqCst) {
                c = self
                    .shared
                    .cv
                    .wait_timeout(c, Duration::from_millis(50))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if self.shared.halted.load(Ordering::SeqCst) {
                return false;
            }
            let take = (*c).min(FEED_BATCH);
            *c -= take;
            take
        };
        // Consecutive submissions of the same function share one parcel and buffer.
        let mut parcels: Vec<Parcel> = Vec::new();
        let mut taken = 0;
        let mut done = false;
        for _ in 0..take {
            let Some(s) = items.next() else {
                done = true;
                break;
            };
            taken += 1;
            let (json, bytes) = match s.args {
                Payload::Json(t) => (true, t.into_bytes()),
                Payload::Bytes(b) => (false, b),
            };
            let same = parcels.last().is_some_and(|j| j.json == json && *j.func == *s.func);
            if !same {
                let func = s.func.clone();
                let left = take - taken + 1;
                parcels.push(Parcel::new(
                    func,
                    json,
                    self.chunk,
                    self.run,
                    Reply::Batches(self.otx.clone()),
                    Arc::new(Vec::with_capacity(left * (bytes.len() + 1))),
                    Vec::with_capacity(left),
                ));
            }
            let j = parcels.last_mut().expect("pushed");
            let buf = Arc::get_mut(&mut j.buf).expect("not shared yet");
            let start = buf.len();
            buf.extend_from_slice(&bytes);
            let end = buf.len();
            j.items_mut().push(Item { user_id: s.id, start, end, attempts: 0 });
        }
        let unused = take - taken;
        if unused > 0 {
            *self.shared.credits.lock().unwrap_or_else(|e| e.into_inner()) += unused;
        }
        if !parcels.is_empty() && self.tx.send(Event::Submit(parcels)).is_err() {
            return false;
        }
        !done
    }
}

pub(crate) fn start<I>(
    tx: Sender<Event>,
    run: u64,
    capacity: usize,
    chunk: usize,
    mut items: I,
    first_here: bool,
) -> RunStream
where
    I: Iterator<Item = Submission> + Send + 'static,
{
    let shared = Arc::new(RunShared {
        credits: Mutex::new(capacity),
        cv: Condvar::new(),
        halted: AtomicBool::new(false),
    });
    let (otx, orx) = mpsc::channel::<Vec<Outcome>>();
    let bell = Arc::new(Bell {
        full: (capacity / 2).clamp(1, LINGER_FULL),
        queued: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
        lingering: Mutex::new(None),
    });
    let otx = Arc::new(BatchChannel { tx: otx, bell: bell.clone() });
    let control = RunControl { shared: shared.clone(), tx: tx.clone(), run };
    // Sent before this returns, so before any `close` of the caller's: while a feed is
    // open, a closed pool keeps its idle workers for the submissions still to come.
    let _ = tx.send(Event::Feeding { open: true });
    let feed_done = FeedDone { tx: tx.clone() };
    let mut feed = Feed { shared: shared.clone(), tx: tx.clone(), otx, run, chunk };
    // `first_here`: the items are made already (pulling them cannot wait for anything),
    // so the first round runs here. A job whose submissions fit in it (the tutorial's
    // five, a one-submission job) starts no feeder thread: its start (some 60-100 µs of
    // CPU here) competed with the workers' own start for the two CPUs (a job of five
    // short sleeps on 4 workers: 4.9 → 4.3 ms beyond the ideal schedule, medians of 40).
    if !first_here || feed.round(&mut items, false) {
        // Should no thread start, the stream ends after what was fed (its sender is
        // dropped with the closure).
        let _ = std::thread::Builder::new().name("jobpool-feeder".into()).spawn(move || {
            let _feed_done = feed_done;
            while feed.round(&mut items, true) {}
            // The outcomes' sender first, then the word that the feed is over.
            drop(feed);
        });
    } else {
        drop((feed, feed_done));
    }
    RunStream { rx: orx, bell, last_batch: None, held: Vec::new().into_iter(), handed: 0, control }
}

/// Encodes the next input item of a lazy call (`imap`) into a buffer; `None` at the end.
type Pull<'a> = Box<dyn FnMut(&mut Vec<u8>) -> Option<Result<(), PoolError>> + 'a>;

/// The input side of `imap` / `imap_unordered`: pulls items from the caller's iterator
/// only while fewer than `capacity` are submitted and not yet handed back, so an
/// infinite iterator runs in constant memory (CPython's `buffersize`). It is driven by
/// the reader (each `next` tops it up): no thread, and the iterator need not be `Send`.
pub(crate) struct LazyFeed<'a> {
    pull: Pull<'a>,
    tx: Sender<Event>,
    /// The outcomes' channel; dropped once the input is exhausted, so the reader's
    /// channel ends when the last outcome is in.
    otx: Option<Sender<Outcome>>,
    func: Arc<str>,
    chunk: usize,
    capacity: usize,
    /// Items taken from the iterator (and submitted) so far.
    pub submitted: u64,
    /// The item whose encoding failed, and why: the input stops there.
    pub failed: Option<(u64, PoolError)>,
}

impl<'a> LazyFeed<'a> {
    pub(crate) fn new<A: serde::Serialize + 'a>(
        items: impl Iterator<Item = A> + 'a,
        tx: Sender<Event>,
        otx: Sender<Outcome>,
        func: Arc<str>,
        chunk: usize,
        capacity: usize,
    ) -> Self {
        let mut items = items;
        let pull: Pull<'a> = Box::new(move |buf: &mut Vec<u8>| {
            let a = items.next()?;
            Some(
                super::protocol::encode_into(&a, buf).map_err(|e| PoolError::Encode(e.to_string())),
            )
        });
        LazyFeed { pull, tx, otx: Some(otx), func, chunk, capacity, submitted: 0, failed: None }
    }

    /// Whether every item was taken from the iterator (or its input failed).
    pub(crate) fn exhausted(&self) -> bool {
        self.otx.is_none()
    }

    /// Submit items until `capacity` are outstanding (`handed` of them were handed back
    /// to the caller), or the iterator ends.
    pub(crate) fn top_up(&mut self, handed: u64) {
        while let Some(otx) = &self.otx {
            let room = (self.capacity as u64).saturating_sub(self.submitted - handed);
            if room == 0 {
                return;
            }
            let take = room.min(self.chunk as u64) as usize;
            let mut buf = Vec::new();
            let mut items = Vec::with_capacity(take);
            let mut end = false;
            for _ in 0..take {
                let start = buf.len();
                match (self.pull)(&mut buf) {
                    None => {
                        end = true;
                        break;
                    }
                    Some(Err(e)) => {
                        self.failed = Some((self.submitted + items.len() as u64, e));
                        end = true;
                        break;
                    }
                    Some(Ok(())) => {}
                }
                let user_id = self.submitted + items.len() as u64;
                items.push(Item { user_id, start, end: buf.len(), attempts: 0 });
            }
            if !items.is_empty() {
                self.submitted += items.len() as u64;
                let reply = Reply::Stream(otx.clone());
                let parcel = Parcel::new(
                    self.func.clone(),
                    false,
                    self.chunk,
                    0,
                    reply,
                    Arc::new(buf),
                    items,
                );
                if let Err(mpsc::SendError(Event::Submit(parcels))) =
                    self.tx.send(Event::Submit(vec![parcel]))
                {
                    // The pool is gone: these items end `cancelled`, never hang.
                    parcels.into_iter().for_each(super::delivery::cancel_parcel);
                }
            }
            if end {
                self.otx = None;
            }
        }
    }
}
