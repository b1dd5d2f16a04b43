//! The two session settings the statement analysis depends on: `client_encoding` and
//! `standard_conforming_strings`. A session that changes either, by statement or at
//! startup, is refused while components judge statements.

use super::{Facts, Refused};

/// Statements are analysed as PostgreSQL parses UTF-8 text with standard-conforming
/// strings. A session that changed either would make the server read text differently from
/// the analysis (`E'ぃ\'…` in GBK, `'\''` without standard strings): refused while
/// components judge statements.
pub(super) fn breaks_analysis(facts: &Facts) -> Option<Refused> {
    let a = facts.analysis()?;
    let setting = a.setting.as_deref()?;
    if !matches!(setting, "client_encoding" | "standard_conforming_strings") {
        return None;
    }
    let keeps = match (setting, a.setting_value.as_deref()) {
        ("client_encoding", Some(v)) if keeps_encoding(v) => true,
        ("standard_conforming_strings", Some(v)) if keeps_standard_strings(v) => true,
        // RESET returns to the session's startup value, which was checked at login.
        _ => {
            a.kind == "variable-set"
                && a.setting_value.is_none()
                && facts
                    .stmt
                    .sql
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("reset")
        }
    };
    (!keeps).then(|| Refused {
        code: "0A000".into(),
        message: format!(
            "changing {setting} is not allowed while components judge statements: the \
             proxy analyses statements as UTF8 text with standard_conforming_strings on"
        ),
    })
}

/// Refuses a session whose startup parameters (`client_encoding`,
/// `standard_conforming_strings`) make PostgreSQL read statement text differently from the
/// proxy's analysis (see [`breaks_analysis`]).
pub fn startup_breaks_analysis(
    client_encoding: Option<&str>,
    standard_conforming_strings: Option<&str>,
) -> Option<Refused> {
    let bad = client_encoding.is_some_and(|e| !keeps_encoding(e))
        || standard_conforming_strings.is_some_and(|s| !keeps_standard_strings(s));
    bad.then(|| Refused {
        code: "0A000".into(),
        message: "this session's client_encoding or standard_conforming_strings differs from \
                  what the proxy's statement analysis assumes (UTF8, on): reconnect with \
                  client_encoding=UTF8"
            .into(),
    })
}

/// A `client_encoding` value the analysis reads correctly.
fn keeps_encoding(value: &str) -> bool {
    let v = value.trim_matches('\'');
    ["utf8", "utf-8", "unicode"]
        .iter()
        .any(|k| v.eq_ignore_ascii_case(k))
}

/// A `standard_conforming_strings` value the analysis reads correctly.
fn keeps_standard_strings(value: &str) -> bool {
    ["on", "true", "1", "yes"]
        .iter()
        .any(|k| value.eq_ignore_ascii_case(k))
}
