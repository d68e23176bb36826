//! `jobpool check` (skeleton).

use clap::Args;

/// `jobpool check`.
#[derive(Debug, Args)]
pub struct CheckArgs {}

pub fn run(_args: CheckArgs, _registry: &crate::pool::Registry) -> u8 {
    eprintln!("jobpool check: not implemented yet");
    super::EXIT_INVALID
}
