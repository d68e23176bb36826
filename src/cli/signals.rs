//! Ctrl-C, SIGTERM and SIGHUP for the commands that run jobs (`run`, `exec`, `watch`):
//! one policy, written once.
//!
//! The first signal cancels the registered run (TERM, grace period, KILL of running
//! tasks; records flushed, sinks complete); the second kills what runs at once and lets
//! the run end (sinks complete, `run.json` finished), exiting after 5 s if it cannot; the
//! third exits at once. A signal while no run is registered is remembered: a run
//! registered afterwards starts cancelled.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use super::exit_code::INTERRUPTED;
use super::frontend::say;
use crate::event::CancelReason;
use crate::runner::Control;

/// The installed handlers and the run they act on.
pub struct Signals {
    current: Arc<Mutex<Option<Control>>>,
    seen: Arc<AtomicU8>,
}

impl Signals {
    /// Install the handlers; `on_signal` runs (on the signal thread) after each signal
    /// was acted on, e.g. to wake a loop that waits for something else.
    pub fn install(on_signal: impl Fn() + Send + 'static) -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let current: Arc<Mutex<Option<Control>>> = Arc::new(Mutex::new(None));
        let seen = Arc::new(AtomicU8::new(0));
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let (cur, n) = (current.clone(), seen.clone());
        std::thread::Builder::new().name("jobpool-signals".into()).spawn(move || {
            for _ in signals.forever() {
                {
                    // Counted under the lock: a run registering itself afterwards sees it.
                    let cur = cur.lock().unwrap_or_else(|e| e.into_inner());
                    let count = n.fetch_add(1, Ordering::SeqCst) + 1;
                    match (count, cur.as_ref()) {
                        (1, Some(control)) => control.cancel(CancelReason::Interrupt),
                        (1, None) => {}
                        (2, Some(control)) => {
                            say("killing every running task now\n");
                            control.kill();
                            std::thread::spawn(|| {
                                std::thread::sleep(std::time::Duration::from_secs(5));
                                std::process::exit(INTERRUPTED as i32);
                            });
                        }
                        _ => std::process::exit(INTERRUPTED as i32),
                    }
                }
                on_signal();
            }
        })?;
        Ok(Signals { current, seen })
    }

    /// Whether a signal came.
    pub fn interrupted(&self) -> bool {
        self.seen.load(Ordering::SeqCst) > 0
    }

    /// Make `control` the one signals act on; `false` (and `control` cancelled) if a
    /// signal already came.
    pub fn register(&self, control: &Control) -> bool {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *cur = Some(control.clone());
        if self.interrupted() {
            control.cancel(CancelReason::Interrupt);
            return false;
        }
        true
    }

    /// No run to act on.
    pub fn unregister(&self) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
