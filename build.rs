//! Link the `jobpool` program as a position-dependent executable on Linux, when it is
//! linked with the shared C library.
//!
//! The repository's `.cargo/config.toml` links it statically with the GNU C library at
//! a fixed address (`crt-static`, `relocation-model=static`): there is no dynamic
//! loader then, and nothing for this script to do. A dynamic link (other flags in
//! `RUSTFLAGS`, or a build outside this repository) gets the position-dependent link
//! below: a position-independent executable makes the dynamic loader apply some 19,000
//! relocations at every start, touching pages that would otherwise stay shared; in the
//! development VM that is about 0.15–0.2 ms of every `jobpool` command (`jobpool
//! --version`: 1.6 → 1.4 ms by hyperfine; a one-submission job 4.54 → 4.38 ms). The
//! price is that the program's own code is not placed at a random address (its
//! libraries still are). Set `JOBPOOL_LINK_PIE=1` when building to keep the default,
//! position-independent link. The code is compiled as before; only the program's link
//! changes, not the library, the tests or the examples.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=JOBPOOL_LINK_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let static_link = features.split(',').any(|f| f == "crt-static");
    if linux && !static_link && std::env::var_os("JOBPOOL_LINK_PIE").is_none() {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
