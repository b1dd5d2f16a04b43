//! `[[plugins]]` and `[plugin_runtime]`: which components load, from where, with which
//! grants, hooks and failure policy, and the limits every component call runs under.

use std::path::PathBuf;

use serde::Deserialize;

/// A hook point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookName {
    /// Once per session.
    #[serde(alias = "Authenticate")]
    Authenticate,
    /// Before a statement (also spelled as on the product page: `PreQuery`).
    #[serde(alias = "PreQuery", alias = "pre_query")]
    PreQuery,
    /// On the final SQL.
    #[serde(alias = "Validate")]
    Validate,
    /// Node choice.
    #[serde(alias = "Route")]
    Route,
    /// After a statement.
    #[serde(alias = "PostQuery", alias = "post_query")]
    PostQuery,
}

impl HookName {
    /// Every hook, in pipeline order.
    pub const ALL: [HookName; 5] = [
        HookName::Authenticate,
        HookName::PreQuery,
        HookName::Validate,
        HookName::Route,
        HookName::PostQuery,
    ];

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HookName::Authenticate => "authenticate",
            HookName::PreQuery => "pre-query",
            HookName::Validate => "validate",
            HookName::Route => "route",
            HookName::PostQuery => "post-query",
        }
    }

    /// Security hooks fail closed unless configured otherwise.
    pub fn default_on_error(self) -> OnError {
        match self {
            HookName::Authenticate | HookName::Validate => OnError::Deny,
            _ => OnError::Allow,
        }
    }
}

/// What happens when a component call traps, times out or runs out of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// The statement (or login) is refused.
    Deny,
    /// The component is skipped for this call.
    Allow,
}

/// A host capability a component may import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    /// Per-component key/value store.
    Kv,
    /// Hashes and MACs.
    Crypto,
    /// Logging.
    Log,
    /// Wall clock.
    Clock,
    /// Node list, roles, health and lag.
    Topology,
}

impl Grant {
    /// The WIT interface name this grant allows.
    pub fn interface(self) -> &'static str {
        match self {
            Grant::Kv => "kv",
            Grant::Crypto => "crypto",
            Grant::Log => "log",
            Grant::Clock => "clock",
            Grant::Topology => "topology",
        }
    }
}

/// `[[plugins]]`: one component and its limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Unique name, used in errors and the admin API.
    pub name: String,
    /// Where the component comes from: a path to a `.wasm` file.
    pub source: String,
    /// Hooks to enable; empty = every hook the component declares.
    #[serde(default)]
    pub hooks: Vec<HookName>,
    /// Host interfaces the component may import.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Failure policy for every hook; unset = deny for authenticate/validate, allow for others.
    #[serde(default)]
    pub on_error: Option<OnError>,
    /// CPU deadline per call, in milliseconds.
    #[serde(default = "default_plugin_timeout_ms")]
    pub timeout_ms: u64,
    /// Linear memory limit per instance, in MiB.
    #[serde(default = "default_plugin_memory_mb")]
    pub memory_mb: u64,
    /// Instances created at load (more are created when calls overlap).
    #[serde(default = "default_plugin_instances")]
    pub instances: usize,
    /// Passed to the component's `init`.
    #[serde(default)]
    pub config: toml::Table,
    /// Result rows a PostQuery hook may read per statement (`context.result-rows`), in
    /// bytes of row data; 0 = none. The kernel copies rows only while some component asks.
    #[serde(default)]
    pub post_query_rows_bytes: usize,
    /// Files or `http(s)://` URLs the component may read through the `documents` interface,
    /// by the name it asks for (`documents = { jwks = "/etc/heliosproxy/jwks.json" }`); read
    /// again when they change (files) or fetched again (URLs).
    #[serde(default)]
    pub documents: std::collections::BTreeMap<String, String>,
}

fn default_plugin_timeout_ms() -> u64 {
    10
}

fn default_plugin_memory_mb() -> u64 {
    16
}

fn default_plugin_instances() -> usize {
    2
}

/// `[plugin_runtime]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginRuntimeConfig {
    /// Where compiled components are cached by digest; unset = no disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Upper bound on live component instances across all components.
    pub max_instances: u32,
    /// Directory of trusted Ed25519 `*.pub` keys; when set, only signed artefacts whose
    /// signature verifies are loaded.
    pub trust_root: Option<PathBuf>,
    /// Registries (`host:port`) reached over plain HTTP instead of HTTPS (loopback tests,
    /// private mirrors).
    pub insecure_registries: Vec<String>,
    /// How long pulling a component from a registry may take.
    pub registry_timeout_ms: u64,
}

impl Default for PluginRuntimeConfig {
    fn default() -> Self {
        PluginRuntimeConfig {
            cache_dir: None,
            max_instances: 256,
            trust_root: None,
            insecure_registries: Vec::new(),
            registry_timeout_ms: 20_000,
        }
    }
}
