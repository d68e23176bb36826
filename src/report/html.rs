//! The HTML report: one self-contained page. Styles and charts (inline SVG from
//! [`super::charts`]) are in the file; a Content-Security-Policy forbids every request,
//! so the page works offline and cannot leak anything when opened.

use std::fmt::Write;

use super::charts;
use super::compare::{Change, Comparison, Outcome};
use super::fmt::{self, cut};
use super::summary::{MAX_PARAM_VALUES, Stats, Summary};
use crate::record::Status;

/// Rows shown per table (failures, changes); the JSON report has them all.
pub const MAX_ROWS: usize = 200;

/// Text escaped for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--bg:#f6f8fa;--card:#fff}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI","Noto Sans",Helvetica,Arial,sans-serif}
main{max-width:980px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:0 0 12px}
.muted{color:var(--muted)}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:16px 18px;margin:16px 0}
.verdict{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;font-weight:600;font-size:13px;vertical-align:middle;margin-left:8px}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px 18px;margin:14px 0 0}
.facts div{min-width:0}.facts b{display:block;font-size:12px;color:var(--muted);font-weight:500}
.facts span{font-size:16px;font-weight:600;overflow-wrap:anywhere}
.bar{display:flex;height:14px;border-radius:7px;overflow:hidden;background:var(--line);margin:4px 0 10px}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px}.legend span{white-space:nowrap}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:5px;vertical-align:baseline}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12px}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#eff2f5;padding:1px 4px;border-radius:4px;overflow-wrap:anywhere}
pre{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f6f8fa;padding:8px;border-radius:6px;white-space:pre-wrap;margin:6px 0 0}
.st{font-weight:600}
svg{max-width:100%;height:auto;display:block}
details summary{cursor:pointer;color:var(--muted)}
h3{font-size:14px;margin:18px 0 8px}
"#;

fn stat_row(out: &mut String, name: &str, s: &Stats, f: &dyn Fn(f64) -> String, total: bool) {
    let _ = write!(
        out,
        "<tr><td>{name}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
        s.count,
        f(s.min),
        f(s.median),
        f(s.p95),
        f(s.max),
        if total { f(s.total) } else { String::new() }
    );
}

fn status_cell(status: &str) -> String {
    let color = Status::ALL
        .iter()
        .find(|s| s.as_str() == status)
        .map_or("#656d76".to_string(), |s| charts::status_css(*s));
    format!("<span class=st style=\"color:{color}\">{}</span>", esc(status))
}

fn args_code(a: &serde_json::Map<String, serde_json::Value>) -> String {
    format!("<code>{}</code>", esc(&cut(&fmt::args(a), 160)))
}

/// `summary` (and `comparison`) as one HTML page.
pub fn render(summary: &Summary, comparison: Option<&Comparison>) -> String {
    let s = summary;
    let mut o = String::with_capacity(64 * 1024);
    let title = fmt::title(s);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
         <title>{} — jobpool report</title><style>{STYLE}</style></head><body><main>",
        esc(&title)
    );
    if let Some(c) = comparison {
        comparison_html(&mut o, c);
    }

    // Header: verdict and facts.
    let (verdict, color) = if s.failures > 0 {
        (format!("{} failed", s.failures), charts::status_css(Status::Error))
    } else if s.counts.ok == s.total {
        ("all ok".to_string(), charts::status_css(Status::Ok))
    } else {
        (format!("{} of {} ok", s.counts.ok, s.total), charts::status_css(Status::Cancelled))
    };
    let _ = write!(
        o,
        "<div class=card><h1>{}<span class=verdict style=\"background:{color}\">{}</span></h1>",
        esc(&title),
        esc(&verdict)
    );
    if let Some(d) = &s.run.description {
        let _ = write!(o, "<div class=muted>{}</div>", esc(d));
    }
    let mut facts: Vec<(&str, String)> = Vec::new();
    if let Some(id) = &s.run.id {
        facts.push(("run", id.clone()));
    }
    if let Some(t) = &s.run.started_at {
        facts.push(("started (UTC)", t.get(..19).unwrap_or(t).replace('T', " ")));
    }
    facts.push(("wall time", fmt::ms(s.wall_ms)));
    if let Some(w) = s.workers {
        facts.push(("workers", w.to_string()));
    }
    let mut tasks = s.total.to_string();
    if s.resumed > 0 {
        let _ = write!(tasks, " ({} resumed)", s.resumed);
    }
    facts.push(("tasks", tasks));
    if let Some(t) = s.throughput_per_s {
        facts.push(("throughput", format!("{} /s", fmt::num((t * 10.0).round() / 10.0))));
    }
    if let Some(d) = &s.duration_ms {
        facts.push(("median task", fmt::ms(d.median)));
    }
    if let Some(v) = &s.value {
        facts.push(("median result", fmt::num(v.median)));
    }
    if let Some(c) = &s.run.cancelled {
        facts.push(("cancelled", c.clone()));
    }
    if let Some(k) = &s.run.task_kind {
        facts.push(("task kind", k.clone()));
    }
    o.push_str("<div class=facts>");
    for (k, v) in facts {
        let _ = write!(o, "<div><b>{k}</b><span>{}</span></div>", esc(&v));
    }
    o.push_str("</div></div>");

    // Status bar.
    o.push_str("<div class=card><h2>Status</h2><div class=bar>");
    for st in Status::ALL {
        let n = s.counts.get(st);
        if n > 0 {
            let _ = write!(
                o,
                "<div style=\"width:{:.3}%;background:{}\" title=\"{} {}\"></div>",
                n as f64 * 100.0 / s.total.max(1) as f64,
                charts::status_css(st),
                n,
                st
            );
        }
    }
    o.push_str("</div><div class=legend>");
    for st in Status::ALL {
        let n = s.counts.get(st);
        if n > 0 || st == Status::Ok {
            let _ = write!(
                o,
                "<span><i class=dot style=\"background:{}\"></i>{} <b>{n}</b> <span class=muted>({})</span></span>",
                charts::status_css(st),
                st,
                fmt::pct(n, s.total)
            );
        }
    }
    o.push_str("</div></div>");

    // Charts.
    if let Some(svg) = charts::histogram(&s.charts) {
        let _ = write!(o, "<div class=card><h2>Task durations</h2>{svg}</div>");
    }
    if let Some(svg) = charts::timeline(&s.charts) {
        let note = if s.charts.spans.len() > charts::PER_TASK_LIMIT {
            format!(
                " <span class=muted>({} tasks: time bins per worker, each stacked by the statuses of its tasks, shaded by how busy the worker was)</span>",
                s.charts.spans.len()
            )
        } else {
            String::new()
        };
        let mut legend = String::from("<div class=legend>");
        for st in Status::ALL {
            if s.charts.spans.iter().any(|x| x.status == st) {
                let _ = write!(
                    legend,
                    "<span><i class=dot style=\"background:{}\"></i>{st}</span>",
                    charts::status_css(st)
                );
            }
        }
        legend.push_str("</div>");
        let _ = write!(o, "<div class=card><h2>Workers over time{note}</h2>{svg}{legend}</div>");
    }
    for (name, points) in &s.charts.points {
        if let Some(svg) = charts::value_vs(name, points) {
            let note = if points.len() > charts::PER_TASK_LIMIT {
                " <span class=muted>(median, with the 10th–90th percentile band)</span>"
            } else {
                ""
            };
            let _ = write!(
                o,
                "<div class=card><h2>Result by <code>{}</code>{note}</h2>{svg}</div>",
                esc(name)
            );
        }
    }

    // Resources.
    if s.duration_ms.is_some() {
        o.push_str("<div class=card><h2>Per task</h2><table><tr><th></th><th class=n>tasks</th><th class=n>min</th><th class=n>median</th><th class=n>p95</th><th class=n>max</th><th class=n>total</th></tr>");
        if let Some(d) = &s.duration_ms {
            stat_row(&mut o, "duration", d, &fmt::ms, true);
        }
        if let Some(c) = &s.cpu_ms {
            stat_row(&mut o, "CPU time", c, &fmt::ms, true);
        }
        if let Some(m) = &s.max_rss_kb {
            stat_row(&mut o, "peak memory", m, &fmt::kib, false);
        }
        o.push_str("</table></div>");
    }

    // Failures.
    if !s.failure_list.is_empty() {
        let _ = write!(
            o,
            "<div class=card><h2>Failures ({})</h2><table><tr><th class=n>#</th><th>arguments</th><th>status</th><th class=n>attempts</th><th>error</th></tr>",
            s.failure_list.len()
        );
        for f in s.failure_list.iter().take(MAX_ROWS) {
            let stderr = f
                .stderr
                .as_deref()
                .filter(|e| !e.trim().is_empty())
                .map(|e| {
                    format!("<details><summary>stderr</summary><pre>{}</pre></details>", esc(e))
                })
                .unwrap_or_default();
            let _ = write!(
                o,
                "<tr><td class=n>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td>{}{stderr}</td></tr>",
                f.index,
                args_code(&f.args),
                status_cell(&f.status),
                f.attempts,
                esc(&cut(&f.error, 400))
            );
        }
        o.push_str("</table>");
        if s.failure_list.len() > MAX_ROWS {
            let _ = write!(
                o,
                "<p class=muted>… and {} more: every one is in <code>jobpool report --format json</code>.</p>",
                s.failure_list.len() - MAX_ROWS
            );
        }
        o.push_str("</div>");
    }

    // Slowest.
    if !s.slowest.is_empty() {
        o.push_str("<div class=card><h2>Slowest tasks</h2><table><tr><th class=n>#</th><th>arguments</th><th>status</th><th class=n>duration</th><th class=n>worker</th></tr>");
        for t in &s.slowest {
            let _ = write!(
                o,
                "<tr><td class=n>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                t.index,
                args_code(&t.args),
                status_cell(&t.status),
                fmt::ms(t.duration_ms),
                t.worker.map(|w| w.to_string()).unwrap_or_default()
            );
        }
        o.push_str("</table></div>");
    }

    // Parameters.
    if !s.parameters.is_empty() {
        o.push_str("<div class=card><h2>Parameters</h2>");
        for p in &s.parameters {
            let _ = write!(o, "<h3><code>{}</code></h3>", esc(&p.name));
            if p.values.is_empty() {
                let _ = write!(
                    o,
                    "<p class=muted>more than {MAX_PARAM_VALUES} distinct values: no per-value table</p>"
                );
                continue;
            }
            let results = p.values.iter().any(|v| v.result.is_some());
            let _ = write!(
                o,
                "<table><tr><th>{}</th><th class=n>tasks</th><th class=n>failures</th><th class=n>median duration</th>{}</tr>",
                esc(&p.name),
                if results {
                    "<th class=n>median result</th><th class=n>mean result</th>"
                } else {
                    ""
                }
            );
            for v in &p.values {
                let fail = if v.failures > 0 {
                    format!(
                        "<span class=st style=\"color:{}\">{}</span>",
                        charts::status_css(Status::Error),
                        v.failures
                    )
                } else {
                    "0".into()
                };
                let _ = write!(
                    o,
                    "<tr><td><code>{}</code></td><td class=n>{}</td><td class=n>{fail}</td><td class=n>{}</td>",
                    esc(&cut(&fmt::value(&v.value), 80)),
                    v.count,
                    v.median_duration_ms.map(fmt::ms).unwrap_or_default()
                );
                if results {
                    let (m, a) = v
                        .result
                        .map(|r| (fmt::num(r.median), fmt::num(r.mean)))
                        .unwrap_or_default();
                    let _ = write!(o, "<td class=n>{m}</td><td class=n>{a}</td>");
                }
                o.push_str("</tr>");
            }
            o.push_str("</table>");
        }
        o.push_str("</div>");
    }
    let _ = writeln!(
        o,
        "<p class=muted>jobpool {} · {}</p></main></body></html>",
        env!("CARGO_PKG_VERSION"),
        s.run.job_file.as_deref().map(esc).unwrap_or_default()
    );
    o
}

fn outcome_html(o: Option<&Outcome>) -> String {
    match o {
        None => "<span class=muted>–</span>".into(),
        Some(o) if o.status == "ok" => format!(
            "{} <code>{}</code>",
            status_cell("ok"),
            esc(&cut(&o.value.as_ref().map(fmt::value).unwrap_or_default(), 80))
        ),
        Some(o) => format!(
            "{} {}",
            status_cell(&o.status),
            esc(&cut(o.error.as_deref().unwrap_or(""), 160))
        ),
    }
}

fn changes_html(o: &mut String, title: &str, list: &[Change]) {
    if list.is_empty() {
        return;
    }
    let _ = write!(
        o,
        "<h3>{title} ({})</h3><table><tr><th>arguments</th><th>before</th><th>after</th></tr>",
        list.len()
    );
    for c in list.iter().take(MAX_ROWS) {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            args_code(&c.args),
            outcome_html(c.before.as_ref()),
            outcome_html(c.after.as_ref())
        );
    }
    o.push_str("</table>");
}

fn comparison_html(o: &mut String, c: &Comparison) {
    let name = |a: &super::summary::RunAbout| {
        a.id.clone().or(a.job_file.clone()).unwrap_or_else(|| "records".into())
    };
    let _ = write!(
        o,
        "<div class=card><h1>Comparison</h1><div class=muted><code>{}</code> → <code>{}</code></div><div class=facts>",
        esc(&name(&c.base)),
        esc(&name(&c.new))
    );
    for (k, n) in [
        ("newly failing", c.newly_failing.len()),
        ("fixed", c.fixed.len()),
        ("value changes", c.value_changes.len()),
        ("other status changes", c.status_changes.len()),
        ("new", c.added.len()),
        ("gone", c.gone.len()),
        ("unchanged", c.unchanged as usize),
    ] {
        let _ = write!(o, "<div><b>{k}</b><span>{n}</span></div>");
    }
    if let Some(r) = &c.duration_ratio {
        let _ = write!(
            o,
            "<div><b>duration, new / base</b><span>×{}</span> <span class=muted>p10 ×{} · p90 ×{}</span></div>",
            fmt::num(r.median),
            fmt::num(r.p10),
            fmt::num(r.p90)
        );
    }
    o.push_str("</div>");
    changes_html(o, "Newly failing", &c.newly_failing);
    changes_html(o, "Fixed", &c.fixed);
    changes_html(o, "Value changes", &c.value_changes);
    changes_html(o, "Other status changes", &c.status_changes);
    changes_html(o, "New", &c.added);
    changes_html(o, "Gone", &c.gone);
    o.push_str("</div>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TaskRecord;
    use crate::report::summary::Builder;
    use serde_json::{Map, json};

    fn rec(index: u64, status: Status, ms: f64) -> TaskRecord {
        let mut args = Map::new();
        args.insert("x".into(), json!(index % 3));
        TaskRecord {
            index,
            key: format!("k{index}").into(),
            args: args.into(),
            status,
            value: (status == Status::Ok).then(|| json!(1)),
            error: (status != Status::Ok).then(|| "<b>&</b>".into()),
            attempts: u32::from(status != Status::Skipped),
            worker: Some(0),
            started_at: Some("2026-01-01T00:00:00.000000Z".into()),
            duration_ms: ms,
            exit_code: None,
            signal: None,
            stderr: None,
            cpu_ms: None,
            max_rss_kb: None,
            resumed: false,
        }
    }

    #[test]
    fn degenerate_runs_render_without_panicking() {
        let cases: Vec<Vec<TaskRecord>> = vec![
            vec![],
            vec![rec(0, Status::Ok, 0.0)],
            vec![rec(0, Status::Skipped, 0.0), rec(1, Status::Skipped, 0.0)],
            vec![rec(0, Status::Error, 5.0), rec(1, Status::Ok, 5.0), rec(2, Status::Ok, 5.0)],
            (0..5000).map(|i| rec(i, Status::Ok, (i % 97) as f64)).collect(),
        ];
        for recs in cases {
            let mut b = Builder::new();
            recs.iter().for_each(|r| b.add(r));
            let html = render(&b.finish(None), None);
            assert!(html.ends_with("</html>\n"));
            assert!(!html.contains("<b>&</b>"), "escaped");
        }
    }
}
