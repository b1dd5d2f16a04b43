//! Moving a session to a new server, phase by phase: decide whether the work in flight can
//! be moved at all, wait for the primary (or its replacement), resolve a `COMMIT` that was
//! in flight, prepare the client's statements again, replay the open transaction with its
//! checksums verified, and send the request in flight again.

use std::sync::atomic::Ordering::Relaxed;

use super::NotMoved;
use super::txlog::{self, TxLog};
use super::xid::first_column;
use crate::pool::{Checkout, CheckoutError, ServerConn, ServerError};
use crate::session::relay::Relay;
use crate::session::relay::backend::error_of;
use crate::session::relay::expect::Expect;
use crate::wire::messages;

/// What the lost server was doing.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// A request was waiting for its answer.
    request: bool,
    /// That request holds the transaction's `COMMIT`.
    commit: bool,
}

/// A phase failed: why, and whether the new connection may go back to the pool.
type Abort = (NotMoved, bool);

impl Relay {
    /// Moves the session to a new server after `lost` failed.
    pub(super) async fn recover_with(
        &mut self,
        tx: &mut TxLog,
        lost: usize,
    ) -> Result<(), NotMoved> {
        let Some(in_flight) = self.what_was_in_flight(tx)? else {
            // Idle: the next statement lands on a new server, with the session's state.
            return Ok(());
        };
        let target = self.await_primary(lost).await?;
        let (target, mut checkout) = self.checkout_primary(target).await?;
        let committed = match self
            .restore_on(&mut checkout.conn, tx, in_flight, target)
            .await
        {
            Ok(committed) => committed,
            Err((why, reusable)) => {
                self.return_to_pool(checkout, reusable);
                return Err(why);
            }
        };
        let topology = self.env.topology.clone();
        tracing::info!(
            session = self.info.session_id,
            node = topology.nodes[target].name(),
            replayed = tx.done.len(),
            commit_in_flight = in_flight.commit,
            committed,
            xid = ?tx.xid,
            "session moved to a new server"
        );
        let counters = &self.env.counters;
        if !tx.done.is_empty() {
            counters.transactions_replayed.fetch_add(1, Relaxed);
        }
        if in_flight.commit && tx.wrote {
            counters.commits_resolved.fetch_add(1, Relaxed);
        }
        self.lend(checkout);
        Ok(())
    }

    /// Whether the session's work can move: `None` when it was idle (nothing to do).
    fn what_was_in_flight(&mut self, tx: &mut TxLog) -> Result<Option<InFlight>, NotMoved> {
        // A hidden transaction-id query in flight is dropped: it is captured again later.
        self.queue.retain(|e| !matches!(e, Expect::Xid));
        tx.xid_pending = false;
        let request = !self.queue.is_empty();
        // Held cursors are re-created on whichever server the session gets next.
        self.restore_cursors = self.cursors.any();
        if !request && !self.status.in_transaction() {
            return Ok(None);
        }
        if tx.overflow {
            return Err(NotMoved::retry(
                "the server was lost and this transaction is too large (or pipelined) to replay; retry it",
            ));
        }
        let commit = request && tx.commits;
        if request && !commit && !tx.resendable() {
            return Err(if tx.autocommit_write && tx.answered == 0 {
                NotMoved::unknown(
                    "the server was lost while running a statement that commits by itself; whether it committed is unknown",
                )
            } else {
                NotMoved::retry(
                    "the server was lost while its answer was being sent; retry the transaction",
                )
            });
        }
        if commit && tx.wrote && !matches!(tx.xid, Some(Some(_))) {
            return Err(NotMoved::unknown(
                "the server was lost during COMMIT and the outcome cannot be resolved",
            ));
        }
        Ok(Some(InFlight { request, commit }))
    }

    /// The node to move to: the primary, once it is known to serve (a lost primary gets a
    /// health check or a replacement, bounded by the switchover buffer).
    async fn await_primary(&self, lost: usize) -> Result<usize, NotMoved> {
        let topology = &self.env.topology;
        if lost == topology.primary() {
            let generation = topology.generation();
            topology.nudge(lost);
            if !topology.primary_still_serves(lost, generation).await {
                return Err(NotMoved::NoServer(
                    "the primary was lost and no new primary took over in time".into(),
                ));
            }
        }
        Ok(topology.primary())
    }

    /// A connection on the primary `target`. When it cannot be reached (it failed too and
    /// the health checks have not noticed yet), waits once, bounded by the switchover
    /// buffer, for its replacement and connects there.
    async fn checkout_primary(&mut self, mut target: usize) -> Result<(usize, Checkout), NotMoved> {
        let topology = self.env.topology.clone();
        let mut waited = false;
        loop {
            self.route_to = target;
            self.pool = self.pool_for(target);
            match self.checkout().await {
                Ok(checkout) => return Ok((target, checkout)),
                Err(CheckoutError::Connect(ServerError::Io { .. } | ServerError::Timeout(_)))
                    if !waited
                        && target == topology.primary()
                        && topology.can_wait_for_failover() =>
                {
                    waited = true;
                    topology.nodes[target].mark_unhealthy();
                    target = topology
                        .replacement_primary(target)
                        .await
                        .map_err(|e| NotMoved::NoServer(e.to_string()))?;
                }
                Err(e) => return Err(NotMoved::NoServer(e.to_string())),
            }
        }
    }

    /// Brings the new connection to where the lost one was; whether the `COMMIT` in flight
    /// turned out to have committed already.
    async fn restore_on(
        &mut self,
        conn: &mut ServerConn,
        tx: &mut TxLog,
        in_flight: InFlight,
        target: usize,
    ) -> Result<bool, Abort> {
        let io = |e: String| (NotMoved::NoServer(e), false);
        if !conn.prepared.is_empty() {
            conn.run_internal("DEALLOCATE ALL")
                .await
                .map_err(|e| io(e.to_string()))?;
            conn.prepared.clear();
        }
        let committed = in_flight.commit && tx.wrote && self.resolve_commit(conn, tx).await?;
        if !committed {
            let lsn = self.env.topology.nodes[target].lsn();
            if tx.start_lsn > 0 && lsn > 0 && lsn < tx.start_lsn {
                return Err((
                    NotMoved::retry(
                        "the new primary had not received the data this transaction started from; retry it",
                    ),
                    true,
                ));
            }
        }
        self.prepare_statements(conn).await.map_err(io)?;
        if !committed {
            replay_transaction(conn, tx).await?;
        }
        if !committed && tx.wrote && !tx.done.is_empty() {
            // The replayed transaction has a new id on the new primary.
            tx.xid = run_rows(conn, txlog::XID_QUERY)
                .await
                .map_err(io)?
                .ok()
                .and_then(|rows| rows.first().map(|v| v.parse().ok()));
            tx.xid_generation = self.env.topology.generation();
        }
        if in_flight.request {
            self.resend(conn, tx, committed).await.map_err(io)?;
        }
        Ok(committed)
    }

    /// Did the `COMMIT` in flight make it to the new primary? `Ok(true)` when it committed
    /// and nothing else was in its batch; `Ok(false)` when it did not commit.
    async fn resolve_commit(&self, conn: &mut ServerConn, tx: &TxLog) -> Result<bool, Abort> {
        let Some(Some(xid)) = tx.xid else {
            return Ok(false);
        };
        let topology = &self.env.topology;
        // Ids at or past the new primary's horizon were never seen by it (and may be handed
        // out again there): such a transaction did not commit.
        let horizon = topology.xid_horizon();
        let rows =
            if tx.xid_generation != topology.generation() && horizon > 0 && xid as u64 >= horizon {
                Ok(vec!["aborted".to_owned()])
            } else {
                let sql = format!("select txid_status({xid})");
                run_rows(conn, &sql)
                    .await
                    .map_err(|e| (NotMoved::NoServer(e), false))?
            };
        match rows.as_deref() {
            Ok([status]) if status == "committed" && tx.statements == 1 => Ok(true),
            Ok([status]) if status == "committed" => Err((
                NotMoved::unknown(
                    "the server was lost during COMMIT: the transaction did commit (txid_status on the new primary), but the answers to the statements sent together with the COMMIT are lost",
                ),
                true,
            )),
            Ok([status]) if status == "aborted" => Ok(false),
            Ok([status]) if status == "in progress" => Err((
                NotMoved::unknown(
                    "the COMMIT's transaction is still in progress on the new primary",
                ),
                false,
            )),
            // NULL: too old to tell; an error: the new primary never saw this id.
            Ok(_) => Err((
                NotMoved::unknown("the COMMIT's outcome cannot be resolved"),
                false,
            )),
            Err(_) => Ok(false),
        }
    }

    /// Prepares every statement the client has, before anything refers to it.
    async fn prepare_statements(&self, conn: &mut ServerConn) -> Result<(), String> {
        let epoch = self.env.pools.statement_epoch.current();
        let mut parses = Vec::new();
        let mut hashes = Vec::new();
        for p in self.stmts.all() {
            p.encode_parse(&mut parses);
            messages::sync(&mut parses);
            hashes.push(p.hash);
        }
        if parses.is_empty() {
            return Ok(());
        }
        conn.write(&parses).await.map_err(|e| e.to_string())?;
        let mut errors = vec![false; hashes.len()];
        let mut i = 0;
        while i < hashes.len() {
            let (tag, _) = conn.read_message().await.map_err(|e| e.to_string())?;
            match tag {
                b'E' => errors[i] = true,
                b'Z' => i += 1,
                _ => {}
            }
        }
        for (hash, failed) in hashes.into_iter().zip(errors) {
            if !failed {
                conn.prepared.prepared(hash, epoch);
            }
        }
        Ok(())
    }

    /// Sends the requests in flight again, with the transaction id request when wanted.
    async fn resend(
        &mut self,
        conn: &mut ServerConn,
        tx: &mut TxLog,
        committed: bool,
    ) -> Result<(), String> {
        let mut bytes = txlog::strip_injected(&tx.unanswered());
        self.queue.requeue_for_resend();
        if tx.wants_xid() {
            tx.xid_pending = true;
            let prepare = conn.prepared.insert_fixed(txlog::XID_HASH);
            txlog::encode_xid_request(&mut bytes, prepare);
            self.queue.push(Expect::Xid);
        }
        if committed {
            // Sent outside a transaction now: the server warns there is none.
            self.hide_no_tx_warning = true;
        }
        conn.write(&bytes).await.map_err(|e| e.to_string())?;
        tx.resent(&bytes);
        Ok(())
    }
}

/// Replays the open transaction's completed batches; every answer must match what the
/// client saw (checksum and row count), else the client is asked to retry.
async fn replay_transaction(conn: &mut ServerConn, tx: &TxLog) -> Result<(), Abort> {
    for (n, batch) in tx.done.iter().enumerate() {
        let bytes = txlog::strip_injected(&batch.bytes);
        let (crc, rows, _) = txlog::rerun(conn, &bytes)
            .await
            .map_err(|e| (NotMoved::NoServer(e), false))?;
        if crc != batch.crc || rows != batch.rows {
            let _ = conn.run_internal("ROLLBACK").await;
            return Err((
                NotMoved::retry(format!(
                    "the server was lost and replaying this transaction on the new primary gave different results at request {} ({} rows instead of {}); retry it",
                    n + 1,
                    rows,
                    batch.rows
                )),
                true,
            ));
        }
    }
    Ok(())
}

/// Runs a query on an internal connection and returns the first column of each row
/// (`Err` with the server's message when it failed).
async fn run_rows(conn: &mut ServerConn, sql: &str) -> Result<Result<Vec<String>, String>, String> {
    let mut out = Vec::new();
    messages::query(&mut out, sql);
    let mut rows = Vec::new();
    let mut error = None;
    conn.exchange(&out, |tag, body| match tag {
        b'D' => rows.extend(first_column(body).map(|v| String::from_utf8_lossy(v).into_owned())),
        b'E' => error = error_of(body).map(|(_, m)| m),
        _ => {}
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(match error {
        Some(e) => Err(e),
        None => Ok(rows),
    })
}
