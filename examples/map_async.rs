//! The tutorial's `map_async` example in Rust: five tasks, each drawing a random value,
//! sleeping that long and returning `(identifier, value)`; results come back in order.
//!
//! ```text
//! cargo run --example map_async
//! Waiting for results...
//! Got: (0, 0.0219)
//! ...
//! ```

use std::time::Duration;

use jobpool::pool::{Pool, PoolError, Registry, TaskError, worker};

/// The task: draw a value, sleep it, return it with the identifier.
fn task(identifier: u32) -> Result<(u32, f64), TaskError> {
    let value = fastrand::f64();
    std::thread::sleep(Duration::from_secs_f64(value));
    Ok((identifier, value))
}

fn main() -> Result<(), PoolError> {
    let mut registry = Registry::new();
    registry.register("task", task);
    worker::run_if_worker(&registry);

    let pool = Pool::builder().registry(registry).build()?;
    let result = pool.map_async::<_, (u32, f64)>("task", 0..5u32)?;
    println!("Waiting for results...");
    for (identifier, value) in result.get(None)? {
        println!("Got: ({identifier}, {value})");
    }
    Ok(())
}
