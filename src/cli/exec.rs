//! `jobpool exec`: an ad-hoc job without a file, with GNU parallel's habits.
//!
//! The command line is turned into a job file's text (what `--print-job` prints), which
//! goes through the same validator and runner as any job file: ordered output, group
//! kill on timeout, exit codes, the journal and `--resume`.
//!
//! ```text
//! jobpool exec -j 4 -- convert {} {.}.png ::: a.jpg b.jpg      (GNU: {.} is not supported)
//! jobpool exec -- echo {1}-{2} ::: a b ::: 1 2                  a-1 a-2 b-1 b-2
//! jobpool exec -- gzip ::: *.log                                 no placeholder: values appended
//! jobpool exec -- wc -l :::: files.txt                           lines of a file
//! ```

use std::path::{Path, PathBuf};

use clap::Args;

use super::diag;
use super::exit_code::INVALID;
use super::run::{RunSettings, run_jobs};
use crate::pool::Registry;
use crate::validate;

/// Arguments of `jobpool exec`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  jobpool exec -- echo {} ::: a b c              # one task per value, output in order
  jobpool exec -j 8 -- gzip -9 ::: *.log         # no {}: the value is appended
  jobpool exec -- echo {1}-{2} ::: a b ::: 1 2   # several groups: every combination
  jobpool exec --link -- cp {1} {2} ::: a b ::: x y   # element-wise pairs
  jobpool exec -- wc -l {} :::: files.txt        # one task per line of a file
  jobpool exec --print-job -- echo {} ::: a b    # the equivalent job file

Placeholders: {} is the value (all values, space-separated, with several groups),
{1}, {2}, ... the value of the first, second group. Any other brace is literal.")]
pub struct ExecArgs {
    /// Number of workers (default: the available CPUs).
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Deadline for the whole run, e.g. `10m`.
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// A task running longer is killed with its whole process group.
    #[arg(long, value_name = "DURATION")]
    task_timeout: Option<String>,
    /// Re-run a failed task up to N times.
    #[arg(long, value_name = "N")]
    retries: Option<u32>,
    /// Output in submission order (the default; GNU parallel's -k).
    #[arg(long, short = 'k', conflicts_with = "completion_order")]
    keep_order: bool,
    /// Output as tasks finish instead of in submission order.
    #[arg(long)]
    completion_order: bool,
    /// Pair the groups element-wise instead of making every combination.
    #[arg(long)]
    link: bool,
    /// Run the command line with /bin/sh -c (values are shell-quoted).
    #[arg(long)]
    shell: bool,
    /// Output format on stdout.
    #[arg(long, value_name = "FORMAT", default_value = "text",
          value_parser = ["text", "jsonl", "json", "csv"])]
    format: String,
    /// Print the equivalent job file and exit.
    #[arg(long)]
    print_job: bool,
    #[command(flatten)]
    settings: RunSettings,
    /// The command, then `:::` and values (or `::::` and a file of values); several
    /// groups make every combination.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD [ARGS]... ::: VALUES..."
    )]
    command: Vec<String>,
}

/// A group of values after `:::` (listed) or `::::` (lines of a file).
#[derive(Debug, Clone, PartialEq)]
enum Group {
    Values(Vec<String>),
    File(PathBuf),
}

/// A mistake on the command line, with how to fix it.
#[derive(Debug, PartialEq)]
struct Usage {
    message: String,
    help: &'static str,
}

fn usage(message: impl Into<String>, help: &'static str) -> Usage {
    Usage { message: message.into(), help }
}

/// Split `CMD ARGS... ::: V... :::: FILE ...` into the command and its groups.
fn split(words: &[String], cwd: &Path) -> Result<(Vec<String>, Vec<Group>), Usage> {
    let mut command = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut it = words.iter().peekable();
    while let Some(w) = it.next() {
        match w.as_str() {
            ":::" => {
                let mut values = Vec::new();
                while let Some(v) = it.next_if(|v| *v != ":::" && *v != "::::") {
                    values.push(v.clone());
                }
                if values.is_empty() {
                    return Err(usage(
                        "`:::` is followed by no value",
                        "write values after it: ::: a b c",
                    ));
                }
                groups.push(Group::Values(values));
            }
            "::::" => {
                let Some(file) = it.next_if(|v| *v != ":::" && *v != "::::") else {
                    return Err(usage(
                        "`::::` is followed by no file",
                        "name a file of values: :::: inputs.txt",
                    ));
                };
                groups.push(Group::File(cwd.join(file)));
                if let Some(extra) = it.next_if(|v| *v != ":::" && *v != "::::") {
                    return Err(usage(
                        format!("`::::` takes one file, then got {extra:?}"),
                        "one file per `::::`; repeat it for another file",
                    ));
                }
            }
            _ if groups.is_empty() => command.push(w.clone()),
            _ => unreachable!("values are consumed by their group"),
        }
    }
    if command.is_empty() {
        return Err(usage(
            "no command to run",
            "write the command before `:::`: jobpool exec -- echo {} ::: a b",
        ));
    }
    if groups.is_empty() {
        return Err(usage(
            "no values: add `::: VALUES...` or `:::: FILE`",
            "e.g. jobpool exec -- echo {} ::: a b c",
        ));
    }
    Ok((command, groups))
}

/// Translate one word of the command into jobpool's template: `{}` and `{N}` become
/// placeholders of the groups' parameters, every other brace is escaped (literal).
/// Returns the word and whether it had a placeholder.
fn translate(word: &str, groups: usize) -> Result<(String, bool), Usage> {
    let all: Vec<String> = (1..=groups).map(|i| format!("{{a{i}}}")).collect();
    let mut out = String::new();
    let mut found = false;
    let mut rest = word;
    while let Some(c) = rest.chars().next() {
        if c == '{' {
            if let Some(end) = rest.find('}') {
                let inner = &rest[1..end];
                if inner.is_empty() {
                    out.push_str(&all.join(" "));
                    found = true;
                    rest = &rest[end + 1..];
                    continue;
                }
                if let Ok(n) = inner.parse::<usize>() {
                    if n == 0 || n > groups {
                        return Err(usage(
                            format!(
                                "{{{n}}} names group {n}, but there {} {groups}",
                                if groups == 1 { "is" } else { "are" }
                            ),
                            "groups count from {1}, one per `:::` or `::::`",
                        ));
                    }
                    out.push_str(&format!("{{a{n}}}"));
                    found = true;
                    rest = &rest[end + 1..];
                    continue;
                }
            }
            out.push_str("{{");
        } else if c == '}' {
            out.push_str("}}");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    Ok((out, found))
}

/// The job file equivalent to `args`, as TOML text.
fn job_text(args: &ExecArgs, cwd: &Path) -> Result<String, Usage> {
    let (command, groups) = split(&args.command, cwd)?;
    let mut words = Vec::new();
    let mut any = false;
    for w in &command {
        let (t, found) = translate(w, groups.len())?;
        any |= found;
        words.push(t);
    }
    if !any {
        // GNU parallel's habit: without a placeholder the values are appended.
        words.extend((1..=groups.len()).map(|i| format!("{{a{i}}}")));
    }

    use toml::{Table, Value};
    let mut top = Table::new();
    top.insert("name".into(), Value::String("exec".into()));
    if let Some(j) = args.jobs {
        top.insert("workers".into(), Value::Integer(j as i64));
    }
    if let Some(t) = &args.timeout {
        top.insert("timeout".into(), Value::String(t.clone()));
    }
    if let Some(t) = &args.task_timeout {
        top.insert("task-timeout".into(), Value::String(t.clone()));
    }
    if let Some(r) = args.retries {
        top.insert("retries".into(), Value::Integer(r.into()));
    }
    if args.completion_order {
        top.insert("order".into(), Value::String("completion".into()));
    }
    let mut task = Table::new();
    task.insert("kind".into(), Value::String("command".into()));
    if args.shell {
        task.insert("shell".into(), Value::String(words.join(" ")));
    } else {
        task.insert("program".into(), Value::Array(words.into_iter().map(Value::String).collect()));
    }
    top.insert("task".into(), Value::Table(task));
    let mut params = Table::new();
    if args.link && groups.len() > 1 {
        params.insert("combine".into(), Value::String("zip".into()));
    }
    for (i, g) in groups.iter().enumerate() {
        let v = match g {
            Group::Values(vs) => Value::Array(vs.iter().cloned().map(Value::String).collect()),
            Group::File(p) => {
                let mut t = Table::new();
                t.insert("lines".into(), Value::String(p.display().to_string()));
                Value::Table(t)
            }
        };
        params.insert(format!("a{}", i + 1), v);
    }
    top.insert("args".into(), Value::Table(params));
    let mut sink = Table::new();
    sink.insert("to".into(), Value::String("stdout".into()));
    sink.insert("format".into(), Value::String(args.format.clone()));
    top.insert("sink".into(), Value::Array(vec![Value::Table(sink)]));
    let body = toml::to_string(&top)
        .map_err(|e| usage(format!("cannot write the job: {e}"), "report this as a bug"))?;
    Ok(format!("# jobpool exec, as a job file: save it and run `jobpool run FILE`\n{body}"))
}

/// Run `jobpool exec`.
pub fn run(args: ExecArgs, registry: &Registry) -> u8 {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let text = match job_text(&args, &cwd) {
        Ok(t) => t,
        Err(u) => {
            eprintln!("error: {}\n  help: {}", u.message, u.help);
            return INVALID;
        }
    };
    if args.print_job {
        print!("{text}");
        return super::exit_code::OK;
    }
    let opts = super::load_options(registry, Vec::new());
    // The journal of exec runs lives in ./.jobpool/runs/exec/, so `--resume` works.
    let mut settings = args.settings;
    settings.rerun_hint = Some(rerun_hint(std::env::args().skip(1)));
    match validate::load_str(&cwd.join("exec.toml"), &text, &opts) {
        Ok(job) => run_jobs(&[job], &settings, registry),
        Err(e) => {
            eprint!("{}", diag::render(&e));
            INVALID
        }
    }
}

/// The same command line with `--resume`, quoted for a shell: `exec` has no job file
/// to give `jobpool run --resume`, and its journal is found again from the same line.
fn rerun_hint(args: impl Iterator<Item = String>) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut resume = false;
    let mut in_command = false;
    for a in args {
        in_command |= a == "--";
        resume |= !in_command && a == "--resume";
        words.push(a);
    }
    if !resume {
        let at = words.iter().position(|w| w == "exec").map_or(0, |i| i + 1);
        words.insert(at, "--resume".into());
    }
    let quoted: Vec<String> = words.iter().map(|w| crate::task::quote::shell_quote(w)).collect();
    format!("jobpool {}", quoted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn the_rerun_hint_is_the_same_line_with_resume() {
        let hint = |line: &str| rerun_hint(line.split(' ').map(String::from));
        assert_eq!(
            hint("exec -j 2 -- sh -c exit_{} ::: 0 3"),
            "jobpool exec --resume -j 2 -- sh -c 'exit_{}' ::: 0 3"
        );
        assert_eq!(
            hint("--color never exec --resume -- true"),
            "jobpool --color never exec --resume -- true"
        );
        // A `--resume` after `--` belongs to the command, not to jobpool.
        assert_eq!(hint("exec -- cmd --resume"), "jobpool exec --resume -- cmd --resume");
    }

    #[test]
    fn groups_split_on_triple_colons() {
        let (cmd, groups) =
            split(&words("echo {} ::: a b ::: 1 :::: f.txt"), Path::new("/d")).unwrap();
        assert_eq!(cmd, ["echo", "{}"]);
        assert_eq!(
            groups,
            [
                Group::Values(vec!["a".into(), "b".into()]),
                Group::Values(vec!["1".into()]),
                Group::File(PathBuf::from("/d/f.txt"))
            ]
        );
    }

    #[test]
    fn usage_mistakes_say_how_to_fix_them() {
        let cases = [
            ("echo {}", "no values: add `::: VALUES...` or `:::: FILE`"),
            ("::: a b", "no command to run"),
            ("echo ::: ::: a", "`:::` is followed by no value"),
            ("echo ::::", "`::::` is followed by no file"),
            ("echo :::: a b", "`::::` takes one file, then got \"b\""),
        ];
        for (line, message) in cases {
            assert_eq!(split(&words(line), Path::new("/")).unwrap_err().message, message, "{line}");
        }
        assert_eq!(translate("{3}", 2).unwrap_err().message, "{3} names group 3, but there are 2");
    }

    #[test]
    fn placeholders_translate_and_other_braces_are_literal() {
        assert_eq!(translate("{}", 1).unwrap(), ("{a1}".into(), true));
        assert_eq!(translate("{}", 2).unwrap(), ("{a1} {a2}".into(), true));
        assert_eq!(translate("x{2}y{1}", 2).unwrap(), ("x{a2}y{a1}".into(), true));
        assert_eq!(translate("{print $1}", 1).unwrap(), ("{{print $1}}".into(), false));
        assert_eq!(translate("é{}}", 1).unwrap(), ("é{a1}}}".into(), true));
    }
}
