//! The cut (and the rollback, the same move the other way): hold new queries, let the
//! transactions on the sending server finish, wait until the receiving server has applied
//! its last commit, copy the sequences, turn replication around, move writes, release the
//! queries. The client-visible pause is the time queries were held.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::Upgrade;
use super::replication::{self, FORWARD, Login, REVERSE};
use crate::topology::Role;

/// What a cut or rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct CutReport {
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// How long new queries were held.
    pub pause_ms: u64,
    /// How long the receiving server took to apply the last commits.
    pub catch_up_ms: u64,
    /// Sequences copied.
    pub sequences: usize,
    /// Server connections cut because their transaction outlasted the wait.
    pub severed: usize,
}

/// Moves writes from `sender` to `receiver`; `forward` is the cut (the rollback path is set
/// up), otherwise the rollback (it is taken down).
pub async fn switch(
    up: &Upgrade,
    sender: usize,
    receiver: usize,
    (send, recv): (Login, Login),
    forward: bool,
) -> Result<CutReport, String> {
    let topology = &up.env.topology;
    let sender_name = topology.nodes[sender].name().to_owned();
    // Connections first: the pause should not include logins.
    let mut pairs = Vec::new();
    for db in &up.config.databases {
        pairs.push((send.connect(db).await?, recv.connect(db).await?));
    }
    let at_ms = crate::topology::now_ms();
    let held = Instant::now();
    topology.begin_switch();
    let result = async {
        let deadline = held + up.config.catch_up_timeout;
        while up.env.pools.in_use_on(&sender_name) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let severed = if up.env.pools.in_use_on(&sender_name) > 0 {
            up.env.pools.sever_on(&sender_name)
        } else {
            0
        };
        let caught = Instant::now();
        let mut sequences = 0;
        for (s, r) in &pairs {
            let left = deadline.saturating_duration_since(Instant::now());
            replication::wait_caught_up(s, r, left.max(Duration::from_millis(100))).await?;
            sequences += replication::copy_sequences(s, r).await?;
        }
        let catch_up_ms = caught.elapsed().as_millis() as u64;
        for (i, (s, r)) in pairs.iter().enumerate() {
            if forward {
                // The new server publishes, the old one subscribes from now on. The way back
                // is created (its slot holding the new server's changes from here) before
                // the way forward goes, and started after, so a failure leaves the forward
                // path as it was and changes cannot loop.
                let db = &up.config.databases[i];
                let reverse = format!("{REVERSE}_{i}");
                replication::publish(r, REVERSE).await?;
                replication::subscribe(s, &reverse, &recv.conninfo(db), REVERSE, false, false)
                    .await?;
                replication::unsubscribe(r, &format!("{FORWARD}_{i}")).await?;
                replication::enable(s, &reverse).await?;
            } else {
                replication::unsubscribe(r, &format!("{REVERSE}_{i}")).await?;
                replication::unpublish(s, REVERSE).await?;
            }
        }
        // Clients outside the proxy move too: the sending server refuses their writes
        // from now on (the upgrade's role still applies the rollback path there), the
        // receiving one takes them.
        let mut ended = 0;
        for (i, (s, r)) in pairs.iter().enumerate() {
            let db = &up.config.databases[i];
            ended += super::writes::refuse(s, db, &send.user).await?;
            super::writes::accept(r, db, &recv.user).await?;
        }
        if ended > 0 {
            tracing::warn!(
                server = %sender_name,
                ended,
                "upgrade: sessions outside the proxy on the old server were ended"
            );
        }
        Ok::<_, String>((severed, catch_up_ms, sequences))
    }
    .await;
    match result {
        Ok((severed, catch_up_ms, sequences)) => {
            topology.nodes[sender].set_role(Role::Fenced);
            topology.nodes[receiver].set_role(Role::Primary);
            topology.set_primary(receiver);
            up.env.pools.close_idle_on(&sender_name);
            topology.end_switch();
            let report = CutReport {
                at_ms,
                pause_ms: held.elapsed().as_millis() as u64,
                catch_up_ms,
                sequences,
                severed,
            };
            tracing::warn!(
                from = %sender_name,
                to = %topology.nodes[receiver].name(),
                pause_ms = report.pause_ms,
                "upgrade: writes moved"
            );
            Ok(report)
        }
        Err(e) => {
            topology.end_switch();
            Err(e)
        }
    }
}
