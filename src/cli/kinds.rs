//! `jobpool kinds`: list the task kinds this binary knows.

use std::io::Write;

use clap::Args;

use crate::pool::Registry;

/// Arguments of `jobpool kinds`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  jobpool kinds\n\n`command` and `script` are built in; a program that embeds the library adds its own."
)]
pub struct KindsArgs {}

/// One kind per line, sorted, built-ins included.
pub fn run(_args: KindsArgs, registry: &Registry) -> u8 {
    let mut kinds = registry.kinds();
    for builtin in ["command", "script"] {
        if !kinds.iter().any(|k| k == builtin) {
            kinds.push(builtin.to_string());
        }
    }
    kinds.sort();
    let mut out = std::io::stdout().lock();
    for k in kinds {
        if writeln!(out, "{k}").is_err() {
            break;
        }
    }
    super::EXIT_OK
}
