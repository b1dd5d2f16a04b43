//! What the journal never writes: passwords in role statements, values of secret settings
//! (by configurable name patterns) and the bound parameters of statements that match
//! configurable patterns. Applied by the writer thread before a record is encoded, so no
//! session waits for it and no secret reaches a segment file or `GET /api/journal`.

use super::Record;

/// What replaces a redacted parameter.
pub const REDACTED_PARAM: &[u8] = b"[redacted]";

/// The journal's redaction rules.
#[derive(Debug, Clone, Default)]
pub struct Redaction {
    settings: Vec<String>,
    statements: Vec<String>,
}

impl Redaction {
    /// Rules from `[journal] redact_settings` and `redact_statements` (case-insensitive
    /// substrings).
    pub fn new(settings: &[String], statements: &[String]) -> Self {
        let lower = |v: &[String]| v.iter().map(|p| p.to_lowercase()).collect();
        Redaction {
            settings: lower(settings),
            statements: lower(statements),
        }
    }

    /// Takes the secrets out of a record.
    pub fn apply(&self, rec: &mut Record) {
        let settings = &self.settings;
        if let Some(clean) =
            helios_analysis::redact(&rec.sql, |name| settings.iter().any(|p| name.contains(p)))
        {
            rec.sql = clean;
        }
        if !rec.params.is_empty() && !self.statements.is_empty() {
            let lower = rec.sql.to_lowercase();
            if self.statements.iter().any(|p| lower.contains(p)) {
                for p in rec.params.iter_mut().flatten() {
                    *p = REDACTED_PARAM.to_vec();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_passwords_secret_settings_and_matching_parameters_are_redacted() {
        let r = Redaction::new(&["secret".into()], &["crypt(".into()]);
        let mut rec = Record {
            sql: "ALTER ROLE app PASSWORD 'hunter2'".into(),
            ..Record::default()
        };
        r.apply(&mut rec);
        assert_eq!(rec.sql, "ALTER ROLE app PASSWORD '[redacted]'");
        let mut rec = Record {
            sql: "update users set pw = crypt($1, gen_salt('bf')) where id = $2".into(),
            params: vec![Some(b"hunter2".to_vec()), None],
            ..Record::default()
        };
        r.apply(&mut rec);
        assert_eq!(rec.params, vec![Some(REDACTED_PARAM.to_vec()), None]);
        let mut rec = Record {
            sql: "select * from t where id = $1".into(),
            params: vec![Some(b"7".to_vec())],
            ..Record::default()
        };
        r.apply(&mut rec);
        assert_eq!(rec.params, vec![Some(b"7".to_vec())]);
    }
}
