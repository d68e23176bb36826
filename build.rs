//! Link the `jobpool` binary as a position-dependent executable (`-no-pie`) on Linux with
//! glibc: a PIE binary of this size carries ~18,000 relative relocations that the dynamic
//! loader applies, and pages it copies, in every process it starts — and a run starts at
//! least two (`jobpool` and one worker per slot). Measured with `perf stat`: ~0.3 ms of
//! CPU and ~120 page faults less per process (see the book's "Performance" page). Only
//! the binaries of this package are affected (`-bins`), not the library users link. The
//! main executable then loads at a fixed address (shared libraries stay randomised).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
