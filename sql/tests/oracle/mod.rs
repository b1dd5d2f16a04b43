//! The agreement property between helios-sql's lexer and PostgreSQL's own scanner
//! (libpg_query's `scan_tokens`, which runs scan.l with comments returned as tokens), shared
//! by `tests/scanner_agrees.rs` and the `sql_scanner` fuzz target.
//!
//! For text the scanner accepts:
//! * statements: the scanner's `;` tokens cut the text into segments — from just after the
//!   previous `;` (or the start) to just before the next `;` (or the end). `split_statements`
//!   must return exactly the segments that hold at least one token other than a comment, as
//!   the same byte ranges (not merely equal trimmed text: it returns sub-slices of its input);
//! * `skip_space_and_comments` must return the suffix that starts at the first non-comment
//!   token (empty if none), for the whole text and for each statement;
//! * `starts_with_keyword(sql, "select")` must hold exactly when that first token is the
//!   word `select` (any case), so a keyword runs exactly as far as PostgreSQL's token does.
//!
//! `pg_query::split_with_scanner` is not the oracle: it drops statements that do not start
//! with a keyword (`x;;y` gives no statements at all).
//!
//! Text the scanner rejects (unterminated quote or comment, trailing junk after a number …)
//! and text with a NUL byte (which the C API cannot take) is only run through every entry
//! point, none of which may panic.

use pg_query::protobuf::Token;

/// What [`check`] could do with an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The scanner accepted it and the lexer agreed.
    Agreed,
    /// The scanner rejected it; the lexer merely did not panic.
    Rejected,
}

/// Runs every lexer entry point on `sql` and, if PostgreSQL's scanner accepts it, asserts the
/// agreement described in the module docs, panicking with the input on any difference.
pub fn check(sql: &str) -> Checked {
    let ours = exercise(sql);
    // pg_query 18.1.0's scan_tokens builds a slice from a null pointer when there are no
    // tokens (undefined behaviour, an abort in debug builds); that happens exactly when the
    // text is all white space, so answer that case here.
    let only_space = sql
        .bytes()
        .all(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c));
    let tokens = if only_space {
        Vec::new()
    } else {
        match pg_query::scan_tokens(sql) {
            Ok(tokens) => tokens,
            Err(_) => return Checked::Rejected,
        }
    };
    let is_comment = |t: i32| t == Token::SqlComment as i32 || t == Token::CComment as i32;
    let first_token_at = |from: usize| {
        tokens
            .iter()
            .filter(|t| !is_comment(t.token) && t.start as usize >= from)
            .map(|t| (t.start as usize, t.end as usize))
            .next()
    };
    let shown = || {
        tokens
            .iter()
            .map(|t| {
                (
                    t.start,
                    t.end,
                    Token::try_from(t.token).map_or("?", |k| k.as_str_name()),
                )
            })
            .collect::<Vec<_>>()
    };

    let mut expected = Vec::new();
    let mut start = 0;
    let semis = tokens
        .iter()
        .filter(|t| t.token == Token::Ascii59 as i32)
        .map(|t| t.start as usize);
    for end in semis.chain([sql.len()]) {
        let has_token = tokens.iter().any(|t| {
            let at = t.start as usize;
            at >= start && at < end && !is_comment(t.token) && t.token != Token::Ascii59 as i32
        });
        if has_token {
            expected.push((start, end));
        }
        start = end + 1;
    }
    assert_eq!(
        ours.statements,
        expected,
        "split_statements disagrees with PostgreSQL on {sql:?}\n  ours: {:?}\n  tokens: {:?}",
        helios_sql::split_statements(sql),
        shown()
    );

    let first = first_token_at(0);
    assert_eq!(
        ours.first_token,
        first.map_or(sql.len(), |(s, _)| s),
        "skip_space_and_comments disagrees with PostgreSQL on {sql:?}\n  tokens: {:?}",
        shown()
    );
    for (&(s, _), &at) in ours.statements.iter().zip(&ours.statement_tokens) {
        assert_eq!(
            Some(at),
            first_token_at(s).map(|(s, _)| s),
            "skip_space_and_comments disagrees with PostgreSQL on the statement at {s} of \
             {sql:?}\n  tokens: {:?}",
            shown()
        );
    }
    let is_select = first.is_some_and(|(s, e)| sql[s..e].eq_ignore_ascii_case("select"));
    assert_eq!(
        ours.starts_with_select,
        is_select,
        "starts_with_keyword(_, \"select\") disagrees with PostgreSQL on {sql:?}\n  tokens: {:?}",
        shown()
    );
    Checked::Agreed
}

/// What the lexer says about one input, as byte offsets into it.
struct Ours {
    statements: Vec<(usize, usize)>,
    statement_tokens: Vec<usize>,
    first_token: usize,
    starts_with_select: bool,
}

/// Runs every public lexing entry point (none may panic) and records the results.
fn exercise(sql: &str) -> Ours {
    let offset = |part: &str| part.as_ptr() as usize - sql.as_ptr() as usize;
    let parts = helios_sql::split_statements(sql);
    for part in &parts {
        let _ = helios_sql::leading_words(part, 12);
        let _ = helios_sql::session_effect(part);
        let _ = helios_sql::opens_transaction(part);
    }
    // session_effect only looks past its first word for these.
    for verb in [
        "prepare ",
        "deallocate ",
        "deallocate prepare ",
        "set ",
        "reset ",
    ] {
        let _ = helios_sql::session_effect(&format!("{verb}{sql}"));
    }
    Ours {
        statements: parts
            .iter()
            .map(|p| (offset(p), offset(p) + p.len()))
            .collect(),
        statement_tokens: parts
            .iter()
            .map(|p| offset(helios_sql::skip_space_and_comments(p)))
            .collect(),
        first_token: offset(helios_sql::skip_space_and_comments(sql)),
        starts_with_select: helios_sql::starts_with_keyword(sql, "select"),
    }
}
