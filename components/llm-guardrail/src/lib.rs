//! `llm-guardrail` (Validate): refuses statements an AI agent should never run, judged on what
//! PostgreSQL's parser says each statement does (`context::analysis`), wherever the danger
//! hides: data-modifying CTEs, `EXPLAIN ANALYZE`, MERGE actions, PREPARE bodies, COPY queries.
//! Each statement of a multi-statement message is judged on its own by the kernel.
//!
//! Config (all optional):
//! - `applications = ["agent", …]` and/or `roles = ["agent_role", …]`: only sessions with one
//!   of these `application_name`s (from the startup packet) or login roles (or a `role`
//!   attribute from an Authenticate hook) are checked; both absent: every session;
//! - `deny_destructive = true`: every DROP (tables, roles, databases, `DROP OWNED`), TRUNCATE,
//!   `ALTER … DROP`, `ALTER COLUMN … TYPE`, RENAME (of tables, columns and anything else) and
//!   `ALTER … SET SCHEMA` are refused: to an application a renamed or moved table is a
//!   dropped one;
//! - `require_where = true`: DELETE and UPDATE with no WHERE, or one that keeps every row
//!   (`1=1`, `id = id`, `… OR true`), are refused;
//! - `allow_opaque = false`: code the proxy cannot see into (`DO`, `CREATE FUNCTION/PROCEDURE`,
//!   `CALL`, triggers, rules) is refused unless true;
//! - `denied_functions = [...]`: functions never allowed (default: server file and process
//!   functions, `dblink`);
//! - `large_tables = ["events", …]`: a query returning rows from these needs a numeric LIMIT,
//!   unless it returns one row (aggregates without GROUP BY: `SELECT count(*) FROM events`;
//!   full-scan cost is the cost governor's business); an aggregate that packs every value into
//!   that row (`array_agg`, `json_agg`, `string_agg`, …) in a statement reading such a table
//!   is refused whatever its LIMIT;
//! - `tenant_tables = ["orders", …]` with `tenant_column = "tenant_id"`: every query level,
//!   UPDATE and DELETE on these needs a top-level `tenant_id = constant or $n` conjunct.
//!
//! Always refused for checked sessions: COPY to or from server files and programs, role,
//! database and server administration (`ALTER SYSTEM`, `ALTER ROLE … SET`, `LOAD`, …), `SET ROLE`,
//! `SET SESSION AUTHORIZATION` (also through `set_config`, or `set_config` with a computed
//! name), and text PostgreSQL's grammar rejects (it cannot be judged).
//! Every refusal is SQLSTATE 42501 naming the rule and the statement part that broke it. The
//! verdict depends only on the statement and the session values read, so Validate is
//! declared pure and the kernel caches it.

use std::sync::OnceLock;

use helios_sdk::*;

struct Settings {
    applications: Vec<String>,
    roles: Vec<String>,
    deny_destructive: bool,
    require_where: bool,
    allow_opaque: bool,
    denied_functions: Vec<String>,
    large_tables: Vec<String>,
    tenant_tables: Vec<String>,
    tenant_column: String,
}

const DEFAULT_DENIED_FUNCTIONS: &[&str] = &[
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "lo_import",
    "lo_export",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_promote",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "pg_ls_waldir",
    "pg_ls_logdir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "table_to_xml",
    "query_to_xml",
    "cursor_to_xml",
    "schema_to_xml",
    "database_to_xml",
    "table_to_xml_and_xmlschema",
    "query_to_xml_and_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml_and_xmlschema",
];

/// Statement kinds that administer roles, databases or the server: never for an agent.
const ADMINISTRATION: &[&str] = &[
    "create-role",
    "alter-role",
    "alter-role-set",
    "grant-role",
    "alter-database",
    "alter-database-set",
    "alter-system",
    "load",
    "alter-default-privileges",
    "reassign-owned",
    "create-event-trig",
    "alter-event-trig",
    "create-extension",
];

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// The guardrail component.
pub struct Guardrail;

fn lower(list: Vec<String>) -> Vec<String> {
    list.into_iter().map(|t| t.to_lowercase()).collect()
}

impl Plugin for Guardrail {
    fn init(config: &Config) -> Result<Hooks, String> {
        let denied = if config.texts("denied_functions").is_empty() {
            DEFAULT_DENIED_FUNCTIONS
                .iter()
                .map(|f| (*f).to_owned())
                .collect()
        } else {
            lower(config.texts("denied_functions"))
        };
        let _ = SETTINGS.set(Settings {
            applications: config.texts("applications"),
            roles: config.texts("roles"),
            deny_destructive: config.boolean("deny_destructive").unwrap_or(true),
            require_where: config.boolean("require_where").unwrap_or(true),
            allow_opaque: config.boolean("allow_opaque").unwrap_or(false),
            denied_functions: denied,
            large_tables: lower(config.texts("large_tables")),
            tenant_tables: lower(config.texts("tenant_tables")),
            tenant_column: config
                .text("tenant_column")
                .unwrap_or("tenant_id")
                .to_lowercase(),
        });
        context::declare_pure(Hooks::VALIDATE);
        Ok(Hooks::VALIDATE)
    }

    fn validate(_call: &Call, stmt: &Statement) -> Verdict {
        let s = SETTINGS.get().expect("init ran before any hook");
        if !applies(s) {
            return Verdict::Allow;
        }
        match judge(s, &context::analysis(stmt)) {
            Ok(()) => Verdict::Allow,
            // The reason names the rule, the statement kind and the table; never the SQL text:
            // the kernel shares this verdict with texts of the same shape, and one session's
            // constants must not appear in another's error.
            Err(why) => deny("42501", why),
        }
    }
}

/// Whether this session is one the guardrail checks.
fn applies(s: &Settings) -> bool {
    if s.applications.is_empty() && s.roles.is_empty() {
        return true;
    }
    if !s.applications.is_empty() && s.applications.contains(&context::application_name()) {
        return true;
    }
    if s.roles.is_empty() {
        return false;
    }
    let user = context::user();
    s.roles.contains(&user)
        || context::attributes().iter().any(|(k, v)| {
            (k == "role" || k == "roles")
                && v.split(',').any(|r| s.roles.iter().any(|x| x == r.trim()))
        })
}

fn where_it_hides(via: Via) -> &'static str {
    match via {
        Via::TopLevel => "",
        Via::Cte => " in a data-modifying CTE",
        Via::ExplainAnalyze => " run by EXPLAIN ANALYZE",
        Via::Merge => " as a MERGE action",
        Via::Prepare => " in a PREPARE body",
        Via::Copy => " in a COPY query",
        Via::Execute => " run by EXECUTE",
    }
}

/// Matches `public.events` against `events` and the other way round.
fn is_listed(table: &str, list: &[String]) -> bool {
    let bare = table.rsplit('.').next().unwrap_or(table);
    list.iter().any(|l| l == table || l == bare)
}

/// The rule a statement breaks, if any.
fn judge(s: &Settings, a: &StatementAnalysis) -> Result<(), String> {
    if let Some(e) = &a.parse_error {
        return Err(format!("statement cannot be analysed: {e}"));
    }
    let kind = a.kind.as_str();
    if s.deny_destructive {
        if kind.starts_with("drop") {
            let what = if a.drops.is_empty() {
                kind.to_owned()
            } else {
                a.drops.join(", ")
            };
            return Err(format!("DROP is not allowed ({what})"));
        }
        if let Some(d) = a.drops.first() {
            return Err(format!("ALTER … DROP is not allowed ({d})"));
        }
        if matches!(kind, "rename" | "alter-object-schema") {
            return Err(format!(
                "{} is not allowed: to an application a renamed or moved object is a dropped one",
                if kind == "rename" {
                    "RENAME"
                } else {
                    "ALTER … SET SCHEMA"
                }
            ));
        }
        if let Some(m) = a
            .modifications
            .iter()
            .find(|m| m.kind == ModificationKind::Truncate)
        {
            return Err(format!("TRUNCATE of {} is not allowed", m.table));
        }
    }
    if let Some(target) = &a.server_copy {
        return Err(format!(
            "COPY to or from the database server ({target}) is not allowed"
        ));
    }
    if kind == "alter-system" {
        return Err("ALTER SYSTEM is not allowed".into());
    }
    if ADMINISTRATION.contains(&kind) {
        return Err(format!(
            "{kind} is not allowed: role, database and server administration"
        ));
    }
    if let Some(setting) = &a.setting
        && matches!(
            setting.as_str(),
            "role" | "session_authorization" | "(not a constant)"
        )
    {
        return Err(format!("changing {setting} is not allowed"));
    }
    if !s.allow_opaque
        && let Some(o) = a.opaque.first()
    {
        let name = o
            .name
            .as_deref()
            .map(|n| format!(" {n}"))
            .unwrap_or_default();
        return Err(format!(
            "opaque code ({}{name}) is not allowed: the proxy cannot see what it does",
            o.kind
        ));
    }
    if let Some(f) = a.functions.iter().find(|f| {
        let bare = f.rsplit('.').next().unwrap_or(f);
        s.denied_functions.iter().any(|d| d == bare || d == *f)
    }) {
        return Err(format!("function {f} is not allowed"));
    }
    for m in &a.modifications {
        let changes_rows = matches!(m.kind, ModificationKind::Delete | ModificationKind::Update);
        if s.require_where && changes_rows && (!m.filter.present || m.filter.constant) {
            let verb = if m.kind == ModificationKind::Delete {
                "DELETE"
            } else {
                "UPDATE"
            };
            let why = if m.filter.present {
                "with a WHERE clause that keeps every row"
            } else {
                "without a WHERE clause"
            };
            return Err(format!(
                "{verb} on {} {why}{} is not allowed",
                m.table,
                where_it_hides(m.via)
            ));
        }
        if changes_rows && is_listed(&m.table, &s.tenant_tables) && !filters_tenant(s, &m.filter) {
            return Err(format!(
                "changes to {} must filter on {} = a value{}",
                m.table,
                s.tenant_column,
                where_it_hides(m.via)
            ));
        }
    }
    for b in &a.blocks {
        if let Some(t) = b.tables.iter().find(|t| is_listed(t, &s.tenant_tables))
            && !filters_tenant(s, &b.filter)
        {
            return Err(format!(
                "queries on {t} must have a top-level WHERE {} = a value",
                s.tenant_column
            ));
        }
    }
    // Whatever can hand rows of a large table to the client, now or through a copy.
    if matches!(
        kind,
        "select" | "copy" | "declare-cursor" | "explain" | "create-table-as" | "view"
    ) {
        let packs = a.functions.iter().find(|f| {
            let bare = f.rsplit('.').next().unwrap_or(f);
            PACKING_AGGREGATES.contains(&bare)
        });
        for b in &a.blocks {
            let Some(t) = b.tables.iter().find(|t| is_listed(t, &s.large_tables)) else {
                continue;
            };
            if let Some(f) = packs {
                return Err(format!(
                    "{f} over large table {t} is not allowed: it returns every value in one row"
                ));
            }
            if !matches!(b.limit, RowLimit::Count(_)) {
                return Err(format!("SELECT on large table {t} needs a numeric LIMIT"));
            }
        }
    }
    Ok(())
}

/// Aggregates that return every input value in their one row.
const PACKING_AGGREGATES: &[&str] = &[
    "array_agg",
    "json_agg",
    "jsonb_agg",
    "string_agg",
    "xmlagg",
    "json_object_agg",
    "jsonb_object_agg",
    "range_agg",
];

fn filters_tenant(s: &Settings, w: &WhereFacts) -> bool {
    w.present && !w.constant && w.equalities.iter().any(|e| e.column == s.tenant_column)
}

export_plugin!(Guardrail);

#[cfg(test)]
mod tests;
