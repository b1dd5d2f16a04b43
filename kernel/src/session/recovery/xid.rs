//! The transaction id of a writing transaction, read with a hidden query in the same round
//! trip as its first request batch, so that if the server is lost during the `COMMIT`,
//! `txid_status` on the new primary tells whether it committed.

use super::txlog;
use crate::session::relay::Relay;
use crate::session::relay::expect::Expect;

impl Relay {
    /// Sends the hidden transaction-id request when the open transaction wants one.
    pub(in crate::session) fn capture_xid(&mut self) {
        if let Some(tx) = self.tx.as_deref_mut()
            && tx.wants_xid()
            && let Some(server) = self.server.as_mut()
        {
            tx.xid_pending = true;
            let prepare = server.conn.prepared.insert_fixed(txlog::XID_HASH);
            txlog::encode_xid_request(&mut self.sout, prepare);
            self.queue.push(Expect::Xid);
        }
    }

    /// Handles the answer to the hidden transaction-id query; the client sees none of it.
    pub(in crate::session) fn on_xid_message(&mut self, tag: u8, body: &[u8]) -> bool {
        match tag {
            b'D' => {
                if let Some(tx) = self.tx.as_deref_mut() {
                    tx.xid = Some(first_column_i64(body));
                    tx.xid_generation = self.env.topology.generation();
                }
            }
            b'E' => {
                if let Some(s) = self.server.as_mut() {
                    s.conn.prepared.remove(txlog::XID_HASH);
                }
            }
            b'Z' => {
                self.queue.pop();
                if let Some(tx) = self.tx.as_deref_mut() {
                    tx.xid_pending = false;
                    tx.injected_answered();
                }
            }
            _ => {}
        }
        false
    }
}

/// The first column of a `DataRow` body; `None` for NULL or a malformed row.
pub fn first_column(body: &[u8]) -> Option<&[u8]> {
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    body.get(6..6 + usize::try_from(len).ok()?)
}

/// The first column of a `DataRow` as an integer; `None` for NULL or anything else.
fn first_column_i64(body: &[u8]) -> Option<i64> {
    std::str::from_utf8(first_column(body)?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_column_of_a_data_row_is_read_and_null_is_none() {
        let row = [0, 1, 0, 0, 0, 3, b'7', b'4', b'2'];
        assert_eq!(first_column_i64(&row), Some(742));
        let null = [0, 1, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(first_column(&null), None);
        assert_eq!(first_column(&[0, 1, 0]), None, "malformed");
    }
}
