//! `jobpool schema` (skeleton).

use clap::Args;

/// `jobpool schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {}

pub fn run(_args: SchemaArgs) -> u8 {
    eprintln!("jobpool schema: not implemented yet");
    super::EXIT_INVALID
}
