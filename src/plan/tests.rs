//! Planner tables: every argument form, ordering, and keys.

use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::validate::{LoadOptions, load_str};

const TASK: &str = "[task]\nkind = \"script\"\nscript = \"1\"\n";

fn job(text: &str) -> Job {
    let text = if text.contains("[task]") {
        text.to_string()
    } else {
        // Top-level keys first, then [task], then the tables.
        let at = text.find('[').unwrap_or(text.len());
        format!("{}{TASK}{}", &text[..at], &text[at..])
    };
    match load_str(Path::new("t.toml"), &text, &LoadOptions::default()) {
        Ok(j) => j,
        Err(e) => panic!("{text}\n{e:?}"),
    }
}

fn args(text: &str) -> Vec<Vec<Value>> {
    Plan::new(&job(text)).map(|s| s.args).collect()
}

fn ints(rows: &[&[i64]]) -> Vec<Vec<Value>> {
    rows.iter().map(|r| r.iter().map(|v| json!(v)).collect()).collect()
}

#[test]
fn no_args_is_one_empty_submission() {
    let subs: Vec<Submission> = Plan::new(&job("")).collect();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].index, 0);
    assert!(subs[0].args.is_empty());
    assert_eq!(Plan::new(&job("[args]\n")).len(), 1);
}

#[test]
fn product_first_parameter_varies_slowest() {
    assert_eq!(
        args("[args]\na = [1, 2]\nb = [10, 20, 30]\n"),
        ints(&[&[1, 10], &[1, 20], &[1, 30], &[2, 10], &[2, 20], &[2, 30]])
    );
}

#[test]
fn zip_pairs_elementwise() {
    assert_eq!(
        args(
            "[args]\ncombine = \"zip\"\narg1 = { range = [0, 5] }\narg2 = { range = [0, 10], step = 2 }\narg3 = { range = [0, 15], step = 3 }\n"
        ),
        ints(&[&[0, 0, 0], &[1, 2, 3], &[2, 4, 6], &[3, 6, 9], &[4, 8, 12]])
    );
}

#[test]
fn constants_join_every_submission_in_declared_place() {
    let rows = args("[args]\na = [1, 2]\nk = \"c\"\nv = { value = [1, 2] }\nb = [3]\n");
    assert_eq!(
        rows,
        vec![
            vec![json!(1), json!("c"), json!([1, 2]), json!(3)],
            vec![json!(2), json!("c"), json!([1, 2]), json!(3)],
        ]
    );
    assert_eq!(args("[args]\nk = 5\n"), vec![vec![json!(5)]]);
}

#[test]
fn explicit_tuples() {
    let rows =
        args("[args]\nnames = [\"a\", \"b\"]\ntuples = [[0, \"x\"], [1, \"y\"]]\nk = true\n");
    assert_eq!(
        rows,
        vec![vec![json!(0), json!("x"), json!(true)], vec![json!(1), json!("y"), json!(true)],]
    );
}

#[test]
fn ranges() {
    let cases: &[(&str, Vec<Value>)] = &[
        ("{ range = [0, 3] }", vec![json!(0), json!(1), json!(2)]),
        ("{ range = [0, 10], step = 4 }", vec![json!(0), json!(4), json!(8)]),
        ("{ range = [5, 0], step = -2 }", vec![json!(5), json!(3), json!(1)]),
        ("{ range = [-2, 1] }", vec![json!(-2), json!(-1), json!(0)]),
        ("{ range = [0.0, 0.3], step = 0.1 }", vec![json!(0.0), json!(0.1), json!(0.2)]),
        ("{ range = [0, 1], step = 0.25 }", vec![json!(0.0), json!(0.25), json!(0.5), json!(0.75)]),
        ("{ range = [1.0, 0.0], step = -0.5 }", vec![json!(1.0), json!(0.5)]),
        ("{ range = [0, 2.5] }", vec![json!(0.0), json!(1.0), json!(2.0)]),
    ];
    for (spec, want) in cases {
        let got: Vec<Value> =
            args(&format!("[args]\nx = {spec}\n")).into_iter().map(|mut r| r.remove(0)).collect();
        assert_eq!(&got, want, "{spec}");
    }
}

#[test]
fn float_range_does_not_drift() {
    let plan = Plan::new(&job("[args]\nx = { range = [0, 100], step = 0.1 }\n"));
    assert_eq!(plan.len(), 1000);
    let last = plan.clone().last().unwrap().args[0].as_f64().unwrap();
    assert_eq!(last, 999.0 * 0.1);
}

#[test]
fn extreme_int_range_has_exact_length() {
    let plan =
        Plan::new(&job("[args]\nx = { range = [-9223372036854775808, 9223372036854775807] }\n"));
    assert_eq!(plan.len(), u64::MAX);
    let mut p = plan.clone();
    p.skip_to(u64::MAX - 1);
    assert_eq!(p.next().unwrap().args[0], json!(9223372036854775806i64));
    assert!(p.next().is_none());
}

#[test]
fn skip_nth_and_slice_are_consistent() {
    let j =
        job("[args]\na = { range = [0, 7] }\nb = [\"x\", \"y\", \"z\"]\nc = { range = [0, 5] }\n");
    let all: Vec<Submission> = Plan::new(&j).collect();
    assert_eq!(all.len(), 105);
    for (i, s) in all.iter().enumerate() {
        assert_eq!(s.index, i as u64);
    }
    let mut p = Plan::new(&j);
    p.skip_to(50);
    assert_eq!(p.next().unwrap(), all[50]);
    assert_eq!(Plan::new(&j).nth(77).unwrap(), all[77]);
    let slice: Vec<Submission> = Plan::new(&j).slice(10, 20).collect();
    assert_eq!(slice, all[10..20].to_vec());
    assert_eq!(Plan::new(&j).get(104).unwrap(), all[104]);
    assert!(Plan::new(&j).get(105).is_none());
}

#[test]
fn huge_plan_counts_without_expanding() {
    let j = job("[args]\na = { range = [0, 100000] }\nb = { range = [0, 100000] }\n");
    let mut p = Plan::new(&j);
    assert_eq!(p.len(), 10_000_000_000);
    p.skip_to(9_999_999_999);
    assert_eq!(p.next().unwrap().args, vec![json!(99999), json!(99999)]);
}

#[test]
fn keys_are_stable_and_content_based() {
    let base = "[args]\na = [1, 2]\nb = [\"x\"]\n";
    let k = |text: &str| -> Vec<(Vec<Value>, String)> {
        let j = job(text);
        let names = j.args.names.clone();
        Plan::new(&j)
            .map(|s| {
                let mut pairs: Vec<(String, Value)> = names.iter().cloned().zip(s.args).collect();
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                (pairs.into_iter().map(|p| p.1).collect(), s.key.to_string())
            })
            .collect()
    };
    let a = k(base);
    assert_eq!(a[0].1.len(), 32);
    assert_ne!(a[0].1, a[1].1);
    // Same run twice; pool options, order of values and of parameters do not matter.
    assert_eq!(a, k(base));
    let mut reordered = k("workers = 3\nretries = 2\n[args]\nb = [\"x\"]\na = [2, 1]\n");
    reordered.sort_by_key(|r| r.1.clone());
    let mut sorted = a.clone();
    sorted.sort_by_key(|r| r.1.clone());
    assert_eq!(sorted, reordered);
    // A different task or a different value changes the key.
    let other = k("[task]\nkind = \"script\"\nscript = \"2\"\n[args]\na = [1, 2]\nb = [\"x\"]\n");
    assert_ne!(a[0].1, other[0].1);
    assert_ne!(a[0].1, k("[args]\na = [1.0]\nb = [\"x\"]\n")[0].1);
    // The planner and `submission_key` agree.
    let j = job(base);
    let s = Plan::new(&j).next().unwrap();
    assert_eq!(s.key, submission_key(&task_key_prefix(&j), &j.args.names, &s.args));
}

#[test]
fn tricky_but_valid_files_plan_exactly() {
    const MAX: i64 = i64::MAX;
    const MIN: i64 = i64::MIN;
    // 64-bit edges: `start + i*step` must not overflow in between.
    assert_eq!(
        args(&format!("[args]\nx = {{ range = [{MIN}, {MAX}], step = {MAX} }}\n")),
        ints(&[&[MIN], &[-1], &[MAX - 1]])
    );
    assert_eq!(
        args(&format!("[args]\nx = {{ range = [{MAX}, {MIN}], step = {MIN} }}\n")),
        ints(&[&[MAX], &[-1]])
    );
    assert_eq!(
        args(&format!("[args]\nx = {{ range = [{}, {MAX}] }}\n", MAX - 2)),
        ints(&[&[MAX - 2], &[MAX - 1]])
    );
    // The end is excluded for the values actually computed.
    assert_eq!(
        args("[args]\nx = { range = [0, 0.3], step = 0.1 }\n"),
        vec![vec![json!(0.0)], vec![json!(0.1)], vec![json!(0.2)]]
    );
    assert_eq!(args("[args]\nx = { range = [0, 5], step = 10 }\n"), ints(&[&[0]]));
    // Constants keep their declared position between varying parameters.
    assert_eq!(
        args("[args]\na = [1, 2]\nc = \"k\"\nb = { range = [0, 2] }\n"),
        vec![
            vec![json!(1), json!("k"), json!(0)],
            vec![json!(1), json!("k"), json!(1)],
            vec![json!(2), json!("k"), json!(0)],
            vec![json!(2), json!("k"), json!(1)],
        ]
    );
    // A BOM, `#:schema`, CRLF line endings, dotted keys and a trailing comma in an inline
    // table are all fine.
    let text = "\u{feff}#:schema ../schemas/job.schema.json\r\ntask.kind = \"script\"\r\n\
                task.script = \"1\"\r\nargs.x = { range = [0, 2], }\r\n";
    let job = load_str(Path::new("t.toml"), text, &LoadOptions::default()).unwrap();
    let got: Vec<Vec<Value>> = Plan::new(&job).map(|s| s.args).collect();
    assert_eq!(got, ints(&[&[0], &[1]]));
}

#[test]
fn shards_cover_the_plan_exactly_once() {
    use super::Shard;
    for total in [0u64, 1, 5, 7, 100] {
        for count in 1..=6u64 {
            let mut next = 0;
            for index in 0..count {
                let r = Shard { index, count }.range(total);
                assert_eq!(r.start, next, "{total} {index}/{count}");
                assert!(r.end - r.start <= total / count + 1);
                next = r.end;
            }
            assert_eq!(next, total);
        }
    }
    assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
    for bad in ["4/4", "1/0", "x/2", "3", "-1/2"] {
        assert!(bad.parse::<Shard>().is_err(), "{bad}");
    }
}

#[test]
fn a_glob_match_key_covers_the_file_content() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "1").unwrap();
    std::fs::write(dir.path().join("b.txt"), "2").unwrap();
    let path = dir.path().join("j.toml");
    let text = format!("{TASK}[args]\nf = {{ glob = \"*.txt\" }}\nn = [1, 2]\n");
    let keys = || {
        let job = load_str(&path, &text, &LoadOptions::default()).unwrap();
        Plan::new(&job).map(|s| (s.args[0].clone(), s.key)).collect::<Vec<_>>()
    };
    let before = keys();
    assert_eq!(before.len(), 4);
    std::fs::write(dir.path().join("a.txt"), "changed").unwrap();
    let after = keys();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.0, a.0);
        // Only the submissions that take a.txt get new keys.
        assert_eq!(b.1 == a.1, b.0 == json!("b.txt"), "{b:?} {a:?}");
    }
    // Same content again: the same keys as at first.
    std::fs::write(dir.path().join("a.txt"), "1").unwrap();
    assert_eq!(keys(), before);
}

#[test]
fn keys_stay_the_same_across_versions() {
    // `--resume` and watch mode find earlier results by key: these values were made by
    // an earlier version of the planner and must never change (a change of the key's
    // definition needs a new prefix tag, `jobpool-key-v2`, and a word in the book).
    let text = "[task]\nkind = \"script\"\nscript = \"a\"\n[args]\na = { range = [0, 50] }\n\
                k = \"const\"\nb = { range = [0.0, 5.0], step = 0.5 }\nc = [\"x\", \"y\", \"z\"]\n";
    let mut plan = Plan::new(&job(text));
    for (i, key) in [
        (0, "a0c722a8749c32881a8c3b3b2c0e8b84"),
        (776, "d71cb3caffaa9aef36bc6bccb4396674"),
        (1499, "f0e02fdf2a87a2f69c9ebad2aa2bde19"),
    ] {
        assert_eq!(plan.get(i).unwrap().key, key, "submission {i}");
    }
    let text = "[task]\nkind = \"script\"\nscript = \"a\"\n[args]\n\
                tuples = [[1, \"a\"], [2, \"b\"], [3, \"c\"]]\nnames = [\"n\", \"s\"]\nz = true\n";
    let keys: Vec<String> = Plan::new(&job(text)).map(|s| s.key.to_string()).collect();
    assert_eq!(
        keys,
        [
            "5681f42a4fa37c87260c806fd451f6a7",
            "c478fdcf6b5093d053de2bf0d11997bc",
            "f611f0ebdd93ab18d9432fd917221899"
        ]
    );
}
