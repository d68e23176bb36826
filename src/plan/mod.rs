//! The planner: a validated [`Job`] → a lazy, numbered stream of [`Submission`]s.
//!
//! Owns: [`Plan`] (an iterator that computes submission `i` from `i` alone, so it runs in
//! constant memory and can jump anywhere in O(1): a Slurm array element takes a slice),
//! and the content keys ([`task_key_prefix`], [`submission_key`]).
//! Must not: read files, spawn anything, or print. Pure.
//!
//! Forms: `product` is a mixed-radix count, the first parameter varying slowest; `zip`
//! takes element `i` of every parameter; `tuples` takes tuple `i`; constants join every
//! submission at their declared position. Ranges stay `start + i*step`, so float ranges
//! do not drift.
//!
//! Keys: XXH3-128 (a fixed, platform-independent algorithm) over the task prefix (the
//! blake3 hash of the task definition in canonical form, a script `file`'s contents
//! rather than its path) followed by the arguments' names and JSON values, sorted by
//! name. blake3 per submission was measured at ~7.5 M/s alone on the target machine,
//! too slow for the 5 M submissions/s goal; XXH3 is an order of magnitude faster. Not the position, not pool options: the same task with the same arguments
//! has the same key across runs, edits elsewhere in the file, and reorderings.
//!
//! An argument that names a file (a `glob` match) also carries that file's content: its
//! encoding is followed by the digest `validate` computed when it expanded the glob
//! ([`ParamOrigin::Glob`]), so an edited input file gets a new key and reruns under
//! `--resume` and in watch mode, while the other matches keep theirs. Only glob
//! parameters are hashed (in parallel, once per load): lists, ranges and `lines` cost
//! nothing more. [`submission_key`], which sees values only, cannot add digests: it is
//! for kinds whose arguments are plain values.

use serde_json::Value;
use xxhash_rust::xxh3::xxh3_128;

pub use crate::text::Key;

use crate::model::{
    ArgForm, Invocation, Job, OutputMode, ParamOrigin, ParamValues, Submission, TaskTemplate,
    Template,
};

/// Ranges up to this many values get their key encodings computed once.
const CACHE_RANGE_VALUES: u64 = 4096;

/// One argument's part of the key input: position, `name\0`, cached value encodings.
type KeyPart = (usize, Vec<u8>, Option<Vec<Vec<u8>>>);

/// One of `count` equal slices of a plan (`jobpool run --shard index/count`, 0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which slice, from 0.
    pub index: u64,
    /// How many slices.
    pub count: u64,
}

impl Shard {
    /// The submissions of this slice of a plan of `total`: `total * i / n ..
    /// total * (i + 1) / n`, so the slices differ in length by at most one and cover the
    /// plan exactly once.
    pub fn range(self, total: u64) -> std::ops::Range<u64> {
        let at = |i: u64| (u128::from(total) * u128::from(i) / u128::from(self.count)) as u64;
        at(self.index)..at(self.index + 1)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `I/N` with 0 <= I < N.
    fn from_str(s: &str) -> Result<Shard, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("{s:?} is not I/N, e.g. 0/4"))?;
        let index: u64 = i.trim().parse().map_err(|_| format!("{i:?} is not a shard number"))?;
        let count: u64 = n.trim().parse().map_err(|_| format!("{n:?} is not a shard count"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: I counts from 0 and must be less than N"));
        }
        Ok(Shard { index, count })
    }
}

/// A lazy plan: `Iterator<Item = Submission>`, numbered from 0.
#[derive(Debug, Clone)]
pub struct Plan {
    form: Form,
    constants: Vec<(usize, Value)>,
    prefix: [u8; 32],
    /// The key's input, in argument-name order: position, `name\0`, and the values'
    /// encodings when they can be computed once (lists, constants).
    key_order: Vec<KeyPart>,
    /// Per position, the index of the value used by the current submission.
    picked: Vec<usize>,
    /// Per position, where its value comes from.
    slots: Vec<Slot>,
    len: u64,
    next: u64,
    end: u64,
    buf: Vec<u8>,
}

/// Where the argument at one position comes from.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// Parameter `k` of a product or zip.
    Param(usize),
    /// Element `k` of the current tuple.
    Tuple(usize),
    /// Constant `k`.
    Constant(usize),
    /// Nothing (not produced by a validated job).
    Missing,
}

#[derive(Debug, Clone)]
enum Form {
    Single,
    /// (position, values, stride) per parameter.
    Product(Vec<(usize, ParamValues, u64)>),
    Zip(Vec<(usize, ParamValues)>),
    Tuples(Vec<usize>, Vec<Vec<Value>>),
}

impl Plan {
    /// The plan of `job`.
    pub fn new(job: &Job) -> Plan {
        let space = &job.args;
        let (form, len) = match &space.form {
            ArgForm::Single => (Form::Single, 1),
            ArgForm::Product(params) => {
                let mut stride = 1u64;
                let mut out = Vec::with_capacity(params.len());
                for p in params.iter().rev() {
                    out.push((p.position, p.values.clone(), stride));
                    // Validation guarantees the product fits; saturate rather than panic.
                    stride = stride.saturating_mul(p.values.len());
                }
                out.reverse();
                (Form::Product(out), stride)
            }
            ArgForm::Zip(params) => {
                let len = params.iter().map(|p| p.values.len()).min().unwrap_or(0);
                (Form::Zip(params.iter().map(|p| (p.position, p.values.clone())).collect()), len)
            }
            ArgForm::Tuples { positions, tuples } => {
                (Form::Tuples(positions.clone(), tuples.clone()), tuples.len() as u64)
            }
        };
        let encode = |v: &Value| serde_json::to_vec(v).unwrap_or_default();
        let mut cached: Vec<Option<Vec<Vec<u8>>>> = vec![None; space.names.len()];
        for (pos, v) in &space.constants {
            cached[*pos] = Some(vec![encode(v)]);
        }
        let params = match &space.form {
            ArgForm::Product(p) | ArgForm::Zip(p) => p.as_slice(),
            _ => &[],
        };
        for p in params {
            // Lists are in memory anyway; short ranges are cheaper to encode once than per
            // submission (float formatting dominated the profile). Bounded: constant memory.
            if matches!(p.values, ParamValues::List(_)) || p.values.len() <= CACHE_RANGE_VALUES {
                let mut enc: Vec<Vec<u8>> =
                    (0..p.values.len()).map(|i| encode(&p.values.get(i))).collect();
                // A glob match names a file: its content is part of the key.
                if let ParamOrigin::Glob { digests, .. } = &p.origin {
                    for (e, d) in enc.iter_mut().zip(digests) {
                        e.push(0);
                        e.extend_from_slice(d);
                    }
                }
                cached[p.position] = Some(enc);
            }
        }
        let mut key_order: Vec<KeyPart> = space
            .names
            .iter()
            .zip(cached)
            .enumerate()
            .map(|(i, (n, c))| {
                let mut name = n.as_bytes().to_vec();
                name.push(0);
                (i, name, c)
            })
            .collect();
        key_order.sort_by(|a, b| a.1.cmp(&b.1));
        let mut slots = vec![Slot::Missing; space.names.len()];
        match &form {
            Form::Single => {}
            Form::Product(params) => {
                for (k, (pos, _, _)) in params.iter().enumerate() {
                    slots[*pos] = Slot::Param(k);
                }
            }
            Form::Zip(params) => {
                for (k, (pos, _)) in params.iter().enumerate() {
                    slots[*pos] = Slot::Param(k);
                }
            }
            Form::Tuples(positions, _) => {
                for (k, pos) in positions.iter().enumerate() {
                    slots[*pos] = Slot::Tuple(k);
                }
            }
        }
        for (k, (pos, _)) in space.constants.iter().enumerate() {
            slots[*pos] = Slot::Constant(k);
        }
        let prefix = task_key_prefix(job);
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&prefix);
        Plan {
            form,
            constants: space.constants.clone(),
            prefix,
            key_order,
            picked: vec![0; space.names.len()],
            slots,
            len,
            next: 0,
            end: len,
            buf,
        }
    }

    /// Total number of submissions of the whole plan (not only what is left).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the plan has no submission (never true for a validated job).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Continue from submission `index` (O(1)); past the end, the iterator is done.
    pub fn skip_to(&mut self, index: u64) {
        self.next = index.min(self.end);
    }

    /// Only yield submissions `start..end` (clamped to the plan): a slice, e.g. for one
    /// Slurm array element.
    pub fn slice(mut self, start: u64, end: u64) -> Plan {
        self.end = end.min(self.len);
        self.next = start.min(self.end);
        self
    }

    /// Submission `index`, whatever the iterator's position.
    pub fn get(&mut self, index: u64) -> Option<Submission> {
        (index < self.len).then(|| self.make(index))
    }

    fn make(&mut self, index: u64) -> Submission {
        // Which value each parameter takes, then the arguments in one pass by position
        // (no placeholder vector to fill and drop).
        let tuple = match &self.form {
            Form::Single => None,
            Form::Product(params) => {
                for (pos, values, stride) in params {
                    self.picked[*pos] = ((index / stride) % values.len()) as usize;
                }
                None
            }
            Form::Zip(params) => {
                for (pos, _) in params {
                    self.picked[*pos] = index as usize;
                }
                None
            }
            Form::Tuples(_, tuples) => Some(&tuples[index as usize]),
        };
        let args: Vec<Value> = self
            .slots
            .iter()
            .map(|slot| match *slot {
                Slot::Param(k) => match &self.form {
                    Form::Product(params) => {
                        let (pos, values, _) = &params[k];
                        values.get(self.picked[*pos] as u64)
                    }
                    Form::Zip(params) => params[k].1.get(index),
                    _ => Value::Null,
                },
                Slot::Tuple(k) => tuple.map_or(Value::Null, |t| t[k].clone()),
                Slot::Constant(k) => self.constants[k].1.clone(),
                Slot::Missing => Value::Null,
            })
            .collect();
        self.buf.truncate(self.prefix.len());
        for (pos, name, cached) in &self.key_order {
            self.buf.extend_from_slice(name);
            match cached {
                Some(enc) => self
                    .buf
                    .extend_from_slice(enc.get(self.picked[*pos]).map_or(&[], Vec::as_slice)),
                // Writing JSON into a Vec cannot fail; the bytes are serde's.
                None => drop(crate::text::json::push_value(&mut self.buf, &args[*pos])),
            }
            self.buf.push(0);
        }
        let key = Key::from_hash(xxh3_128(&self.buf));
        Submission { index, key, args }
    }
}

impl Iterator for Plan {
    type Item = Submission;

    fn next(&mut self) -> Option<Submission> {
        if self.next >= self.end {
            return None;
        }
        let s = self.make(self.next);
        self.next += 1;
        Some(s)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end - self.next;
        (usize::try_from(left).unwrap_or(usize::MAX), usize::try_from(left).ok())
    }

    fn nth(&mut self, n: usize) -> Option<Submission> {
        self.next = self.next.saturating_add(n as u64).min(self.end);
        self.next()
    }
}

/// The key of a submission with `args` (aligned with `names`) under a task `prefix`:
/// what [`Plan`] puts in [`Submission::key`], for code that makes submissions itself.
pub fn submission_key(prefix: &[u8; 32], names: &[String], args: &[Value]) -> Key {
    let mut order: Vec<usize> = (0..names.len().min(args.len())).collect();
    order.sort_by(|a, b| names[*a].cmp(&names[*b]));
    let mut buf = prefix.to_vec();
    for i in order {
        buf.extend_from_slice(names[i].as_bytes());
        buf.push(0);
        let _ = serde_json::to_writer(&mut buf, &args[i]);
        buf.push(0);
    }
    Key::from_hash(xxh3_128(&buf))
}

/// The hash of `job`'s task definition in canonical form: the first half of every key.
pub fn task_key_prefix(job: &Job) -> [u8; 32] {
    let canonical = canonical_task(&job.task).to_string();
    let mut h = blake3::Hasher::new();
    h.update(b"jobpool-key-v1\0");
    h.update(canonical.as_bytes());
    *h.finalize().as_bytes()
}

fn canonical_task(task: &TaskTemplate) -> Value {
    let src = |t: &Template| Value::String(t.source.clone());
    match task {
        TaskTemplate::Command(c) => {
            let invocation = match &c.invocation {
                Invocation::Program(items) => {
                    serde_json::json!({ "program": items.iter().map(src).collect::<Vec<_>>() })
                }
                Invocation::Shell(t) => serde_json::json!({ "shell": src(t) }),
            };
            let output = match c.output {
                OutputMode::Text => "text",
                OutputMode::Json => "json",
                OutputMode::Lines => "lines",
                OutputMode::None => "none",
            };
            serde_json::json!({
                "kind": "command",
                "invocation": invocation,
                "cwd": c.cwd.as_ref().map(src),
                "env": c.env.iter().map(|(k, v)| serde_json::json!([k, src(v)])).collect::<Vec<_>>(),
                "stdin": c.stdin.as_ref().map(src),
                "output": output,
                "success-codes": c.success_codes,
            })
        }
        TaskTemplate::Script(s) => serde_json::json!({ "kind": "script", "script": s.source }),
        TaskTemplate::Registered { kind } => serde_json::json!({ "kind": kind }),
    }
}

#[cfg(test)]
mod tests;
