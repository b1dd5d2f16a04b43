//! Chaos mode: faults injected into the proxy's own traffic to one node for a bounded time —
//! `latency` before each statement is sent, an `error` instead of a server, a dropped
//! server connection, or a `partition` (no new connection, health checks included, and
//! every statement sent on an existing one loses it). Every fault reverts by itself when its
//! duration ends; none starts unless `[chaos] enabled = true`.
//!
//! Each node's [`NodeChaos`] hangs off its connect target, so a check costs one relaxed load
//! while no fault is active.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Waits `latency_ms` before a statement is sent.
    Latency,
    /// Answers `sqlstate` instead of running the statement.
    Error,
    /// Closes the server connection a statement was about to use.
    DropConnection,
    /// The node is unreachable: no new connections, existing ones lost on use.
    Partition,
}

/// A fault as requested (`POST /api/chaos`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// Node name.
    pub node: String,
    /// What to inject.
    pub fault: FaultKind,
    /// Chance per statement (or connection attempt), 0 < p ≤ 1; default 1.
    pub probability: Option<f64>,
    /// For `latency`.
    pub latency_ms: Option<u64>,
    /// For `error`; default `57P01` (the server is going away).
    pub sqlstate: Option<String>,
    /// How long it lasts (1 s to 1 h).
    pub duration_s: u64,
}

/// An active fault.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// Its id (`DELETE /api/chaos/{id}`).
    pub id: u64,
    /// Node name.
    pub node: String,
    /// What it does.
    pub fault: FaultKind,
    /// Chance per statement.
    pub probability: f64,
    /// Delay, for `latency`.
    pub latency_ms: u64,
    /// SQLSTATE, for `error`.
    pub sqlstate: String,
    /// When it ends, ms since the epoch.
    pub ends_at_ms: u64,
    #[serde(skip)]
    ends: Instant,
}

/// Why a fault was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChaosError {
    /// `[chaos] enabled` is not set.
    #[error("chaos mode is off: set [chaos] enabled = true in heliosproxy.toml")]
    Disabled,
    /// No such node.
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    /// The same fault is already active on the node.
    #[error("a {0:?} fault is already active on node {1}")]
    Overlaps(FaultKind, String),
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// What a statement about to be sent meets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injected {
    /// Nothing.
    None,
    /// A delay first.
    Delay(Duration),
    /// The connection is lost.
    Drop,
}

/// The faults of one node.
#[derive(Debug, Default)]
pub struct NodeChaos {
    any: AtomicBool,
    faults: Mutex<Vec<Fault>>,
}

fn chance(p: f64) -> bool {
    p >= 1.0 || rand::random::<f64>() < p
}

impl NodeChaos {
    fn active(&self) -> Vec<Fault> {
        let mut faults = self.faults.lock().expect("chaos lock");
        let now = Instant::now();
        faults.retain(|f| f.ends > now);
        if faults.is_empty() {
            self.any.store(false, Relaxed);
        }
        faults.clone()
    }

    /// Whether the node is partitioned now (new connections and health checks fail).
    #[inline]
    pub fn partitioned(&self) -> bool {
        self.any.load(Relaxed)
            && self
                .active()
                .iter()
                .any(|f| f.fault == FaultKind::Partition && chance(f.probability))
    }

    /// What a statement about to be sent to this node meets: a delay, or the loss of its
    /// connection.
    #[inline]
    pub fn on_send(&self) -> Injected {
        if !self.any.load(Relaxed) {
            return Injected::None;
        }
        for f in self.active() {
            match f.fault {
                FaultKind::Latency if chance(f.probability) => {
                    return Injected::Delay(Duration::from_millis(f.latency_ms));
                }
                FaultKind::DropConnection | FaultKind::Partition if chance(f.probability) => {
                    return Injected::Drop;
                }
                _ => {}
            }
        }
        Injected::None
    }

    /// The error a transaction about to borrow a connection to this node gets instead.
    #[inline]
    pub fn on_checkout(&self) -> Option<String> {
        if !self.any.load(Relaxed) {
            return None;
        }
        self.active()
            .into_iter()
            .find(|f| f.fault == FaultKind::Error && chance(f.probability))
            .map(|f| f.sqlstate)
    }
}

/// Every node's faults, and what the admin API does with them.
pub struct Chaos {
    enabled: bool,
    next: AtomicU64,
    nodes: Vec<(String, Arc<NodeChaos>)>,
}

impl Chaos {
    /// Chaos over `nodes` (name and its faults); refuses everything unless `enabled`.
    pub fn new(enabled: bool, nodes: Vec<(String, Arc<NodeChaos>)>) -> Chaos {
        Chaos {
            enabled,
            next: AtomicU64::new(1),
            nodes,
        }
    }

    /// Starts a fault; returns it.
    pub fn start(&self, req: FaultRequest) -> Result<Fault, ChaosError> {
        if !self.enabled {
            return Err(ChaosError::Disabled);
        }
        let node = self
            .nodes
            .iter()
            .find(|(n, _)| *n == req.node)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| ChaosError::UnknownNode(req.node.clone()))?;
        let probability = req.probability.unwrap_or(1.0);
        if !(probability > 0.0 && probability <= 1.0) {
            return Err(ChaosError::Invalid(format!(
                "probability = {probability}: must be in (0, 1]"
            )));
        }
        if !(1..=3600).contains(&req.duration_s) {
            return Err(ChaosError::Invalid(format!(
                "duration_s = {}: must be between 1 and 3600",
                req.duration_s
            )));
        }
        let latency_ms = req.latency_ms.unwrap_or(0);
        if req.fault == FaultKind::Latency && !(1..=60_000).contains(&latency_ms) {
            return Err(ChaosError::Invalid(
                "latency needs latency_ms between 1 and 60000".into(),
            ));
        }
        let sqlstate = req.sqlstate.unwrap_or_else(|| "57P01".into());
        if sqlstate.len() != 5 || !sqlstate.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ChaosError::Invalid(format!(
                "sqlstate {sqlstate:?}: five letters or digits"
            )));
        }
        if node.active().iter().any(|f| f.fault == req.fault) {
            return Err(ChaosError::Overlaps(req.fault, req.node));
        }
        let duration = Duration::from_secs(req.duration_s);
        let ends_at_ms = SystemTime::now()
            .checked_add(duration)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        let fault = Fault {
            id: self.next.fetch_add(1, Relaxed),
            node: req.node,
            fault: req.fault,
            probability,
            latency_ms,
            sqlstate,
            ends_at_ms,
            ends: Instant::now() + duration,
        };
        tracing::warn!(id = fault.id, node = %fault.node, fault = ?fault.fault, duration_s = req.duration_s, "chaos: fault injected");
        node.faults.lock().expect("chaos lock").push(fault.clone());
        node.any.store(true, Relaxed);
        Ok(fault)
    }

    /// Every active fault.
    pub fn active(&self) -> Vec<Fault> {
        self.nodes.iter().flat_map(|(_, c)| c.active()).collect()
    }

    /// Ends a fault early; whether it was active.
    pub fn stop(&self, id: u64) -> bool {
        for (_, c) in &self.nodes {
            let mut faults = c.faults.lock().expect("chaos lock");
            let before = faults.len();
            faults.retain(|f| f.id != id);
            if faults.len() != before {
                if faults.is_empty() {
                    c.any.store(false, Relaxed);
                }
                tracing::warn!(id, "chaos: fault removed");
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chaos(enabled: bool) -> (Chaos, Arc<NodeChaos>) {
        let node = Arc::new(NodeChaos::default());
        (
            Chaos::new(enabled, vec![("pg1".into(), node.clone())]),
            node,
        )
    }

    fn req(fault: FaultKind) -> FaultRequest {
        FaultRequest {
            node: "pg1".into(),
            fault,
            probability: None,
            latency_ms: Some(5),
            sqlstate: None,
            duration_s: 1,
        }
    }

    #[test]
    fn faults_apply_and_revert_by_themselves() {
        let (c, node) = chaos(true);
        assert_eq!(node.on_send(), Injected::None);
        let f = c.start(req(FaultKind::Latency)).unwrap();
        assert_eq!(node.on_send(), Injected::Delay(Duration::from_millis(5)));
        assert_eq!(
            c.start(req(FaultKind::Latency)).unwrap_err(),
            ChaosError::Overlaps(FaultKind::Latency, "pg1".into())
        );
        assert!(c.stop(f.id));
        assert_eq!(node.on_send(), Injected::None);
        c.start(req(FaultKind::Error)).unwrap();
        assert_eq!(node.on_checkout().as_deref(), Some("57P01"));
        c.start(req(FaultKind::Partition)).unwrap();
        assert!(node.partitioned());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(!node.partitioned(), "reverted at the end of its duration");
        assert!(c.active().is_empty());
    }

    #[test]
    fn bad_requests_are_refused() {
        let (off, _) = chaos(false);
        assert_eq!(
            off.start(req(FaultKind::Error)).unwrap_err(),
            ChaosError::Disabled
        );
        let (c, _) = chaos(true);
        let mut r = req(FaultKind::Error);
        r.node = "nope".into();
        assert!(matches!(c.start(r), Err(ChaosError::UnknownNode(_))));
        let mut r = req(FaultKind::Error);
        r.probability = Some(0.0);
        assert!(matches!(c.start(r), Err(ChaosError::Invalid(_))));
        let mut r = req(FaultKind::Error);
        r.sqlstate = Some("bad".into());
        assert!(matches!(c.start(r), Err(ChaosError::Invalid(_))));
        let mut r = req(FaultKind::Latency);
        r.latency_ms = None;
        assert!(matches!(c.start(r), Err(ChaosError::Invalid(_))));
    }
}
