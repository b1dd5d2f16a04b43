//! `[upgrade]`: the major-version upgrade orchestrator — which node is upgraded to which,
//! the databases moved, the stages run on their ticks, and when to cut.

use std::time::Duration;

use serde::Deserialize;

use crate::when::de_duration;

/// The upgrade orchestrator's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeConfig {
    /// Whether `POST /api/upgrade/start` may run it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The node upgraded from (the primary now).
    pub from_backend: String,
    /// The node upgraded to (a `[[nodes]]` entry, a server of the new major version).
    pub to_backend: String,
    /// Databases replicated.
    #[serde(default = "default_databases")]
    pub databases: Vec<String>,
    /// A superuser on both servers (publications, subscriptions, sequences).
    #[serde(default = "default_user")]
    pub user: String,
    /// Its password, when the servers ask for one.
    pub password: Option<String>,
    /// Copy the schema with `pg_dump --schema-only` (off: it exists on the new server).
    #[serde(default = "yes")]
    pub copy_schema: bool,
    /// How long live reads are compared on the new server before a cut.
    #[serde(default = "default_window", deserialize_with = "de_duration")]
    pub shadow_window: Duration,
    /// Most divergent statements a window may have and still allow the cut.
    #[serde(default)]
    pub cut_threshold: u64,
    /// Fewest statements a window must have compared to allow the cut.
    #[serde(default = "one")]
    pub min_compared: u64,
    /// Cut as soon as a window allows it (off: wait for `POST /api/upgrade/cut`).
    #[serde(default = "yes")]
    pub auto_cut: bool,
    /// How long the cut may hold queries while the new server catches up.
    #[serde(default = "default_catch_up", deserialize_with = "de_duration")]
    pub catch_up_timeout: Duration,
    /// SQL run on a schedule while the upgrade runs.
    #[serde(default)]
    pub stages: Vec<StageConfig>,
}

/// One stage: SQL run every `tick`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Its name.
    pub name: String,
    /// How often.
    #[serde(deserialize_with = "de_duration")]
    pub tick: Duration,
    /// The SQL (one or more statements).
    pub sql: String,
    /// Which server runs it: `to` (default) or `from`.
    #[serde(default)]
    pub on: StageServer,
    /// Database (default: the first of `databases`).
    pub database: Option<String>,
}

/// Which server a stage runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageServer {
    /// The new server.
    #[default]
    To,
    /// The old server.
    From,
}

fn yes() -> bool {
    true
}

fn one() -> u64 {
    1
}

fn default_databases() -> Vec<String> {
    vec!["postgres".into()]
}

fn default_user() -> String {
    "postgres".into()
}

fn default_window() -> Duration {
    Duration::from_secs(300)
}

fn default_catch_up() -> Duration {
    Duration::from_secs(10)
}

impl UpgradeConfig {
    /// Problems with these settings against the node names.
    pub fn problems(&self, nodes: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for (key, name) in [
            ("from_backend", &self.from_backend),
            ("to_backend", &self.to_backend),
        ] {
            if !nodes.contains(name) {
                out.push(format!(
                    "upgrade.{key}: no node named {name:?} in [[nodes]]"
                ));
            }
        }
        if self.from_backend == self.to_backend {
            out.push("upgrade.to_backend: must differ from from_backend".into());
        }
        if self.databases.is_empty() {
            out.push("upgrade.databases: name at least one database".into());
        }
        for (i, db) in self.databases.iter().enumerate() {
            if db.is_empty() || db.contains(['"', '\'', '\0']) {
                out.push(format!(
                    "upgrade.databases[{i}]: not a usable database name"
                ));
            }
        }
        if self.shadow_window < Duration::from_secs(1) {
            out.push("upgrade.shadow_window: at least 1s".into());
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.tick < Duration::from_millis(100) {
                out.push(format!("upgrade.stages[{i}].tick: at least 100ms"));
            }
            if s.database
                .as_ref()
                .is_some_and(|d| !self.databases.contains(d))
            {
                out.push(format!(
                    "upgrade.stages[{i}].database: not one of upgrade.databases"
                ));
            }
        }
        out
    }
}
