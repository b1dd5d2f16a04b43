//! Whose statements an analytics entry counts: a database and a login user, hashed into the
//! hot-path key so two owners' equal texts get entries of their own.

use super::queries::Entry;
use super::text_key::text_key;

/// Whose statements an entry counts: a database and a login user.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// The database.
    pub database: &'a str,
    /// The login user.
    pub user: &'a str,
}

impl Owner<'_> {
    /// Mixed into a text key so two owners' equal texts get their own entries.
    #[inline]
    pub(super) fn key(&self) -> u64 {
        let mut k = text_key(self.database.as_bytes());
        k = k.rotate_left(29) ^ text_key(self.user.as_bytes());
        k.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    pub(super) fn owns(&self, e: &Entry) -> bool {
        *e.database == *self.database && *e.user == *self.user
    }
}
