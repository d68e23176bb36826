//! The worker side of the pool (skeleton).

use super::Registry;

/// Turn this process into a worker and never return, when it was started as one.
pub fn run_if_worker(_registry: &Registry) {}
