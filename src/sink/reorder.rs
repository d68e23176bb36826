//! `ReorderBuffer`: turns records arriving in completion order into submission order.
//!
//! Owns: holding early records until every earlier index has arrived. Must not: write
//! anything.

use std::collections::{BTreeMap, VecDeque};

use crate::model::Order;
use crate::record::TaskRecord;

/// Puts records back in submission order (or passes them through for
/// `order = "completion"`).
///
/// The runner produces exactly one record per plan index, skipped and cancelled ones
/// included, so every index eventually arrives. A record whose index is the next one due
/// is emitted at once together with every held record that follows it without a gap.
///
/// Memory: only records that finished before an earlier one are held, so the buffer holds
/// at most the records that completed while the oldest unfinished task was running — the
/// "spread" of in-flight work. One slow task among fast ones makes it grow by the
/// throughput times that task's duration; records are held in a `BTreeMap` so memory is
/// proportional to what is held, not to the size of the gap.
#[derive(Debug)]
pub struct ReorderBuffer<T = TaskRecord> {
    order: Order,
    next: u64,
    held: BTreeMap<u64, T>,
    ready: VecDeque<T>,
    stale: u64,
    peak: usize,
}

/// What a [`ReorderBuffer`] can hold: anything with a plan index.
pub trait Indexed {
    /// The position in the plan.
    fn index(&self) -> u64;
}

impl Indexed for TaskRecord {
    fn index(&self) -> u64 {
        self.index
    }
}

impl<T: Indexed> ReorderBuffer<T> {
    /// A buffer for `order`, starting at index 0.
    pub fn new(order: Order) -> Self {
        ReorderBuffer::starting_at(order, 0)
    }

    /// A buffer whose first expected index is `first`.
    pub fn starting_at(order: Order, first: u64) -> Self {
        ReorderBuffer {
            order,
            next: first,
            held: BTreeMap::new(),
            ready: VecDeque::new(),
            stale: 0,
            peak: 0,
        }
    }

    /// Accept one record; returns the records now ready, in order.
    ///
    /// In submission order, a record whose index was already emitted (a duplicate, which
    /// the runner never produces) is dropped and counted in [`ReorderBuffer::stale`]; a
    /// second record for an index still held replaces the first.
    pub fn push(&mut self, record: T) -> Ready<'_, T> {
        match self.order {
            Order::Completion => self.ready.push_back(record),
            Order::Submission => {
                let index = record.index();
                if index < self.next {
                    self.stale += 1;
                } else if index == self.next {
                    self.ready.push_back(record);
                    self.next += 1;
                    while let Some(entry) = self.held.first_entry() {
                        if *entry.key() != self.next {
                            break;
                        }
                        self.ready.push_back(entry.remove());
                        self.next += 1;
                    }
                } else {
                    self.held.insert(index, record);
                    self.peak = self.peak.max(self.held.len());
                }
            }
        }
        Ready { buffer: self }
    }

    /// Take the record at `index` as emitted, if it may be written at once without
    /// coming through [`ReorderBuffer::push`]: in completion order always; in submission
    /// order when it is the next due, nothing is ready to be taken, and no held record
    /// follows it (which writing it would release). Returns false, changing nothing,
    /// otherwise: then push it.
    pub fn pass(&mut self, index: u64) -> bool {
        if !self.ready.is_empty() {
            return false;
        }
        match self.order {
            Order::Completion => true,
            Order::Submission => {
                let releases = self
                    .held
                    .first_key_value()
                    .is_some_and(|(k, _)| Some(*k) == index.checked_add(1));
                if index != self.next || releases {
                    return false;
                }
                self.next += 1;
                true
            }
        }
    }

    /// Everything still held, in index order, skipping indexes that never came: for the
    /// end of a run that stopped before every record was produced.
    pub fn drain(&mut self) -> impl Iterator<Item = T> + use<T> {
        let held = std::mem::take(&mut self.held);
        if let Some((&last, _)) = held.last_key_value() {
            self.next = last + 1;
        }
        std::mem::take(&mut self.ready).into_iter().chain(held.into_values())
    }

    /// The order it restores.
    pub fn order(&self) -> Order {
        self.order
    }

    /// The next index due in submission order.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// Records held, waiting for an earlier one.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The largest number of records held at once so far.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// Records dropped because their index had already been emitted.
    pub fn stale(&self) -> u64 {
        self.stale
    }
}

/// The records a [`ReorderBuffer::push`] made ready, in order. Records not taken from it
/// stay in the buffer and come out of the next `push` (or `drain`).
#[derive(Debug)]
pub struct Ready<'a, T = TaskRecord> {
    buffer: &'a mut ReorderBuffer<T>,
}

impl<T> Iterator for Ready<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.buffer.ready.pop_front()
    }
}
