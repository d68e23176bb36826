//! Link the `jobpool` program as a position-dependent executable on Linux.
//!
//! A position-independent executable makes the dynamic loader apply some 19,000
//! relocations at every start, touching pages that would otherwise stay shared; in a
//! virtual machine that is about half a millisecond of every `jobpool` command
//! (measured: benches/compare.py, the one-submission job). The code is compiled as
//! before; only the program's link changes, not the library or the tests.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
