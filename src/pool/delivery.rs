//! Delivery: handing finished outcomes to whoever waits for them.
//!
//! Owns: [`Reply`] (where a call's outcomes go: a collector or a channel),
//! [`Deliveries`] (outcomes for the same collector, delivered under one lock), whole
//! result messages delivered as one segment ([`segment`]), and finishing the items of a
//! call that never ran ([`fail_parcel`], [`cancel_parcel`]).
//! Must not: decide a task's status, retries or attribution (the dispatcher does, and
//! hands finished outcomes here), or talk to workers.

use std::sync::Arc;
use std::sync::mpsc::Sender;

use super::dispatcher::Parcel;
use super::protocol::ResultBatch;
use super::result::{Collector, Outcome, Segment, SegmentData, Stored};
use crate::record::Status;

/// Where a task's outcome goes.
pub(crate) enum Reply {
    /// A collector (`apply`, `map`, `imap`); the item's `user_id` is its index there.
    Collect(Arc<Collector>),
    /// A channel (`imap_unordered`); the outcome's id is the item's `user_id`.
    Stream(Sender<Outcome>),
    /// A channel of batches (streaming runs): the outcomes of one result message travel
    /// as one `Vec`, so the reader pays one channel operation (and at most one wake-up)
    /// per batch, not per outcome. The outcome's id is the item's `user_id`.
    Batches(BatchSender),
}

/// The sending end of a streaming run's channel of batches (shared by its parcels).
pub(crate) type BatchSender = Arc<super::stream::BatchChannel>;

impl Clone for Reply {
    fn clone(&self) -> Self {
        match self {
            Reply::Collect(c) => Reply::Collect(c.clone()),
            Reply::Stream(t) => Reply::Stream(t.clone()),
            Reply::Batches(t) => Reply::Batches(t.clone()),
        }
    }
}

/// Outcomes for the same collector, delivered under one lock; outcomes for the same
/// channel of batches, sent as one batch. Delivered by [`Deliveries::flush`] (or when
/// dropped).
#[derive(Default)]
pub(crate) struct Deliveries {
    current: Option<Arc<Collector>>,
    items: Vec<(usize, Stored)>,
    batch: Option<(BatchSender, Vec<Outcome>)>,
    /// How many outcomes are expected (the capacity of a new batch).
    expect: usize,
}

impl Drop for Deliveries {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Deliveries {
    /// Room for `n` outcomes of one collector.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Deliveries { current: None, items: Vec::new(), batch: None, expect: n }
    }

    pub(crate) fn push(&mut self, parcel: &Parcel, mut o: Outcome) {
        o.task = parcel.task;
        self.push_stored(parcel, o.id, Stored::Other(Box::new(o)));
    }

    pub(crate) fn push_stored(&mut self, parcel: &Parcel, id: u64, s: Stored) {
        match &parcel.reply {
            Reply::Collect(c) => {
                if !self.current.as_ref().is_some_and(|x| Arc::ptr_eq(x, c)) {
                    self.flush();
                    self.current = Some(c.clone());
                    self.items.reserve(self.expect);
                }
                self.items.push((id as usize, s));
            }
            Reply::Stream(tx) => {
                let _ = tx.send(s.to_outcome(id, parcel.task));
            }
            Reply::Batches(tx) => {
                if !self.batch.as_ref().is_some_and(|(x, _)| Arc::ptr_eq(x, tx)) {
                    self.flush_batch();
                    self.batch = Some((tx.clone(), Vec::with_capacity(self.expect)));
                }
                if let Some((_, out)) = &mut self.batch {
                    out.push(s.to_outcome(id, parcel.task));
                }
            }
        }
    }

    pub(crate) fn flush(&mut self) {
        if let Some(c) = self.current.take() {
            c.deliver_many(self.items.drain(..));
        }
        self.flush_batch();
    }

    fn flush_batch(&mut self) {
        if let Some((tx, out)) = self.batch.take()
            && !out.is_empty()
        {
            tx.send(out);
        }
    }
}

/// `results`, all successes of the next unfinished items of `parcel` (a collector's), as
/// one [`Segment`] for its collector: delivered whole, in O(1), with no per-item work
/// on the dispatcher's thread. Deliver it with `Collector::deliver_segment`.
pub(crate) fn segment(
    parcel: &Parcel,
    results: ResultBatch,
    worker: u32,
) -> (Arc<Collector>, Segment) {
    let Reply::Collect(c) = &parcel.reply else { unreachable!("checked by the dispatcher") };
    let first = parcel.first_unfinished();
    let count = results.len();
    let seg = Segment {
        data: Arc::new(SegmentData {
            ends: results.ends.0,
            blob: Arc::new(results.blob.0),
            started_ns: results.started_ns,
            duration_ns: results.duration_ns,
        }),
        count,
        first: first.user_id as usize,
        attempts: first.attempts + 1,
        worker,
        json: parcel.json,
    };
    (c.clone(), seg)
}

/// Finish every item of a parcel that could not be submitted as `cancelled`.
pub(crate) fn cancel_parcel(parcel: Parcel) {
    fail_parcel(parcel, Status::Cancelled, "the pool was terminated");
}

/// Finish every item of a parcel that never ran (again) with `status`.
pub(crate) fn fail_parcel(mut parcel: Parcel, status: Status, msg: &str) {
    let mut out = Deliveries::default();
    for item in parcel.unfinished().to_vec() {
        let o = if status == Status::Skipped {
            parcel.skipped(&item)
        } else {
            Outcome::failed(item.user_id, status, msg, item.attempts)
        };
        out.push(&parcel, o);
    }
    out.flush();
}
