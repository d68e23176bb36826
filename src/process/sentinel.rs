//! Sentinels: small child processes that wait, in a process group of their own, for the
//! thread that made them to end, and then kill a process group (a command group's
//! leader and its guard, see [`command_group_leader`](super::command_group_leader)).
//!
//! Why not `fork`: a sentinel runs a few system calls and then waits; a copy of the
//! pool's whole memory is wasted on it. Here a fork of the pool's process costs about
//! 0.25 ms, and afterwards each page the pool writes costs it a copy-on-write fault
//! (some 140 faults a fork): a pool of 8 command workers spent about 10 ms of CPU time
//! on its 16 sentinels before its first command started. So on x86-64 a
//! sentinel is a `clone` that shares our memory (`CLONE_VM`, as `posix_spawn` does),
//! runs on a stack of its own and makes its system calls directly (no C library call:
//! that could write `errno` in the thread-local storage it shares with the thread that
//! made it). Elsewhere (where that system-call path is not tested) it is a `clone`
//! without `CLONE_VM` (a fork), running the same code through the C library's
//! `syscall`, which is safe in a copy of our memory.
//!
//! A sentinel touches no memory but its stack (its arguments are copied there first),
//! so sharing our memory is safe; the stack is kept until the sentinel is reaped
//! ([`reaped`]), and leaked if it never is.

use std::io;
use std::sync::Mutex;

use super::raw::{DEFAULT_ACTION, PAGE, SIGSET, STACK, map_stack, sys};

/// What a sentinel does when the thread that made it ends.
#[derive(Clone, Copy)]
pub(super) enum OnDeath {
    /// Kill its own process group (itself included): a command group's leader.
    KillOwnGroup,
    /// Kill the process group `group`, then exit: a command group's guard (which is not
    /// in the group it guards).
    KillGroup(i32),
}

/// What the sentinel reads, copied to the bottom of its own stack.
#[derive(Clone, Copy)]
#[repr(C)]
struct Args {
    /// The pid of the process that made it (to tell whether that one is gone already).
    parent: i32,
    /// The group to kill; 0 for its own.
    group: i32,
}

/// The stacks of living sentinels, by pid (as addresses: a stack is not shared with Rust
/// code), and free stacks to use again.
static STACKS: Mutex<Stacks> = Mutex::new(Stacks { used: Vec::new(), free: Vec::new() });

struct Stacks {
    used: Vec<(i32, usize)>,
    free: Vec<usize>,
}

/// At most this many free stacks are kept (the rest are unmapped).
const FREE_MAX: usize = 32;

/// Start a sentinel: a child of the calling thread, in a new process group (its own id),
/// that holds no file descriptor, takes signals the default way (but its parent-death
/// signal, SIGUSR1), and does `on_death` when the calling thread ends — or at once, if
/// this process is gone already. Returns its pid; the caller must reap it, then call
/// [`reaped`].
pub(super) fn start(on_death: OnDeath) -> io::Result<i32> {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let group = match on_death {
        OnDeath::KillOwnGroup => 0,
        OnDeath::KillGroup(g) => g,
    };
    let base = take_stack()?;
    // SAFETY: `base + PAGE .. base + STACK` is ours, mapped read-write; the arguments
    // go at its bottom (aligned: `Args` is two i32), the stack grows down from its top.
    let (arg, top) = unsafe {
        let arg = (base + PAGE) as *mut Args;
        arg.write(Args { parent, group });
        (arg, (base + STACK) as *mut libc::c_void)
    };
    // No signal may run this process's handlers in the sentinel (which shares our
    // memory) before it has put every disposition back to the default: block them all
    // in this thread around the clone (the child inherits the mask, then sets its own).
    // SAFETY: sigfillset/pthread_sigmask on local sets; clone with a stack that only the
    // child uses and a function that only makes raw system calls (see `sentinel_main`).
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(sentinel_main, top, CLONE_FLAGS | libc::SIGCHLD, arg.cast());
        let error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            give_back(base);
            return Err(error);
        }
        pid
    };
    STACKS.lock().unwrap_or_else(|e| e.into_inner()).used.push((pid, base));
    Ok(pid)
}

/// The sentinel `pid` was reaped: its stack can be used again.
pub(super) fn reaped(pid: i32) {
    let unused = STACKS.lock().unwrap_or_else(|e| e.into_inner()).release(pid);
    if let Some(base) = unused {
        // SAFETY: a mapping of ours that nothing uses any more (its sentinel is gone).
        unsafe { libc::munmap(base as *mut libc::c_void, STACK) };
    }
}

impl Stacks {
    /// The stack of `pid` goes back to the free ones; returns it when there are enough
    /// of those (then it is to be unmapped).
    fn release(&mut self, pid: i32) -> Option<usize> {
        let i = self.used.iter().position(|(p, _)| *p == pid)?;
        let (_, base) = self.used.swap_remove(i);
        if self.free.len() < FREE_MAX {
            self.free.push(base);
            return None;
        }
        Some(base)
    }
}

fn take_stack() -> io::Result<usize> {
    if let Some(base) = STACKS.lock().unwrap_or_else(|e| e.into_inner()).free.pop() {
        return Ok(base);
    }
    map_stack()
}

/// A stack whose clone failed goes back to the free list.
fn give_back(base: usize) {
    STACKS.lock().unwrap_or_else(|e| e.into_inner()).free.push(base);
}

#[cfg(target_arch = "x86_64")]
const CLONE_FLAGS: libc::c_int = libc::CLONE_VM;
#[cfg(not(target_arch = "x86_64"))]
const CLONE_FLAGS: libc::c_int = 0;

/// The sentinel's whole life. Only raw system calls, on its own stack.
extern "C" fn sentinel_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at the `Args` that `start` wrote at the bottom of this stack.
    let Args { parent, group } = unsafe { *(arg as *const Args) };
    // SAFETY: each call's pointers are to locals of this function.
    unsafe {
        sys(libc::SYS_setpgid, 0, 0, 0, 0);
        // It needs no file: holding copies of the parent's (its journal, sinks,
        // channels, pipes, locks) would keep them open as long as the worker lives.
        if sys(libc::SYS_close_range, 0, u32::MAX as usize, 0, 0) != 0 {
            for fd in 0..1024 {
                sys(libc::SYS_close, fd, 0, 0, 0);
            }
        }
        // The parent's handlers (signal-hook's, which would write to the parent's pipes)
        // must never run here: default dispositions for every signal.
        for sig in 1..=64 {
            if sig != libc::SIGKILL as usize && sig != libc::SIGSTOP as usize {
                sys(libc::SYS_rt_sigaction, sig, DEFAULT_ACTION.as_ptr() as usize, 0, SIGSET);
            }
        }
        // Every signal unblocked but the parent-death one, which is waited for.
        let usr1: u64 = 1 << (libc::SIGUSR1 - 1);
        let set = &usr1 as *const u64 as usize;
        sys(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK as usize, set, 0, SIGSET);
        sys(libc::SYS_prctl, libc::PR_SET_PDEATHSIG as usize, libc::SIGUSR1 as usize, 0, 0);
        if sys(libc::SYS_getppid, 0, 0, 0, 0) as i32 == parent {
            // Until the parent-death signal (another error or signal: wait again).
            while sys(libc::SYS_rt_sigtimedwait, set, 0, 0, SIGSET) != libc::SIGUSR1 as isize {}
        }
        // The parent thread is gone: kill the group (0: our own, ourselves included).
        let target = if group > 0 { -group } else { 0 };
        sys(libc::SYS_kill, target as isize as usize, libc::SIGKILL as usize, 0, 0);
        loop {
            sys(libc::SYS_exit_group, 0, 0, 0, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reaped_sentinel_gives_its_stack_back_and_too_many_free_ones_are_unmapped() {
        let mut s = Stacks {
            used: (1..=FREE_MAX as i32 + 2).map(|p| (p, p as usize * 16)).collect(),
            free: Vec::new(),
        };
        assert_eq!(s.release(1), None);
        assert_eq!(s.free, [16]);
        assert_eq!(s.release(1), None, "not twice");
        for p in 2..=FREE_MAX as i32 {
            assert_eq!(s.release(p), None);
        }
        assert_eq!(s.release(FREE_MAX as i32 + 1), Some((FREE_MAX + 1) * 16), "unmapped");
        assert_eq!(s.free.len(), FREE_MAX);
        assert_eq!(s.used, [(FREE_MAX as i32 + 2, (FREE_MAX + 2) * 16)]);
    }

    #[test]
    fn a_sentinel_is_a_child_in_a_group_of_its_own_until_killed() {
        let pid = start(OnDeath::KillOwnGroup).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // SAFETY: getpgid, kill and waitpid on our own child.
        unsafe {
            while libc::getpgid(pid) != pid && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
            assert_eq!(libc::getpgid(pid), pid);
            libc::kill(pid, libc::SIGKILL);
            assert_eq!(libc::waitpid(pid, std::ptr::null_mut(), 0), pid);
        }
        reaped(pid);
        assert!(!STACKS.lock().unwrap().used.iter().any(|(p, _)| *p == pid));
    }
}
