//! Unix process helpers, written once for the pool and the command task kind.
//!
//! Owns: every raw `libc` call about child processes that `pool` and `task` share:
//! pidfds ([`pidfd_open`], [`exited`]), asking whether a child exited without reaping it
//! ([`has_exited`], [`wait_exit`]), reaping ([`reap_within`], [`reap_with_usage`],
//! [`reap_if_exited`]), signalling a process or a whole group ([`kill_process`],
//! [`kill_group`]), signal names ([`signal_name`]), and the group leader that keeps a
//! command group's id valid ([`command_group_leader`]).
//! Must not: use any other module of the crate, decide when to kill or wait (its callers
//! do), start threads, or print.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

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
    let pid = child.id() as libc::pid_t;
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
        // Someone else reaped it (ECHILD): std may know its status.
        return (child.try_wait().ok().flatten(), None);
    }
}

/// Reap our child `pid` (a command group's leader) if it exited.
pub fn reap_if_exited(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
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
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the child only calls async-signal-safe functions (setpgid, close_range or
    // close, signal, sigprocmask, prctl, getppid, kill, pause).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the child of fork.
        unsafe { wait_for_parent_death(parent, kill_own_group) }
    }
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
            reap_if_exited(pid);
            return Err(io::Error::other("the process group leader did not start"));
        }
        std::thread::yield_now();
    }
    match group_guard(pid, parent) {
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

/// The group a guard kills when its parent thread ends; set just before the guard is
/// forked (under [`GUARD_FORK`]), so the guard's copy of memory holds its own group.
static GUARDED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
static GUARD_FORK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A command group's guard: a child of this thread in a group of its own, which kills
/// the command group `group` when the thread that created it ends (its parent-death
/// signal), however this process ends.
///
/// The leader alone cannot be that guard for long: it is a member of its group, so the
/// first task whose leftovers are killed with the group (`kill(-group, SIGKILL)` after
/// every task, and on every timeout) kills the leader too — a zombie still holds the
/// group id, but nothing would kill a later task's processes if the worker and jobpool
/// died at once. The guard stays outside the group, out of reach of those kills and of
/// signals to the terminal's process group.
fn group_guard(group: i32, parent: i32) -> io::Result<i32> {
    let _one_at_a_time = GUARD_FORK.lock().unwrap_or_else(|e| e.into_inner());
    GUARDED.store(group, std::sync::atomic::Ordering::SeqCst);
    // SAFETY: the child only calls async-signal-safe functions (setpgid, close_range or
    // close, signal, sigprocmask, prctl, getppid, kill, pause).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the child of fork.
        unsafe { wait_for_parent_death(parent, kill_guarded_group) }
    }
    Ok(pid)
}

/// A guard's parent-death signal: kill the group it guards, then exit.
extern "C" fn kill_guarded_group(_: libc::c_int) {
    let group = GUARDED.load(std::sync::atomic::Ordering::SeqCst);
    // SAFETY: kill(2) and _exit(2) are async-signal-safe.
    unsafe {
        if group > 0 {
            libc::kill(-group, libc::SIGKILL);
        }
        libc::_exit(0);
    }
}

/// The rest of the life of a child of `fork` (of `parent`) that waits for its parent
/// thread to end: it puts itself in a group of its own, holds no file, takes signals the
/// default way, and when its parent-death signal (SIGUSR1) comes — or if the parent is
/// gone already — runs `on_parent_death`.
///
/// # Safety
/// Call only in the child of `fork`, at once: it makes async-signal-safe calls only
/// (setpgid, close_range or close, signal, sigprocmask, prctl, getppid, pause).
unsafe fn wait_for_parent_death(parent: i32, on_parent_death: extern "C" fn(libc::c_int)) -> ! {
    // SAFETY: see the function's contract.
    unsafe {
        libc::setpgid(0, 0);
        // It needs no file: holding copies of the parent's (its journal, sinks, channels,
        // pipes, locks) would keep them open as long as the worker lives.
        if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
            for fd in 0..1024 {
                libc::close(fd);
            }
        }
        // The parent's handlers (signal-hook's, which would write to the parent's pipes)
        // must not run here: default dispositions, nothing blocked.
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::signal(libc::SIGUSR1, on_parent_death as *const () as libc::sighandler_t);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGUSR1);
        if libc::getppid() != parent {
            on_parent_death(0);
        }
        loop {
            libc::pause();
        }
    }
}

/// A command group leader's parent-death signal: kill the whole group (itself included).
extern "C" fn kill_own_group(_: libc::c_int) {
    // SAFETY: kill(2) is async-signal-safe.
    unsafe { libc::kill(0, libc::SIGKILL) };
}

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
    reap_within_1s(pid);
    if let Some(guard) = guard {
        reap_within_1s(guard);
    }
}

/// Reap our child `pid`, waiting for it at most 1 s.
fn reap_within_1s(pid: i32) {
    let reaped = || {
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) != 0 }
    };
    if reaped() {
        return;
    }
    // Not yet gone: wait on a pidfd (the child is unreaped, so the pid is still its own).
    if let Some(fd) = pidfd_open(pid as u32) {
        exited(&fd, Duration::from_secs(1));
        reaped();
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while !reaped() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
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

    #[test]
    fn a_command_group_leader_kills_its_group_when_its_thread_ends() {
        // The thread that made the leader ends (as the pool's reader does with its
        // worker, or the whole pool when it is SIGKILLed): the group dies with it.
        let (tx, rx) = std::sync::mpsc::channel();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(command_group_leader().unwrap()).unwrap();
            let _ = wait.recv();
        });
        let leader = rx.recv().unwrap();
        let mut child = Command::new("sleep").arg("30").process_group(leader).spawn().unwrap();
        drop(go);
        t.join().unwrap();
        let st = child.wait().unwrap();
        assert_eq!(st.signal(), Some(libc::SIGKILL), "the command died with its group");
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
