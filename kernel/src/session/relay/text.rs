//! What the relay reads from a statement's text itself: the session-state effects of a
//! simple query (with the hot-path lexer, which agrees with PostgreSQL's scanner), and the
//! refusal of text that is not UTF-8.

use std::collections::VecDeque;
use std::sync::Arc;

use super::expect::{Effects, SqlError};
use crate::session::state::Effect;
use crate::sql::{session_effect, split_statements};

/// The refusal of SQL that is not valid UTF-8 while components judge statements: they are
/// given text, and text that cannot be read is never passed on as something else.
pub(super) fn not_utf8() -> SqlError {
    SqlError::new(
        "22021",
        "invalid byte sequence for encoding \"UTF8\": this proxy's policy components read \
         statements as UTF-8; set client_encoding to UTF8",
    )
}

/// The session-state effects of a simple query's statements, when it has any.
pub(super) fn query_effects(sql: &str) -> Effects {
    if !might_change_session(sql) {
        return None;
    }
    let effects: VecDeque<Option<Effect>> = split_statements(sql)
        .into_iter()
        .map(|stmt| {
            session_effect(stmt).map(|kind| Effect {
                kind,
                sql: Arc::from(stmt.trim()),
            })
        })
        .collect();
    effects.iter().any(Option::is_some).then_some(effects)
}

/// Cheap pre-check: every statement with a session effect contains `set` or `discard`.
#[inline]
fn might_change_session(sql: &str) -> bool {
    let b = sql.as_bytes();
    b.windows(3).any(|w| w.eq_ignore_ascii_case(b"set"))
        || b.windows(7).any(|w| {
            w.eq_ignore_ascii_case(b"discard")
                || w.eq_ignore_ascii_case(b"prepare")
                || w.eq_ignore_ascii_case(b"dealloc")
        })
}
