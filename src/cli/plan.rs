//! `jobpool plan` (skeleton).

use clap::Args;

/// `jobpool plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {}

pub fn run(_args: PlanArgs, _registry: &crate::pool::Registry) -> u8 {
    eprintln!("jobpool plan: not implemented yet");
    super::EXIT_INVALID
}
