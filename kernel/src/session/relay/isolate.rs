//! Keeping a client's hidden session state its own in transaction and statement mode: the
//! statements that could change it are noted as they are sent, and before the connection
//! goes back to the pool the server is asked what the session left on it (see
//! [`crate::session::isolation`]). Settings are adopted and replayed elsewhere; temporary
//! objects, advisory locks and a changed role pin the client to its connection.

use super::Relay;
use crate::config::PoolMode;
use crate::session::isolation::{self, Checked, Pins};
use crate::session::state::DIRTY;

impl Relay {
    /// Notes a statement about to be sent: whether the server must be asked afterwards.
    pub(super) fn note_for_isolation(&mut self, sql: &str, needs_check: bool) {
        if self.mode == PoolMode::Session {
            return;
        }
        if !self.pins.is_empty() {
            // Pinned: every transaction may be the one that drops the state.
            self.check_pending = true;
        }
        if !needs_check {
            return;
        }
        self.check_pending = true;
        isolation::custom_setting_names(sql, &mut self.custom_names);
        if contains_word(sql, b"set_config") && computes_a_setting_name(sql) {
            self.computed_setting = true;
        }
        if contains_word(sql, b"discard all") || contains_word(sql, b"reset all") {
            self.computed_setting = false;
        }
    }

    /// Between transactions, before the connection could go back: asks the server what the
    /// session left on it when a statement could have changed something hidden. Returns
    /// whether the client keeps its connection.
    pub(super) async fn check_isolation(&mut self) -> bool {
        if !self.check_pending || self.mode == PoolMode::Session {
            return !self.pins.is_empty();
        }
        self.check_pending = false;
        let mut names = std::mem::take(&mut self.custom_names);
        for n in self.state.custom_names() {
            if !names.iter().any(|m| m == n) {
                names.push(n.to_owned());
            }
        }
        let sql = isolation::check_sql(&self.server_user, &names);
        let Some(s) = self.server.as_mut() else {
            return false;
        };
        match s.conn.query_rows(&sql).await {
            Ok(answer) if answer.error.is_none() && answer.status == b'I' => {
                let checked = Checked::from_rows(answer.rows);
                self.state.adopt_settings(checked.settings);
                // Whatever the session changed that no name revealed is reset before the
                // connection serves anyone (its owner included) from a fresh checkout.
                s.conn.state_hash = DIRTY;
                let mut pins = checked.pins;
                if self.computed_setting {
                    pins = pins.with(Pins::SETTINGS);
                }
                self.set_pins(pins);
                if pins.is_empty() && checked.retire {
                    // Its temporary schema would show through to the next client.
                    self.give_back(false);
                }
                !pins.is_empty()
            }
            other => {
                // The state cannot be known: the connection is not handed to anyone else.
                // (Only the error is logged: the rows hold the session's setting values.)
                let why = match other {
                    Ok(a) => a.error.map_or_else(
                        || format!("transaction status {}", a.status as char),
                        |e| e.message,
                    ),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(
                    session = self.info.session_id,
                    "session state check failed ({why}); closing the server connection"
                );
                self.set_pins(Pins::default());
                self.give_back(false);
                false
            }
        }
    }

    /// After a `RESET` took the client's startup values away, sets them again on the
    /// attached server (PostgreSQL resets to the startup packet's values, a pooled server
    /// to its own).
    pub(super) async fn restore_startup_values(&mut self) {
        if self.status.in_transaction() {
            return;
        }
        if let Some(sql) = self.state.take_startup_restore()
            && let Some(s) = self.server.as_mut()
            && matches!(s.conn.run_internal(&sql).await, Ok((None, b'I')))
        {
            s.conn.state_hash = self.state.hash();
        }
    }

    /// Records why the client keeps its connection (counted for `/api/topology`).
    pub(in crate::session) fn set_pins(&mut self, pins: Pins) {
        if pins == self.pins {
            return;
        }
        if !pins.is_empty() && self.pins.is_empty() {
            tracing::info!(
                session = self.info.session_id,
                reasons = ?pins.names(),
                "session pinned to its server connection"
            );
        }
        self.env.pins.change(self.pins, pins);
        self.pins = pins;
    }
}

/// Whether `sql` contains `word` in any case.
fn contains_word(sql: &str, word: &[u8]) -> bool {
    sql.as_bytes()
        .windows(word.len())
        .any(|w| w.eq_ignore_ascii_case(word))
}

/// Whether a `set_config` call names its setting with anything but a constant (or sits
/// where the parser cannot see it, such as a function body), so the name stays unknown.
fn computes_a_setting_name(sql: &str) -> bool {
    let (_, analysis) = crate::plugins::facts::analyzer().analyze(sql);
    if analysis.error.is_some() {
        return true;
    }
    let named = analysis
        .statements
        .iter()
        .filter_map(|s| s.setting.as_deref())
        .any(|s| s != "(not a constant)");
    let computed = analysis
        .statements
        .iter()
        .any(|s| s.setting.as_deref() == Some("(not a constant)"));
    computed || !named
}
