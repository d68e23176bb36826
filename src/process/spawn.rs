//! Starting a program the way `posix_spawn` does, with less work per start: the command
//! task kind's spawn on x86-64 Linux.
//!
//! Why not the standard library's `Command::spawn`: it calls glibc's `posix_spawn`,
//! whose child puts every one of the 64 signals back to its default with two
//! `rt_sigaction` calls each (121 system calls), and whose parent maps and unmaps a
//! fresh stack for the child at every start (the unmap interrupts the other cores this
//! process runs on, to flush their address caches). A command worker starts thousands
//! of short programs, one after another, and each of these costs lands between two of
//! them. Here the child asks for each signal's disposition (one call) and resets only
//! those with a handler, and a thread reuses one stack for all its children. Measured
//! with 2,000 × `/usr/bin/true`, 2 at a time: 482 ms with `posix_spawn`, 456 ms this way
//! (a C program of each, 15 runs, medians).
//!
//! How: the parent thread blocks every signal and `clone`s with `CLONE_VM | CLONE_VFORK`,
//! as `posix_spawn` does: the child runs on a stack of its own in our memory while the
//! parent thread waits, until the child's `execve` succeeds or it exits. The child makes
//! raw system calls only (see `super::raw`) and writes nothing but the failure it
//! reports: its signal dispositions (a handler of ours must never run in it: default;
//! SIGPIPE, which the standard library ignores in its own process, default too; ignored
//! ones stay ignored, as across any `exec`), its process group, its working folder, its
//! standard streams, an empty signal mask, and the `execve`. What it does, in that order,
//! is what `Command::spawn` does with `process_group`, `current_dir` and three `Stdio`s.

use std::cell::Cell;
use std::ffi::{CStr, CString, c_char};
use std::io;
use std::os::fd::RawFd;
use std::ptr;

use super::raw::{DEFAULT_ACTION, SIGSET, STACK, map_stack, sys};

/// One program to start.
pub struct Spawn<'a> {
    /// The file to run: a path (with a `/`), never searched on `PATH`.
    pub path: &'a CStr,
    /// Its arguments, the program's name (`argv[0]`) first.
    pub argv: &'a [CString],
    /// Its environment (`NAME=value`); `None`: this process's own.
    pub env: Option<&'a [CString]>,
    /// The folder to start it in; `None`: this process's.
    pub dir: Option<&'a CStr>,
    /// The process group to join; 0: a new one, whose id is the child's pid.
    pub group: i32,
    /// The descriptors to make its stdin, stdout and stderr; `None`: ours, inherited.
    pub stdio: [Option<RawFd>; 3],
}

/// Why a start failed.
#[derive(Debug)]
pub enum SpawnError {
    /// The child could not join the process group (`EPERM`: the group is gone).
    Group(io::Error),
    /// Anything else: no child, or no folder, no file, no permission to run it.
    Other(io::Error),
}

/// The step at which the child failed, and its error number; written by the child only.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Failure {
    step: i32,
    errno: i32,
}

const STEP_GROUP: i32 = 1;
const STEP_OTHER: i32 = 2;

/// What the child reads (in the parent's frame, which waits while the child uses it).
#[repr(C)]
struct Args {
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    dir: *const c_char,
    group: i32,
    stdio: [i32; 3],
    failure: Failure,
}

/// The calling thread's child stack, mapped at its first start, unmapped when it ends.
struct Stack(Cell<usize>);

impl Drop for Stack {
    fn drop(&mut self) {
        let base = self.0.get();
        if base != 0 {
            // SAFETY: our mapping; no child uses it (each start waits for its child's
            // `execve` or exit before it returns).
            unsafe { libc::munmap(base as *mut libc::c_void, STACK) };
        }
    }
}

thread_local! {
    static STACK_OF_THREAD: Stack = const { Stack(Cell::new(0)) };
}

fn stack_top() -> io::Result<usize> {
    STACK_OF_THREAD.with(|s| {
        if s.0.get() == 0 {
            s.0.set(map_stack()?);
        }
        Ok(s.0.get() + STACK)
    })
}

unsafe extern "C" {
    static environ: *const *const c_char;
}

/// Start `spec`; the child's pid. The caller reaps it.
pub fn spawn(spec: &Spawn<'_>) -> Result<i32, SpawnError> {
    let argv: Vec<*const c_char> =
        spec.argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(ptr::null())).collect();
    let envp: Option<Vec<*const c_char>> = spec
        .env
        .map(|env| env.iter().map(|e| e.as_ptr()).chain(std::iter::once(ptr::null())).collect());
    let mut args = Args {
        path: spec.path.as_ptr(),
        argv: argv.as_ptr(),
        // SAFETY: reading the pointer `environ` (the standard library's `set_var` is
        // `unsafe` for this reason: no other thread may read the environment meanwhile).
        envp: envp.as_ref().map_or_else(|| unsafe { environ }, |e| e.as_ptr()),
        dir: spec.dir.map_or(ptr::null(), CStr::as_ptr),
        group: spec.group,
        stdio: spec.stdio.map(|fd| fd.unwrap_or(-1)),
        failure: Failure::default(),
    };
    let top = stack_top().map_err(SpawnError::Other)?;
    let args_ptr: *mut Args = &mut args;
    // No signal may run this process's handlers in the child (which shares our memory)
    // before it has put them back to the default: every signal is blocked in this
    // thread around the clone (the child inherits the mask; it empties it last).
    // SAFETY: rt_sigprocmask on local sets; clone with a stack only the child
    // uses (this thread waits meanwhile: CLONE_VFORK) and a function that only makes raw
    // system calls and writes only `failure` (see `child`).
    let pid = unsafe {
        // All 64, the C library's own two included (its `pthread_sigmask` leaves those
        // out, and its handlers for them must not run in the child either).
        let all: u64 = !0;
        let mut old: u64 = 0;
        let (all_ptr, old_ptr) = (&all as *const u64 as usize, &mut old as *mut u64 as usize);
        sys(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK as usize, all_ptr, old_ptr, SIGSET);
        let pid = libc::clone(
            child,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            args_ptr.cast(),
        );
        let error = io::Error::last_os_error();
        sys(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK as usize, old_ptr, 0, SIGSET);
        if pid < 0 {
            return Err(SpawnError::Other(error));
        }
        pid
    };
    // SAFETY: the child wrote `failure` (if at all) before its `execve` or exit, which
    // this thread waited for; a volatile read, as the compiler did not see that write.
    let failure = unsafe { ptr::read_volatile(&raw const (*args_ptr).failure) };
    if failure.step == 0 {
        return Ok(pid);
    }
    // It exited (127): reap it.
    // SAFETY: waitpid on our own child, which nobody else reaps.
    unsafe {
        while libc::waitpid(pid, ptr::null_mut(), 0) < 0
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
    }
    let error = io::Error::from_raw_os_error(failure.errno);
    Err(if failure.step == STEP_GROUP {
        SpawnError::Group(error)
    } else {
        SpawnError::Other(error)
    })
}

/// The child, from `clone` to `execve`. Raw system calls only, on its own stack; it
/// writes nothing but `failure`.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    let args = arg as *mut Args;
    // SAFETY: `args` points at the parent's `Args`, alive while the parent waits; each
    // call's pointers are to locals, to `Args` fields or to the strings they point at.
    unsafe {
        let fail = |step: i32, ret: isize| -> ! {
            ptr::write_volatile(&raw mut (*args).failure, Failure { step, errno: -ret as i32 });
            loop {
                sys(libc::SYS_exit, 127, 0, 0, 0);
            }
        };
        // Dispositions: a handler goes back to the default, and so does SIGPIPE.
        for sig in 1..=64usize {
            if sig == libc::SIGKILL as usize || sig == libc::SIGSTOP as usize {
                continue;
            }
            let mut old = [0usize; 4];
            let handled = sys(libc::SYS_rt_sigaction, sig, 0, old.as_mut_ptr() as usize, SIGSET)
                == 0
                && old[0] != libc::SIG_DFL
                && old[0] != libc::SIG_IGN;
            if handled || sig == libc::SIGPIPE as usize {
                sys(libc::SYS_rt_sigaction, sig, DEFAULT_ACTION.as_ptr() as usize, 0, SIGSET);
            }
        }
        let ret = sys(libc::SYS_setpgid, 0, (*args).group as usize, 0, 0);
        if ret < 0 {
            fail(STEP_GROUP, ret);
        }
        if !(*args).dir.is_null() {
            let ret = sys(libc::SYS_chdir, (*args).dir as usize, 0, 0, 0);
            if ret < 0 {
                fail(STEP_OTHER, ret);
            }
        }
        for (target, &fd) in (*args).stdio.iter().enumerate() {
            let ret = if fd < 0 {
                0
            } else if fd as usize == target {
                // dup2 onto itself would leave close-on-exec set.
                sys(libc::SYS_fcntl, target, libc::F_SETFD as usize, 0, 0)
            } else {
                sys(libc::SYS_dup2, fd as usize, target, 0, 0)
            };
            if ret < 0 {
                fail(STEP_OTHER, ret);
            }
        }
        let empty: u64 = 0;
        sys(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as usize,
            &empty as *const u64 as usize,
            0,
            SIGSET,
        );
        let ret = sys(
            libc::SYS_execve,
            (*args).path as usize,
            (*args).argv as usize,
            (*args).envp as usize,
            0,
        );
        fail(STEP_OTHER, ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    /// A pipe (read end, write end), close-on-exec.
    fn pipe() -> (std::fs::File, OwnedFd) {
        let mut fds = [-1; 2];
        // SAFETY: pipe2 writes two new descriptors, which we then own.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors owned by nobody else.
        unsafe { (std::fs::File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// Run `argv` with `spawn` and the given environment, folder and group; its stdout
    /// and its exit status.
    fn run(
        argv: &[&str],
        env: Option<&[CString]>,
        dir: Option<&CStr>,
        group: i32,
    ) -> (String, i32) {
        let (mut out, write) = pipe();
        let argv: Vec<CString> = argv.iter().map(|a| c(a)).collect();
        let spec = Spawn {
            path: &argv[0],
            argv: &argv,
            env,
            dir,
            group,
            stdio: [None, Some(write.as_raw_fd()), None],
        };
        let pid = spawn(&spec).unwrap_or_else(|e| panic!("{e:?}"));
        drop(write);
        let mut text = String::new();
        out.read_to_string(&mut text).unwrap();
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        (text, status)
    }

    /// One line of `/proc/self/status` as the started program sees it, as a number.
    fn status_mask(status: &str, field: &str) -> u64 {
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    }

    extern "C" fn ignore(_: libc::c_int) {}

    #[test]
    fn the_program_gets_its_arguments_streams_folder_group_and_environment() {
        let (text, status) = run(&["/bin/echo", "a b", "c"], None, None, 0);
        assert_eq!((text.as_str(), status), ("a b c\n", 0));

        let env = [c("JOBPOOL_SPAWN_TEST=yes")];
        let (text, _) = run(&["/usr/bin/env"], Some(&env), None, 0);
        assert_eq!(text, "JOBPOOL_SPAWN_TEST=yes\n", "exactly the environment given");

        let (text, _) = run(&["/bin/pwd"], None, Some(&c("/usr")), 0);
        assert_eq!(text, "/usr\n");

        // A group of its own: its pid is its group id.
        let (text, _) = run(&["/bin/sh", "-c", "echo $$ $(ps -o pgid= -p $$)"], None, None, 0);
        let ids: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(ids.len(), 2, "{text}");
        assert_eq!(ids[0], ids[1], "{text}");
    }

    #[test]
    fn handlers_go_back_to_the_default_ignored_signals_stay_ignored_but_sigpipe() {
        // SIGURG: a handler of ours; SIGXFSZ: ignored; SIGPIPE: ignored by the test
        // harness's standard library. Neither changes how these tests run.
        // SAFETY: installing a handler that does nothing, and an ignored disposition.
        unsafe {
            libc::signal(libc::SIGURG, ignore as *const () as libc::sighandler_t);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
        let (status, code) = run(&["/bin/cat", "/proc/self/status"], None, None, 0);
        assert_eq!(code, 0);
        let bit = |sig: i32| 1u64 << (sig - 1);
        assert_eq!(status_mask(&status, "SigCgt:") & bit(libc::SIGURG), 0, "{status}");
        let ignored = status_mask(&status, "SigIgn:");
        assert_ne!(ignored & bit(libc::SIGXFSZ), 0, "{status}");
        assert_eq!(ignored & bit(libc::SIGPIPE), 0, "{status}");
        assert_eq!(status_mask(&status, "SigBlk:"), 0, "{status}");
    }

    #[test]
    fn each_failure_names_its_step() {
        let spec = |path: &'static CStr, dir: Option<&'static CStr>, group: i32| Spawn {
            path,
            argv: &[],
            env: None,
            dir,
            group,
            stdio: [None; 3],
        };
        let errno = |r: Result<i32, SpawnError>| match r {
            Err(SpawnError::Other(e)) => e.raw_os_error(),
            other => panic!("{other:?}"),
        };
        assert_eq!(errno(spawn(&spec(c"/nonexistent/program", None, 0))), Some(libc::ENOENT));
        // Not executable; executable but not a program (no `#!`: no shell is tried).
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("text");
        std::fs::write(&file, "echo hi\n").unwrap();
        let path = CString::new(file.to_str().unwrap()).unwrap();
        let path: &'static CStr = Box::leak(path.into_boxed_c_str());
        assert_eq!(errno(spawn(&spec(path, None, 0))), Some(libc::EACCES));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(errno(spawn(&spec(path, None, 0))), Some(libc::ENOEXEC));
        assert_eq!(errno(spawn(&spec(c"/bin/true", Some(c"/nonexistent"), 0))), Some(libc::ENOENT));

        // A group that no longer exists: the pid of a child already reaped.
        let gone = std::process::Command::new("/bin/true").spawn().unwrap();
        let gone_pid = gone.id() as i32;
        let _ = { gone }.wait();
        match spawn(&spec(c"/bin/true", None, gone_pid)) {
            Err(SpawnError::Group(e)) => assert_eq!(e.raw_os_error(), Some(libc::EPERM)),
            other => panic!("{other:?}"),
        }
    }
}
