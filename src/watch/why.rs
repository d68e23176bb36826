//! Why each submission of a rerun runs: compared with the job's plan at its last run in
//! this watch session and with the `ok` records of its earlier runs.

use std::collections::HashMap;

use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

use crate::model::Job;
use crate::plan::{Plan, task_key_prefix};

/// Plans larger than this are not remembered between runs (memory: 16 bytes per
/// submission); their reruns say `new` rather than `input changed` or `task changed`.
const REMEMBER_MAX: u64 = 1 << 20;

/// Why a submission runs, or that it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The first run of the job in this session (without `--resume`).
    FirstRun,
    /// A path of the job's `watch` list changed: every submission runs.
    Watched,
    /// Its arguments were not in the job's last plan (a new line, a new glob match, a
    /// new value).
    New,
    /// Same arguments, but the task definition changed (the job file, a script file).
    TaskChanged,
    /// Same arguments and task, but a file it names changed (a glob match's content).
    InputChanged,
    /// Unchanged, but it has no `ok` record (it failed, was cancelled or never ran).
    NotOk,
    /// Its key has an `ok` record: taken from there, not run.
    Unchanged,
}

impl Reason {
    /// Every reason, in the order the header lists them.
    pub const ALL: [Reason; 7] = [
        Reason::FirstRun,
        Reason::Watched,
        Reason::New,
        Reason::TaskChanged,
        Reason::InputChanged,
        Reason::NotOk,
        Reason::Unchanged,
    ];

    /// Words for the header and `--why`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FirstRun => "first run",
            Reason::Watched => "watched path changed",
            Reason::New => "new",
            Reason::TaskChanged => "task changed",
            Reason::InputChanged => "input changed",
            Reason::NotOk => "not ok before",
            Reason::Unchanged => "unchanged",
        }
    }
}

/// What a job's plan was at its last run: the task's key prefix and, per submission, a
/// hash of its arguments and of its key.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    prefix: [u8; 32],
    keys: HashMap<u64, u64>,
}

/// The reasons of one run.
#[derive(Debug, Clone, Default)]
pub struct Assessment {
    /// How many submissions per reason, in [`Reason::ALL`] order, zeros left out.
    pub counts: Vec<(Reason, u64)>,
    /// Every submission that runs: index, arguments, reason (filled when asked for).
    pub runs: Vec<(u64, Vec<Value>, Reason)>,
    /// The plan as it is now, for the next assessment (`None` for very large plans).
    pub snapshot: Option<Snapshot>,
}

impl Assessment {
    /// How many submissions run (all but the unchanged ones).
    pub fn to_run(&self) -> u64 {
        self.counts.iter().filter(|(r, _)| *r != Reason::Unchanged).map(|(_, n)| n).sum()
    }

    /// `3 new, 1 input changed, 96 unchanged`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> =
            self.counts.iter().map(|(r, n)| format!("{n} {}", r.as_str())).collect();
        parts.join(", ")
    }
}

/// Assess `job`'s plan. `done(key)`: whether the key has an `ok` record that the run
/// will reuse (`None`: nothing is reused). `all`: the reason every submission runs
/// regardless (first run, a watched path). `previous`: the snapshot of the job's last
/// run. `list`: fill [`Assessment::runs`].
pub fn assess(
    job: &Job,
    done: Option<&dyn Fn(&str) -> bool>,
    all: Option<Reason>,
    previous: Option<&Snapshot>,
    list: bool,
) -> Assessment {
    let plan = Plan::new(job);
    let remember = plan.len() <= REMEMBER_MAX;
    let prefix = task_key_prefix(job);
    let mut keys = HashMap::new();
    let mut counts: HashMap<Reason, u64> = HashMap::new();
    let mut runs = Vec::new();
    for sub in plan {
        let args_hash = xxh3_64(&serde_json::to_vec(&sub.args).unwrap_or_default());
        let key_hash = xxh3_64(sub.key.as_bytes());
        let reason = if done.is_some_and(|d| d(&sub.key)) {
            Reason::Unchanged
        } else if let Some(r) = all {
            r
        } else {
            match previous.and_then(|p| p.keys.get(&args_hash).map(|k| (p, *k))) {
                None => Reason::New,
                Some((_, k)) if k == key_hash => Reason::NotOk,
                Some((p, _)) if p.prefix != prefix => Reason::TaskChanged,
                Some(_) => Reason::InputChanged,
            }
        };
        *counts.entry(reason).or_default() += 1;
        if list && reason != Reason::Unchanged {
            runs.push((sub.index, sub.args, reason));
        }
        if remember {
            keys.insert(args_hash, key_hash);
        }
    }
    Assessment {
        counts: Reason::ALL.iter().filter_map(|r| counts.get(r).map(|n| (*r, *n))).collect(),
        runs,
        snapshot: remember.then_some(Snapshot { prefix, keys }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use super::*;
    use crate::validate::{LoadOptions, load, load_str};

    fn job(text: &str) -> Job {
        let opts = LoadOptions { kinds: vec!["script".into()], ..Default::default() };
        load_str(Path::new("t.toml"), text, &opts).unwrap()
    }

    fn keys(j: &Job) -> HashSet<crate::plan::Key> {
        Plan::new(j).map(|s| s.key).collect()
    }

    #[test]
    fn reasons_against_the_last_plan_and_ok_records() {
        let v1 = job("[task]\nkind = \"script\"\nscript = \"x\"\n[args]\nx = [1, 2, 3]\n");
        let first = assess(&v1, None, Some(Reason::FirstRun), None, true);
        assert_eq!(first.summary(), "3 first run");
        assert_eq!(first.to_run(), 3);
        // 1 and 2 finished ok; 3 failed.
        let mut ok = keys(&v1);
        ok.remove(&Plan::new(&v1).nth(2).unwrap().key);
        let done = |k: &str| ok.contains(k);

        let v2 = job("[task]\nkind = \"script\"\nscript = \"x\"\n[args]\nx = [1, 2, 3, 4]\n");
        let a = assess(&v2, Some(&done), None, first.snapshot.as_ref(), true);
        assert_eq!(a.summary(), "1 new, 1 not ok before, 2 unchanged");
        let listed: Vec<(u64, Reason)> = a.runs.iter().map(|(i, _, r)| (*i, *r)).collect();
        assert_eq!(listed, [(2, Reason::NotOk), (3, Reason::New)]);

        let v3 = job("[task]\nkind = \"script\"\nscript = \"x + 1\"\n[args]\nx = [1, 2, 3, 4]\n");
        let b = assess(&v3, Some(&done), None, a.snapshot.as_ref(), false);
        assert_eq!(b.summary(), "4 task changed");
        assert!(b.runs.is_empty());

        let c = assess(&v2, Some(&done), Some(Reason::Watched), a.snapshot.as_ref(), false);
        assert_eq!(c.summary(), "2 watched path changed, 2 unchanged");
    }

    #[test]
    fn an_edited_glob_match_is_an_input_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "1").unwrap();
        std::fs::write(dir.path().join("b.txt"), "1").unwrap();
        let path = dir.path().join("j.toml");
        std::fs::write(
            &path,
            "[task]\nkind = \"script\"\nscript = \"f\"\n[args]\nf = { glob = \"*.txt\" }\n",
        )
        .unwrap();
        let opts = LoadOptions { kinds: vec!["script".into()], ..Default::default() };
        let j1 = load(&path, &opts).unwrap();
        let ok = keys(&j1);
        let first = assess(&j1, None, Some(Reason::FirstRun), None, false);
        std::fs::write(dir.path().join("a.txt"), "2").unwrap();
        std::fs::write(dir.path().join("c.txt"), "1").unwrap();
        let j2 = load(&path, &opts).unwrap();
        let done = |k: &str| ok.contains(k);
        let a = assess(&j2, Some(&done), None, first.snapshot.as_ref(), false);
        assert_eq!(a.summary(), "1 new, 1 input changed, 1 unchanged");
    }
}
