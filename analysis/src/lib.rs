//! Statement analysis on PostgreSQL's own parser (libpg_query through `pg_query`): what each
//! statement of a message does, so policies judge what PostgreSQL will run rather than what a
//! lexer guessed. [`analyze`] parses text into [`Analysis`]; [`Analyzer`] caches analyses by
//! the SHA-256 of the text, so a prepared statement is parsed once.

mod cache;
mod details;
mod levels;
mod model;
mod predicate;
mod redact;
mod relations;
mod statement;
mod visit;

pub use cache::{Analyzer, Key, key};

pub use model::{
    Analysis, Equality, Limit, Modification, ModificationKind, OpaqueCode, QueryBlock,
    StatementClass, StatementFacts, TableName, Via, WhereFacts,
};
pub use redact::{REDACTED, UNREADABLE, redact};
pub use relations::{RelationSpan, relation_spans};

use pg_query::protobuf::Token;
use sha2::{Digest, Sha256};

/// Parses `sql` with PostgreSQL's grammar and reports every statement in it. Never panics:
/// text the grammar rejects (or that holds a NUL byte) comes back with `error` set and no
/// statements, so a policy can refuse what it cannot analyse.
pub fn analyze(sql: &str) -> Analysis {
    let parsed = match pg_query::parse(sql, 0) {
        Ok(p) => p,
        Err(e) => {
            return Analysis {
                statements: Vec::new(),
                error: Some(parse_error(e)),
                fingerprint: String::new(),
            };
        }
    };
    let statements = parsed
        .protobuf
        .stmts
        .iter()
        .filter_map(|raw| {
            let node = raw.stmt.as_ref()?.node.as_ref()?;
            Some(statement::facts(statement_text(sql, raw), node))
        })
        .collect();
    Analysis {
        statements,
        error: None,
        fingerprint: fingerprint(sql),
    }
}

fn parse_error(e: pg_query::Error) -> String {
    match e {
        pg_query::Error::Parse(m) => m,
        other => other.to_string(),
    }
}

/// The text of one statement: `stmt_len` 0 means "to the end".
fn statement_text<'a>(sql: &'a str, raw: &pg_query::protobuf::RawStmt) -> &'a str {
    let start = usize::try_from(raw.stmt_location).unwrap_or(0);
    let end = match usize::try_from(raw.stmt_len) {
        Ok(0) | Err(_) => sql.len(),
        Ok(len) => start.saturating_add(len),
    };
    sql.get(start..end.min(sql.len())).unwrap_or(sql).trim()
}

/// The text with every constant replaced by a `$n` placeholder (PostgreSQL's own
/// normalisation, as `pg_stat_statements` shows it) and comments dropped, for showing a
/// statement's shape without the values (or notes) in it. `None` when PostgreSQL's scanner
/// rejects the text.
pub fn normalize(sql: &str) -> Option<String> {
    let normalized = pg_query::normalize(sql).ok()?;
    let tokens = scan_tokens(&normalized)?;
    let mut out = String::with_capacity(normalized.len());
    let mut at = 0;
    for t in &tokens {
        let token = Token::try_from(t.token).unwrap_or(Token::Nul);
        if matches!(token, Token::SqlComment | Token::CComment) {
            let (start, end) = (t.start as usize, t.end as usize);
            out.push_str(normalized.get(at..start)?);
            at = end;
        }
    }
    out.push_str(normalized.get(at..)?);
    // Collapse the white space a dropped comment leaves.
    Some(out.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// SHA-256 (hex) of the statement's tokens with constants and parameters replaced and
/// comments dropped: equal for texts that differ only in constants, white space, comments
/// or the case of keywords and unquoted identifiers. Empty when PostgreSQL's scanner rejects
/// the text.
pub fn fingerprint(sql: &str) -> String {
    shape(sql).map(|k| hex(&k)).unwrap_or_default()
}

/// The shape of SQL text: SHA-256 of PostgreSQL's tokens for it, each constant replaced by
/// its token type (a string and a number differ; two numbers do not), parameters by `$`,
/// comments dropped, keywords and unquoted identifiers folded to lower case as the server
/// folds them (ASCII only). Two texts with one shape parse to the same tree except for
/// constant values. `None` when the scanner rejects the text.
pub fn shape(sql: &str) -> Option<Key> {
    tokens_key(sql, false)
}

/// Like [`shape`], but constants keep their values and parameters their numbers: equal for
/// two spellings of one statement (white space, comments, keyword case, `01` for `1`),
/// different for any difference in what it asks (`$1`/`$2` swapped). The key the result
/// cache stores answers under.
pub fn spelling(sql: &str) -> Option<Key> {
    tokens_key(sql, true)
}

fn tokens_key(sql: &str, with_values: bool) -> Option<Key> {
    let mut h = Sha256::new();
    let tokens = scan_tokens(sql)?;
    let mut folded = Vec::with_capacity(64);
    for t in &tokens {
        let token = Token::try_from(t.token).unwrap_or(Token::Nul);
        let text = usize::try_from(t.start)
            .ok()
            .zip(usize::try_from(t.end).ok())
            .and_then(|(a, b)| sql.get(a..b))
            .unwrap_or("");
        match token {
            Token::SqlComment | Token::CComment => continue,
            Token::Iconst if with_values => match text.parse::<i64>() {
                Ok(n) => {
                    h.update(t.token.to_le_bytes());
                    h.update(n.to_string().as_bytes());
                }
                Err(_) => h.update(text.as_bytes()),
            },
            Token::Sconst | Token::Usconst | Token::Fconst | Token::Bconst | Token::Xconst
                if with_values =>
            {
                h.update(t.token.to_le_bytes());
                h.update((text.len() as u64).to_le_bytes());
                h.update(text.as_bytes());
            }
            Token::Sconst
            | Token::Usconst
            | Token::Iconst
            | Token::Fconst
            | Token::Bconst
            | Token::Xconst => h.update(t.token.to_le_bytes()),
            // Which parameter goes where changes the answer: spellings keep the number.
            Token::Param if with_values => h.update(text.as_bytes()),
            Token::Param => h.update(b"$"),
            // Quoted identifiers keep their case; so do U&"…" ones.
            Token::Uident => h.update(text.as_bytes()),
            Token::Ident if text.starts_with('"') => h.update(text.as_bytes()),
            _ => {
                folded.clear();
                folded.extend(text.bytes().map(|b| b.to_ascii_lowercase()));
                h.update(&folded);
            }
        }
        h.update(b" ");
    }
    Some(h.finalize().into())
}

/// PostgreSQL's tokens for `sql`; `None` when its scanner rejects the text.
/// `pg_query::scan_tokens` (no protobuf round trip) must not be given text without tokens:
/// it builds a slice from the scanner's null pointer, which aborts the process in a build
/// with debug assertions (and is undefined behaviour in any other) — an empty query from a
/// client took the proxy down.
pub(crate) fn scan_tokens(sql: &str) -> Option<Vec<pg_query::protobuf::ScanToken>> {
    if sql.bytes().all(|b| b" \t\n\r\x0b\x0c".contains(&b)) {
        return Some(Vec::new());
    }
    pg_query::scan_tokens(sql).ok()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests;
