//! The proxy's own answers to a client message: a component's result, or an error that
//! ends the statement the way PostgreSQL would (failing the server's batch with it).

use super::Relay;
use super::expect::{Expect, SqlError, Synthetic};
use crate::session::served;
use crate::session::steps::{Answer, Protocol};
use crate::wire::messages::{self, sqlstate};

impl Relay {
    /// Gives the proxy's own answer to the current message.
    pub(in crate::session) fn answer(&mut self, answer: Answer, protocol: Protocol) {
        match (answer, protocol) {
            (Answer::Error(e), _) => self.refuse(e, protocol),
            (Answer::Rows(result), Protocol::Simple) => {
                let mut out = Vec::new();
                served::encode_result(&mut out, &result);
                self.queue.push_synthetic(Synthetic::Raw(out));
                self.queue.push_synthetic(Synthetic::ReadyForQuery);
            }
            (Answer::Rows(_), Protocol::Extended) => self.refuse(
                SqlError::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "a component answered a bind with a result, which only a statement can have",
                ),
                protocol,
            ),
        }
    }

    /// Answers the current message with an error, the way PostgreSQL ends a statement that
    /// failed: a simple query gets its `ReadyForQuery`; in the extended protocol the rest of
    /// the batch is skipped up to `Sync`. With a server attached, the server's batch is
    /// failed too (a `Parse` of SQL that cannot parse, its error replaced by this one), so
    /// what the batch already ran is rolled back with it and an open transaction is failed,
    /// exactly as if the refused statement had failed on the server.
    pub(in crate::session) fn refuse(&mut self, error: SqlError, protocol: Protocol) {
        if self.server.is_some() {
            match protocol {
                Protocol::Simple => {
                    messages::query(&mut self.sout, FAILS_TO_PARSE);
                    self.queue.push(Expect::Refusal(error));
                    self.queue.push(Expect::Query {
                        effects: None,
                        post: None,
                        channels: None,
                    });
                }
                Protocol::Extended => {
                    encode_failing_parse(&mut self.sout);
                    self.queue.push(Expect::Refusal(error));
                    self.batch_open = true;
                    self.skip_until_sync = true;
                }
            }
            return;
        }
        self.queue.push_synthetic(Synthetic::Error(error));
        match protocol {
            Protocol::Simple => self.queue.push_synthetic(Synthetic::ReadyForQuery),
            Protocol::Extended => self.skip_until_sync = true,
        }
    }
}

/// SQL the server refuses to parse (42601): sent to fail a batch or transaction on purpose
/// when the proxy refuses a statement in it.
const FAILS_TO_PARSE: &str = "hp_refused";

/// A `Parse` of [`FAILS_TO_PARSE`] into the unnamed statement, which the proxy never uses
/// (client statements get `hp_…` names), so a failed parse there touches nothing; being
/// unnamed it is also sent again with the batch if the session moves to a new server.
fn encode_failing_parse(out: &mut Vec<u8>) {
    crate::wire::frame::write_message(out, b'P', |b| {
        b.push(0);
        b.extend_from_slice(FAILS_TO_PARSE.as_bytes());
        b.extend_from_slice(&[0, 0, 0]);
    });
}
