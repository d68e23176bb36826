//! Which failures `retries` applies to: [`RetryOn`], the pool's retry filter.
//!
//! Owns: the set type. Must not: parse names (the job file's `retry-on` is the
//! validator's; `backend::local` maps it here) or decide anything by itself (the dispatcher asks [`RetryOn::allows`] where it decides a retry).

use crate::record::Status;

/// A set of failure kinds that [`PoolBuilder::retries`](super::PoolBuilder::retries)
/// applies to (`error`, `timeout`, `crashed`); default: all three. A failure of another
/// kind is final on its first attempt.
///
/// ```
/// use jobpool::pool::RetryOn;
/// let only_crashes = RetryOn::NONE.with_crashed();
/// assert!(only_crashes.allows(jobpool::record::Status::Crashed));
/// assert!(!only_crashes.allows(jobpool::record::Status::Error));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetryOn {
    error: bool,
    timeout: bool,
    crashed: bool,
}

impl Default for RetryOn {
    fn default() -> Self {
        RetryOn::ALL
    }
}

impl RetryOn {
    /// Retry every failure kind (the default).
    pub const ALL: RetryOn = RetryOn { error: true, timeout: true, crashed: true };
    /// Retry nothing.
    pub const NONE: RetryOn = RetryOn { error: false, timeout: false, crashed: false };

    /// This set with `error` (the task failed: an error, a non-success exit code).
    pub const fn with_error(mut self) -> Self {
        self.error = true;
        self
    }

    /// This set with `timeout` (the task ran past its task timeout).
    pub const fn with_timeout(mut self) -> Self {
        self.timeout = true;
        self
    }

    /// This set with `crashed` (its worker died, or a task function panicked).
    pub const fn with_crashed(mut self) -> Self {
        self.crashed = true;
        self
    }

    /// The set of these statuses (`Error`, `Timeout`, `Crashed`; others are ignored).
    pub fn of(statuses: impl IntoIterator<Item = Status>) -> Self {
        statuses.into_iter().fold(RetryOn::NONE, |s, st| match st {
            Status::Error => s.with_error(),
            Status::Timeout => s.with_timeout(),
            Status::Crashed => s.with_crashed(),
            _ => s,
        })
    }

    /// Whether a failure with this status may be retried.
    pub fn allows(self, status: Status) -> bool {
        match status {
            Status::Error => self.error,
            Status::Timeout => self.timeout,
            Status::Crashed => self.crashed,
            _ => false,
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self == RetryOn::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_filter() {
        assert_eq!(RetryOn::default(), RetryOn::ALL);
        let s = RetryOn::NONE.with_crashed().with_error();
        assert!(s.allows(Status::Error) && s.allows(Status::Crashed));
        assert!(!s.allows(Status::Timeout) && !s.allows(Status::Ok));
        assert!(!RetryOn::ALL.allows(Status::Cancelled) && !RetryOn::ALL.allows(Status::Skipped));
        assert_eq!(RetryOn::of([Status::Timeout]), RetryOn::NONE.with_timeout());
    }
}
