//! `[args]`: parameters, `combine`, explicit `names`/`tuples` → [`ArgSpace`].

use std::path::Path;

use serde_json::Value;

use super::error::{Problem, count, one_of, suggest};
use super::read::Ctx;
use crate::model::{ArgForm, ArgSpace, Param, ParamOrigin, ParamValues};
use crate::source::{Loc, Node, NodeKind};
use crate::spec::keys;

/// Largest float range length: beyond 2^53, `i as f64` loses integers.
const MAX_FLOAT_RANGE: u64 = 1 << 53;

/// Convert a TOML value to JSON (an argument value). Floats must be finite.
pub fn to_json(ctx: &mut Ctx, node: &Node) -> Option<Value> {
    Some(match &node.kind {
        NodeKind::Str(s) => Value::String(s.clone()),
        NodeKind::Int(Some(i)) => Value::from(*i),
        NodeKind::Int(None) => {
            ctx.error(
                "jobpool::out-of-range",
                "integer does not fit in 64 bits",
                &node.loc,
                "too large",
                Some("integers range from -9223372036854775808 to 9223372036854775807".into()),
            );
            return None;
        }
        NodeKind::Float(f) => match serde_json::Number::from_f64(*f) {
            Some(n) => Value::Number(n),
            None => {
                ctx.error(
                    "jobpool::bad-value",
                    "an argument value cannot be `inf` or `nan`",
                    &node.loc,
                    "not a finite number",
                    Some("use a finite number, or a string such as \"inf\"".into()),
                );
                return None;
            }
        },
        NodeKind::Bool(b) => Value::Bool(*b),
        NodeKind::Datetime(d) => Value::String(d.clone()),
        NodeKind::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                out.push(to_json(ctx, i)?);
            }
            Value::Array(out)
        }
        NodeKind::Table(entries) => {
            let mut map = serde_json::Map::new();
            for (k, v) in entries {
                map.insert(k.name.clone(), to_json(ctx, v)?);
            }
            Value::Object(map)
        }
    })
}

fn is_ident(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A varying parameter before it gets its position.
struct Varying {
    position: usize,
    values: ParamValues,
    origin: ParamOrigin,
    loc: Loc,
    name: String,
}

/// Build the argument space. `names` receives the declared argument names even when
/// something else is wrong, and `names_ok` says whether templates can be checked
/// against them.
pub fn args(
    ctx: &mut Ctx,
    node: &Node,
    names: &mut Vec<String>,
    names_ok: &mut bool,
) -> Option<ArgSpace> {
    let NodeKind::Table(entries) = &node.kind else {
        let help = if matches!(node.kind, NodeKind::Array(_)) {
            "write `[args]` (single brackets): one table whose keys are the parameters"
        } else {
            "write an `[args]` table, e.g.\n[args]\nx = [1, 2, 3]"
        };
        *names_ok = false;
        ctx.error(
            "jobpool::args-not-table",
            format!("`args` must be a table, not {}", node.type_name()),
            &node.loc,
            format!("{} here", node.type_name()),
            Some(help.into()),
        );
        return None;
    };
    let mut constants = Vec::new();
    let mut varying: Vec<Varying> = Vec::new();
    let mut combine = "product";
    let mut combine_loc = None;
    let mut tuple_names: Option<(Vec<usize>, Loc)> = None;
    let mut tuples_node: Option<&Node> = None;
    let mut ok = true;
    let mut name_locs: Vec<Loc> = Vec::new();
    let mut skip_tuples = false;

    let mut add_name = |ctx: &mut Ctx,
                        name: &str,
                        loc: &Loc,
                        names: &mut Vec<String>|
     -> Option<usize> {
        if keys::ARGS_RESERVED.contains(&name) {
            *names_ok = false;
            ctx.error(
                "jobpool::args-name",
                format!("`{name}` is reserved in `[args]` and cannot name an argument"),
                loc,
                "reserved",
                Some(format!(
                    "{} are not parameters; pick another name",
                    one_of(keys::ARGS_RESERVED)
                )),
            );
            return None;
        }
        if !is_ident(name) {
            *names_ok = false;
            ctx.error("jobpool::args-name", format!("`{name}` is not a valid argument name"), loc, "not a name", Some("argument names are letters, digits and `_`, not starting with a digit (scripts use them as variables)".into()));
            return None;
        }
        if let Some(i) = names.iter().position(|n| n == name) {
            let p = Problem::at(
                ctx.sources,
                "jobpool::args-name",
                format!("argument `{name}` is declared twice"),
                loc,
                "again here",
            )
            .label(ctx.sources, &name_locs[i], "first here")
            .help("each argument name must be unique across parameters and `names`");
            ctx.push(p);
            return None;
        }
        names.push(name.to_string());
        name_locs.push(loc.clone());
        Some(names.len() - 1)
    };

    for (key, value) in entries {
        match key.name.as_str() {
            "combine" => {
                combine_loc = Some(value.loc.clone());
                match ctx.choice("combine", value, &["product", "zip"]) {
                    Some(c) => combine = c,
                    None => ok = false,
                }
            }
            "names" => {
                let NodeKind::Array(items) = &value.kind else {
                    skip_tuples = true;
                    tuples_node = None;
                    ctx.wrong_type(
                        "names",
                        value,
                        "an array of argument names",
                        "names = [\"a\", \"b\"]",
                    );
                    ok = false;
                    continue;
                };
                let mut positions = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(s) => match add_name(ctx, s, &item.loc, names) {
                            Some(p) => positions.push(p),
                            None => ok = false,
                        },
                        None => {
                            ctx.error(
                                "jobpool::args-name",
                                format!(
                                    "every item of `names` must be a string, not {}",
                                    item.type_name()
                                ),
                                &item.loc,
                                format!("{} here", item.type_name()),
                                Some("for example: names = [\"a\", \"b\"]".into()),
                            );
                            ok = false;
                        }
                    }
                }
                if items.is_empty() {
                    ctx.error(
                        "jobpool::bad-tuples",
                        "`names` is empty",
                        &value.loc,
                        "no names",
                        Some("list one name per tuple element: names = [\"a\", \"b\"]".into()),
                    );
                    ok = false;
                }
                if positions.len() == items.len() && !items.is_empty() {
                    tuple_names = Some((positions, value.loc.clone()));
                } else {
                    // Some names were rejected: a tuple width check would only repeat that.
                    ok = false;
                    tuples_node = None;
                    skip_tuples = true;
                }
            }
            "tuples" if skip_tuples => {}
            "tuples" => tuples_node = Some(value),
            name => {
                let Some(position) = add_name(ctx, name, &key.loc, names) else {
                    ok = false;
                    continue;
                };
                match param(ctx, name, value) {
                    Some(Parsed::Constant(v)) => constants.push((position, v)),
                    Some(Parsed::Varying(values, origin)) => varying.push(Varying {
                        position,
                        values,
                        origin,
                        loc: value.loc.clone(),
                        name: name.to_string(),
                    }),
                    None => ok = false,
                }
            }
        }
    }

    let form = match (tuple_names, tuples_node) {
        (Some((positions, names_loc)), Some(tn)) => {
            if let Some(v) = varying.first() {
                let p = Problem::at(ctx.sources, "jobpool::bad-tuples", format!("parameter `{}` varies, but `tuples` already lists every submission", v.name), &v.loc, "varying parameter")
                    .label(ctx.sources, &tn.loc, "tuples")
                    .help("put it into `names` and each tuple, or make it a constant with { value = ... }");
                ctx.push(p);
                ok = false;
            }
            if let Some(loc) = &combine_loc {
                ctx.error(
                    "jobpool::bad-tuples",
                    "`combine` has no effect with `tuples`",
                    loc,
                    "remove this",
                    Some("`tuples` lists each submission explicitly".into()),
                );
                ok = false;
            }
            match tuples(ctx, tn, positions.len(), &names_loc) {
                Some(t) if ok => ArgForm::Tuples { positions, tuples: t },
                _ => return None,
            }
        }
        (Some((_, loc)), None) => {
            ctx.error(
                "jobpool::bad-tuples",
                "`names` without `tuples`",
                &loc,
                "names of what?",
                Some(
                    "add tuples = [[...], ...], one array per submission, as wide as `names`"
                        .into(),
                ),
            );
            return None;
        }
        (None, _) if skip_tuples => return None,
        (None, Some(tn)) => {
            ctx.error(
                "jobpool::bad-tuples",
                "`tuples` without `names`",
                &tn.loc,
                "tuples",
                Some("add names = [\"a\", \"b\", ...], one name per tuple element".into()),
            );
            return None;
        }
        (None, None) => {
            if !ok {
                return None;
            }
            let params: Vec<Param> = varying
                .iter()
                .map(|v| Param {
                    position: v.position,
                    values: v.values.clone(),
                    origin: v.origin.clone(),
                })
                .collect();
            if params.is_empty() {
                ArgForm::Single
            } else if combine == "zip" {
                let first = varying[0].values.len();
                if varying.iter().any(|v| v.values.len() != first) {
                    let lens: Vec<String> = varying
                        .iter()
                        .map(|v| format!("`{}` has {}", v.name, v.values.len()))
                        .collect();
                    // The primary label goes to the odd one out when most parameters
                    // agree on a length (`a`, `b` have 2, `c` has 3: `c`), else to the first.
                    let agree = |len: u64| varying.iter().filter(|v| v.values.len() == len).count();
                    let common = varying.iter().map(|v| v.values.len()).max_by_key(|l| agree(*l));
                    let odd = match common {
                        Some(c) if agree(c) * 2 > varying.len() => {
                            varying.iter().position(|v| v.values.len() != c).unwrap_or(0)
                        }
                        _ => 0,
                    };
                    let mut p = Problem::at(
                        ctx.sources,
                        "jobpool::zip-lengths",
                        "`combine = \"zip\"` needs parameters of equal length",
                        &varying[odd].loc,
                        count(varying[odd].values.len(), "value"),
                    );
                    for (i, v) in varying.iter().enumerate() {
                        if i != odd {
                            p = p.label(ctx.sources, &v.loc, count(v.values.len(), "value"));
                        }
                    }
                    ctx.push(p.help(format!(
                        "{}; make them equal, or use combine = \"product\"",
                        lens.join(", ")
                    )));
                    return None;
                }
                ArgForm::Zip(params)
            } else {
                let mut total: u64 = 1;
                for v in &varying {
                    match total.checked_mul(v.values.len()) {
                        Some(t) => total = t,
                        None => {
                            ctx.error(
                                "jobpool::too-large",
                                "the product of the parameters has more than 2^64 submissions",
                                &v.loc,
                                "overflows here",
                                Some("split the job, or use combine = \"zip\"".into()),
                            );
                            return None;
                        }
                    }
                }
                ArgForm::Product(params)
            }
        }
    };
    Some(ArgSpace { names: names.clone(), form, constants })
}

enum Parsed {
    Constant(Value),
    Varying(ParamValues, ParamOrigin),
}

fn param(ctx: &mut Ctx, name: &str, node: &Node) -> Option<Parsed> {
    match &node.kind {
        NodeKind::Array(items) => {
            if items.is_empty() {
                ctx.error("jobpool::empty-param", format!("parameter `{name}` has no values"), &node.loc, "empty list", Some("an empty parameter makes an empty job; give at least one value, or use { value = [] } for a constant empty list".into()));
                return None;
            }
            let mut values = Vec::with_capacity(items.len());
            for i in items {
                values.push(to_json(ctx, i)?);
            }
            Some(Parsed::Varying(ParamValues::List(values), ParamOrigin::Inline))
        }
        NodeKind::Table(entries) => {
            let forms = ["range", "glob", "lines", "value"];
            let present: Vec<&str> = entries
                .iter()
                .map(|(k, _)| k.name.as_str())
                .filter(|k| forms.contains(k))
                .collect();
            let mut bad = false;
            for (k, _) in entries {
                if !keys::PARAM.contains(&k.name.as_str()) {
                    let help = match suggest(&k.name, keys::PARAM.iter().copied()) {
                        Some(s) => format!(
                            "did you mean `{s}`? a parameter table takes {}",
                            one_of(keys::PARAM)
                        ),
                        None => format!("a parameter table takes {}", one_of(keys::PARAM)),
                    };
                    ctx.error(
                        "jobpool::unknown-key",
                        format!("unknown key `{}` in parameter `{name}`", k.name),
                        &k.loc,
                        "unknown key",
                        Some(help),
                    );
                    bad = true;
                }
            }
            if bad {
                return None;
            }
            if present.len() != 1 {
                let msg = if present.is_empty() {
                    format!("parameter `{name}` has none of {}", one_of(&forms))
                } else {
                    format!("parameter `{name}` has more than one of {}", one_of(&forms))
                };
                ctx.error("jobpool::bad-param", msg, &node.loc, "this parameter", Some("write one of: { range = [0, 10] }, { glob = \"data/*.csv\" }, { lines = \"inputs.txt\" }, { value = ... }".into()));
                return None;
            }
            let step = node.get("step");
            if present[0] != "range"
                && let Some(s) = step
            {
                ctx.error(
                    "jobpool::bad-param",
                    "`step` is only for `range`",
                    &s.loc,
                    "not used",
                    Some("remove `step`".into()),
                );
                return None;
            }
            let v = node.get(present[0])?;
            match present[0] {
                "value" => to_json(ctx, v).map(Parsed::Constant),
                "range" => {
                    range(ctx, name, v, step).map(|r| Parsed::Varying(r, ParamOrigin::Inline))
                }
                "glob" => glob(ctx, name, v).map(|(g, o)| Parsed::Varying(g, o)),
                _ => lines(ctx, name, v).map(|(l, o)| Parsed::Varying(l, o)),
            }
        }
        _ => to_json(ctx, node).map(Parsed::Constant),
    }
}

#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

fn number(ctx: &mut Ctx, what: &str, node: &Node) -> Option<Num> {
    match node.kind {
        NodeKind::Int(Some(i)) => Some(Num::Int(i)),
        NodeKind::Float(f) if f.is_finite() => Some(Num::Float(f)),
        NodeKind::Int(None) => {
            ctx.error(
                "jobpool::out-of-range",
                format!("{what} does not fit in 64 bits"),
                &node.loc,
                "too large",
                Some("integers range from -9223372036854775808 to 9223372036854775807".into()),
            );
            None
        }
        NodeKind::Float(_) => {
            ctx.error(
                "jobpool::bad-range",
                format!("{what} must be finite"),
                &node.loc,
                "not finite",
                Some("use a finite number".into()),
            );
            None
        }
        _ => {
            ctx.wrong_type(what, node, "a number", "range = [0, 10], step = 2");
            None
        }
    }
}

fn range(ctx: &mut Ctx, name: &str, node: &Node, step: Option<&Node>) -> Option<ParamValues> {
    let help = "write range = [start, end] (end excluded), e.g. { range = [0, 10], step = 2 }";
    let NodeKind::Array(items) = &node.kind else {
        ctx.error(
            "jobpool::bad-range",
            format!("`range` of `{name}` must be an array [start, end], not {}", node.type_name()),
            &node.loc,
            "not [start, end]",
            Some(help.into()),
        );
        return None;
    };
    if items.len() != 2 {
        ctx.error(
            "jobpool::bad-range",
            format!("`range` of `{name}` must have 2 numbers [start, end], not {}", items.len()),
            &node.loc,
            count(items.len() as u64, "item"),
            Some(format!("{help}; the step goes in `step`")),
        );
        return None;
    }
    let start = number(ctx, "range start", &items[0]);
    let end = number(ctx, "range end", &items[1]);
    let step_v = match step {
        Some(s) => Some(number(ctx, "step", s)?),
        None => None,
    };
    let (start, end) = (start?, end?);
    let zero_step = |ctx: &mut Ctx| {
        let s = step.map(|s| s.loc.clone()).unwrap_or(node.loc.clone());
        ctx.error(
            "jobpool::bad-range",
            format!("`step` of `{name}` is zero"),
            &s,
            "zero step",
            Some("use a positive step to count up, or a negative one to count down".into()),
        );
    };
    let empty = |ctx: &mut Ctx, s: String, e: String, st: String| {
        ctx.error(
            "jobpool::empty-range",
            format!("range of `{name}` is empty: from {s} to {e} with step {st}"),
            &node.loc,
            "no values",
            Some("the end is excluded; count up with start < end and a positive step, or down with start > end and a negative step".into()),
        );
    };
    match (start, end, step_v) {
        (Num::Int(s), Num::Int(e), None | Some(Num::Int(_))) => {
            let st = match step_v {
                Some(Num::Int(st)) => st,
                _ => 1,
            };
            if st == 0 {
                zero_step(ctx);
                return None;
            }
            let (s128, e128, st128) = (s as i128, e as i128, st as i128);
            let span = e128 - s128;
            if span == 0 || (span > 0) != (st128 > 0) {
                empty(ctx, s.to_string(), e.to_string(), st.to_string());
                return None;
            }
            let len = (span + st128 - st128.signum()) / st128;
            Some(ParamValues::IntRange { start: s, step: st, len: len as u64 })
        }
        (s, e, st) => {
            let f = |n: &Num| match n {
                Num::Int(i) => *i as f64,
                Num::Float(f) => *f,
            };
            let (s, e) = (f(&s), f(&e));
            let st = st.as_ref().map(f).unwrap_or(1.0);
            if st == 0.0 {
                zero_step(ctx);
                return None;
            }
            let n = ((e - s) / st).ceil();
            if n.is_nan() || n < 1.0 {
                empty(ctx, s.to_string(), e.to_string(), st.to_string());
                return None;
            }
            if !n.is_finite() || n > MAX_FLOAT_RANGE as f64 {
                ctx.error(
                    "jobpool::too-large",
                    format!("range of `{name}` has too many values"),
                    &node.loc,
                    "too many",
                    Some("a float range may have at most 2^53 values; use a larger step".into()),
                );
                return None;
            }
            let mut len = n as u64;
            // Make "end excluded" exact for the values actually computed (start + i*step).
            let past = |i: u64| {
                let x = s + (i as f64) * st;
                if st > 0.0 { x >= e } else { x <= e }
            };
            while len > 0 && past(len - 1) {
                len -= 1;
            }
            while len < MAX_FLOAT_RANGE && !past(len) {
                len += 1;
            }
            if len == 0 {
                empty(ctx, s.to_string(), e.to_string(), st.to_string());
                return None;
            }
            Some(ParamValues::FloatRange { start: s, step: st, len })
        }
    }
}

fn glob(ctx: &mut Ctx, name: &str, node: &Node) -> Option<(ParamValues, ParamOrigin)> {
    let pattern = ctx.string("glob", node, "glob = \"data/*.csv\"")?;
    if Path::new(&pattern).is_absolute() {
        ctx.error(
            "jobpool::bad-glob",
            "`glob` must be relative to the job file's folder",
            &node.loc,
            "absolute",
            Some("write a relative pattern such as \"data/*.csv\"".into()),
        );
        return None;
    }
    let base = ctx.dir.clone();
    let escaped = glob::Pattern::escape(&base.to_string_lossy());
    let full_pattern =
        if base == Path::new(".") { pattern.clone() } else { format!("{escaped}/{pattern}") };
    // Like a shell: `*` does not match a leading dot.
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let paths = match glob::glob_with(&full_pattern, options) {
        Ok(p) => p,
        Err(e) => {
            ctx.error(
                "jobpool::bad-glob",
                format!("`glob` of `{name}` is not a valid pattern: {}", e.msg),
                &node.loc,
                "invalid pattern",
                Some("use *, ?, [abc] and ** (a whole path component)".into()),
            );
            return None;
        }
    };
    // Values are relative to the job file's folder, where commands run: the same job
    // gives the same values (and content keys) wherever `jobpool` is started.
    let mut values: Vec<String> = paths
        .filter_map(Result::ok)
        .map(|p| p.strip_prefix(&base).map(Path::to_path_buf).unwrap_or(p))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    values.sort();
    if values.is_empty() {
        ctx.error(
            "jobpool::glob-empty",
            format!("`glob` of `{name}` matches no file"),
            &node.loc,
            format!("nothing matches in {}", base.display()),
            Some("the pattern is relative to the job file's folder; check it with `ls`".into()),
        );
        return None;
    }
    let digests = content_digests(&base, &values);
    let origin = ParamOrigin::Glob { pattern, digests };
    Some((ParamValues::List(values.into_iter().map(Value::String).collect()), origin))
}

/// A digest of each file's content, in parallel: a glob match's content is part of its
/// submission's key, so an edited input file is never mistaken for a done one. Only glob
/// parameters pay this (one read of each matched file per load); a folder and an
/// unreadable file get a fixed digest of their kind.
fn content_digests(base: &Path, values: &[String]) -> Vec<[u8; 16]> {
    use rayon::prelude::*;
    fn first16(hash: blake3::Hash) -> [u8; 16] {
        let mut out = [0; 16];
        out.copy_from_slice(&hash.as_bytes()[..16]);
        out
    }
    values
        .par_iter()
        .map(|rel| {
            let path = base.join(rel);
            if path.is_dir() {
                return first16(blake3::hash(b"jobpool-folder"));
            }
            let mut h = blake3::Hasher::new();
            match std::fs::File::open(&path).and_then(|f| h.update_reader(f).map(|_| ())) {
                Ok(()) => first16(h.finalize()),
                Err(_) => first16(blake3::hash(b"jobpool-unreadable")),
            }
        })
        .collect()
}

/// The longest line a `lines` file may have: each line is an argument value that travels
/// to a worker, into records, journals and sinks; megabytes of it are a mistake (a data
/// file given as `lines`), and a gigabyte would exhaust memory.
const MAX_LINE_BYTES: usize = 16 << 20;

fn lines(ctx: &mut Ctx, name: &str, node: &Node) -> Option<(ParamValues, ParamOrigin)> {
    let rel = ctx.string("lines", node, "lines = \"inputs.txt\"")?;
    if rel.trim().is_empty() {
        ctx.error(
            "jobpool::bad-value",
            format!("`lines` of `{name}` is empty"),
            &node.loc,
            "no file",
            Some("name a text file relative to the job file, e.g. lines = \"inputs.txt\"".into()),
        );
        return None;
    }
    let path = ctx.dir.join(&rel);
    let text = match std::fs::read(&path) {
        Ok(bytes) => {
            match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    // Never reinterpret bytes: a value is the line as written, or an error.
                    let at = e.utf8_error().valid_up_to();
                    let line = e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
                    ctx.error(
                    "jobpool::bad-value",
                    format!("line {line} of `lines` file {} of `{name}` is not valid UTF-8", path.display()),
                    &node.loc,
                    "this file",
                    Some("values are text: save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)".into()),
                );
                    return None;
                }
            }
        }
        Err(e) => {
            ctx.error(
                "jobpool::missing-file",
                format!("cannot read `lines` file {} of `{name}`: {e}", path.display()),
                &node.loc,
                "this file",
                Some("the path is relative to the job file's folder".into()),
            );
            return None;
        }
    };
    if let Some((n, long)) = text.lines().enumerate().find(|(_, l)| l.len() > MAX_LINE_BYTES) {
        ctx.error(
            "jobpool::bad-value",
            format!(
                "line {} of `lines` file {} of `{name}` is {} MiB long; a value is at most {} MiB",
                n + 1,
                path.display(),
                long.len() >> 20,
                MAX_LINE_BYTES >> 20
            ),
            &node.loc,
            "this file",
            Some("a line is one argument value: pass large data as a file name (e.g. { glob = \"data/*\" })".into()),
        );
        return None;
    }
    let values: Vec<Value> = text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty())
        .map(|l| Value::String(l.to_string()))
        .collect();
    if values.is_empty() {
        ctx.error(
            "jobpool::empty-param",
            format!("`lines` file {} of `{name}` has no non-empty line", path.display()),
            &node.loc,
            "no lines",
            Some("an empty parameter makes an empty job".into()),
        );
        return None;
    }
    Some((ParamValues::List(values), ParamOrigin::Lines { file: path }))
}

fn tuples(ctx: &mut Ctx, node: &Node, width: usize, names_loc: &Loc) -> Option<Vec<Vec<Value>>> {
    let NodeKind::Array(rows) = &node.kind else {
        ctx.wrong_type("tuples", node, "an array of arrays", "tuples = [[0, 1], [2, 3]]");
        return None;
    };
    if rows.is_empty() {
        ctx.error(
            "jobpool::empty-param",
            "`tuples` is empty",
            &node.loc,
            "no tuples",
            Some("an empty job makes no sense; give at least one tuple".into()),
        );
        return None;
    }
    if !rows.iter().any(|r| matches!(r.kind, NodeKind::Array(_))) {
        let example = format!("[{}]", vec!["0"; width].join(", "));
        ctx.error(
            "jobpool::bad-tuples",
            "`tuples` must be an array of arrays, one per submission",
            &node.loc,
            "a flat array",
            Some(format!("write tuples = [{example}, ...]: each tuple has one value per name")),
        );
        return None;
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut ok = true;
    for row in rows {
        let NodeKind::Array(items) = &row.kind else {
            ctx.error(
                "jobpool::bad-tuples",
                format!("each tuple must be an array, not {}", row.type_name()),
                &row.loc,
                format!("{} here", row.type_name()),
                Some(format!("write [v1, v2, ...] with {}", count(width as u64, "value"))),
            );
            ok = false;
            continue;
        };
        if items.len() != width {
            let p = Problem::at(
                ctx.sources,
                "jobpool::bad-tuples",
                format!("tuple has {} but `names` has {width}", count(items.len() as u64, "value")),
                &row.loc,
                count(items.len() as u64, "value"),
            )
            .label(ctx.sources, names_loc, count(width as u64, "name"))
            .help("every tuple needs exactly one value per name");
            ctx.push(p);
            ok = false;
            continue;
        }
        let mut vals = Vec::with_capacity(width);
        for i in items {
            match to_json(ctx, i) {
                Some(v) => vals.push(v),
                None => ok = false,
            }
        }
        out.push(vals);
    }
    ok.then_some(out)
}
