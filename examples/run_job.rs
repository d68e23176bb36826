//! The runner as a library: load a job file, run it on the local pool, and handle the
//! run's events yourself — what `jobpool run` does with its journal, sinks and progress
//! line, in 40 lines. The book's "The library API" chapter shows this file.
//!
//! ```text
//! cargo run --example run_job -- jobs/seed-map.toml
//! started seed-map: 5 submissions on 4 workers
//! #2 ok after 0.19 s: 2.18…
//! ...
//! seed-map: 5 ok of 5 in 0.81 s
//! ```

use std::process::ExitCode;

use jobpool::backend::local::LocalBackend;
use jobpool::event::RunEvent;
use jobpool::runner::{Control, RunOptions, Runner};
use jobpool::validate::{self, LoadOptions};

// ANCHOR: run
fn main() -> ExitCode {
    // Worker processes re-execute this program: let them serve the built-in kinds.
    let registry = jobpool::task::builtins();
    jobpool::pool::worker::run_if_worker(&registry);

    let path = std::env::args().nth(1).unwrap_or_else(|| "jobs/seed-map.toml".into());
    let job = match validate::load(path.as_ref(), &LoadOptions::default()) {
        Ok(job) => job,
        Err(problems) => {
            // Every problem of the file, with line and column, as `jobpool check` shows them.
            eprint!("{}", jobpool::cli::diag::render(&problems));
            return ExitCode::from(2);
        }
    };
    let backend = LocalBackend::new(registry);
    let control = Control::new(); // control.cancel(reason) from any thread stops the run
    let options = RunOptions { run_id: "example".into(), ..RunOptions::default() };
    let summary = Runner::new(&backend).run(&job, options, &control, |event| {
        match event {
            RunEvent::RunStarted(start) => {
                println!(
                    "started {}: {} submissions on {} workers",
                    job.name, start.total, start.workers
                )
            }
            // One per submission, in completion order (a sink would reorder by index).
            RunEvent::TaskFinished(rec) => match &rec.value {
                Some(v) => println!(
                    "#{} {} after {:.2} s: {v}",
                    rec.index,
                    rec.status,
                    rec.duration_ms / 1e3
                ),
                None => println!(
                    "#{} {}: {}",
                    rec.index,
                    rec.status,
                    rec.error.as_deref().unwrap_or("")
                ),
            },
            _ => {}
        }
        Ok(()) // an Err here cancels the run (a front end that cannot write)
    });
    match summary {
        Ok(s) => {
            println!(
                "{}: {} ok of {} in {:.2} s",
                s.job,
                s.counts.get(jobpool::record::Status::Ok),
                s.total,
                s.wall.as_secs_f64()
            );
            ExitCode::from(if s.counts.failures() > 0 { 1 } else { 0 })
        }
        Err(e) => {
            eprintln!("the run could not start: {e}");
            ExitCode::from(1)
        }
    }
}
// ANCHOR_END: run
