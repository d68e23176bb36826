//! The integration tests: one binary that drives the real `jobpool` executable and the
//! library from outside (the pool's own fault tests are `tests/pool.rs`, a binary without
//! the test harness because its workers re-execute it).

mod record_support;
mod run_support;

mod boundaries;
mod command_kind;
mod custom_kinds;
mod diagnostic_pages;
mod docs;
mod exec;
mod fuzz_jobfiles;
mod init;
mod jobfiles;
mod layering;
mod pool_examples;
mod report;
mod run;
mod run_faults;
mod script_kind;
mod shards;
mod sinks;
mod store;
mod transcripts;
mod watch;
