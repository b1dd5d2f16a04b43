//! Typed access to the component's `config` table from heliosproxy.toml (nested tables arrive
//! with dotted keys: `[plugins.config.workload] olap = "x"` is `workload.olap`).

use crate::ConfigValue;

/// The configuration passed to `init`.
#[derive(Debug, Clone, Default)]
pub struct Config {
    entries: Vec<(String, ConfigValue)>,
}

impl Config {
    /// Wraps the raw list.
    pub fn new(entries: Vec<(String, ConfigValue)>) -> Self {
        Config { entries }
    }

    /// Builds a config from `(key, value)` pairs (tests).
    pub fn from_pairs<const N: usize>(pairs: [(&str, ConfigValue); N]) -> Self {
        Config {
            entries: pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    /// The raw value under `key`.
    pub fn get(&self, key: &str) -> Option<&ConfigValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A string value.
    pub fn text(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            ConfigValue::Text(s) => Some(s),
            _ => None,
        }
    }

    /// An integer value.
    pub fn integer(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            ConfigValue::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// A boolean value.
    pub fn boolean(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            ConfigValue::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// A list of strings (a single string counts as a list of one).
    pub fn texts(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(ConfigValue::Texts(v)) => v.clone(),
            Some(ConfigValue::Text(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    /// Keys under `prefix.` (one level), e.g. the workload names under `workload`.
    pub fn children(&self, prefix: &str) -> Vec<String> {
        let p = format!("{prefix}.");
        let mut out: Vec<String> = Vec::new();
        for (k, _) in &self.entries {
            if let Some(rest) = k.strip_prefix(&p) {
                let child = rest.split('.').next().unwrap_or(rest).to_owned();
                if !out.contains(&child) {
                    out.push(child);
                }
            }
        }
        out
    }
}
