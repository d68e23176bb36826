//! The floor for the `command` kind: spawn `/bin/true` N times, 2 at a time, from Rust.
//! Built by `benches/compare.py` with `rustc -O`; not part of the crate.
use std::process::Command;
use std::thread;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let threads: Vec<_> = (0..2)
        .map(|t| {
            thread::spawn(move || {
                for _ in (t..n).step_by(2) {
                    let status = Command::new("/bin/true").status().expect("spawn /bin/true");
                    assert!(status.success());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
