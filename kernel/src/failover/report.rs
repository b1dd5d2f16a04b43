//! What `GET /api/topology` reports of the last failover or switchover.

use serde::Serialize;

/// One failover or switchover, as `GET /api/topology` reports the last one.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    /// "failover" (automatic) or "switchover" (planned).
    pub kind: &'static str,
    /// The old primary.
    pub from: String,
    /// The new primary.
    pub to: String,
    /// When it started, ms since the epoch.
    pub started_at_ms: u64,
    /// How long the gate was closed.
    pub duration_ms: u64,
    /// The old primary's WAL position the new one had to reach (switchover only).
    pub caught_up_to: Option<String>,
    /// The error, when it failed.
    pub error: Option<String>,
}
