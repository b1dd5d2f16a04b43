//! Base64url without padding (RFC 4648 §5), as JWTs and JWKs spell binary values.

/// Decodes `text`; `None` for any character outside the URL-safe alphabet or a length no
/// encoding produces.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_the_rfc_vectors_and_refuses_other_alphabets() {
        assert_eq!(super::decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(super::decode("Zm9vYg").unwrap(), b"foob");
        assert_eq!(super::decode("_-8").unwrap(), [0xff, 0xef]);
        assert!(super::decode("Zm9v+g").is_none());
        assert!(super::decode("Z").is_none());
    }
}
