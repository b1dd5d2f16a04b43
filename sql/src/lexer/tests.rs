//! One test per way the lexer used to disagree with PostgreSQL's scanner; the expectations
//! were checked against libpg_query (see `sql/tests/scanner_agrees.rs`).

use super::*;

#[test]
fn splits_respecting_quotes_comments_and_dollars() {
    let sql =
        "select 'a;b'; select \"x;y\" -- c;\n; select $$;$$; select $t$ ; $t$;/* ; */ select $1";
    let parts = split_statements(sql);
    assert_eq!(parts.len(), 5, "{parts:?}");
    assert_eq!(parts[0], "select 'a;b'");
    assert!(parts[4].contains("select $1"));
    assert!(split_statements(" ; ;").is_empty());
}

#[test]
fn line_comment_ends_at_carriage_return() {
    assert_eq!(
        split_statements("select 1 -- note\rselect 2; select 3"),
        ["select 1 -- note\rselect 2", " select 3"]
    );
    assert_eq!(skip_space_and_comments("-- a\rselect"), "select");
    assert!(split_statements("-- only; a comment\r\n").is_empty());
}

#[test]
fn escape_strings_have_backslash_escapes() {
    assert_eq!(
        split_statements("select E'it\\'s; drop'; select 2"),
        ["select E'it\\'s; drop'", " select 2"]
    );
    assert_eq!(
        split_statements("select e'\\\\'; select 2"),
        ["select e'\\\\'", " select 2"]
    );
    // `''` still doubles inside E'…'.
    assert_eq!(
        split_statements("select E'a'';'; x"),
        ["select E'a'';'", " x"]
    );
}

#[test]
fn escape_prefix_counts_only_at_a_word_start() {
    // `nameE'…'` is the identifier `nameE` then a plain literal, where `\` is just a byte.
    assert_eq!(
        split_statements("select nameE'\\'; select 2"),
        ["select nameE'\\'", " select 2"]
    );
    assert_eq!(
        split_statements("select éE'\\'; select 2"),
        ["select éE'\\'", " select 2"]
    );
    // After an operator or `(` it does start a word.
    assert_eq!(
        split_statements("select (E'\\';');x"),
        ["select (E'\\';')", "x"]
    );
}

#[test]
fn continued_escape_string_keeps_its_escapes() {
    // `E'a'` newline `'…'` is one literal, so the second part is an escape string too.
    let sql = "select E'a'\n'\\'; still'; select 2";
    assert_eq!(
        split_statements(sql),
        ["select E'a'\n'\\'; still'", " select 2"]
    );
    let sql = "select E'a' -- c\n  -- d\n '\\';'; select 2";
    assert_eq!(split_statements(sql).len(), 2, "{sql:?}");
    // Without a newline, or with a comment not ending its line, there is no continuation.
    let sql = "select E'a' '\\'; select 2";
    assert_eq!(split_statements(sql), ["select E'a' '\\'", " select 2"]);
    let sql = "select E'a'\n/* c */'\\'; select 2";
    assert_eq!(
        split_statements(sql),
        ["select E'a'\n/* c */'\\'", " select 2"]
    );
}

#[test]
fn plain_strings_have_no_backslash_escapes() {
    assert_eq!(
        split_statements("select '\\'; select 2"),
        ["select '\\'", " select 2"]
    );
}

#[test]
fn prefixed_strings_and_identifiers() {
    for sql in [
        "select U&'a;b'; x",
        "select u&'a'';b'; x",
        "select U&\"a;b\"; x",
        "select B'0;1'; x",
        "select X'a;b'; x",
        "select N'a;b'; x",
        "select n'a'';b'; x",
    ] {
        let parts = split_statements(sql);
        assert_eq!(parts.len(), 2, "{sql:?}: {parts:?}");
        assert_eq!(parts[1], " x", "{sql:?}");
    }
    // U& followed by anything else is the identifier `U`.
    assert_eq!(split_statements("select U& 'a'; x").len(), 2);
}

#[test]
fn dollar_quote_tags() {
    assert_eq!(
        split_statements("select $é$;$é$; x"),
        ["select $é$;$é$", " x"]
    );
    assert_eq!(split_statements("select $_1$;$_1$; x").len(), 2);
    // A tag never starts with a digit: `$1` is a parameter.
    assert_eq!(split_statements("select $1$;"), ["select $1$"]);
    assert_eq!(split_statements("select $1 ; $2"), ["select $1 ", " $2"]);
    // The body ends at the first full tag only.
    assert_eq!(
        split_statements("select $a$ $ab$; $a$; x"),
        ["select $a$ $ab$; $a$", " x"]
    );
    assert_eq!(split_statements("select $$$; x"), ["select $$$; x"]);
}

#[test]
fn dollar_inside_an_identifier_is_not_a_quote() {
    assert_eq!(
        split_statements("select foo$$; x$$"),
        ["select foo$$", " x$$"]
    );
    assert_eq!(
        split_statements("select foo$bar$ ; $bar$"),
        ["select foo$bar$ ", " $bar$"]
    );
    assert_eq!(split_statements("select é$$; 1"), ["select é$$", " 1"]);
    // After a number it is: `1$$` is `1` then a dollar quote.
    assert_eq!(split_statements("select 1$$;$$"), ["select 1$$;$$"]);
}

#[test]
fn nested_block_comments() {
    assert_eq!(
        split_statements("select /* a /* ; */ ; */ 1; x"),
        ["select /* a /* ; */ ; */ 1", " x"]
    );
    assert_eq!(skip_space_and_comments("/* /* */ */x"), "x");
    assert_eq!(skip_space_and_comments("/*/ x */y"), "y");
    assert_eq!(skip_space_and_comments("/* **/x"), "x");
}

#[test]
fn white_space_is_ascii_only() {
    // `\v` is space; U+00A0 and other Unicode spaces are identifier bytes.
    assert_eq!(skip_space_and_comments("\x0b\x0cselect"), "select");
    assert_eq!(skip_space_and_comments("\u{a0}select"), "\u{a0}select");
    assert!(!starts_with_keyword("\u{3000}begin", "begin"));
}

#[test]
fn keywords_end_at_identifier_bytes() {
    assert!(starts_with_keyword("BEGIN;", "begin"));
    assert!(!starts_with_keyword("begin$x", "begin"));
    assert!(!starts_with_keyword("beginé", "begin"));
    assert_eq!(
        leading_words("fetch next from cur$1", 4),
        ["fetch", "next", "from", "cur$1"]
    );
    assert_eq!(leading_words("set app.é = 1", 3), ["set", "app.é"]);
}

#[test]
fn no_panic_on_unterminated_input_ending_in_multibyte_chars() {
    for sql in [
        "SELECT \"é",
        "SELECT 'é",
        "SELECT E'é\\",
        "SELECT E'\\é",
        "SELECT e'x'\n'é",
        "SELECT $é",
        "SELECT $é$é",
        "SELECT U&\"é",
        "SELECT /* é",
        "SELECT -- é",
        "é",
        "$",
        "E'",
        "U&",
        "\"",
        "--",
        "/*",
        "",
    ] {
        for stmt in split_statements(sql) {
            skip_space_and_comments(stmt);
            leading_words(stmt, 4);
            starts_with_keyword(stmt, "select");
            crate::session_effect(stmt);
        }
        let _ = crate::session_effect(&format!("prepare {sql}"));
        let _ = crate::session_effect(&format!("deallocate {sql}"));
    }
    assert_eq!(split_statements("SELECT \"é"), ["SELECT \"é"]);
    assert_eq!(split_statements("SELECT E'\\é;"), ["SELECT E'\\é;"]);
}

#[test]
fn parameter_ends_after_its_digits() {
    // `$1a$$` is `$1` then the identifier `a$$` (libpg_query; the server rejects the junk).
    assert_eq!(split_statements("select $1a$$; x"), ["select $1a$$", " x"]);
    // No `_` in parameter numbers: `$1_2$$` is `$1` then the identifier `_2$$`.
    assert_eq!(
        split_statements("select $1_2$$; x"),
        ["select $1_2$$", " x"]
    );
}
