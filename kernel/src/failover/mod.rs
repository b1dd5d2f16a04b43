//! Failover and planned switchover: pick the best standby (synchronous ones first, then the
//! least replay lag), promote it with `pg_promote()`, wait until it leaves recovery, fence
//! the old primary and move the write target — with the switchover gate closed meanwhile, so
//! new queries wait instead of failing. One failover runs at a time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::HaConfig;
use crate::topology::tracker;
mod candidate;
mod lease;
mod report;

pub use report::FailoverReport;

use crate::topology::{Role, Topology, format_lsn, now_ms};
pub use candidate::best_standby;
use candidate::primary_alive_for;

/// Why a failover or switchover did not happen.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// Topology tracking is off.
    #[error("failover needs an [ha] section")]
    NotConfigured,
    /// Another failover is running.
    #[error("a failover is already under way")]
    Busy,
    /// No standby can take over.
    #[error("no healthy standby to promote")]
    NoCandidate,
    /// The requested target cannot take over.
    #[error("node {0} cannot be promoted: {1}")]
    BadTarget(String, String),
    /// A step failed.
    #[error("{step} on {node}: {message}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// Where.
        node: String,
        /// Why it failed.
        message: String,
    },
}

/// What failover needs of the server pools: closing a node's idle connections once it is
/// no longer the primary, and how many are lent out (drained before a switchover).
pub trait ServerConnections: Send + Sync {
    /// Closes the idle connections to `node`; how many were closed.
    fn close_idle_on(&self, node: &str) -> usize;
    /// Connections to `node` lent to clients.
    fn in_use_on(&self, node: &str) -> usize;
    /// Severs every connection to `node`, lent or idle; how many.
    fn sever_on(&self, node: &str) -> usize;
}

impl ServerConnections for crate::pool::Pools {
    fn close_idle_on(&self, node: &str) -> usize {
        crate::pool::Pools::close_idle_on(self, node)
    }

    fn in_use_on(&self, node: &str) -> usize {
        crate::pool::Pools::in_use_on(self, node)
    }

    fn sever_on(&self, node: &str) -> usize {
        crate::pool::Pools::sever_on(self, node)
    }
}

/// Runs failovers and switchovers one at a time and remembers the last one.
pub struct Coordinator {
    running: tokio::sync::Mutex<()>,
    last: Mutex<Option<FailoverReport>>,
    /// Failovers and switchovers that completed, and those that failed.
    pub completed: std::sync::atomic::AtomicU64,
    /// Failovers and switchovers that failed.
    pub failed: std::sync::atomic::AtomicU64,
    /// A failover is held back because a standby still hears the primary (logged once).
    pub held_back: std::sync::atomic::AtomicBool,
    ha: Option<HaConfig>,
    topology: Arc<Topology>,
    servers: Arc<dyn ServerConnections>,
}

impl Coordinator {
    /// A coordinator for `topology` (failover needs `ha`), closing connections through
    /// `servers`.
    pub fn new(
        ha: Option<HaConfig>,
        topology: Arc<Topology>,
        servers: Arc<dyn ServerConnections>,
    ) -> Self {
        Coordinator {
            running: tokio::sync::Mutex::new(()),
            last: Mutex::new(None),
            completed: Default::default(),
            failed: Default::default(),
            held_back: Default::default(),
            ha,
            topology,
            servers,
        }
    }

    /// The last failover or switchover.
    pub fn last(&self) -> Option<FailoverReport> {
        self.last.lock().expect("failover lock").clone()
    }

    fn remember(&self, report: FailoverReport) {
        let counter = if report.error.is_none() {
            &self.completed
        } else {
            &self.failed
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self.last.lock().expect("failover lock") = Some(report);
    }
}

/// Promotes the best standby because the primary `failed` its health checks (automatic
/// mode). Does nothing when the primary changed or recovered meanwhile.
pub async fn automatic(coordinator: Arc<Coordinator>, failed: usize) {
    let Some(ha) = coordinator.ha.clone() else {
        return;
    };
    let Ok(_running) = coordinator.running.try_lock() else {
        return;
    };
    let topology = &coordinator.topology;
    if topology.primary() != failed || !topology.nodes[failed].is_down() {
        return;
    }
    let candidate = best_standby(topology, failed);
    if let Some(target) = candidate
        && let Some(why) = primary_alive_for(topology, target, &ha).await
    {
        // Evidence, not hope: the standby still hears the primary, so the fault is between
        // this proxy and the primary. The primary stays; the checks go on.
        if !coordinator
            .held_back
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::error!(
                primary = topology.nodes[failed].name(),
                standby = topology.nodes[target].name(),
                "not failing over: {why}"
            );
        }
        return;
    }
    // One proxy decides: the holder of the lease, who then looks again.
    let _lease = match lease::take(topology, &ha, failed).await {
        Ok(lease) => lease,
        Err(why) => {
            if !coordinator
                .held_back
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::error!(
                    primary = topology.nodes[failed].name(),
                    "not failing over: {why}"
                );
            }
            return;
        }
    };
    if let Some(node) = lease::promoted_elsewhere(topology, &ha, failed).await {
        tracing::warn!(
            node = topology.nodes[node].name(),
            "not failing over: another proxy promoted this node; following it"
        );
        return;
    }
    coordinator
        .held_back
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let started_at_ms = now_ms();
    topology.begin_switch();
    let from = topology.nodes[failed].name().to_owned();
    let result = match candidate {
        None => Err(FailoverError::NoCandidate),
        Some(target) => promote(topology, target, &ha).await.map(|_| target),
    };
    let report = match result {
        Ok(target) => {
            topology.nodes[failed].set_role(Role::Fenced);
            topology.set_primary(target);
            // Requests in flight on the old primary may never be answered (a frozen or
            // partitioned server): their sessions move now, like after a crash.
            let severed = coordinator.servers.sever_on(&from);
            if ha.rejoin {
                tokio::spawn(crate::topology::rejoin::repoint_standbys(
                    topology.clone(),
                    target,
                    ha.clone(),
                ));
            }
            let to = topology.nodes[target].name().to_owned();
            tracing::warn!(
                from,
                to,
                ms = started.elapsed().as_millis() as u64,
                severed,
                "failover: promoted a standby"
            );
            FailoverReport {
                kind: "failover",
                from,
                to,
                started_at_ms,
                duration_ms: started.elapsed().as_millis() as u64,
                caught_up_to: None,
                error: None,
            }
        }
        Err(e) => {
            tracing::error!(from, "failover failed: {e}");
            FailoverReport {
                kind: "failover",
                from,
                to: String::new(),
                started_at_ms,
                duration_ms: started.elapsed().as_millis() as u64,
                caught_up_to: None,
                error: Some(e.to_string()),
            }
        }
    };
    topology.end_switch();
    coordinator.remember(report);
}

/// A planned switchover to `target` (or the best standby): new queries wait, transactions
/// on the old primary get up to the buffer timeout to finish, the old primary is made
/// read-only and its remaining sessions ended, the target catches up with its last WAL
/// position and is promoted. When the primary is down already (manual failover mode), the
/// target is promoted at once.
pub async fn switchover(
    coordinator: &Coordinator,
    target: Option<&str>,
) -> Result<FailoverReport, FailoverError> {
    let ha = coordinator.ha.clone().ok_or(FailoverError::NotConfigured)?;
    let _running = coordinator
        .running
        .try_lock()
        .map_err(|_| FailoverError::Busy)?;
    let topology = &coordinator.topology;
    let old = topology.primary();
    let target = match target {
        Some(name) => {
            let i = topology
                .by_name(name)
                .ok_or_else(|| FailoverError::BadTarget(name.into(), "no such node".into()))?;
            let n = &topology.nodes[i];
            if i == old {
                return Err(FailoverError::BadTarget(
                    name.into(),
                    "it is the primary already".into(),
                ));
            }
            if n.role() != Role::Replica || n.is_down() {
                return Err(FailoverError::BadTarget(
                    name.into(),
                    format!("it is not a healthy standby (role {:?})", n.role()),
                ));
            }
            i
        }
        None => best_standby(topology, old).ok_or(FailoverError::NoCandidate)?,
    };
    let started = Instant::now();
    let started_at_ms = now_ms();
    topology.begin_switch();
    let result = if topology.nodes[old].is_down() {
        promote(topology, target, &ha).await.map(|_| 0)
    } else {
        switch_to(coordinator, old, target, &ha).await
    };
    let from = topology.nodes[old].name().to_owned();
    let to = topology.nodes[target].name().to_owned();
    let report = FailoverReport {
        kind: "switchover",
        from: from.clone(),
        to: to.clone(),
        started_at_ms,
        duration_ms: started.elapsed().as_millis() as u64,
        caught_up_to: result
            .as_ref()
            .ok()
            .filter(|&&lsn| lsn > 0)
            .map(|&lsn| format_lsn(lsn)),
        error: result.as_ref().err().map(|e| e.to_string()),
    };
    if result.is_ok() {
        topology.nodes[old].set_role(Role::Fenced);
        topology.set_primary(target);
        // What outlasted the drain would wait on a read-only node: it moves now.
        coordinator.servers.sever_on(&from);
        if ha.rejoin {
            tokio::spawn(crate::topology::rejoin::repoint_standbys(
                topology.clone(),
                target,
                ha.clone(),
            ));
        }
        tracing::warn!(from, to, ms = report.duration_ms, "switchover done");
    }
    topology.end_switch();
    coordinator.remember(report.clone());
    result.map(|_| report)
}

/// The switchover's steps with the gate closed; returns the LSN the target caught up to.
async fn switch_to(
    coordinator: &Coordinator,
    old: usize,
    target: usize,
    ha: &HaConfig,
) -> Result<u64, FailoverError> {
    let topology = &coordinator.topology;
    let old_name = topology.nodes[old].name().to_owned();
    // Let transactions in flight on the old primary finish.
    let drain_until = Instant::now() + Duration::from_millis(ha.buffer_timeout_ms / 2);
    while coordinator.servers.in_use_on(&old_name) > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let control = tracker::connect(topology, old, ha)
        .await
        .map_err(failed("connect", &old_name))?;
    crate::topology::fence::fence(&control)
        .await
        .map_err(|e| failed("making read-only", &old_name)(e.to_string()))?;
    let row = control
        .query_one("select (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8", &[])
        .await
        .map_err(|e| failed("reading the WAL position", &old_name)(e.to_string()))?;
    let lsn = row.get::<_, i64>(0) as u64;
    let target_name = topology.nodes[target].name().to_owned();
    let standby = tracker::connect(topology, target, ha)
        .await
        .map_err(failed("connect", &target_name))?;
    let deadline = Instant::now() + Duration::from_millis(ha.promote_timeout_ms);
    loop {
        let facts = tracker::check(&standby)
            .await
            .map_err(failed("checking", &target_name))?;
        if facts.lsn >= lsn {
            break;
        }
        if Instant::now() > deadline {
            // Give the old primary its writes back: nothing changed.
            let _ = writable_again(&control).await;
            return Err(failed("catching up", &target_name)(format!(
                "replayed {} of {} within {} ms",
                format_lsn(facts.lsn),
                format_lsn(lsn),
                ha.promote_timeout_ms
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    promote(topology, target, ha).await?;
    Ok(lsn)
}

/// Clears `synchronous_standby_names` on a new primary that has it: nothing follows the
/// new primary yet, so every commit would wait for a standby that cannot confirm it.
async fn relax_synchronous_standbys(
    topology: &Topology,
    client: &tokio_postgres::Client,
    name: &str,
) -> Result<(), String> {
    let names: String = client
        .query_one("select current_setting('synchronous_standby_names')", &[])
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    if names.trim().is_empty() {
        return Ok(());
    }
    // Each alone: ALTER SYSTEM refuses to run inside a multi-statement query.
    for sql in [
        "ALTER SYSTEM SET synchronous_standby_names = ''",
        "SELECT pg_reload_conf()",
    ] {
        client.batch_execute(sql).await.map_err(|e| e.to_string())?;
    }
    // The reload is asynchronous: wait (briefly) until this backend sees it.
    for _ in 0..100 {
        let now: String = client
            .query_one("select current_setting('synchronous_standby_names')", &[])
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        if now.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::warn!(
        node = name,
        previous = %names,
        "the new primary had synchronous_standby_names set; cleared so it takes writes (ha.relax_synchronous_standbys)"
    );
    *topology.relaxed_sync.lock().expect("topology lock") = Some((name.to_owned(), names));
    Ok(())
}

/// Promotes `node` and waits until it accepts writes.
async fn promote(topology: &Topology, node: usize, ha: &HaConfig) -> Result<(), FailoverError> {
    let name = topology.nodes[node].name().to_owned();
    let client = tracker::connect(topology, node, ha)
        .await
        .map_err(failed("connect", &name))?;
    let wait_s = (ha.promote_timeout_ms / 1000).max(1) as i32;
    let started = Instant::now();
    let promoted: bool = client
        .query_one("select pg_promote(true, $1)", &[&wait_s])
        .await
        .map_err(|e| failed("pg_promote", &name)(e.to_string()))?
        .get(0);
    tracing::info!(node = %name, ms = started.elapsed().as_millis() as u64, "pg_promote returned");
    if !promoted {
        return Err(failed("pg_promote", &name)(format!(
            "not promoted within {wait_s} s"
        )));
    }
    let deadline = Instant::now() + Duration::from_millis(ha.promote_timeout_ms);
    loop {
        let facts = tracker::check(&client)
            .await
            .map_err(failed("checking", &name))?;
        if !facts.in_recovery {
            // A node fenced read-only by an earlier switchover takes writes again.
            // Before any new transaction on it: the first id it hands out. Interrupted
            // commits with an id at or past this never reached it.
            let horizon: i64 = client
                .query_one("select txid_snapshot_xmax(txid_current_snapshot())", &[])
                .await
                .map_err(|e| failed("reading the transaction id horizon", &name)(e.to_string()))?
                .get(0);
            topology.set_xid_horizon(horizon as u64);
            writable_again(&client)
                .await
                .map_err(|e| failed("re-enabling writes", &name)(e.to_string()))?;
            if ha.relax_synchronous_standbys {
                relax_synchronous_standbys(topology, &client, &name)
                    .await
                    .map_err(|e| failed("clearing synchronous_standby_names", &name)(e))?;
            }
            tracker::apply_lsn(topology, node, facts.lsn);
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(failed("leaving recovery", &name)(format!(
                "still in recovery after {} ms",
                ha.promote_timeout_ms
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The error of a failed step on `node`, from the message.
fn failed(step: &'static str, node: &str) -> impl FnOnce(String) -> FailoverError {
    let node = node.to_owned();
    move |message| FailoverError::Step {
        step,
        node,
        message,
    }
}

/// Undoes the read-only fence of an earlier switchover.
async fn writable_again(client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute("alter system reset default_transaction_read_only")
        .await?;
    client.batch_execute("select pg_reload_conf()").await
}
