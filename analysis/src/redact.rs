//! Secrets taken out of SQL text before it is stored (the journal): the password of
//! `CREATE/ALTER ROLE|USER … PASSWORD '…'`, and the value given to a secret setting by
//! `SET`, `ALTER … SET` or `set_config(…)`. Works on PostgreSQL's own tokens, so quoting,
//! comments, dollar quotes and `U&` escapes cannot hide a value from it; text that cannot
//! be scanned is not stored at all.

use pg_query::protobuf::{ScanToken, Token};

/// What replaces a secret constant.
pub const REDACTED: &str = "'[redacted]'";

/// What is stored instead of text the scanner rejects.
pub const UNREADABLE: &str = "/* [redacted: text the scanner rejects] */";

/// `sql` with secret constants replaced by [`REDACTED`]; `None` when nothing is secret.
/// `is_secret` says whether a setting name (lower case) holds a secret.
pub fn redact(sql: &str, is_secret: impl Fn(&str) -> bool) -> Option<String> {
    if !might_hold_secret(sql, &is_secret) {
        return None;
    }
    let Some(all) = crate::scan_tokens(sql) else {
        return Some(UNREADABLE.to_owned());
    };
    let tokens: Vec<&ScanToken> = all
        .iter()
        .filter(|t| !matches!(kind(t), Token::SqlComment | Token::CComment))
        .collect();
    let mut secret: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        match kind(t) {
            Token::Password => {
                if let Some(next) = tokens.get(i + 1)
                    && is_string(next)
                {
                    secret.push(span(next));
                }
            }
            Token::Set => {
                // SET [SESSION|LOCAL] name [.name] {TO|=} values …, up to `;`.
                let mut j = i + 1;
                if tokens
                    .get(j)
                    .is_some_and(|t| matches!(kind(t), Token::Session | Token::Local))
                {
                    j += 1;
                }
                let mut name = String::new();
                let mut hidden = false;
                while let Some(t) = tokens.get(j) {
                    match kind(t) {
                        Token::To | Token::Ascii61 | Token::Ascii59 => break,
                        Token::Uident => hidden = true,
                        _ => name.push_str(&text(sql, t).trim_matches('"').to_lowercase()),
                    }
                    j += 1;
                }
                if hidden || is_secret(&name) {
                    while let Some(t) = tokens.get(j).filter(|t| kind(t) != Token::Ascii59) {
                        if is_constant(t) {
                            secret.push(span(t));
                        }
                        j += 1;
                    }
                }
                i = j;
                continue;
            }
            Token::Ident if text(sql, t).eq_ignore_ascii_case("set_config") => {
                if let Some((from, end)) = set_config_secret(sql, &tokens, i, &is_secret) {
                    for t in &tokens[from..end] {
                        if is_constant(t) {
                            secret.push(span(t));
                        }
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    if secret.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(sql.len());
    let mut at = 0;
    for (start, end) in secret {
        if start < at {
            continue;
        }
        out.push_str(&sql[at..start]);
        out.push_str(REDACTED);
        at = end;
    }
    out.push_str(&sql[at..]);
    Some(out)
}

/// For `set_config(` at `i`: the tokens to redact (after the name when it is a plain
/// constant, else every argument) when the setting is secret or cannot be read.
fn set_config_secret(
    sql: &str,
    tokens: &[&ScanToken],
    i: usize,
    is_secret: &impl Fn(&str) -> bool,
) -> Option<(usize, usize)> {
    if tokens.get(i + 1).map(|t| kind(t)) != Some(Token::Ascii40) {
        return None;
    }
    let mut depth = 0;
    let mut end = None;
    for (j, t) in tokens.iter().enumerate().skip(i + 1) {
        match kind(t) {
            Token::Ascii40 => depth += 1,
            Token::Ascii41 => {
                depth -= 1;
                if depth == 0 {
                    end = Some(j);
                    break;
                }
            }
            _ => {}
        }
    }
    let end = end.unwrap_or(tokens.len());
    let first = tokens.get(i + 2)?;
    let plain_name = kind(first) == Token::Sconst
        && tokens.get(i + 3).map(|t| kind(t)) == Some(Token::Ascii44)
        && text(sql, first).starts_with('\'');
    if !plain_name {
        return Some((i + 2, end));
    }
    let name = text(sql, first).trim_matches('\'').to_lowercase();
    is_secret(&name).then_some((i + 4, end))
}

/// Cheap pre-check: a password clause, a `set_config` call (its name may be computed), or
/// a `SET` whose text names a secret (or hides the name in an escape).
fn might_hold_secret(sql: &str, is_secret: &impl Fn(&str) -> bool) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.contains("password")
        || lower.contains("set_config")
        || (lower.contains("set") && (lower.contains("u&") || is_secret(&lower)))
}

fn text<'a>(sql: &'a str, t: &ScanToken) -> &'a str {
    sql.get(t.start as usize..t.end as usize).unwrap_or("")
}

fn kind(t: &ScanToken) -> Token {
    Token::try_from(t.token).unwrap_or(Token::Nul)
}

fn span(t: &ScanToken) -> (usize, usize) {
    (t.start as usize, t.end as usize)
}

fn is_string(t: &ScanToken) -> bool {
    matches!(kind(t), Token::Sconst | Token::Usconst)
}

/// A value token: a constant of any kind, or a bare word (`SET x = word`).
fn is_constant(t: &ScanToken) -> bool {
    matches!(
        kind(t),
        Token::Sconst
            | Token::Usconst
            | Token::Iconst
            | Token::Fconst
            | Token::Bconst
            | Token::Xconst
            | Token::Ident
            | Token::Uident
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str) -> bool {
        ["pass", "secret", "token", "key"]
            .iter()
            .any(|p| name.contains(p))
    }

    #[test]
    fn passwords_and_secret_settings_are_redacted_however_written() {
        for (sql, hidden) in [
            ("CREATE ROLE app LOGIN PASSWORD 'hunter2'", "hunter2"),
            (
                "alter user app with encrypted password 'SCRAM-SHA-256$4096:abc'",
                "SCRAM",
            ),
            ("ALTER ROLE app PASSWORD /* c */ $q$hunter2$q$", "hunter2"),
            ("ALTER ROLE app PASSWORD E'hun\\'ter2'", "hun"),
            ("create role a password U&'hunter\\0032'", "hunter"),
            ("SET app.api_key = 'k-123'", "k-123"),
            ("set session myapp.secret to 'abc', 'def'", "def"),
            ("ALTER ROLE app SET app.token = 'tok-1'", "tok-1"),
            ("select set_config('app.secret_key', 'sk-9', false)", "sk-9"),
            (
                "select pg_catalog.set_config('app.' || 'k', 'sk-9', false)",
                "sk-9",
            ),
            ("SET U&\"app.\\0073ecret\" = 'sk-9'", "sk-9"),
        ] {
            let out = redact(sql, secret).unwrap_or_else(|| panic!("kept: {sql}"));
            assert!(!out.contains(hidden), "{sql} -> {out}");
            assert!(out.contains("[redacted]"), "{out}");
        }
        assert_eq!(
            redact("ALTER ROLE app PASSWORD 'unterminated", secret).as_deref(),
            Some(UNREADABLE)
        );
    }

    #[test]
    fn ordinary_statements_are_kept() {
        for sql in [
            "select * from users where name = 'password reset'",
            "UPDATE t SET a = 'x' WHERE id = 1",
            "SET work_mem = '64MB'",
            "select set_config('search_path', 'public', false)",
        ] {
            assert_eq!(redact(sql, secret), None, "{sql}");
        }
    }
}
