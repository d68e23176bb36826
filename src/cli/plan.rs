//! `jobpool plan`: print a job's submissions as JSON lines (`index`, `key`, `args`).
//! Streams: a plan of millions of submissions runs in constant memory.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::Args;

use super::diag;
use crate::plan::Plan;
use crate::pool::Registry;
use crate::validate;

/// Arguments of `jobpool plan`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  jobpool plan jobs/sweep.toml\n  jobpool plan jobs/sweep.toml --limit 5\n  jobpool plan jobs/sweep.toml --set args.seed=[1,2]"
)]
pub struct PlanArgs {
    /// The job file.
    #[arg(value_name = "JOB")]
    pub job: PathBuf,
    /// Print at most N submissions.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Override a key before planning (as in `jobpool run --set`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Print the plan; exit 2 when the job is invalid.
pub fn run(args: PlanArgs, registry: &Registry) -> u8 {
    let opts = super::load_options(registry, args.set);
    let job = match validate::load(&args.job, &opts) {
        Ok(job) => job,
        Err(e) => {
            eprint!("{}", diag::render(&e));
            return super::EXIT_INVALID;
        }
    };
    let names: Vec<Vec<u8>> =
        job.args.names.iter().map(|n| serde_json::to_vec(n).unwrap_or_default()).collect();
    let plan = Plan::new(&job);
    let limit = args.limit.unwrap_or(u64::MAX);
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut line = Vec::with_capacity(256);
    for sub in plan.take(usize::try_from(limit).unwrap_or(usize::MAX)) {
        line.clear();
        line.extend_from_slice(b"{\"index\":");
        line.extend_from_slice(sub.index.to_string().as_bytes());
        line.extend_from_slice(b",\"key\":\"");
        line.extend_from_slice(sub.key.as_bytes());
        line.extend_from_slice(b"\",\"args\":{");
        for (i, (name, value)) in names.iter().zip(&sub.args).enumerate() {
            if i > 0 {
                line.push(b',');
            }
            line.extend_from_slice(name);
            line.push(b':');
            let _ = serde_json::to_writer(&mut line, value);
        }
        line.extend_from_slice(b"}}\n");
        if out.write_all(&line).is_err() {
            // A closed pipe (`| head`) is not an error.
            return super::EXIT_OK;
        }
    }
    let _ = out.flush();
    super::EXIT_OK
}
