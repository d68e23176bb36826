//! Task kinds: `command`, `script`, and the hook that registers them in a pool
//! [`Registry`](crate::pool::Registry) (skeleton; the run issue fills it in).

use crate::pool::Registry;

/// Register the built-in kinds (`command`, `script`) in `registry`.
pub fn register_builtins(_registry: &mut Registry) {}
