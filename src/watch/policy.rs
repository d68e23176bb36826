//! What to do with a change that comes while a run is in progress: a pure function.

/// `--on-busy`: what a change to the job being run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnBusy {
    /// Cancel the run in progress (every process of it stopped), then run again.
    #[default]
    Restart,
    /// Let the run finish, then run once more with everything that changed meanwhile.
    Queue,
}

/// What the watch loop does with a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing runs: run the job now.
    Start,
    /// Cancel the run in progress (reason "superseded"); the job runs again after it.
    Restart,
    /// Run the job after the run in progress.
    Queue,
}

/// What happens to a change of a job. `running`: `None` when nothing runs, `Some(true)`
/// when the run in progress is of that job, `Some(false)` when it is of another job
/// (jobs run one after another; another job's run is never cancelled).
pub fn on_busy(policy: OnBusy, running: Option<bool>) -> Action {
    match (running, policy) {
        (None, _) => Action::Start,
        (Some(false), _) => Action::Queue,
        (Some(true), OnBusy::Restart) => Action::Restart,
        (Some(true), OnBusy::Queue) => Action::Queue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_table() {
        use Action::*;
        use OnBusy::{Queue as Q, Restart as R};
        let table = [
            (R, None, Start),
            (Q, None, Start),
            (R, Some(false), Queue),
            (Q, Some(false), Queue),
            (R, Some(true), Restart),
            (Q, Some(true), Queue),
        ];
        for (policy, running, want) in table {
            assert_eq!(on_busy(policy, running), want, "{policy:?} {running:?}");
        }
        assert_eq!(OnBusy::default(), R);
    }
}
