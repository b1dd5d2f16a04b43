//! Differential test: helios-sql's lexer against PostgreSQL's own scanner (libpg_query), on a
//! table of tricky inputs and on seeded random concatenations of lexically loaded fragments.
//! The property is documented in `oracle/mod.rs`, which the `sql_scanner` fuzz target shares.

mod oracle;

use oracle::{Checked, check};

/// Inputs the scanner accepts that each exercise one way a hand-written lexer can part ways
/// with scan.l.
const ACCEPTED: &[&str] = &[
    // `--` comments end at \r as well as \n.
    "select 1 -- c;\rselect 2; select 3",
    "-- only a comment\r; select 1",
    // E'…' has backslash escapes; only at a word start; `''` still doubles; continuation.
    "select E'it\\'s; drop'; select 2",
    "select e'\\\\'; select 2",
    "select E'a'';'; x",
    "select nameE'\\'; select 2",
    "select éE'\\'; select 2",
    "select (E'\\';');x",
    "select E'a'\n'\\'; still'; select 2",
    "select E'a' -- c\n  -- d\n '\\';'; select 2",
    "select E'a' '\\'; select 2",
    "select E'a'\n/* c */'\\'; select 2",
    "select E'a'\r\n\t'\\';'; select 2",
    "select E'\\x41;\\u0041\\101'; x",
    // Plain literals have no backslash escapes.
    "select '\\'; select 2",
    "select 'a'\n'b;'; x",
    // Prefixed literals and identifiers.
    "select U&'a;b'; x",
    "select u&'a'';b'; x",
    "select U&\"a;b\"; x",
    "select U&\"a\"\";b\"; x",
    "select U& 'a'; x",
    "select B'0;1'; x",
    "select B'0''1;'; x",
    "select X'a;b'; x",
    "select N'a;b'; x",
    "select n'a'';b'; x",
    "select \"a\"\";b\"; x",
    // Dollar quotes: tags with non-ASCII bytes, never a leading digit, first full tag wins.
    "select $é$;$é$; x",
    "select $_1$;$_1$; x",
    "select $1 ; $2",
    "select $1a$$; x",
    "select $1_2$$; x",
    "select 1e+5$$;$$; x",
    "select $a$ $ab$; $a$; x",
    "select $a$ $b$a$; x",
    "select $$$$; x",
    "select $x ; $y",
    // `$` inside identifiers, not after numbers.
    "select foo$$; x",
    "select foo$bar$ ; $bar$ x $bar$",
    "select é$$; 1",
    "select 1$$;$$",
    "select 1.5$$;$$; x",
    // Nested and odd block comments.
    "select /* a /* ; */ ; */ 1; x",
    "/* /* */ */x",
    "/*/ x */y",
    "/* **/x; y",
    "select 1*/*;*/2; x",
    "select 1+--;\n2; x",
    // White space is ASCII only (with \v); Unicode spaces are identifier bytes.
    "\x0b\x0cselect 1",
    "\u{a0}select 1; select 2",
    "select\u{3000}1",
    // Keywords end at identifier bytes.
    "select$x; select",
    "selecté; selectx",
    "SELECT 1;;; ;",
    "x;;y",
    "",
    " ; ; ",
];

/// Inputs the scanner rejects, ending in the middle of something; the lexer must not panic.
const REJECTED: &[&str] = &[
    "SELECT \"é",
    "SELECT E'\\é",
    "SELECT $é$é",
    "SELECT /* é",
    "select 1e'x'",
    "select E'a'\r\n\t'\\'';'; select 2",
    "select foo$bar$ ; $bar$",
    "SELECT U&\"é",
    "SELECT e'x'\n'é",
    "select 1e5$$;$$",
    "select 1_2$$;$$",
    "select \"\"",
];

#[test]
fn tricky_inputs_agree() {
    for sql in ACCEPTED {
        assert_eq!(check(sql), Checked::Agreed, "the scanner rejects {sql:?}");
    }
    for sql in REJECTED {
        assert_eq!(check(sql), Checked::Rejected, "the scanner accepts {sql:?}");
    }
}

/// Fragments whose concatenations hit the lexer's edge cases, valid or not.
#[rustfmt::skip]
const FRAGMENTS: &[&str] = &[
    // Quote openers, prefixed or not, and escapes.
    "'", "\"", "E'", "e'", "U&'", "U&\"", "u&", "B'", "X'", "N'", "\\", "\\'", "''", "\"\"",
    // Comments, operators and the white space that ends or continues things.
    "--", "-", "/", "*", "+", "\r", "\n", "\x0b", "\t", " ", " ", "/*", "*/",
    // Dollars: quotes, tags, parameters, identifiers.
    "$$", "$a$", "$é$", "$_$", "$1", "$1x", "$", "foo$", "a$$",
    // Words, numbers, non-ASCII, and complete lexemes to keep many inputs well formed.
    ";", "1", "1e", ".", "(", "x", "E", "_", "é", "\u{a0}", "select", "SELECT", "drop table t",
    "'a'", "é'", "E'\\''", "E'x'", "\n'", "'\\';'", "$$x$$", "/* c */", "-- c\n", "\"q\"",
];

/// xorshift64*: enough randomness to mix fragments, and reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_fragment_soup_agrees() {
    const INPUTS: usize = 20_000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut agreed = 0;
    let mut sql = String::new();
    for _ in 0..INPUTS {
        sql.clear();
        for _ in 0..1 + rng.below(12) {
            sql.push_str(FRAGMENTS[rng.below(FRAGMENTS.len())]);
        }
        if check(&sql) == Checked::Agreed {
            agreed += 1;
        }
    }
    eprintln!("{agreed} of {INPUTS} random inputs accepted by the scanner and agreed");
    // Most soups hold an unterminated quote; make sure enough are compared.
    assert!(agreed > INPUTS / 5, "only {agreed} of {INPUTS} accepted");
}
