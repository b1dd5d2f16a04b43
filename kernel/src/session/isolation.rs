//! What a client leaves on a shared server connection that the next client must not see,
//! in transaction and statement mode.
//!
//! Plain `SET`s are tracked from the statement text (see [`super::state`]). Everything the
//! text cannot follow — `set_config(…)`, savepoints that undo a `SET`, dynamic SQL — and the
//! state that cannot be replayed at all — temporary tables, session advisory locks, a
//! changed role — is read from the server itself: after a transaction whose text could have
//! changed any of it ([`needs_check`]), the proxy asks the server one hidden query
//! ([`check_sql`]) before the connection may go back to the pool. What it learns either
//! replaces the session's recorded settings or pins the client to its connection until the
//! state is gone ([`Pins`]).

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use serde::ser::{Serialize, SerializeMap, Serializer};

/// Why a client keeps its server connection between transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pins(u8);

impl Pins {
    /// Temporary tables, views or sequences exist.
    pub const TEMP: Pins = Pins(1);
    /// A session-level advisory lock is held.
    pub const ADVISORY: Pins = Pins(2);
    /// `SET ROLE` or `SET SESSION AUTHORIZATION` changed who the connection runs as.
    pub const ROLE: Pins = Pins(4);
    /// A setting was changed under a name the proxy could not learn (a computed
    /// `set_config` name), so it cannot be replayed elsewhere.
    pub const SETTINGS: Pins = Pins(8);

    const ALL: [(Pins, &'static str); 4] = [
        (Pins::TEMP, "temporary_objects"),
        (Pins::ADVISORY, "advisory_locks"),
        (Pins::ROLE, "role"),
        (Pins::SETTINGS, "unknown_settings"),
    ];

    /// No reason at all.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether `other`'s reasons are all present.
    pub fn contains(self, other: Pins) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets of reasons.
    #[must_use]
    pub fn with(self, other: Pins) -> Pins {
        Pins(self.0 | other.0)
    }

    /// The reasons' names, for logs.
    pub fn names(self) -> Vec<&'static str> {
        Pins::ALL
            .iter()
            .filter(|(p, _)| self.contains(*p))
            .map(|(_, n)| *n)
            .collect()
    }
}

/// Sessions pinned right now, by reason (a session with two reasons counts under both).
#[derive(Debug, Default)]
pub struct PinCounters {
    by_reason: [AtomicI64; 4],
}

impl PinCounters {
    /// Moves a session's count from the reasons `old` to the reasons `new`.
    pub fn change(&self, old: Pins, new: Pins) {
        for (i, (p, _)) in Pins::ALL.iter().enumerate() {
            match (old.contains(*p), new.contains(*p)) {
                (false, true) => self.by_reason[i].fetch_add(1, Relaxed),
                (true, false) => self.by_reason[i].fetch_sub(1, Relaxed),
                _ => 0,
            };
        }
    }

    /// The count for one reason.
    pub fn get(&self, reason: Pins) -> i64 {
        Pins::ALL
            .iter()
            .position(|(p, _)| *p == reason)
            .map_or(0, |i| self.by_reason[i].load(Relaxed))
    }
}

impl PinCounters {
    /// Each reason's name and count.
    pub fn counts(&self) -> Vec<(&'static str, i64)> {
        Pins::ALL
            .iter()
            .enumerate()
            .map(|(i, (_, name))| (*name, self.by_reason[i].load(Relaxed)))
            .collect()
    }
}

impl Serialize for PinCounters {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(Pins::ALL.len()))?;
        for (i, (_, name)) in Pins::ALL.iter().enumerate() {
            m.serialize_entry(name, &self.by_reason[i].load(Relaxed))?;
        }
        m.end()
    }
}

/// Words whose presence anywhere in a statement (also inside strings and function bodies,
/// in any case) means the server is asked afterwards. A backslash or `U&` can spell any of
/// them in an escape, and the functions that run a query given as text (`EXECUTE`,
/// `query_to_xml`, …) can assemble them, so those count too. Whether a statement could
/// change session state the text tracking does not follow.
pub fn needs_check(sql: &str) -> bool {
    let b = sql.as_bytes();
    let at = |i: usize, word: &[u8]| {
        b.len() - i >= word.len() && b[i..i + word.len()].eq_ignore_ascii_case(word)
    };
    (0..b.len()).any(|i| match b[i].to_ascii_lowercase() {
        b't' => at(i, b"temp"),
        b'a' => at(i, b"advisory") || at(i, b"authoriz"),
        b'r' => at(i, b"role"),
        b's' => at(i, b"set_config") || at(i, b"savepoint"),
        // DateStyle is set in parts (`SET datestyle TO iso; SET datestyle TO ymd`): the
        // server's combined value is what must be replayed.
        b'd' => at(i, b"discard") || at(i, b"dblink") || at(i, b"datestyle"),
        b'e' => at(i, b"execute"),
        b'_' => at(i, b"_to_xml"),
        b'u' => at(i, b"u&"),
        _ => b[i] == b'\\',
    })
}

/// Names in `sql` that could be custom settings (`app.tenant`): `pg_settings` does not list
/// those, so each is asked for by name. Extra names cost nothing (they read as NULL).
pub fn custom_setting_names(sql: &str, out: &mut Vec<String>) {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$';
    for word in sql.split(|c: char| !is_name(c)) {
        let word = word.trim_matches('.');
        if out.len() >= MAX_CUSTOM_NAMES {
            return;
        }
        let Some((class, rest)) = word.split_once('.') else {
            continue;
        };
        let starts_well = |s: &str| s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        if starts_well(class) && starts_well(rest) {
            let name = word.to_ascii_lowercase();
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
}

/// How many custom names one check asks for at most.
const MAX_CUSTOM_NAMES: usize = 64;

/// Settings never captured: they belong to the role (pinned instead), the transaction, or
/// the connection's own protocol state.
const NOT_CAPTURED: &str = "'role','session_authorization','is_superuser','transaction_isolation',\
'transaction_read_only','transaction_deferrable','client_encoding'";

/// The hidden query: one row `('pin', reasons)` and one `(name, value)` per setting the
/// session changed. `login_user` is the role the server connection logged in as.
pub fn check_sql(login_user: &str, custom: &[String]) -> String {
    let mut sql = format!(
        "SELECT 'pin', concat_ws(',', \
           CASE WHEN pg_catalog.pg_my_temp_schema() <> 0 AND ( \
             EXISTS (SELECT 1 FROM pg_catalog.pg_class \
               WHERE relnamespace = pg_catalog.pg_my_temp_schema()) \
             OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc \
               WHERE pronamespace = pg_catalog.pg_my_temp_schema()) \
             OR EXISTS (SELECT 1 FROM pg_catalog.pg_type \
               WHERE typnamespace = pg_catalog.pg_my_temp_schema()) \
             OR EXISTS (SELECT 1 FROM pg_catalog.pg_statistic_ext \
               WHERE stxnamespace = pg_catalog.pg_my_temp_schema()) \
             OR EXISTS (SELECT 1 FROM pg_catalog.pg_operator \
               WHERE oprnamespace = pg_catalog.pg_my_temp_schema())) THEN 'temp' END, \
           CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' \
             AND pid = pg_catalog.pg_backend_pid()) THEN 'advisory' END, \
           CASE WHEN pg_catalog.current_setting('role') <> 'none' \
             OR session_user::text <> {login} THEN 'role' END, \
           CASE WHEN pg_catalog.pg_my_temp_schema() <> 0 THEN 'tempschema' END) \
         UNION ALL SELECT name, pg_catalog.current_setting(name) FROM pg_catalog.pg_settings \
           WHERE source = 'session' AND name NOT IN ({NOT_CAPTURED})",
        login = literal(login_user),
    );
    for name in custom {
        sql.push_str(" UNION ALL SELECT ");
        sql.push_str(&literal(name));
        sql.push_str(", pg_catalog.current_setting(");
        sql.push_str(&literal(name));
        sql.push_str(", true)");
    }
    sql
}

/// What the server said.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// State that keeps the client on its connection.
    pub pins: Pins,
    /// Every setting the session changed, with its value.
    pub settings: Vec<(String, String)>,
    /// The backend has a temporary schema (even an empty one): the next client would
    /// notice, so the connection is closed rather than reused.
    pub retire: bool,
}

impl Checked {
    /// Reads the rows of [`check_sql`]'s answer.
    pub fn from_rows(rows: Vec<Vec<Option<String>>>) -> Checked {
        let mut out = Checked::default();
        for row in rows {
            let mut cols = row.into_iter();
            let (Some(Some(name)), Some(value)) = (cols.next(), cols.next()) else {
                continue;
            };
            if name == "pin" {
                for reason in value.as_deref().unwrap_or("").split(',') {
                    out.pins = out.pins.with(match reason {
                        "temp" => Pins::TEMP,
                        "advisory" => Pins::ADVISORY,
                        "role" => Pins::ROLE,
                        "tempschema" => {
                            out.retire = true;
                            Pins::default()
                        }
                        _ => Pins::default(),
                    });
                }
            } else if let Some(value) = value
                && !out.settings.iter().any(|(n, _)| *n == name)
            {
                out.settings.push((name, value));
            }
        }
        out
    }
}

/// A string literal that reads the same whatever `standard_conforming_strings` is.
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_that_may_change_hidden_state_are_checked() {
        for sql in [
            "CREATE TEMP TABLE t (a int)",
            "create temporary table t as select 1",
            "create table pg_temp.t (a int)",
            "select pg_advisory_lock(1)",
            "SET ROLE app",
            "set session authorization other",
            "select set_config('app.tenant', '7', false)",
            "SAVEPOINT a",
            "DO $$ BEGIN EXECUTE 'create te' || 'mp table x()'; END $$",
            "select query_to_xml('select 1', true, true, '')",
            "select U&\"set\\005fconfig\"('a.b', '1', false)",
            "DO E'BEGIN PERFORM set\\137config(''a.b'', ''1'', false); END'",
        ] {
            assert!(needs_check(sql), "{sql}");
        }
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
            "UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = 2",
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP)",
            "BEGIN",
            "END",
        ] {
            assert!(!needs_check(sql), "{sql}");
        }
    }

    #[test]
    fn custom_names_are_found_anywhere() {
        let mut names = Vec::new();
        custom_setting_names(
            "select set_config('App.Tenant', '7', false), x.y from public.t where c = 'my.opt'",
            &mut names,
        );
        assert!(names.contains(&"app.tenant".to_owned()), "{names:?}");
        assert!(names.contains(&"my.opt".to_owned()), "{names:?}");
        assert!(!names.iter().any(|n| n.starts_with('7')));
    }

    #[test]
    fn answer_rows_become_pins_and_settings() {
        let rows = vec![
            vec![Some("pin".into()), Some("temp,role,tempschema".into())],
            vec![Some("work_mem".into()), Some("7MB".into())],
            vec![Some("app.tenant".into()), None],
            vec![Some("app.user".into()), Some("u'1".into())],
        ];
        let c = Checked::from_rows(rows);
        assert_eq!(c.pins, Pins::TEMP.with(Pins::ROLE));
        assert!(c.retire);
        assert_eq!(
            c.settings,
            vec![
                ("work_mem".to_owned(), "7MB".to_owned()),
                ("app.user".to_owned(), "u'1".to_owned())
            ]
        );
        assert_eq!(literal("a'b\\c"), "E'a''b\\\\c'");
        let counters = PinCounters::default();
        counters.change(Pins::default(), c.pins);
        counters.change(c.pins, Pins::ROLE);
        assert_eq!(counters.get(Pins::TEMP), 0);
        assert_eq!(counters.get(Pins::ROLE), 1);
    }
}
