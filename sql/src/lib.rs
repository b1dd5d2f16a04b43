//! Just enough SQL lexing for a proxy's hot path, shared by the kernel and the plugin SDK:
//! statement boundaries and leading keywords (the `lexer` module, which agrees with
//! PostgreSQL's own scanner — proven by a differential test and fuzz target), the
//! session-state effect of a statement, and hint comments. What a statement *does* comes from
//! PostgreSQL's parser (`helios-analysis`), never from here.

mod hints;
mod lexer;

pub use lexer::{leading_words, skip_space_and_comments, split_statements, starts_with_keyword};

pub use hints::hints;

/// What a statement does to session state that the kernel must track in pooled modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEffect {
    /// `SET [SESSION] name …`: remember the statement under the (lower-case) name.
    Set(String),
    /// `RESET name`.
    Reset(String),
    /// `RESET ALL`.
    ResetAll,
    /// `DISCARD ALL`.
    DiscardAll,
    /// `PREPARE name …` (SQL-level; not undone by `ROLLBACK`). The name as PostgreSQL sees
    /// it: folded to lower case unless quoted (then with its quotes).
    Prepare(String),
    /// `DEALLOCATE [PREPARE] name`.
    Deallocate(String),
    /// `DEALLOCATE [PREPARE] ALL` (also drops protocol-level statements).
    DeallocateAll,
}

/// Whether a statement opens a transaction block.
pub fn opens_transaction(sql: &str) -> bool {
    starts_with_keyword(sql, "begin") || starts_with_keyword(sql, "start")
}

/// The session-state effect of one statement, if any.
pub fn session_effect(stmt: &str) -> Option<SessionEffect> {
    let first = skip_space_and_comments(stmt);
    let c = first.as_bytes().first()?.to_ascii_lowercase();
    if c != b's' && c != b'r' && c != b'd' && c != b'p' {
        return None;
    }
    let w = leading_words(stmt, 4);
    match w.first().map(String::as_str)? {
        "set" => {
            let mut i = 1;
            match w.get(1).map(String::as_str) {
                Some("local") | Some("transaction") | None => return None,
                Some("session") => {
                    match w.get(2).map(String::as_str) {
                        Some("characteristics") => return None,
                        Some("authorization") => {
                            return Some(SessionEffect::Set("session_authorization".into()));
                        }
                        _ => {}
                    }
                    i = 2;
                }
                _ => {}
            }
            let name = w.get(i)?;
            if name == "time" && w.get(i + 1).map(String::as_str) == Some("zone") {
                return Some(SessionEffect::Set("timezone".into()));
            }
            Some(SessionEffect::Set(name.clone()))
        }
        "reset" => match w.get(1).map(String::as_str)? {
            "all" => Some(SessionEffect::ResetAll),
            "session" => Some(SessionEffect::Reset("session_authorization".into())),
            "time" => Some(SessionEffect::Reset("timezone".into())),
            name => Some(SessionEffect::Reset(name.to_owned())),
        },
        "discard" if w.get(1).map(String::as_str) == Some("all") => Some(SessionEffect::DiscardAll),
        // PREPARE TRANSACTION is two-phase commit, not a statement.
        "prepare" if w.get(1).is_some_and(|n| n != "transaction") => {
            Some(SessionEffect::Prepare(identifier_after(first, 1)?))
        }
        "deallocate" => {
            let skip = if w.get(1).map(String::as_str) == Some("prepare") {
                2
            } else {
                1
            };
            match w.get(skip).map(String::as_str)? {
                "all" => Some(SessionEffect::DeallocateAll),
                _ => Some(SessionEffect::Deallocate(identifier_after(first, skip)?)),
            }
        }
        _ => None,
    }
}

/// The identifier after the first `skip` words of a statement, as PostgreSQL resolves it:
/// lower-cased when unquoted, verbatim with its quotes when quoted.
fn identifier_after(stmt: &str, skip: usize) -> Option<String> {
    let mut s = skip_space_and_comments(stmt);
    for _ in 0..skip {
        s = skip_space_and_comments(&s[ident_len(s)..]);
    }
    let b = s.as_bytes();
    // Quoted names (`U&"…"` too) are kept verbatim, doubled quotes included; unquoted ones are
    // folded like PostgreSQL folds them in UTF-8: ASCII letters only.
    let quote = match b {
        [b'"', ..] => 0,
        [b'u' | b'U', b'&', b'"', ..] => 2,
        _ => {
            let end = ident_len(s);
            return (end > 0).then(|| s[..end].to_ascii_lowercase());
        }
    };
    let end = lexer::quoted_end(b, quote)?;
    Some(s[..end].to_owned())
}

/// The length of the identifier or keyword `s` starts with (0 if none).
fn ident_len(s: &str) -> usize {
    let b = s.as_bytes();
    if !b.first().is_some_and(|&c| lexer::is_ident_start(c)) {
        return 0;
    }
    // Non-ASCII bytes are all identifier bytes, so this never ends inside a character.
    b.iter()
        .position(|&c| !lexer::is_ident_cont(c))
        .unwrap_or(b.len())
}

/// Quotes a string as an SQL literal.
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_prepare_and_deallocate_are_session_effects() {
        assert_eq!(
            session_effect("PREPARE Q1 (int) AS select $1"),
            Some(SessionEffect::Prepare("q1".into()))
        );
        assert_eq!(
            session_effect("prepare \"Mixed\" as select 1"),
            Some(SessionEffect::Prepare("\"Mixed\"".into()))
        );
        assert_eq!(session_effect("PREPARE TRANSACTION 'gid'"), None);
        assert_eq!(
            session_effect("deallocate prepare q1"),
            Some(SessionEffect::Deallocate("q1".into()))
        );
        assert_eq!(
            session_effect("DEALLOCATE ALL"),
            Some(SessionEffect::DeallocateAll)
        );
    }

    #[test]
    fn session_effects() {
        assert_eq!(
            session_effect("SET search_path TO a, b"),
            Some(SessionEffect::Set("search_path".into()))
        );
        assert_eq!(
            session_effect(" set session statement_timeout = 5"),
            Some(SessionEffect::Set("statement_timeout".into()))
        );
        assert_eq!(
            session_effect("SET TIME ZONE 'UTC'"),
            Some(SessionEffect::Set("timezone".into()))
        );
        assert_eq!(session_effect("SET LOCAL x = 1"), None);
        assert_eq!(
            session_effect("SET TRANSACTION ISOLATION LEVEL serializable"),
            None
        );
        assert_eq!(
            session_effect("/* hi */ RESET ALL"),
            Some(SessionEffect::ResetAll)
        );
        assert_eq!(
            session_effect("reset app.x"),
            Some(SessionEffect::Reset("app.x".into()))
        );
        assert_eq!(
            session_effect("DISCARD ALL"),
            Some(SessionEffect::DiscardAll)
        );
        assert_eq!(session_effect("select 1"), None);
        assert_eq!(session_effect("settle"), None);
    }

    #[test]
    fn prepared_names_follow_postgres() {
        // Doubled quotes stay inside the name; only ASCII folds (as in a UTF-8 database).
        assert_eq!(
            session_effect("prepare \"a\"\"b\" as select 1"),
            Some(SessionEffect::Prepare("\"a\"\"b\"".into()))
        );
        assert_eq!(
            session_effect("PREPARE ÉtatQ AS select 1"),
            Some(SessionEffect::Prepare("Étatq".into()))
        );
        assert_eq!(
            session_effect("PREPARE q$1 AS select 1"),
            Some(SessionEffect::Prepare("q$1".into()))
        );
        assert_eq!(
            session_effect("deallocate U&\"q\""),
            Some(SessionEffect::Deallocate("U&\"q\"".into()))
        );
        assert_eq!(session_effect("deallocate \"q"), None);
    }

    #[test]
    fn keywords() {
        assert!(opens_transaction("  BEGIN"));
        assert!(opens_transaction("start transaction"));
        assert!(!opens_transaction("beginning"));
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
