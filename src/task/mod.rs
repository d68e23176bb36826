//! TODO: task
