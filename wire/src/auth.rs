//! Password exchanges the proxy performs as a server: SCRAM-SHA-256 (RFC 5802/7677 as
//! PostgreSQL speaks it), MD5 and cleartext, against secrets from a users file.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Iterations used when a SCRAM verifier is derived from a plaintext password.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// A stored secret for one user.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A plaintext password (also usable to log in to backends).
    Plain(String),
    /// `md5` + hex(md5(password || user)).
    Md5(String),
    /// A SCRAM-SHA-256 verifier.
    Scram(ScramVerifier),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets, not even in debug output.
        match self {
            Secret::Plain(_) => f.write_str("Secret::Plain(<redacted>)"),
            Secret::Md5(_) => f.write_str("Secret::Md5(<redacted>)"),
            Secret::Scram(_) => f.write_str("Secret::Scram(<redacted>)"),
        }
    }
}

impl Secret {
    /// Interprets a users-file secret: `SCRAM-SHA-256$…`, `md5<32 hex>`, else plaintext.
    pub fn parse(text: &str) -> Result<Secret, AuthError> {
        if text.starts_with("SCRAM-SHA-256$") {
            return ScramVerifier::parse(text).map(Secret::Scram);
        }
        if text.len() == 35
            && text.starts_with("md5")
            && text[3..].bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Ok(Secret::Md5(text.to_owned()));
        }
        Ok(Secret::Plain(text.to_owned()))
    }

    /// The plaintext password, when known.
    pub fn plaintext(&self) -> Option<&str> {
        match self {
            Secret::Plain(p) => Some(p),
            _ => None,
        }
    }
}

/// A SCRAM-SHA-256 verifier as PostgreSQL stores it.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Salt.
    pub salt: Vec<u8>,
    /// H(ClientKey).
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

/// Why an authentication exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The verifier text is not `SCRAM-SHA-256$iter:salt$stored:server`.
    #[error("malformed SCRAM verifier")]
    BadVerifier,
    /// The client's SCRAM message is malformed.
    #[error("malformed SCRAM message: {0}")]
    BadMessage(&'static str),
    /// The client's channel binding does not match what this connection offers (none
    /// without TLS; `tls-server-end-point` with it), or a client that supports it was
    /// talked out of it.
    #[error("channel binding: {0}")]
    ChannelBinding(&'static str),
    /// The password or proof is wrong.
    #[error("password authentication failed")]
    WrongPassword,
}

impl ScramVerifier {
    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let rest = text
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(AuthError::BadVerifier)?;
        let (iter_salt, keys) = rest.split_once('$').ok_or(AuthError::BadVerifier)?;
        let (iter, salt) = iter_salt.split_once(':').ok_or(AuthError::BadVerifier)?;
        let (stored, server) = keys.split_once(':').ok_or(AuthError::BadVerifier)?;
        let iterations = iter.parse().map_err(|_| AuthError::BadVerifier)?;
        let salt = B64.decode(salt).map_err(|_| AuthError::BadVerifier)?;
        let stored_key = decode32(stored)?;
        let server_key = decode32(server)?;
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// Derives a verifier from a plaintext password.
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = salted_password(password.as_bytes(), salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }
}

fn decode32(text: &str) -> Result<[u8; 32], AuthError> {
    B64.decode(text)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(AuthError::BadVerifier)
}

pub(crate) fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA-256 with one 32-byte block (RFC 5802 `Hi`).
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(password).expect("HMAC takes any key length");
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

pub use crate::scram::ScramServer;

/// Compares secrets without an early exit, so timing does not reveal where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `md5` + hex(md5(password || user)), the form PostgreSQL stores.
pub fn md5_stored(password: &str, user: &str) -> String {
    let mut h = md5::Md5::new();
    h.update(password.as_bytes());
    h.update(user.as_bytes());
    format!("md5{}", hex(&h.finalize()))
}

/// The response a client sends for an MD5 challenge, computed from the stored form.
pub fn md5_response(stored: &str, salt: [u8; 4]) -> String {
    let mut h = md5::Md5::new();
    h.update(&stored.as_bytes()[3..]);
    h.update(salt);
    format!("md5{}", hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Checks a client's answer to an MD5 challenge.
pub fn verify_md5(secret: &Secret, user: &str, salt: [u8; 4], response: &[u8]) -> bool {
    let stored = match secret {
        Secret::Plain(p) => md5_stored(p, user),
        Secret::Md5(m) => m.clone(),
        Secret::Scram(_) => return false,
    };
    constant_time_eq(md5_response(&stored, salt).as_bytes(), response)
}

/// Checks a cleartext password against a secret.
pub fn verify_cleartext(secret: &Secret, user: &str, password: &str) -> bool {
    match secret {
        Secret::Plain(p) => constant_time_eq(p.as_bytes(), password.as_bytes()),
        Secret::Md5(m) => constant_time_eq(md5_stored(password, user).as_bytes(), m.as_bytes()),
        Secret::Scram(v) => {
            let derived = ScramVerifier::from_password(password, &v.salt, v.iterations);
            constant_time_eq(&derived.stored_key, &v.stored_key)
        }
    }
}

/// The SCRAM verifier to challenge a client with, derived when only plaintext is stored.
pub fn scram_verifier_for(secret: &Secret) -> Option<ScramVerifier> {
    match secret {
        Secret::Scram(v) => Some(v.clone()),
        Secret::Plain(p) => {
            let mut salt = [0u8; 16];
            rand::rng().fill_bytes(&mut salt);
            Some(ScramVerifier::from_password(p, &salt, DEFAULT_ITERATIONS))
        }
        Secret::Md5(_) => None,
    }
}

/// Parses a PgBouncer-style users file: one `"user" "secret"` per line, `;` or `#` comments.
pub fn parse_users_file(text: &str) -> Result<Vec<(String, Secret)>, String> {
    let mut users = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        let mut fields = Vec::new();
        let mut rest = line;
        while !rest.is_empty() {
            let Some(after) = rest.strip_prefix('"') else {
                return Err(format!("line {}: expected a double-quoted field", i + 1));
            };
            let mut value = String::new();
            let mut chars = after.char_indices();
            let mut end = None;
            while let Some((at, c)) = chars.next() {
                if c == '"' {
                    if after[at + 1..].starts_with('"') {
                        value.push('"');
                        chars.next();
                    } else {
                        end = Some(at + 1);
                        break;
                    }
                } else {
                    value.push(c);
                }
            }
            let end = end.ok_or_else(|| format!("line {}: unterminated quote", i + 1))?;
            fields.push(value);
            rest = after[end..].trim_start();
        }
        if fields.len() < 2 {
            return Err(format!("line {}: expected \"user\" \"password\"", i + 1));
        }
        let secret = Secret::parse(&fields[1]).map_err(|e| format!("line {}: {e}", i + 1))?;
        users.push((fields[0].clone(), secret));
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_postgres_protocol() {
        let salt = [1, 2, 3, 4];
        let expected = postgres_protocol::authentication::md5_hash(b"bob", b"pw", salt);
        assert!(verify_md5(
            &Secret::Plain("pw".into()),
            "bob",
            salt,
            expected.as_bytes()
        ));
        let stored = Secret::parse(&md5_stored("pw", "bob")).unwrap();
        assert!(matches!(stored, Secret::Md5(_)));
        assert!(verify_md5(&stored, "bob", salt, expected.as_bytes()));
        assert!(!verify_md5(&stored, "bob", [0; 4], expected.as_bytes()));
    }

    #[test]
    fn cleartext_checks_every_secret_kind() {
        let scram = Secret::Scram(ScramVerifier::from_password("pw", b"s", 10));
        for s in [
            Secret::Plain("pw".into()),
            Secret::parse(&md5_stored("pw", "u")).unwrap(),
            scram,
        ] {
            assert!(verify_cleartext(&s, "u", "pw"));
            assert!(!verify_cleartext(&s, "u", "px"));
        }
    }

    #[test]
    fn users_file_parses_quotes_and_comments() {
        let users = parse_users_file("; comment\n\"alice\" \"pa\"\"ss\"\n\n\"bob\" \"md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n").unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].1.plaintext(), Some("pa\"ss"));
        assert!(matches!(users[1].1, Secret::Md5(_)));
        assert!(parse_users_file("alice pass").is_err());
        assert!(parse_users_file("\"alice\" \"pass").is_err());
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = format!("{:?}", Secret::Plain("hunter2".into()));
        assert!(!s.contains("hunter2"));
    }
}
