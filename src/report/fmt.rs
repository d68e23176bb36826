//! Text helpers shared by the formats: durations, sizes, arguments, values.

use serde_json::{Map, Value};

/// `0.42 ms`, `12.3 ms`, `1.52 s`, `2m 03s`, `1h 02m`.
pub fn ms(ms: f64) -> String {
    if !ms.is_finite() {
        return "–".into();
    }
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else if ms < 60_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms < 3_600_000.0 {
        let s = (ms / 1000.0).round() as u64;
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        let m = (ms / 60_000.0).round() as u64;
        format!("{}h {:02}m", m / 60, m % 60)
    }
}

/// KiB as `512 KiB`, `12.5 MiB`, `1.20 GiB`.
pub fn kib(k: f64) -> String {
    if k < 1024.0 {
        format!("{k:.0} KiB")
    } else if k < 1024.0 * 1024.0 {
        format!("{:.1} MiB", k / 1024.0)
    } else {
        format!("{:.2} GiB", k / (1024.0 * 1024.0))
    }
}

/// A number without noise: integers as integers, others to 4 significant digits.
pub fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else if x.abs() >= 1000.0 {
        format!("{x:.1}")
    } else {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A value as text (strings bare).
pub fn value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// `x=1, name=a`; `()` for none.
pub fn args(a: &Map<String, Value>) -> String {
    if a.is_empty() {
        return "()".into();
    }
    a.iter().map(|(k, v)| format!("{k}={}", value(v))).collect::<Vec<_>>().join(", ")
}

/// At most `max` characters, with `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() { format!("{head}…") } else { head }
}

/// A percentage of `n` in `total`.
pub fn pct(n: u64, total: u64) -> String {
    if total == 0 { "–".into() } else { format!("{:.1}%", n as f64 * 100.0 / total as f64) }
}

/// The title of a report: the job's name, or the file's.
pub fn title(s: &super::Summary) -> String {
    s.run.job.clone().unwrap_or_else(|| "records".into())
}
