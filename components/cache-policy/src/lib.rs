//! `cache-policy`: decides which statements the kernel's result cache answers, and for how
//! long (PreQuery, through `context::cache_result`).
//!
//! A statement is cached only when it is one plain `SELECT` outside a transaction block that
//! writes nothing, locks nothing, calls no function outside `immutable_functions` and reads
//! only tables the config allows; the kernel checks again what it can see (views and
//! non-immutable functions by the catalog). Config:
//! - `default_ttl_s` (default 60): how long a result is kept;
//! - `tables` (default: all): tables whose reads may be cached, `schema.name` as resolved
//!   against the session's `search_path`, or `schema.*`;
//! - `exclude_tables`: never cached, even when `tables` allows them;
//! - `[ttl.NAME] tables = [...], ttl_s = N`: another TTL for statements reading those tables;
//! - `fingerprints`: statement fingerprints (or prefixes of them) that are never cached;
//! - `immutable_functions`: functions callers may use in cached statements (default: common
//!   immutable built-ins such as `lower`, `upper`, `abs`, `coalesce`, `length`, `count`).

use std::sync::OnceLock;

use helios_sdk::*;

/// Built-ins that are immutable and common in cacheable reads; aggregates are immutable too.
const DEFAULT_IMMUTABLE: &[&str] = &[
    "lower",
    "upper",
    "abs",
    "coalesce",
    "nullif",
    "length",
    "char_length",
    "substr",
    "substring",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "round",
    "floor",
    "ceil",
    "concat",
    "concat_ws",
    "greatest",
    "least",
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "array_agg",
    "string_agg",
    "jsonb_build_object",
    "json_build_object",
    "date_trunc",
    "extract",
    "date_part",
    "md5",
    "replace",
    "split_part",
    "left",
    "right",
];

struct TtlRule {
    tables: Vec<String>,
    ttl_ms: u32,
}

struct Settings {
    default_ttl_ms: u32,
    tables: Vec<String>,
    exclude: Vec<String>,
    rules: Vec<TtlRule>,
    fingerprints: Vec<String>,
    immutable: Vec<String>,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

fn ttl_ms(config: &Config, key: &str, default: u32) -> Result<u32, String> {
    match config.integer(key) {
        None => Ok(default),
        Some(s) if (1..=86_400 * 30).contains(&s) => Ok(s as u32 * 1000),
        Some(s) => Err(format!(
            "{key} = {s}: must be between 1 and 2592000 seconds"
        )),
    }
}

fn matches(pattern: &str, table: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(schema) => table.split_once('.').is_some_and(|(s, _)| s == schema),
        None => pattern == table,
    }
}

/// The cache policy component.
pub struct CachePolicy;

impl Plugin for CachePolicy {
    fn init(config: &Config) -> Result<Hooks, String> {
        let default_ttl_ms = ttl_ms(config, "default_ttl_s", 60_000)?;
        let mut rules = Vec::new();
        for name in config.children("ttl") {
            rules.push(TtlRule {
                tables: config.texts(&format!("ttl.{name}.tables")),
                ttl_ms: ttl_ms(config, &format!("ttl.{name}.ttl_s"), default_ttl_ms)?,
            });
        }
        let mut immutable = config.texts("immutable_functions");
        if immutable.is_empty() {
            immutable = DEFAULT_IMMUTABLE.iter().map(|s| (*s).to_owned()).collect();
        }
        let _ = SETTINGS.set(Settings {
            default_ttl_ms,
            tables: config.texts("tables"),
            exclude: config.texts("exclude_tables"),
            rules,
            fingerprints: config.texts("fingerprints"),
            immutable,
        });
        Ok(Hooks::PRE_QUERY)
    }

    fn pre_query(call: &Call, stmt: &Statement) -> PreQueryAction {
        if let Some(ttl) = decide(call, stmt) {
            context::cache_result(ttl);
        }
        PreQueryAction::Proceed
    }
}

/// The TTL to cache `stmt` with, or `None` when it must not be cached.
fn decide(call: &Call, stmt: &Statement) -> Option<u32> {
    let s = SETTINGS.get()?;
    if call.in_transaction || stmt.class != StatementClass::Read {
        return None;
    }
    let a = context::analysis(stmt);
    let plain_select = a.kind == "select"
        && a.parse_error.is_none()
        && a.writes.is_empty()
        && a.modifications.is_empty()
        && a.locking.is_empty()
        && a.opaque.is_empty()
        && a.executes.is_none()
        && !a.reads.is_empty();
    if !plain_select {
        return None;
    }
    let immutable = |f: &String| {
        let bare = f.rsplit('.').next().unwrap_or(f);
        s.immutable.iter().any(|i| i == f || i == bare)
    };
    if !a.functions.iter().all(immutable) {
        return None;
    }
    let allowed = |t: &String| {
        (s.tables.is_empty() || s.tables.iter().any(|p| matches(p, t)))
            && !s.exclude.iter().any(|p| matches(p, t))
    };
    if !a.reads.iter().all(allowed) {
        return None;
    }
    if !s.fingerprints.is_empty() {
        let fp = context::fingerprint(stmt);
        if s.fingerprints.iter().any(|p| fp.starts_with(p.as_str())) {
            return None;
        }
    }
    // The shortest TTL of any rule covering a table read.
    let ttl = s
        .rules
        .iter()
        .filter(|r| {
            a.reads
                .iter()
                .any(|t| r.tables.iter().any(|p| matches(p, t)))
        })
        .map(|r| r.ttl_ms)
        .min()
        .unwrap_or(s.default_ttl_ms);
    Some(ttl)
}

export_plugin!(CachePolicy);

#[cfg(test)]
mod tests {
    use super::*;
    use helios_sdk::testing::{FakeHost, reset, with_fake};

    fn setup() {
        let config = Config::from_pairs([
            ("default_ttl_s", ConfigValue::Integer(30)),
            (
                "exclude_tables",
                ConfigValue::Texts(vec!["public.secrets".into()]),
            ),
            (
                "ttl.hot.tables",
                ConfigValue::Texts(vec!["public.prices".into()]),
            ),
            ("ttl.hot.ttl_s", ConfigValue::Integer(2)),
        ]);
        let _ = CachePolicy::init(&config);
    }

    fn ask(sql: &str, in_transaction: bool) -> Option<u32> {
        setup();
        reset(FakeHost {
            search_path: vec!["public".into()],
            ..FakeHost::default()
        });
        let stmt = helios_sdk::testing::statement(sql);
        let call = Call {
            session_id: 1,
            in_transaction,
        };
        let _ = CachePolicy::pre_query(&call, &stmt);
        with_fake(|h| h.cache_ttl_ms)
    }

    #[test]
    fn plain_reads_are_cached_with_their_ttl() {
        assert_eq!(ask("select * from users where id = 1", false), Some(30_000));
        assert_eq!(ask("select count(*) from prices", false), Some(2_000));
        assert_eq!(
            ask(
                "select lower(name) from users join prices using (id)",
                false
            ),
            Some(2_000)
        );
    }

    #[test]
    fn what_could_change_or_write_is_not() {
        for sql in [
            "select now(), * from users",
            "select * from users where t > current_timestamp",
            "select random() from users",
            "select nextval('s') from users",
            "select * from users for update",
            "with d as (delete from users returning *) select * from d",
            "update users set x = 1",
            "select * from secrets",
            "select 1",
        ] {
            assert_eq!(ask(sql, false), None, "{sql}");
        }
        assert_eq!(ask("select * from users", true), None, "in a transaction");
    }
}
