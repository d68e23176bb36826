//! Fuzzing parse + validate + plan with proptest: generated job documents (valid and
//! wrong in every shape) and mutations of the real example and fixture files.
//!
//! Properties: nothing panics; an accepted job plans (len >= 1, numbered from 0, each
//! submission as wide as the argument names, the last one reachable in O(1)); a rejected
//! job has problems whose labels lie inside their source and that render.
//! `cargo test --test integration fuzz_jobfiles::` runs a modest number of cases; set
//! `JOBPOOL_FUZZ_CASES=200000` for a long run (see book/src/internals/fuzzing.md).

use std::path::{Path, PathBuf};

use jobpool::cli::diag::{Style, render_with};
use jobpool::plan::Plan;
use jobpool::validate::{LoadOptions, load_str};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed};

fn cases(default: u32) -> u32 {
    std::env::var("JOBPOOL_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A fixed seed in plain `cargo test`, so CI is repeatable; fresh random seeds for long
/// runs (`JOBPOOL_FUZZ_CASES=N`), or a chosen one (`JOBPOOL_FUZZ_SEED=N`) to replay.
fn seed() -> RngSeed {
    match std::env::var("JOBPOOL_FUZZ_SEED").ok().and_then(|v| v.parse().ok()) {
        Some(n) => RngSeed::Fixed(n),
        None if std::env::var_os("JOBPOOL_FUZZ_CASES").is_some() => RngSeed::Random,
        None => RngSeed::Fixed(0x006a_6f62_706f_6f6c),
    }
}

fn config(default: u32) -> Config {
    Config {
        cases: cases(default),
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        rng_seed: seed(),
        ..Config::default()
    }
}

/// The job path used for relative globs and `lines`: the example folder, so they can match.
fn job_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/fuzz.toml")
}

fn check(text: &str) {
    let opts = LoadOptions { kinds: vec!["custom".into()], ..Default::default() };
    check_with(text, &opts);
}

fn check_with(text: &str, opts: &LoadOptions) {
    match load_str(&job_path(), text, opts) {
        Ok(job) => {
            let plan = Plan::new(&job);
            let len = plan.len();
            assert!(len >= 1, "an accepted job has submissions");
            for (i, s) in plan.clone().take(20).enumerate() {
                assert_eq!(s.index, i as u64);
                assert_eq!(s.args.len(), job.args.names.len());
                assert_eq!(s.key.len(), 32);
            }
            let mut last = plan.clone();
            last.skip_to(len - 1);
            assert_eq!(last.next().map(|s| s.index), Some(len - 1));
            assert!(last.next().is_none());
            assert!(!job.sinks.is_empty());
        }
        Err(e) => {
            assert!(!e.problems.is_empty());
            for p in &e.problems {
                if let Some(src) = &p.source {
                    let len = src.inner().len();
                    for l in &p.labels {
                        assert!(
                            l.offset() + l.len() <= len,
                            "label {l:?} outside {len} bytes: {}",
                            p.message
                        );
                    }
                }
            }
            let out = render_with(&e, Style::Plain);
            assert!(out.contains("invalid job file"));
        }
    }
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(2),
            Just(5),
            Just(i64::MAX),
            Just(i64::MIN)
        ]
        .prop_map(|i| i.to_string()),
        Just("99999999999999999999".to_string()),
        any::<f64>().prop_map(|f| if f.is_finite() { format!("{f:?}") } else { "nan".into() }),
        prop_oneof![
            Just("inf"),
            Just("-inf"),
            Just("nan"),
            Just("0.1"),
            Just("-0.5"),
            Just("1e300")
        ]
        .prop_map(String::from),
        Just("true".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        "[a-z{} 0-9._*/\\\\-]{0,12}".prop_map(|s| format!("{s:?}")),
        prop_oneof![
            Just("\"30s\""),
            Just("\"0s\""),
            Just("\"1h 5m\""),
            Just("\"auto\""),
            Just("\"stdout\""),
            Just("\"{x}\""),
            Just("\"{ 0 }\""),
            Just("\"{0}\""),
            Just("\"{{\""),
            Just("\"}\""),
            Just("\"zip\""),
            Just("\"product\""),
            Just("\"csv\""),
            Just("\"text\""),
            Just("\"data/*.csv\""),
            Just("\"data/names.txt\""),
            Just("\"{value} {args.x}\""),
        ]
        .prop_map(String::from),
    ]
}

fn value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((key(), inner), 0..3).prop_map(|v| {
                let items: Vec<String> = v.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", items.join(", "))
            }),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    use jobpool::spec::keys;
    // Every key the format knows (from the same lists the validator uses), a few
    // argument names, then made-up and quoted keys.
    let mut known: Vec<&'static str> = [
        keys::TOP,
        keys::TASK_COMMAND,
        keys::TASK_SCRIPT,
        keys::SINK,
        keys::SLURM,
        keys::ARGS_RESERVED,
        keys::PARAM,
        &["x", "y"],
    ]
    .concat();
    known.sort_unstable();
    known.dedup();
    prop_oneof![
        prop::sample::select(known).prop_map(String::from),
        "[a-z][a-z_-]{0,6}",
        Just("\"a b\"".to_string()),
    ]
}

fn param() -> impl Strategy<Value = String> {
    let num = prop_oneof![
        (-20i64..20).prop_map(|i| i.to_string()),
        (-20.0f64..20.0).prop_map(|f| format!("{f:?}")),
        Just("9223372036854775807".to_string()),
        Just("-9223372036854775808".to_string()),
    ];
    prop_oneof![
        (num.clone(), num.clone()).prop_map(|(a, b)| format!("{{ range = [{a}, {b}] }}")),
        (num.clone(), num.clone(), num)
            .prop_map(|(a, b, s)| format!("{{ range = [{a}, {b}], step = {s} }}")),
        prop::collection::vec(scalar(), 0..5).prop_map(|v| format!("[{}]", v.join(", "))),
        Just("{ glob = \"data/*.csv\" }".to_string()),
        Just("{ glob = \"nothing/*\" }".to_string()),
        Just("{ lines = \"data/names.txt\" }".to_string()),
        value().prop_map(|v| format!("{{ value = {v} }}")),
        scalar(),
        value(),
    ]
}

fn task() -> impl Strategy<Value = String> {
    let tpl = prop::sample::select(vec![
        "{a}", "{b}", "{0}", "{1}", "{5}", "x", "{{lit}}", "{ a }", "{", "{c}",
    ]);
    prop_oneof![
        prop::collection::vec(tpl.clone(), 1..4).prop_map(|v| {
            let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
            format!("[task]\nkind = \"command\"\nprogram = [\"echo\", {}]\n", items.join(", "))
        }),
        tpl.clone().prop_map(|t| format!(
            "[task]\nkind = \"command\"\nshell = \"echo {t}\"\nenv = {{ A = \"{t}\" }}\n"
        )),
        Just("[task]\nkind = \"script\"\nscript = \"a + b\"\n".to_string()),
        Just("[task]\nkind = \"custom\"\n".to_string()),
        (key(), value()).prop_map(|(k, v)| format!("[task]\nkind = \"command\"\n{k} = {v}\n")),
        Just(String::new()),
    ]
}

fn valid_top() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "workers = 4",
        "workers = \"auto\"",
        "timeout = \"30s\"",
        "task-timeout = \"1h 5m\"",
        "grace-period = \"250ms\"",
        "retries = 2",
        "order = \"completion\"",
        "chunk-size = 8",
        "chunk-size = \"auto\"",
        "backend = \"threads\"",
        "name = \"fuzz\"",
        "max-tasks-per-worker = 0",
        "watch = [\"data/*.csv\"]",
        "on-failure = \"stop\"",
        "description = \"d\"",
    ])
    .prop_map(String::from)
}

fn valid_param() -> impl Strategy<Value = String> {
    prop_oneof![
        (-50i64..50, 1i64..40).prop_map(|(a, n)| format!("{{ range = [{a}, {}] }}", a + n)),
        (-50i64..50, 1i64..40, 1i64..5)
            .prop_map(|(a, n, s)| format!("{{ range = [{a}, {}], step = {s} }}", a + n)),
        (-50i64..50, 1i64..40, 1i64..5)
            .prop_map(|(a, n, s)| format!("{{ range = [{}, {a}], step = -{s} }}", a + n)),
        (-5.0f64..5.0, 0.1f64..3.0, 0.05f64..1.0)
            .prop_map(|(a, n, s)| format!("{{ range = [{a:?}, {:?}], step = {s:?} }}", a + n)),
        prop::collection::vec(scalar(), 1..5).prop_map(|v| format!("[{}]", v.join(", "))),
        Just("{ glob = \"data/*.csv\" }".to_string()),
        Just("{ lines = \"data/names.txt\" }".to_string()),
        value().prop_map(|v| format!("{{ value = {v} }}")),
    ]
}

fn valid_task() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[task]\nkind = \"script\"\nscript = \"1\"\n".to_string()),
        Just(
            "[task]\nkind = \"command\"\nprogram = [\"echo\", \"{{x}}\"]\noutput = \"json\"\n"
                .to_string()
        ),
        Just(
            "[task]\nkind = \"command\"\nshell = \"echo hi\"\nsuccess-codes = [0, 1]\n".to_string()
        ),
        Just("[task]\nkind = \"script\"\nfile = \"tasks/power.rhai\"\n".to_string()),
    ]
}

fn document() -> impl Strategy<Value = String> {
    let top = prop_oneof![9 => valid_top(), 1 => (key(), value()).prop_map(|(k, v)| format!("{k} = {v}"))];
    let task = prop_oneof![3 => valid_task(), 1 => task()];
    let param = prop_oneof![4 => valid_param(), 1 => param()];
    let sink = prop_oneof![
        4 => prop::sample::select(vec![
            "[[sink]]\nto = \"stdout\"\n",
            "[[sink]]\nto = \"out/{name}-{run}.csv\"\nformat = \"csv\"\n",
            "[[sink]]\nto = \"stdout\"\ntemplate = \"{index}: {value} {status}\"\n",
            "[[sink]]\nto = \"x.jsonl\"\nformat = \"jsonl\"\n",
        ]).prop_map(String::from),
        1 => (prop::sample::select(vec!["\"stdout\"", "\"out/{name}.csv\"", "\"{nope}\""]), prop::option::of(prop::sample::select(vec!["text", "csv", "jsonl", "xml"])), prop::option::of(prop::sample::select(vec!["{value}", "{a} {status}", "{args.b}", "{zzz}"])))
            .prop_map(|(to, format, template)| {
                let mut s = format!("[[sink]]\nto = {to}\n");
                if let Some(f) = format {
                    s.push_str(&format!("format = \"{f}\"\n"));
                }
                if let Some(t) = template {
                    s.push_str(&format!("template = \"{t}\"\n"));
                }
                s
            }),
    ];
    (
        prop::collection::vec(top, 0..4),
        task,
        prop::option::of(
            prop_oneof![3 => Just("product"), 3 => Just("zip"), 1 => Just("cartesian")],
        ),
        prop::sample::subsequence(vec!["a", "b", "c", "d"], 0..=4),
        prop::collection::vec(param, 4),
        prop::collection::vec(sink, 0..3),
        prop_oneof![9 => Just(false), 1 => Just(true)],
    )
        .prop_map(|(top, task, combine, names, params, sinks, array_args)| {
            let mut doc = String::new();
            let mut seen = std::collections::HashSet::new();
            for line in top {
                // A key twice is a syntax error; keep most documents past the parser.
                let k = line.split('=').next().unwrap_or("").trim().to_string();
                if seen.insert(k) {
                    doc.push_str(&line);
                    doc.push('\n');
                }
            }
            doc.push_str(&task);
            if !names.is_empty() || combine.is_some() {
                doc.push_str(if array_args { "[[args]]\n" } else { "[args]\n" });
                if let Some(c) = combine {
                    doc.push_str(&format!("combine = \"{c}\"\n"));
                }
                for (k, v) in names.iter().zip(params) {
                    doc.push_str(&format!("{k} = {v}\n"));
                }
            }
            for s in sinks {
                doc.push_str(&s);
            }
            doc
        })
}

fn seeds() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["jobs", "tests/fixtures", "tests/fixtures/invalid"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        out.extend(files.iter().map(|p| std::fs::read_to_string(p).unwrap()));
    }
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, String),
    DupLine(usize),
    SwapLines(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let piece = prop_oneof![
        "[\\[\\]{}=\",.#\\n a-z0-9_-]{1,6}",
        prop::sample::select(vec![
            "[[args]]\n",
            "[args]\n",
            "[sink]\n",
            "\"",
            "{",
            "}",
            "=",
            "\n",
            "-1",
            "0",
            "nan",
            "\"{x}\"",
            "1e400",
            "\u{00e9}"
        ])
        .prop_map(String::from),
    ];
    prop_oneof![
        (any::<usize>(), 1usize..8).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), piece).prop_map(|(a, s)| Mutation::Insert(a, s)),
        any::<usize>().prop_map(Mutation::DupLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn floor_char(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn mutate(text: &str, muts: &[Mutation]) -> String {
    let mut s = text.to_string();
    for m in muts {
        match m {
            Mutation::Delete(at, n) => {
                let a = floor_char(&s, at % (s.len() + 1));
                let b = floor_char(&s, a + n);
                s.replace_range(a..b, "");
            }
            Mutation::Insert(at, piece) => {
                let a = floor_char(&s, at % (s.len() + 1));
                s.insert_str(a, piece);
            }
            Mutation::DupLine(i) | Mutation::SwapLines(i, _) | Mutation::Truncate(i)
                if s.is_empty() =>
            {
                let _ = i;
            }
            Mutation::DupLine(i) => {
                let mut lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let l = lines[i % lines.len()];
                    lines.insert(i % lines.len(), l);
                    s = lines.join("\n");
                }
            }
            Mutation::SwapLines(i, j) => {
                let mut lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let n = lines.len();
                    lines.swap(i % n, j % n);
                    s = lines.join("\n");
                }
            }
            Mutation::Truncate(i) => {
                let a = floor_char(&s, i % (s.len() + 1));
                s.truncate(a);
            }
        }
    }
    s
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn generated_documents_never_panic(doc in document()) {
        check(&doc);
    }

    #[test]
    fn mutated_real_files_never_panic(seed in any::<prop::sample::Index>(), muts in prop::collection::vec(mutation(), 1..4)) {
        let seeds = seeds();
        let text = seed.get(&seeds);
        check(&mutate(text, &muts));
    }

    #[test]
    fn arbitrary_overrides_never_panic(key in "[a-z.-]{0,12}", value in "[ -~]{0,12}") {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/sweep.toml")).unwrap();
        let opts = LoadOptions { overrides: vec![format!("{key}={value}"), key.clone()], ..Default::default() };
        check_with(&text, &opts);
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut runner = proptest::test_runner::TestRunner::new(config(300));
    runner
        .run(&"\\PC{0,200}", |s| {
            check(&s);
            Ok(())
        })
        .unwrap();
}

#[test]
fn generated_documents_reach_the_planner() {
    // The generator must not only produce rejects: count how many are accepted.
    use std::sync::atomic::{AtomicUsize, Ordering};
    let ok = AtomicUsize::new(0);
    let total = 300;
    let mut runner = proptest::test_runner::TestRunner::new(Config {
        cases: total,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        rng_seed: seed(),
        ..Config::default()
    });
    runner
        .run(&document(), |doc| {
            if load_str(&job_path(), &doc, &LoadOptions::default()).is_ok() {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap();
    let ok = ok.into_inner();
    assert!(ok >= total as usize / 10, "only {ok} of {total} generated documents were valid");
}
