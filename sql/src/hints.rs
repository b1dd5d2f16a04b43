//! Optimizer-style hints in comments (`/*+ route=primary */`): the one thing a proxy reads
//! from comments, which PostgreSQL's parser drops.

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

    #[test]
    fn hints_are_key_value_pairs_in_order() {
        assert_eq!(
            hints("/*+ route=primary, Tag=olap */ select 1 /*+ nocache */"),
            vec![
                ("route".into(), "primary".into()),
                ("tag".into(), "olap".into()),
                ("nocache".into(), String::new())
            ]
        );
        assert!(hints("select '/*+ x */'").len() <= 1);
        assert!(hints("/*+ unterminated").is_empty());
    }
}
