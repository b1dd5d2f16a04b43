//! Just enough SQL lexing for a proxy, shared by the kernel and the plugin SDK: statement
//! boundaries (respecting quotes, comments and dollar quoting), leading keywords, the
//! session-state effect of a statement, and the statement facts hooks receive
//! ([`facts`]: class, tables, fingerprint, hints).

pub mod facts;

pub use facts::{
    Facts, StatementClass, analyze, class_and_fingerprint, classify, fingerprint, has_keyword,
    hints, tables, word_list,
};

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

/// Splits SQL text into statements, dropping empty ones. Unterminated quotes or comments end
/// the last statement (the server will report the syntax error).
pub fn split_statements(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => i = skip_quoted(b, i),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p + 1)
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i),
            b'$' => i = skip_dollar(b, i),
            b';' => {
                push_nonempty(&mut out, &sql[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    push_nonempty(&mut out, &sql[start..]);
    out
}

fn push_nonempty<'a>(out: &mut Vec<&'a str>, stmt: &'a str) {
    if !skip_space_and_comments(stmt).is_empty() {
        out.push(stmt);
    }
}

pub(crate) fn skip_quoted(b: &[u8], start: usize) -> usize {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

pub(crate) fn skip_block_comment(b: &[u8], start: usize) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i + 1 < b.len() {
        if b[i] == b'/' && b[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

pub(crate) fn skip_dollar(b: &[u8], start: usize) -> usize {
    // A dollar-quote tag is $[A-Za-z_][A-Za-z0-9_]*$ or $$; `$1` is a parameter.
    let mut j = start + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        j += 1;
    }
    if j >= b.len() || b[j] != b'$' || (j > start + 1 && b[start + 1].is_ascii_digit()) {
        return start + 1;
    }
    let tag = &b[start..=j];
    let mut i = j + 1;
    while i + tag.len() <= b.len() {
        if &b[i..i + tag.len()] == tag {
            return i + tag.len();
        }
        i += 1;
    }
    b.len()
}

/// Skips leading white space and comments.
pub fn skip_space_and_comments(sql: &str) -> &str {
    let mut s = sql;
    loop {
        let t = s.trim_start();
        if let Some(rest) = t.strip_prefix("--") {
            s = rest.find('\n').map_or("", |p| &rest[p + 1..]);
        } else if t.starts_with("/*") {
            let end = skip_block_comment(t.as_bytes(), 0);
            s = &t[end..];
        } else {
            return t;
        }
    }
}

/// The leading keywords of a statement, lower-cased, at most `n`.
pub fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let mut words = Vec::with_capacity(n);
    let mut s = skip_space_and_comments(sql);
    while words.len() < n {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '"'))
            .unwrap_or(s.len());
        if end == 0 {
            break;
        }
        words.push(s[..end].trim_matches('"').to_ascii_lowercase());
        s = skip_space_and_comments(&s[end..]);
    }
    words
}

/// Whether the statement starts with `keyword` (ASCII case-insensitive), cheaply.
#[inline]
pub fn starts_with_keyword(sql: &str, keyword: &str) -> bool {
    let s = skip_space_and_comments(sql);
    s.len() >= keyword.len()
        && s.as_bytes()[..keyword.len()].eq_ignore_ascii_case(keyword.as_bytes())
        && s.as_bytes()
            .get(keyword.len())
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
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
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        s = skip_space_and_comments(&s[end..]);
    }
    if let Some(rest) = s.strip_prefix('"') {
        let close = rest.find('"')?;
        return Some(format!("\"{}\"", &rest[..close]));
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(s.len());
    (end > 0).then(|| s[..end].to_lowercase())
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
    fn splits_respecting_quotes_comments_and_dollars() {
        let sql = "select 'a;b'; select \"x;y\" -- c;\n; select $$;$$; select $t$ ; $t$;/* ; */ select $1";
        let parts = split_statements(sql);
        assert_eq!(parts.len(), 5, "{parts:?}");
        assert_eq!(parts[0], "select 'a;b'");
        assert!(parts[4].contains("select $1"));
        assert!(split_statements(" ; ;").is_empty());
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
    fn keywords() {
        assert!(opens_transaction("  BEGIN"));
        assert!(opens_transaction("start transaction"));
        assert!(!opens_transaction("beginning"));
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
