//! The tutorial's `map_async` example in Rust: five tasks over `range(5)`, each drawing a
//! random value, sleeping that long and returning `identifier + value`; the results come
//! back in submission order, so the integer part of each says which task it came from.
//!
//! ```text
//! cargo run --example map_async
//! Waiting for results...
//! Got: 0.021938
//! Got: 1.8453
//! ...
//! ```

use std::time::Duration;

use jobpool::pool::{Pool, PoolError, Registry, TaskError, worker};

/// The task: draw a value in [0, 1), sleep that many seconds, return `identifier + value`.
fn task(identifier: u32) -> Result<f64, TaskError> {
    let value = fastrand::f64();
    std::thread::sleep(Duration::from_secs_f64(value));
    Ok(f64::from(identifier) + value)
}

fn main() -> Result<(), PoolError> {
    let mut registry = Registry::new();
    registry.register("task", task);
    worker::run_if_worker(&registry);

    let pool = Pool::builder().registry(registry).build()?;
    let result = pool.map_async::<_, f64>("task", 0..5u32)?;
    println!("Waiting for results...");
    for value in result.get(None)? {
        println!("Got: {value}");
    }
    Ok(())
}
