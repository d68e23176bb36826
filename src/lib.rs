//! jobpool: the declarative, Rust counterpart of Python's `multiprocessing.Pool`.
//!
//! Job files (TOML) declare a task, its argument space, limits and sinks; `jobpool`
//! expands them into submissions, runs them on worker processes connected with
//! `ipc-channel`, and writes the records in submission order. The same pool is a library:
//! register task functions in a [`pool::Registry`] and call `apply_async`, `map_async`,
//! `starmap_async` as a Python program calls `Pool`.
//!
//! Layering: `spec` → `validate` → `model` → `plan` are pure; only `pool`, `backend`,
//! `runner` and `watch` own threads or processes; only `cli` prints diagnostics or exits.
//!
//! Reading and planning a job file, without running it:
//!
//! ```
//! use std::path::Path;
//! use jobpool::plan::Plan;
//! use jobpool::validate::{load_str, LoadOptions};
//!
//! let text = r#"
//! [task]
//! kind = "script"
//! script = "rate * size"
//!
//! [args]
//! rate = { range = [0.5, 2.0], step = 0.5 }
//! size = [8, 16]
//! "#;
//! let opts = LoadOptions { kinds: vec!["command".into(), "script".into()], ..Default::default() };
//! let job = load_str(Path::new("sweep.toml"), text, &opts).expect("a valid job");
//! let plan = Plan::new(&job);
//! assert_eq!(plan.len(), 6); // product: the first parameter varies slowest
//! let args: Vec<String> = plan.map(|s| format!("{}x{}", s.args[0], s.args[1])).collect();
//! assert_eq!(args, ["0.5x8", "0.5x16", "1.0x8", "1.0x16", "1.5x8", "1.5x16"]);
//!
//! // A mistake is a diagnostic naming the file, line and column.
//! let err = load_str(Path::new("bad.toml"), "workers = 0\n", &opts).unwrap_err();
//! assert!(!err.problems.is_empty());
//! ```

#![warn(missing_docs)]

#[cfg(feature = "jobs")]
pub mod backend;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "jobs")]
pub mod durable;
#[cfg(feature = "jobs")]
pub mod event;
pub mod model;
#[cfg(feature = "jobs")]
pub mod plan;
pub mod pool;
pub mod process;
pub mod record;
#[cfg(feature = "jobs")]
pub mod report;
#[cfg(feature = "jobs")]
pub mod runner;
#[cfg(feature = "jobs")]
pub mod sink;
#[cfg(feature = "jobs")]
pub mod source;
#[cfg(feature = "jobs")]
pub mod spec;
#[cfg(feature = "jobs")]
pub mod store;
#[cfg(feature = "jobs")]
pub mod task;
pub mod text;
#[cfg(feature = "jobs")]
pub mod validate;
#[cfg(feature = "cli")]
pub mod watch;
