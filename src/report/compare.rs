//! Analysis: two runs -> [`Comparison`], matched by content key (not position), so
//! runs of an edited job compare task by task. No formats here.

use std::collections::HashMap;
use std::io;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::summary::{RunAbout, Stats};
use crate::record::{Status, TaskRecord};

/// One side of a change: a task's outcome in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    /// Position in that run's plan.
    pub index: u64,
    /// How it ended.
    pub status: String,
    /// The result, on `ok`.
    pub value: Option<Value>,
    /// The error, otherwise.
    pub error: Option<String>,
    /// Wall time of the last attempt, ms.
    pub duration_ms: f64,
}

/// One submission whose outcome differs between the runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Change {
    /// Content key.
    pub key: String,
    /// Arguments by name.
    pub args: Map<String, Value>,
    /// In the base run (absent for a new submission).
    pub before: Option<Outcome>,
    /// In the new run (absent for a submission that is gone).
    pub after: Option<Outcome>,
}

/// How the new run's durations relate to the base's, per key that ran in both.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ratio {
    /// Keys that ran (and finished) in both runs.
    pub count: u64,
    /// Median of new / base duration: 0.5 means twice as fast.
    pub median: f64,
    /// 10th percentile of the ratios.
    pub p10: f64,
    /// 90th percentile of the ratios.
    pub p90: f64,
}

/// Two runs side by side, by content key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Comparison {
    /// The earlier (base) run.
    pub base: RunAbout,
    /// The later (new) run.
    pub new: RunAbout,
    /// Failing in the new run, not failing in the base (or new and failing).
    pub newly_failing: Vec<Change>,
    /// Failing in the base run, `ok` in the new.
    pub fixed: Vec<Change>,
    /// `ok` in both with different values.
    pub value_changes: Vec<Change>,
    /// Other status changes (for example `ok` to `cancelled`, `error` to `timeout`).
    pub status_changes: Vec<Change>,
    /// Keys only in the new run (failing ones are also in `newly_failing`).
    pub added: Vec<Change>,
    /// Keys only in the base run.
    pub gone: Vec<Change>,
    /// Keys with the same status and value in both.
    pub unchanged: u64,
    /// New / base duration per key that ran in both; `null` when none did.
    pub duration_ratio: Option<Ratio>,
}

fn outcome(r: &TaskRecord) -> Outcome {
    Outcome {
        index: r.index,
        status: r.status.as_str().to_string(),
        value: r.value.clone(),
        error: r.error.clone(),
        duration_ms: r.duration_ms,
    }
}

fn ran(r: &TaskRecord) -> bool {
    !r.resumed && r.attempts > 0 && !matches!(r.status, Status::Skipped | Status::Cancelled)
}

/// Compare two runs' records. The base run is held by key (without stderr); the new one
/// is streamed.
pub fn compare<A, B>(base: RunAbout, a: A, new: RunAbout, b: B) -> io::Result<Comparison>
where
    A: IntoIterator<Item = io::Result<TaskRecord>>,
    B: IntoIterator<Item = io::Result<TaskRecord>>,
{
    let mut before: HashMap<crate::text::Key, TaskRecord> = HashMap::new();
    for r in a {
        let mut r = r?;
        r.stderr = None;
        before.insert(r.key.clone(), r);
    }
    let mut c = Comparison {
        base,
        new,
        newly_failing: vec![],
        fixed: vec![],
        value_changes: vec![],
        status_changes: vec![],
        added: vec![],
        gone: vec![],
        unchanged: 0,
        duration_ratio: None,
    };
    let mut ratios: Vec<f32> = Vec::new();
    for r in b {
        let r = r?;
        let Some(old) = before.remove(&r.key) else {
            let change = Change {
                key: r.key.to_string(),
                args: r.args.to_map(),
                before: None,
                after: Some(outcome(&r)),
            };
            if r.status.is_failure() {
                c.newly_failing.push(change.clone());
            }
            c.added.push(change);
            continue;
        };
        if ran(&r) && ran(&old) && old.duration_ms > 0.0 {
            ratios.push((r.duration_ms / old.duration_ms) as f32);
        }
        let change = || Change {
            key: r.key.to_string(),
            args: r.args.to_map(),
            before: Some(outcome(&old)),
            after: Some(outcome(&r)),
        };
        if r.status.is_failure() && !old.status.is_failure() {
            c.newly_failing.push(change());
        } else if old.status.is_failure() && r.status == Status::Ok {
            c.fixed.push(change());
        } else if old.status != r.status {
            c.status_changes.push(change());
        } else if r.status == Status::Ok && old.value != r.value {
            c.value_changes.push(change());
        } else {
            c.unchanged += 1;
        }
    }
    for (key, old) in before {
        c.gone.push(Change {
            key: key.to_string(),
            args: old.args.to_map(),
            before: Some(outcome(&old)),
            after: None,
        });
    }
    let by_new = |v: &mut Vec<Change>| {
        v.sort_by_key(|c| c.after.as_ref().or(c.before.as_ref()).map_or(0, |o| o.index))
    };
    for v in [
        &mut c.newly_failing,
        &mut c.fixed,
        &mut c.value_changes,
        &mut c.status_changes,
        &mut c.added,
        &mut c.gone,
    ] {
        by_new(v);
    }
    if let Some(s) = Stats::of(&mut ratios) {
        let n = ratios.len();
        let rank = |q: f64| ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        ratios.sort_unstable_by(f32::total_cmp);
        c.duration_ratio = Some(Ratio {
            count: s.count,
            median: s.median,
            p10: f64::from(ratios[rank(0.10)]),
            p90: f64::from(ratios[rank(0.90)]),
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(key: &str, status: Status, value: i64, ms: f64) -> io::Result<TaskRecord> {
        let mut args = Map::new();
        args.insert("k".into(), json!(key));
        Ok(TaskRecord {
            index: key.as_bytes()[0] as u64,
            key: key.into(),
            args: args.into(),
            status,
            value: (status == Status::Ok).then(|| json!(value)),
            error: (status != Status::Ok).then(|| "boom".into()),
            attempts: 1,
            worker: Some(0),
            started_at: None,
            duration_ms: ms,
            exit_code: None,
            signal: None,
            stderr: None,
            cpu_ms: None,
            max_rss_kb: None,
            resumed: false,
        })
    }

    #[test]
    fn changes_are_sorted_into_their_kinds() {
        use Status::*;
        let a = vec![
            rec("a", Ok, 1, 10.0),
            rec("b", Error, 0, 10.0),
            rec("c", Ok, 3, 10.0),
            rec("d", Ok, 4, 10.0),
            rec("g", Ok, 4, 10.0),
            rec("h", Ok, 4, 10.0),
        ];
        let b = vec![
            rec("a", Error, 0, 20.0),
            rec("b", Ok, 2, 20.0),
            rec("c", Ok, 30, 20.0),
            rec("d", Ok, 4, 20.0),
            rec("h", Cancelled, 0, 20.0),
            rec("n", Timeout, 0, 20.0),
        ];
        let c = compare(RunAbout::default(), a, RunAbout::default(), b).unwrap();
        let keys = |v: &[Change]| v.iter().map(|c| c.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&c.newly_failing), ["a", "n"]);
        assert_eq!(keys(&c.fixed), ["b"]);
        assert_eq!(keys(&c.value_changes), ["c"]);
        assert_eq!(keys(&c.status_changes), ["h"]);
        assert_eq!(keys(&c.added), ["n"]);
        assert_eq!(keys(&c.gone), ["g"]);
        assert_eq!(c.unchanged, 1);
        let r = c.duration_ratio.unwrap();
        assert_eq!((r.count, r.median), (4, 2.0));
    }
}
