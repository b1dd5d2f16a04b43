//! Statement facts for hooks: what kind of statement it is, which tables it names, a
//! fingerprint that ignores constants, and `/*+ key=value */` hints.

use crate::{skip_block_comment, skip_dollar, skip_quoted};

/// What a statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementClass {
    /// Reads only (SELECT, SHOW, VALUES, TABLE, EXPLAIN without ANALYZE, COPY … TO).
    Read,
    /// May write (INSERT, UPDATE, DELETE, MERGE, COPY … FROM, SELECT … FOR UPDATE, CALL, DO).
    Write,
    /// Schema and maintenance (CREATE, ALTER, DROP, TRUNCATE, GRANT, …).
    Ddl,
    /// Transaction control.
    Transaction,
    /// Session commands (SET, RESET, DISCARD, LISTEN, PREPARE, DEALLOCATE, …).
    Session,
    /// Anything else.
    Other,
}

/// Every fact about a statement, from one pass of the lexer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Classification.
    pub class: StatementClass,
    /// Tables named (see [`tables`]).
    pub tables: Vec<String>,
    /// Constant-insensitive fingerprint (see [`fingerprint`]).
    pub fingerprint: u64,
    /// `/*+ … */` hints (see [`hints`]).
    pub hints: Vec<(String, String)>,
}

/// Computes every fact with a single tokenisation.
pub fn analyze(sql: &str) -> Facts {
    let toks = tokens(sql);
    Facts {
        class: classify_tokens(&toks),
        tables: tables_of(&toks),
        fingerprint: fingerprint_of(&toks),
        hints: hints(sql),
    }
}

/// Class and fingerprint only, from one tokenisation (what every hook call needs; tables and
/// hints are worked out when asked for).
pub fn class_and_fingerprint(sql: &str) -> (StatementClass, u64) {
    let toks = tokens(sql);
    (classify_tokens(&toks), fingerprint_of(&toks))
}

/// Classifies one statement by its leading keywords.
pub fn classify(sql: &str) -> StatementClass {
    classify_tokens(&tokens(sql))
}

fn word_at<'a>(toks: &[Token<'a>], i: usize) -> Option<&'a str> {
    match toks.get(i) {
        Some(Token::Word(w)) => Some(w),
        _ => None,
    }
}

fn is(w: Option<&str>, kw: &str) -> bool {
    w.is_some_and(|w| w.eq_ignore_ascii_case(kw))
}

fn classify_tokens(toks: &[Token<'_>]) -> StatementClass {
    use StatementClass::*;
    let Some(first) = word_at(toks, 0) else {
        return Other;
    };
    let first = first.to_ascii_lowercase();
    let has = |kw: &str| {
        toks.iter()
            .any(|t| matches!(t, Token::Word(w) if w.eq_ignore_ascii_case(kw)))
    };
    match first.as_str() {
        "select" | "with" => {
            if writes_anyway(toks) {
                Write
            } else {
                Read
            }
        }
        "show" | "values" | "table" | "fetch" | "move" | "close" | "declare" => Read,
        "explain" => {
            if is(word_at(toks, 1), "analyze")
                || is(word_at(toks, 1), "analyse")
                || is(word_at(toks, 2), "analyze")
            {
                Write
            } else {
                Read
            }
        }
        "insert" | "update" | "delete" | "merge" | "call" | "do" | "lock" | "execute" => Write,
        "copy" => {
            let subquery = toks.get(1) == Some(&Token::Punct(b'('));
            if has("from") && !subquery {
                Write
            } else {
                Read
            }
        }
        "create" | "alter" | "drop" | "truncate" | "grant" | "revoke" | "comment" | "reindex"
        | "vacuum" | "analyze" | "analyse" | "cluster" | "refresh" | "security" | "import" => Ddl,
        "begin" | "start" | "commit" | "end" | "rollback" | "abort" | "savepoint" | "release" => {
            Transaction
        }
        "prepare" if is(word_at(toks, 1), "transaction") => Transaction,
        "set" | "reset" | "discard" | "listen" | "unlisten" | "notify" | "prepare"
        | "deallocate" | "load" => Session,
        _ => Other,
    }
}

/// SELECT or WITH statements that write: data-modifying CTEs, SELECT INTO, row locks.
fn writes_anyway(toks: &[Token<'_>]) -> bool {
    for (i, t) in toks.iter().enumerate() {
        let Token::Word(w) = t else { continue };
        if ["insert", "update", "delete", "merge", "into"]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k))
        {
            return true;
        }
        if w.eq_ignore_ascii_case("for") {
            let next = word_at(toks, i + 1);
            if is(next, "share") || is(next, "no") || is(next, "key") {
                return true;
            }
        }
    }
    false
}

fn contains_word(sql: &str, word: &str) -> bool {
    tokens(sql)
        .iter()
        .any(|t| matches!(t, Token::Word(w) if w.eq_ignore_ascii_case(word)))
}

/// The words of the SQL (keywords and identifiers) outside quotes and comments, in order,
/// as written (compare with `eq_ignore_ascii_case`); one allocation for the whole statement.
pub fn word_list(sql: &str) -> Vec<&str> {
    tokens(sql)
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w),
            _ => None,
        })
        .collect()
}

/// Whether `keyword` (lower-case) appears as a word outside quotes and comments.
pub fn has_keyword(sql: &str, keyword: &str) -> bool {
    contains_word(sql, keyword)
}

/// A lexical token, enough for facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    Quoted(&'a str),
    Number,
    Str,
    Param,
    Punct(u8),
}

fn tokens(sql: &str) -> Vec<Token<'_>> {
    let b = sql.as_bytes();
    let mut out = Vec::with_capacity(sql.len() / 4 + 4);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            i = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p + 1);
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i = skip_block_comment(b, i);
        } else if c == b'\'' {
            i = skip_quoted(b, i);
            out.push(Token::Str);
        } else if c == b'"' {
            let end = skip_quoted(b, i);
            out.push(Token::Quoted(&sql[i + 1..end.saturating_sub(1).max(i + 1)]));
            i = end;
        } else if c == b'$' {
            let end = skip_dollar(b, i);
            if end == i + 1 {
                // `$1` parameter
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                out.push(Token::Param);
                i = j.max(i + 1);
            } else {
                out.push(Token::Str);
                i = end;
            }
        } else if c.is_ascii_digit() {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'.') {
                j += 1;
            }
            out.push(Token::Number);
            i = j;
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            let mut j = i;
            while j < b.len()
                && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'$' || b[j] >= 0x80)
            {
                j += 1;
            }
            // E'...' and similar prefixed strings
            if b.get(j) == Some(&b'\'') && j - i == 1 {
                i = skip_quoted(b, j);
                out.push(Token::Str);
                continue;
            }
            out.push(Token::Word(&sql[i..j]));
            i = j;
        } else {
            out.push(Token::Punct(c));
            i += 1;
        }
    }
    out
}

/// Tables the statement names after FROM, JOIN, INTO, UPDATE, TABLE, TRUNCATE, COPY, DROP
/// TABLE / ALTER TABLE: lower-cased unless quoted, schema-qualified when written so.
pub fn tables(sql: &str) -> Vec<String> {
    tables_of(&tokens(sql))
}

fn tables_of(toks: &[Token<'_>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let introduces = match &toks[i] {
            Token::Word(w) => [
                "from", "join", "into", "update", "truncate", "copy", "table",
            ]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k)),
            _ => false,
        };
        i += 1;
        if !introduces {
            continue;
        }
        // A comma-separated list of names (FROM a, b), skipping modifiers.
        loop {
            while let Some(Token::Word(w)) = toks.get(i) {
                if ["only", "table", "if", "exists", "not", "lateral"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k))
                {
                    i += 1;
                } else {
                    break;
                }
            }
            let Some(name) = qualified_name(toks, &mut i) else {
                break;
            };
            if !out.contains(&name) {
                out.push(name);
            }
            // Skip an alias, then continue on a comma.
            if let Some(Token::Word(w)) = toks.get(i)
                && w.eq_ignore_ascii_case("as")
            {
                i += 1;
            }
            if let Some(Token::Word(w)) = toks.get(i)
                && !is_clause_keyword(w)
            {
                i += 1;
            }
            if toks.get(i) == Some(&Token::Punct(b',')) {
                i += 1;
                continue;
            }
            break;
        }
    }
    out
}

fn is_clause_keyword(w: &str) -> bool {
    const KW: &[&str] = &[
        "where",
        "join",
        "left",
        "right",
        "inner",
        "outer",
        "full",
        "cross",
        "natural",
        "on",
        "using",
        "group",
        "order",
        "limit",
        "offset",
        "having",
        "window",
        "union",
        "except",
        "intersect",
        "set",
        "values",
        "select",
        "returning",
        "for",
        "from",
        "to",
        "with",
        "default",
        "cascade",
        "restrict",
        "fetch",
        "into",
        "as",
        "do",
        "on",
        "lateral",
    ];
    KW.iter().any(|k| w.eq_ignore_ascii_case(k))
}

fn qualified_name(toks: &[Token<'_>], i: &mut usize) -> Option<String> {
    let part = |t: &Token<'_>| match t {
        Token::Word(w) if !is_clause_keyword(w) => Some(w.to_ascii_lowercase()),
        Token::Quoted(q) => Some((*q).to_owned()),
        _ => None,
    };
    let mut name = part(toks.get(*i)?)?;
    *i += 1;
    while toks.get(*i) == Some(&Token::Punct(b'.')) {
        let next = toks.get(*i + 1).and_then(part)?;
        name.push('.');
        name.push_str(&next);
        *i += 2;
    }
    Some(name)
}

/// FNV-1a over the normalised statement: keywords and identifiers lower-cased, literals and
/// parameters replaced by `?`, comments and white space dropped. Identical in the kernel and
/// in components.
pub fn fingerprint(sql: &str) -> u64 {
    fingerprint_of(&tokens(sql))
}

fn fingerprint_of(toks: &[Token<'_>]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b.to_ascii_lowercase() as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x100000001b3);
    };
    for tok in toks.iter().copied() {
        match tok {
            Token::Word(w) => feed(w.as_bytes()),
            Token::Quoted(q) => feed(q.as_bytes()),
            Token::Number | Token::Str | Token::Param => feed(b"?"),
            Token::Punct(b';') => {}
            Token::Punct(c) => feed(&[c]),
        }
    }
    h
}

/// `key=value` pairs from `/*+ … */` hint comments, in order. A bare `key` has an empty value.
pub fn hints(sql: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(start) = rest.find("/*+") {
        let after = &rest[start + 3..];
        let Some(end) = after.find("*/") else {
            break;
        };
        for item in after[..end].split(|c: char| c.is_whitespace() || c == ',') {
            if item.is_empty() {
                continue;
            }
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            out.push((k.to_ascii_lowercase(), v.to_owned()));
        }
        rest = &after[end + 2..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use StatementClass::*;

    #[test]
    fn classifies_common_statements() {
        let cases = [
            ("SELECT * FROM t", Read),
            ("  /* c */ select 1", Read),
            ("with x as (select 1) select * from x", Read),
            (
                "with x as (delete from t returning *) select * from x",
                Write,
            ),
            ("select * from t for update", Write),
            ("select 1 into newtable", Write),
            ("show search_path", Read),
            ("explain select 1", Read),
            ("explain analyze delete from t", Write),
            ("INSERT INTO t VALUES (1)", Write),
            ("update t set x = 1", Write),
            ("copy t from stdin", Write),
            ("copy t to stdout", Read),
            ("copy (select * from t) to stdout", Read),
            ("create table t(x int)", Ddl),
            ("DROP TABLE t", Ddl),
            ("truncate t", Ddl),
            ("begin", Transaction),
            ("COMMIT", Transaction),
            ("prepare transaction 'x'", Transaction),
            ("set x = 1", Session),
            ("prepare p as select 1", Session),
            ("", Other),
        ];
        for (sql, class) in cases {
            assert_eq!(classify(sql), class, "{sql}");
        }
    }

    #[test]
    fn finds_tables() {
        assert_eq!(
            tables("select * from a join b on a.x = b.x"),
            vec!["a", "b"]
        );
        assert_eq!(
            tables("select * from Public.Orders o, \"Items\" i where o.id = i.id"),
            vec!["public.orders", "Items"]
        );
        assert_eq!(tables("insert into t(x) values (1)"), vec!["t"]);
        assert_eq!(tables("update only accounts set x = 1"), vec!["accounts"]);
        assert_eq!(tables("delete from logs where id < 5"), vec!["logs"]);
        assert_eq!(tables("truncate table big"), vec!["big"]);
        assert_eq!(tables("drop table if exists gone"), vec!["gone"]);
        assert_eq!(tables("select 'from x' as y"), Vec::<String>::new());
        assert_eq!(
            tables("select * from (select * from inner_t) s"),
            vec!["inner_t"]
        );
    }

    #[test]
    fn fingerprint_ignores_constants_and_case() {
        assert_eq!(
            fingerprint("SELECT * FROM t WHERE id = 1"),
            fingerprint("select *  from t where id=42 -- c")
        );
        assert_eq!(fingerprint("select 'a'"), fingerprint("select $1"));
        assert_ne!(
            fingerprint("select * from t"),
            fingerprint("select * from u")
        );
    }

    #[test]
    fn parses_hints() {
        assert_eq!(
            hints("/*+ route=primary */ select 1"),
            vec![("route".to_owned(), "primary".to_owned())]
        );
        assert_eq!(
            hints("select /*+ route=node:pg2 cache */ 1"),
            vec![
                ("route".to_owned(), "node:pg2".to_owned()),
                ("cache".to_owned(), String::new())
            ]
        );
        assert!(hints("/* route=primary */ select 1").is_empty());
    }
}
