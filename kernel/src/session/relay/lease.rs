//! The server lease: which node a checkout goes to, bringing a borrowed connection to the
//! client's session state, keeping the cancel slot pointed at it, and giving it back (or
//! discarding it) when the client is between transactions or gone.

use std::sync::Arc;
use std::time::Duration;

use super::Relay;
use super::expect::SqlError;
use crate::config::PoolMode;
use crate::pool::{Checkout, CheckoutError, Pool, PoolKey};
use crate::session::SessionError;
use crate::session::state::PRISTINE;
use crate::session::steps::Protocol;
use crate::wire::messages::{TxStatus, sqlstate};

impl Relay {
    /// Borrows a server connection when none is attached. On failure the client is told,
    /// and (in the extended protocol) the rest of its batch is skipped up to `Sync`.
    /// Returns whether a server is attached.
    pub(super) async fn attach(&mut self, protocol: Protocol) -> bool {
        if self.server.is_some() {
            return true;
        }
        use crate::observe::clients::ClientState;
        self.presence.set_state(ClientState::Waiting);
        self.env.pools.pause.wait(&self.pool.key.database).await;
        let attached = self.attach_to_node(protocol).await;
        self.presence.set_state(if attached {
            ClientState::Active
        } else {
            ClientState::Idle
        });
        attached
    }

    async fn attach_to_node(&mut self, protocol: Protocol) -> bool {
        let topology = self.env.topology.clone();
        let wanted = std::mem::replace(&mut self.route_to, topology.primary());
        let mut admission = match topology.admit_checkout(wanted).await {
            Ok(admission) => admission,
            Err(e) => {
                self.refuse(
                    SqlError::new(sqlstate::CONNECTION_FAILURE, e.to_string()),
                    protocol,
                );
                return false;
            }
        };
        let mut node = admission.node;
        loop {
            let admitted = topology.nodes[node].breaker.try_admit();
            if !admitted && node != topology.primary() {
                // Reads fall back to the primary while a replica's breaker is open.
                node = topology.primary();
                continue;
            }
            self.pool = self.pool_for(node);
            if let Some(code) = topology.nodes[node].target.chaos.on_checkout() {
                self.refuse(SqlError::new(code, "chaos mode: injected error"), protocol);
                return false;
            }
            let result = if admitted {
                self.checkout().await
            } else {
                Err(CheckoutError::Connect(crate::pool::ServerError::Protocol {
                    node: topology.nodes[node].name().to_owned(),
                    what: "circuit breaker open after repeated failures".into(),
                }))
            };
            match result {
                Ok(checkout) => {
                    topology.nodes[node].mark_healthy();
                    self.lend(checkout);
                    return true;
                }
                Err(e) => {
                    let connect_failed = matches!(e, CheckoutError::Connect(_));
                    if connect_failed && admitted {
                        topology.nodes[node].mark_unhealthy();
                    }
                    // The primary is gone: wait (bounded) for the failover instead of failing.
                    if connect_failed
                        && let Some(primary) =
                            topology.after_failed_connect(&mut admission, node).await
                    {
                        node = primary;
                        continue;
                    }
                    let code = match &e {
                        CheckoutError::Exhausted { .. } => sqlstate::TOO_MANY_CONNECTIONS,
                        CheckoutError::Connect(_) => sqlstate::CANNOT_CONNECT,
                        CheckoutError::State { code, .. } => code.as_str(),
                    };
                    tracing::warn!(pool = ?self.pool.key, "checkout failed: {e}");
                    self.refuse(SqlError::new(code, e.to_string()), protocol);
                    return false;
                }
            }
        }
    }

    /// Attaches a checked-out connection: the cancel slot points at it.
    pub(in crate::session) fn lend(&mut self, checkout: Checkout) {
        self.cancel
            .slot
            .attach(&checkout.conn.target, checkout.conn.key);
        self.server = Some(checkout);
        self.attached_generation = self.env.topology.generation();
    }

    /// Detaches the server and gives it back to its pool (`reusable`) or closes it.
    pub(in crate::session) fn give_back(&mut self, reusable: bool) {
        self.batch_open = false;
        // What pinned the session lived on that connection; it is gone with it.
        self.set_pins(crate::session::isolation::Pins::default());
        if let Some(checkout) = self.server.take() {
            self.cancel.slot.detach();
            self.return_to_pool(checkout, reusable);
            self.presence
                .set_state(crate::observe::clients::ClientState::Idle);
        }
    }

    /// Gives a connection that is not attached back to its pool, or closes it.
    pub(in crate::session) fn return_to_pool(&self, checkout: Checkout, reusable: bool) {
        if reusable {
            self.pool.release(checkout);
        } else {
            self.pool.discard(checkout);
        }
    }

    /// The primary changed while this session kept its server (a held cursor, session mode,
    /// an open transaction): a server on the fenced old primary is given up and the session
    /// moves, so it neither reads stale data nor writes where the writes would be lost.
    pub(super) async fn leave_fenced_server(&mut self) -> Result<(), SessionError> {
        let topology = self.env.topology.clone();
        self.attached_generation = topology.generation();
        if topology.is_fenced(&self.pool.key.node) && self.tx.is_some() {
            self.server_lost("its primary was replaced").await?;
        }
        Ok(())
    }

    /// The session's pool on `node`.
    pub(in crate::session) fn pool_for(&mut self, node: usize) -> Arc<Pool> {
        if let Some(p) = &self.node_pools[node] {
            return p.clone();
        }
        let target = &self.env.topology.nodes[node].target;
        let key = PoolKey {
            node: target.node.clone(),
            database: self.pool.key.database.clone(),
            user: self.server_user.clone(),
        };
        let pool = self
            .env
            .pools
            .get_or_create(key, target, self.server_password.clone());
        self.node_pools[node] = Some(pool.clone());
        pool
    }

    /// Checks a connection out and brings it to this client's session state.
    pub(in crate::session) async fn checkout(&mut self) -> Result<Checkout, CheckoutError> {
        let mut checkout = self.pool.checkout().await?;
        let conn = &mut checkout.conn;
        let limit = self.env.limits.max_prepared_statements;
        let mut sql = String::new();
        let deallocate_all = conn.prepared.len() > limit;
        if deallocate_all {
            // Also drops SQL-level statements: this client's are prepared again below.
            sql.push_str("DEALLOCATE ALL;");
        }
        let stale = conn.state_hash != self.state.hash()
            || (deallocate_all && !self.state.prepared_names().is_empty());
        if stale {
            let server_prepares: &[String] = if deallocate_all {
                &[]
            } else {
                &conn.sql_prepared
            };
            sql.push_str(
                &self
                    .state
                    .restore_settings_sql(conn.state_hash, server_prepares),
            );
        }
        let cursors = if self.restore_cursors {
            self.cursors.restore_sql()
        } else {
            String::new()
        };
        let prepares = stale && self.state.prepares().next().is_some();
        if sql.is_empty() && cursors.is_empty() && !prepares {
            if stale {
                checkout.conn.state_hash = self.state.hash();
            }
            return Ok(checkout);
        }
        let restored = self
            .restore_state(&mut checkout, &sql, stale, &cursors)
            .await;
        match restored {
            Ok(()) => {
                let conn = &mut checkout.conn;
                if deallocate_all {
                    conn.prepared.clear();
                }
                conn.state_hash = self.state.hash();
                conn.sql_prepared = self.state.prepared_names();
                self.restore_cursors = false;
                Ok(checkout)
            }
            Err(e) => {
                // Could not bring the connection to this client's state; it must not be
                // reused by anyone with assumptions about it.
                tracing::warn!("restoring session state failed: {e}");
                self.pool.discard(checkout);
                Err(e)
            }
        }
    }

    /// Runs the settings, then each SQL-level `PREPARE` (one message each: a statement
    /// that no longer prepares, its table dropped, is forgotten rather than failing the
    /// session), then the held cursors.
    async fn restore_state(
        &mut self,
        checkout: &mut Checkout,
        settings: &str,
        prepares: bool,
        cursors: &str,
    ) -> Result<(), CheckoutError> {
        let conn = &mut checkout.conn;
        let failed = |e: Option<crate::wire::messages::ErrorFields>| match e {
            Some(e) => CheckoutError::State {
                code: e.code,
                message: e.message,
            },
            None => CheckoutError::State {
                code: sqlstate::CONNECTION_FAILURE.into(),
                message: "unexpected transaction state".into(),
            },
        };
        if !settings.is_empty() {
            match conn.run_internal(settings).await? {
                (None, b'I') => {}
                (e, _) => return Err(failed(e)),
            }
        }
        if prepares {
            let statements: Vec<(String, String)> = self
                .state
                .prepares()
                .map(|(n, s)| (n.to_owned(), s.to_owned()))
                .collect();
            let texts: Vec<&str> = statements.iter().map(|(_, s)| s.as_str()).collect();
            let (errors, status) = conn.run_each(&texts).await?;
            if status != b'I' {
                return Err(failed(None));
            }
            for ((name, _), error) in statements.iter().zip(errors) {
                if let Some(e) = error {
                    tracing::warn!(
                        session = self.info.session_id,
                        "prepared statement {name} could not be prepared again ({}); forgotten",
                        e.message
                    );
                    self.state.forget_prepare(name);
                }
            }
        }
        if !cursors.is_empty() {
            match conn.run_internal(cursors).await? {
                (None, b'I') => {}
                (e, _) => return Err(failed(e)),
            }
        }
        Ok(())
    }

    /// Returns the server to the pool when the client is between transactions.
    pub(super) async fn maybe_release(&mut self) {
        if self.server.is_none()
            || !self.queue.is_empty()
            || self.in_copy
            || self.batch_open
            || !self.sout.is_empty()
        {
            return;
        }
        self.restore_startup_values().await;
        if self.mode == PoolMode::Session
            || !self.queue.is_empty()
            || self.in_copy
            || self.batch_open
            || self.status.in_transaction()
            || !self.sout.is_empty()
            || self.cursors.any()
        {
            return;
        }
        if self.check_isolation().await || self.server.is_none() {
            return;
        }
        self.give_back(true);
    }

    /// Statement mode: a transaction the client left open is rolled back at once.
    pub(super) async fn rollback_statement_mode(&mut self) -> Result<(), SessionError> {
        self.status = TxStatus::Idle;
        if let Some(s) = self.server.as_mut() {
            let ok = matches!(s.conn.run_internal("ROLLBACK").await, Ok((None, b'I')));
            if !ok {
                self.give_back(false);
            }
        }
        Ok(())
    }

    /// Cleans up after the client left: an idle server goes back (reset in session mode),
    /// an open transaction is rolled back first, and a server mid-query is closed.
    pub(super) async fn finish(&mut self) {
        let Some(s) = self.server.as_mut() else {
            return;
        };
        // A batch the client never ended with `Sync` holds an implicit transaction that the
        // next client's first statement would commit: such a connection is closed instead.
        let clean = self.queue.is_empty() && !self.in_copy && !self.batch_open;
        // A pinned session's temporary objects, locks and role go with DISCARD ALL.
        let session_mode = self.mode == PoolMode::Session || !self.pins.is_empty();
        let reset = match (clean, self.status.in_transaction(), session_mode) {
            (false, _, _) => None,
            // A backend that made a temporary schema keeps it after DISCARD ALL; the next
            // client would see that (PREPARE TRANSACTION after current_schema() differs), so
            // such a connection is closed instead of reused.
            (true, false, true) => Some(&["DISCARD ALL", NO_TEMP_SCHEMA][..]),
            (true, false, false) => Some(&[][..]),
            (true, true, true) => Some(&["ROLLBACK", "DISCARD ALL", NO_TEMP_SCHEMA][..]),
            (true, true, false) => Some(&["ROLLBACK"][..]),
        };
        let ok = match reset {
            None => false,
            Some(statements) => {
                let conn = &mut s.conn;
                let run = async {
                    for sql in statements {
                        // Each alone: DISCARD ALL refuses to run inside a multi-statement query.
                        let answer = conn.query_rows(sql).await.ok()?;
                        let clean = answer.error.is_none()
                            && answer.status == b'I'
                            && !answer
                                .rows
                                .iter()
                                .any(|r| r.first() == Some(&Some("f".into())));
                        if !clean {
                            return None;
                        }
                    }
                    Some(())
                };
                matches!(
                    tokio::time::timeout(Duration::from_secs(5), run).await,
                    Ok(Some(()))
                )
            }
        };
        if ok && session_mode {
            s.conn.forget_prepared();
            s.conn.state_hash = PRISTINE;
        }
        self.give_back(ok);
    }
}

/// Asks whether the backend has no temporary schema (`f` means it has one: it is closed
/// rather than reused).
const NO_TEMP_SCHEMA: &str = "SELECT pg_catalog.pg_my_temp_schema() = 0";
