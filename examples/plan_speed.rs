//! The planner alone: expand a job's plan (with keys) and report submissions per second.
//! The divan bench `cargo bench --bench micro -- planner` measures the same; run as `cargo run --release --example plan_speed -- JOB`.

use std::path::PathBuf;
use std::time::Instant;

use jobpool::plan::Plan;
use jobpool::validate::{LoadOptions, load};

fn main() {
    let Some(path) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: plan_speed JOB");
        std::process::exit(2);
    };
    let job = match load(&path, &LoadOptions::default()) {
        Ok(job) => job,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let plan = Plan::new(&job);
    let total = plan.len();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut n = 0u64;
    let mut check = 0u64;
    for s in plan {
        n += 1;
        check = check.wrapping_add(s.key.as_bytes()[0] as u64 + s.args.len() as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "planner: {n} of {total} submissions in {secs:.3} s wall = {:.2} M/s; {cpu:.3} s CPU = {:.2} M/s per CPU-second (checksum {check})",
        n as f64 / secs / 1e6,
        n as f64 / cpu / 1e6
    );
}

/// User + system CPU time of this process: on a shared machine, wall time understates speed.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(ru.ru_utime) + t(ru.ru_stime)
    }
}
