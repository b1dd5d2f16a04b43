//! The byte-level SQL lexer behind statement splitting: which bytes are inside string
//! literals, quoted identifiers, comments and dollar quotes, following PostgreSQL's own
//! scanner (`src/backend/parser/scan.l`) with `standard_conforming_strings = on`.
//!
//! Everything here works on bytes but only ever cuts the text next to an ASCII byte (`;`, a
//! closing quote, a newline …) or at its ends, so the `&str` slices it hands out always fall
//! on character boundaries, whatever the input (unterminated quotes ending in a multibyte
//! character included). Unterminated
//! quotes and comments run to the end of the text; the server reports the syntax error.

const SPACE: u8 = 1;
const IDENT_START: u8 = 2;
const DIGIT: u8 = 4;
const DOLLAR: u8 = 8;

/// Byte classes from scan.l, as a table: these tests run for every byte of every statement.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            SPACE
        } else if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 {
            IDENT_START
        } else if b.is_ascii_digit() {
            DIGIT
        } else if b == b'$' {
            DOLLAR
        } else {
            0
        };
        c += 1;
    }
    t
};

/// `space` in scan.l: note `\v`, and no Unicode white space.
#[inline]
fn is_space(c: u8) -> bool {
    CLASS[c as usize] == SPACE
}

/// `newline` in scan.l: a `--` comment ends at either byte.
#[inline]
fn is_newline(c: u8) -> bool {
    c == b'\n' || c == b'\r'
}

/// `ident_start` (and `dolq_start`) in scan.l: every byte of a multibyte character counts.
#[inline]
pub(crate) fn is_ident_start(c: u8) -> bool {
    CLASS[c as usize] == IDENT_START
}

/// `ident_cont` in scan.l: `$` belongs to identifiers, so `foo$bar$` opens no dollar quote.
#[inline]
pub(crate) fn is_ident_cont(c: u8) -> bool {
    CLASS[c as usize] & (IDENT_START | DIGIT | DOLLAR) != 0
}

/// `dolq_cont` in scan.l: like `ident_cont` but without `$`, which ends the tag.
#[inline]
fn is_dolq_cont(c: u8) -> bool {
    CLASS[c as usize] & (IDENT_START | DIGIT) != 0
}

/// Splits SQL text into statements at top-level `;`, dropping those that hold nothing but
/// white space and comments. Unterminated quotes or comments end the last statement (the
/// server will report the syntax error).
pub fn split_statements(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b';' {
            push_nonempty(&mut out, &sql[start..i]);
            i += 1;
            start = i;
        } else {
            i = skip_token(b, i);
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

/// The end of the token, comment or white-space byte starting at `b[i]` (always past `i`).
/// Only the lexemes that can hide a `;`, a quote, a comment start or a `$` need exact
/// bounds; every other byte may be stepped over one at a time.
#[inline]
fn skip_token(b: &[u8], i: usize) -> usize {
    let c = b[i];
    match CLASS[c as usize] {
        IDENT_START => skip_word(b, i),
        // A number: in text the server accepts it is never directly followed by an identifier
        // (scan.l's `*_junk` rules reject `1e'x'` or `1_$$`), but it may be by `$$`, so `$`
        // is not consumed.
        DIGIT => run_end(b, i + 1, IDENT_START | DIGIT),
        _ => match c {
            b'\'' | b'"' => skip_quoted(b, i),
            b'-' if b.get(i + 1) == Some(&b'-') => line_comment_end(b, i),
            b'/' if b.get(i + 1) == Some(&b'*') => skip_block_comment(b, i),
            // A parameter is `$` and digits (no `_`), and what follows starts a new token:
            // the identifier `a$$` in `$1a$$` (the server rejects that "junk", libpg_query
            // does not).
            b'$' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => run_end(b, i + 2, DIGIT),
            b'$' => skip_dollar(b, i),
            _ => i + 1,
        },
    }
}

/// The end of the run of bytes in any of `classes` starting at `b[i]`.
#[inline]
fn run_end(b: &[u8], mut i: usize, classes: u8) -> usize {
    // A plain loop: measurably faster than `position` on the short runs SQL is made of.
    while i < b.len() && CLASS[b[i] as usize] & classes != 0 {
        i += 1;
    }
    i
}

/// An identifier or keyword starting at `b[i]`, or a prefixed string literal: flex takes the
/// longest match, so `E'`, `B'`, `X'`, `N'`, `U&'` and `U&"` win over the one-letter
/// identifier — but only at the start of a word (`abe'x'` is `abe` then `'x'`).
#[inline]
fn skip_word(b: &[u8], i: usize) -> usize {
    let end = run_end(b, i + 1, IDENT_START | DIGIT | DOLLAR);
    if end == i + 1 && end < b.len() {
        // `| 0x20` folds ASCII letters to lower case; no other ident_start byte maps onto these.
        match (b[i] | 0x20, b[end]) {
            (b'e', b'\'') => return skip_escape_string(b, end),
            // B/X strings do not double quotes but end where a doubled quote would start a new
            // literal, so the same bounds follow; N'…' is NCHAR then a plain literal.
            (b'b' | b'x' | b'n', b'\'') => return skip_quoted(b, end),
            (b'u', b'&') if matches!(b.get(end + 1), Some(b'\'' | b'"')) => {
                return skip_quoted(b, end + 1);
            }
            _ => {}
        }
    }
    end
}

/// The end of a `--` comment starting at `b[start]`: the newline (`\n` or `\r`) ending it,
/// or the end of the text.
#[inline]
fn line_comment_end(b: &[u8], start: usize) -> usize {
    b[start..]
        .iter()
        .position(|&c| is_newline(c))
        .map_or(b.len(), |p| start + p)
}

/// The end of the `'…'` or `"…"` at `b[start]` (the quote), with doubled quotes as the only
/// escape, or `None` when it is unterminated.
pub(crate) fn quoted_end(b: &[u8], start: usize) -> Option<usize> {
    let q = b[start];
    let mut i = start + 1;
    while let Some(p) = b[i..].iter().position(|&c| c == q) {
        i += p;
        if b.get(i + 1) != Some(&q) {
            return Some(i + 1);
        }
        i += 2;
    }
    None
}

/// The end of the `'…'` or `"…"` starting at `b[start]` (the quote), or of the text when it
/// is unterminated. Plain literals have no backslash escapes (standard_conforming_strings).
pub(crate) fn skip_quoted(b: &[u8], start: usize) -> usize {
    quoted_end(b, start).unwrap_or(b.len())
}

/// The end of the body of an `E'…'` literal starting at `b[start]` (the quote): a backslash
/// escapes the next byte, and a literal continued on a later line (`E'a'` newline `'\''`)
/// stays an escape string.
fn skip_escape_string(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while let Some(p) = b[i.min(b.len())..]
        .iter()
        .position(|&c| c == b'\\' || c == b'\'')
    {
        i += p;
        if b[i] == b'\\' || b.get(i + 1) == Some(&b'\'') {
            i += 2;
            continue;
        }
        match continuation(b, i + 1) {
            Some(quote) => i = quote + 1,
            None => return i + 1,
        }
    }
    b.len()
}

/// After a literal's closing quote (`b[i]` onward), the position of the quote that continues
/// it, if any (scan.l's `quotecontinue`): white space that includes a newline, where a `--`
/// comment may end the first line and any later comment must be followed by a newline.
fn continuation(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        match *b.get(i)? {
            b'\n' | b'\r' => break,
            b'-' if b.get(i + 1) == Some(&b'-') => i = line_comment_end(b, i),
            c if is_space(c) => i += 1,
            _ => return None,
        }
    }
    loop {
        match *b.get(i)? {
            b'\'' => return Some(i),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = line_comment_end(b, i);
                if !is_newline(*b.get(i)?) {
                    return None;
                }
            }
            c if is_space(c) => i += 1,
            _ => return None,
        }
    }
}

/// The end of the (possibly nested) `/* … */` comment starting at `b[start]`, or of the text
/// when it is unterminated.
pub(crate) fn skip_block_comment(b: &[u8], start: usize) -> usize {
    let mut depth = 0u32;
    let mut i = start;
    while i + 1 < b.len() {
        if b[i] == b'/' && b[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b[i + 1] == b'/' {
            depth = depth.saturating_sub(1);
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

/// The end of the dollar-quoted string starting at `b[start]` (a `$`), or of the text when it
/// is unterminated; `start + 1` when no dollar quote starts here (`$1` is a parameter, `$x`
/// a lone `$`). Callers must not call this for a `$` inside an identifier (`foo$bar$`).
pub(crate) fn skip_dollar(b: &[u8], start: usize) -> usize {
    // A tag is `$$` or `$` dolq_start dolq_cont* `$`; a digit never starts one.
    let mut j = start + 1;
    if b.get(j).is_some_and(|&c| is_ident_start(c)) {
        j += 1;
        while j < b.len() && is_dolq_cont(b[j]) {
            j += 1;
        }
    }
    if b.get(j) != Some(&b'$') {
        return start + 1;
    }
    let tag = &b[start..=j];
    // The body ends at the first occurrence of the tag: inside the quote scan.l tries a tag
    // at every `$`, so a plain substring search finds the same one.
    let mut i = j + 1;
    while let Some(p) = b[i..].iter().position(|&c| c == b'$') {
        i += p;
        if b[i..].starts_with(tag) {
            return i + tag.len();
        }
        i += 1;
    }
    b.len()
}

/// Skips leading white space (ASCII, as PostgreSQL sees it) and comments: the result starts
/// at the first token, or is empty.
pub fn skip_space_and_comments(sql: &str) -> &str {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        i = match b[i] {
            c if is_space(c) => i + 1,
            b'-' if b.get(i + 1) == Some(&b'-') => line_comment_end(b, i),
            b'/' if b.get(i + 1) == Some(&b'*') => skip_block_comment(b, i),
            _ => break,
        };
    }
    &sql[i..]
}

/// Bytes of a "word" for [`leading_words`]: identifier bytes, plus `.` for qualified names and
/// `"` so quoted names stay one word.
#[inline]
fn is_word_byte(c: u8) -> bool {
    is_ident_cont(c) || c == b'.' || c == b'"'
}

/// The leading words of a statement (keywords, names), ASCII-lower-cased and stripped of
/// double quotes, at most `n`.
pub fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let mut words = Vec::with_capacity(n);
    let mut s = skip_space_and_comments(sql);
    while words.len() < n {
        // Non-ASCII bytes are all word bytes, so the run never ends inside a character.
        let end = s.bytes().position(|c| !is_word_byte(c)).unwrap_or(s.len());
        if end == 0 {
            break;
        }
        words.push(s[..end].trim_matches('"').to_ascii_lowercase());
        s = skip_space_and_comments(&s[end..]);
    }
    words
}

/// Whether the statement starts with `keyword` (ASCII case-insensitive) as a whole word,
/// cheaply.
#[inline]
pub fn starts_with_keyword(sql: &str, keyword: &str) -> bool {
    let s = skip_space_and_comments(sql).as_bytes();
    s.len() >= keyword.len()
        && s[..keyword.len()].eq_ignore_ascii_case(keyword.as_bytes())
        && s.get(keyword.len()).is_none_or(|&c| !is_ident_cont(c))
}

#[cfg(test)]
mod tests;
