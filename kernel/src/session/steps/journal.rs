//! The journal's observer: a record filled in while its statement runs (rows counted and
//! checksummed as they pass, [`ResultSum`]) and appended when it completes.

use crate::journal::{Journal, Record, ResultSum};
use crate::plugins::host::SessionInfo;

/// What a `Bind` gave its portal, as the journal records it.
#[derive(Debug, Clone, Default)]
pub struct BoundParams {
    /// Parameter format codes as sent.
    pub formats: Vec<i16>,
    /// Values; `None` is NULL.
    pub values: Vec<Option<Vec<u8>>>,
    /// Result column format codes asked for.
    pub result_formats: Vec<i16>,
}

/// A journal record being filled in while its statement runs.
#[derive(Debug)]
pub struct JournalEntry {
    sql: String,
    params: BoundParams,
    started_at_us: u64,
    transaction_id: u64,
    sum: ResultSum,
}

impl JournalEntry {
    /// A record for `sql` with its bound parameters, in journal transaction
    /// `transaction_id` (0 outside a transaction block).
    pub fn new(sql: &str, params: Option<BoundParams>, transaction_id: u64) -> Box<Self> {
        Box::new(JournalEntry {
            sql: sql.to_owned(),
            params: params.unwrap_or_default(),
            started_at_us: crate::journal::unix_us(std::time::SystemTime::now()),
            transaction_id,
            sum: ResultSum::default(),
        })
    }

    /// Counts a `DataRow` and folds it into the checksum.
    #[inline]
    pub fn note_row(&mut self, body: &[u8]) {
        self.sum.note_row(body);
    }

    /// Folds a command tag into the checksum, and the rows a write reports into the count.
    pub fn note_tag(&mut self, tag: &[u8]) {
        self.sum.note_tag(tag);
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
            param_formats: self.params.formats,
            params: self.params.values,
            result_formats: self.params.result_formats,
            started_at_us: self.started_at_us,
            duration_us,
            rows: self.sum.rows,
            checksum: self.sum.checksum(),
            error,
        });
    }
}
