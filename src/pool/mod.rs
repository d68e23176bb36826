//! The process pool (skeleton; the pool issue fills it in).

pub mod worker;

/// Named task functions a worker can run.
#[derive(Default)]
pub struct Registry {
    names: Vec<String>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// A registry with the built-in kinds (`command`, `script`).
    pub fn with_builtins() -> Self {
        Registry { names: vec!["command".into(), "script".into()] }
    }

    /// The registered kinds' names, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut v = self.names.clone();
        v.sort();
        v
    }
}
