//! One journal record and its on-disk encoding: `[len u32][crc32 u32][payload]`, little
//! endian, the CRC over the payload. The payload is a version byte followed by the fields in
//! a fixed order; strings and byte strings are length-prefixed.

use super::JournalError;

/// Payload format version written: 2 added the result formats (version 1 records read
/// back with none, meaning text).
const VERSION: u8 = 2;

/// Bytes before a payload: its length and CRC.
pub const FRAME_HEADER: usize = 8;

/// A payload larger than this is corruption, not a record.
pub const MAX_PAYLOAD: usize = 256 << 20;

/// One executed statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Position in the journal, assigned by the writer (1, 2, …).
    pub seq: u64,
    /// The client session.
    pub session_id: u64,
    /// The session's transaction number, 0 outside an explicit transaction.
    pub transaction_id: u64,
    /// Client user.
    pub user: String,
    /// Database.
    pub database: String,
    /// Node that ran it.
    pub node: String,
    /// SQL text (the query, or the prepared statement an `Execute` ran).
    pub sql: String,
    /// Parameter format codes as the client sent them (0 text, 1 binary).
    pub param_formats: Vec<i16>,
    /// Bound parameter values; `None` is NULL.
    pub params: Vec<Option<Vec<u8>>>,
    /// Result column format codes the client asked for in its `Bind` (empty: all text).
    pub result_formats: Vec<i16>,
    /// Start, microseconds since the Unix epoch.
    pub started_at_us: u64,
    /// Duration in microseconds.
    pub duration_us: u64,
    /// Rows returned or affected.
    pub rows: u64,
    /// CRC-32 of the result rows and command tags.
    pub checksum: u32,
    /// SQLSTATE and message of an error.
    pub error: Option<(String, String)>,
}

impl Record {
    /// Roughly what the record holds in memory, in bytes.
    pub fn approx_size(&self) -> usize {
        128 + self.user.len()
            + self.database.len()
            + self.node.len()
            + self.sql.len()
            + self.param_formats.len() * 2
            + self.result_formats.len() * 2
            + self
                .params
                .iter()
                .map(|p| 24 + p.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
            + self.error.as_ref().map_or(0, |(c, m)| c.len() + m.len())
    }

    /// End time, microseconds since the Unix epoch.
    pub fn ended_at_us(&self) -> u64 {
        self.started_at_us + self.duration_us
    }

    /// Appends the framed record to `out`.
    pub fn encode_framed(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER]);
        out.push(VERSION);
        for v in [
            self.seq,
            self.session_id,
            self.transaction_id,
            self.started_at_us,
            self.duration_us,
            self.rows,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.checksum.to_le_bytes());
        for s in [&self.user, &self.database, &self.node, &self.sql] {
            put_bytes(out, s.as_bytes());
        }
        put_formats(out, &self.param_formats);
        out.extend_from_slice(&(self.params.len() as u32).to_le_bytes());
        for p in &self.params {
            match p {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    put_bytes(out, v);
                }
            }
        }
        match &self.error {
            None => out.push(0),
            Some((code, message)) => {
                out.push(1);
                put_bytes(out, code.as_bytes());
                put_bytes(out, message.as_bytes());
            }
        }
        put_formats(out, &self.result_formats);
        let payload = &out[start + FRAME_HEADER..];
        let len = payload.len() as u32;
        let crc = crc32fast::hash(payload);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes a payload whose CRC was verified.
    pub fn decode(payload: &[u8]) -> Result<Record, JournalError> {
        let mut r = Cursor { buf: payload };
        let version = r.u8()?;
        if !(1..=VERSION).contains(&version) {
            return Err(JournalError::Format("unknown record version".into()));
        }
        let mut rec = Record {
            seq: r.u64()?,
            session_id: r.u64()?,
            transaction_id: r.u64()?,
            started_at_us: r.u64()?,
            duration_us: r.u64()?,
            rows: r.u64()?,
            checksum: r.u32()?,
            ..Record::default()
        };
        rec.user = r.string()?;
        rec.database = r.string()?;
        rec.node = r.string()?;
        rec.sql = r.string()?;
        rec.param_formats = r.formats()?;
        let n = r.u32()? as usize;
        for _ in 0..n.min(payload.len()) {
            rec.params.push(match r.u8()? {
                0 => None,
                _ => Some(r.bytes()?.to_vec()),
            });
        }
        rec.error = match r.u8()? {
            0 => None,
            _ => Some((r.string()?, r.string()?)),
        };
        if version >= 2 {
            rec.result_formats = r.formats()?;
        }
        Ok(rec)
    }
}

fn put_formats(out: &mut Vec<u8>, formats: &[i16]) {
    out.extend_from_slice(&(formats.len() as u32).to_le_bytes());
    for f in formats {
        out.extend_from_slice(&f.to_le_bytes());
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], JournalError> {
        if self.buf.len() < n {
            return Err(JournalError::Format(
                "record shorter than its fields".into(),
            ));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, JournalError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, JournalError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, JournalError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn bytes(&mut self) -> Result<&'a [u8], JournalError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn formats(&mut self) -> Result<Vec<i16>, JournalError> {
        let n = self.u32()? as usize;
        let raw = self.take(
            n.checked_mul(2)
                .ok_or_else(|| JournalError::Format("record shorter than its fields".into()))?,
        )?;
        Ok(raw
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect())
    }
    fn string(&mut self) -> Result<String, JournalError> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field() {
        let rec = Record {
            seq: 7,
            session_id: 3,
            transaction_id: 2,
            user: "app".into(),
            database: "db".into(),
            node: "primary".into(),
            sql: "select $1".into(),
            param_formats: vec![0, 1],
            params: vec![Some(b"42".to_vec()), None],
            result_formats: vec![1],
            started_at_us: 1_700_000_000_000_000,
            duration_us: 250,
            rows: 1,
            checksum: 0xdead_beef,
            error: Some(("42P01".into(), "no such table".into())),
        };
        let mut buf = Vec::new();
        rec.encode_framed(&mut buf);
        let len = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
        assert_eq!(len, buf.len() - FRAME_HEADER);
        assert_eq!(crc, crc32fast::hash(&buf[FRAME_HEADER..]));
        assert_eq!(Record::decode(&buf[FRAME_HEADER..]).unwrap(), rec);
    }

    #[test]
    fn version_1_records_read_back_with_text_results() {
        let rec = Record {
            seq: 1,
            sql: "select 1".into(),
            param_formats: vec![0],
            ..Record::default()
        };
        let mut buf = Vec::new();
        rec.encode_framed(&mut buf);
        // A version 1 payload is the version 2 one without the trailing result formats.
        let mut v1 = buf[FRAME_HEADER..buf.len() - 4].to_vec();
        v1[0] = 1;
        assert_eq!(Record::decode(&v1).unwrap(), rec);
        let mut v9 = buf[FRAME_HEADER..].to_vec();
        v9[0] = 9;
        assert!(Record::decode(&v9).is_err());
    }
}
