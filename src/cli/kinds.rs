//! `jobpool kinds` (skeleton).

use clap::Args;

/// `jobpool kinds`.
#[derive(Debug, Args)]
pub struct KindsArgs {}

pub fn run(_args: KindsArgs, _registry: &crate::pool::Registry) -> u8 {
    eprintln!("jobpool kinds: not implemented yet");
    super::EXIT_INVALID
}
