//! Decoding of every message a client may send after startup, borrowed from the input
//! buffer. The relay acts on the decoded form; messages it forwards unchanged keep their
//! original bytes.

use super::WireError;
use super::messages::{self, BindRef, ParseRef, TargetRef};

/// A decoded frontend message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frontend<'a> {
    /// `Query`: SQL text (not validated as UTF-8).
    Query(&'a [u8]),
    /// `Parse`.
    Parse(ParseRef<'a>),
    /// `Bind`.
    Bind(BindRef<'a>),
    /// `Describe` of a statement (`S`) or portal (`P`).
    Describe(TargetRef<'a>),
    /// `Execute` of a portal.
    Execute {
        /// Portal name.
        portal: &'a [u8],
        /// Rows to return before `PortalSuspended` (0 = all).
        max_rows: i32,
    },
    /// `Close` of a statement or portal.
    Close(TargetRef<'a>),
    /// `Sync`.
    Sync,
    /// `Flush`.
    Flush,
    /// `CopyData`.
    CopyData,
    /// `CopyDone`.
    CopyDone,
    /// `CopyFail`.
    CopyFail,
    /// `FunctionCall`.
    FunctionCall,
    /// `Terminate`.
    Terminate,
}

/// Decodes one frontend message from its type byte and body.
pub fn parse(tag: u8, body: &[u8]) -> Result<Frontend<'_>, WireError> {
    let empty = |what| {
        if body.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed { what })
        }
    };
    Ok(match tag {
        b'Q' => Frontend::Query(messages::query_text(body)?),
        b'P' => Frontend::Parse(ParseRef::parse(body)?),
        b'B' => Frontend::Bind(BindRef::parse(body)?),
        b'D' => Frontend::Describe(TargetRef::parse(body, "Describe")?),
        b'E' => {
            let (portal, max_rows) = messages::execute_body(body)?;
            Frontend::Execute { portal, max_rows }
        }
        b'C' => Frontend::Close(TargetRef::parse(body, "Close")?),
        b'S' => {
            empty("Sync")?;
            Frontend::Sync
        }
        b'H' => {
            empty("Flush")?;
            Frontend::Flush
        }
        b'd' => Frontend::CopyData,
        b'c' => {
            empty("CopyDone")?;
            Frontend::CopyDone
        }
        b'f' => Frontend::CopyFail,
        b'F' => Frontend::FunctionCall,
        b'X' => Frontend::Terminate,
        _ => return Err(WireError::UnknownMessage(tag)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::split_message;

    #[test]
    fn every_message_type_decodes() {
        let cases: &[(u8, &[u8])] = &[
            (b'Q', b"select 1\0"),
            (b'P', b"s\0select 1\0\0\0"),
            (b'B', b"\0s\0\0\0\0\0\0\0"),
            (b'D', b"Ss\0"),
            (b'E', b"\0\0\0\0\0"),
            (b'C', b"Pp\0"),
            (b'S', b""),
            (b'H', b""),
            (b'd', b"abc"),
            (b'c', b""),
            (b'f', b"oops\0"),
            (b'F', b"\0\0\0\x01"),
            (b'X', b""),
        ];
        for (tag, body) in cases {
            parse(*tag, body).unwrap_or_else(|e| panic!("{}: {e}", *tag as char));
        }
        assert_eq!(parse(b'?', b""), Err(WireError::UnknownMessage(b'?')));
        assert!(parse(b'S', b"x").is_err());
    }

    #[test]
    fn decoding_a_framed_stream_needs_more_when_cut() {
        let mut out = Vec::new();
        messages::query(&mut out, "select 1");
        out.extend_from_slice(&[b'S', 0, 0, 0, 4]);
        for cut in 0..out.len() {
            let mut rest = &out[..cut];
            while let Ok(Some((tag, body))) = split_message(rest, 1 << 20) {
                parse(tag, body).unwrap();
                rest = &rest[5 + body.len()..];
            }
        }
    }
}
