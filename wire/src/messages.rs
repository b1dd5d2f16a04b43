//! The messages the proxy reads or writes itself. Everything else is forwarded untouched.

use super::WireError;
use super::frame::{read_cstr, write_message};
pub use crate::bodies::{BindRef, ParseRef, TargetRef, execute_body, query_text};

/// SQLSTATE codes the proxy produces.
pub mod sqlstate {
    /// protocol_violation
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// `syntax_error`.
    pub const SYNTAX_ERROR: &str = "42601";
    /// `undefined_object`.
    pub const UNDEFINED_OBJECT: &str = "42704";
    /// invalid_password
    pub const INVALID_PASSWORD: &str = "28P01";
    /// invalid_authorization_specification
    pub const INVALID_AUTHORIZATION: &str = "28000";
    /// too_many_connections
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// connection_failure
    pub const CONNECTION_FAILURE: &str = "08006";
    /// sqlclient_unable_to_establish_sqlconnection
    pub const CANNOT_CONNECT: &str = "08001";
    /// feature_not_supported
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// program_limit_exceeded
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    /// admin_shutdown
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// query_canceled (used for pool checkout timeouts, as PgBouncer does)
    pub const QUERY_CANCELED: &str = "57014";
    /// invalid_sql_statement_name
    pub const INVALID_STATEMENT_NAME: &str = "26000";
    /// serialization_failure: the transaction can be retried
    pub const SERIALIZATION_FAILURE: &str = "40001";
    /// transaction_resolution_unknown: a COMMIT's outcome is not known
    pub const TRANSACTION_RESOLUTION_UNKNOWN: &str = "08007";
}

/// Appends an `ErrorResponse`.
pub fn error_response(out: &mut Vec<u8>, severity: &str, code: &str, message: &str) {
    write_fields(out, b'E', severity, code, message);
}

fn write_fields(out: &mut Vec<u8>, tag: u8, severity: &str, code: &str, message: &str) {
    write_message(out, tag, |b| {
        for (field, value) in [
            (b'S', severity),
            (b'V', severity),
            (b'C', code),
            (b'M', message),
        ] {
            b.push(field);
            b.extend_from_slice(value.as_bytes());
            b.push(0);
        }
        b.push(0);
    });
}

/// The row count at the end of a `CommandComplete` tag (`INSERT 0 5`, `SELECT 3`, `COPY 2`);
/// `None` for tags without one (`BEGIN`, `SET`).
pub fn tag_rows(tag: &[u8]) -> Option<u64> {
    let last = tag.rsplit(|&b| b == b' ').next()?;
    if last.is_empty() || !last.iter().all(u8::is_ascii_digit) || last.len() == tag.len() {
        return None;
    }
    std::str::from_utf8(last).ok()?.parse().ok()
}

/// Whether a `CommandComplete` tag reports rows a statement wrote.
pub fn tag_is_write(tag: &[u8]) -> bool {
    [&b"INSERT "[..], b"UPDATE ", b"DELETE ", b"MERGE ", b"COPY "]
        .iter()
        .any(|w| tag.starts_with(w))
}

/// The transaction status a `ReadyForQuery` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block.
    Failed,
}

impl TxStatus {
    /// The status a `ReadyForQuery` body's byte names (unknown bytes read as idle).
    pub fn from_byte(b: u8) -> Self {
        match b {
            b'T' => TxStatus::InTransaction,
            b'E' => TxStatus::Failed,
            _ => TxStatus::Idle,
        }
    }

    /// The byte `ReadyForQuery` carries.
    pub fn byte(self) -> u8 {
        match self {
            TxStatus::Idle => b'I',
            TxStatus::InTransaction => b'T',
            TxStatus::Failed => b'E',
        }
    }

    /// Inside a transaction block, failed or not.
    #[inline]
    pub fn in_transaction(self) -> bool {
        self != TxStatus::Idle
    }
}

/// Appends `ReadyForQuery` with a transaction status byte (`I`, `T` or `E`).
#[inline]
pub fn ready_for_query(out: &mut Vec<u8>, status: u8) {
    out.extend_from_slice(&[b'Z', 0, 0, 0, 5, status]);
}

/// Appends `ParseComplete`.
pub const PARSE_COMPLETE: [u8; 5] = [b'1', 0, 0, 0, 4];
/// Appends `CloseComplete`.
pub const CLOSE_COMPLETE: [u8; 5] = [b'3', 0, 0, 0, 4];

/// Appends an `Authentication*` request with its code and extra payload.
pub fn authentication(out: &mut Vec<u8>, code: i32, extra: &[u8]) {
    write_message(out, b'R', |b| {
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(extra);
    });
}

/// Appends a `ParameterStatus`.
pub fn parameter_status(out: &mut Vec<u8>, name: &str, value: &str) {
    write_message(out, b'S', |b| {
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        b.extend_from_slice(value.as_bytes());
        b.push(0);
    });
}

/// Appends `BackendKeyData`.
pub fn backend_key_data(out: &mut Vec<u8>, pid: i32, secret: i32) {
    write_message(out, b'K', |b| {
        b.extend_from_slice(&pid.to_be_bytes());
        b.extend_from_slice(&secret.to_be_bytes());
    });
}

/// Appends a simple `Query`.
pub fn query(out: &mut Vec<u8>, sql: &str) {
    write_message(out, b'Q', |b| {
        b.extend_from_slice(sql.as_bytes());
        b.push(0);
    });
}

/// Appends a `Sync`.
pub fn sync(out: &mut Vec<u8>) {
    out.extend_from_slice(&[b'S', 0, 0, 0, 4]);
}

/// Appends a `Terminate`.
pub fn terminate(out: &mut Vec<u8>) {
    out.extend_from_slice(&[b'X', 0, 0, 0, 4]);
}

/// Appends a `PasswordMessage` (also used for SASL responses) with raw contents.
pub fn password_message(out: &mut Vec<u8>, data: &[u8]) {
    write_message(out, b'p', |b| b.extend_from_slice(data));
}

/// Appends a `SASLInitialResponse`.
pub fn sasl_initial_response(out: &mut Vec<u8>, mechanism: &str, data: &[u8]) {
    write_message(out, b'p', |b| {
        b.extend_from_slice(mechanism.as_bytes());
        b.push(0);
        b.extend_from_slice(&(data.len() as i32).to_be_bytes());
        b.extend_from_slice(data);
    });
}

/// The fields of an `ErrorResponse` or `NoticeResponse` the proxy cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// Severity (`ERROR`, `FATAL`, …).
    pub severity: String,
    /// SQLSTATE.
    pub code: String,
    /// Primary message.
    pub message: String,
}

impl ErrorFields {
    /// Parses an `ErrorResponse` body.
    pub fn parse(mut body: &[u8]) -> Result<Self, WireError> {
        let mut f = ErrorFields::default();
        loop {
            let (&field, rest) = body.split_first().ok_or(WireError::Malformed {
                what: "ErrorResponse",
            })?;
            if field == 0 {
                return Ok(f);
            }
            let (value, rest) = read_cstr(rest, "ErrorResponse")?;
            let value = String::from_utf8_lossy(value).into_owned();
            match field {
                b'V' => f.severity = value,
                b'S' if f.severity.is_empty() => f.severity = value,
                b'C' => f.code = value,
                b'M' => f.message = value,
                _ => {}
            }
            body = rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::split_message;

    fn one(buf: &[u8]) -> (u8, &[u8]) {
        split_message(buf, 1 << 20).unwrap().unwrap()
    }

    #[test]
    fn error_response_round_trips() {
        let mut out = Vec::new();
        error_response(&mut out, "ERROR", "42501", "nope");
        let (tag, body) = one(&out);
        assert_eq!(tag, b'E');
        let f = ErrorFields::parse(body).unwrap();
        assert_eq!(
            (f.severity.as_str(), f.code.as_str(), f.message.as_str()),
            ("ERROR", "42501", "nope")
        );
    }

    #[test]
    fn parse_round_trips_under_a_new_name() {
        let mut body = b"s1\0select $1\0".to_vec();
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&23i32.to_be_bytes());
        let p = ParseRef::parse(&body).unwrap();
        assert_eq!(p.name, b"s1");
        let mut out = Vec::new();
        p.encode_renamed(&mut out, b"hp_1");
        let (tag, body2) = one(&out);
        assert_eq!(tag, b'P');
        let p2 = ParseRef::parse(body2).unwrap();
        assert_eq!(
            (p2.name, p2.query, p2.param_types),
            (&b"hp_1"[..], p.query, p.param_types)
        );
    }

    #[test]
    fn parse_with_lying_type_count_is_malformed() {
        let mut body = b"s1\0select 1\0".to_vec();
        body.extend_from_slice(&3i16.to_be_bytes());
        assert!(ParseRef::parse(&body).is_err());
    }

    #[test]
    fn bind_round_trips_under_a_new_name() {
        let mut body = b"\0s1\0".to_vec();
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&2i16.to_be_bytes());
        body.extend_from_slice(&1i32.to_be_bytes());
        body.push(b'7');
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        let b = BindRef::parse(&body).unwrap();
        assert_eq!(b.statement, b"s1");
        let mut out = Vec::new();
        b.encode_renamed(&mut out, b"hp_x");
        let (tag, body2) = one(&out);
        assert_eq!(tag, b'B');
        let b2 = BindRef::parse(body2).unwrap();
        assert_eq!(
            (b2.portal, b2.statement, b2.rest),
            (b.portal, &b"hp_x"[..], b.rest)
        );
        assert!(BindRef::parse(&body[..body.len() - 1]).is_err());
        assert!(b.result_formats().is_empty());
        let mut with_formats = body[..body.len() - 2].to_vec();
        with_formats.extend_from_slice(&2i16.to_be_bytes());
        with_formats.extend_from_slice(&0i16.to_be_bytes());
        with_formats.extend_from_slice(&1i16.to_be_bytes());
        let b3 = BindRef::parse(&with_formats).unwrap();
        assert_eq!(b3.result_formats(), [0, 1]);
        assert_eq!(b3.params().1, [Some(&b"7"[..]), None]);
    }

    #[test]
    fn describe_and_close_round_trip() {
        let t = TargetRef::parse(b"Sname\0", "Describe").unwrap();
        assert_eq!((t.kind, t.name), (b'S', &b"name"[..]));
        let mut out = Vec::new();
        t.encode_renamed(&mut out, b'C', b"x");
        let (tag, body) = one(&out);
        assert_eq!(tag, b'C');
        assert_eq!(TargetRef::parse(body, "Close").unwrap().name, b"x");
        assert!(TargetRef::parse(b"Xname\0", "Describe").is_err());
    }

    #[test]
    fn query_and_execute_bodies() {
        let mut out = Vec::new();
        query(&mut out, "select 1");
        let (_, body) = one(&out);
        assert_eq!(query_text(body).unwrap(), b"select 1");
        assert_eq!(execute_body(b"p\0\0\0\0\x05").unwrap(), (&b"p"[..], 5));
        assert!(execute_body(b"p\0").is_err());
    }

    #[test]
    fn fixed_messages_have_valid_lengths() {
        let mut out = Vec::new();
        ready_for_query(&mut out, b'I');
        out.extend_from_slice(&PARSE_COMPLETE);
        out.extend_from_slice(&CLOSE_COMPLETE);
        backend_key_data(&mut out, 1, 2);
        parameter_status(&mut out, "a", "b");
        authentication(&mut out, 0, &[]);
        let mut rest = &out[..];
        let mut tags = Vec::new();
        while let Some((tag, body)) = split_message(rest, 100).unwrap() {
            tags.push(tag);
            rest = &rest[5 + body.len()..];
        }
        assert!(rest.is_empty());
        assert_eq!(tags, b"Z13KSR");
    }

    #[test]
    fn row_counts_come_from_the_last_word_of_a_tag() {
        assert_eq!(tag_rows(b"INSERT 0 5"), Some(5));
        assert_eq!(tag_rows(b"SELECT 3"), Some(3));
        assert_eq!(tag_rows(b"BEGIN"), None);
        assert_eq!(tag_rows(b"12"), None);
        assert!(tag_is_write(b"COPY 2") && !tag_is_write(b"SELECT 2"));
    }
}
