//! Message framing: a type byte followed by a big-endian `i32` length that includes itself.

use super::WireError;

/// Size of a regular message header (type byte + length).
pub const HEADER_LEN: usize = 5;

/// The header of a complete or partial message at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message type byte.
    pub tag: u8,
    /// Total length on the wire, header included.
    pub total: usize,
}

/// Reads the header at the start of `buf`.
///
/// Returns `Ok(None)` when fewer than five bytes are available. A length below 4 or above
/// `limit` is an error, so a peer cannot make the proxy reserve gigabytes.
#[inline]
pub fn peek_header(buf: &[u8], limit: usize) -> Result<Option<Header>, WireError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(WireError::BadLength(len as i64));
    }
    let total = len as usize + 1;
    if total > limit {
        return Err(WireError::TooLarge { len: total, limit });
    }
    Ok(Some(Header { tag: buf[0], total }))
}

/// Returns the complete message at the start of `buf` as `(tag, body)`, or `None` when it is
/// not complete yet.
#[inline]
pub fn split_message(buf: &[u8], limit: usize) -> Result<Option<(u8, &[u8])>, WireError> {
    match peek_header(buf, limit)? {
        Some(h) if buf.len() >= h.total => Ok(Some((h.tag, &buf[HEADER_LEN..h.total]))),
        _ => Ok(None),
    }
}

/// Appends a message with `tag` whose body is written by `body`; the length is filled after.
#[inline]
pub fn write_message(out: &mut Vec<u8>, tag: u8, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(tag);
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    body(out);
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Reads a NUL-terminated string from the front of `buf`, returning it and the rest.
#[inline]
pub fn read_cstr<'a>(buf: &'a [u8], what: &'static str) -> Result<(&'a [u8], &'a [u8]), WireError> {
    let nul = memchr(buf).ok_or(WireError::Malformed { what })?;
    Ok((&buf[..nul], &buf[nul + 1..]))
}

#[inline]
fn memchr(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == 0)
}

/// Reads a big-endian `i16` from the front of `buf`.
#[inline]
pub fn read_i16<'a>(buf: &'a [u8], what: &'static str) -> Result<(i16, &'a [u8]), WireError> {
    if buf.len() < 2 {
        return Err(WireError::Malformed { what });
    }
    Ok((i16::from_be_bytes([buf[0], buf[1]]), &buf[2..]))
}

/// Reads a big-endian `i32` from the front of `buf`.
#[inline]
pub fn read_i32<'a>(buf: &'a [u8], what: &'static str) -> Result<(i32, &'a [u8]), WireError> {
    if buf.len() < 4 {
        return Err(WireError::Malformed { what });
    }
    Ok((
        i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]),
        &buf[4..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_header_needs_more() {
        assert_eq!(peek_header(b"Q\0\0", 100).unwrap(), None);
        assert_eq!(split_message(b"Q\0\0\0\x09SEL", 100).unwrap(), None);
    }

    #[test]
    fn complete_message_splits() {
        let (tag, body) = split_message(b"Q\0\0\0\x08SEL\0rest", 100)
            .unwrap()
            .unwrap();
        assert_eq!(tag, b'Q');
        assert_eq!(body, b"SEL\0");
    }

    #[test]
    fn two_gib_length_is_refused_before_reading_the_body() {
        let err = peek_header(&[b'Q', 0x7f, 0xff, 0xff, 0xff], 1 << 20).unwrap_err();
        assert!(matches!(err, WireError::TooLarge { .. }));
    }

    #[test]
    fn length_below_four_is_refused() {
        assert_eq!(
            peek_header(&[b'Q', 0, 0, 0, 3], 100).unwrap_err(),
            WireError::BadLength(3)
        );
        assert!(peek_header(&[b'Q', 0xff, 0xff, 0xff, 0xff], 100).is_err());
    }

    #[test]
    fn write_message_fills_length() {
        let mut out = Vec::new();
        write_message(&mut out, b'Z', |b| b.push(b'I'));
        assert_eq!(out, b"Z\0\0\0\x05I");
    }
}
