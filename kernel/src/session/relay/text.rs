//! What the relay reads from a statement's text itself: the session-state effects of a
//! simple query (with the hot-path lexer, which agrees with PostgreSQL's scanner), the
//! refusal of text that is not UTF-8, and of SQL that names the proxy's own statements.

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
    let statements = split_statements(sql);
    let alone = statements.len() == 1;
    let effects: VecDeque<Option<Effect>> = statements
        .into_iter()
        .map(|stmt| {
            session_effect(stmt).map(|kind| {
                // A PREPARE sent alone is created again exactly as sent (it runs alone
                // then too): the server shows that text in pg_prepared_statements.
                let verbatim = alone && matches!(kind, crate::sql::SessionEffect::Prepare(_));
                Effect {
                    kind,
                    sql: Arc::from(if verbatim { sql } else { stmt.trim() }),
                }
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

/// The refusal of SQL that prepares, executes or deallocates one of the proxy's own server
/// statements (`hp_…`): those are shared by every client of a server connection, so a
/// client that replaced one would choose what another client's `Bind` runs.
pub(super) fn names_proxy_statement(sql: &str) -> Option<SqlError> {
    if !might_name_proxy_statement(sql) {
        return None;
    }
    let (_, analysis) = crate::plugins::facts::analyzer().analyze(sql);
    let name = analysis
        .statements
        .iter()
        .flat_map(|s| &s.statement_names)
        .find(|n| is_proxy_name(n))?;
    Some(SqlError::new(
        "42501",
        format!(
            "prepared statement \"{name}\" is reserved: names of the form hp_<16 hex digits> \
             and hp_xid belong to the proxy"
        ),
    ))
}

/// Whether a name is one the proxy gives server statements or portals: `hp_` and 16
/// lower-case hex digits (a statement's hash), or `hp_xid`. Other `hp_` names are the
/// client's own (PostgreSQL's regression suite uses `hp_q1`).
fn is_proxy_name(name: &str) -> bool {
    name == "hp_xid"
        || name.strip_prefix("hp_").is_some_and(|h| {
            h.len() == 16
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// Cheap pre-check: such a name is written `hp_` in any case, or with a `U&` escape.
#[inline]
fn might_name_proxy_statement(sql: &str) -> bool {
    sql.as_bytes()
        .windows(3)
        .any(|w| w.eq_ignore_ascii_case(b"hp_") || (w[0] | 0x20 == b'u' && w[1] == b'&'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_proxy_name_is_refused() {
        for sql in [
            "PREPARE hp_0123456789abcdef AS DELETE FROM t",
            "prepare HP_0123456789ABCDEF (int) as select $1",
            "DEALLOCATE hp_0123456789abcdef",
            "DEALLOCATE PREPARE \"hp_0123456789abcdef\"",
            "EXECUTE hp_xid",
            "select 1; EXPLAIN ANALYZE EXECUTE hp_00000000000000ff",
            "CREATE TABLE x AS EXECUTE hp_00000000000000ff",
            "PREPARE U&\"\\0068p_xid\" AS SELECT 1",
        ] {
            assert!(names_proxy_statement(sql).is_some(), "{sql}");
        }
        for sql in [
            "PREPARE mine AS SELECT 'hp_1'",
            "select hp_col from hp_table",
            "EXECUTE mine",
            "prepare hp_q1 (text) as select $1",
            "PREPARE \"hp_0123456789ABCDEF\" AS SELECT 1",
            "select U&'\\0068'",
        ] {
            assert!(names_proxy_statement(sql).is_none(), "{sql}");
        }
    }
}
