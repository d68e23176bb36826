//! The `command` task kind: run one program (or one `/bin/sh -c` line) for one submission.
//!
//! Owns: rendering a [`CommandTask`] for one submission ([`render`]), starting it in its
//! own process group, feeding stdin, collecting stdout and the stderr tail, enforcing the
//! timeout and cooperative stop (TERM, grace period, KILL to the whole group), and turning
//! the result into a [`CommandOutcome`]. Main entry point: [`run_command`].
//! Must not: know about the pool, records or sinks; print anything.
//!
//! Design: one thread does everything with `poll(2)` over the child's stdout, stderr,
//! (non-blocking) stdin and a pidfd (`pidfd_open(2)`, Linux 5.3+), so no helper threads
//! are started and the wait returns the moment the child exits. The poll wakes at least
//! every [`STOP_CHECK_INTERVAL`] to ask `should_stop`. Without pidfd support the loop
//! falls back to checking `waitid(WNOWAIT)` every few milliseconds.
//!
//! Starting: on x86-64 with [`process::spawn`] (what `posix_spawn` does, with fewer system
//! calls: see there), for a program given by its path or found on PATH before; otherwise
//! (a program the system must search for, a NUL byte in a string, another architecture)
//! with the standard library's `Command`. Both start it the same way: in its process
//! group, in its folder, with the null device or pipes as its standard streams.
//!
//! Process groups: the child is started in the group the caller gives (a process
//! worker's command group, created by the pool before the worker and held by it, so the
//! pool can always kill it), or else with `process_group(0)`, so that its pid is its
//! group id. The group is signalled, never only the child, so grandchildren go too. When
//! the child exits on its own, any process it left behind in its group is killed
//! (SIGKILL) before the child is reaped, so nothing outlives its task and the group id
//! cannot be reused in between. A process that leaves the group (`setsid`) is out of
//! reach.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::model::{CommandTask, Invocation, OutputMode, Template, TemplatePart, value_text};
use crate::process::{self, kill_group};
use crate::record::Status;
use crate::task::quote::shell_quote;

/// The conventional name of a signal number (kept here for callers of this module).
pub use crate::process::signal_name;

/// How often a running command asks `should_stop`.
pub const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// How long pipes are still drained after the command exited and its group was killed
/// (only a process that left the group can keep them open that long).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// Most bytes of stderr kept for the record.
pub const STDERR_TAIL_BYTES: usize = 4096;

/// Most lines of stderr kept for the record.
pub const STDERR_TAIL_LINES: usize = 20;

/// Bytes of stdout quoted in the message when `output = "json"` does not parse.
const JSON_ERROR_PREVIEW: usize = 80;

/// Everything needed to run one command task for one submission.
pub struct CommandRequest<'a> {
    /// The task definition.
    pub task: &'a CommandTask,
    /// The job file's folder: the default working folder, and what a relative `cwd` is
    /// resolved against. An empty path means the current folder.
    pub job_dir: &'a Path,
    /// Argument names, aligned with `args`.
    pub names: &'a [String],
    /// Argument values of this submission.
    pub args: &'a [Value],
    /// Per-task limit; `None` = no limit.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when the command is stopped.
    pub grace: Duration,
    /// Polled about every [`STOP_CHECK_INTERVAL`]; `true` stops the command (TERM, grace,
    /// KILL) and the outcome is [`CommandStatus::Cancelled`].
    pub should_stop: &'a dyn Fn() -> bool,
    /// The process group to start the command in; `None`: a new group of its own
    /// (`process_group(0)`, whose id is the child's pid).
    pub group: Option<i32>,
    /// Called with the process group id right after the command started.
    pub on_spawn: &'a mut dyn FnMut(i32),
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    /// Exited with a success code; `value` is set.
    Ok,
    /// Could not start, exited with another code, was killed by a signal, or its output
    /// did not parse.
    Error,
    /// Ran longer than the timeout and was stopped.
    Timeout,
    /// Stopped because `should_stop` returned `true`.
    Cancelled,
}

/// The result of [`run_command`].
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutcome {
    /// How it ended.
    pub status: CommandStatus,
    /// The value from stdout (only on [`CommandStatus::Ok`]).
    pub value: Option<Value>,
    /// What went wrong (on every other status).
    pub error: Option<String>,
    /// The exit code, when it exited normally.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// The last [`STDERR_TAIL_LINES`] lines / [`STDERR_TAIL_BYTES`] bytes of stderr, when
    /// it wrote any.
    pub stderr: Option<String>,
    /// User + system CPU time of the command and the descendants it waited for, in ms
    /// (from `wait4`'s rusage), when it was started and reaped.
    pub cpu_ms: Option<f64>,
    /// Peak resident memory of the command (or of the largest descendant it waited for),
    /// in KiB (rusage `ru_maxrss`), when it was started and reaped.
    pub max_rss_kb: Option<u64>,
}

impl CommandStatus {
    /// The record status this maps to.
    pub fn record_status(self) -> Status {
        match self {
            CommandStatus::Ok => Status::Ok,
            CommandStatus::Error => Status::Error,
            CommandStatus::Timeout => Status::Timeout,
            CommandStatus::Cancelled => Status::Cancelled,
        }
    }
}

impl CommandOutcome {
    fn failed(status: CommandStatus, error: String) -> Self {
        CommandOutcome {
            status,
            value: None,
            error: Some(error),
            exit_code: None,
            signal: None,
            stderr: None,
            cpu_ms: None,
            max_rss_kb: None,
        }
    }
}

/// A command rendered for one submission, before it is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedCommand {
    /// The argv (for `shell`: `["/bin/sh", "-c", LINE]`).
    pub argv: Vec<String>,
    /// The working folder, resolved against the job's folder.
    pub cwd: Option<PathBuf>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Bytes for stdin, when `stdin` is set.
    pub stdin: Option<String>,
}

/// Render `task` for one submission: substitute `{name}` and `{0}` placeholders (shell
/// lines quote every substituted value with [`shell_quote`]), resolve `cwd`.
pub fn render(
    task: &CommandTask,
    job_dir: &Path,
    names: &[String],
    args: &[Value],
) -> RenderedCommand {
    let lookup = |name: &str| lookup_arg(names, args, name);
    let plain = |t: &Template| t.render(lookup);
    let argv = match &task.invocation {
        Invocation::Program(parts) => parts.iter().map(plain).collect(),
        Invocation::Shell(line) => {
            vec!["/bin/sh".to_string(), "-c".to_string(), line.render_with(lookup, shell_quote)]
        }
    };
    let cwd = match &task.cwd {
        Some(t) => {
            let dir = PathBuf::from(plain(t));
            // Loading a job resolves a `cwd` that starts with literal text against the
            // job's folder already (see `CommandTask::cwd`): joining it again would name
            // `jobs/jobs/...` for a job file given as `jobs/x.toml`.
            let resolved = matches!(t.parts.first(), Some(TemplatePart::Literal(_)))
                && !job_dir.as_os_str().is_empty()
                && dir.starts_with(job_dir);
            Some(if resolved { dir } else { join_dir(job_dir, &dir) })
        }
        None if job_dir.as_os_str().is_empty() => None,
        None => Some(job_dir.to_path_buf()),
    };
    let env = task.env.iter().map(|(k, t)| (k.clone(), plain(t))).collect();
    let stdin = task.stdin.as_ref().map(plain);
    RenderedCommand { argv, cwd, env, stdin }
}

fn join_dir(job_dir: &Path, dir: &Path) -> PathBuf {
    if job_dir.as_os_str().is_empty() { dir.to_path_buf() } else { job_dir.join(dir) }
}

/// A placeholder's text: an argument by name, or by position (`{0}`).
fn lookup_arg(names: &[String], args: &[Value], name: &str) -> Option<String> {
    let index = match names.iter().position(|n| n == name) {
        Some(i) => i,
        None => name.parse::<usize>().ok()?,
    };
    args.get(index).map(value_text)
}

/// Run one command to completion (or timeout, or stop) and describe how it ended.
///
/// Never panics on a misbehaving child and never leaves a process of the command's group
/// running: see the module docs.
pub fn run_command(req: CommandRequest<'_>) -> CommandOutcome {
    run_command_with(req, true)
}

/// [`run_command`], optionally without pidfd (to exercise the fallback in tests).
fn run_command_with(req: CommandRequest<'_>, use_pidfd: bool) -> CommandOutcome {
    if (req.should_stop)() {
        return CommandOutcome::failed(CommandStatus::Cancelled, "cancelled".to_string());
    }
    let rendered = render(req.task, req.job_dir, req.names, req.args);
    let Some(program) = rendered.argv.first().filter(|p| !p.is_empty()) else {
        return CommandOutcome::failed(CommandStatus::Error, "the program is empty".to_string());
    };
    // A program found on PATH before (and PATH not set by the task) starts from its path:
    // the search would try `execve` in every PATH folder before it, each time.
    let found =
        if rendered.env.iter().any(|(k, _)| k == "PATH") { None } else { program_on_path(program) };
    // Where it runs (a worker may have moved since its first command: see `enter_dir`).
    let cwd = rendered.cwd.as_deref().map(from_first_dir);
    let in_cwd = enter_dir(cwd.as_deref());
    let mut how = Launch {
        rendered: &rendered,
        path: found.as_deref(),
        dir: cwd.as_deref().filter(|_| !in_cwd),
        stdin_data: rendered.stdin.is_some(),
        output: req.task.output,
        group: req.group,
    };
    let started = match start(&how) {
        // The program found earlier is gone (or changed): search PATH again, as if it had
        // never been found.
        Err(_) if found.is_some() => {
            forget_program(program);
            how.path = None;
            start(&how)
        }
        r => r,
    };
    let mut started = match started {
        Ok(s) => s,
        Err(err) => {
            return CommandOutcome::failed(
                CommandStatus::Error,
                spawn_error(program, &rendered, cwd.as_deref(), &err),
            );
        }
    };
    let pid = started.pid;
    let pgid = started.group.unwrap_or(pid as i32);
    (req.on_spawn)(pgid);

    let begun = Instant::now();
    let deadline = req.timeout.and_then(|t| begun.checked_add(t));
    let mut io = ChildIo::new(&mut started, rendered.stdin.map(String::into_bytes), use_pidfd);
    let stop = io.run(pgid, deadline, req.grace, req.should_stop);
    let (status, usage) = process::reap_pid_with_usage(pid);
    let mut outcome = finish(req.task, req.timeout, stop, status, io);
    if let Some(u) = usage {
        outcome.cpu_ms = Some(u.cpu_ms);
        outcome.max_rss_kb = Some(u.max_rss_kb);
    }
    outcome
}

/// A started command: its pid, the group it joined (`None`: a group of its own, whose id
/// is its pid) and our ends of its pipes.
struct Started {
    pid: u32,
    group: Option<i32>,
    stdin: Option<File>,
    stdout: Option<File>,
    stderr: Option<File>,
}

/// How to start a rendered command: from `path` (`None`: the program by its name,
/// searched on PATH by the system), in `dir` (`None`: this process's folder), in `group`
/// (`None`: a new one), with its stdin a pipe when `stdin_data`, else the null device;
/// its stdout a pipe, or the null device for `output = "none"`; its stderr a pipe.
#[derive(Clone, Copy)]
struct Launch<'a> {
    rendered: &'a RenderedCommand,
    path: Option<&'a Path>,
    dir: Option<&'a Path>,
    stdin_data: bool,
    output: OutputMode,
    group: Option<i32>,
}

/// Start a command as `how` says.
fn start(how: &Launch<'_>) -> io::Result<Started> {
    #[cfg(target_arch = "x86_64")]
    if let Some(started) = start_fast(how) {
        return started;
    }
    let Launch { rendered, path, dir, stdin_data, output, group } = *how;
    let program = &rendered.argv[0];
    let mut cmd = match path {
        Some(path) => {
            let mut cmd = Command::new(path);
            cmd.arg0(program);
            cmd
        }
        None => Command::new(program),
    };
    cmd.args(&rendered.argv[1..]).process_group(group.unwrap_or(0)).stderr(Stdio::piped());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    for (k, v) in &rendered.env {
        cmd.env(k, v);
    }
    cmd.stdin(if stdin_data { Stdio::piped() } else { null_stdin() });
    cmd.stdout(if output == OutputMode::None { null_output() } else { Stdio::piped() });
    let (mut child, group) = match cmd.spawn() {
        // The caller's group is gone (its leader was reaped by someone else, e.g. a
        // program that reaps every child): a group of its own, reported to `on_spawn`.
        Err(e) if group.is_some() && e.raw_os_error() == Some(libc::EPERM) => {
            (cmd.process_group(0).spawn()?, None)
        }
        r => (r?, group),
    };
    let file = |fd: Option<OwnedFd>| fd.map(File::from);
    Ok(Started {
        pid: child.id(),
        group,
        stdin: file(child.stdin.take().map(OwnedFd::from)),
        stdout: file(child.stdout.take().map(OwnedFd::from)),
        stderr: file(child.stderr.take().map(OwnedFd::from)),
    })
}

/// [`start`] with [`process::spawn`] (see there why); `None` where that does not apply:
/// a program to search on PATH (the system's search and its errors stay the standard
/// library's), or a NUL byte in a string (the standard library reports it).
#[cfg(target_arch = "x86_64")]
fn start_fast(how: &Launch<'_>) -> Option<io::Result<Started>> {
    let Launch { rendered, path, dir, stdin_data, output, group } = *how;
    use process::spawn::{Spawn, SpawnError, spawn};
    use std::ffi::CString;
    let c = |s: &[u8]| CString::new(s).ok();
    let program = &rendered.argv[0];
    let path = match path {
        Some(p) => c(p.as_os_str().as_bytes())?,
        None if program.contains('/') => c(program.as_bytes())?,
        None => return None,
    };
    let argv = rendered.argv.iter().map(|a| c(a.as_bytes())).collect::<Option<Vec<_>>>()?;
    let env = if rendered.env.is_empty() {
        None
    } else {
        let set = |k: &std::ffi::OsStr| rendered.env.iter().any(|(n, _)| k == n.as_str());
        let inherited = std::env::vars_os().filter(|(k, _)| !set(k));
        let given = rendered.env.iter().map(|(k, v)| (k.into(), v.into()));
        let pair = |(k, v): (std::ffi::OsString, std::ffi::OsString)| {
            c(&[k.as_bytes(), b"=", v.as_bytes()].concat())
        };
        Some(inherited.chain(given).map(pair).collect::<Option<Vec<_>>>()?)
    };
    let dir = match dir {
        Some(d) => Some(c(d.as_os_str().as_bytes())?),
        None => None,
    };
    let null = null_device()?;
    let (err_read, err_write) = match pipe() {
        Ok(p) => p,
        Err(e) => return Some(Err(e)),
    };
    let (out_read, out_write) = match output {
        OutputMode::None => (None, None),
        _ => match pipe() {
            Ok((r, w)) => (Some(r), Some(w)),
            Err(e) => return Some(Err(e)),
        },
    };
    let (in_write, in_read) = if stdin_data {
        match pipe() {
            Ok((r, w)) => (Some(w), Some(r)),
            Err(e) => return Some(Err(e)),
        }
    } else {
        (None, None)
    };
    let stdin_fd = match &in_read {
        Some(r) => Some(r.as_raw_fd()),
        // A process worker's own stdin is the null device already (see `null_stdin`).
        None if crate::pool::worker::is_process_worker() && is_null_device(libc::STDIN_FILENO) => {
            None
        }
        None => Some(null),
    };
    let stdout_fd = out_write.as_ref().map_or(null, |w| w.as_raw_fd());
    let mut spec = Spawn {
        path: &path,
        argv: &argv,
        env: env.as_deref(),
        dir: dir.as_deref(),
        group: group.unwrap_or(0),
        stdio: [stdin_fd, Some(stdout_fd), Some(err_write.as_raw_fd())],
    };
    let (pid, group) = match spawn(&spec) {
        Ok(pid) => (pid, group),
        // The caller's group is gone: a group of its own (as in `start`).
        Err(SpawnError::Group(e)) if group.is_some() && e.raw_os_error() == Some(libc::EPERM) => {
            spec.group = 0;
            match spawn(&spec) {
                Ok(pid) => (pid, None),
                Err(SpawnError::Group(e) | SpawnError::Other(e)) => return Some(Err(e)),
            }
        }
        Err(SpawnError::Group(e) | SpawnError::Other(e)) => return Some(Err(e)),
    };
    // Our copies of the child's ends go now, so that its exit closes the pipes.
    drop((err_write, out_write, in_read));
    Some(Ok(Started {
        pid: pid as u32,
        group,
        stdin: in_write.map(File::from),
        stdout: out_read.map(File::from),
        stderr: Some(File::from(err_read)),
    }))
}

/// A pipe (read end, write end), both close-on-exec.
#[cfg(target_arch = "x86_64")]
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The null device, opened once (read and write, close-on-exec) and kept: a command's
/// stdin or stdout is a copy the child makes (`dup2`) as it starts.
#[cfg(target_arch = "x86_64")]
fn null_device() -> Option<RawFd> {
    static NULL: OnceLock<Option<File>> = OnceLock::new();
    NULL.get_or_init(|| std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").ok())
        .as_ref()
        .map(|f| f.as_raw_fd())
}

/// Where `execvp` would find `program` on this process's `PATH`, looked up once per
/// process and remembered (a worker runs the same program thousands of times): the first
/// PATH folder holding an executable file of that name. `None` — start it by name, letting
/// the system search — when the name has a `/`, when a relative or empty PATH entry comes
/// before a match (it would depend on the command's working folder), or when nothing
/// matches (the system's search then gives the error).
fn program_on_path(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return None;
    }
    let mut cache = PROGRAMS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = cache.get(program) {
        return found.clone();
    }
    let found = search_path(program, std::env::var_os("PATH").as_deref());
    cache.insert(program.to_string(), found.clone());
    found
}

/// Forget what [`program_on_path`] found for `program`.
fn forget_program(program: &str) {
    PROGRAMS.lock().unwrap_or_else(|e| e.into_inner()).remove(program);
}

static PROGRAMS: std::sync::LazyLock<std::sync::Mutex<HashMap<String, Option<PathBuf>>>> =
    std::sync::LazyLock::new(Default::default);

/// [`program_on_path`]'s search over the folders of `path` (a `PATH` value).
fn search_path(program: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    for dir in std::env::split_paths(path?) {
        if !dir.is_absolute() {
            return None;
        }
        let candidate = dir.join(program);
        let Ok(c) = std::ffi::CString::new(candidate.as_os_str().as_bytes()) else {
            return None;
        };
        // SAFETY: access(2) reads a NUL-terminated path we own.
        let executable = unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0;
        if executable && candidate.metadata().is_ok_and(|m| m.is_file()) {
            return Some(candidate);
        }
    }
    None
}

/// `dir` as a command's folder: in a process worker, from the working folder it started
/// in (what a relative path meant before [`enter_dir`] moved it); elsewhere as it is,
/// from the process's working folder at the spawn, as the standard library takes it.
fn from_first_dir(dir: &Path) -> PathBuf {
    static FIRST: OnceLock<Option<PathBuf>> = OnceLock::new();
    if !crate::pool::worker::is_process_worker() {
        return dir.to_path_buf();
    }
    match FIRST.get_or_init(|| std::env::current_dir().ok()) {
        Some(first) if dir.is_relative() => first.join(dir),
        _ => dir.to_path_buf(),
    }
}

/// In a process worker, make `dir` (absolute; `None`: the folder it started in) this
/// process's working folder, so that a command starts there without `current_dir`;
/// whether it is there. Why: with `current_dir`, the standard library starts a program
/// with `fork` and `exec` instead of `posix_spawn` when it cannot look up glibc's
/// `posix_spawn_file_actions_addchdir_np`, as in a statically linked jobpool; a worker's
/// `fork` copies its page tables, and 2,000 × `true` took 17% longer (0.72 → 0.84 s).
/// Thread workers share the pool's process, whose working folder stays put: they keep
/// `current_dir`. A worker's commands all run in one folder, unless the task's `cwd`
/// names a different one per submission: it moves only when the folder changes.
fn enter_dir(dir: Option<&Path>) -> bool {
    static HERE: Mutex<Option<PathBuf>> = Mutex::new(None);
    if !crate::pool::worker::is_process_worker() {
        return false;
    }
    let target = match dir {
        Some(d) => d.to_path_buf(),
        None => from_first_dir(Path::new("")),
    };
    let mut here = HERE.lock().unwrap_or_else(|e| e.into_inner());
    if here.as_ref() == Some(&target) {
        return true;
    }
    // Until a move succeeds, `HERE` names no folder (a command given `current_dir`
    // does not care where this process is: its folder is absolute).
    *here = None;
    if std::env::set_current_dir(&target).is_err() {
        return false;
    }
    *here = Some(target);
    true
}

/// The null device as a command's stdin: in a process worker whose own stdin is the
/// null device (the pool starts them so; checked at every command, in case a task of
/// the program's own moved another file there), its own, inherited; elsewhere (the
/// pool's process, whose stdin is the user's) opened for the command. An inherited one
/// costs the spawn an `fstat` instead of an `open`, a `close` and a `dup2`.
fn null_stdin() -> Stdio {
    let inherit = crate::pool::worker::is_process_worker() && is_null_device(libc::STDIN_FILENO);
    if inherit { Stdio::inherit() } else { Stdio::null() }
}

/// The null device as a command's stdout (`output = "none"`): in a process worker, a
/// copy of one it opened once (`fcntl` instead of `open` walking a path, per command);
/// elsewhere, opened for the command.
fn null_output() -> Stdio {
    static NULL: OnceLock<Option<std::fs::File>> = OnceLock::new();
    if !crate::pool::worker::is_process_worker() {
        return Stdio::null();
    }
    let copy = NULL
        .get_or_init(|| std::fs::OpenOptions::new().write(true).open("/dev/null").ok())
        .as_ref()
        .and_then(|f| f.try_clone().ok());
    copy.map_or_else(Stdio::null, Stdio::from)
}

/// Whether `fd` is the null device (the character device `/dev/null` is, looked up once).
fn is_null_device(fd: RawFd) -> bool {
    use std::os::unix::fs::MetadataExt;
    static NULL: OnceLock<Option<u64>> = OnceLock::new();
    let Some(null) = *NULL.get_or_init(|| std::fs::metadata("/dev/null").ok().map(|m| m.rdev()))
    else {
        return false;
    };
    // SAFETY: fstat only writes into `st`; a closed `fd` gives an error.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let found = unsafe { libc::fstat(fd, &mut st) };
    found == 0 && st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == null
}

fn spawn_error(
    program: &str,
    rendered: &RenderedCommand,
    cwd: Option<&Path>,
    err: &io::Error,
) -> String {
    if let (Some(dir), Some(abs)) = (&rendered.cwd, cwd)
        && !abs.is_dir()
    {
        return format!(
            "cannot start {program:?}: working folder {:?} is not a folder",
            dir.display().to_string()
        );
    }
    format!("cannot start {program:?}: {}", os_message(err))
}

/// An io::Error's text without the ` (os error N)` suffix std adds.
fn os_message(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    }
}

/// Why the command was stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Timeout,
    Cancelled,
}

/// The child's pipes and exit notification, driven by one poll loop.
struct ChildIo {
    stdout: Option<File>,
    stderr: Option<File>,
    stdin: Option<File>,
    stdin_data: Vec<u8>,
    stdin_pos: usize,
    pidfd: Option<OwnedFd>,
    pid: u32,
    out: Vec<u8>,
    err: TailBuffer,
}

impl ChildIo {
    fn new(child: &mut Started, stdin_data: Option<Vec<u8>>, use_pidfd: bool) -> Self {
        let pid = child.pid;
        let mut io = ChildIo {
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            stdin: child.stdin.take(),
            stdin_data: stdin_data.unwrap_or_default(),
            stdin_pos: 0,
            pidfd: if use_pidfd { process::pidfd_open(pid) } else { None },
            pid,
            out: Vec::new(),
            err: TailBuffer::default(),
        };
        if let Some(stdin) = &io.stdin {
            // Non-blocking, so a child that does not read cannot block this thread; the
            // flag is on our end of the pipe only.
            set_nonblocking(stdin.as_raw_fd());
            io.write_stdin();
        }
        io
    }

    /// Write as much pending stdin as the pipe takes; close it when done or when the
    /// child stopped reading (EPIPE and other errors are not ours to report).
    fn write_stdin(&mut self) {
        let Some(stdin) = &mut self.stdin else { return };
        while self.stdin_pos < self.stdin_data.len() {
            match stdin.write(&self.stdin_data[self.stdin_pos..]) {
                Ok(0) => break,
                Ok(n) => self.stdin_pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.stdin = None;
    }

    /// Pump the pipes until the child has exited and its output is read (or can no longer
    /// be). Handles the deadline and `should_stop`. Returns why it stopped the child, if
    /// it did.
    fn run(
        &mut self,
        pgid: i32,
        deadline: Option<Instant>,
        grace: Duration,
        should_stop: &dyn Fn() -> bool,
    ) -> Option<StopReason> {
        let mut stop: Option<StopReason> = None;
        let mut kill_at: Option<Instant> = None;
        let mut exited = false;
        let mut drain_until: Option<Instant> = None;
        let mut buf = [0u8; 16 * 1024];
        loop {
            if exited && self.stdout.is_none() && self.stderr.is_none() {
                return stop;
            }
            let mut fds = [libc::pollfd { fd: -1, events: 0, revents: 0 }; 4];
            // Slots: 0 stdout, 1 stderr, 2 stdin, 3 pidfd; fd -1 entries are ignored by poll.
            if let Some(f) = &self.stdout {
                fds[0] = pollfd(f.as_raw_fd(), libc::POLLIN);
            }
            if let Some(f) = &self.stderr {
                fds[1] = pollfd(f.as_raw_fd(), libc::POLLIN);
            }
            if let Some(f) = &self.stdin {
                fds[2] = pollfd(f.as_raw_fd(), libc::POLLOUT);
            }
            if let (false, Some(f)) = (exited, &self.pidfd) {
                fds[3] = pollfd(f.as_raw_fd(), libc::POLLIN);
            }

            let now = Instant::now();
            let mut wake: Option<Instant> = None;
            let mut wake_at = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
            if !exited {
                if stop.is_none() {
                    wake_at(now + STOP_CHECK_INTERVAL);
                    if let Some(d) = deadline {
                        wake_at(d);
                    }
                }
                if let Some(k) = kill_at {
                    wake_at(k);
                }
                if self.pidfd.is_none() {
                    wake_at(now + Duration::from_millis(5));
                }
            }
            if let Some(d) = drain_until {
                wake_at(d);
            }
            let timeout_ms = match wake {
                None => -1,
                Some(w) => {
                    let ms = w.saturating_duration_since(now).as_micros().div_ceil(1000);
                    ms.min(i32::MAX as u128) as i32
                }
            };
            // SAFETY: `fds` is a valid array of 4 pollfd for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 4, timeout_ms) };
            if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                // Should not happen; avoid spinning if it does.
                std::thread::sleep(Duration::from_millis(1));
            }

            let ready = |i: usize| n > 0 && fds[i].revents != 0;
            if ready(0)
                && let Some(f) = &mut self.stdout
            {
                match read_once(f, &mut buf) {
                    ReadResult::Data(k) => self.out.extend_from_slice(&buf[..k]),
                    ReadResult::Nothing => {}
                    ReadResult::Closed => self.stdout = None,
                }
            }
            if ready(1)
                && let Some(f) = &mut self.stderr
            {
                match read_once(f, &mut buf) {
                    ReadResult::Data(k) => self.err.push(&buf[..k]),
                    ReadResult::Nothing => {}
                    ReadResult::Closed => self.stderr = None,
                }
            }
            if ready(2) {
                self.write_stdin();
            }
            if !exited && (ready(3) || (self.pidfd.is_none() && process::has_exited(self.pid))) {
                exited = true;
                // Leftovers of the group go now, while the zombie leader still holds the
                // group id (it is reaped only after this loop).
                kill_group(pgid, libc::SIGKILL);
                self.stdin = None;
                drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
            }

            let now = Instant::now();
            if !exited {
                if stop.is_none() {
                    let reason = if deadline.is_some_and(|d| now >= d) {
                        Some(StopReason::Timeout)
                    } else if should_stop() {
                        Some(StopReason::Cancelled)
                    } else {
                        None
                    };
                    if let Some(reason) = reason {
                        stop = Some(reason);
                        kill_group(pgid, libc::SIGTERM);
                        kill_at = Some(now + grace);
                    }
                }
                if kill_at.is_some_and(|k| now >= k) {
                    kill_group(pgid, libc::SIGKILL);
                    kill_at = None;
                }
            }
            if drain_until.is_some_and(|d| now >= d) {
                // Something outside the group holds the pipes open; stop waiting for it.
                self.stdout = None;
                self.stderr = None;
            }
        }
    }
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

/// What one read from a pipe gave.
enum ReadResult {
    Data(usize),
    Nothing,
    Closed,
}

/// One read. EOF and errors other than EINTR/EAGAIN close the pipe.
fn read_once(f: &mut impl Read, buf: &mut [u8]) -> ReadResult {
    loop {
        match f.read(buf) {
            Ok(0) => return ReadResult::Closed,
            Ok(n) => return ReadResult::Data(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadResult::Nothing,
            Err(_) => return ReadResult::Closed,
        }
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a file descriptor we own; failure leaves it blocking, which only
    // matters for a child that never reads stdin.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

/// Turn what happened into an outcome.
fn finish(
    task: &CommandTask,
    timeout: Option<Duration>,
    stop: Option<StopReason>,
    status: Option<ExitStatus>,
    io: ChildIo,
) -> CommandOutcome {
    let stderr = io.err.into_text();
    let exit_code = status.and_then(|s| s.code());
    let signal = status.and_then(|s| s.signal());
    let mut outcome = CommandOutcome {
        status: CommandStatus::Error,
        value: None,
        error: None,
        exit_code,
        signal,
        stderr,
        cpu_ms: None,
        max_rss_kb: None,
    };
    match stop {
        Some(StopReason::Timeout) => {
            outcome.status = CommandStatus::Timeout;
            let after =
                timeout.map(|t| humantime::format_duration(t).to_string()).unwrap_or_default();
            outcome.error = Some(format!("timed out after {after}"));
        }
        Some(StopReason::Cancelled) => {
            outcome.status = CommandStatus::Cancelled;
            outcome.error = Some("cancelled".to_string());
        }
        None => match (exit_code, signal) {
            (Some(code), _) if task.success_codes.contains(&code) => {
                match parse_output(task.output, io.out) {
                    Ok(value) => {
                        outcome.status = CommandStatus::Ok;
                        outcome.value = Some(value);
                    }
                    Err(message) => outcome.error = Some(message),
                }
            }
            (Some(code), _) => {
                outcome.error = Some(with_stderr_hint(format!("exit code {code}"), &outcome.stderr))
            }
            (None, Some(sig)) => {
                let text = format!(
                    "killed by signal {sig}{}",
                    signal_name(sig).map(|n| format!(" ({n})")).unwrap_or_default()
                );
                outcome.error = Some(with_stderr_hint(text, &outcome.stderr));
            }
            (None, None) => {
                outcome.error = Some("the command's exit status is unknown".to_string())
            }
        },
    }
    outcome
}

/// `exit code 3` -> `exit code 3: <last non-empty stderr line>`.
fn with_stderr_hint(message: String, stderr: &Option<String>) -> String {
    match stderr.as_deref().and_then(|s| s.lines().rev().map(str::trim).find(|l| !l.is_empty())) {
        Some(line) => format!("{message}: {line}"),
        None => message,
    }
}

/// Make the record's value from stdout.
pub fn parse_output(mode: OutputMode, stdout: Vec<u8>) -> Result<Value, String> {
    match mode {
        OutputMode::None => Ok(Value::Null),
        OutputMode::Text => Ok(Value::String(into_text(stdout).trim().to_string())),
        OutputMode::Lines => {
            let text = into_text(stdout);
            Ok(Value::Array(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| Value::String(l.to_string()))
                    .collect(),
            ))
        }
        OutputMode::Json => serde_json::from_slice(&stdout).map_err(|e| {
            let text = String::from_utf8_lossy(&stdout);
            let text = text.trim();
            let preview: String = text.chars().take(JSON_ERROR_PREVIEW).collect();
            let more = if preview.len() < text.len() { "..." } else { "" };
            if text.is_empty() {
                format!("output is not valid JSON ({e}): stdout is empty")
            } else {
                format!("output is not valid JSON ({e}); stdout starts with: {preview}{more}")
            }
        }),
    }
}

fn into_text(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Keeps the last bytes written to it, trimming in batches so pushes stay cheap.
#[derive(Default)]
struct TailBuffer {
    bytes: Vec<u8>,
    cut: bool,
}

impl TailBuffer {
    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > 2 * STDERR_TAIL_BYTES {
            let drop = self.bytes.len() - STDERR_TAIL_BYTES;
            self.bytes.drain(..drop);
            self.cut = true;
        }
    }

    /// The tail as valid UTF-8: at most [`STDERR_TAIL_BYTES`] bytes and
    /// [`STDERR_TAIL_LINES`] lines, never starting inside a character; `None` if empty.
    fn into_text(self) -> Option<String> {
        let mut bytes = &self.bytes[..];
        let mut cut = self.cut;
        if bytes.len() > STDERR_TAIL_BYTES {
            bytes = &bytes[bytes.len() - STDERR_TAIL_BYTES..];
            cut = true;
        }
        if cut {
            // Skip UTF-8 continuation bytes of a character split by the cut.
            let skip = bytes.iter().take(3).take_while(|b| (**b & 0xC0) == 0x80).count();
            bytes = &bytes[skip..];
        }
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches(['\n', '\r']);
        // Keep the last STDERR_TAIL_LINES lines.
        let start = text
            .char_indices()
            .rev()
            .filter(|(_, c)| *c == '\n')
            .nth(STDERR_TAIL_LINES - 1)
            .map_or(0, |(i, _)| i + 1);
        let text = &text[start..];
        if text.trim().is_empty() { None } else { Some(text.to_string()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines_and_bytes() {
        let mut t = TailBuffer::default();
        for i in 0..100 {
            t.push(format!("line {i}\n").as_bytes());
        }
        let text = t.into_text().unwrap();
        assert_eq!(text.lines().count(), STDERR_TAIL_LINES);
        assert!(text.starts_with("line 80\n"));
        assert!(text.ends_with("line 99"));

        let mut t = TailBuffer::default();
        let long = "é".repeat(5000); // 10 000 bytes, no newline
        t.push(long.as_bytes());
        let text = t.into_text().unwrap();
        assert!(text.len() <= STDERR_TAIL_BYTES);
        assert!(text.chars().all(|c| c == 'é'), "no broken character at the cut");
    }

    #[test]
    fn tail_of_nothing_is_none() {
        assert_eq!(TailBuffer::default().into_text(), None);
        let mut t = TailBuffer::default();
        t.push(b"\n\n");
        assert_eq!(t.into_text(), None);
    }

    #[test]
    fn output_modes() {
        assert_eq!(
            parse_output(OutputMode::Text, b"  hi there \n".to_vec()),
            Ok(Value::from("hi there"))
        );
        assert_eq!(parse_output(OutputMode::None, b"ignored".to_vec()), Ok(Value::Null));
        assert_eq!(
            parse_output(OutputMode::Lines, b"a\n\nb\r\n  \nc".to_vec()),
            Ok(serde_json::json!(["a", "b", "c"]))
        );
        assert_eq!(
            parse_output(OutputMode::Json, b"{\"a\": [1, 2.5]}\n".to_vec()),
            Ok(serde_json::json!({"a": [1, 2.5]}))
        );
        let err = parse_output(OutputMode::Json, b"not json at all".to_vec()).unwrap_err();
        assert!(err.starts_with("output is not valid JSON ("), "{err}");
        assert!(err.ends_with("stdout starts with: not json at all"), "{err}");
        let err = parse_output(OutputMode::Json, Vec::new()).unwrap_err();
        assert!(err.ends_with("stdout is empty"), "{err}");
    }

    /// The fallback without pidfd: normal exit, leftovers killed, timeout.
    #[test]
    fn works_without_pidfd() {
        use crate::model::{Invocation, Template};
        let task = |line: &str| CommandTask {
            invocation: Invocation::Shell(Template::literal(line)),
            cwd: None,
            env: Vec::new(),
            stdin: Some(Template::literal("in")),
            output: OutputMode::Text,
            success_codes: vec![0],
        };
        let run = |t: &CommandTask, timeout: Option<Duration>| {
            run_command_with(
                CommandRequest {
                    task: t,
                    job_dir: Path::new(""),
                    names: &[],
                    args: &[],
                    timeout,
                    grace: Duration::from_millis(200),
                    should_stop: &|| false,
                    group: None,
                    on_spawn: &mut |_| {},
                },
                false,
            )
        };
        let out = run(&task("cat; echo out; exit 4"), None);
        assert_eq!((out.status, out.exit_code), (CommandStatus::Error, Some(4)));
        let out = run(&task("cat >/dev/null; sleep 30 & echo $!"), None);
        assert_eq!(out.status, CommandStatus::Ok, "{out:?}");
        let pid: i32 = out.value.unwrap().as_str().unwrap().parse().unwrap();
        // The leftover was SIGKILLed before the leader was reaped; it is gone or a zombie.
        let start = Instant::now();
        while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.contains(") Z"))
        );
        let out = run(&task("sleep 30"), Some(Duration::from_millis(200)));
        assert_eq!(out.status, CommandStatus::Timeout);
        assert_eq!(out.error.as_deref(), Some("timed out after 200ms"));
    }

    #[test]
    fn a_program_is_found_on_path_as_execvp_would() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir(d).unwrap();
        }
        let write = |path: &Path, mode: u32| {
            std::fs::write(path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(&a.join("prog"), 0o644); // not executable: skipped
        write(&b.join("prog"), 0o755);
        std::fs::create_dir(a.join("dir")).unwrap(); // a folder: skipped
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(search_path("prog", Some(&path)), Some(b.join("prog")));
        assert_eq!(search_path("dir", Some(&path)), None);
        assert_eq!(search_path("missing", Some(&path)), None);
        assert_eq!(search_path("prog", None), None);
        // A relative (or empty) entry before a match depends on the working folder.
        let relative = std::env::join_paths([Path::new("rel"), b.as_path()]).unwrap();
        assert_eq!(search_path("prog", Some(&relative)), None);
        let empty = format!(":{}", b.display());
        assert_eq!(search_path("prog", Some(std::ffi::OsStr::new(&empty))), None);
        assert_eq!(program_on_path("./prog"), None, "a name with a slash is a path");
    }

    #[test]
    fn a_program_found_earlier_but_gone_is_searched_again() {
        // As if `uname` had been found at a path that no longer exists.
        let bogus = PathBuf::from("/nonexistent-jobpool-test/uname");
        PROGRAMS.lock().unwrap().insert("uname".into(), Some(bogus.clone()));
        let task = CommandTask {
            invocation: Invocation::Program(vec![Template::literal("uname")]),
            cwd: None,
            env: Vec::new(),
            stdin: None,
            output: OutputMode::Text,
            success_codes: vec![0],
        };
        let out = run_command(CommandRequest {
            task: &task,
            job_dir: Path::new(""),
            names: &[],
            args: &[],
            timeout: None,
            grace: Duration::from_millis(200),
            should_stop: &|| false,
            group: None,
            on_spawn: &mut |_| {},
        });
        assert_eq!(out.status, CommandStatus::Ok, "{out:?}");
        assert_ne!(PROGRAMS.lock().unwrap().get("uname"), Some(&Some(bogus)));
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(9), Some("SIGKILL"));
        assert_eq!(signal_name(15), Some("SIGTERM"));
        assert_eq!(signal_name(1000), None);
    }

    #[test]
    fn the_null_device_is_told_from_other_files() {
        use std::os::fd::AsRawFd;
        let null = std::fs::File::open("/dev/null").unwrap();
        assert!(is_null_device(null.as_raw_fd()));
        let file = tempfile::tempfile().unwrap();
        assert!(!is_null_device(file.as_raw_fd()));
        let (r, _w) = std::io::pipe().unwrap();
        assert!(!is_null_device(r.as_raw_fd()));
        let zero = std::fs::File::open("/dev/zero").unwrap(); // another character device
        assert!(!is_null_device(zero.as_raw_fd()));
        assert!(!is_null_device(-1));
    }

    #[test]
    fn os_message_strips_the_code() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(os_message(&e), "No such file or directory");
    }

    #[test]
    fn placeholders_by_name_and_position() {
        let names = vec!["a".to_string(), "b".to_string()];
        let args = vec![Value::from("x y"), Value::from(3)];
        assert_eq!(lookup_arg(&names, &args, "a").as_deref(), Some("x y"));
        assert_eq!(lookup_arg(&names, &args, "1").as_deref(), Some("3"));
        assert_eq!(lookup_arg(&names, &args, "c"), None);
        assert_eq!(lookup_arg(&names, &args, "7"), None);
    }
}
