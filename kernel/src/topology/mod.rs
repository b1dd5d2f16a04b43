//! The backend nodes as the kernel knows them: configured role and tags, and a health mark
//! set when connecting fails (cleared when a connection succeeds). Later the topology tracker
//! adds discovered roles and replay lag here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Config, NodeRole};
use crate::plugins::host::{NodeFacts, TopologySource};
use crate::pool::ConnectTarget;

/// How long a node that refused a connection is treated as unhealthy.
const UNHEALTHY_FOR: Duration = Duration::from_secs(5);

/// One backend node.
pub struct Node {
    /// Where to connect.
    pub target: Arc<ConnectTarget>,
    /// Role.
    pub role: NodeRole,
    /// Tags from config.
    pub tags: Vec<String>,
    unhealthy_until_ms: AtomicU64,
}

impl Node {
    /// Whether the node is believed to accept connections.
    pub fn healthy(&self) -> bool {
        self.unhealthy_until_ms.load(Relaxed) <= now_ms()
    }

    /// A connection attempt failed.
    pub fn mark_unhealthy(&self) {
        self.unhealthy_until_ms
            .store(now_ms() + UNHEALTHY_FOR.as_millis() as u64, Relaxed);
    }

    /// A connection attempt succeeded.
    pub fn mark_healthy(&self) {
        if self.unhealthy_until_ms.load(Relaxed) != 0 {
            self.unhealthy_until_ms.store(0, Relaxed);
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Every configured node.
pub struct Topology {
    /// Nodes in config order.
    pub nodes: Vec<Node>,
    primary: usize,
    next_replica: AtomicUsize,
}

impl Topology {
    /// Builds the node list; `tls` is the backend TLS connector when configured.
    pub fn new(config: &Config, tls: Option<Arc<rustls::ClientConfig>>) -> Topology {
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
                }),
                role: n.role,
                tags: n.tags.clone(),
                unhealthy_until_ms: AtomicU64::new(0),
            })
            .collect();
        let primary = nodes
            .iter()
            .position(|n| n.role == NodeRole::Primary)
            .unwrap_or(0);
        Topology {
            nodes,
            primary,
            next_replica: AtomicUsize::new(0),
        }
    }

    /// Index of the primary.
    pub fn primary(&self) -> usize {
        self.primary
    }

    /// A healthy replica, round robin; `None` when there is none.
    pub fn any_replica(&self) -> Option<usize> {
        let replicas: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].role == NodeRole::Replica && self.nodes[i].healthy())
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
            .filter(|&i| self.nodes[i].healthy() && self.nodes[i].tags.iter().any(|t| t == tag))
            .collect();
        if tagged.is_empty() {
            return None;
        }
        Some(tagged[self.next_replica.fetch_add(1, Relaxed) % tagged.len()])
    }
}

impl TopologySource for Topology {
    fn nodes(&self) -> Vec<NodeFacts> {
        self.nodes
            .iter()
            .map(|n| NodeFacts {
                name: n.target.node.clone(),
                role: match n.role {
                    NodeRole::Primary => "primary".into(),
                    NodeRole::Replica => "replica".into(),
                },
                tags: n.tags.clone(),
                healthy: n.healthy(),
                lag_bytes: None,
            })
            .collect()
    }
}
