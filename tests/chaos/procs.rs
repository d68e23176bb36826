//! Processes and mounts of a trial: finding a trial's processes by the marker in their
//! environment, the workers and task processes of a jobpool, and the sink folder's
//! mounts (a tmpfs, a read-only bind) with a guard that always undoes them.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The environment variable every process of a trial inherits from its jobpool.
pub const MARK_VAR: &str = "CHAOS_TRIAL_MARK";

#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    pub cmdline: Vec<String>,
}

impl Proc {
    pub fn read(pid: i32) -> Option<Proc> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let mut rest = stat.rsplit(')').next()?.split_whitespace();
        let state = rest.next()?.chars().next()?;
        let ppid = rest.next()?.parse().ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Some(Proc { pid, ppid, state, cmdline })
    }

    pub fn describe(&self) -> String {
        let mut cmd = self.cmdline.join(" ").replace('\n', "\\n");
        if cmd.len() > 120 {
            cmd.truncate(120);
            cmd.push('…');
        }
        format!("pid {} (ppid {}, state {}): {cmd}", self.pid, self.ppid, self.state)
    }
}

fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Live (not zombie) processes whose environment carries `MARK_VAR=mark`.
pub fn marked(mark: &str) -> Vec<Proc> {
    let needle = format!("{MARK_VAR}={mark}\0").into_bytes();
    pids()
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_slice()))
        })
        .filter_map(Proc::read)
        .filter(|p| p.state != 'Z')
        .collect()
}

/// Whether `p` is a worker of the jobpool `parent`: its `__jobpool-worker` child
/// (exec'd), or a child of its `__jobpool-zygote` child (forked); `all` is every process.
fn is_worker_of(p: &Proc, parent: i32, all: &[Proc]) -> bool {
    let arg1 = |p: &Proc, a: &str| p.cmdline.get(1).is_some_and(|x| x == a);
    arg1(p, "__jobpool-worker")
        && (p.ppid == parent
            || all
                .iter()
                .any(|z| z.pid == p.ppid && z.ppid == parent && arg1(z, "__jobpool-zygote")))
}

/// The workers of `parent` (see `is_worker_of`), by pid.
pub fn workers(parent: i32, mark: &str) -> Vec<Proc> {
    let all = marked(mark);
    let mut w: Vec<Proc> = all.iter().filter(|p| is_worker_of(p, parent, &all)).cloned().collect();
    w.sort_by_key(|p| p.pid);
    w
}

/// Task processes (the `sh -c SCRIPT sh i b s` a worker started) and their index `i`.
pub fn tasks(parent: i32, mark: &str) -> Vec<(Proc, usize)> {
    let all = marked(mark);
    let worker_pids: Vec<i32> =
        all.iter().filter(|p| is_worker_of(p, parent, &all)).map(|p| p.pid).collect();
    let mut t: Vec<(Proc, usize)> = all
        .into_iter()
        .filter(|p| worker_pids.contains(&p.ppid) && p.cmdline.first().is_some_and(|a| a == "sh"))
        .filter_map(|p| {
            let i = p.cmdline.get(4)?.parse().ok()?;
            Some((p, i))
        })
        .collect();
    t.sort_by_key(|(p, _)| p.pid);
    t
}

/// Task processes started by `parent` itself (`backend = "threads"`) and their index.
pub fn thread_tasks(parent: i32, mark: &str) -> Vec<(Proc, usize)> {
    let mut t: Vec<(Proc, usize)> = marked(mark)
        .into_iter()
        .filter(|p| p.ppid == parent && p.cmdline.first().is_some_and(|a| a == "sh"))
        .filter_map(|p| {
            let i = p.cmdline.get(4)?.parse().ok()?;
            Some((p, i))
        })
        .collect();
    t.sort_by_key(|(p, _)| p.pid);
    t
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) of a process this trial started (found by its marker or its pid).
    unsafe { libc::kill(pid, sig) };
}

/// Wait up to `within` for every marked process to be gone; return those still alive.
pub fn survivors(mark: &str, within: Duration) -> Vec<Proc> {
    let deadline = Instant::now() + within;
    loop {
        let alive = marked(mark);
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILL every marked process until none is left (bounded).
pub fn kill_all(mark: &str) {
    for _ in 0..100 {
        let alive = marked(mark);
        if alive.is_empty() {
            return;
        }
        for p in &alive {
            signal(p.pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: u64,
    data: Option<&str>,
) -> Result<(), String> {
    let src = src.map(|s| CString::new(s).unwrap());
    let fstype = fstype.map(|s| CString::new(s).unwrap());
    let data = data.map(|s| CString::new(s).unwrap());
    let target_c = cpath(target);
    // SAFETY: mount(2) with valid C strings (or null) that outlive the call.
    let rc = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target_c.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags as libc::c_ulong,
            data.as_ref().map_or(std::ptr::null(), |s| s.as_ptr().cast()),
        )
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error().to_string()) }
}

fn umount(target: &Path) {
    let c = cpath(target);
    // SAFETY: umount2(2) of a mount this guard made.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

/// Size of the sink folder's tmpfs: room for every sink of 300 records, twice.
const TMPFS_OPTS: &str = "size=4m,mode=0755";

/// The mounts on the sink folder; every one is undone on drop.
pub struct SinkMounts {
    dir: PathBuf,
    /// Mounts stacked on `dir`, newest last.
    stack: Vec<&'static str>,
    filler: Option<PathBuf>,
    chmodded: bool,
}

impl SinkMounts {
    pub fn new(dir: &Path) -> SinkMounts {
        SinkMounts { dir: dir.to_path_buf(), stack: Vec::new(), filler: None, chmodded: false }
    }

    pub fn mount_tmpfs(&mut self) -> Result<(), String> {
        mount(Some("chaos"), &self.dir, Some("tmpfs"), 0, Some(TMPFS_OPTS))?;
        self.stack.push("tmpfs");
        Ok(())
    }

    pub fn has_tmpfs(&self) -> bool {
        self.stack.contains(&"tmpfs")
    }

    /// Make the sink folder read-only: a read-only bind mount on itself (root ignores
    /// permissions), or else mode 0555 (for a user that cannot mount).
    pub fn read_only(&mut self) -> Result<&'static str, String> {
        let bind = mount(Some(self.dir.to_str().unwrap()), &self.dir, None, libc::MS_BIND, None)
            .and_then(|()| {
                self.stack.push("bind");
                mount(
                    None,
                    &self.dir,
                    None,
                    libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                    None,
                )
            });
        match bind {
            Ok(()) => Ok("read-only bind mount"),
            Err(e) if unsafe { libc::geteuid() } != 0 => {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o555))
                    .map_err(|e| e.to_string())?;
                self.chmodded = true;
                let _ = e;
                Ok("mode 0555")
            }
            Err(e) => Err(e),
        }
    }

    /// Fill the tmpfs to the last byte with one file.
    pub fn fill(&mut self) -> Result<(), String> {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut f = fs::File::create(&path).map_err(|e| e.to_string())?;
        self.filler = Some(path);
        let block = vec![0u8; 64 * 1024];
        for size in [64 * 1024, 4096, 512, 1] {
            while f.write_all(&block[..size]).is_ok() {}
        }
        Ok(())
    }

    /// Undo the round's faults (read-only, full), keeping the tmpfs.
    pub fn restore(&mut self) {
        if let Some(f) = self.filler.take() {
            let _ = fs::remove_file(f);
        }
        if self.chmodded {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o755));
            self.chmodded = false;
        }
        while self.stack.last() == Some(&"bind") {
            umount(&self.dir);
            self.stack.pop();
        }
    }
}

impl Drop for SinkMounts {
    fn drop(&mut self) {
        self.restore();
        while self.stack.pop().is_some() {
            umount(&self.dir);
        }
    }
}
