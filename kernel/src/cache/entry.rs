//! A cached result: the server's own frames (`RowDescription` with its format codes
//! zeroed, the `DataRow`s, the `CommandComplete`), the tables it read, and its encoding for
//! Redis.

use crate::wire::frame::split_message;

/// One statement's result as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResult {
    /// The `RowDescription` frame with every format code 0 (the portal's codes are put in
    /// when it is served).
    pub row_description: Vec<u8>,
    /// The `DataRow` frames, back to back.
    pub rows: Vec<u8>,
    /// How many rows.
    pub row_count: u64,
    /// The `CommandComplete` frame.
    pub complete: Vec<u8>,
    /// Tables it read, `database\0schema.name`: a write to any drops it.
    pub tables: Vec<String>,
}

impl CachedResult {
    /// Bytes it holds.
    pub fn bytes(&self) -> usize {
        self.row_description.len()
            + self.rows.len()
            + self.complete.len()
            + self.tables.iter().map(String::len).sum::<usize>()
            + 64
    }

    /// Serialised for Redis: each part length-prefixed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes());
        out.extend_from_slice(b"HPC1");
        for part in [&self.row_description, &self.rows, &self.complete] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&self.row_count.to_le_bytes());
        out.extend_from_slice(&(self.tables.len() as u32).to_le_bytes());
        for t in &self.tables {
            out.extend_from_slice(&(t.len() as u32).to_le_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        out
    }

    /// Reads what [`CachedResult::encode`] wrote; `None` for anything else (another
    /// version, a truncated value), which counts as a miss.
    pub fn decode(mut b: &[u8]) -> Option<CachedResult> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = (b.get(..n)?, b.get(n..)?);
            *b = rest;
            Some(head)
        }
        fn len(b: &mut &[u8]) -> Option<usize> {
            Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize)
        }
        if take(&mut b, 4)? != b"HPC1" {
            return None;
        }
        let mut parts = Vec::with_capacity(3);
        for _ in 0..3 {
            let n = len(&mut b)?;
            parts.push(take(&mut b, n)?.to_vec());
        }
        let row_count = u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
        let n = len(&mut b)?;
        let mut tables = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let l = len(&mut b)?;
            tables.push(String::from_utf8(take(&mut b, l)?.to_vec()).ok()?);
        }
        let complete = parts.pop()?;
        let rows = parts.pop()?;
        let row_description = parts.pop()?;
        let r = CachedResult {
            row_description,
            rows,
            row_count,
            complete,
            tables,
        };
        r.well_formed().then_some(r)
    }

    /// Whether the frames are what they claim (a value from Redis is checked before a
    /// client sees it).
    fn well_formed(&self) -> bool {
        let one = |bytes: &[u8], tag: u8| matches!(split_message(bytes, usize::MAX), Ok(Some((t, body))) if t == tag && body.len() + 5 == bytes.len());
        let mut rest = &self.rows[..];
        let mut count = 0;
        while !rest.is_empty() {
            match split_message(rest, usize::MAX) {
                Ok(Some((b'D', body))) => {
                    rest = &rest[5 + body.len()..];
                    count += 1;
                }
                _ => return false,
            }
        }
        count == self.row_count && one(&self.row_description, b'T') && one(&self.complete, b'C')
    }

    /// Appends what `Execute` of a portal over this result answers, from row `from` for at
    /// most `max_rows` (0 = all): the rows, then `PortalSuspended` when rows remain, else
    /// `CommandComplete` (`SELECT n` of this `Execute` for a part, as PostgreSQL counts).
    /// Returns the next row.
    pub fn execute(&self, from: u64, max_rows: u64, out: &mut Vec<u8>) -> u64 {
        let mut rest = &self.rows[..];
        let mut i = 0;
        let mut sent = 0;
        while let Ok(Some((_, body))) = split_message(rest, usize::MAX) {
            let frame = &rest[..5 + body.len()];
            if i >= from {
                if max_rows > 0 && sent == max_rows {
                    out.extend_from_slice(&crate::wire::results::PORTAL_SUSPENDED);
                    return i;
                }
                out.extend_from_slice(frame);
                sent += 1;
            }
            rest = &rest[frame.len()..];
            i += 1;
        }
        if from == 0 {
            out.extend_from_slice(&self.complete);
        } else {
            crate::wire::results::command_complete(out, &format!("SELECT {sent}"));
        }
        i
    }

    /// The `RowDescription` with `formats` (a `Bind`'s result format codes) put in.
    pub fn describe(&self, formats: &[i16], out: &mut Vec<u8>) {
        with_formats(&self.row_description, formats, out);
    }
}

/// Rewrites the format codes of a `RowDescription` frame (`None` when it is malformed).
pub fn with_formats(frame: &[u8], formats: &[i16], out: &mut Vec<u8>) -> Option<()> {
    let start = out.len();
    out.extend_from_slice(frame);
    let body = out.get_mut(start + 5..)?;
    let n = i16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    let mut at = 2;
    for i in 0..n.max(0) as usize {
        at += body.get(at..)?.iter().position(|&b| b == 0)? + 1;
        at += 16;
        let code = crate::wire::results::format_of(formats, i);
        body.get_mut(at..at + 2)?
            .copy_from_slice(&code.to_be_bytes());
        at += 2;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::results;

    fn sample() -> CachedResult {
        let mut t = Vec::new();
        results::row_description(&mut t, &["a", "b"], &[]);
        let mut rows = Vec::new();
        for i in 0..3 {
            results::data_row(&mut rows, 2, &[Some(i.to_string()), None]);
        }
        let mut c = Vec::new();
        results::command_complete(&mut c, "SELECT 3");
        CachedResult {
            row_description: t,
            rows,
            row_count: 3,
            complete: c,
            tables: vec!["app\0public.t".into()],
        }
    }

    #[test]
    fn round_trips_and_refuses_garbage() {
        let r = sample();
        assert_eq!(CachedResult::decode(&r.encode()), Some(r.clone()));
        let mut bad = r.encode();
        bad.truncate(bad.len() - 3);
        assert_eq!(CachedResult::decode(&bad), None);
        let mut lying = r.clone();
        lying.row_count = 4;
        assert_eq!(CachedResult::decode(&lying.encode()), None);
        assert_eq!(CachedResult::decode(b"HPC1\xff\xff\xff\xff"), None);
    }

    #[test]
    fn portals_get_their_formats_and_row_limits() {
        let r = sample();
        let mut out = Vec::new();
        r.describe(&[1], &mut out);
        assert_eq!(out.len(), r.row_description.len());
        assert_eq!(&out[out.len() - 2..], &1i16.to_be_bytes());
        let mut out = Vec::new();
        let next = r.execute(0, 2, &mut out);
        assert_eq!(next, 2);
        assert!(out.ends_with(&results::PORTAL_SUSPENDED));
        let mut out = Vec::new();
        r.execute(next, 0, &mut out);
        assert!(out.ends_with(b"SELECT 1\0"));
        let mut out = Vec::new();
        r.execute(0, 0, &mut out);
        assert!(out.ends_with(&r.complete));
    }
}
