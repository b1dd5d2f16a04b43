//! Frontend message bodies the proxy reads or rewrites, borrowed from the client's bytes:
//! `Parse`, `Bind`, `Describe`/`Close`, `Query` and `Execute`. Lengths and NUL terminators are
//! validated when parsed, so the accessors cannot read out of bounds.

use super::WireError;
use super::frame::{read_cstr, read_i16, read_i32, write_message};

/// A frontend `Parse` body, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseRef<'a> {
    /// Statement name (empty = unnamed).
    pub name: &'a [u8],
    /// Query text.
    pub query: &'a [u8],
    /// Everything after the query: parameter type count and OIDs.
    pub param_types: &'a [u8],
}

impl<'a> ParseRef<'a> {
    /// Parses a `Parse` body.
    pub fn parse(body: &'a [u8]) -> Result<Self, WireError> {
        let (name, rest) = read_cstr(body, "Parse")?;
        let (query, rest) = read_cstr(rest, "Parse")?;
        let (count, types) = read_i16(rest, "Parse")?;
        if count < 0 || types.len() != count as usize * 4 {
            return Err(WireError::Malformed { what: "Parse" });
        }
        Ok(ParseRef {
            name,
            query,
            param_types: rest,
        })
    }

    /// Appends a `Parse` with the same query and types under another name.
    pub fn encode_renamed(&self, out: &mut Vec<u8>, name: &[u8]) {
        write_message(out, b'P', |b| {
            b.extend_from_slice(name);
            b.push(0);
            b.extend_from_slice(self.query);
            b.push(0);
            b.extend_from_slice(self.param_types);
        });
    }
}

/// A frontend `Bind` body split at the statement name, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindRef<'a> {
    /// Destination portal name.
    pub portal: &'a [u8],
    /// Source statement name.
    pub statement: &'a [u8],
    /// Parameter formats, values and result formats, untouched.
    pub rest: &'a [u8],
}

impl<'a> BindRef<'a> {
    /// Parses the names at the front of a `Bind` body and validates the rest's framing.
    pub fn parse(body: &'a [u8]) -> Result<Self, WireError> {
        let (portal, rest) = read_cstr(body, "Bind")?;
        let (statement, rest) = read_cstr(rest, "Bind")?;
        validate_bind_rest(rest)?;
        Ok(BindRef {
            portal,
            statement,
            rest,
        })
    }

    /// The parameter format codes and values (`None` = NULL), in order.
    pub fn params(&self) -> (Vec<i16>, Vec<Option<&'a [u8]>>) {
        let mut formats = Vec::new();
        let mut values = Vec::new();
        let b = self.rest;
        // Framing was validated by `parse`.
        let nfmt = i16::from_be_bytes([b[0], b[1]]).max(0) as usize;
        let mut at = 2;
        for _ in 0..nfmt {
            formats.push(i16::from_be_bytes([b[at], b[at + 1]]));
            at += 2;
        }
        let nparams = i16::from_be_bytes([b[at], b[at + 1]]).max(0) as usize;
        at += 2;
        for _ in 0..nparams {
            let len = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            at += 4;
            if len < 0 {
                values.push(None);
            } else {
                values.push(Some(&b[at..at + len as usize]));
                at += len as usize;
            }
        }
        (formats, values)
    }

    /// The result-column format codes (none = all text, one = all columns alike).
    pub fn result_formats(&self) -> Vec<i16> {
        let b = self.rest;
        // Framing was validated by `parse`.
        let nfmt = i16::from_be_bytes([b[0], b[1]]).max(0) as usize;
        let mut at = 2 + nfmt * 2;
        let nparams = i16::from_be_bytes([b[at], b[at + 1]]).max(0) as usize;
        at += 2;
        for _ in 0..nparams {
            let len = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            at += 4 + len.max(0) as usize;
        }
        let nres = i16::from_be_bytes([b[at], b[at + 1]]).max(0) as usize;
        at += 2;
        (0..nres)
            .map(|i| i16::from_be_bytes([b[at + 2 * i], b[at + 2 * i + 1]]))
            .collect()
    }

    /// Appends a `Bind` that reads from another statement name.
    pub fn encode_renamed(&self, out: &mut Vec<u8>, statement: &[u8]) {
        write_message(out, b'B', |b| {
            b.extend_from_slice(self.portal);
            b.push(0);
            b.extend_from_slice(statement);
            b.push(0);
            b.extend_from_slice(self.rest);
        });
    }
}

fn validate_bind_rest(buf: &[u8]) -> Result<(), WireError> {
    const W: &str = "Bind";
    let (nfmt, mut b) = read_i16(buf, W)?;
    if nfmt < 0 || b.len() < nfmt as usize * 2 {
        return Err(WireError::Malformed { what: W });
    }
    b = &b[nfmt as usize * 2..];
    let (nparams, mut b2) = read_i16(b, W)?;
    if nparams < 0 {
        return Err(WireError::Malformed { what: W });
    }
    for _ in 0..nparams {
        let (len, rest) = read_i32(b2, W)?;
        if len < -1 {
            return Err(WireError::Malformed { what: W });
        }
        let len = len.max(0) as usize;
        if rest.len() < len {
            return Err(WireError::Malformed { what: W });
        }
        b2 = &rest[len..];
    }
    let (nres, rest) = read_i16(b2, W)?;
    if nres < 0 || rest.len() != nres as usize * 2 {
        return Err(WireError::Malformed { what: W });
    }
    Ok(())
}

/// A frontend `Describe` or `Close` body: kind (`S` or `P`) and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetRef<'a> {
    /// `S` for a statement, `P` for a portal.
    pub kind: u8,
    /// Name (empty = unnamed).
    pub name: &'a [u8],
}

impl<'a> TargetRef<'a> {
    /// Parses a `Describe` or `Close` body.
    pub fn parse(body: &'a [u8], what: &'static str) -> Result<Self, WireError> {
        let (&kind, rest) = body.split_first().ok_or(WireError::Malformed { what })?;
        if kind != b'S' && kind != b'P' {
            return Err(WireError::Malformed { what });
        }
        let (name, rest) = read_cstr(rest, what)?;
        if !rest.is_empty() {
            return Err(WireError::Malformed { what });
        }
        Ok(TargetRef { kind, name })
    }

    /// Appends the message (`tag` = `D` or `C`) with another name.
    pub fn encode_renamed(&self, out: &mut Vec<u8>, tag: u8, name: &[u8]) {
        write_message(out, tag, |b| {
            b.push(self.kind);
            b.extend_from_slice(name);
            b.push(0);
        });
    }
}

/// Reads the query text of a `Query` body.
pub fn query_text(body: &[u8]) -> Result<&[u8], WireError> {
    let (sql, rest) = read_cstr(body, "Query")?;
    if !rest.is_empty() {
        return Err(WireError::Malformed { what: "Query" });
    }
    Ok(sql)
}

/// Reads an `Execute` body: the portal name and the row limit (0 = all rows).
pub fn execute_body(body: &[u8]) -> Result<(&[u8], i32), WireError> {
    let (portal, rest) = read_cstr(body, "Execute")?;
    let max_rows =
        <[u8; 4]>::try_from(rest).map_err(|_| WireError::Malformed { what: "Execute" })?;
    Ok((portal, i32::from_be_bytes(max_rows)))
}
