//! `[[sink]]`: targets (`stdout` or a path template), formats, and text templates checked
//! against the record fields and the argument names.
//! Must not: open or write anything (that is `crate::sink`).

use super::read::{Ctx, table_or_error};
use crate::model::{SinkConfig, SinkFormat, SinkTarget, Template};
use crate::record::FIELD_NAMES;
use crate::source::{Node, NodeKind};
use crate::spec::keys;

pub(super) fn value_template() -> Template {
    Template {
        source: "{value}".into(),
        parts: vec![crate::model::TemplatePart::Placeholder("value".into())],
    }
}

pub(super) fn sinks(
    ctx: &mut Ctx,
    node: &Node,
    names: &[String],
    args_ok: bool,
) -> Vec<SinkConfig> {
    let items: Vec<&Node> = match &node.kind {
        NodeKind::Array(items) => items.iter().collect(),
        NodeKind::Table(_) => {
            ctx.error(
                "jobpool::wrong-type",
                "`sink` must be an array of tables: write `[[sink]]`, not `[sink]`",
                &node.loc,
                "a single table",
                Some("write [[sink]] (double brackets); a job may have several".into()),
            );
            return Vec::new();
        }
        _ => {
            ctx.wrong_type(
                "sink",
                node,
                "an array of tables (`[[sink]]`)",
                "[[sink]]\nto = \"stdout\"",
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for item in items {
        let Some(t) =
            table_or_error(ctx, "sink", item, "each sink is a `[[sink]]` table with `to`")
        else {
            continue;
        };
        ctx.check_keys(t, keys::SINK, "a `[[sink]]`");
        let to = match item.get("to") {
            None => {
                ctx.error(
                    "jobpool::missing-key",
                    "a `[[sink]]` has no `to`",
                    &item.loc,
                    "this sink",
                    Some(
                        "add to = \"stdout\" or a path such as to = \"results/{name}.csv\"".into(),
                    ),
                );
                None
            }
            Some(n) => match ctx.template("to", n) {
                Some(t) if t.source == "stdout" => Some(SinkTarget::Stdout),
                Some(t)
                    if ["-", "/dev/stdout", "stderr", "/dev/stderr"].contains(&t.source.trim())
                        || t.source.trim().eq_ignore_ascii_case("stdout") =>
                {
                    let help = if t.source.contains("err") {
                        "records go to stdout or to files; diagnostics and the summary go to \
                         stderr. Write to = \"stdout\" or a path"
                    } else {
                        "write to = \"stdout\" (lowercase), or a path such as \"results/{name}.csv\""
                    };
                    ctx.error(
                        "jobpool::bad-value",
                        format!("`to = \"{}\"` is not a sink target", t.source),
                        &n.loc,
                        "did you mean \"stdout\"?",
                        Some(help.into()),
                    );
                    None
                }
                Some(t) if t.source.trim().is_empty() => {
                    ctx.error(
                        "jobpool::bad-value",
                        "`to` is empty",
                        &n.loc,
                        "empty",
                        Some("write to = \"stdout\" or a path".into()),
                    );
                    None
                }
                Some(t) => {
                    let allowed = |p: &str| p == "name" || p == "run";
                    ctx.placeholders("to", &t, n, &allowed, &["name".into(), "run".into()]);
                    Some(SinkTarget::Path(t))
                }
                None => None,
            },
        };
        let format = match item.get("format") {
            None => Some("text"),
            Some(n) => ctx.choice("format", n, &["text", "jsonl", "json", "csv"]),
        };
        let template = match item.get("template") {
            Some(n) if format.is_some_and(|f| f != "text") => {
                ctx.error(
                    "jobpool::bad-value",
                    format!(
                        "`template` is only for `format = \"text\"`, not `{}`",
                        format.unwrap_or("")
                    ),
                    &n.loc,
                    "not used by this format",
                    Some("remove `template`, or use format = \"text\"".into()),
                );
                None
            }
            Some(n) => {
                let tpl = ctx.template("template", n);
                if let Some(tpl) = &tpl
                    && args_ok
                {
                    let mut choices: Vec<String> =
                        FIELD_NAMES.iter().map(|s| s.to_string()).collect();
                    choices.extend(names.iter().cloned());
                    choices.extend(names.iter().map(|n| format!("args.{n}")));
                    let allowed = |p: &str| {
                        FIELD_NAMES.contains(&p)
                            || names.iter().any(|n| n == p)
                            || p.strip_prefix("args.").is_some_and(|a| names.iter().any(|n| n == a))
                            || p.parse::<usize>().is_ok_and(|i| i < names.len())
                    };
                    ctx.placeholders("template", tpl, n, &allowed, &choices);
                }
                tpl
            }
            None => Some(value_template()),
        };
        let format = match format {
            Some("jsonl") => Some(SinkFormat::Jsonl),
            Some("json") => Some(SinkFormat::Json),
            Some("csv") => Some(SinkFormat::Csv),
            Some(_) => template.map(SinkFormat::Text),
            None => None,
        };
        if let (Some(to), Some(format)) = (to, format) {
            out.push(SinkConfig { to, format });
        }
    }
    out
}
