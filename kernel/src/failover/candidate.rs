//! Which standby to promote, and whether to promote at all: the best standby by
//! synchronous state and WAL replayed, and the evidence that the primary is really lost (the
//! standby no longer hears it either).

use std::time::Duration;

use crate::config::HaConfig;
use crate::topology::tracker;
use crate::topology::{Role, Topology};

/// The best standby to promote other than `exclude`: synchronous first, then most WAL
/// replayed.
pub fn best_standby(topology: &Topology, exclude: usize) -> Option<usize> {
    (0..topology.nodes.len())
        .filter(|&i| {
            let n = &topology.nodes[i];
            i != exclude && n.role() == Role::Replica && !n.is_down() && n.report().ok
        })
        .max_by_key(|&i| {
            let n = &topology.nodes[i];
            let sync = matches!(n.report().sync_state.as_deref(), Some("sync" | "quorum"));
            (sync, n.lsn())
        })
}

/// Why the primary is still alive as `standby` sees it (its WAL receiver streams from it),
/// or `None` when the standby has lost it too (or cannot be asked: then it cannot be
/// promoted either, and the promotion fails on its own).
pub(super) async fn primary_alive_for(
    topology: &Topology,
    standby: usize,
    ha: &HaConfig,
) -> Option<String> {
    let client = tracker::connect(topology, standby, ha).await.ok()?;
    let facts = tokio::time::timeout(
        Duration::from_millis(ha.check_timeout_ms),
        tracker::check(&client),
    )
    .await
    .ok()?
    .ok()?;
    (facts.in_recovery && facts.receiving).then(|| {
        format!(
            "standby {} still streams WAL from the primary (pg_stat_wal_receiver), so the \
             primary is alive and only this proxy cannot reach it",
            topology.nodes[standby].name()
        )
    })
}
