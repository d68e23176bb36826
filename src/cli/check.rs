//! `jobpool check`: validate job files and folders, report every problem, exit 2 if any.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::diag;
use crate::plan::Plan;
use crate::pool::Registry;
use crate::validate;

/// Arguments of `jobpool check`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  jobpool check jobs/sweep.toml\n  jobpool check jobs/\n  jobpool check jobs/ --set workers=8"
)]
pub struct CheckArgs {
    /// Job files, or folders (every *.toml in them, sorted).
    #[arg(required = true, value_name = "JOB")]
    pub jobs: Vec<PathBuf>,
    /// Override a key before checking: KEY is a dotted path (workers, args.seed), VALUE a
    /// TOML value or a plain string.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Check every job; one line per valid file on stdout, diagnostics on stderr.
pub fn run(args: CheckArgs, registry: &Registry) -> u8 {
    let paths = match validate::collect(&args.jobs) {
        Ok(found) => {
            for path in &found.skipped {
                eprintln!("{}", diag::skipped_note(path));
            }
            found.jobs
        }
        Err(e) => {
            eprint!("{}", diag::render(&e));
            return super::EXIT_INVALID;
        }
    };
    let opts = super::load_options(registry, args.set);
    let mut invalid = 0;
    let mut stdout = std::io::stdout().lock();
    for path in &paths {
        match validate::load(path, &opts) {
            Ok(job) => {
                let n = Plan::new(&job).len();
                let s = if n == 1 { "" } else { "s" };
                if writeln!(stdout, "{}: ok, {n} submission{s}", path.display()).is_err() {
                    return super::EXIT_OK;
                }
            }
            Err(e) => {
                invalid += 1;
                let _ = stdout.flush();
                eprint!("{}", diag::render(&e));
            }
        }
    }
    if invalid > 0 {
        eprintln!(
            "{invalid} of {} job file{} invalid",
            paths.len(),
            if paths.len() == 1 { "" } else { "s" }
        );
        super::EXIT_INVALID
    } else {
        super::EXIT_OK
    }
}
