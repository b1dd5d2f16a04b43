//! The journal's observer: a record filled in while its statement runs (rows counted and
//! checksummed as they pass) and appended when it completes.

use crate::journal::{Journal, Record};
use crate::plugins::host::SessionInfo;
use crate::wire::messages::{tag_is_write, tag_rows};

/// Parameters bound to a portal: formats and values.
pub type BoundParams = (Vec<i16>, Vec<Option<Vec<u8>>>);

/// A journal record being filled in while its statement runs.
#[derive(Debug)]
pub struct JournalEntry {
    sql: String,
    param_formats: Vec<i16>,
    params: Vec<Option<Vec<u8>>>,
    started_at_us: u64,
    transaction_id: u64,
    rows: u64,
    crc: crc32fast::Hasher,
}

impl JournalEntry {
    /// A record for `sql` with its bound parameters, in journal transaction
    /// `transaction_id` (0 outside a transaction block).
    pub fn new(sql: &str, params: Option<BoundParams>, transaction_id: u64) -> Box<Self> {
        let (param_formats, params) = params.unwrap_or_default();
        Box::new(JournalEntry {
            sql: sql.to_owned(),
            param_formats,
            params,
            started_at_us: crate::journal::unix_us(std::time::SystemTime::now()),
            transaction_id,
            rows: 0,
            crc: crc32fast::Hasher::new(),
        })
    }

    /// Counts a `DataRow` and folds it into the checksum.
    #[inline]
    pub fn note_row(&mut self, body: &[u8]) {
        self.rows += 1;
        self.crc.update(body);
    }

    /// Folds a command tag into the checksum, and the rows a write reports into the count.
    pub fn note_tag(&mut self, tag: &[u8]) {
        self.crc.update(tag);
        if tag_is_write(tag)
            && let Some(n) = tag_rows(tag)
        {
            self.rows += n;
        }
    }

    /// Appends the finished record.
    pub fn append(
        self,
        journal: &Journal,
        info: &SessionInfo,
        node: &str,
        duration_us: u64,
        error: Option<(String, String)>,
    ) {
        journal.append(Record {
            seq: 0,
            session_id: info.session_id,
            transaction_id: self.transaction_id,
            user: info.user.clone(),
            database: info.database.clone(),
            node: node.to_owned(),
            sql: self.sql,
            param_formats: self.param_formats,
            params: self.params,
            started_at_us: self.started_at_us,
            duration_us,
            rows: self.rows,
            checksum: self.crc.finalize(),
            error,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_count_the_rows_their_tag_reports_and_reads_count_data_rows() {
        let mut e = JournalEntry::new("insert …", None, 0);
        e.note_tag(b"INSERT 0 3");
        assert_eq!(e.rows, 3);
        let mut e = JournalEntry::new("select …", None, 0);
        e.note_row(b"row");
        e.note_row(b"row");
        e.note_tag(b"SELECT 2");
        assert_eq!(e.rows, 2);
    }
}
