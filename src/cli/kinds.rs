//! `jobpool kinds`: list the task kinds this binary knows, with the arguments each takes.

use std::io::Write;

use clap::Args;

use crate::pool::Registry;

/// Arguments of `jobpool kinds`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  jobpool kinds\n\n`command` and `script` are built in; a program that embeds the library adds its own.\nEach line names a kind and the arguments it takes from `[args]`, when it declares them."
)]
pub struct KindsArgs {}

/// One kind per line, sorted, built-ins included: its name and what it takes.
pub fn run(_args: KindsArgs, registry: &Registry) -> u8 {
    let mut kinds = registry.kinds();
    for builtin in ["command", "script"] {
        if !kinds.iter().any(|k| k == builtin) {
            kinds.push(builtin.to_string());
        }
    }
    kinds.sort();
    let width = kinds.iter().map(String::len).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for k in kinds {
        if writeln!(out, "{k:<width$}  {}", takes(registry, &k)).is_err() {
            break;
        }
    }
    super::EXIT_OK
}

/// What kind `kind` takes, in a few words.
fn takes(registry: &Registry, kind: &str) -> String {
    match (kind, registry.arg_names(kind)) {
        ("command", _) => "built in: any arguments, as {name} placeholders".into(),
        ("script", _) => "built in: any arguments, as variables".into(),
        (_, Some(a)) if a.names.is_empty() => "no arguments".into(),
        (_, Some(a)) => a
            .names
            .iter()
            .map(|n| if a.optional.contains(n) { format!("{n} (optional)") } else { n.clone() })
            .collect::<Vec<_>>()
            .join(", "),
        (_, None) => "arguments not declared: not checked by name".into(),
    }
}
