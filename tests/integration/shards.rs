//! Shards for any engine: `jobpool run --shard I/N` by hand, in any order, some twice,
//! then `jobpool collect` equals the single-machine run.

use std::fs;
use std::process::Command;

use serde_json::Value;

use crate::run_support::*;

const JOB: &str = r#"
workers = 2
[task]
kind = "command"
program = ["sh", "-c", "echo $0 >> ran.log; test $0 != 7 && echo v$0", "{i}"]
[args]
i = { range = [0, 23] }
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#;

fn jp(job: &Job, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.args(args).arg(job.path("job.toml")).current_dir(job.dir.path()).env("NO_COLOR", "1");
    c.output().unwrap()
}

/// What must agree between runs: index, args, status, value.
fn essence(records: &[Value]) -> Vec<(u64, Value, String, Value)> {
    records
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["args"].clone(),
                r["status"].as_str().unwrap().into(),
                r["value"].clone(),
            )
        })
        .collect()
}

#[test]
fn shards_in_any_order_some_twice_collect_to_the_single_machine_run() {
    let single = Job::new(JOB);
    let out = jp(&single, &["run"]);
    assert_eq!(code(&out), 1, "index 7 fails: {}", stderr(&out));
    let expected = essence(&single.jsonl("out.jsonl"));
    assert_eq!(expected.len(), 23);

    let sharded = Job::new(JOB);
    for shard in ["3/4", "0/4", "3/4", "2/4", "1/4"] {
        let out = jp(&sharded, &["run", "--shard", shard]);
        assert!(code(&out) <= 1, "{shard}: {}", stderr(&out));
        assert!(!sharded.path("out.jsonl").exists(), "a shard writes no sinks");
        assert!(stderr(&out).contains("jobpool collect"), "{}", stderr(&out));
    }
    // Every shard of the run went into one folder, named alike by every shard.
    let runs: Vec<_> = fs::read_dir(sharded.path(".jobpool/runs/job")).unwrap().collect();
    assert_eq!(runs.len(), 1);
    let out = jp(&sharded, &["collect"]);
    assert_eq!(code(&out), 1, "index 7 failed: {}", stderr(&out));
    assert!(stderr(&out).contains("collected 23 of 23"), "{}", stderr(&out));
    assert_eq!(essence(&sharded.jsonl("out.jsonl")), expected);

    // The collected run is a run like any other: --resume reuses every ok record.
    fs::remove_file(sharded.path("ran.log")).unwrap();
    let out = jp(&sharded, &["run", "--resume"]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        fs::read_to_string(sharded.path("ran.log")).unwrap(),
        "7\n",
        "only the failure runs again"
    );
}

#[test]
fn collect_names_what_no_shard_has_recorded_yet() {
    let job = Job::new(JOB);
    for shard in ["0/3", "2/3"] {
        jp(&job, &["run", "--shard", shard]);
    }
    let out = jp(&job, &["collect"]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(err.contains("8 submissions have no record yet (index 7-14)"), "{err}");
    assert!(err.contains("jobpool run --resume --shard 1/3 "), "{err}");
    // What is there is written, in order.
    let got: Vec<u64> =
        job.jsonl("out.jsonl").iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(got, (0..7).chain(15..23).collect::<Vec<_>>());
    jp(&job, &["run", "--shard", "1/3"]);
    let out = jp(&job, &["collect"]);
    assert!(stderr(&out).contains("collected 23 of 23"), "{}", stderr(&out));
    assert_eq!(job.jsonl("out.jsonl").len(), 23);
}

#[test]
fn bad_shards_and_nothing_to_collect_are_usage_errors() {
    let job = Job::new(JOB);
    for bad in ["4/4", "1/0", "x"] {
        let out = jp(&job, &["run", "--shard", bad]);
        assert_eq!(code(&out), 2, "{bad}");
    }
    let out = jp(&job, &["collect"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("no run with shards"), "{}", stderr(&out));
}

const SLURM_JOB: &str = r#"
backend = "slurm"
[task]
kind = "command"
program = ["echo", "{i}"]
[args]
i = { range = [0, 4] }
[[sink]]
to = "out.jsonl"
format = "jsonl"
"#;

/// A shard of a `slurm` job (what each array element runs) uses the local pool: no Slurm
/// needed.
#[test]
fn a_shard_of_a_slurm_job_runs_on_the_local_pool() {
    let job = Job::new(SLURM_JOB);
    let out = jp(&job, &["run", "--shard", "0/1", "--run-id", "r1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = jp(&job, &["collect", "--run-id", "r1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(job.jsonl("out.jsonl").len(), 4);
}

/// Without `sbatch` on PATH, `backend = "slurm"` says so and what to do instead.
#[test]
fn slurm_without_sbatch_is_a_clear_error() {
    let job = Job::new(SLURM_JOB);
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["run"])
        .arg(job.path("job.toml"))
        .current_dir(job.dir.path())
        .env("NO_COLOR", "1")
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("`sbatch` not found on PATH"), "{err}");
    assert!(err.contains("--shard"), "the help names the alternative: {err}");
}

/// A folder with stand-ins for `sbatch` (prints a job id) and `squeue`, to put first on
/// PATH: `--detach` then submits without a cluster.
fn fake_slurm() -> tempfile::TempDir {
    fake_slurm_saying("exit 0")
}

/// Stand-ins for `sbatch` and `squeue`; `squeue` runs `squeue_body`.
fn fake_slurm_saying(squeue_body: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in [("sbatch", "echo 4242"), ("squeue", squeue_body)] {
        let p = dir.path().join(name);
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn with_path(fake: &tempfile::TempDir) -> String {
    format!("{}:{}", fake.path().display(), std::env::var("PATH").unwrap_or_default())
}

/// The array elements, run by hand at the same time (no Slurm needed): they claim the
/// chunks between them, each chunk runs once, and `collect` equals the single-machine
/// run.
#[test]
fn array_elements_claim_every_chunk_once() {
    let single = Job::new(JOB);
    let out = jp(&single, &["run"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let expected = essence(&single.jsonl("out.jsonl"));

    let job = Job::new(&format!("backend = \"slurm\"\n{JOB}\n[slurm]\nper-element = 8\n"));
    let fake = fake_slurm();
    let out = Command::new(BIN)
        .args(["run", "--detach"])
        .arg(job.path("job.toml"))
        .current_dir(job.dir.path())
        .env("PATH", with_path(&fake))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run_id = stdout(&out).trim().to_string();
    let slurm = job.path(&format!(".jobpool/runs/job/{run_id}/slurm"));
    let sub: Value =
        serde_json::from_str(&fs::read_to_string(slurm.join("submission.json")).unwrap()).unwrap();
    assert_eq!(sub["job_id"], "4242");
    assert_eq!((sub["elements"].as_u64(), sub["layout"]["chunks"].as_u64()), (Some(3), Some(12)));
    let elements: Vec<_> = (0..3)
        .map(|e| {
            Command::new("sh")
                .arg(slurm.join("element.sh"))
                .current_dir(job.dir.path())
                .env("SLURM_ARRAY_TASK_ID", e.to_string())
                .env("SLURM_ARRAY_JOB_ID", "4242")
                .env("SLURM_CPUS_PER_TASK", "1")
                .env("NO_COLOR", "1")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<i32> = elements.into_iter().map(|c| code(&wait_output(c))).collect();
    assert!(codes.iter().all(|c| *c <= 1), "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 1).count(), 1, "index 7 fails in one: {codes:?}");
    let mut ran: Vec<u64> = fs::read_to_string(job.path("ran.log"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    ran.sort();
    assert_eq!(ran, (0..23).collect::<Vec<_>>(), "every submission ran once");
    let mut owners = std::collections::BTreeSet::new();
    for c in 0..12 {
        let text = fs::read_to_string(slurm.join(format!("claims/chunk-{c:06}"))).unwrap();
        let note: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(note["job_id"], "4242");
        owners.insert(note["element"].as_u64().unwrap());
    }
    assert!(owners.iter().all(|e| *e < 3), "{owners:?}");
    let out = jp(&job, &["collect", "--run-id", &run_id]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(essence(&job.jsonl("out.jsonl")), expected);

    // While another process follows the run, `--attach` is refused (it would write
    // the same journal and sinks).
    let lock = fs::File::create(slurm.join("follower.lock")).unwrap();
    lock.try_lock().unwrap();
    let out = jp(&job, &["run", "--attach", &run_id]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("is already followed by another jobpool"), "{}", stderr(&out));
    drop(lock);

    // An element that cannot read its submission says so.
    let out = jp(&job, &["run", "--slurm-element", "/nonexistent/slurm"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot read the submission"), "{}", stderr(&out));
}

/// `--attach` of a run that does not exist, or was not submitted to Slurm, and
/// `--detach` of a job that does not run on Slurm: clear usage errors.
#[test]
fn attach_and_detach_errors() {
    let job = Job::new(SLURM_JOB);
    let out = jp(&job, &["run", "--attach", "no-such-run"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("job has no run no-such-run"), "{}", stderr(&out));
    assert!(stderr(&out).contains("jobpool runs"), "{}", stderr(&out));

    let out = jp(&job, &["run", "--shard", "0/1", "--run-id", "r1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = jp(&job, &["run", "--attach", "r1"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("run r1 of job was not submitted to Slurm"), "{}", stderr(&out));

    // A submission sbatch refused: attaching says so.
    let fake = fake_slurm_saying("exit 0");
    fs::write(fake.path().join("sbatch"), "#!/bin/sh\necho 'sbatch: error: no' >&2; exit 1\n")
        .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--run-id", "r2"])
        .arg(job.path("job.toml"))
        .env("PATH", with_path(&fake))
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("sbatch refused the submission"), "{}", stderr(&out));
    let out = jp(&job, &["run", "--attach", "r2"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("run r2 of job was never submitted"), "{}", stderr(&out));

    let local = Job::new(JOB);
    for flag in [&["--detach"][..], &["--attach", "r1"]] {
        let out = jp(&local, &[&["run"], flag].concat());
        assert_eq!(code(&out), 2, "{flag:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("is for jobs with backend = \"slurm\""), "{}", stderr(&out));
    }
}

/// An element whose job file was edited after the submission (a different plan) runs
/// nothing and says why; the follower gives that reason to every submission.
#[test]
fn an_element_refuses_an_edited_job() {
    let toml = format!("backend = \"slurm\"\n{JOB}\n[slurm]\nper-element = 8\n");
    let job = Job::new(&toml);
    // Every element has ended FAILED, says this `squeue`.
    let fake = fake_slurm_saying(
        "printf '4242_0|FAILED|None\\n4242_1|FAILED|None\\n4242_2|FAILED|None\\n'",
    );
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .arg(job.path("job.toml"))
            .current_dir(job.dir.path())
            .env("PATH", with_path(&fake))
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = run(&["run", "--detach"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run_id = stdout(&out).trim().to_string();
    let slurm = job.path(&format!(".jobpool/runs/job/{run_id}/slurm"));

    // The same number of submissions, other arguments.
    job.write("job.toml", &toml.replace("range = [0, 23]", "range = [1, 24]"));
    let out = Command::new("sh")
        .arg(slurm.join("element.sh"))
        .current_dir(job.dir.path())
        .env("SLURM_ARRAY_TASK_ID", "0")
        .env("SLURM_ARRAY_JOB_ID", "4242")
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("refused to run"), "{}", stderr(&out));
    assert!(!job.path("ran.log").exists(), "nothing ran");
    let out = run(&["run", "--attach", &run_id]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("changed since run"), "{}", stderr(&out));

    job.write("job.toml", &toml);
    let out = run(&["run", "--attach", &run_id]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let records = job.jsonl("out.jsonl");
    assert_eq!(records.len(), 23);
    for r in &records {
        assert_eq!(r["status"], "crashed", "{r}");
        let error = r["error"].as_str().unwrap();
        assert!(error.contains("array element 0 refused to run"), "{error}");
        assert!(error.contains("changed after run"), "{error}");
    }
}

#[test]
fn a_shard_run_again_after_a_torn_journal_line_keeps_every_record_readable() {
    // Found by the chaos runner (issue 13): the next run of the shard appended its first
    // record to the torn line, which made that record unreadable: an `ok` lost, its
    // task run again by the next --resume.
    let job = Job::new(JOB);
    let out = jp(&job, &["run", "--shard", "0/2", "--run-id", "r"]);
    assert_eq!(code(&out), 1, "index 7 fails: {}", stderr(&out));
    let journal = job.path(".jobpool/runs/job/r/shard-0000-of-0002.jsonl");
    let text = fs::read(&journal).unwrap();
    assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 11);
    // Cut the last record in the middle, as a full disk or a kill mid-write leaves it.
    let last_start = text[..text.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    fs::write(&journal, &text[..last_start + 20]).unwrap();
    let out = jp(&job, &["run", "--resume", "--shard", "0/2", "--run-id", "r"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    // Every line is a record but the torn one, which stays a line of its own.
    let text = fs::read_to_string(&journal).unwrap();
    let bad: Vec<&str> =
        text.lines().filter(|l| serde_json::from_str::<Value>(l).is_err()).collect();
    assert_eq!(bad.len(), 1, "only the torn line is unreadable: {bad:?}");
    assert_eq!(bad[0].len(), 20);
    jp(&job, &["run", "--shard", "1/2", "--run-id", "r"]);
    // The torn record's task (index 10) ran again (its first record was lost to the
    // tear); every other ok of shard 0 was reused.
    fs::remove_file(job.path("ran.log")).unwrap();
    let out = jp(&job, &["run", "--resume", "--shard", "0/2", "--run-id", "r"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(fs::read_to_string(job.path("ran.log")).unwrap(), "7\n", "only the failure");
    let out = jp(&job, &["collect", "--run-id", "r"]);
    assert!(stderr(&out).contains("collected 23 of 23"), "{}", stderr(&out));
    assert_eq!(job.jsonl("out.jsonl").len(), 23);
}
