//! Health checks over a control connection per node (tokio-postgres): recovery state, WAL
//! position, replay lag and, on the primary, which standbys are synchronous. Roles are
//! discovered here, so a standby promoted by anyone is recognised as the new primary, and a
//! second node claiming to be primary is fenced. A primary that fails `failure_threshold`
//! consecutive checks is handed to the failover coordinator.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::{Role, Topology, now_ms};
use crate::config::HaConfig;

/// What one check of a node found.
#[derive(Debug, Clone)]
pub struct Facts {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// Current (primary) or replayed (standby) WAL position.
    pub lsn: u64,
    /// Seconds since the last replayed transaction, when the standby is behind.
    pub replay_lag_s: f64,
    /// `(application_name, sync_state)` of the standbys of a primary.
    pub standbys: Vec<(String, String)>,
    /// The timeline a writable node writes on (0 on a standby).
    pub timeline: u32,
    /// A standby's WAL receiver streams from its primary (evidence the primary is alive).
    pub receiving: bool,
}

const CHECK_SQL: &str = "select pg_is_in_recovery(), \
     (case when pg_is_in_recovery() then coalesce(pg_last_wal_replay_lsn(), '0/0'::pg_lsn) \
           else pg_current_wal_lsn() end - '0/0'::pg_lsn)::int8, \
     case when not pg_is_in_recovery() or pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() \
          then 0::float8 \
          else coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp()), 0)::float8 end, \
     case when pg_is_in_recovery() then 0 \
          else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end, \
     exists (select 1 from pg_stat_wal_receiver where status = 'streaming')";

const STANDBYS_SQL: &str = "select application_name, sync_state from pg_stat_replication";

/// The application_name of every control connection.
pub const MONITOR_APPLICATION: &str = "heliosproxy-monitor";

/// Opens a control connection to `node`.
pub async fn connect(topology: &Topology, node: usize, ha: &HaConfig) -> Result<Client, String> {
    let target = &topology.nodes[node].target;
    let mut config = tokio_postgres::Config::new();
    config
        .host(&target.host)
        .port(target.port)
        .user(&ha.user)
        .dbname(&ha.database)
        .application_name(MONITOR_APPLICATION)
        .connect_timeout(Duration::from_millis(ha.check_timeout_ms));
    if let Some(pw) = &ha.password {
        config.password(pw);
    }
    let (client, connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Runs one check on an open control connection.
pub async fn check(client: &Client) -> Result<Facts, String> {
    let row = client
        .query_one(CHECK_SQL, &[])
        .await
        .map_err(|e| e.to_string())?;
    let in_recovery: bool = row.get(0);
    let lsn: i64 = row.get(1);
    let replay_lag_s: f64 = row.get(2);
    let timeline: i32 = row.get(3);
    let receiving: bool = row.get(4);
    let standbys = if in_recovery {
        Vec::new()
    } else {
        client
            .query(STANDBYS_SQL, &[])
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|r| {
                (
                    r.get::<_, Option<String>>(0).unwrap_or_default(),
                    r.get::<_, Option<String>>(1).unwrap_or_default(),
                )
            })
            .collect()
    };
    Ok(Facts {
        in_recovery,
        lsn: lsn as u64,
        replay_lag_s,
        standbys,
        timeline: timeline as u32,
        receiving,
    })
}

/// Connects (when needed) and checks, within the check timeout.
async fn check_node(
    topology: &Topology,
    node: usize,
    ha: &HaConfig,
    client: &mut Option<Client>,
) -> Result<Facts, String> {
    if topology.nodes[node].target.chaos.partitioned() {
        *client = None;
        return Err("chaos mode: the node is partitioned away".into());
    }
    let run = async {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            *client = Some(connect(topology, node, ha).await?);
        }
        check(client.as_ref().expect("connected")).await
    };
    match tokio::time::timeout(Duration::from_millis(ha.check_timeout_ms), run).await {
        Ok(Ok(facts)) => Ok(facts),
        Ok(Err(e)) => {
            *client = None;
            Err(e)
        }
        Err(_) => {
            *client = None;
            Err(format!("no answer within {} ms", ha.check_timeout_ms))
        }
    }
}

/// Records a successful check and settles the node's role.
pub fn apply(topology: &Topology, node: usize, facts: &Facts) {
    let n = &topology.nodes[node];
    n.lsn.store(facts.lsn, Relaxed);
    n.down.store(false, Relaxed);
    n.breaker.success();
    {
        let mut report = n.report.lock().expect("report lock");
        report.checked_at_ms = now_ms();
        report.ok = true;
        report.error = None;
        report.consecutive_failures = 0;
        report.replay_lag_s = facts.in_recovery.then_some(facts.replay_lag_s);
        report.timeline = (!facts.in_recovery).then_some(facts.timeline);
        report.receiving = facts.in_recovery.then_some(facts.receiving);
    }
    let primary = topology.primary();
    if facts.in_recovery {
        n.set_role(Role::Replica);
    } else if node == primary {
        n.set_role(Role::Primary);
        for (name, sync) in &facts.standbys {
            if let Some(i) = topology.by_name(name) {
                topology.nodes[i]
                    .report
                    .lock()
                    .expect("report lock")
                    .sync_state = Some(sync.clone());
            }
        }
    } else if !topology.switching() && (n.role() != Role::Fenced || newer_timeline(topology, facts))
    {
        let current = &topology.nodes[primary];
        let current_lost =
            current.is_down() || matches!(current.role(), Role::Fenced | Role::Replica);
        if newer_timeline(topology, facts) {
            // Promoted by someone else (another proxy, an operator): it is the primary
            // now, and the one this proxy believed in is the one to fence.
            tracing::warn!(
                node = n.name(),
                old = current.name(),
                timeline = facts.timeline,
                "a node writes on a newer timeline than the primary: following it"
            );
            current.set_role(Role::Fenced);
            n.set_role(Role::Primary);
            topology.set_primary(node);
        } else if current_lost {
            tracing::warn!(
                node = n.name(),
                old = current.name(),
                "node left recovery while the primary is gone: it is the new primary"
            );
            current.set_role(Role::Fenced);
            topology.set_primary(node);
        } else {
            tracing::error!(
                node = n.name(),
                primary = current.name(),
                "a second node claims to be primary; fencing it (it receives no traffic)"
            );
            n.set_role(Role::Fenced);
        }
    }
}

/// Whether a writable node's timeline is newer than the primary's as last seen.
fn newer_timeline(topology: &Topology, facts: &Facts) -> bool {
    let current = topology.nodes[topology.primary()].report().timeline;
    !facts.in_recovery && current.is_some_and(|t| facts.timeline > t)
}

/// Records a failed check; returns the consecutive failure count.
fn record_failure(topology: &Topology, node: usize, error: String, threshold: u32) -> u32 {
    let n = &topology.nodes[node];
    n.breaker.failure();
    let mut report = n.report.lock().expect("report lock");
    report.checked_at_ms = now_ms();
    report.ok = false;
    report.error = Some(error);
    report.consecutive_failures += 1;
    if report.consecutive_failures >= threshold {
        n.down.store(true, Relaxed);
    }
    report.consecutive_failures
}

/// Checks every node once, concurrently, and applies what was found (used at start so the
/// first query already goes to the discovered primary).
pub async fn discover(topology: &Topology, ha: &HaConfig) {
    let checks = (0..topology.nodes.len()).map(|i| async move {
        let mut client = None;
        (i, check_node(topology, i, ha, &mut client).await)
    });
    let results = futures_util::future::join_all(checks).await;
    // Settle the primary first so replicas are judged against it: of the writable nodes,
    // the one on the newest timeline (after a failover the old primary may be writable
    // again, on the old timeline); on a tie, the configured primary, then config order.
    let current = topology.primary();
    let writable = results.iter().filter_map(|(i, r)| match r {
        Ok(f) if !f.in_recovery => Some((*i, f.timeline)),
        _ => None,
    });
    if let Some((i, _)) =
        writable.max_by_key(|&(i, timeline)| (timeline, i == current, std::cmp::Reverse(i)))
    {
        topology.primary.store(i, Relaxed);
    }
    for (i, result) in results {
        match result {
            Ok(facts) => apply(topology, i, &facts),
            Err(e) => {
                tracing::warn!(node = topology.nodes[i].name(), "health check failed: {e}");
                record_failure(topology, i, e, ha.failure_threshold);
            }
        }
    }
}

/// Checks `node` forever; calls `primary_down` when the primary fails its threshold.
pub async fn watch_node(
    topology: Arc<Topology>,
    node: usize,
    ha: HaConfig,
    primary_down: Arc<dyn Fn(usize) + Send + Sync>,
) {
    let mut client = None;
    let mut failing = false;
    let mut fenced = false;
    let mut rejoining = false;
    loop {
        match check_node(&topology, node, &ha, &mut client).await {
            Ok(facts) => {
                if failing {
                    tracing::info!(
                        node = topology.nodes[node].name(),
                        "health check passes again"
                    );
                }
                failing = false;
                apply(&topology, node, &facts);
                let replaced = !facts.in_recovery
                    && node != topology.primary()
                    && topology.nodes[node].role() == Role::Fenced;
                if !replaced {
                    fenced = false;
                    rejoining = false;
                } else if fenced
                    && !rejoining
                    && ha.rejoin
                    && topology.nodes[node].data_dir.is_some()
                {
                    rejoining = true;
                    let (topology, ha) = (topology.clone(), ha.clone());
                    tokio::spawn(async move {
                        let name = topology.nodes[node].name().to_owned();
                        match super::rejoin::rewind(topology, node, ha).await {
                            Ok(()) => {
                                tracing::warn!(node = %name, "the old primary was rewound and follows the new one")
                            }
                            Err(e) => {
                                tracing::error!(node = %name, "rewinding the old primary failed: {e}")
                            }
                        }
                    });
                } else if !fenced && let Some(c) = client.as_ref() {
                    // A replaced primary that answers again (it froze, or was cut off):
                    // nothing more may commit there.
                    match super::fence::fence(c).await {
                        Ok(ended) => {
                            fenced = true;
                            tracing::warn!(
                                node = topology.nodes[node].name(),
                                ended,
                                "the replaced primary is reachable again: fenced it read-only"
                            );
                        }
                        Err(e) => tracing::warn!(
                            node = topology.nodes[node].name(),
                            "fencing the replaced primary failed: {e}"
                        ),
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        node = topology.nodes[node].name(),
                        "health check failed: {e}"
                    );
                }
                failing = true;
                let failures = record_failure(&topology, node, e, ha.failure_threshold);
                if failures >= ha.failure_threshold
                    && node == topology.primary()
                    && !topology.switching()
                {
                    primary_down(node);
                }
            }
        }
        let wait = Duration::from_millis(if failing {
            ha.retry_interval_ms
        } else {
            ha.check_interval_ms
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = topology.nudges[node].notified() => {}
        }
    }
}

/// Records a WAL position learnt outside the regular checks (right after a promotion).
pub fn apply_lsn(topology: &Topology, node: usize, lsn: u64) {
    topology.nodes[node].lsn.store(lsn, Relaxed);
}
