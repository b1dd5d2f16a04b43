//! The hot-path key of statement text: a 64-bit hash of the text with constants replaced by
//! their kind, comments dropped, white space collapsed and ASCII folded to lower case, so
//! `… WHERE aid = 17` and `… where aid=18` share a key without a parse. It is only an index
//! in front of PostgreSQL's own fingerprint (computed once per key): where the text holds
//! something this scan does not model (backslashes, dollar quotes, prefixed strings) it hashes
//! the exact text, which can only split a fingerprint across keys, never merge two.

/// FNV-1a, 64 bit: statement texts are short, and this needs no state or allocation.
struct Fnv(u64);

impl Fnv {
    #[inline]
    fn byte(&mut self, b: u8) {
        self.0 ^= u64::from(b);
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

const SEED: u64 = 0xcbf2_9ce4_8422_2325;

#[inline]
fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The key of `sql`.
pub fn text_key(sql: &[u8]) -> u64 {
    normalized_key(sql).unwrap_or_else(|| exact_key(sql))
}

fn exact_key(sql: &[u8]) -> u64 {
    let mut h = Fnv(SEED ^ 0x5555);
    for &b in sql {
        h.byte(b);
    }
    h.0
}

fn normalized_key(sql: &[u8]) -> Option<u64> {
    let mut h = Fnv(SEED);
    let n = sql.len();
    let mut i = 0;
    let mut prev_ident = false;
    let mut pending_space = false;
    while i < n {
        let b = sql[i];
        if b.is_ascii_whitespace() {
            pending_space = true;
            prev_ident = false;
            i += 1;
            continue;
        }
        if b == b'-' && sql.get(i + 1) == Some(&b'-') {
            while i < n && sql[i] != b'\n' {
                i += 1;
            }
            pending_space = true;
            prev_ident = false;
            continue;
        }
        if b == b'/' && sql.get(i + 1) == Some(&b'*') {
            i = skip_block_comment(sql, i)?;
            pending_space = true;
            prev_ident = false;
            continue;
        }
        if pending_space {
            h.byte(b' ');
            pending_space = false;
        }
        match b {
            b'\\' => return None,
            b'$' if !prev_ident => {
                if !sql.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    return None;
                }
                // A parameter: its number does not change the statement's shape.
                h.byte(b'$');
                i += 1;
                while i < n && sql[i].is_ascii_digit() {
                    i += 1;
                }
                prev_ident = false;
                continue;
            }
            b'\'' => {
                if prev_ident {
                    // E'…', B'…', X'…', N'…': escapes and bit strings the scan does not model.
                    return None;
                }
                i = skip_string(sql, i)?;
                h.byte(b'\'');
                prev_ident = false;
                continue;
            }
            b'"' => {
                let end = sql[i + 1..].iter().position(|&c| c == b'"')? + i + 2;
                for &c in &sql[i..end] {
                    h.byte(c);
                }
                i = end;
                prev_ident = true;
                continue;
            }
            b'0'..=b'9' if !prev_ident => {
                let (end, float) = number(sql, i);
                h.byte(if float { b'%' } else { b'#' });
                i = end;
                prev_ident = false;
                continue;
            }
            _ => {
                h.byte(b.to_ascii_lowercase());
                prev_ident = is_ident(b);
            }
        }
        i += 1;
    }
    Some(h.0)
}

/// The end of a (nested) block comment starting at `i`; `None` when it never ends.
fn skip_block_comment(sql: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i + 1 < sql.len() {
        match (sql[i], sql[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// The end of a standard string starting at `i` (`''` is a quote inside it).
fn skip_string(sql: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        let q = sql[i..].iter().position(|&c| c == b'\'')? + i;
        if sql.get(q + 1) == Some(&b'\'') {
            i = q + 2;
        } else {
            return Some(q + 1);
        }
    }
}

/// The end of a number starting at `i`, and whether PostgreSQL reads it as a float (a
/// fraction, an exponent, or an integer past 32 bits).
fn number(sql: &[u8], mut i: usize) -> (usize, bool) {
    let start = i;
    let digits = |i: &mut usize| {
        while *i < sql.len() && sql[*i].is_ascii_digit() {
            *i += 1;
        }
    };
    digits(&mut i);
    let mut float = false;
    if sql.get(i) == Some(&b'.') && sql.get(i + 1) != Some(&b'.') {
        float = true;
        i += 1;
        digits(&mut i);
    }
    if matches!(sql.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(sql.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if sql.get(j).is_some_and(u8::is_ascii_digit) {
            float = true;
            i = j;
            digits(&mut i);
        }
    }
    if !float {
        let text = std::str::from_utf8(&sql[start..i]).unwrap_or("");
        float = text.parse::<i32>().is_err();
    }
    (i, float)
}

#[cfg(test)]
mod tests {
    use super::text_key as k;

    #[test]
    fn constants_case_space_and_comments_share_a_key() {
        let a = k(b"SELECT abalance FROM pgbench_accounts WHERE aid = 48213;");
        assert_eq!(
            a,
            k(b"select abalance  from pgbench_accounts\n where aid = 7;")
        );
        assert_eq!(
            a,
            k(b"select abalance /* x /* nested */ */ from pgbench_accounts -- c\nwhere aid = 1;")
        );
        assert_eq!(k(b"select 'a''b', $1"), k(b"select 'zz', $2"));
    }

    #[test]
    fn what_the_fingerprint_tells_apart_keeps_apart() {
        assert_ne!(k(b"select 1"), k(b"select 1.5"));
        assert_ne!(k(b"select 1"), k(b"select 12345678901"));
        assert_ne!(k(b"select 1"), k(b"select '1'"));
        assert_ne!(k(b"select * from t1"), k(b"select * from t2"));
        assert_ne!(k(b"select \"A\""), k(b"select \"a\""));
        assert_ne!(k(b"select a+1"), k(b"select a-1"));
        // Escapes the scan does not model fall back to the exact text.
        assert_ne!(k(br"select E'\'' , 1"), k(br"select E'\'' , 2"));
        assert_ne!(k(b"select $$a$$"), k(b"select $$b$$"));
    }

    #[test]
    fn unterminated_text_does_not_panic() {
        for t in [
            &b"select 'abc"[..],
            b"select \"abc",
            b"/* open",
            b"select 1e",
            b"1..2",
            b"'",
        ] {
            let _ = k(t);
        }
    }
}
