//! jobpool: the declarative, Rust counterpart of Python's `multiprocessing.Pool`.
//!
//! Job files (TOML) declare a task, its argument space, limits and sinks; `jobpool`
//! expands them into submissions, runs them on worker processes connected with
//! `ipc-channel`, and writes the records in submission order. The same pool is a library:
//! register task functions in a [`pool::Registry`] and call `apply_async`, `map_async`,
//! `starmap_async` as a Python program calls `Pool`.
//!
//! Layering: `spec` → `validate` → `model` → `plan` are pure; only `pool` and `watch`
//! own threads or processes; only `cli` prints diagnostics or exits.

#![warn(missing_docs)]

pub mod cli;
pub mod model;
pub mod plan;
pub mod pool;
pub mod record;
pub mod sink;
pub mod source;
pub mod spec;
pub mod store;
pub mod task;
pub mod validate;
