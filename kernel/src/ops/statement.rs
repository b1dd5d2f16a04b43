//! Running one recorded or mirrored statement on a server connection the way its client
//! sent it: a simple `Query`, or `Parse`/`Bind`/`Execute`/`Sync` with the bound parameters
//! and the result formats the client asked for, so the rows come back in the same bytes and
//! their checksum compares with the journal's. What comes back is summarised in order
//! ([`ResultSum`], the journal's checksum) and regardless of order ([`RowSet`]).

use std::hash::{Hash, Hasher};

use crate::journal::ResultSum;
use crate::pool::server::{ServerConn, ServerError};
use crate::wire::frame::write_message;
use crate::wire::messages::{self, ErrorFields};

/// A statement as a client sent it.
#[derive(Debug, Clone, Default)]
pub struct Statement {
    /// SQL text.
    pub sql: String,
    /// Parameter format codes.
    pub param_formats: Vec<i16>,
    /// Parameter values; `None` is NULL.
    pub params: Vec<Option<Vec<u8>>>,
    /// Result format codes.
    pub result_formats: Vec<i16>,
}

impl Statement {
    /// Whether it goes through the extended protocol.
    fn extended(&self) -> bool {
        !self.params.is_empty() || !self.param_formats.is_empty() || !self.result_formats.is_empty()
    }

    /// Appends the messages that run it, ending in `Sync` (or a simple `Query`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        if !self.extended() {
            messages::query(out, &self.sql);
            return;
        }
        write_message(out, b'P', |b| {
            b.push(0);
            b.extend_from_slice(self.sql.as_bytes());
            b.extend_from_slice(&[0, 0, 0]);
        });
        write_message(out, b'B', |b| {
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&(self.param_formats.len() as i16).to_be_bytes());
            for f in &self.param_formats {
                b.extend_from_slice(&f.to_be_bytes());
            }
            b.extend_from_slice(&(self.params.len() as i16).to_be_bytes());
            for p in &self.params {
                match p {
                    None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => {
                        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        b.extend_from_slice(v);
                    }
                }
            }
            b.extend_from_slice(&(self.result_formats.len() as i16).to_be_bytes());
            for f in &self.result_formats {
                b.extend_from_slice(&f.to_be_bytes());
            }
        });
        write_message(out, b'E', |b| b.extend_from_slice(&[0, 0, 0, 0, 0]));
        messages::sync(out);
    }
}

/// The rows of an answer regardless of their order: a sum of per-row hashes and a count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowSet {
    /// Wrapping sum of the rows' hashes.
    pub digest: u64,
    /// Rows.
    pub rows: u64,
}

impl RowSet {
    /// Adds a `DataRow` body.
    #[inline]
    pub fn note_row(&mut self, body: &[u8]) {
        // SipHash with fixed keys: the same on every proxy and run.
        let mut h = std::hash::DefaultHasher::new();
        body.hash(&mut h);
        self.digest = self.digest.wrapping_add(h.finish());
        self.rows += 1;
    }
}

/// What a statement's answer was.
#[derive(Debug, Default, Clone)]
pub struct Answer {
    /// In order, as the journal sums it.
    pub sum: ResultSum,
    /// Regardless of order.
    pub set: RowSet,
    /// SQLSTATE of the first error.
    pub error: Option<String>,
    /// Transaction status after it.
    pub status: u8,
}

/// Sends `bytes` (one statement's messages) and summarises the answer up to its
/// `ReadyForQuery`.
pub async fn run(conn: &mut ServerConn, bytes: &[u8]) -> Result<Answer, ServerError> {
    let mut answer = Answer::default();
    answer.status = conn
        .exchange(bytes, |tag, body| match tag {
            b'D' => {
                answer.sum.note_row(body);
                answer.set.note_row(body);
            }
            b'C' => answer.sum.note_tag(body.strip_suffix(&[0]).unwrap_or(body)),
            b'E' if answer.error.is_none() => {
                answer.error = Some(
                    ErrorFields::parse(body)
                        .map(|f| f.code)
                        .unwrap_or_else(|_| "XX000".into()),
                )
            }
            _ => {}
        })
        .await?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_without_parameters_or_formats_go_as_simple_queries() {
        let mut out = Vec::new();
        Statement {
            sql: "select 1".into(),
            ..Statement::default()
        }
        .encode(&mut out);
        assert_eq!(out[0], b'Q');
        let mut out = Vec::new();
        Statement {
            sql: "select $1".into(),
            param_formats: vec![0],
            params: vec![Some(b"7".to_vec()), None],
            result_formats: vec![1],
        }
        .encode(&mut out);
        let tags: Vec<u8> = {
            let mut at = 0;
            let mut tags = Vec::new();
            while at < out.len() {
                tags.push(out[at]);
                at += 1 + u32::from_be_bytes(out[at + 1..at + 5].try_into().unwrap()) as usize;
            }
            tags
        };
        assert_eq!(tags, b"PBES");
    }

    #[test]
    fn row_sets_ignore_order_but_not_content() {
        let (mut a, mut b, mut c) = (RowSet::default(), RowSet::default(), RowSet::default());
        for r in [&b"x"[..], b"y"] {
            a.note_row(r);
        }
        for r in [&b"y"[..], b"x"] {
            b.note_row(r);
        }
        for r in [&b"y"[..], b"z"] {
            c.note_row(r);
        }
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
