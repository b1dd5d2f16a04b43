//! Who decides when several proxies see the primary fail: the proxy that holds the failover
//! lease — a session advisory lock on a majority of the other nodes, taken with
//! `pg_try_advisory_lock` on control connections and held until the failover is over. Two
//! proxies cannot both hold a majority, so at most one promotes; one that cannot reach a
//! majority does not promote at all. Advisory locks work on hot standbys and are never
//! WAL-logged, so the store is PostgreSQL itself, no extra service. The holder then looks
//! again: a node another proxy has promoted meanwhile is followed, not competed with.

use tokio_postgres::Client;

use crate::config::HaConfig;
use crate::topology::{Topology, tracker};

/// The advisory lock key every proxy uses ("HELIOS").
const LEASE_KEY: i64 = 0x4845_4c49_4f53;

/// A held lease: dropping it closes the connections, which releases the locks.
pub struct Lease {
    _holders: Vec<Client>,
}

/// Takes the lease on the nodes other than `failed`, or says why it could not.
pub async fn take(topology: &Topology, ha: &HaConfig, failed: usize) -> Result<Lease, String> {
    let mut others: Vec<usize> = (0..topology.nodes.len()).filter(|&i| i != failed).collect();
    // The same order in every proxy.
    others.sort_by(|&a, &b| topology.nodes[a].name().cmp(topology.nodes[b].name()));
    let need = others.len() / 2 + 1;
    let mut holders = Vec::new();
    for i in others {
        if topology.nodes[i].target.chaos.partitioned() {
            continue;
        }
        let Ok(client) = tracker::connect(topology, i, ha).await else {
            continue;
        };
        let got = client
            .query_one("select pg_try_advisory_lock($1)", &[&LEASE_KEY])
            .await
            .map(|r| r.get::<_, bool>(0))
            .unwrap_or(false);
        if !got {
            // Another proxy holds this one: in the shared order it is ahead, so let it
            // decide rather than race it for the rest.
            break;
        }
        holders.push(client);
    }
    if holders.len() >= need {
        Ok(Lease { _holders: holders })
    } else {
        Err(format!(
            "holds the failover lease on {} of the {need} nodes it needs (another proxy is \
             deciding, or this one cannot reach a majority)",
            holders.len()
        ))
    }
}

/// A node other than `failed` that is writable now (promoted by someone else), by a fresh
/// check of each.
pub async fn promoted_elsewhere(
    topology: &Topology,
    ha: &HaConfig,
    failed: usize,
) -> Option<usize> {
    for i in (0..topology.nodes.len()).filter(|&i| i != failed) {
        if topology.nodes[i].target.chaos.partitioned() {
            continue;
        }
        let Ok(client) = tracker::connect(topology, i, ha).await else {
            continue;
        };
        if let Ok(facts) = tracker::check(&client).await
            && !facts.in_recovery
        {
            return Some(i);
        }
    }
    None
}
