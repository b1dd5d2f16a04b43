//! `[admin]` (the admin API, `/metrics` and the SQL admin console) and `[analytics]`
//! (per-fingerprint query statistics and the slow-query log).

use serde::Deserialize;

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Key required in `X-API-Key` (or `Authorization: Bearer`) by every endpoint except
    /// health; unset = those endpoints are closed.
    pub api_key: Option<String>,
    /// Key required (instead of `api_key`) to read the statement journal through
    /// `GET /api/journal`, which holds every client's SQL; unset = the endpoint is closed.
    pub journal_api_key: Option<String>,
    /// Key required in `X-Write-Key`, besides the key the request needs anyway, by the
    /// operations that write on their target or act as another user: a replay with
    /// `allow_writes` or `as_user`. Unset = those are refused.
    pub write_api_key: Option<String>,
    /// Login users allowed into the SQL admin console (`psql … <database>`); they
    /// authenticate like any client. Empty = the console is closed.
    pub users: Vec<String>,
    /// The database name that opens the admin console instead of a backend.
    pub database: String,
    /// Whether `GET /metrics` is served without the API key (Prometheus scrapers on a
    /// trusted network); by default it needs the key like every other endpoint.
    pub metrics_open: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            api_key: None,
            journal_api_key: None,
            write_api_key: None,
            users: Vec::new(),
            database: "heliosproxy".into(),
            metrics_open: false,
        }
    }
}

/// `[analytics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// Whether statements are counted per fingerprint.
    pub enabled: bool,
    /// Fingerprints kept; past it the least-called tenth is dropped to make room.
    pub max_entries: usize,
    /// Fraction of statements timed and counted (0 < rate ≤ 1); counts are scaled back up.
    pub sample_rate: f64,
    /// Statements at or over this many milliseconds are logged as slow; 0 turns the log off.
    pub slow_query_ms: u64,
    /// Whether any client may read `heliosproxy_query_stats` and `heliosproxy_cache_stats`
    /// as tables.
    pub sql_tables: bool,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            enabled: true,
            max_entries: 5000,
            sample_rate: 1.0,
            slow_query_ms: 100,
            sql_tables: true,
        }
    }
}

impl AnalyticsConfig {
    /// Problems with the values, each with its key path.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.sample_rate > 0.0 && self.sample_rate <= 1.0) {
            problems.push(format!(
                "analytics.sample_rate = {}: must be in (0, 1]",
                self.sample_rate
            ));
        }
        if self.enabled && self.max_entries == 0 {
            problems.push("analytics.max_entries = 0: must be at least 1".into());
        }
        problems
    }
}

impl AdminConfig {
    /// Problems with the values, each with its key path.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.database.is_empty() {
            problems.push("admin.database: must not be empty".into());
        }
        problems
    }
}

/// `[chaos]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChaosConfig {
    /// Whether `POST /api/chaos` may inject faults at all.
    pub enabled: bool,
}
