//! The worker zygote: a copy of this program, forked while it was still one thread, that
//! forks process workers on request instead of `exec`ing the program again.
//!
//! Owns: starting the zygote ([`start`], called by the command line before it starts any
//! thread), its request loop (fork a worker, handing it its channel to the pool; reap
//! one), and the parent's side of it (`Zygote::spawn` and `forked`, `Zygote::reap`).
//! Must not: decide when a worker starts or ends (the pool's handle and dispatcher do),
//! or run anything but the worker's own code in a forked worker.
//!
//! Why: a fresh `exec` of this program costs about 1.6 ms here (the loader, relocations,
//! the C library's start-up, `cpuid` exits of the virtual machine), and a pool's workers
//! start in series on two cores. A fork of a small one-thread process costs about
//! 0.1 ms, and the worker it makes runs exactly the code an exec'd worker runs
//! ([`worker::serve_forked`](super::worker)), with the same registry.
//!
//! Why a zygote and not a fork of the pool's own process: the pool runs threads, and a
//! fork of a process with threads may copy a lock another thread holds (the allocator's,
//! stdout's, the environment's). The zygote is forked before any thread exists and stays
//! one thread, so each of its forks is an ordinary single-threaded fork.
//!
//! Lifetime: the zygote dies with this process (its parent-death signal, and end of file
//! on its socket), and every worker it forked dies with it (theirs). A worker is a child
//! of the zygote, which reaps it only when the pool asks (`Zygote::reap`), after the
//! pool has seen it exit on its pidfd: until then the worker's pid (and process group id)
//! stays reserved, as an unreaped child of the pool's own process would.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use serde::{Deserialize, Serialize};

use super::Registry;
use super::protocol::FromWorker;

/// Request codes on the zygote's socket.
const SPAWN: u8 = 1;
const REAP: u8 = 2;
/// Flag of a spawn request: the worker's stdout goes to stderr.
const STDOUT_TO_STDERR: u8 = 1;
/// How long the zygote may take to answer a request (its start-up hooks included), and
/// to exit when it is ended.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// What a spawn request hands the zygote, on its channel ([`Link::hands`]): the sending
/// end of the new worker's channel to its pool, which the forked worker inherits. So no
/// handshake socket is made for it (a folder and a socket file in the temporary
/// directory, `bind`, `listen`, `connect`, `accept`, all undone after: 80 µs of CPU a
/// worker here, on the disk's file system).
///
/// With it, the pool's context when it is not the one the zygote had last: the zygote
/// runs the registry's [`Registry::on_zygote_context`] functions with it before it forks,
/// so each worker starts with what they build (a compiled script).
#[derive(Serialize, Deserialize)]
pub(crate) struct Hand {
    to_pool: IpcSender<FromWorker>,
    context: Option<String>,
}

/// The parent's handle on its zygote.
pub(crate) struct Zygote {
    pid: i32,
    /// The program the zygote is a copy of: only pools that start this program use it.
    exe: PathBuf,
    link: Mutex<Link>,
    /// The same socket, read (without the lock) by the one requester whose turn it is.
    replies: UnixStream,
    /// A reply was read (for someone), or the link broke.
    replied: Condvar,
}

/// The parent's end of the zygote's socket. Requests are written under the lock, one
/// after the other, so a pool's spawn requests are pipelined: the zygote forks the next
/// worker as soon as it is done with the last (the answer to a spawn request goes on the
/// worker's channel, see [`Zygote::spawn`]). The zygote answers reap requests on the
/// socket, in order: each reply goes to the oldest reap request still waiting, read by
/// whichever requester's turn it is.
struct Link {
    sock: UnixStream,
    /// Each spawn request's [`Hand`], sent just before the request itself (under the same
    /// lock, so the zygote takes them in the same order).
    hands: IpcSender<Hand>,
    /// The last context a [`Hand`] carried.
    context: Option<Arc<str>>,
    /// The ticket of the next request.
    next: u64,
    /// Tickets of the requests written and not answered yet, oldest first.
    waiting: VecDeque<u64>,
    /// Replies read for requests whose thread has not taken them yet.
    answered: Vec<(u64, [i32; 2])>,
    /// A requester is reading a reply.
    reading: bool,
    /// The zygote failed a request (gone, or no answer in time): every later one fails.
    broken: bool,
}

impl Link {
    /// Give the zygote up for good: its socket is shut, so that every later request fails
    /// at once (workers are then exec'd) and no late answer is read as the answer to
    /// another request.
    fn give_up(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        self.broken = true;
        self.waiting.clear();
    }
}

static ZYGOTE: OnceLock<Zygote> = OnceLock::new();

/// Fork the zygote, if this process is still one thread (else do nothing: workers are
/// then `exec`'d as before). Call it early in `main`, before anything starts a thread,
/// with the registry a worker of this program serves; at most one zygote is started.
pub fn start(registry: &Registry) {
    if ZYGOTE.get().is_some() {
        return;
    }
    // One read of `/proc/self/stat` for the thread count and the argument strings'
    // place, which the zygote and its workers (copies: the same addresses) then know
    // without reading it again (a worker names itself before it connects).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    if stat_fields(&stat, 20, 1).is_none_or(|f| f[0] != 1) {
        return;
    }
    let _ = ARG_AREA.set(arg_area_in(&stat));
    let Ok(exe) = std::env::current_exe() else { return };
    let Ok((ours, theirs)) = UnixStream::pair() else { return };
    let Ok((hands, handed)) = ipc::channel::<Hand>() else { return };
    crate::process::remember_cpus();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: this process has one thread (checked above), so the child is a complete
    // copy of it: no lock can be held by a thread that does not exist there.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return;
    }
    if pid == 0 {
        drop((ours, hands));
        never_return(|| zygote_main(theirs, handed, registry, parent));
    }
    // It builds what every worker needs while we load the job: on another CPU.
    crate::process::start_elsewhere(pid);
    drop((theirs, handed));
    // A zygote that does not answer (a hook of the registry's that never returns) must not
    // hang the pool: after this long, it is given up (see `ask`).
    let _ = ours.set_read_timeout(Some(ANSWER_WITHIN));
    // SAFETY: setpgid on our own child (as it does itself; whichever runs first makes the
    // group): out of the terminal's process group, so a Ctrl-C for jobpool does not kill
    // it, as exec'd workers are.
    unsafe { libc::setpgid(pid, pid) };
    // No second handle on the socket to read replies from: no zygote after all (it exits
    // at the end of file on its socket).
    if let Ok(z) = Zygote::new(pid, exe, ours, hands) {
        let _ = ZYGOTE.set(z);
    }
}

/// End the zygote, if this process started one, and reap it: call it when no pool will
/// start workers any more (the command line does, before it exits). The zygote has
/// reaped the workers it forked, so their CPU time and peak memory are then counted in
/// this process's children, as an exec'd worker's are (`time`, `wait4`, hyperfine). A
/// zygote left running ends by itself when this process exits, uncounted.
pub fn stop() {
    let Some(z) = ZYGOTE.get() else { return };
    release();
    let pid = z.pid as u32;
    crate::process::wait_exit(pid, crate::process::pidfd_open(pid).as_ref(), ANSWER_WITHIN);
    let mut status = 0;
    // SAFETY: waitpid on our own child (reaped only here), with a valid out-pointer.
    while unsafe { libc::waitpid(z.pid, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
}

/// Tell the zygote, if this process started one, to exit, without waiting: call it once
/// no pool will start workers any more, so that it exits while this process finishes
/// its own work; [`stop`] then only reaps it. A pool that asks it for a worker later
/// gets an error (and starts its workers without it).
pub fn release() {
    let Some(z) = ZYGOTE.get() else { return };
    let link = z.link.lock().unwrap_or_else(|e| e.into_inner());
    // End of file on its socket: it exits (at once, unless it is still running a hook).
    let _ = link.sock.shutdown(std::net::Shutdown::Both);
}

/// The zygote of this process, when it has one and `program` is what it is a copy of.
pub(crate) fn for_program(program: &std::path::Path) -> Option<&'static Zygote> {
    ZYGOTE.get().filter(|z| z.exe == program)
}

/// `count` numeric fields of `stat` (the text of `/proc/self/stat`) from field number
/// `first` (1-based, as `proc(5)` numbers them; `first` > 2; field 20 is the thread count).
fn stat_fields(stat: &str, first: usize, count: usize) -> Option<Vec<usize>> {
    // The command name (field 2) is in parentheses and may hold spaces: count from the
    // last `)`, after which comes field 3.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<usize> =
        rest.split_whitespace().skip(first - 3).take(count).map_while(|f| f.parse().ok()).collect();
    (fields.len() == count).then_some(fields)
}

impl Zygote {
    /// The parent's handle on the zygote `pid`, a copy of `exe`, on our end `sock` of its
    /// socket and the sending end `hands` of its channel.
    fn new(pid: i32, exe: PathBuf, sock: UnixStream, hands: IpcSender<Hand>) -> io::Result<Zygote> {
        let replies = sock.try_clone()?;
        let link = Link {
            sock,
            hands,
            context: None,
            next: 0,
            waiting: VecDeque::new(),
            answered: Vec::new(),
            reading: false,
            broken: false,
        };
        Ok(Zygote { pid, exe, link: Mutex::new(link), replies, replied: Condvar::new() })
    }

    /// Ask for a worker that sends to its pool on `to_pool`, without waiting: the zygote
    /// answers on that channel, with `FromWorker::Forked` (see [`forked`]), so each
    /// pool thread waiting for a worker hears of its own at once, rather than after the
    /// replies on the shared socket were read in turn (each reader woken by the one
    /// before: 0.4 ms for the fourth of four workers here). A pool asks for all its
    /// workers at once, before it starts the threads that wait for them.
    pub(crate) fn spawn(
        &self,
        to_pool: IpcSender<FromWorker>,
        context: &Arc<str>,
        stdout_to_stderr: bool,
    ) -> io::Result<()> {
        let flags = if stdout_to_stderr { STDOUT_TO_STDERR } else { 0 };
        let mut link = self.link.lock().unwrap_or_else(|e| e.into_inner());
        if link.broken {
            return Err(io::Error::other("the zygote was given up"));
        }
        let new = link.context.as_deref() != Some(&**context);
        let hand = Hand { to_pool, context: new.then(|| context.to_string()) };
        let sent = link.hands.send(hand).map_err(|e| io::Error::other(format!("{e:?}")));
        if let Err(e) = sent.and_then(|()| link.sock.write_all(&[SPAWN, flags, 0, 0])) {
            link.give_up();
            self.replied.notify_all();
            return Err(e);
        }
        if new {
            link.context = Some(context.clone());
        }
        Ok(())
    }

    /// Give the zygote up for good: a worker it was asked for did not come in time.
    pub(crate) fn give_up(&self) {
        self.link.lock().unwrap_or_else(|e| e.into_inner()).give_up();
        self.replied.notify_all();
    }

    /// Reap a worker this zygote forked, which has exited (the caller saw it on its
    /// pidfd, or killed it); its exit status. Waits at most `timeout` for it to become
    /// reapable; `None` when its status cannot be had.
    pub(crate) fn reap(&self, pid: u32, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut req = [0u8; 8];
        req[0] = REAP;
        req[4..].copy_from_slice(&(pid as i32).to_le_bytes());
        loop {
            let reply = self.ask(&req).ok()?;
            match reply[0] {
                r if r == pid as i32 => return Some(ExitStatus::from_raw(reply[1])),
                0 if Instant::now() < deadline => std::thread::sleep(Duration::from_micros(200)),
                _ => return None,
            }
        }
    }

    /// One request, one reply of two `i32`s, from any thread: see [`Link`]. A zygote that
    /// fails one (gone, or no answer within [`ANSWER_WITHIN`]) is given up for good
    /// ([`Link::give_up`]); every request waiting then fails too.
    fn ask(&self, req: &[u8]) -> io::Result<[i32; 2]> {
        let lock = || self.link.lock().unwrap_or_else(|e| e.into_inner());
        let mut link = lock();
        if link.broken {
            return Err(io::Error::other("the zygote was given up"));
        }
        if let Err(e) = link.sock.write_all(req) {
            link.give_up();
            self.replied.notify_all();
            return Err(e);
        }
        let ticket = link.next;
        link.next += 1;
        link.waiting.push_back(ticket);
        loop {
            if let Some(at) = link.answered.iter().position(|(t, _)| *t == ticket) {
                return Ok(link.answered.swap_remove(at).1);
            }
            if link.broken {
                return Err(io::Error::other("the zygote did not answer"));
            }
            if link.reading {
                link = self.replied.wait(link).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Our turn to read the next reply, whoever's it is.
            link.reading = true;
            drop(link);
            let mut buf = [0u8; 8];
            let read = (&self.replies).read_exact(&mut buf);
            link = lock();
            link.reading = false;
            match (read, link.waiting.pop_front()) {
                (Ok(()), Some(oldest)) => {
                    let word =
                        |i: usize| i32::from_le_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
                    link.answered.push((oldest, [word(0), word(4)]));
                }
                _ => link.give_up(),
            }
            self.replied.notify_all();
        }
    }
}

/// The zygote's life: serve requests until the parent is gone, then exit.
fn zygote_main(
    mut sock: UnixStream,
    handed: IpcReceiver<Hand>,
    registry: &Registry,
    parent: i32,
) -> ! {
    // SAFETY: prctl, getppid, setpgid and _exit only concern this process.
    unsafe {
        libc::setpgid(0, 0);
        // Die with the parent, even a SIGKILLed one; the workers die with us (theirs).
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(0);
        }
    }
    name_process(c"jobpool-zygote", &["jobpool", "__jobpool-zygote"]);
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    // While the parent is still loading the job: what every worker builds first.
    registry.zygote_started();
    // Whether the CPUs the parent placed us on were given back.
    let mut placed = false;
    loop {
        let mut head = [0u8; 4];
        if sock.read_exact(&mut head).is_err() {
            // The parent closed its end: it is exiting. Workers still running get their
            // parent-death signal when we go.
            // SAFETY: _exit ends this process without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        let reply: [i32; 2] = match head[0] {
            SPAWN => {
                // Sent before the request: here already, unless the parent is gone.
                let Ok(mut hand) = handed.recv() else {
                    // SAFETY: as above.
                    unsafe { libc::_exit(0) }
                };
                if let Some(context) = hand.context.take() {
                    registry.zygote_context(&context);
                }
                if !placed {
                    // The parent placed us before it could send this: every CPU again,
                    // for the workers to inherit.
                    crate::process::run_anywhere();
                    placed = true;
                }
                // SAFETY: this process has one thread.
                match unsafe { libc::fork() } {
                    // Its pool hears of it on the worker's channel: closed without a word.
                    -1 => continue,
                    0 => {
                        let fd = sock.as_raw_fd();
                        // The zygote's channel is not the worker's to hold open.
                        drop(handed);
                        never_return(|| worker_main(fd, registry, hand.to_pool, head[1], me));
                    }
                    pid => {
                        // SAFETY: setpgid on our own child, which has not exec'd.
                        unsafe { libc::setpgid(pid, pid) };
                        // The answer goes on the worker's channel (see `Zygote::spawn`);
                        // then it is the worker's alone: its pool sees it gone when it is.
                        let _ = hand.to_pool.send(FromWorker::Forked { pid: pid as u32 });
                        drop(hand);
                        continue;
                    }
                }
            }
            REAP => {
                let mut rest = [0u8; 4];
                if sock.read_exact(&mut rest).is_err() {
                    // SAFETY: as above.
                    unsafe { libc::_exit(0) };
                }
                let pid = i32::from_le_bytes(rest);
                let mut status = 0;
                // SAFETY: waitpid on a child of ours, with a valid out-pointer.
                let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                [r, status]
            }
            // SAFETY: as above (a request this program never sends).
            _ => unsafe { libc::_exit(70) },
        };
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&reply[0].to_le_bytes());
        out[4..].copy_from_slice(&reply[1].to_le_bytes());
        if sock.write_all(&out).is_err() {
            // SAFETY: as above.
            unsafe { libc::_exit(0) };
        }
    }
}

/// The pid of the worker the zygote forked for the channel `rx` (see [`Zygote::spawn`]),
/// with the worker's own first message if it came first; `None` when the zygote made
/// none: it could not fork, it is gone, or it said nothing within [`ANSWER_WITHIN`]
/// (then it is given up, as when it does not answer a request).
pub(crate) fn forked(
    z: &Zygote,
    rx: &IpcReceiver<FromWorker>,
) -> Option<(u32, Option<FromWorker>)> {
    forked_within(z, rx, ANSWER_WITHIN)
}

fn forked_within(
    z: &Zygote,
    rx: &IpcReceiver<FromWorker>,
    within: Duration,
) -> Option<(u32, Option<FromWorker>)> {
    let deadline = Instant::now() + within;
    let mut early = None;
    loop {
        match rx.try_recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(FromWorker::Forked { pid }) => return Some((pid, early)),
            // The worker's hello, before the zygote's word: kept for the handshake.
            Ok(message) if early.is_none() => early = Some(message),
            Ok(_) => return None,
            Err(ipc_channel::TryRecvError::Empty) => {
                z.give_up();
                return None;
            }
            Err(_) => return None,
        }
    }
}

/// Run the life of a forked process (the zygote, a worker), which must end inside it: a
/// panic that unwound out of it would return into the copy of `main` it was forked in,
/// and run the command line a second time. So a panic ends the process (code 70).
fn never_return(life: impl FnOnce() -> std::convert::Infallible) -> ! {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(life));
    // SAFETY: _exit ends this process without running the parent's destructors.
    unsafe { libc::_exit(70) }
}

/// A forked worker: set up as an exec'd worker would be (its own process group, stdin
/// from `/dev/null`, stdout where the pool wants it, no zygote socket), then serve.
fn worker_main(
    zygote_sock: i32,
    registry: &Registry,
    to_pool: IpcSender<FromWorker>,
    flags: u8,
    zygote: i32,
) -> ! {
    // SAFETY: close, setpgid, open and dup2 only concern this process's descriptors.
    unsafe {
        libc::close(zygote_sock);
        libc::setpgid(0, 0);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if null > 0 {
            libc::dup2(null, 0);
            libc::close(null);
        }
        if flags & STDOUT_TO_STDERR != 0 {
            libc::dup2(2, 1);
        }
    }
    name_process(c"jobpool-worker", &["jobpool", super::protocol::WORKER_ARG]);
    super::worker::serve_forked(registry, to_pool, zygote)
}

/// Name this forked process as an exec'd one would be named, for `ps`, `top` and tools
/// that look for workers: its `comm` (`/proc/self/comm`, 15 bytes at most) and, where the
/// original command line is long enough to hold them, its arguments
/// (`/proc/self/cmdline`), overwritten in place as `setproctitle` does.
fn name_process(comm: &std::ffi::CStr, args: &[&str]) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of ours.
    unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
    let Some((start, end)) = arg_area() else { return };
    let mut text: Vec<u8> = args.join("\0").into_bytes();
    text.push(0);
    let Some(len) = end.checked_sub(start).filter(|&len| len >= text.len()) else { return };
    text.resize(len, 0);
    // SAFETY: [start, end) is this process's argument strings (the kernel's `arg_start`
    // and `arg_end`), writable memory on the initial stack that only the strings use;
    // nothing in a forked worker reads them back but `/proc`.
    unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), start as *mut u8, len) };
}

/// Where this process's argument strings are, as [`start`] read it before it forked
/// (the zygote and its workers, the only processes that rename themselves, are copies).
static ARG_AREA: OnceLock<Option<(usize, usize)>> = OnceLock::new();

fn arg_area() -> Option<(usize, usize)> {
    ARG_AREA.get().copied().flatten()
}

/// Where the argument strings are: fields 48 and 49 of `stat`.
fn arg_area_in(stat: &str) -> Option<(usize, usize)> {
    let f = stat_fields(stat, 48, 2)?;
    (f[0] > 0 && f[1] > f[0]).then_some((f[0], f[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle on a stand-in zygote: a thread that answers each 8-byte request `[_, _,
    /// _, _, x]` with `[x, 2x]`, after a pause that varies, and hangs up after `answers`.
    fn stand_in(answers: usize) -> (Zygote, std::thread::JoinHandle<()>) {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let server = std::thread::spawn(move || {
            for k in 0..answers {
                let mut req = [0u8; 8];
                if theirs.read_exact(&mut req).is_err() {
                    return;
                }
                if k % 7 == 0 {
                    std::thread::sleep(Duration::from_micros(300));
                }
                let x = i32::from_le_bytes(req[4..].try_into().unwrap());
                let mut out = [0u8; 8];
                out[..4].copy_from_slice(&x.to_le_bytes());
                out[4..].copy_from_slice(&(2 * x).to_le_bytes());
                if theirs.write_all(&out).is_err() {
                    return;
                }
            }
        });
        let (hands, _) = ipc::channel().unwrap();
        (Zygote::new(0, PathBuf::new(), ours, hands).unwrap(), server)
    }

    fn request(x: i32) -> [u8; 8] {
        let mut req = [REAP, 0, 0, 0, 0, 0, 0, 0];
        req[4..].copy_from_slice(&x.to_le_bytes());
        req
    }

    #[test]
    fn requests_from_many_threads_each_get_their_own_answer() {
        let (z, server) = stand_in(8 * 50);
        std::thread::scope(|s| {
            for t in 0..8 {
                let z = &z;
                s.spawn(move || {
                    for k in 0..50 {
                        let x = t * 1000 + k;
                        assert_eq!(z.ask(&request(x)).unwrap(), [x, 2 * x]);
                    }
                });
            }
        });
        server.join().unwrap();
    }

    #[test]
    fn each_worker_gets_its_channel_its_pid_on_it_and_a_pool_context_goes_once() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (hands, handed) = ipc::channel::<Hand>().unwrap();
        let z = Zygote::new(0, PathBuf::new(), ours, hands).unwrap();
        // The stand-in "forks" each worker, whose hello comes before the zygote's word
        // for odd pids, and hands the context it got, if any, back to the test.
        let stand_in = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for pid in 1..=4u32 {
                let mut head = [0u8; 4];
                theirs.read_exact(&mut head).unwrap();
                assert_eq!(head[0], SPAWN);
                let hand = handed.recv().unwrap();
                if pid % 2 == 1 {
                    hand.to_pool.send(FromWorker::Refused { pid: 100 + pid }).unwrap();
                }
                hand.to_pool.send(FromWorker::Forked { pid }).unwrap();
                seen.push(hand.context);
            }
            seen
        });
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("pool a"), Arc::from("pool b"));
        for (pid, context) in [(1, &a), (2, &a), (3, &b), (4, &b)] {
            let (tx, rx) = ipc::channel::<FromWorker>().unwrap();
            z.spawn(tx, context, false).unwrap();
            let (got, early) = forked(&z, &rx).unwrap();
            assert_eq!(got, pid);
            // The worker's message that came first is kept for its handshake.
            match early {
                Some(FromWorker::Refused { pid: p }) => assert_eq!(p, 100 + pid),
                None => assert_eq!(pid % 2, 0),
                _ => panic!("another message"),
            }
        }
        let seen = stand_in.join().unwrap();
        assert_eq!(seen, [Some("pool a".into()), None, Some("pool b".into()), None]);
        // A channel closed without the zygote's word: no worker.
        let (tx, rx) = ipc::channel::<FromWorker>().unwrap();
        drop(tx);
        assert!(forked(&z, &rx).is_none());
    }

    #[test]
    fn a_zygote_that_sends_no_pid_in_time_is_given_up() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let (hands, handed) = ipc::channel::<Hand>().unwrap();
        let z = Zygote::new(0, PathBuf::new(), ours, hands).unwrap();
        let (tx, rx) = ipc::channel::<FromWorker>().unwrap();
        z.spawn(tx, &Arc::from("pool"), false).unwrap();
        // The zygote holds the channel (it got the hand) and says nothing.
        let _held = handed.recv().unwrap();
        assert!(forked_within(&z, &rx, Duration::from_millis(50)).is_none());
        // Given up: the next pool starts its workers without it.
        let (tx, _rx) = ipc::channel::<FromWorker>().unwrap();
        assert!(z.spawn(tx, &Arc::from("pool"), false).is_err());
    }

    #[test]
    fn a_zygote_that_hangs_up_fails_every_waiting_request_and_every_later_one() {
        let (z, server) = stand_in(10);
        let failed = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (z, failed) = (&z, &failed);
                s.spawn(move || {
                    for k in 0..10 {
                        let x = t * 1000 + k;
                        match z.ask(&request(x)) {
                            Ok(answer) => assert_eq!(answer, [x, 2 * x]),
                            Err(_) => {
                                failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                    }
                });
            }
        });
        server.join().unwrap();
        // At most 10 answered (one may be lost: a request that found the socket shut
        // gives the zygote up before the last answer is read).
        assert!(failed.into_inner() >= 30);
        assert!(z.ask(&request(1)).is_err());
    }
}
