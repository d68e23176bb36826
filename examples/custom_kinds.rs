//! A program that embeds jobpool and registers its own task kinds.
//!
//! It gets the whole `jobpool` command line (`run`, `check`, `plan`, `kinds`, ...) for
//! job files that use its kinds, through one call: `jobpool::cli::main_with(registry)`.
//! That call also turns the process into a pool worker when it was started as one, so
//! the functions run in worker processes like the built-in kinds.
//!
//! Arguments bind by name: a struct's fields, or the names given to `register_named`.
//! `check` (and `run`, which checks first) holds each job's `[args]` to them, so a
//! misspelled or missing argument is reported with its line and column before anything
//! runs.
//!
//! ```sh
//! cargo run --example custom_kinds -- kinds
//! cargo run --example custom_kinds -- run examples/jobs/collatz.toml
//! ```

use std::process::ExitCode;

use jobpool::pool::TaskError;
use serde::{Deserialize, Serialize};

/// Named arguments: a job's `[args]` arrive as an object, so a struct takes them by
/// name, and its fields are the arguments `greet` takes (`name`, `times`).
#[derive(Deserialize)]
struct Greeting {
    name: String,
    times: u32,
}

#[derive(Serialize)]
struct Steps {
    start: u64,
    steps: u32,
    peak: u64,
}

/// Steps of the Collatz sequence from `n` down to 1.
fn collatz(n: u64) -> Result<Steps, TaskError> {
    if n == 0 {
        return Err(TaskError::new("collatz is defined for n >= 1"));
    }
    let (mut x, mut steps, mut peak) = (n, 0u32, n);
    while x != 1 {
        x = if x % 2 == 0 { x / 2 } else { 3 * x + 1 };
        peak = peak.max(x);
        steps += 1;
    }
    Ok(Steps { start: n, steps, peak })
}

fn main() -> ExitCode {
    let mut registry = jobpool::task::builtins();
    // One argument, named `n`: its value is passed as it is.
    registry.register_named("collatz", &["n"], collatz);
    registry.register("greet", |g: Greeting| -> Result<String, TaskError> {
        Ok(vec![format!("hello, {}", g.name); g.times as usize].join(" / "))
    });
    // A task that takes the process down with it: the pool records it as `crashed`,
    // replaces the worker, and the other tasks go on.
    registry.register_named("abort_if", &["n"], |n: i64| -> Result<i64, TaskError> {
        if n < 0 {
            std::process::abort();
        }
        Ok(n)
    });
    // Several arguments by position: the names bind a job's `w` and `h` to them.
    registry.register_named("area", &["w", "h"], |(w, h): (f64, f64)| -> Result<f64, TaskError> {
        Ok(w * h)
    });
    jobpool::cli::main_with(registry)
}
