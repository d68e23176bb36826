//! The command line: clap arguments, one file per subcommand, diagnostics rendering and
//! exit codes. Uses everything; nothing uses it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::pool::Registry;

mod check;
mod collect;
pub mod diag;
mod exec;
pub mod exit_code;
mod explain;
mod frontend;
mod init;
mod kinds;
mod plan;
mod report;
mod run;
mod schema;
mod signals;
mod slurm;
mod watch;

pub use self::exit_code::{
    DEADLINE as EXIT_DEADLINE, INTERRUPTED as EXIT_INTERRUPTED, INVALID as EXIT_INVALID,
    OK as EXIT_OK, TASK_FAILED as EXIT_TASK_FAILED,
};

/// Run declarative job files on a pool of worker processes.
#[derive(Debug, Parser)]
#[command(name = "jobpool", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// The options every subcommand takes.
#[derive(Debug, clap::Args)]
struct Global {
    /// Colour in diagnostics: `auto` follows the terminal and `NO_COLOR`.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = diag::ColorWhen::Auto)]
    color: diag::ColorWhen,
}

/// `jobpool run ...` alone: clap builds the arguments of every subcommand before it
/// parses (about 0.2 ms here, on the way to the first task), and `run` needs only its
/// own. Anything this does not take as a run (`--help`, `--version`, an error) goes to
/// [`Cli`], which says it exactly as it always does.
#[derive(Debug, Parser)]
#[command(name = "jobpool")]
struct RunOnly {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: RunCommand,
}

#[derive(Debug, Subcommand)]
enum RunCommand {
    Run(run::RunArgs),
}

impl Cli {
    /// The command line `args` (the program's name first), parsed; a `run` quickly (see
    /// [`RunOnly`]).
    fn parse_args(args: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
        Cli::run_only(&args).map_or_else(|| Cli::try_parse_from(args), Ok)
    }

    /// `args` as a `run` by [`RunOnly`]; `None` for anything else.
    fn run_only(args: &[std::ffi::OsString]) -> Option<Cli> {
        if args.get(1).is_none_or(|a| a != "run") {
            return None;
        }
        let RunOnly { global, command: RunCommand::Run(args) } =
            RunOnly::try_parse_from(args).ok()?;
        Some(Cli { global, command: Command::Run(args) })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run job files on a pool of workers.
    Run(run::RunArgs),
    /// Validate job files: every problem of every file, then exit 2 if any.
    Check(check::CheckArgs),
    /// Merge the shard journals of a run (`run --shard I/N`) into complete, ordered sinks.
    Collect(collect::CollectArgs),
    /// Run a command over values without a job file (GNU parallel's habits).
    Exec(exec::ExecArgs),
    /// Write a commented starter job file (and ignore `.jobpool/` in git).
    Init(init::InitArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions(init::CompletionsArgs),
    /// Print the man page.
    Man(init::ManArgs),
    /// Print a job's submissions as JSON lines (index, key, args).
    Plan(plan::PlanArgs),
    /// Run job files, then rerun a job when a file it depends on changes.
    Watch(watch::WatchArgs),
    /// Summarise a run: md, html, json or junit; compare two runs.
    Report(report::ReportArgs),
    /// List past runs (id, state, start, wall time, counts); prune old ones.
    Runs(report::RunsArgs),
    /// Explain a diagnostic code (`jobpool explain unknown-key`), or list them all.
    Explain(explain::ExplainArgs),
    /// Print the job file's JSON Schema.
    Schema(schema::SchemaArgs),
    /// List the task kinds this binary knows.
    Kinds(kinds::KindsArgs),
}

/// The stock `jobpool` binary: the built-in task kinds only.
pub fn main() -> ExitCode {
    main_with(crate::task::builtins())
}

/// The whole `jobpool` command line for a program that registers its own task kinds.
///
/// Call it as the only thing in `main`; it also turns the process into a pool worker when
/// it was started as one.
pub fn main_with(registry: Registry) -> ExitCode {
    crate::pool::worker::run_if_worker(&registry);
    // The worker zygote, for the commands that run jobs: forked first thing (it then
    // builds what workers need while the command line is parsed and the job loaded),
    // and again below for a command line that names its command later.
    if matches!(
        std::env::args_os().nth(1).as_deref().and_then(|a| a.to_str()),
        Some("run" | "exec" | "watch")
    ) {
        crate::pool::zygote::start(&registry);
    }
    let cli = match Cli::parse_args(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            crate::pool::zygote::stop();
            return ExitCode::from(if e.use_stderr() { EXIT_INVALID } else { EXIT_OK });
        }
    };
    diag::set_color(cli.global.color);
    if matches!(cli.command, Command::Run(_) | Command::Exec(_) | Command::Watch(_)) {
        // Before any thread starts: workers are then forked from it, not exec'd.
        crate::pool::zygote::start(&registry);
    }
    let code = match cli.command {
        Command::Run(args) => run::run(args, &registry),
        Command::Check(args) => check::run(args, &registry),
        Command::Exec(args) => exec::run(args, &registry),
        Command::Collect(args) => collect::run(args, &registry),
        Command::Init(args) => init::run(args),
        Command::Completions(args) => init::completions(args),
        Command::Man(args) => init::man(args),
        Command::Plan(args) => plan::run(args, &registry),
        Command::Watch(args) => watch::run(args, &registry),
        Command::Report(args) => report::run(args, &registry),
        Command::Runs(args) => report::runs(args, &registry),
        Command::Schema(args) => schema::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Kinds(args) => kinds::run(args, &registry),
    };
    // Its workers' CPU time and memory are then counted in ours.
    crate::pool::zygote::stop();
    ExitCode::from(code)
}

/// How `check`, `plan` and `run` load job files: with the registry's kinds and the
/// argument names those kinds declare, so that `[args]` is checked against them.
pub(crate) fn load_options(
    registry: &Registry,
    overrides: Vec<String>,
) -> crate::validate::LoadOptions {
    let kind_args = registry
        .kinds()
        .into_iter()
        .filter_map(|kind| {
            let a = registry.arg_names(&kind)?;
            let args =
                crate::validate::KindArgs { names: a.names.clone(), optional: a.optional.clone() };
            Some((kind, args))
        })
        .collect();
    crate::validate::LoadOptions { kinds: registry.kinds(), kind_args, overrides }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<std::ffi::OsString> {
        line.split_whitespace().map(Into::into).collect()
    }

    #[test]
    fn a_run_parsed_alone_is_what_the_whole_command_line_makes_of_it() {
        for line in [
            "jobpool run a.toml",
            "jobpool run a.toml b.toml --workers 3 -q --progress never",
            "jobpool run --color never --set timeout=\"1s\" a.toml",
            "jobpool run --resume --run-id x a.toml --report md=r.md",
            // Checked later, by the job's loading: the same text either way.
            "jobpool run a.toml --workers many",
        ] {
            let fast = Cli::run_only(&args(line)).unwrap_or_else(|| panic!("{line}: not a run"));
            let whole = Cli::try_parse_from(args(line)).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{whole:?}"), "{line}");
        }
    }

    #[test]
    fn help_version_and_errors_of_a_run_come_from_the_whole_command_line() {
        for line in [
            "jobpool run --help",
            "jobpool run --version",
            "jobpool run",
            "jobpool run a.toml --no-such-flag",
            "jobpool run a.toml --progress sometimes",
            "jobpool --color never run a.toml",
            "jobpool check a.toml",
        ] {
            assert!(Cli::run_only(&args(line)).is_none(), "{line}: taken as a run");
        }
        // And the whole command line still says them.
        let e = Cli::parse_args(args("jobpool run --version")).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
        let e = Cli::parse_args(args("jobpool run a.toml --no-such-flag")).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        assert!(e.to_string().contains("Usage: jobpool run"), "{e}");
    }
}
