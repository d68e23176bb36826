//! The Markdown report: GitHub-flavoured tables, ready to paste into a pull request.

use std::fmt::Write;

use super::compare::{Change, Comparison};
use super::fmt::{self, cut};
use super::summary::{Stats, Summary};
use crate::record::Status;

/// Rows shown per list (failures, changes); the JSON report has them all.
pub const MAX_ROWS: usize = 50;

/// A table cell: no `|` or line breaks, at most `max` characters.
fn cell(s: &str, max: usize) -> String {
    cut(s.trim(), max).replace('\\', "\\\\").replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Inline code that survives backticks in the text.
fn code(s: &str) -> String {
    let s = cell(s, 120);
    if s.is_empty() {
        String::new()
    } else if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
    }
}

/// `summary` (and `comparison`, first, when given) as Markdown.
pub fn render(summary: &Summary, comparison: Option<&Comparison>) -> String {
    let mut out = String::new();
    if let Some(c) = comparison {
        comparison_md(&mut out, c);
        out.push('\n');
    }
    summary_md(&mut out, summary, comparison.is_some());
    out
}

fn summary_md(out: &mut String, s: &Summary, nested: bool) {
    let h = if nested { "##" } else { "#" };
    let hh = if nested { "###" } else { "##" };
    let _ = writeln!(out, "{h} jobpool report: {}\n", cell(&fmt::title(s), 200));
    if let Some(d) = &s.run.description {
        let _ = writeln!(out, "{}\n", cell(d, 500));
    }
    let mut verdict = if s.failures > 0 {
        format!("❌ **{} of {} failed**", s.failures, s.total)
    } else if s.counts.ok == s.total {
        format!("✅ **all {} ok**", s.total)
    } else {
        format!("⚠️ **{} of {} ok**", s.counts.ok, s.total)
    };
    if let Some(c) = &s.run.cancelled {
        let _ = write!(verdict, " (cancelled: {c})");
    }
    let _ = writeln!(out, "{verdict}\n");
    out.push_str("| | |\n|---|---|\n");
    if let Some(id) = &s.run.id {
        let state = match (s.run.state.as_str(), s.run.exit_code) {
            ("finished", Some(code)) => format!("finished, exit code {code}"),
            ("running", _) => "running, or ended without finishing".into(),
            (other, _) => other.to_string(),
        };
        let _ = writeln!(out, "| run | {} ({state}) |", code(id));
    }
    if let Some(f) = &s.run.job_file {
        let _ = writeln!(out, "| job file | {} |", code(f));
    }
    if let Some(t) = &s.run.started_at {
        let _ = writeln!(out, "| started | {} |", cell(t, 40));
    }
    let _ = writeln!(out, "| wall time | {} |", fmt::ms(s.wall_ms));
    if let Some(w) = s.workers {
        let _ = writeln!(out, "| workers | {w} |");
    }
    let mut tasks = format!("{}", s.total);
    if s.resumed > 0 {
        let _ = write!(tasks, " ({} ran, {} resumed)", s.ran, s.resumed);
    }
    let _ = writeln!(out, "| tasks | {tasks} |");
    if let Some(t) = s.throughput_per_s {
        let _ = writeln!(out, "| throughput | {} tasks/s |", fmt::num((t * 10.0).round() / 10.0));
    }
    if let Some(v) = &s.value {
        let _ = writeln!(
            out,
            "| result | median {}, mean {} (of {} numeric) |",
            fmt::num(v.median),
            fmt::num(v.mean),
            v.count
        );
    }
    if s.unreadable_lines > 0 {
        let _ = writeln!(out, "| unreadable journal lines | {} |", s.unreadable_lines);
    }

    let _ = writeln!(out, "\n{hh} Status\n\n| status | tasks | share |\n|---|---:|---:|");
    for st in Status::ALL {
        let n = s.counts.get(st);
        if n > 0 || st == Status::Ok {
            let _ = writeln!(out, "| {} | {n} | {} |", st.as_str(), fmt::pct(n, s.total));
        }
    }

    if s.duration_ms.is_some() {
        let _ = writeln!(
            out,
            "\n{hh} Resources per task\n\n| | tasks | min | median | p95 | max | total |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        let row = |out: &mut String, name: &str, st: &Stats, f: &dyn Fn(f64) -> String| {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} |",
                st.count,
                f(st.min),
                f(st.median),
                f(st.p95),
                f(st.max),
                f(st.total)
            );
        };
        if let Some(d) = &s.duration_ms {
            row(out, "duration", d, &fmt::ms);
        }
        if let Some(c) = &s.cpu_ms {
            row(out, "CPU time", c, &fmt::ms);
        }
        if let Some(m) = &s.max_rss_kb {
            let _ = writeln!(
                out,
                "| peak memory | {} | {} | {} | {} | {} | |",
                m.count,
                fmt::kib(m.min),
                fmt::kib(m.median),
                fmt::kib(m.p95),
                fmt::kib(m.max)
            );
        }
    }

    if !s.slowest.is_empty() {
        let _ = writeln!(
            out,
            "\n{hh} Slowest tasks\n\n| # | arguments | status | duration | worker |\n|---:|---|---|---:|---:|"
        );
        for t in &s.slowest {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                t.index,
                code(&fmt::args(&t.args)),
                t.status,
                fmt::ms(t.duration_ms),
                t.worker.map(|w| w.to_string()).unwrap_or_default()
            );
        }
    }

    if !s.failure_list.is_empty() {
        let _ = writeln!(
            out,
            "\n{hh} Failures ({})\n\n| # | arguments | status | attempts | error |\n|---:|---|---|---:|---|",
            s.failure_list.len()
        );
        for f in s.failure_list.iter().take(MAX_ROWS) {
            let mut error = f.error.clone();
            if let Some(tail) = f.stderr.as_deref().and_then(|e| e.trim().lines().last())
                && !error.contains(tail)
            {
                error = format!("{error} — stderr: {tail}");
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                f.index,
                code(&fmt::args(&f.args)),
                f.status,
                f.attempts,
                cell(&error, 300)
            );
        }
        more(out, s.failure_list.len());
    }

    if !s.parameters.is_empty() {
        let _ = writeln!(out, "\n{hh} Parameters");
        for p in &s.parameters {
            let name = cell(&p.name, 60);
            if p.values.is_empty() {
                let _ = writeln!(
                    out,
                    "\n**{name}**: more than {} distinct values; no per-value table.",
                    super::summary::MAX_PARAM_VALUES
                );
                continue;
            }
            let results = p.values.iter().any(|v| v.result.is_some());
            let _ = write!(out, "\n**{name}**\n\n| {name} | tasks | failures | median duration |");
            if results {
                out.push_str(" median result | mean result |");
            }
            out.push_str("\n|---:|---:|---:|---:|");
            if results {
                out.push_str("---:|---:|");
            }
            out.push('\n');
            for v in &p.values {
                let _ = write!(
                    out,
                    "| {} | {} | {} | {} |",
                    code(&fmt::value(&v.value)),
                    v.count,
                    v.failures,
                    v.median_duration_ms.map(fmt::ms).unwrap_or_default()
                );
                if results {
                    let (m, a) = v
                        .result
                        .map(|r| (fmt::num(r.median), fmt::num(r.mean)))
                        .unwrap_or_default();
                    let _ = write!(out, " {m} | {a} |");
                }
                out.push('\n');
            }
        }
    }
}

fn more(out: &mut String, n: usize) {
    if n > MAX_ROWS {
        let _ = writeln!(
            out,
            "\n… and {} more (every one is in `jobpool report --format json`).",
            n - MAX_ROWS
        );
    }
}

fn outcome_text(o: Option<&super::compare::Outcome>) -> String {
    match o {
        None => "–".into(),
        Some(o) if o.status == "ok" => {
            format!("ok: {}", cut(&o.value.as_ref().map(fmt::value).unwrap_or_default(), 60))
        }
        Some(o) => format!("{}: {}", o.status, cut(o.error.as_deref().unwrap_or(""), 80)),
    }
}

fn changes(out: &mut String, title: &str, list: &[Change]) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n### {title} ({})\n\n| arguments | before | after |\n|---|---|---|",
        list.len()
    );
    for c in list.iter().take(MAX_ROWS) {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            code(&fmt::args(&c.args)),
            cell(&outcome_text(c.before.as_ref()), 200),
            cell(&outcome_text(c.after.as_ref()), 200)
        );
    }
    more(out, list.len());
}

fn comparison_md(out: &mut String, c: &Comparison) {
    let name = |a: &super::summary::RunAbout| {
        a.id.clone().or(a.job_file.clone()).unwrap_or_else(|| "records".into())
    };
    let _ =
        writeln!(out, "# jobpool comparison: {} → {}\n", code(&name(&c.base)), code(&name(&c.new)));
    let _ = writeln!(
        out,
        "| newly failing | fixed | value changes | other status changes | new | gone | unchanged |\n|---:|---:|---:|---:|---:|---:|---:|\n| {} | {} | {} | {} | {} | {} | {} |",
        c.newly_failing.len(),
        c.fixed.len(),
        c.value_changes.len(),
        c.status_changes.len(),
        c.added.len(),
        c.gone.len(),
        c.unchanged
    );
    if let Some(r) = &c.duration_ratio {
        let _ = writeln!(
            out,
            "\nDuration, new / base, over {} tasks that ran in both: median **×{}** (p10 ×{}, p90 ×{}).",
            r.count,
            fmt::num(r.median),
            fmt::num(r.p10),
            fmt::num(r.p90)
        );
    }
    changes(out, "Newly failing", &c.newly_failing);
    changes(out, "Fixed", &c.fixed);
    changes(out, "Value changes", &c.value_changes);
    changes(out, "Other status changes", &c.status_changes);
    changes(out, "New", &c.added);
    changes(out, "Gone", &c.gone);
}
