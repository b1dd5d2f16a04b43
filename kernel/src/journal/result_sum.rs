//! The summary of a statement's answer the journal keeps and replay recomputes: a CRC-32
//! over the `DataRow` bodies and command tags in order, and the rows (returned, or affected
//! as the tags report them). Both sides fold the same bytes, so a replay that returns the
//! same rows in the same formats gives the same checksum.

use crate::wire::messages::{tag_is_write, tag_rows};

/// A running checksum and row count.
#[derive(Debug, Default, Clone)]
pub struct ResultSum {
    crc: crc32fast::Hasher,
    /// Rows so far.
    pub rows: u64,
}

impl ResultSum {
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

    /// The checksum of what was folded.
    pub fn checksum(&self) -> u32 {
        self.crc.clone().finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_count_the_rows_their_tag_reports_and_reads_count_data_rows() {
        let mut s = ResultSum::default();
        s.note_tag(b"INSERT 0 3");
        assert_eq!(s.rows, 3);
        let mut s = ResultSum::default();
        s.note_row(b"row");
        s.note_row(b"row");
        s.note_tag(b"SELECT 2");
        assert_eq!(s.rows, 2);
        let mut other = ResultSum::default();
        other.note_row(b"row");
        other.note_row(b"rox");
        other.note_tag(b"SELECT 2");
        assert_ne!(s.checksum(), other.checksum());
    }
}
