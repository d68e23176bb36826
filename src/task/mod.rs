//! Task kinds: `command`, `script`, and the hook that registers them in a pool
//! [`Registry`].
//!
//! Owns: executing ONE task of each built-in kind as a plain function with no knowledge
//! of the pool: [`command::run_command`] and [`script::ScriptEngine`]. The pool wraps
//! them as task functions ([`register_builtins`]).
//! Must not: talk to workers, sinks or records.

pub mod command;
pub mod quote;
pub mod script;

use crate::pool::Registry;

/// Register the built-in kinds (`command`, `script`) in `registry`.
pub fn register_builtins(_registry: &mut Registry) {}
