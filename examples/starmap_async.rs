//! The tutorial's `starmap_async` example in Rust: three arguments per task, from
//! `zip(range(5), range(0, 10, 2), range(0, 15, 3))`; each task draws a random value,
//! sleeps that long and returns `arg1 + arg2 + arg3 + value`, in submission order.
//!
//! ```text
//! cargo run --example starmap_async
//! Waiting for results...
//! Got: 0.4236
//! Got: 6.9187
//! ...
//! ```

use std::time::Duration;

use jobpool::pool::{Pool, PoolError, Registry, TaskError, worker};

/// The task: three arguments (a tuple), a random sleep, their sum plus the value.
fn task((arg1, arg2, arg3): (i64, i64, i64)) -> Result<f64, TaskError> {
    let value = fastrand::f64();
    std::thread::sleep(Duration::from_secs_f64(value));
    Ok((arg1 + arg2 + arg3) as f64 + value)
}

fn main() -> Result<(), PoolError> {
    let mut registry = Registry::new();
    registry.register("task", task);
    worker::run_if_worker(&registry);

    let pool = Pool::builder().registry(registry).build()?;
    let args: Vec<(i64, i64, i64)> = (0..5)
        .zip((0..10).step_by(2))
        .zip((0..15).step_by(3))
        .map(|((a, b), c)| (a, b, c))
        .collect();
    let result = pool.starmap_async::<_, f64>("task", args)?;
    println!("Waiting for results...");
    for value in result.get(None)? {
        println!("Got: {value}");
    }
    Ok(())
}
