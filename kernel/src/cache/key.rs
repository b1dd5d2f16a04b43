//! The cache key: everything that can change a statement's answer, hashed with SHA-256 —
//! the database, the role server connections log in as and the role and `search_path`
//! the session set, every other setting of the session (through its state hash: `TimeZone`,
//! `DateStyle`, `IntervalStyle`, `extra_float_digits`, `bytea_output`, `client_encoding`, …),
//! the statement's spelling key (two spellings of one statement share it), its parameter
//! values and formats, and the result formats.

use sha2::{Digest, Sha256};

/// A cache key.
pub type Key = [u8; 32];

/// What a session contributes to a key.
pub struct SessionKey<'a> {
    /// Database.
    pub database: &'a str,
    /// The role server connections log in as.
    pub server_user: &'a str,
    /// The session's `SET ROLE` / `SET SESSION AUTHORIZATION` statements, as sent.
    pub role: &'a str,
    /// The session's `search_path` (its `SET`, or the server's default when empty).
    pub search_path: &'a str,
    /// Hash of every setting the session made (startup parameters and `SET`s).
    pub state_hash: u64,
}

/// The key of a statement run by a session. `param_types` are the parameter types its
/// `Parse` declared (the same text and values read as another type can answer differently),
/// `params` and `formats` a `Bind`'s (all empty for a simple query), `result_formats` its
/// result format codes.
pub fn key(
    session: &SessionKey<'_>,
    spelling: &[u8; 32],
    param_types: &[u8],
    param_formats: &[i16],
    params: &[Option<&[u8]>],
    result_formats: &[i16],
) -> Key {
    let mut h = Sha256::new();
    for part in [
        session.database,
        session.server_user,
        session.role,
        session.search_path,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update(session.state_hash.to_le_bytes());
    h.update(spelling);
    h.update((param_types.len() as u64).to_le_bytes());
    h.update(param_types);
    h.update((param_formats.len() as u64).to_le_bytes());
    for f in param_formats {
        h.update(f.to_le_bytes());
    }
    h.update((params.len() as u64).to_le_bytes());
    for p in params {
        match p {
            None => h.update(u64::MAX.to_le_bytes()),
            Some(v) => {
                h.update((v.len() as u64).to_le_bytes());
                h.update(v);
            }
        }
    }
    h.update((result_formats.len() as u64).to_le_bytes());
    for f in result_formats {
        h.update(f.to_le_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session<'a>(role: &'a str, path: &'a str) -> SessionKey<'a> {
        SessionKey {
            database: "app",
            server_user: "app",
            role,
            search_path: path,
            state_hash: 1,
        }
    }

    #[test]
    fn every_part_changes_the_key() {
        let s = [7u8; 32];
        let base = key(&session("", ""), &s, &[], &[], &[], &[]);
        assert_ne!(
            base,
            key(&session("set role reader", ""), &s, &[], &[], &[], &[])
        );
        assert_ne!(base, key(&session("", "tenant_a"), &s, &[], &[], &[], &[]));
        assert_ne!(base, key(&session("", ""), &[8u8; 32], &[], &[], &[], &[]));
        assert_ne!(base, key(&session("", ""), &s, &[], &[], &[], &[1]));
        let one = key(&session("", ""), &s, &[], &[0], &[Some(b"1")], &[]);
        assert_ne!(
            one,
            key(&session("", ""), &s, &[], &[0], &[Some(b"2")], &[])
        );
        assert_ne!(
            one,
            key(&session("", ""), &s, &[], &[1], &[Some(b"1")], &[])
        );
        assert_ne!(one, key(&session("", ""), &s, &[], &[0], &[None], &[]));
        let typed = key(
            &session("", ""),
            &s,
            &[0, 1, 0, 0, 0, 25],
            &[0],
            &[Some(b"1")],
            &[],
        );
        assert_ne!(one, typed, "declared parameter types are part of the key");
        // Lengths are part of the key: no two splits of the same bytes collide.
        let a = SessionKey {
            database: "ab",
            server_user: "c",
            ..session("", "")
        };
        let b = SessionKey {
            database: "a",
            server_user: "bc",
            ..session("", "")
        };
        assert_ne!(
            key(&a, &s, &[], &[], &[], &[]),
            key(&b, &s, &[], &[], &[], &[])
        );
    }
}
