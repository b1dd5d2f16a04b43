//! `llm-guardrail` (Validate): refuses statements an AI agent should never run.
//!
//! Config (all optional):
//! - `applications = ["agent", …]`: only sessions with one of these `application_name`s are
//!   checked (empty or absent: every session);
//! - `deny_destructive = true`: DROP and TRUNCATE are refused;
//! - `require_where = true`: DELETE and UPDATE without WHERE are refused;
//! - `large_tables = ["events", …]`: SELECT on these without LIMIT is refused;
//! - `tenant_tables = ["orders", …]` with `tenant_column = "tenant_id"`: statements on these
//!   tables must filter on the tenant column in their WHERE clause.
//!
//! - `cache_verdicts = true`: a verdict depends only on the statement's structure, so it is
//!   remembered per statement fingerprint (constants ignored) in each instance; a statement
//!   shape seen before costs a hash lookup instead of a re-parse.
//!
//! Every refusal is SQLSTATE 42501 with a message saying why.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use helios_sdk::*;

struct Settings {
    applications: Vec<String>,
    deny_destructive: bool,
    require_where: bool,
    large_tables: Vec<String>,
    tenant_tables: Vec<String>,
    tenant_column: String,
    cache_verdicts: bool,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Verdicts remembered per statement fingerprint; cleared when full. (A `BTreeMap`: a
/// `HashMap` would seed itself from WASI randomness, which components do not get.)
const VERDICT_CACHE_MAX: usize = 10_000;

thread_local! {
    static VERDICTS: RefCell<BTreeMap<u64, Verdict>> = const { RefCell::new(BTreeMap::new()) };
}

/// The guardrail component.
pub struct Guardrail;

impl Plugin for Guardrail {
    fn init(config: &Config) -> Result<Hooks, String> {
        let tenant_tables: Vec<String> = config
            .texts("tenant_tables")
            .iter()
            .map(|t| t.to_lowercase())
            .collect();
        let tenant_column = config
            .text("tenant_column")
            .unwrap_or("tenant_id")
            .to_lowercase();
        let _ = SETTINGS.set(Settings {
            applications: config.texts("applications"),
            deny_destructive: config.boolean("deny_destructive").unwrap_or(true),
            require_where: config.boolean("require_where").unwrap_or(true),
            large_tables: config
                .texts("large_tables")
                .iter()
                .map(|t| t.to_lowercase())
                .collect(),
            tenant_tables,
            tenant_column,
            cache_verdicts: config.boolean("cache_verdicts").unwrap_or(true),
        });
        Ok(Hooks::VALIDATE)
    }

    fn validate(_call: &Call, stmt: &Statement) -> Verdict {
        let s = SETTINGS.get().expect("init ran before any hook");
        if !s.applications.is_empty() && !s.applications.contains(&context::application_name()) {
            return Verdict::Allow;
        }
        if !s.cache_verdicts {
            return judge(s, stmt);
        }
        if let Some(v) = VERDICTS.with(|c| c.borrow().get(&stmt.fingerprint).cloned()) {
            return v;
        }
        let verdict = judge(s, stmt);
        VERDICTS.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= VERDICT_CACHE_MAX {
                c.clear();
            }
            c.insert(stmt.fingerprint, verdict.clone());
        });
        verdict
    }
}

/// The verdict on one statement, from its structure alone.
fn judge(s: &Settings, stmt: &Statement) -> Verdict {
    // One pass over the words of the statement serves every check.
    let words = sql::word_list(&stmt.sql);
    let first = words
        .first()
        .map(|w| w.to_ascii_lowercase())
        .unwrap_or_default();
    let has = |w: &str| words.iter().any(|x| x.eq_ignore_ascii_case(w));
    let guard = |why: String| deny("42501", why);
    if s.deny_destructive && (first == "drop" || first == "truncate") {
        return guard(format!(
            "{} is not allowed for this application",
            first.to_uppercase()
        ));
    }
    if s.require_where && (first == "delete" || first == "update") && !has("where") {
        return guard(format!(
            "{} without a WHERE clause is not allowed",
            first.to_uppercase()
        ));
    }
    // Ask the kernel for the tables only when a table rule is configured.
    let tables = if s.large_tables.is_empty() && s.tenant_tables.is_empty() {
        Vec::new()
    } else {
        context::tables(stmt)
    };
    if stmt.class == StatementClass::Read
        && !has("limit")
        && let Some(t) = tables.iter().find(|t| is_listed(t, &s.large_tables))
    {
        return guard(format!("SELECT on large table {t} needs a LIMIT"));
    }
    if let Some(t) = tables.iter().find(|t| is_listed(t, &s.tenant_tables)) {
        let after_where = words
            .iter()
            .skip_while(|w| !w.eq_ignore_ascii_case("where"));
        let filtered = after_where
            .skip(1)
            .any(|w| w.eq_ignore_ascii_case(&s.tenant_column));
        if !filtered && first != "insert" {
            return guard(format!(
                "statements on {t} must filter on {} in WHERE",
                s.tenant_column
            ));
        }
    }
    Verdict::Allow
}

/// Matches `public.events` against `events` and the other way round.
fn is_listed(table: &str, list: &[String]) -> bool {
    let bare = table.rsplit('.').next().unwrap_or(table);
    list.iter().any(|l| l == table || l == bare)
}

export_plugin!(Guardrail);

#[cfg(test)]
mod tests {
    use super::*;
    use helios_sdk::testing::session;

    fn setup() {
        let _ = Guardrail::init(&Config::from_pairs([
            ("applications", ConfigValue::Texts(vec!["agent".into()])),
            ("large_tables", ConfigValue::Texts(vec!["events".into()])),
            ("tenant_tables", ConfigValue::Texts(vec!["orders".into()])),
        ]));
    }

    fn check(sql: &str) -> Verdict {
        Guardrail::validate(&session("agent"), &statement(sql))
    }

    #[test]
    fn refuses_what_it_should_with_42501() {
        setup();
        for sql in [
            "DROP TABLE users",
            "truncate t",
            "delete from users",
            "UPDATE users SET admin = true",
            "select * from events",
            "select * from orders where id = 1",
        ] {
            match check(sql) {
                Verdict::Deny(r) => assert_eq!(r.sqlstate, "42501", "{sql}"),
                Verdict::Allow => panic!("{sql} was allowed"),
            }
        }
    }

    #[test]
    fn allows_safe_statements_and_other_applications() {
        setup();
        for sql in [
            "delete from users where id = 3",
            "select * from events limit 10",
            "select * from orders where tenant_id = 7 and id = 1",
            "insert into orders(tenant_id, id) values (1, 2)",
            "select 'drop table x'",
        ] {
            assert!(matches!(check(sql), Verdict::Allow), "{sql}");
        }
        assert!(matches!(
            Guardrail::validate(&session("psql"), &statement("drop table t")),
            Verdict::Allow
        ));
    }
}
