//! The backend nodes as the kernel knows them: configured role and tags, the role, WAL
//! position and replay lag discovered by the health checks (`tracker`), a circuit breaker
//! per node (`breaker`), which node is the primary now, and the switchover gate that holds
//! new queries while a failover is under way.

pub mod breaker;
pub mod fence;
pub mod rejoin;
pub mod switch;
pub mod tracker;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::config::{Config, NodeRole};
use crate::plugins::host::{NodeFacts, TopologySource};
use crate::pool::ConnectTarget;
use breaker::{Breaker, BreakerConfig, BreakerState};

/// How long a node that refused a connection is treated as unhealthy.
const UNHEALTHY_FOR: Duration = Duration::from_secs(5);

/// A node's role as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Not known yet (never checked).
    Unknown,
    /// Accepts writes.
    Primary,
    /// In recovery.
    Replica,
    /// A primary the proxy no longer routes to: the old primary after a failover or a
    /// switchover, or a second node claiming to be primary.
    Fenced,
}

impl Role {
    fn from_u8(v: u8) -> Role {
        match v {
            1 => Role::Primary,
            2 => Role::Replica,
            3 => Role::Fenced,
            _ => Role::Unknown,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Role::Unknown => 0,
            Role::Primary => 1,
            Role::Replica => 2,
            Role::Fenced => 3,
        }
    }
}

/// What the last health check found out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Milliseconds since the epoch of the last check.
    pub checked_at_ms: u64,
    /// Whether it succeeded.
    pub ok: bool,
    /// Its error, when it failed.
    pub error: Option<String>,
    /// Consecutive failed checks.
    pub consecutive_failures: u32,
    /// Replay lag in seconds reported by a standby.
    pub replay_lag_s: Option<f64>,
    /// `pg_stat_replication.sync_state` of this standby as the primary reports it.
    pub sync_state: Option<String>,
    /// The timeline a writable node writes on (from its current WAL file's name).
    pub timeline: Option<u32>,
    /// Whether a standby's WAL receiver is streaming from its primary.
    pub receiving: Option<bool>,
}

/// One backend node.
pub struct Node {
    /// Where to connect.
    pub target: Arc<ConnectTarget>,
    /// Role from config.
    pub configured: NodeRole,
    /// Tags from config.
    pub tags: Vec<String>,
    /// Data directory from config, when the proxy may manage the server (`[ha] rejoin`).
    pub data_dir: Option<std::path::PathBuf>,
    /// Circuit breaker.
    pub breaker: Breaker,
    role: AtomicU8,
    /// WAL position: current on a primary, replayed on a standby (0 when unknown).
    lsn: AtomicU64,
    /// Set when the node failed `failure_threshold` consecutive checks.
    down: AtomicBool,
    unhealthy_until_ms: AtomicU64,
    report: Mutex<CheckReport>,
}

impl Node {
    /// Whether the node is believed to accept connections and its breaker lets traffic in.
    pub fn healthy(&self) -> bool {
        self.unhealthy_until_ms.load(Relaxed) <= now_ms()
            && !self.down.load(Relaxed)
            && self.breaker.admits()
    }

    /// A connection attempt failed.
    pub fn mark_unhealthy(&self) {
        self.unhealthy_until_ms
            .store(now_ms() + UNHEALTHY_FOR.as_millis() as u64, Relaxed);
        self.breaker.failure();
    }

    /// A connection attempt succeeded.
    pub fn mark_healthy(&self) {
        if self.unhealthy_until_ms.load(Relaxed) != 0 {
            self.unhealthy_until_ms.store(0, Relaxed);
        }
        self.breaker.success();
    }

    /// The role as last seen.
    pub fn role(&self) -> Role {
        Role::from_u8(self.role.load(Relaxed))
    }

    /// Sets the role.
    pub fn set_role(&self, role: Role) {
        self.role.store(role.as_u8(), Relaxed);
    }

    /// WAL position (0 when unknown).
    pub fn lsn(&self) -> u64 {
        self.lsn.load(Relaxed)
    }

    /// Whether the node failed its last `failure_threshold` checks.
    pub fn is_down(&self) -> bool {
        self.down.load(Relaxed)
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.target.node
    }

    /// The last check's findings.
    pub fn report(&self) -> CheckReport {
        self.report.lock().expect("report lock").clone()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why a query could not wait for a switchover.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BufferError {
    /// Too many queries are waiting already.
    #[error("the primary is unavailable and {0} queries are already waiting for a new one")]
    Full(usize),
    /// No new primary within the buffer timeout.
    #[error("the primary is unavailable and no new primary took over within {0} ms")]
    TimedOut(u64),
}

/// The switchover gate: while `in_progress`, new queries wait for the new primary.
#[derive(Debug, Clone, Copy, Default)]
struct Switch {
    in_progress: bool,
    /// Bumped every time the primary changes.
    generation: u64,
}

/// Every configured node and which one is the primary.
pub struct Topology {
    /// Nodes in config order.
    pub nodes: Vec<Node>,
    primary: AtomicUsize,
    next_replica: AtomicUsize,
    max_lag_bytes: Option<u64>,
    switching: AtomicBool,
    switch: watch::Sender<Switch>,
    waiters: AtomicUsize,
    buffer_max_waiters: usize,
    buffer_timeout: Duration,
    nudges: Vec<Notify>,
    xid_horizon: AtomicU64,
    /// The last promotion cleared `synchronous_standby_names` on the new primary: the node
    /// and the value it had.
    pub relaxed_sync: std::sync::Mutex<Option<(String, String)>>,
}

impl Topology {
    /// Builds the node list; `tls` is the backend TLS connector when configured.
    pub fn new(config: &Config, tls: Option<Arc<rustls::ClientConfig>>) -> Topology {
        let breaker = config
            .ha
            .as_ref()
            .map(|ha| BreakerConfig {
                failures: ha.breaker_failures,
                reset: Duration::from_millis(ha.breaker_reset_ms),
                half_open: ha.breaker_half_open_requests,
            })
            .unwrap_or_default();
        let nodes: Vec<Node> = config
            .nodes
            .iter()
            .map(|n| Node {
                target: Arc::new(ConnectTarget {
                    node: n.name.clone(),
                    host: n.host.clone(),
                    port: n.port,
                    sslmode: config.backend_tls.sslmode,
                    tls: tls.clone(),
                    connect_timeout: Duration::from_millis(config.pool.connect_timeout_ms),
                    chaos: Default::default(),
                }),
                configured: n.role,
                tags: n.tags.clone(),
                data_dir: n.data_dir.clone(),
                breaker: Breaker::new(breaker),
                role: AtomicU8::new(
                    match n.role {
                        NodeRole::Primary => Role::Primary,
                        NodeRole::Replica => Role::Replica,
                        NodeRole::Auto => Role::Unknown,
                    }
                    .as_u8(),
                ),
                lsn: AtomicU64::new(0),
                down: AtomicBool::new(false),
                unhealthy_until_ms: AtomicU64::new(0),
                report: Mutex::new(CheckReport::default()),
            })
            .collect();
        let primary = nodes
            .iter()
            .position(|n| n.configured == NodeRole::Primary)
            .unwrap_or(0);
        let nudges = nodes.iter().map(|_| Notify::new()).collect();
        let (buffer_max_waiters, buffer_timeout) = config
            .ha
            .as_ref()
            .map(|ha| {
                (
                    ha.buffer_max_waiters,
                    Duration::from_millis(ha.buffer_timeout_ms),
                )
            })
            // An upgrade's cut holds queries too, for at most its catch-up time.
            .or_else(|| {
                config
                    .upgrade
                    .as_ref()
                    .map(|u| (10_000, u.catch_up_timeout + Duration::from_secs(5)))
            })
            .unwrap_or((0, Duration::ZERO));
        Topology {
            nodes,
            primary: AtomicUsize::new(primary),
            next_replica: AtomicUsize::new(0),
            max_lag_bytes: config.ha.as_ref().map(|ha| ha.max_replica_lag_bytes),
            switching: AtomicBool::new(false),
            switch: watch::Sender::new(Switch::default()),
            waiters: AtomicUsize::new(0),
            buffer_max_waiters,
            buffer_timeout,
            nudges,
            xid_horizon: AtomicU64::new(0),
            relaxed_sync: std::sync::Mutex::new(None),
        }
    }

    /// The first transaction id the latest promoted primary can hand out: ids at or past it
    /// were never seen there (0 when unknown).
    pub fn xid_horizon(&self) -> u64 {
        self.xid_horizon.load(Relaxed)
    }

    /// Records the promoted primary's transaction id horizon (before it is made primary).
    pub fn set_xid_horizon(&self, horizon: u64) {
        self.xid_horizon.store(horizon, Relaxed);
    }

    /// Index of the primary.
    pub fn primary(&self) -> usize {
        self.primary.load(Relaxed)
    }

    /// Makes `node` the primary (after a promotion); bumps the generation.
    pub fn set_primary(&self, node: usize) {
        self.primary.store(node, Relaxed);
        self.nodes[node].set_role(Role::Primary);
        self.nodes[node].down.store(false, Relaxed);
        self.switch.send_modify(|s| s.generation += 1);
    }

    /// How many times the primary changed since start.
    pub fn generation(&self) -> u64 {
        self.switch.borrow().generation
    }

    /// Replay lag of `node` behind the primary in bytes, when both positions are known.
    pub fn lag_bytes(&self, node: usize) -> Option<u64> {
        let primary = self.nodes[self.primary()].lsn();
        let lsn = self.nodes[node].lsn();
        (primary != 0 && lsn != 0).then(|| primary.saturating_sub(lsn))
    }

    /// Whether `node` may serve reads: a healthy replica within the lag threshold.
    pub fn readable(&self, node: usize) -> bool {
        let n = &self.nodes[node];
        n.role() == Role::Replica
            && n.healthy()
            && match self.max_lag_bytes {
                Some(max) => self.lag_bytes(node).is_some_and(|lag| lag <= max),
                None => true,
            }
    }

    /// A healthy replica within the lag threshold, round robin; `None` when there is none.
    pub fn any_replica(&self) -> Option<usize> {
        let replicas: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.readable(i))
            .collect();
        if replicas.is_empty() {
            return None;
        }
        Some(replicas[self.next_replica.fetch_add(1, Relaxed) % replicas.len()])
    }

    /// The node with this name.
    pub fn by_name(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.target.node == name)
    }

    /// A healthy node carrying `tag`, round robin.
    pub fn by_tag(&self, tag: &str) -> Option<usize> {
        let tagged: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i];
                n.healthy() && n.role() != Role::Fenced && n.tags.iter().any(|t| t == tag)
            })
            .collect();
        if tagged.is_empty() {
            return None;
        }
        Some(tagged[self.next_replica.fetch_add(1, Relaxed) % tagged.len()])
    }

    /// Asks the tracker of `node` to check it now (a session saw it fail).
    pub fn nudge(&self, node: usize) {
        self.nudges[node].notify_one();
    }

    /// The nodes as the admin API shows them.
    pub fn view(&self) -> Vec<NodeView> {
        let primary = self.primary();
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let report = n.report();
                NodeView {
                    name: n.name().to_owned(),
                    host: n.target.host.clone(),
                    port: n.target.port,
                    configured_role: match n.configured {
                        NodeRole::Primary => "primary",
                        NodeRole::Replica => "replica",
                        NodeRole::Auto => "auto",
                    },
                    role: n.role(),
                    is_write_target: i == primary,
                    tags: n.tags.clone(),
                    healthy: n.healthy(),
                    down: n.is_down(),
                    breaker: n.breaker.state(),
                    lsn: format_lsn(n.lsn()),
                    lag_bytes: if i == primary {
                        Some(0)
                    } else {
                        self.lag_bytes(i)
                    },
                    readable: self.readable(i),
                    check: report,
                }
            })
            .collect()
    }
}

struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A WAL position in PostgreSQL's `X/Y` notation.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// One node in `GET /api/topology`.
#[derive(Debug, Serialize)]
pub struct NodeView {
    /// Name.
    pub name: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Role in config.
    pub configured_role: &'static str,
    /// Role as discovered.
    pub role: Role,
    /// Whether writes go here.
    pub is_write_target: bool,
    /// Tags.
    pub tags: Vec<String>,
    /// Accepting traffic.
    pub healthy: bool,
    /// Failed its last `failure_threshold` checks.
    pub down: bool,
    /// Breaker state.
    pub breaker: BreakerState,
    /// WAL position.
    pub lsn: String,
    /// Bytes behind the primary.
    pub lag_bytes: Option<u64>,
    /// Whether reads may go here.
    pub readable: bool,
    /// The last check.
    pub check: CheckReport,
}

impl TopologySource for Topology {
    fn nodes(&self) -> Vec<NodeFacts> {
        let primary = self.primary();
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeFacts {
                name: n.target.node.clone(),
                role: match (i == primary, n.role()) {
                    (true, _) => "primary".into(),
                    (false, Role::Replica) => "replica".into(),
                    (false, Role::Fenced) => "fenced".into(),
                    (false, Role::Primary) => "fenced".into(),
                    (false, Role::Unknown) => "unknown".into(),
                },
                tags: n.tags.clone(),
                healthy: n.healthy(),
                lag_bytes: if i == primary {
                    Some(0)
                } else {
                    self.lag_bytes(i)
                },
            })
            .collect()
    }
}
