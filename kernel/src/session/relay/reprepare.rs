//! Which client statements the attached server holds, and preparing them there: a server's
//! copy answers for a client's `Parse` only when analysed in the current schema epoch (see
//! [`crate::pool::statements`]), and a statement the client parsed before a schema change is
//! checked against what the client was told before it runs on a server that must prepare it
//! again, as PostgreSQL checks a kept statement ("cached plan must not change result type").

use std::hash::{DefaultHasher, Hasher};
use std::sync::atomic::Ordering::Relaxed;

use super::Relay;
use super::expect::Expect;
use crate::pool::statements::Held;
use crate::session::statements::Prepared;
use crate::wire::frame::write_message;
use crate::wire::messages;

impl Relay {
    /// Makes sure the attached server has `p`, injecting a hidden `Parse` when it lacks it
    /// or holds a copy analysed before the client's last `Parse` of it.
    pub(super) fn ensure_prepared(&mut self, p: &Prepared) {
        let since = p.parsed_epoch.load(Relaxed);
        self.prepare_on_server(p, since, true);
    }

    /// Sends a `Parse` of `p` unless the attached server holds a copy analysed in epoch
    /// `since` or later; an older copy is closed first (hidden), so PostgreSQL analyses the
    /// text again as it would the client's own `Parse`. `false` when the server's copy
    /// answers.
    pub(super) fn prepare_on_server(&mut self, p: &Prepared, since: u64, hidden: bool) -> bool {
        let epoch = self.env.pools.statement_epoch.current();
        let conn = &mut self.server.as_mut().expect("attached").conn;
        match conn.prepared.held(p.hash, since) {
            Held::Current => return false,
            Held::Stale => {
                p.encode_close(&mut self.sout);
                self.queue.push(Expect::Close { hidden: true });
            }
            Held::Absent => {}
        }
        conn.prepared.prepared(p.hash, epoch);
        p.encode_parse(&mut self.sout);
        self.queue.push(Expect::Parse {
            hidden,
            hash: p.hash,
        });
        true
    }

    /// Before a `Bind` of `p` on the attached server, when a schema change came after the
    /// client's `Parse` of it: the server's copy (shared with other clients, perhaps prepared
    /// again since) may no longer be what the client was told. With nothing else in flight the
    /// proxy describes it there (preparing it first when needed) and compares with the client's
    /// description. `false` when they differ: PostgreSQL refuses to run such a statement
    /// ("cached plan must not change result type"), and so does the proxy.
    pub(super) async fn prepared_as_described(&mut self, p: &Prepared) -> bool {
        let epoch = self.env.pools.statement_epoch.current();
        let since = p.parsed_epoch.load(Relaxed);
        if since >= epoch {
            return true;
        }
        let described = p.described.load(Relaxed);
        if described == 0 || !self.queue.is_empty() || self.batch_open || !self.sout.is_empty() {
            return true;
        }
        let Some(checkout) = self.server.as_mut() else {
            return true;
        };
        let conn = &mut checkout.conn;
        let copy = conn.prepared.epoch_of(p.hash);
        if copy == Some(since) {
            return true;
        }
        let mut out = Vec::new();
        let analysed = match copy {
            Some(e) if e > since => e,
            _ => {
                if copy.is_some() {
                    p.encode_close(&mut out);
                }
                p.encode_parse(&mut out);
                // Whatever happens next, the server may hold it: closed before its next Parse.
                conn.prepared.uncertain(p.hash);
                epoch
            }
        };
        write_message(&mut out, b'D', |b| {
            b.push(b'S');
            b.extend_from_slice(&p.server_name);
            b.push(0);
        });
        messages::sync(&mut out);
        if conn.write(&out).await.is_err() {
            return true;
        }
        let mut description = Description::default();
        let mut failed = false;
        loop {
            match conn.read_message().await {
                Err(_) => return true,
                Ok((b'Z', _)) => break,
                Ok((b'E', _)) => failed = true,
                Ok((tag, body)) => description.note(tag, &body),
            }
        }
        if failed {
            return true;
        }
        conn.prepared.prepared(p.hash, analysed);
        if description.finish() != described {
            return false;
        }
        // The client's view holds for the server's analysis: no need to ask again.
        p.parsed_epoch.store(analysed, Relaxed);
        true
    }

    /// Remembers what the server told the client its statement `p` takes and returns.
    pub(super) fn note_statement_description(&mut self, p: &Prepared, tag: u8, body: &[u8]) {
        self.describing.note(tag, body);
        if tag != b't' {
            p.described
                .store(std::mem::take(&mut self.describing).finish(), Relaxed);
        }
    }
}

/// A statement's `ParameterDescription` and `RowDescription` (or `NoData`), hashed.
#[derive(Debug, Default)]
pub struct Description {
    parameters: u64,
    rows: u64,
}

impl Description {
    /// Notes one message of a statement description.
    pub fn note(&mut self, tag: u8, body: &[u8]) {
        let mut h = DefaultHasher::new();
        h.write_u8(tag);
        h.write(body);
        match tag {
            b't' => self.parameters = h.finish(),
            b'T' | b'n' => self.rows = h.finish(),
            _ => {}
        }
    }

    /// The hash of the whole description (never 0, which means "not described").
    pub fn finish(self) -> u64 {
        let mut h = DefaultHasher::new();
        h.write_u64(self.parameters);
        h.write_u64(self.rows);
        h.finish() | 1
    }
}
