//! `jobpool init`, `jobpool completions`, `jobpool man`: the newcomer's first steps and
//! the shell's habits.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};

use super::exit_code::{INVALID, OK, TASK_FAILED};

/// The schema file `init` writes beside the job file, so `#:schema` resolves in any
/// clone of the user's repository.
const SCHEMA_FILE: &str = "jobpool.schema.json";

/// Arguments of `jobpool init`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  jobpool init                 # writes job.toml and jobpool.schema.json here
  jobpool init sweep           # writes sweep.toml
  jobpool init jobs/nightly    # writes jobs/nightly.toml (and jobs/jobpool.schema.json)

Then: jobpool check job.toml && jobpool run job.toml")]
pub struct InitArgs {
    /// The job's name, or a path without `.toml`.
    #[arg(default_value = "job")]
    name: String,
}

fn starter(name: &str) -> String {
    format!(
        r#"#:schema ./{SCHEMA_FILE}
# A jobpool job file: `jobpool check {name}.toml`, then `jobpool run {name}.toml`.
# Every key is described in the book's job file reference.
name = "{name}"
description = "a starter job: replace the command and the arguments"
# workers = 4                # default: the available CPUs
task-timeout = "1m"          # a task running longer is killed with its whole process group
retries = 0                  # re-run failed tasks up to N times
# timeout = "1h"             # a deadline for the whole job (exit code 3)
# on-failure = "stop"        # no new submissions after a failure

[task]
kind = "command"             # or "script" (sandboxed Rhai)
# One program and its arguments, no shell: {{n}} is the argument `n` of each submission.
program = ["echo", "task", "{{n}}", "of", "{{size}}"]

[args]
# Every combination (3 x 2 = 6 submissions); `combine = "zip"` pairs them instead.
n = {{ range = [1, 4] }}      # 1 2 3
size = ["small", "large"]

[[sink]]
to = "stdout"                # records in submission order, however tasks finish
template = "{{index}}: {{value}} ({{status}})"

[[sink]]
to = "results/{{name}}.csv"  # relative to this file; written beside, renamed at the end
format = "csv"
"#
    )
}

/// Add `.jobpool/` to the `.gitignore` of `dir`, unless it is there.
fn ignore_state(dir: &Path) -> std::io::Result<bool> {
    let path = dir.join(".gitignore");
    let text = fs::read_to_string(&path).unwrap_or_default();
    if text
        .lines()
        .any(|l| matches!(l.trim(), ".jobpool" | ".jobpool/" | "/.jobpool" | "/.jobpool/"))
    {
        return Ok(false);
    }
    let mut f = fs::OpenOptions::new().create(true).append(true).open(&path)?;
    if !text.is_empty() && !text.ends_with('\n') {
        f.write_all(b"\n")?;
    }
    f.write_all(b"# jobpool's run records (see `jobpool runs`)\n.jobpool/\n")?;
    Ok(true)
}

/// Run `jobpool init`.
pub fn run(args: InitArgs) -> u8 {
    let base = PathBuf::from(args.name.trim_end_matches(".toml"));
    let Some(name) = base.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        eprintln!("error: {:?} is not a job name\n  help: e.g. jobpool init sweep", args.name);
        return INVALID;
    };
    let path = base.with_file_name(format!("{name}.toml"));
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if path.exists() {
        eprintln!(
            "error: {} exists already\n  help: choose another name: jobpool init NAME",
            path.display()
        );
        return INVALID;
    }
    let written = fs::create_dir_all(dir)
        .and_then(|()| fs::write(&path, starter(&name)))
        .and_then(|()| fs::write(dir.join(SCHEMA_FILE), crate::spec::schema_json()))
        .and_then(|()| ignore_state(dir));
    match written {
        Ok(ignored) => {
            println!("wrote {} and {}", path.display(), dir.join(SCHEMA_FILE).display());
            if ignored {
                println!("added .jobpool/ to {}", dir.join(".gitignore").display());
            }
            println!("next: jobpool check {0} && jobpool run {0}", path.display());
            OK
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            TASK_FAILED
        }
    }
}

/// Arguments of `jobpool completions`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  jobpool completions bash > ~/.local/share/bash-completion/completions/jobpool
  jobpool completions zsh > ~/.zfunc/_jobpool
  jobpool completions fish > ~/.config/fish/completions/jobpool.fish")]
pub struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

/// Print shell completions.
pub fn completions(args: CompletionsArgs) -> u8 {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "jobpool", &mut std::io::stdout());
    OK
}

/// Arguments of `jobpool man`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  jobpool man > jobpool.1 && man ./jobpool.1")]
pub struct ManArgs {}

/// Print the man page (roff).
pub fn man(_args: ManArgs) -> u8 {
    let page = clap_mangen::Man::new(super::Cli::command());
    match page.render(&mut std::io::stdout()) {
        Ok(()) => OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => OK,
        Err(e) => {
            eprintln!("error: cannot write the man page: {e}");
            TASK_FAILED
        }
    }
}
