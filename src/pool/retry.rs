//! Which failures `retries` applies to: [`RetryOn`], the pool's retry filter.
//!
//! Owns: the set type and its parsing from the job file's names. Must not: decide
//! anything by itself (the dispatcher asks [`RetryOn::allows`] where it decides a retry).

use std::fmt;

use crate::record::Status;

/// A set of failure kinds that [`PoolBuilder::retries`](super::PoolBuilder::retries)
/// applies to (`error`, `timeout`, `crashed`); default: all three. A failure of another
/// kind is final on its first attempt.
///
/// ```
/// use jobpool::pool::RetryOn;
/// let only_crashes = RetryOn::NONE.with_crashed();
/// assert_eq!(only_crashes.to_string(), "crashed");
/// assert_eq!("timeout, crashed".parse::<RetryOn>().unwrap(), RetryOn::NONE.with_timeout().with_crashed());
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
    /// The kind names, in order.
    pub const NAMES: [&'static str; 3] = ["error", "timeout", "crashed"];

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

impl fmt::Display for RetryOn {
    /// The kinds, comma-separated, in [`RetryOn::NAMES`] order (`""` when empty).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = [self.error, self.timeout, self.crashed];
        let names: Vec<&str> =
            Self::NAMES.iter().zip(on).filter(|(_, on)| *on).map(|(n, _)| *n).collect();
        f.write_str(&names.join(", "))
    }
}

/// An unknown failure kind name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown failure kind {0:?}: expected error, timeout or crashed")]
pub struct UnknownFailureKind(pub String);

impl std::str::FromStr for RetryOn {
    type Err = UnknownFailureKind;

    /// Comma- or space-separated kind names (`"error, timeout"`); empty = none.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = RetryOn::NONE;
        for name in s.split([',', ' ']).map(str::trim).filter(|n| !n.is_empty()) {
            set = match name {
                "error" => set.with_error(),
                "timeout" => set.with_timeout(),
                "crashed" => set.with_crashed(),
                other => return Err(UnknownFailureKind(other.to_string())),
            };
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_parse_print_and_filter() {
        assert_eq!(RetryOn::default(), RetryOn::ALL);
        assert_eq!(RetryOn::ALL.to_string(), "error, timeout, crashed");
        assert_eq!("".parse::<RetryOn>().unwrap(), RetryOn::NONE);
        let s: RetryOn = "crashed,error".parse().unwrap();
        assert!(s.allows(Status::Error) && s.allows(Status::Crashed));
        assert!(!s.allows(Status::Timeout) && !s.allows(Status::Ok));
        assert!(!RetryOn::ALL.allows(Status::Cancelled) && !RetryOn::ALL.allows(Status::Skipped));
        assert_eq!(RetryOn::of([Status::Timeout]), RetryOn::NONE.with_timeout());
        assert_eq!(
            "oops".parse::<RetryOn>().unwrap_err().to_string(),
            "unknown failure kind \"oops\": expected error, timeout or crashed"
        );
    }
}
