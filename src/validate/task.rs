//! `[task]`: the built-in kinds (`command`, `script`) and registered ones, with the keys
//! each kind allows, its templates checked against the argument names, and a script's
//! syntax (through [`super::script`]).
//! Must not: run anything; a script is compiled, never evaluated.

use std::path::{Path, PathBuf};

use super::error::{Problem, all_of, one_of, suggest};
use super::read::{Ctx, non_empty, table_or_error};
use crate::model::{CommandTask, Invocation, OutputMode, ScriptTask, TaskTemplate, Template};
use crate::source::{Key, Loc, Node, NodeKind};
use crate::spec::keys;

pub(super) fn task(
    ctx: &mut Ctx,
    node: &Node,
    names: &[String],
    args_ok: bool,
) -> Option<TaskTemplate> {
    let t = table_or_error(ctx, "task", node, "write a `[task]` table with a `kind`")?;
    let Some(kind_node) = node.get("kind") else {
        check_task_keys(ctx, t, None);
        let guess = t.iter().find_map(|(k, _)| task_key_kind(&k.name));
        let help = match guess {
            Some(g) => format!("add kind = \"{g}\" (the keys are those of a `{g}` task)"),
            None => format!(
                "add kind = one of {}",
                one_of(&ctx.kinds.iter().map(String::as_str).collect::<Vec<_>>())
            ),
        };
        ctx.error(
            "jobpool::missing-key",
            "`[task]` has no `kind`",
            &node.loc,
            "this table",
            Some(help),
        );
        return None;
    };
    let Some(kind) = ctx.string("kind", kind_node, "kind = \"command\"") else {
        check_task_keys(ctx, t, None);
        return None;
    };
    let check_args = |ctx: &mut Ctx, key: &str, tpl: &Template, n: &Node| {
        if !args_ok {
            return;
        }
        let mut choices: Vec<String> = names.to_vec();
        choices.extend((0..names.len()).map(|i| i.to_string()));
        let allowed = |p: &str| {
            names.iter().any(|n| n == p) || p.parse::<usize>().is_ok_and(|i| i < names.len())
        };
        ctx.placeholders(key, tpl, n, &allowed, &choices);
    };
    match kind.as_str() {
        "command" => {
            check_task_keys(ctx, t, Some("command"));
            let program = node.get("program");
            let shell = node.get("shell");
            let prog = program.map(|p| {
                let example = "program = [\"python3\", \"sim.py\", \"{seed}\"]";
                let NodeKind::Array(items) = &p.kind else {
                    let example = format!("{example}; for a shell line use shell = \"...\"");
                    ctx.wrong_type("program", p, "an array of strings", &example);
                    return None;
                };
                if items.is_empty() {
                    ctx.error(
                        "jobpool::bad-value",
                        "`program` is empty",
                        &p.loc,
                        "no program",
                        Some("the first item is the program: program = [\"echo\", \"hi\"]".into()),
                    );
                    return None;
                }
                // Every item is checked, so that one mistake does not hide the next.
                let mut tpls = Vec::new();
                for (i, n) in items.iter().enumerate() {
                    if n.as_str().is_none() {
                        ctx.error(
                            "jobpool::wrong-type",
                            format!("every item of `program` must be a string, not {}", n.type_name()),
                            &n.loc,
                            format!("{} here", n.type_name()),
                            Some(format!("quote it; for example: {example}")),
                        );
                        continue;
                    }
                    if i == 0 && n.as_str().is_some_and(|s| s.trim().is_empty()) {
                        ctx.error(
                            "jobpool::bad-value",
                            "the program name (the first item of `program`) is empty",
                            &n.loc,
                            "empty",
                            Some("the first item is the program to run: program = [\"echo\", \"hi\"]".into()),
                        );
                        continue;
                    }
                    if let Some(tpl) = ctx.template("program", n) {
                        check_args(ctx, "program", &tpl, n);
                        tpls.push(tpl);
                    }
                }
                (tpls.len() == items.len()).then_some(Invocation::Program(tpls))
            });
            let sh = shell.map(|s| {
                let tpl = ctx.template("shell", s)?;
                if tpl.source.trim().is_empty() {
                    ctx.error(
                        "jobpool::bad-value",
                        "`shell` is empty",
                        &s.loc,
                        "nothing to run",
                        Some("write the command line, e.g. shell = \"echo {x} | wc -c\"".into()),
                    );
                    return None;
                }
                check_args(ctx, "shell", &tpl, s);
                Some(Invocation::Shell(tpl))
            });
            let invocation = match (prog, sh) {
                (Some(_), Some(_)) => {
                    let (p, s) = (program?, shell?);
                    let p = Problem::at(
                        ctx.sources,
                        "jobpool::program-or-shell",
                        "a `command` task has both `program` and `shell`",
                        &s.loc,
                        "`shell` here",
                    )
                    .label(ctx.sources, &p.loc, "`program` here")
                    .help("keep one: `program` runs without a shell, `shell` runs /bin/sh -c");
                    ctx.push(p);
                    None
                }
                (None, None) => {
                    ctx.error(
                        "jobpool::program-or-shell",
                        "a `command` task needs `program` or `shell`",
                        &kind_node.loc,
                        "command task",
                        Some(
                            "add program = [\"echo\", \"{x}\"] or shell = \"echo {x} | wc -c\""
                                .into(),
                        ),
                    );
                    None
                }
                (Some(p), None) | (None, Some(p)) => p,
            };
            let mut cmd = CommandTask {
                invocation: Invocation::Program(Vec::new()),
                cwd: None,
                env: Vec::new(),
                stdin: None,
                output: OutputMode::Text,
                success_codes: vec![0],
            };
            for key in ["cwd", "stdin"] {
                if let Some(n) = node.get(key)
                    && let Some(tpl) = ctx.template(key, n)
                {
                    check_args(ctx, key, &tpl, n);
                    if key == "cwd" && tpl.source.trim().is_empty() {
                        ctx.error(
                            "jobpool::bad-value",
                            "`cwd` is empty",
                            &n.loc,
                            "empty",
                            Some("leave `cwd` out to run in the current folder, or write e.g. cwd = \"work/{x}\"".into()),
                        );
                        continue;
                    }
                    if key == "cwd" {
                        cmd.cwd = Some(resolve_cwd(tpl, &ctx.dir));
                    } else {
                        cmd.stdin = Some(tpl);
                    }
                }
            }
            if let Some(n) = node.get("env")
                && let Some(entries) = table_or_error(ctx, "env", n, "env = { SEED = \"{seed}\" }")
            {
                for (k, v) in entries {
                    if k.name.is_empty() || k.name.contains(['=', '\0']) {
                        ctx.error(
                            "jobpool::bad-value",
                            format!("`{}` is not a usable environment variable name", k.name.escape_debug()),
                            &k.loc,
                            "not a variable name",
                            Some("a variable name is non-empty and has no `=` or NUL, e.g. env = { SEED = \"{seed}\" }".into()),
                        );
                        continue;
                    }
                    let key = format!("env.{}", k.name);
                    if let Some(tpl) = ctx.template(&key, v) {
                        check_args(ctx, &key, &tpl, v);
                        cmd.env.push((k.name.clone(), tpl));
                    }
                }
            }
            if let Some(n) = node.get("output") {
                cmd.output = match ctx.choice("output", n, &["text", "json", "lines", "none"]) {
                    Some("json") => OutputMode::Json,
                    Some("lines") => OutputMode::Lines,
                    Some("none") => OutputMode::None,
                    _ => OutputMode::Text,
                };
            }
            if let Some(n) = node.get("success-codes") {
                match &n.kind {
                    NodeKind::Array(items) if !items.is_empty() => {
                        cmd.success_codes.clear();
                        for item in items {
                            if let NodeKind::Str(text) = &item.kind {
                                ctx.error(
                                    "jobpool::wrong-type",
                                    "every item of `success-codes` must be an integer, not a string",
                                    &item.loc,
                                    "a string here",
                                    Some(format!(
                                        "write exit codes without quotes, e.g. success-codes = [0, {}]",
                                        text.trim().parse::<u8>().unwrap_or(1)
                                    )),
                                );
                                continue;
                            }
                            if let Some(c) =
                                ctx.bounded("success-codes", item, 0, 255, "success-codes = [0, 1]")
                            {
                                cmd.success_codes.push(c as i32);
                            }
                        }
                    }
                    NodeKind::Array(_) => ctx.error(
                        "jobpool::bad-value",
                        "`success-codes` is empty",
                        &n.loc,
                        "no exit code would succeed",
                        Some("for example: success-codes = [0]".into()),
                    ),
                    _ => ctx.wrong_type(
                        "success-codes",
                        n,
                        "an array of exit codes",
                        "success-codes = [0, 1]",
                    ),
                }
            }
            cmd.invocation = invocation?;
            Some(TaskTemplate::Command(cmd))
        }
        "script" => {
            check_task_keys(ctx, t, Some("script"));
            match (node.get("script"), node.get("file")) {
                (Some(s), Some(f)) => {
                    let p = Problem::at(
                        ctx.sources,
                        "jobpool::script-or-file",
                        "a `script` task has both `script` and `file`",
                        &f.loc,
                        "`file` here",
                    )
                    .label(ctx.sources, &s.loc, "`script` here")
                    .help("keep one: `script` is inline Rhai, `file` names a .rhai file");
                    ctx.push(p);
                    None
                }
                (None, None) => {
                    ctx.error(
                        "jobpool::script-or-file",
                        "a `script` task needs `script` or `file`",
                        &kind_node.loc,
                        "script task",
                        Some("add script = \"x * x\" or file = \"tasks/score.rhai\"".into()),
                    );
                    None
                }
                (Some(s), None) => {
                    let source = ctx.string("script", s, "script = \"x * x\"")?;
                    if source.trim().is_empty() {
                        ctx.error(
                            "jobpool::bad-value",
                            "`script` is empty",
                            &s.loc,
                            "no script",
                            Some("write the Rhai expression whose value is the result, e.g. script = \"x * x\"".into()),
                        );
                        return None;
                    }
                    if let Err(e) = super::script::check_syntax(&source) {
                        let within = e.line.map_or(0..source.len(), |l| {
                            super::script::offset_of(&source, l, e.column.unwrap_or(1))
                        });
                        let loc = ctx.sources.inner_loc(s, within);
                        ctx.error(
                            "jobpool::script-syntax",
                            format!("syntax error in `script`: {}", e.message),
                            &loc,
                            "here",
                            Some(SCRIPT_HELP.into()),
                        );
                        return None;
                    }
                    Some(TaskTemplate::Script(ScriptTask { source, file: None }))
                }
                (None, Some(f)) => {
                    let rel = non_empty(ctx, "file", f, "file = \"tasks/score.rhai\"")?;
                    let path = ctx.dir.join(&rel);
                    match std::fs::read_to_string(&path) {
                        Ok(source) => {
                            if let Err(e) = super::script::check_syntax(&source) {
                                let span = e.line.map_or(0..0, |l| {
                                    super::script::offset_of(&source, l, e.column.unwrap_or(1))
                                });
                                // Named as the user would write it from where they are.
                                let name = if ctx.dir == Path::new(".") {
                                    PathBuf::from(&rel)
                                } else {
                                    path.clone()
                                };
                                let p = Problem::in_file(
                                    "jobpool::script-syntax",
                                    format!(
                                        "syntax error in script file {}: {}",
                                        name.display(),
                                        e.message
                                    ),
                                    &name.display().to_string(),
                                    &source,
                                    span,
                                    "here",
                                )
                                .help(SCRIPT_HELP);
                                ctx.push(p);
                                return None;
                            }
                            Some(TaskTemplate::Script(ScriptTask { source, file: Some(path) }))
                        }
                        Err(e) => {
                            ctx.error(
                                "jobpool::missing-file",
                                format!("cannot read script file {}: {e}", path.display()),
                                &f.loc,
                                "this file",
                                Some("the path is relative to the job file's folder".into()),
                            );
                            None
                        }
                    }
                }
            }
        }
        other if ctx.kinds.iter().any(|k| k == other) => {
            check_task_keys(ctx, t, Some(other));
            Some(TaskTemplate::Registered { kind: other.to_string() })
        }
        other => {
            check_task_keys(ctx, t, None);
            let kinds: Vec<&str> = ctx.kinds.iter().map(String::as_str).collect();
            let help = match suggest(other, kinds.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? known kinds: {}", one_of(&kinds)),
                None => format!("known kinds: {} (see `jobpool kinds`)", one_of(&kinds)),
            };
            ctx.error(
                "jobpool::unknown-kind",
                if other.trim().is_empty() {
                    "`kind` is empty".to_string()
                } else {
                    format!("unknown task kind `{other}`")
                },
                &kind_node.loc,
                if other.trim().is_empty() { "empty" } else { "unknown kind" },
                Some(help),
            );
            None
        }
    }
}

/// The built-in kind a `[task]` key belongs to.
fn task_key_kind(key: &str) -> Option<&'static str> {
    if keys::TASK_COMMAND[1..].contains(&key) {
        Some("command")
    } else if keys::TASK_SCRIPT[1..].contains(&key) {
        Some("script")
    } else {
        None
    }
}

/// Unknown keys of `[task]`. With a known `kind`, only its keys are allowed, and a key of
/// another built-in kind says so; without one (missing, not a string, unknown), every
/// key of any built-in kind is accepted, so that the other mistakes still show.
fn check_task_keys(ctx: &mut Ctx, t: &[(Key, Node)], kind: Option<&str>) {
    let all: Vec<&str> =
        keys::TASK_COMMAND.iter().chain(&keys::TASK_SCRIPT[1..]).copied().collect();
    let (allowed, what): (&[&str], String) = match kind {
        Some("command") => (keys::TASK_COMMAND, "a `command` task".into()),
        Some("script") => (keys::TASK_SCRIPT, "a `script` task".into()),
        Some(other) => (keys::TASK_REGISTERED, format!("a `{other}` task (a registered kind)")),
        None => (&all, "`[task]`".into()),
    };
    type Entries = Vec<(Key, Node)>;
    let (own, foreign): (Entries, Entries) = t
        .iter()
        .cloned()
        .partition(|(k, _)| allowed.contains(&k.name.as_str()) || task_key_kind(&k.name).is_none());
    // Words users reach for, and the key they mean.
    const ALIASES: &[(&str, &str)] = &[
        ("command", "program"),
        ("cmd", "program"),
        ("argv", "program"),
        ("exec", "program"),
        ("run", "shell"),
        ("source", "script"),
        ("code", "script"),
        ("path", "file"),
    ];
    let (aliased, own): (Entries, Entries) = own.into_iter().partition(|(k, _)| {
        !allowed.contains(&k.name.as_str()) && ALIASES.iter().any(|(a, _)| *a == k.name)
    });
    ctx.check_keys(&own, allowed, &what);
    for (k, _) in &aliased {
        let meant = ALIASES.iter().find(|(a, _)| *a == k.name).map_or("", |(_, m)| *m);
        let help = if allowed.contains(&meant) {
            format!("did you mean `{meant}`? {what} takes {}", one_of(allowed))
        } else {
            format!("{what} takes {}", one_of(allowed))
        };
        ctx.error(
            "jobpool::unknown-key",
            format!("unknown key `{}` in {what}", k.name),
            &k.loc,
            "unknown key",
            Some(help),
        );
    }
    for (k, _) in &foreign {
        let belongs = task_key_kind(&k.name).unwrap_or("command");
        ctx.error(
            "jobpool::unknown-key",
            format!("`{}` is not a key of {what}", k.name),
            &k.loc,
            format!("a `{belongs}` key"),
            Some(format!(
                "`{}` belongs to kind = \"{belongs}\"; {what} takes {}",
                k.name,
                one_of(allowed)
            )),
        );
    }
}

/// A `cwd` that starts with relative literal text is resolved against the job file's
/// folder (the model's contract); one that starts with a placeholder is left as written.
fn resolve_cwd(tpl: Template, dir: &Path) -> Template {
    use crate::model::TemplatePart;
    let relative = match tpl.parts.first() {
        Some(TemplatePart::Literal(text)) => !Path::new(text).is_absolute(),
        _ => false,
    };
    if !relative || dir == Path::new(".") {
        return tpl;
    }
    let mut parts = tpl.parts;
    if let Some(TemplatePart::Literal(text)) = parts.first_mut() {
        *text = dir.join(text.as_str()).to_string_lossy().into_owned();
    }
    Template { source: tpl.source, parts }
}

/// The help line of a script's syntax error.
const SCRIPT_HELP: &str = "scripts are Rhai (https://rhai.rs/book/): statements end with `;`, \
     and the value of the last expression is the result, e.g. script = \"let y = x * 2; y + 1\"";

/// Words a Rhai script cannot use as a variable name.
const RHAI_RESERVED: &[&str] = &[
    "true",
    "false",
    "let",
    "const",
    "if",
    "else",
    "switch",
    "do",
    "while",
    "loop",
    "until",
    "for",
    "in",
    "continue",
    "break",
    "return",
    "throw",
    "try",
    "catch",
    "fn",
    "private",
    "import",
    "export",
    "as",
    "this",
    "var",
    "static",
    "shared",
    "goto",
    "match",
    "case",
    "public",
    "protected",
    "new",
    "use",
    "with",
    "module",
    "package",
    "super",
    "thread",
    "spawn",
    "go",
    "await",
    "async",
    "sync",
    "yield",
    "default",
    "void",
    "null",
    "nil",
    "is",
    "Fn",
    "call",
    "curry",
    "type_of",
    "print",
    "debug",
    "eval",
];

/// A script receives its arguments as variables: a name the language reserves could
/// never be read.
pub(super) fn script_names(ctx: &mut Ctx, args: &Node) {
    let Some(places) = arg_places(args) else { return };
    for (name, loc) in places {
        if RHAI_RESERVED.contains(&name) {
            ctx.error(
                "jobpool::args-name",
                format!("`{name}` is a reserved word in scripts and cannot name an argument"),
                loc,
                "reserved in Rhai",
                Some(format!(
                    "a `script` task reads its arguments as variables; rename it, e.g. `{name}_`"
                )),
            );
        }
    }
}

/// Every argument name given in `[args]` and where: the parameters' keys and the items
/// of `names`. `None` when `[args]` is not a table.
fn arg_places(args: &Node) -> Option<Vec<(&str, &Loc)>> {
    let entries = args.as_table()?;
    let mut places: Vec<(&str, &Loc)> = Vec::new();
    for (k, v) in entries {
        match k.name.as_str() {
            "combine" | "tuples" => {}
            "names" => {
                if let NodeKind::Array(items) = &v.kind {
                    places.extend(items.iter().filter_map(|i| Some((i.as_str()?, &i.loc))));
                }
            }
            name => places.push((name, &k.loc)),
        }
    }
    Some(places)
}

/// A registered kind that declares its argument names (`ctx.kind_args`) takes those and
/// no others: each unknown argument is a problem at its name, with a "did you mean";
/// the missing ones are one problem at the `[args]` table (or at `kind` without one).
pub(super) fn registered_names(ctx: &mut Ctx, kind: &str, kind_loc: &Loc, args: Option<&Node>) {
    let Some(declared) = ctx.kind_args.get(kind).cloned() else { return };
    let takes: Vec<&str> = declared.names.iter().map(String::as_str).collect();
    let takes_text = match takes.len() {
        0 => format!("`{kind}` takes no arguments"),
        _ => format!("`{kind}` takes {}", all_of(&takes)),
    };
    let places = match args {
        Some(node) => match arg_places(node) {
            Some(places) => places,
            None => return, // `[args]` is not a table: reported already.
        },
        None => Vec::new(),
    };
    // A misspelled argument is one mistake: reported as unknown, with the name it
    // probably meant, and not again as that name missing.
    let not_given: Vec<&str> =
        takes.iter().copied().filter(|t| !places.iter().any(|(given, _)| given == t)).collect();
    let unknown: Vec<(&str, &Loc, Option<&str>)> = places
        .iter()
        .filter(|(name, _)| !takes.contains(name))
        .map(|&(name, loc)| (name, loc, suggest(name, not_given.iter().copied())))
        .collect();
    let mut meant: Vec<&str> = unknown.iter().filter_map(|u| u.2).collect();
    // One unknown name and one required name not given, however unlike: a renamed
    // argument, again one mistake.
    let unpaired: Vec<&str> = not_given
        .iter()
        .copied()
        .filter(|t| !meant.contains(t) && !declared.optional.iter().any(|o| o == t))
        .collect();
    let lone = unknown.iter().filter(|u| u.2.is_none()).count() == 1 && unpaired.len() == 1;
    for (name, loc, close) in unknown {
        let close = close.or(if lone { unpaired.first().copied() } else { None });
        let help = match close {
            Some(s) => format!("did you mean `{s}`? {takes_text}"),
            None if takes.is_empty() => format!("{takes_text}: remove it (see `jobpool kinds`)"),
            None => format!("{takes_text} (see `jobpool kinds`)"),
        };
        meant.extend(close);
        ctx.error(
            "jobpool::unknown-argument",
            format!("unknown argument `{name}` for kind `{kind}`"),
            loc,
            "unknown argument",
            Some(help),
        );
    }
    // With `names` given but not an array, what is missing is not known.
    if args.and_then(|a| a.get("names")).is_some_and(|n| !matches!(n.kind, NodeKind::Array(_))) {
        return;
    }
    let missing: Vec<&str> = takes
        .iter()
        .copied()
        .filter(|t| {
            !declared.optional.iter().any(|o| o == t)
                && !places.iter().any(|(given, _)| given == t)
                && !meant.contains(t)
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    let (noun, them) = if missing.len() == 1 { ("argument", "it") } else { ("arguments", "them") };
    let tuples = args.is_some_and(|a| a.get("names").is_some());
    let mut help = match args {
        Some(_) if tuples => format!("add {them} to `names`, and a value to each tuple"),
        Some(_) => format!("add {them} to `[args]`, e.g. {} = [1, 2]", missing[0]),
        None => format!("add an `[args]` table, e.g.\n[args]\n{} = [1, 2]", missing[0]),
    };
    help.push_str(&format!("\n{takes_text}"));
    if !declared.optional.is_empty() {
        let optional: Vec<&str> = declared.optional.iter().map(String::as_str).collect();
        help.push_str(&format!(" ({} may be left out)", all_of(&optional)));
    }
    let (loc, label) = match args {
        Some(node) => (&node.loc, format!("no `{}` here", missing.join("`, `"))),
        None => (kind_loc, format!("needs {}", all_of(&missing))),
    };
    ctx.error(
        "jobpool::missing-argument",
        format!("missing {noun} {} for kind `{kind}`", all_of(&missing)),
        loc,
        label,
        Some(help),
    );
}
