//! `jobpool run` (skeleton).

use clap::Args;

/// `jobpool run`.
#[derive(Debug, Args)]
pub struct RunArgs {}

pub fn run(_args: RunArgs, _registry: &crate::pool::Registry) -> u8 {
    eprintln!("jobpool run: not implemented yet");
    super::EXIT_INVALID
}
