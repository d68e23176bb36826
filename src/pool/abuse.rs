//! A test-only worker that breaks the protocol on purpose (issue 13), to prove that the
//! pool survives a worker that writes garbage on its channel.
//!
//! Compiled into debug builds only (`cfg(debug_assertions)`: the tests' builds), and
//! only acted on when a process started as a worker finds
//! `JOBPOOL_TEST_WORKER_ABUSE=<mode>` in its environment; a release build has no trace
//! of it. `JOBPOOL_TEST_WORKER_ABUSE_AFTER=N` sends N result messages properly first;
//! `JOBPOOL_TEST_WORKER_ABUSE_ONCE=<path>` makes only the first worker that creates
//! `<path>` misbehave (its replacement then works). Each mode abuses one message:
//!
//! | mode | instead of the message |
//! | --- | --- |
//! | `garbage` | 40 bytes that are no message |
//! | `truncated` | the first half of the message's bytes |
//! | `version` | (at the handshake) a hello with the next protocol version |
//! | `unknown-id` | the results, for tasks 2^40 further on (never sent) |
//! | `gap` | the results, one task further on (a result skipped) |
//! | `duplicate` | the message, twice |
//! | `bad-ends` | the message, its last result claiming 4 GiB of payload |
//! | `bad-codes` | the message, with a code no result has |
//! | `bad-value` | the message, every value replaced by bytes that decode to nothing |
//! | `forked` | a `Forked` message (which only the zygote sends), naming pid 1 |
//! | `close` | nothing: the channel is closed; the worker goes on running its tasks |
//! | `exit` | nothing: the worker exits with code 0 in the middle of its batch |
//!
//! See `book/src/internals/pool.md` ("A worker that breaks the protocol").

use ipc_channel::ipc::IpcSender;
use serde::{Deserialize, Serialize};

use super::protocol::{Blob, FromWorker, PROTOCOL_VERSION, ResultBatch, Slot};

const MODE_VAR: &str = "JOBPOOL_TEST_WORKER_ABUSE";
const AFTER_VAR: &str = "JOBPOOL_TEST_WORKER_ABUSE_AFTER";
const ONCE_VAR: &str = "JOBPOOL_TEST_WORKER_ABUSE_ONCE";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Garbage,
    Truncated,
    Version,
    UnknownId,
    Gap,
    Duplicate,
    BadEnds,
    BadCodes,
    BadValue,
    Forked,
    Close,
    Exit,
}

pub(crate) struct Abuse {
    mode: Mode,
    /// Messages still to send properly.
    after: u32,
    done: bool,
}

impl Abuse {
    /// The abuse this worker was asked for, if any.
    pub(crate) fn from_env() -> Option<Abuse> {
        let mode = match std::env::var(MODE_VAR).ok()?.as_str() {
            "garbage" => Mode::Garbage,
            "truncated" => Mode::Truncated,
            "version" => Mode::Version,
            "unknown-id" => Mode::UnknownId,
            "gap" => Mode::Gap,
            "duplicate" => Mode::Duplicate,
            "bad-ends" => Mode::BadEnds,
            "bad-codes" => Mode::BadCodes,
            "bad-value" => Mode::BadValue,
            "forked" => Mode::Forked,
            "close" => Mode::Close,
            "exit" => Mode::Exit,
            other => {
                eprintln!("jobpool worker: unknown {MODE_VAR}={other}");
                return None;
            }
        };
        if let Some(path) = std::env::var_os(ONCE_VAR)
            && std::fs::OpenOptions::new().write(true).create_new(true).open(path).is_err()
        {
            return None;
        }
        let after = std::env::var(AFTER_VAR).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        Some(Abuse { mode, after, done: false })
    }

    /// The protocol version to say hello with.
    pub(crate) fn hello_version(&self) -> u32 {
        if self.mode == Mode::Version { PROTOCOL_VERSION + 1 } else { PROTOCOL_VERSION }
    }

    /// Send `results` (or what the mode sends instead) on `tx`; `None` once closed.
    ///
    /// The results of the abused message are also taken out of the worker's log (`slot`):
    /// they exist nowhere else then, so the pool cannot recover them from the log of the
    /// killed worker, and what it does with the tasks is seen in their records.
    pub(crate) fn send(
        &mut self,
        tx: &mut Option<IpcSender<FromWorker>>,
        slot: &Slot,
        mut results: ResultBatch,
    ) -> bool {
        let Some(t) = tx.as_ref() else {
            return true; // closed: the results vanish, the worker goes on
        };
        if self.done || self.mode == Mode::Version || self.after > 0 {
            self.after = self.after.saturating_sub(1);
            return t.send(FromWorker::Results(results)).is_ok();
        }
        self.done = true;
        let n = results.len();
        if self.mode != Mode::Exit {
            slot.log_forget();
        }
        match self.mode {
            Mode::Garbage => {
                return raw(
                    t,
                    b"\xff\xff\xff\xff\x0fnot a message at all\x00\x01\x02\x03\xfe\xfd".to_vec(),
                );
            }
            Mode::Truncated => {
                let bytes = postcard::to_stdvec(&FromWorker::Results(results)).unwrap_or_default();
                return raw(t, bytes[..bytes.len() / 2].to_vec());
            }
            Mode::Duplicate => {
                let bytes = postcard::to_stdvec(&FromWorker::Results(results)).unwrap_or_default();
                return raw(t, bytes.clone()) && raw(t, bytes);
            }
            Mode::Forked => return t.send(FromWorker::Forked { pid: 1 }).is_ok(),
            Mode::Close => {
                *tx = None;
                return true;
            }
            Mode::Exit => std::process::exit(0),
            Mode::UnknownId => results.base += 1 << 40,
            Mode::Gap => results.base += 1,
            Mode::BadEnds => {
                let at = results.ends.0.len() - 4;
                results.ends.0[at..].copy_from_slice(&u32::MAX.to_le_bytes());
            }
            Mode::BadCodes => results.codes = Blob(vec![200; n]),
            Mode::BadValue => {
                results.blob = Blob(vec![0xff; n]);
                results.ends = Blob((1..=n as u32).flat_map(u32::to_le_bytes).collect());
            }
            Mode::Version => unreachable!("sent properly above"),
        }
        t.send(FromWorker::Results(results)).is_ok()
    }
}

/// Bytes sent as they are, as a whole message on the channel.
fn raw(t: &IpcSender<FromWorker>, bytes: Vec<u8>) -> bool {
    t.clone().to_opaque().to::<Raw>().send(Raw(bytes)).is_ok()
}

/// Bytes that postcard writes as they are (a tuple of bytes has no length prefix).
struct Raw(Vec<u8>);

impl Serialize for Raw {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(self.0.len())?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("raw bytes are only sent"))
    }
}
