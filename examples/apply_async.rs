//! The tutorial's `apply_async` example in Rust: one task that draws a random value,
//! sleeps that many seconds and returns it.
//!
//! ```text
//! cargo run --example apply_async
//! Waiting for result...
//! Got: 0.5488135039273248
//! ```

use std::time::Duration;

use jobpool::pool::{Pool, PoolError, Registry, TaskError, worker};

/// The task: draw a value in [0, 1), sleep that many seconds, return it.
fn task(_: ()) -> Result<f64, TaskError> {
    let value = fastrand::f64();
    std::thread::sleep(Duration::from_secs_f64(value));
    Ok(value)
}

fn main() -> Result<(), PoolError> {
    let mut registry = Registry::new();
    registry.register("task", task);
    // A worker process is this program started again: it serves tasks and never returns.
    worker::run_if_worker(&registry);

    let pool = Pool::builder().registry(registry).build()?;
    let result = pool.apply_async::<_, f64>("task", ())?;
    println!("Waiting for result...");
    let value = result.get(None)?;
    println!("Got: {value}");
    Ok(())
}
