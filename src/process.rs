//! Unix process helpers, written once for the pool and the command task kind.
//!
//! Owns: every raw `libc` call about child processes that `pool` and `task` share:
//! pidfds ([`pidfd_open`], [`exited`]), asking whether a child exited without reaping it
//! ([`has_exited`], [`wait_exit`]), reaping ([`reap_within`], [`reap_with_usage`]),
//! signalling a process or a whole group ([`kill_process`],
//! [`kill_group`]), signal names ([`signal_name`]), the group leader that keeps a
//! command group's id valid ([`command_group_leader`]), and starting a command on x86-64
//! (`spawn`).
//! Must not: use any other module of the crate, decide when to kill or wait (its callers
//! do), start threads, or print.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

mod raw;
mod sentinel;
#[cfg(target_arch = "x86_64")]
pub(crate) mod spawn;

/// A pidfd for our child `pid`, which nobody reaped yet (so the pid is still its own);
/// `None` on kernels without pidfds (Linux < 5.3).
pub fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) returns a new fd that we then own, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as i32;
    // SAFETY: fd is a fresh descriptor owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the process of `pidfd` has exited, waiting at most `timeout` for it.
pub fn exited(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: poll(2) on one pollfd that we own.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n > 0 && p.revents != 0
}

/// Whether our child `pid` has exited, without reaping it (the fallback when there is
/// no pidfd).
pub fn has_exited(pid: u32) -> bool {
    // SAFETY: waitid with a zeroed siginfo_t out-parameter; WNOWAIT leaves the child
    // waitable, so whoever reaps it later still gets its status.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        rc == 0 && info.si_pid() != 0
    }
}

/// Send `signal` to the process `pid` (ESRCH, already gone, is fine).
pub fn kill_process(pid: u32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; callers pass their own
    // unreaped children, whose pids cannot be reused.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

/// Send `signal` to every process of the group `pgid` (ESRCH, already gone, is fine).
/// A `pgid` of 0 or less names no group and is ignored (`kill(0, ...)` would signal
/// our own group).
pub fn kill_group(pgid: i32, signal: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) has no memory-safety preconditions. Callers pass groups whose
        // leader is an unreaped child of theirs, or one a task registered.
        unsafe { libc::kill(-pgid, signal) };
    }
}

/// Wait (at most `timeout`, then SIGKILL it and wait again) until our child has exited,
/// without reaping it: its pid, which may also be its process group's id, stays ours.
/// (With a pidfd, `pid` may also be a process another one keeps unreaped for us: a
/// worker forked by the zygote.)
pub fn wait_exit(pid: u32, pidfd: Option<&OwnedFd>, timeout: Duration) {
    let dead = || match pidfd {
        Some(fd) => exited(fd, timeout),
        None => {
            let deadline = Instant::now() + timeout;
            loop {
                if has_exited(pid) {
                    break true;
                }
                if Instant::now() >= deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    };
    if !dead() {
        kill_process(pid, libc::SIGKILL);
        dead();
    }
}

/// Reap our child, giving it at most `timeout` to exit before it is SIGKILLed; `None`
/// when its status cannot be had.
///
/// Waits on the pidfd first: it wakes the moment the process exits, and then a single
/// `wait4` reaps it (no sleep loop, no `wait4` racing the exit for the kernel's
/// task-list lock, which is slow to get while processes exit).
pub fn reap_within(
    child: &mut Child,
    pidfd: Option<&OwnedFd>,
    timeout: Duration,
) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    if let Some(fd) = pidfd {
        exited(fd, timeout);
    }
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_micros(200)),
            Ok(None) => {
                let _ = child.kill();
                return child.wait().ok();
            }
            Err(_) => return None,
        }
    }
}

/// What a reaped child used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// User + system CPU time, in ms (its own plus that of the descendants it waited for).
    pub cpu_ms: f64,
    /// Peak resident memory (its own, or its largest waited-for descendant's), in KiB.
    pub max_rss_kb: u64,
}

/// Reap our child with `wait4` (blocking), which also gives its resource usage (its
/// own, plus that of the descendants it waited for).
pub fn reap_with_usage(child: &mut Child) -> (Option<ExitStatus>, Option<Usage>) {
    match reap_pid_with_usage(child.id()) {
        // Someone else reaped it (ECHILD): std may know its status.
        (None, _) => (child.try_wait().ok().flatten(), None),
        reaped => reaped,
    }
}

/// [`reap_with_usage`] for the child `pid`; `(None, None)` when someone else reaped it.
pub fn reap_pid_with_usage(pid: u32) -> (Option<ExitStatus>, Option<Usage>) {
    let pid = pid as libc::pid_t;
    loop {
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid out-parameter.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own unreaped child, with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
            let usage = Usage {
                cpu_ms: ms(ru.ru_utime) + ms(ru.ru_stime),
                max_rss_kb: ru.ru_maxrss.max(0) as u64,
            };
            return (Some(ExitStatus::from_raw(status)), Some(usage));
        }
        if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return (None, None);
    }
}

/// Create the process group a worker's commands will join, before it runs any.
///
/// A command cannot be given a group of its own race-free: with `process_group(0)` its
/// group exists from inside `spawn()`, before the worker learns its id, so a worker
/// killed in between leaves a group nobody knows (and a `pre_exec` hook would cost the
/// fast `posix_spawn` path). So the group exists first: a child of this process (of the
/// calling thread) puts itself in a new group and waits there, keeping the group id
/// valid and joinable for as long as the worker lives (killed with the group, it stays
/// an unreaped zombie, which keeps the id valid too); it is ended and reaped after the
/// worker (the pool's `take_down`, with [`end_group_leader`]). A worker runs one task at
/// a time, so the group holds exactly the running task's processes and the leader.
///
/// The leader is also the group's last guard: when the thread that created it ends (the
/// pool's reader of that worker, which ends with the worker's channel, or with the whole
/// pool, even a SIGKILLed one), the kernel sends it its parent-death signal and it kills
/// its whole group. So a task survives neither its worker and its pool killed at once
/// (no other process then knows the group) nor a pool that lost its worker. Returns the
/// group id (the child's pid).
pub fn command_group_leader() -> io::Result<i32> {
    let pid = sentinel::start(sentinel::OnDeath::KillOwnGroup)?;
    // Put it in its group from here too (as shells do: whichever of the two calls runs
    // first makes the group, the other changes nothing), so the group exists when this
    // returns instead of when the child gets to run; the wait below then ends at once.
    // SAFETY: setpgid on our own child, which has not exec'd (it never does).
    unsafe { libc::setpgid(pid, pid) };
    // Wait until it is in its group (the group exists once its leader's setpgid ran).
    let deadline = Instant::now() + Duration::from_secs(5);
    // SAFETY: getpgid has no preconditions.
    while unsafe { libc::getpgid(pid) } != pid && !has_exited(pid as u32) {
        if Instant::now() >= deadline {
            kill_process(pid as u32, libc::SIGKILL);
            reap_sentinel(pid);
            return Err(io::Error::other("the process group leader did not start"));
        }
        std::thread::yield_now();
    }
    // A command group's guard: a child of this thread in a group of its own, which kills
    // the command group when the thread that created it ends, however this process ends.
    //
    // The leader alone cannot be that guard for long: it is a member of its group, so
    // the first task whose leftovers are killed with the group (`kill(-group, SIGKILL)`
    // after every task, and on every timeout) kills the leader too — a zombie still holds
    // the group id, but nothing would kill a later task's processes if the worker and
    // jobpool died at once. The guard stays outside the group, out of reach of those
    // kills and of signals to the terminal's process group.
    match sentinel::start(sentinel::OnDeath::KillGroup(pid)) {
        Ok(guard) => {
            GUARDS.lock().unwrap_or_else(|e| e.into_inner()).push((pid, guard));
            Ok(pid)
        }
        Err(e) => {
            end_group_leader(pid);
            Err(e)
        }
    }
}

/// The guards of command groups, by leader: `(leader, guard)`.
static GUARDS: std::sync::Mutex<Vec<(i32, i32)>> = std::sync::Mutex::new(Vec::new());

/// End a command group leader made by [`command_group_leader`]: kill its group (it is
/// in it) and its guard, then reap both (waiting for each at most 1 s).
///
/// Both are killed before either is waited for, so their exits overlap, and each wait
/// wakes the moment the process is gone (on its pidfd) rather than on a sleep's tick.
pub fn end_group_leader(pid: i32) {
    if pid <= 0 {
        // Not a leader of ours (`waitpid(0, ...)` would reap any child of our group).
        return;
    }
    kill_group(pid, libc::SIGKILL);
    // Its guard: no longer needed (the group is gone), ended and reaped.
    let guard = {
        let mut guards = GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        let at = guards.iter().position(|(leader, _)| *leader == pid);
        at.map(|i| guards.swap_remove(i).1)
    };
    if let Some(guard) = guard {
        kill_process(guard as u32, libc::SIGKILL);
    }
    reap_sentinel(pid);
    if let Some(guard) = guard {
        reap_sentinel(guard);
    }
}

/// Reap the sentinel `pid` (a leader or a guard, killed), waiting for it at most 1 s;
/// once it is reaped its stack is used again (never while it might still run).
fn reap_sentinel(pid: i32) {
    if reap_within_1s(pid) {
        sentinel::reaped(pid);
    }
}

/// Reap our child `pid`, waiting for it at most 1 s; whether it was reaped.
fn reap_within_1s(pid: i32) -> bool {
    let reaped = || {
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) == pid }
    };
    if reaped() {
        return true;
    }
    // Not yet gone: wait on a pidfd (the child is unreaped, so the pid is still its own).
    if let Some(fd) = pidfd_open(pid as u32) {
        exited(&fd, Duration::from_secs(1));
        return reaped();
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        if reaped() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

/// The conventional name of a signal number.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

/// The CPUs this process may run on, as it started: what a process that
/// [`start_elsewhere`] placed goes back to ([`run_anywhere`]). Set by [`remember_cpus`].
static CPUS: std::sync::OnceLock<libc::cpu_set_t> = std::sync::OnceLock::new();

/// Remember the CPUs this process may run on (call it before it forks what
/// [`start_elsewhere`] places).
pub fn remember_cpus() {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the size and pointer describe `set`.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } == 0
    {
        let _ = CPUS.set(set);
    }
}

/// Start the process `pid` the caller just forked on another CPU than the caller's, when
/// there is one it may use. The child calls [`run_anywhere`] once it knows this call was
/// made (it heard from the caller after it), never before: it would stay off the
/// caller's CPU for good.
///
/// Why: Linux queues a new process on its parent's CPU, and a parent that goes on
/// working (loading the job while the worker zygote builds what workers need) keeps it
/// waiting there, idle CPUs or not: measured in the 2-CPU development VM, a child forked
/// by a busy parent first ran 0.4-2 ms later (usually when the parent blocked); moved to
/// the other CPU, 0.05 ms later.
pub fn start_elsewhere(pid: i32) {
    let Some(mut others) = CPUS.get().copied() else { return };
    // SAFETY: sched_getcpu has no preconditions.
    let here = unsafe { libc::sched_getcpu() };
    if here >= 0 {
        // SAFETY: `here` is a CPU number below CPU_SETSIZE (the kernel gave it).
        unsafe { libc::CPU_CLR(here as usize, &mut others) };
    }
    // SAFETY: CPU_COUNT reads the set; the size and pointer describe `others`, and `pid`
    // is our own child.
    unsafe {
        if libc::CPU_COUNT(&others) > 0 {
            libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &others);
        }
    }
}

/// Let this process run on every CPU it could before [`start_elsewhere`] placed it
/// (nothing to do when nothing placed it: its parent remembered no CPUs).
pub fn run_anywhere() {
    if let Some(all) = CPUS.get() {
        // SAFETY: the size and pointer describe `all`; 0 is the calling thread.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), all) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[test]
    fn a_child_is_seen_to_exit_then_reaped_with_its_status() {
        let mut child = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        let fd = pidfd_open(child.id());
        wait_exit(child.id(), fd.as_ref(), Duration::from_secs(5));
        assert!(has_exited(child.id()), "exited, and still waitable");
        let (status, usage) = reap_with_usage(&mut child);
        assert_eq!(status.and_then(|s| s.code()), Some(3));
        assert!(usage.is_some());
    }

    #[test]
    fn a_child_that_does_not_exit_in_time_is_killed() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let fd = pidfd_open(child.id());
        let status = reap_within(&mut child, fd.as_ref(), Duration::from_millis(50)).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(signal_name(libc::SIGKILL), Some("SIGKILL"));
        assert_eq!(signal_name(0), None);
    }

    #[test]
    fn a_command_group_leader_keeps_its_group_until_ended() {
        let leader = command_group_leader().unwrap();
        // SAFETY: getpgid has no preconditions.
        assert_eq!(unsafe { libc::getpgid(leader) }, leader, "its group exists on return");
        assert!(!has_exited(leader as u32), "it waits in its group");
        let guard = GUARDS.lock().unwrap().iter().find(|(l, _)| *l == leader).unwrap().1;
        let mut child = Command::new("sleep").arg("30").process_group(leader).spawn().unwrap();
        let started = Instant::now();
        end_group_leader(leader);
        assert!(started.elapsed() < Duration::from_millis(1500), "no full wait for a killed child");
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        for pid in [leader, guard] {
            assert!(!has_exited(pid as u32), "reaped");
            // SAFETY: kill with signal 0 only asks whether the process exists.
            assert_ne!(unsafe { libc::kill(pid, 0) }, 0, "gone");
        }
    }

    /// A command group leader made by a thread that ends when `end` is called.
    fn leader_of_a_thread() -> (i32, impl FnOnce()) {
        let (tx, rx) = std::sync::mpsc::channel();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(command_group_leader().unwrap()).unwrap();
            let _ = wait.recv();
        });
        let end = move || {
            drop(go);
            t.join().unwrap();
        };
        (rx.recv().unwrap(), end)
    }

    #[test]
    fn a_command_group_leader_kills_its_group_when_its_thread_ends() {
        // The thread that made the leader ends (as the pool's reader does with its
        // worker, or the whole pool when it is SIGKILLed): the group dies with it.
        let (leader, end_thread) = leader_of_a_thread();
        let mut child = Command::new("sleep").arg("30").process_group(leader).spawn().unwrap();
        end_thread();
        let st = child.wait().unwrap();
        assert_eq!(st.signal(), Some(libc::SIGKILL), "the command died with its group");
        end_group_leader(leader);
    }

    #[test]
    fn the_guard_kills_the_group_when_its_thread_ends_after_the_leader_died() {
        // A task's leftovers were killed with the group, the leader with them (a zombie
        // now); then the worker's thread ends: the guard, outside the group, kills it.
        let (leader, end_thread) = leader_of_a_thread();
        let mut child = Command::new("sleep").arg("30").process_group(leader).spawn().unwrap();
        kill_process(leader as u32, libc::SIGKILL);
        let fd = pidfd_open(leader as u32).unwrap();
        assert!(exited(&fd, Duration::from_secs(5)), "the leader is dead");
        assert!(child.try_wait().unwrap().is_none(), "the command still runs");
        end_thread();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL), "the guard killed it");
        end_group_leader(leader);
    }

    #[test]
    fn a_sentinel_holds_no_file_of_ours_and_runs_none_of_our_signal_handlers() {
        // The sentinels share this process's memory: a handler of ours run in one would
        // set this very flag.
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        signal_hook::flag::register(libc::SIGUSR2, flag.clone()).unwrap();
        let leader = command_group_leader().unwrap();
        let fds = || std::fs::read_dir(format!("/proc/{leader}/fd")).map(|d| d.count());
        let deadline = Instant::now() + Duration::from_secs(5);
        while fds().unwrap() != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(fds().unwrap(), 0, "no file descriptor of ours");
        kill_process(leader as u32, libc::SIGUSR2);
        let fd = pidfd_open(leader as u32).unwrap();
        assert!(exited(&fd, Duration::from_secs(5)), "SIGUSR2 ends it the default way");
        assert!(!flag.load(std::sync::atomic::Ordering::SeqCst), "our handler did not run");
        end_group_leader(leader);
    }

    #[test]
    fn a_child_started_elsewhere_runs_off_our_cpu_until_it_runs_anywhere() {
        fn count(set: &libc::cpu_set_t) -> i32 {
            // SAFETY: CPU_COUNT reads the set.
            unsafe { libc::CPU_COUNT(set) }
        }
        fn affinity(pid: i32) -> libc::cpu_set_t {
            // SAFETY: as in `remember_cpus`.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            // SAFETY: the size and pointer describe `set`.
            let r = unsafe {
                libc::sched_getaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &mut set)
            };
            assert_eq!(r, 0);
            set
        }
        remember_cpus();
        let all = count(CPUS.get().expect("remembered"));
        let (mut go, mut told) = ([0i32; 2], [0i32; 2]);
        // SAFETY: valid arrays of two descriptors.
        assert_eq!(unsafe { libc::pipe(go.as_mut_ptr()) }, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::pipe(told.as_mut_ptr()) }, 0);
        // SAFETY: the child only makes system calls (read, sched_setaffinity,
        // sched_getaffinity, write, _exit) and reads a value set before the fork.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut byte = 0u8;
            // SAFETY: reads into and writes from valid buffers; _exit ends the child.
            unsafe {
                libc::read(go[0], (&raw mut byte).cast(), 1);
                run_anywhere();
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
                let n = libc::CPU_COUNT(&set);
                libc::write(told[1], (&raw const n).cast(), 4);
                libc::_exit(0);
            }
        }
        assert!(pid > 0);
        start_elsewhere(pid);
        // Every CPU but the one we ran on (with one CPU, that one: nowhere else to go).
        assert_eq!(count(&affinity(pid)), if all > 1 { all - 1 } else { all });
        let mut n = 0i32;
        // SAFETY: writes from and reads into valid buffers; waitpid on our own child.
        unsafe {
            libc::write(go[1], [1u8].as_ptr().cast(), 1);
            assert_eq!(libc::read(told[0], (&raw mut n).cast(), 4), 4);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            for fd in go.into_iter().chain(told) {
                libc::close(fd);
            }
        }
        assert_eq!(n, all, "every CPU again");
    }
}
