//! Raw system calls for code that runs in a child sharing this process's memory (a
//! sentinel, a command between `clone` and `execve`): no C library call there, which
//! could write `errno` in the thread-local storage the child shares with its parent
//! thread, or take a lock another thread of ours holds.

/// A system call, made directly (never through the C library, which may set `errno`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn sys(n: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller's; `syscall` clobbers rcx and r11 only.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Elsewhere the sentinel is a fork (its memory is its own copy): the C library's call.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(super) unsafe fn sys(n: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
    // SAFETY: the caller's.
    unsafe { libc::syscall(n, a, b, c, d) as isize }
}

/// The kernel's `struct sigaction` (handler, flags, restorer, mask), all zero: the
/// default disposition. Zeroes read the same whatever the architecture's layout.
pub(super) const DEFAULT_ACTION: [usize; 4] = [0; 4];
/// The size of the kernel's signal set.
pub(super) const SIGSET: usize = 8;

/// A child's stack: plenty for the few calls a child of ours makes (glibc's `clone`
/// wrapper included), with a guard page below it.
pub(super) const STACK: usize = 64 * 1024;
/// A stack's lowest page: its guard.
pub(super) const PAGE: usize = 4096;

/// Map a fresh [`STACK`] for a child, its lowest page inaccessible (a guard); its base.
pub(super) fn map_stack() -> std::io::Result<usize> {
    // SAFETY: a fresh anonymous mapping; its lowest page is made inaccessible.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        libc::mprotect(p, PAGE, libc::PROT_NONE);
        Ok(p as usize)
    }
}
