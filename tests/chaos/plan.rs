//! A trial, drawn from its seed alone: the job (submissions and their behaviour, pool
//! options, sinks) and the fault schedule of every round. Nothing here touches a
//! process or a file; the same seed always gives the same trial.

use std::fmt::Write as _;

/// What a submission's command does (`$2` of its script).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Sleeps, then prints `v<i>` and exits 0.
    Ok,
    /// Sleeps, then exits 3 with a line on stderr.
    Fail,
    /// Sleeps 30 s: always past `task-timeout`.
    Hang,
    /// Starts `sleep 30` in the background, sleeps, then prints `v<i>` and exits 0.
    Background,
}

impl Behaviour {
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Ok => "ok",
            Behaviour::Fail => "fail",
            Behaviour::Hang => "hang",
            Behaviour::Background => "bg",
        }
    }

    /// Whether the command succeeds whenever nothing kills it.
    pub fn succeeds(self) -> bool {
        matches!(self, Behaviour::Ok | Behaviour::Background)
    }
}

/// One submission of the job: argument `i` is its index.
#[derive(Debug, Clone, Copy)]
pub struct Submission {
    pub behaviour: Behaviour,
    /// The sleep of `ok`, `fail` and `bg` (never more than [`MAX_SLEEP_MS`]).
    pub sleep_ms: u32,
}

/// The longest sleep of a task that is meant to finish: far below every `task-timeout`.
pub const MAX_SLEEP_MS: u32 = 120;

/// The range of `task-timeout`: ten times the longest sleep at least, so that only a
/// `hang` task ever reaches it, even on a loaded machine; short, since every attempt of
/// a `hang` task costs that much wall time.
const TASK_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1200..=1800;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkFormat {
    Jsonl,
    Csv,
    Json,
}

impl SinkFormat {
    pub fn file(self) -> &'static str {
        match self {
            SinkFormat::Jsonl => "r.jsonl",
            SinkFormat::Csv => "r.csv",
            SinkFormat::Json => "r.json",
        }
    }

    fn format(self) -> &'static str {
        match self {
            SinkFormat::Jsonl => "jsonl",
            SinkFormat::Csv => "csv",
            SinkFormat::Json => "json",
        }
    }
}

/// A fault set up before a round starts, and undone after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    /// The sink folder is read-only for the round.
    ReadOnlySinks,
    /// The sink folder (a small tmpfs) is full for the round.
    FullDisk,
    /// The last line of the newest non-empty journal is cut short.
    TornJournal {
        /// Where to cut, as a share (per mille) of the last line's length.
        at_permille: u32,
    },
}

/// A fault injected while jobpool runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL one `__jobpool-worker` child of jobpool (chosen with `pick`).
    KillWorker { pick: u32 },
    /// SIGKILL one task process: a `sh` child of a worker (chosen with `pick`).
    KillTask { pick: u32 },
    /// SIGKILL jobpool itself.
    KillJobpool,
    /// SIGINT or SIGTERM to jobpool.
    Signal(i32),
}

#[derive(Debug, Clone)]
pub struct Round {
    pub resume: bool,
    pub before: Vec<Before>,
    /// Milliseconds after jobpool was started, ascending.
    pub faults: Vec<(u64, Fault)>,
}

/// Everything a trial does, from its seed.
#[derive(Debug, Clone)]
pub struct Trial {
    pub seed: u64,
    pub subs: Vec<Submission>,
    pub workers: u32,
    pub retries: u32,
    pub retry_on: Option<Vec<&'static str>>,
    pub max_failures: Option<String>,
    pub on_failure_stop: bool,
    pub chunk_size: Option<u32>,
    pub max_tasks_per_worker: u32,
    pub task_timeout_ms: u64,
    pub grace_ms: u64,
    pub job_timeout_ms: Option<u64>,
    pub sinks: Vec<SinkFormat>,
    /// Whether the sink folder is a small tmpfs (needed for `FullDisk`).
    pub tmpfs: bool,
    /// Run as N shards (`jobpool run --shard I/N --run-id chaos`, all N at once in every
    /// round), then `jobpool collect`: see `trial::run_sharded`.
    pub shards: Option<u32>,
    /// `backend = "threads"` (never with shards): tasks run on jobpool's own threads, so
    /// task processes are jobpool's children and there is no worker to kill.
    pub threads: bool,
    /// Every round: the faulty ones, then one clean round (always last).
    pub rounds: Vec<Round>,
}

/// The script of every submission: `$1` = index, `$2` = behaviour, `$3` = sleep (s).
/// Side log lines: `S i pid` first thing, `E i pid` just before a normal exit, `G i pid`
/// for a background grandchild.
const SCRIPT: &str = r#"echo "S $1 $$" >> side.log
case $2 in
  hang) sleep 30 ;;
  bg) sleep 30 & echo "G $1 $!" >> side.log; sleep $3 ;;
  *) sleep $3 ;;
esac
echo "E $1 $$" >> side.log
if [ "$2" = fail ]; then echo "failing $1" >&2; exit 3; fi
echo "v$1""#;

impl Trial {
    pub fn generate(seed: u64) -> Trial {
        let mut rng = fastrand::Rng::with_seed(seed);
        let n = rng.usize(20..=300);
        // Hanging tasks cost a task-timeout each (per attempt): a few at most.
        let mut hangs = rng.usize(0..=3);
        let fail_share = rng.u32(0..=15);
        let bg_share = rng.u32(0..=15);
        let subs = (0..n)
            .map(|_| {
                let roll = rng.u32(0..100);
                let behaviour = if roll < fail_share {
                    Behaviour::Fail
                } else if roll < fail_share + bg_share {
                    Behaviour::Background
                } else if hangs > 0 && rng.u32(0..100) < 3 {
                    hangs -= 1;
                    Behaviour::Hang
                } else {
                    Behaviour::Ok
                };
                let sleep_ms = match rng.u32(0..100) {
                    0..55 => 0,
                    55..90 => rng.u32(1..=40),
                    _ => rng.u32(40..=MAX_SLEEP_MS),
                };
                Submission { behaviour, sleep_ms }
            })
            .collect::<Vec<_>>();

        let workers = rng.u32(1..=4);
        let retries = if rng.bool() { 0 } else { rng.u32(1..=2) };
        let retry_on = (retries > 0 && rng.bool()).then(|| {
            let all = ["error", "timeout", "crashed"];
            let mut pick: Vec<&'static str> = all.into_iter().filter(|_| rng.bool()).collect();
            if pick.is_empty() {
                pick.push(all[rng.usize(0..3)]);
            }
            pick
        });
        let max_failures = match rng.u32(0..10) {
            0..2 => Some(rng.u32(1..=15).to_string()),
            2..4 => Some(format!("{}%", rng.u32(5..=40))),
            _ => None,
        };
        let on_failure_stop = max_failures.is_none() && rng.u32(0..10) == 0;
        let chunk_size = (rng.u32(0..3) == 0).then(|| rng.u32(1..=10));
        let max_tasks_per_worker = if rng.u32(0..4) == 0 { rng.u32(3..=40) } else { 0 };
        let task_timeout_ms = rng.u64(TASK_TIMEOUT_MS);
        let grace_ms = rng.u64(50..=500);
        let job_timeout_ms = (rng.u32(0..8) == 0).then(|| rng.u64(1500..=5000));
        let mut sinks: Vec<SinkFormat> = [SinkFormat::Jsonl, SinkFormat::Csv, SinkFormat::Json]
            .into_iter()
            .filter(|_| rng.bool())
            .collect();
        if sinks.is_empty() {
            sinks.push(SinkFormat::Jsonl);
        }
        let tmpfs = rng.u32(0..10) < 3;

        // A rough length of one full round, to spread faults over it.
        let busy: u64 = subs
            .iter()
            .map(|s| match s.behaviour {
                Behaviour::Hang => task_timeout_ms,
                _ => u64::from(s.sleep_ms) + 8,
            })
            .sum();
        let span = (busy / u64::from(workers)).clamp(200, 5000);

        let faulty = rng.usize(0..=3);
        let mut rounds = Vec::new();
        for r in 0..faulty {
            let mut before = Vec::new();
            if r > 0 && rng.u32(0..10) < 3 {
                before.push(Before::TornJournal { at_permille: rng.u32(0..1000) });
            }
            match rng.u32(0..10) {
                0 => before.push(Before::ReadOnlySinks),
                1 if tmpfs => before.push(Before::FullDisk),
                _ => {}
            }
            let mut faults = Vec::new();
            for _ in 0..rng.usize(1..=4) {
                // A quarter of the faults hit start-up.
                let at = if rng.u32(0..4) == 0 { rng.u64(0..150) } else { rng.u64(0..span) };
                let fault = match rng.u32(0..100) {
                    0..35 => Fault::KillWorker { pick: rng.u32(..) },
                    35..65 => Fault::KillTask { pick: rng.u32(..) },
                    65..80 => Fault::KillJobpool,
                    80..90 => Fault::Signal(libc::SIGINT),
                    _ => Fault::Signal(libc::SIGTERM),
                };
                faults.push((at, fault));
                // Now and then a second Ctrl-C (the one that kills at once).
                if matches!(fault, Fault::Signal(_)) && rng.u32(0..4) == 0 {
                    faults.push((at + rng.u64(20..400), Fault::Signal(libc::SIGINT)));
                }
            }
            faults.sort_by_key(|&(at, _)| at);
            rounds.push(Round { resume: r > 0 || rng.bool(), before, faults });
        }
        rounds.push(Round {
            resume: !rounds.is_empty() || rng.bool(),
            before: vec![],
            faults: vec![],
        });

        // Drawn last: the trials of earlier versions of the runner keep their draws.
        let shards = (rng.u32(0..4) == 0).then(|| rng.u32(2..=4));
        let threads = shards.is_none() && rng.u32(0..5) == 0;

        Trial {
            seed,
            shards,
            threads,
            subs,
            workers,
            retries,
            retry_on,
            max_failures,
            on_failure_stop,
            chunk_size,
            max_tasks_per_worker,
            task_timeout_ms,
            grace_ms,
            job_timeout_ms,
            sinks,
            tmpfs,
            rounds,
        }
    }

    pub fn n(&self) -> usize {
        self.subs.len()
    }

    /// The submissions of shard `s` (all of them for an unsharded trial): what
    /// `--shard s/N` takes, `n*s/N .. n*(s+1)/N`.
    pub fn slice(&self, s: u32) -> std::ops::Range<usize> {
        match self.shards {
            None => 0..self.n(),
            Some(count) => {
                let (n, s, c) = (self.n() as u64, u64::from(s), u64::from(count));
                (n * s / c) as usize..(n * (s + 1) / c) as usize
            }
        }
    }

    /// `retries` applies to a failure of this status.
    pub fn retries_on(&self, status: &str) -> bool {
        self.retries > 0 && self.retry_on.as_ref().is_none_or(|l| l.contains(&status))
    }

    pub fn job_toml(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "# chaos trial, seed {}", self.seed);
        let _ = writeln!(t, "workers = {}", self.workers);
        if self.threads {
            let _ = writeln!(t, "backend = \"threads\"");
        }
        let _ = writeln!(t, "task-timeout = \"{}ms\"", self.task_timeout_ms);
        let _ = writeln!(t, "grace-period = \"{}ms\"", self.grace_ms);
        if let Some(ms) = self.job_timeout_ms {
            let _ = writeln!(t, "timeout = \"{ms}ms\"");
        }
        if self.retries > 0 {
            let _ = writeln!(t, "retries = {}", self.retries);
        }
        if let Some(on) = &self.retry_on {
            let list: Vec<String> = on.iter().map(|s| format!("\"{s}\"")).collect();
            let _ = writeln!(t, "retry-on = [{}]", list.join(", "));
        }
        match &self.max_failures {
            Some(m) if m.ends_with('%') => {
                let _ = writeln!(t, "max-failures = \"{m}\"");
            }
            Some(m) => {
                let _ = writeln!(t, "max-failures = {m}");
            }
            None => {}
        }
        if self.on_failure_stop {
            let _ = writeln!(t, "on-failure = \"stop\"");
        }
        if let Some(c) = self.chunk_size {
            let _ = writeln!(t, "chunk-size = {c}");
        }
        if self.max_tasks_per_worker > 0 {
            let _ = writeln!(t, "max-tasks-per-worker = {}", self.max_tasks_per_worker);
        }
        t.push_str("\n[task]\nkind = \"command\"\n");
        let script = SCRIPT.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = writeln!(
            t,
            "program = [\"sh\", \"-c\", \"{script}\", \"sh\", \"{{i}}\", \"{{b}}\", \"{{s}}\"]"
        );
        t.push_str("\n[args]\ncombine = \"zip\"\n");
        let _ = writeln!(t, "i = {{ range = [0, {}] }}", self.n());
        let b: Vec<String> =
            self.subs.iter().map(|s| format!("\"{}\"", s.behaviour.name())).collect();
        let _ = writeln!(t, "b = [{}]", b.join(", "));
        let s: Vec<String> = self
            .subs
            .iter()
            .map(|s| format!("\"{:.3}\"", f64::from(s.sleep_ms) / 1000.0))
            .collect();
        let _ = writeln!(t, "s = [{}]", s.join(", "));
        for sink in &self.sinks {
            let _ = writeln!(
                t,
                "\n[[sink]]\nto = \"out/{}\"\nformat = \"{}\"",
                sink.file(),
                sink.format()
            );
        }
        t
    }

    /// The trial in words: what `CHAOS_SEED` replays.
    pub fn describe(&self) -> String {
        let mut t = String::new();
        let count = |b: Behaviour| self.subs.iter().filter(|s| s.behaviour == b).count();
        let _ = writeln!(
            t,
            "seed {}: {} submissions ({} fail, {} hang, {} bg), workers {}, retries {} on {:?}, \
             max-failures {:?}, stop {}, chunk {:?}, max-tasks {}, task-timeout {} ms, grace {} ms, \
             timeout {:?} ms, sinks {:?}, tmpfs {}, shards {:?}, threads {}",
            self.seed,
            self.n(),
            count(Behaviour::Fail),
            count(Behaviour::Hang),
            count(Behaviour::Background),
            self.workers,
            self.retries,
            self.retry_on,
            self.max_failures,
            self.on_failure_stop,
            self.chunk_size,
            self.max_tasks_per_worker,
            self.task_timeout_ms,
            self.grace_ms,
            self.job_timeout_ms,
            self.sinks,
            self.tmpfs,
            self.shards,
            self.threads,
        );
        for (k, r) in self.rounds.iter().enumerate() {
            let _ = writeln!(t, "round {k}: resume {}, before {:?}", r.resume, r.before);
            for (at, f) in &r.faults {
                let _ = writeln!(t, "  at {at} ms: {f:?}");
            }
        }
        t
    }
}
