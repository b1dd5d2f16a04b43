//! The startup phase: packets without a type byte (`SSLRequest`, `GSSENCRequest`,
//! `CancelRequest`, `StartupMessage`).

use super::WireError;
use super::frame::read_cstr;

/// PostgreSQL refuses startup packets larger than this; so do we.
pub const MAX_STARTUP_LEN: usize = 10_000;
const SSL_REQUEST: i32 = 80877103;
const GSSENC_REQUEST: i32 = 80877104;
const CANCEL_REQUEST: i32 = 80877102;
const PROTOCOL_3_0: i32 = 196608;

/// A packet a client may send before authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// The client asks to upgrade to TLS.
    SslRequest,
    /// The client asks for GSSAPI encryption (always declined).
    GssEncRequest,
    /// Cancel the query running on the session with this key.
    Cancel {
        /// Process id from `BackendKeyData`.
        pid: i32,
        /// Secret from `BackendKeyData`.
        secret: i32,
    },
    /// Protocol 3.0 startup with its parameters (`user`, `database`, …) in order.
    Startup {
        /// Name/value pairs as sent.
        params: Vec<(String, String)>,
    },
}

impl StartupPacket {
    /// Looks up a startup parameter.
    pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses one startup-phase packet from the front of `buf`.
///
/// Returns `Ok(None)` when incomplete, otherwise the packet and the bytes it used.
pub fn parse_startup(buf: &[u8]) -> Result<Option<(StartupPacket, usize)>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 {
        return Err(WireError::BadLength(len as i64));
    }
    let len = len as usize;
    if len > MAX_STARTUP_LEN {
        return Err(WireError::TooLarge {
            len,
            limit: MAX_STARTUP_LEN,
        });
    }
    if buf.len() < len {
        return Ok(None);
    }
    let code = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = &buf[8..len];
    let packet = match code {
        SSL_REQUEST if body.is_empty() => StartupPacket::SslRequest,
        GSSENC_REQUEST if body.is_empty() => StartupPacket::GssEncRequest,
        CANCEL_REQUEST if body.len() == 8 => StartupPacket::Cancel {
            pid: i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
            secret: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
        },
        PROTOCOL_3_0 => StartupPacket::Startup {
            params: parse_params(body)?,
        },
        SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST => {
            return Err(WireError::Malformed { what: "startup" });
        }
        other => {
            return Err(WireError::Protocol {
                major: (other >> 16) as u16,
                minor: (other & 0xffff) as u16,
            });
        }
    };
    Ok(Some((packet, len)))
}

fn parse_params(mut body: &[u8]) -> Result<Vec<(String, String)>, WireError> {
    let mut params = Vec::new();
    loop {
        let (name, rest) = read_cstr(body, "startup")?;
        if name.is_empty() {
            if !rest.is_empty() {
                return Err(WireError::Malformed { what: "startup" });
            }
            break;
        }
        let (value, rest) = read_cstr(rest, "startup")?;
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| WireError::Malformed { what: "startup" })?;
        let value = String::from_utf8(value.to_vec())
            .map_err(|_| WireError::Malformed { what: "startup" })?;
        params.push((name, value));
        body = rest;
    }
    Ok(params)
}

/// Encodes a protocol 3.0 `StartupMessage`.
pub fn encode_startup(out: &mut Vec<u8>, params: &[(&str, &str)]) {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    for (k, v) in params {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out.push(0);
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Encodes an `SSLRequest`.
pub fn encode_ssl_request(out: &mut Vec<u8>) {
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&SSL_REQUEST.to_be_bytes());
}

/// Encodes a `CancelRequest`.
pub fn encode_cancel(out: &mut Vec<u8>, pid: i32, secret: i32) {
    out.extend_from_slice(&16i32.to_be_bytes());
    out.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
    out.extend_from_slice(&pid.to_be_bytes());
    out.extend_from_slice(&secret.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_round_trips() {
        let mut out = Vec::new();
        encode_startup(&mut out, &[("user", "alice"), ("database", "db")]);
        let (packet, used) = parse_startup(&out).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(
            packet,
            StartupPacket::Startup {
                params: vec![
                    ("user".into(), "alice".into()),
                    ("database".into(), "db".into())
                ]
            }
        );
        assert_eq!(parse_startup(&out[..out.len() - 1]).unwrap(), None);
    }

    #[test]
    fn ssl_and_cancel_round_trip() {
        let mut out = Vec::new();
        encode_ssl_request(&mut out);
        assert_eq!(
            parse_startup(&out).unwrap().unwrap().0,
            StartupPacket::SslRequest
        );
        let mut out = Vec::new();
        encode_cancel(&mut out, 7, -9);
        assert_eq!(
            parse_startup(&out).unwrap().unwrap().0,
            StartupPacket::Cancel { pid: 7, secret: -9 }
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        assert!(parse_startup(b"GET / HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_startup(&[0, 0, 0, 4]).is_err());
        let mut huge = 1_000_000i32.to_be_bytes().to_vec();
        huge.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
        assert!(matches!(
            parse_startup(&huge),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn unterminated_params_are_malformed() {
        let mut out = Vec::new();
        out.extend_from_slice(&13i32.to_be_bytes());
        out.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
        out.extend_from_slice(b"user");
        out.push(b'x');
        assert!(parse_startup(&out).is_err());
    }
}
