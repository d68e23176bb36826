//! `jobpool schema`: print the job file's JSON Schema (generated from `spec`).

use std::io::Write;

use clap::Args;

/// Arguments of `jobpool schema`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  jobpool schema > schemas/job.schema.json\n\nStart a job file with `#:schema ../schemas/job.schema.json` so that editors validate it."
)]
pub struct SchemaArgs {}

/// Print the schema.
pub fn run(_args: SchemaArgs) -> u8 {
    let _ = std::io::stdout().write_all(crate::spec::schema_json().as_bytes());
    super::EXIT_OK
}
