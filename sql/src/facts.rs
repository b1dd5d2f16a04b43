//! Statement facts for hooks: what kind of statement it is, which tables it names, a
//! fingerprint that ignores constants, and `/*+ key=value */` hints.

use crate::{leading_words, skip_block_comment, skip_dollar, skip_quoted};

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

/// Classifies one statement by its leading keywords.
pub fn classify(sql: &str) -> StatementClass {
    use StatementClass::*;
    let words = leading_words(sql, 3);
    let Some(first) = words.first() else {
        return Other;
    };
    match first.as_str() {
        "select" | "with" => {
            if writes_anyway(sql) {
                Write
            } else {
                Read
            }
        }
        "show" | "values" | "table" | "fetch" | "move" | "close" | "declare" => Read,
        "explain" => {
            if words.iter().any(|w| w == "analyze" || w == "analyse") {
                Write
            } else {
                Read
            }
        }
        "insert" | "update" | "delete" | "merge" | "call" | "do" | "lock" | "execute" => Write,
        "copy" => {
            if contains_word(sql, "from") && !sql_after_paren_is_query(sql) {
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
        "prepare" if words.get(1).map(String::as_str) == Some("transaction") => Transaction,
        "set" | "reset" | "discard" | "listen" | "unlisten" | "notify" | "prepare"
        | "deallocate" | "load" => Session,
        _ => Other,
    }
}

/// `COPY (SELECT …) TO` reads even though the subquery may say FROM.
fn sql_after_paren_is_query(sql: &str) -> bool {
    crate::skip_space_and_comments(sql)
        .get(4..)
        .is_some_and(|rest| rest.trim_start().starts_with('('))
}

/// SELECT or WITH statements that write: data-modifying CTEs, SELECT INTO, row locks.
fn writes_anyway(sql: &str) -> bool {
    ["insert", "update", "delete", "merge", "into"]
        .iter()
        .any(|w| contains_word(sql, w))
        || contains_phrase(sql, &["for", "update"])
        || contains_phrase(sql, &["for", "share"])
        || contains_phrase(sql, &["for", "no", "key", "update"])
        || contains_phrase(sql, &["for", "key", "share"])
}

/// Lower-cased words of the SQL outside quotes and comments, in order.
fn words(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    for tok in tokens(sql) {
        if let Token::Word(w) = tok {
            out.push(w.to_ascii_lowercase());
        }
    }
    out
}

fn contains_word(sql: &str, word: &str) -> bool {
    words(sql).iter().any(|w| w == word)
}

/// Whether `keyword` (lower-case) appears as a word outside quotes and comments.
pub fn has_keyword(sql: &str, keyword: &str) -> bool {
    contains_word(sql, keyword)
}

/// The lower-cased words after the first `WHERE`, outside quotes and comments.
pub fn words_after_where(sql: &str) -> Vec<String> {
    let w = words(sql);
    match w.iter().position(|x| x == "where") {
        Some(p) => w[p + 1..].to_vec(),
        None => Vec::new(),
    }
}

fn contains_phrase(sql: &str, phrase: &[&str]) -> bool {
    let w = words(sql);
    w.windows(phrase.len())
        .any(|win| win.iter().zip(phrase).all(|(a, b)| a == b))
}

/// A lexical token, enough for facts.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    let mut out = Vec::new();
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
    let toks = tokens(sql);
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let introduces = match &toks[i] {
            Token::Word(w) => {
                let w = w.to_ascii_lowercase();
                matches!(
                    w.as_str(),
                    "from" | "join" | "into" | "update" | "truncate" | "copy" | "table"
                )
            }
            _ => false,
        };
        i += 1;
        if !introduces {
            continue;
        }
        // A comma-separated list of names (FROM a, b), skipping modifiers.
        loop {
            while let Some(Token::Word(w)) = toks.get(i) {
                let lw = w.to_ascii_lowercase();
                if ["only", "table", "if", "exists", "not", "lateral"].contains(&lw.as_str()) {
                    i += 1;
                } else {
                    break;
                }
            }
            let Some(name) = qualified_name(&toks, &mut i) else {
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
    let mut h: u64 = 0xcbf29ce484222325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x100000001b3);
    };
    for tok in tokens(sql) {
        match tok {
            Token::Word(w) => feed(w.to_ascii_lowercase().as_bytes()),
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
