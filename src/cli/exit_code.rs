//! Exit codes, decided in one place from a run's summary.
//!
//! 0 every task ok; 1 a task failed (error, timeout, crashed) or an output could not be
//! written; 2 invalid job file or usage; 3 the job's `timeout` passed; 130 interrupted.
//! `run.json` records the same code the process returns.

use crate::event::{CancelReason, RunSummary};

/// Exit code: every task ok.
pub const OK: u8 = 0;
/// Exit code: a task failed (error, timeout, crashed).
pub const TASK_FAILED: u8 = 1;
/// Exit code: an invalid job file or a usage error.
pub const INVALID: u8 = 2;
/// Exit code: the job's `timeout` passed.
pub const DEADLINE: u8 = 3;
/// Exit code: interrupted (Ctrl-C, SIGTERM, SIGHUP).
pub const INTERRUPTED: u8 = 130;

/// The exit code of one run.
pub fn of(summary: &RunSummary) -> u8 {
    let failed = summary.counts.failures() > 0 || summary.front_end_error.is_some();
    match summary.cancelled {
        Some(CancelReason::Interrupt) => INTERRUPTED,
        Some(CancelReason::Deadline) => DEADLINE,
        Some(CancelReason::FrontEndFailed) => TASK_FAILED,
        // The reader took what it wanted, or a newer run took over: what was delivered
        // decides.
        Some(CancelReason::OutputClosed | CancelReason::Superseded) | None => {
            if failed {
                TASK_FAILED
            } else {
                OK
            }
        }
    }
}

/// The more serious of two exit codes (several jobs in one `jobpool run`).
pub fn worse(a: u8, b: u8) -> u8 {
    let rank = |c: u8| match c {
        INTERRUPTED => 4,
        INVALID => 3,
        DEADLINE => 2,
        TASK_FAILED => 1,
        _ => 0,
    };
    if rank(b) > rank(a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::record::StatusCounts;

    fn summary(cancelled: Option<CancelReason>, failures: u64, front_end: bool) -> RunSummary {
        RunSummary {
            run_id: "r".into(),
            job: "j".into(),
            total: 10,
            counts: StatusCounts { ok: 10 - failures, error: failures, ..Default::default() },
            resumed: 0,
            wall: Duration::ZERO,
            cancelled,
            skipped: None,
            first_failure: None,
            front_end_error: front_end.then(|| "disk full".into()),
        }
    }

    #[test]
    fn exit_codes_truth_table() {
        use CancelReason::*;
        let table = [
            (None, 0, false, OK),
            (None, 2, false, TASK_FAILED),
            (None, 0, true, TASK_FAILED),
            (Some(Deadline), 0, false, DEADLINE),
            (Some(Deadline), 3, false, DEADLINE),
            (Some(Interrupt), 3, false, INTERRUPTED),
            (Some(Interrupt), 0, true, INTERRUPTED),
            (Some(OutputClosed), 0, false, OK),
            (Some(OutputClosed), 1, false, TASK_FAILED),
            (Some(FrontEndFailed), 0, true, TASK_FAILED),
            (Some(Superseded), 0, false, OK),
        ];
        for (cancel, failures, front_end, code) in table {
            assert_eq!(of(&summary(cancel, failures, front_end)), code, "{cancel:?} {failures}");
        }
    }

    #[test]
    fn the_worse_code_wins() {
        assert_eq!(worse(OK, TASK_FAILED), TASK_FAILED);
        assert_eq!(worse(INTERRUPTED, DEADLINE), INTERRUPTED);
        assert_eq!(worse(DEADLINE, TASK_FAILED), DEADLINE);
        assert_eq!(worse(INVALID, TASK_FAILED), INVALID);
    }
}
