//! What a session keeps so a transaction can survive the loss of its server: the bytes of
//! every request batch of the open transaction with a checksum and row count of what the
//! server answered, whether the batch in flight can be re-sent without risk of applying it
//! twice, and the transaction id captured just before a `COMMIT` so an unknown commit
//! outcome can be resolved with `txid_status` on the new primary.

use std::collections::VecDeque;

use crate::pool::ServerConn;
use crate::sql::{split_statements, starts_with_keyword};
use crate::wire::messages;
use helios_analysis::StatementClass;

/// One completed request batch of the open transaction.
#[derive(Debug)]
pub struct DoneBatch {
    /// The bytes sent to the server.
    pub bytes: Vec<u8>,
    /// CRC-32 of the rows, command tags and error codes the server answered.
    pub crc: u32,
    /// Rows returned.
    pub rows: u64,
}

/// The open transaction's log and the batch in flight.
#[derive(Debug)]
pub struct TxLog {
    /// Request batches sent and not answered yet (each ends with `Sync`, `Query` or
    /// `FunctionCall`), oldest first.
    in_flight: VecDeque<Vec<u8>>,
    /// Bytes sent after the last complete batch.
    open: Vec<u8>,
    crc: crc32fast::Hasher,
    rows: u64,
    /// Server messages answered to the batch in flight so far.
    pub answered: usize,
    /// The batch in flight ran statements that may have committed on their own.
    pub autocommit_write: bool,
    /// The batch in flight commits the transaction.
    pub commits: bool,
    /// Statements in the batch in flight.
    pub statements: usize,
    /// Completed batches of the open transaction, oldest first.
    pub done: Vec<DoneBatch>,
    bytes: usize,
    /// The transaction outgrew the limits and cannot be replayed.
    pub overflow: bool,
    /// The primary's WAL position when the transaction started (0 unknown).
    pub start_lsn: u64,
    /// The transaction id, read after the first batch that wrote; `Some(None)` when none
    /// was assigned.
    pub xid: Option<Option<i64>>,
    /// The hidden transaction-id query is in flight.
    pub xid_pending: bool,
    /// The topology generation (which primary) the id was read under.
    pub xid_generation: u64,
    /// The open transaction has run statements that may write.
    pub wrote: bool,
    /// The batch in flight writes inside a transaction block that is still open after it.
    batch_writes_in_tx: bool,
    max_statements: usize,
    max_bytes: usize,
    resolve_commits: bool,
}

impl TxLog {
    /// The log of a new session, when `[ha] transaction_replay` is on.
    pub fn for_session(ha: Option<&crate::config::HaConfig>) -> Option<Box<TxLog>> {
        ha.filter(|ha| ha.transaction_replay).map(|ha| {
            Box::new(TxLog::new(
                ha.replay_max_statements,
                ha.replay_max_bytes,
                ha.resolve_commits,
            ))
        })
    }

    /// An empty log with limits.
    pub fn new(max_statements: usize, max_bytes: usize, resolve_commits: bool) -> TxLog {
        TxLog {
            in_flight: VecDeque::new(),
            open: Vec::new(),
            crc: crc32fast::Hasher::new(),
            rows: 0,
            answered: 0,
            autocommit_write: false,
            commits: false,
            statements: 0,
            done: Vec::new(),
            bytes: 0,
            overflow: false,
            start_lsn: 0,
            xid: None,
            xid_pending: false,
            xid_generation: 0,
            wrote: false,
            batch_writes_in_tx: false,
            max_statements,
            max_bytes,
            resolve_commits,
        }
    }

    /// Notes the statements of a request about to be sent; `in_tx` is whether a
    /// transaction block is open before them.
    pub fn note_statements(&mut self, sql: &str, in_tx: bool) {
        self.note_kinds(&kinds(sql), in_tx);
    }

    /// [`TxLog::note_statements`] with the statements' kinds known already.
    pub fn note_kinds(&mut self, kinds: &[Kind], mut in_tx: bool) {
        for kind in kinds {
            self.statements += 1;
            match kind {
                Kind::Begin => in_tx = true,
                Kind::Commit => {
                    if in_tx {
                        self.commits = true;
                    }
                    in_tx = false;
                }
                Kind::Rollback => in_tx = false,
                Kind::Read => {}
                Kind::Write if in_tx => {
                    self.wrote = true;
                    self.batch_writes_in_tx = true;
                }
                Kind::Write => self.autocommit_write = true,
            }
        }
        if !in_tx {
            // The batch ends its transaction: its writes need no transaction id.
            self.batch_writes_in_tx = false;
        }
    }

    /// Whether the transaction id should be read after the batch in flight: it is the first
    /// batch of the open transaction that wrote.
    pub fn wants_xid(&self) -> bool {
        self.resolve_commits && self.batch_writes_in_tx && self.xid.is_none() && !self.xid_pending
    }

    /// Bytes written to the server: whole messages, split into request batches.
    pub fn sent(&mut self, bytes: &[u8]) {
        if self.open.len() + bytes.len() > self.max_bytes {
            self.overflow = true;
        }
        let mut at = 0;
        while at + 5 <= bytes.len() {
            let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into().expect("4")) as usize;
            let end = (at + 1 + len).min(bytes.len());
            if !self.overflow {
                self.open.extend_from_slice(&bytes[at..end]);
            }
            if matches!(bytes[at], b'S' | b'Q' | b'F') {
                self.in_flight.push_back(std::mem::take(&mut self.open));
            }
            at = end;
        }
    }

    /// Every byte sent and not answered yet, in order (what is re-sent after a loss).
    pub fn unanswered(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for b in &self.in_flight {
            out.extend_from_slice(b);
        }
        out.extend_from_slice(&self.open);
        out
    }

    /// After a move to a new server: `bytes` are now all that is in flight.
    pub fn resent(&mut self, bytes: &[u8]) {
        self.in_flight.clear();
        self.open.clear();
        self.sent(bytes);
    }

    /// The hidden transaction-id query was answered.
    pub fn injected_answered(&mut self) {
        self.in_flight.pop_front();
    }

    /// A COPY started: its data is not kept, so the transaction cannot be replayed.
    pub fn copy_started(&mut self) {
        self.overflow = true;
    }

    /// One server message answering the batch in flight.
    #[inline]
    pub fn answer(&mut self, tag: u8, body: &[u8]) {
        // Notices, parameter changes and notifications are not part of the answer.
        if matches!(tag, b'N' | b'S' | b'A') {
            return;
        }
        self.answered += 1;
        fold(&mut self.crc, &mut self.rows, tag, body);
    }

    /// `ReadyForQuery`: the batch is complete. Inside a transaction it joins the log; at
    /// its end the log is cleared. Returns whether a transaction has just started.
    pub fn ready(&mut self, before: u8, status: u8) -> bool {
        let batch = self.in_flight.pop_front().unwrap_or_default();
        let crc = std::mem::replace(&mut self.crc, crc32fast::Hasher::new()).finalize();
        let rows = std::mem::take(&mut self.rows);
        self.answered = 0;
        if self.in_flight.is_empty() && self.open.is_empty() {
            // Pipelined batches share these flags until all of them are answered.
            self.autocommit_write = false;
            self.commits = false;
            self.statements = 0;
            self.batch_writes_in_tx = false;
        }
        if status == b'I' {
            self.done.clear();
            self.bytes = 0;
            self.overflow = false;
            self.xid = None;
            self.xid_pending = false;
            self.wrote = false;
            self.start_lsn = 0;
            return false;
        }
        self.bytes += batch.len();
        if self.done.len() >= self.max_statements || self.bytes > self.max_bytes {
            self.overflow = true;
        }
        if !self.overflow {
            self.done.push(DoneBatch {
                bytes: batch,
                crc,
                rows,
            });
        }
        before == b'I'
    }

    /// Whether the batch in flight may be sent again after the server was lost: nothing of
    /// its answer reached the client, and it cannot have committed anything by itself.
    pub fn resendable(&self) -> bool {
        self.answered == 0 && !self.autocommit_write && !self.overflow
    }
}

/// What a statement means for replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK` / `ABORT`.
    Rollback,
    /// Reads only.
    Read,
    /// May write.
    Write,
}

/// The kind of every statement in `sql`.
pub fn kinds(sql: &str) -> Vec<Kind> {
    split_statements(sql)
        .into_iter()
        .map(|stmt| {
            if starts_with_keyword(stmt, "begin") || starts_with_keyword(stmt, "start") {
                Kind::Begin
            } else if is_commit(stmt) {
                Kind::Commit
            } else if starts_with_keyword(stmt, "rollback") || starts_with_keyword(stmt, "abort") {
                Kind::Rollback
            } else {
                // Replay must know every write: PostgreSQL's parser decides (cached by text).
                let (_, analysis) = crate::plugins::facts::analyzer().analyze(stmt);
                let class = analysis.statements.first().map(|s| s.class);
                match class.unwrap_or(StatementClass::Other) {
                    // Session commands and savepoints leave nothing durable behind.
                    StatementClass::Read
                    | StatementClass::Session
                    | StatementClass::Transaction => Kind::Read,
                    _ => Kind::Write,
                }
            }
        })
        .collect()
}

/// Whether a statement ends a transaction by committing it.
pub fn is_commit(stmt: &str) -> bool {
    (starts_with_keyword(stmt, "commit")
        && crate::sql::leading_words(stmt, 2)
            .get(1)
            .is_none_or(|w| w != "prepared"))
        || starts_with_keyword(stmt, "end")
}

/// Adds one server message to a batch's checksum and row count.
#[inline]
fn fold(crc: &mut crc32fast::Hasher, rows: &mut u64, tag: u8, body: &[u8]) {
    match tag {
        b'D' => {
            crc.update(body);
            *rows += 1;
        }
        b'C' => crc.update(body),
        b'E' => {
            let code = messages::ErrorFields::parse(body)
                .map(|f| f.code)
                .unwrap_or_default();
            crc.update(code.as_bytes());
        }
        _ => {}
    }
}

/// Runs a recorded batch on `conn` and returns the checksum and rows of its answer and the
/// final transaction status.
pub async fn rerun(conn: &mut ServerConn, bytes: &[u8]) -> Result<(u32, u64, u8), String> {
    let mut crc = crc32fast::Hasher::new();
    let mut rows = 0;
    let status = conn
        .exchange(bytes, |tag, body| fold(&mut crc, &mut rows, tag, body))
        .await
        .map_err(|e| e.to_string())?;
    Ok((crc.finalize(), rows, status))
}

/// The query whose answer is the transaction id (NULL when none was assigned yet).
pub const XID_QUERY: &str = "select txid_current_if_assigned()";

/// Server statement (and portal) name of [`XID_QUERY`], prepared once per connection.
const XID_NAME: &[u8] = b"hp_xid";

/// Hash under which a server connection remembers it has [`XID_NAME`].
pub const XID_HASH: u64 = 0x6870_5f78_6964;

/// Appends the hidden transaction-id request as its own batch: `Parse` (when the connection
/// lacks the statement), `Bind` to a named portal (the client's unnamed portal is left
/// alone), `Execute`, `Close` of the portal, `Sync`.
pub fn encode_xid_request(out: &mut Vec<u8>, prepare: bool) {
    use crate::wire::frame::write_message;
    if prepare {
        write_message(out, b'P', |b| {
            b.extend_from_slice(XID_NAME);
            b.push(0);
            b.extend_from_slice(XID_QUERY.as_bytes());
            b.extend_from_slice(&[0, 0, 0]);
        });
    }
    write_message(out, b'B', |b| {
        for _ in 0..2 {
            b.extend_from_slice(XID_NAME);
            b.push(0);
        }
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    });
    write_message(out, b'E', |b| {
        b.extend_from_slice(XID_NAME);
        b.extend_from_slice(&[0, 0, 0, 0, 0]);
    });
    write_message(out, b'C', |b| {
        b.push(b'P');
        b.extend_from_slice(XID_NAME);
        b.push(0);
    });
    messages::sync(out);
}

/// Removes what the proxy injected from a recorded batch: `Parse` and `Close` messages of
/// proxy-named statements (`hp_…`; on a new server connection every statement is prepared
/// before the replay) and the hidden transaction-id request.
pub fn strip_injected(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    let mut in_xid_request = false;
    while at + 5 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into().expect("4")) as usize;
        let end = (at + 1 + len).min(bytes.len());
        let (tag, body) = (bytes[at], &bytes[(at + 5).min(end)..end]);
        let is_proxy_parse =
            (tag == b'P' && body.starts_with(b"hp_")) || (tag == b'C' && body.starts_with(b"Shp_"));
        if tag == b'B' && body.starts_with(XID_NAME) && body.get(XID_NAME.len()) == Some(&0) {
            in_xid_request = true;
        }
        if !is_proxy_parse && !in_xid_request {
            out.extend_from_slice(&bytes[at..end]);
        }
        if tag == b'S' {
            in_xid_request = false;
        }
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autocommit_writes_are_not_resendable_but_writes_in_a_transaction_are() {
        let mut log = TxLog::new(100, 1 << 20, true);
        log.note_statements("insert into t values (1)", false);
        assert!(!log.resendable());
        log.ready(b'I', b'I');
        log.note_statements("begin; insert into t values (1)", false);
        assert!(log.resendable());
        assert!(!log.commits);
        assert!(log.wants_xid(), "the first write of a transaction");
        log.ready(b'I', b'T');
        log.xid = Some(Some(7));
        log.note_statements("update t set a = 2", true);
        assert!(log.resendable());
        assert!(!log.wants_xid(), "captured once");
        log.ready(b'T', b'T');
        assert_eq!(log.done.len(), 2);
        log.note_statements("commit", true);
        assert!(log.commits);
        log.ready(b'T', b'I');
        assert!(log.done.is_empty());
        log.note_statements("select 1", false);
        assert!(log.resendable());
    }

    #[test]
    fn cursor_statements_outside_a_transaction_can_be_resent() {
        // A held cursor is re-created on the new server, so a FETCH lost with the old one
        // runs again there; it writes nothing that could have committed.
        assert_eq!(
            kinds("FETCH 5 FROM cur; MOVE 1 IN cur; CLOSE cur"),
            vec![Kind::Read; 3]
        );
        assert_eq!(
            kinds("DECLARE c CURSOR WITH HOLD FOR SELECT nextval('s')"),
            vec![Kind::Write]
        );
    }

    #[test]
    fn proxy_parses_are_stripped() {
        let mut bytes = Vec::new();
        messages::query(&mut bytes, "select 1");
        let mut parse = Vec::new();
        crate::wire::frame::write_message(&mut parse, b'P', |b| {
            b.extend_from_slice(b"hp_0011\0select 2\0\0\0");
        });
        bytes.extend_from_slice(&parse);
        messages::query(&mut bytes, "select 3");
        let mut xid = Vec::new();
        encode_xid_request(&mut xid, true);
        bytes.extend_from_slice(&xid);
        let mut tail = Vec::new();
        messages::sync(&mut tail);
        bytes.extend_from_slice(&tail);
        let stripped = strip_injected(&bytes);
        assert_eq!(stripped.len(), bytes.len() - parse.len() - xid.len());
    }
}
