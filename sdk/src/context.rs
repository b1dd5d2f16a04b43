//! The session and statement the current hook call is about, read on demand (each value is
//! copied into the component only when asked for). In a component (wasm32) these call the
//! kernel's `context` interface; on a native target they read the fake host in
//! [`crate::testing`] and compute tables and hints from the statement's SQL.

use crate::Statement;

/// Login user.
pub fn user() -> String {
    imp::user()
}

/// Database.
pub fn database() -> String {
    imp::database()
}

/// `application_name` (startup parameter or SET), or empty.
pub fn application_name() -> String {
    imp::application_name()
}

/// Client address, `ip:port`.
pub fn client_addr() -> String {
    imp::client_addr()
}

/// Tenant set by an Authenticate hook.
pub fn tenant() -> Option<String> {
    imp::tenant()
}

/// Attributes set by an Authenticate hook.
pub fn attributes() -> Vec<(String, String)> {
    imp::attributes()
}

/// Tables `stmt` names (FROM / JOIN / INTO / UPDATE / TABLE), lower-cased, as written. In a
/// component this is the statement of the current hook call, which is what `stmt` is.
pub fn tables(stmt: &Statement) -> Vec<String> {
    imp::tables(stmt)
}

/// Hints from `stmt`'s `/*+ key=value … */` comments, in order (see [`tables`]).
pub fn hints(stmt: &Statement) -> Vec<(String, String)> {
    imp::hints(stmt)
}

/// What PostgreSQL's parser says the statement of the current hook call does (`stmt` is
/// that statement; on a native target the fake host analyses its SQL with the same parser).
pub fn analysis(stmt: &Statement) -> crate::StatementAnalysis {
    imp::analysis(stmt)
}

/// SHA-256 (hex) of the statement with constants replaced: a collision-resistant key for
/// statements that differ only in constants.
pub fn fingerprint(stmt: &Statement) -> String {
    imp::fingerprint(stmt)
}

/// Called from `init`: lets the kernel cache these hooks' decisions per statement and per
/// session values read through `context`. Only for hooks whose decision depends on nothing
/// else (no kv, no clock, no state of their own).
pub fn declare_pure(hooks: crate::Hooks) {
    imp::declare_pure(hooks)
}

/// In PreQuery: asks the kernel to answer this statement from its result cache and to keep
/// its result for `ttl_ms` milliseconds when it has to run (the kernel refuses what is
/// unsafe to cache). A hook that calls this must not be declared pure.
pub fn cache_result(ttl_ms: u32) {
    imp::cache_result(ttl_ms)
}

/// In PostQuery: the statement's result rows, when the component's configuration asks for
/// them (`post_query_rows_bytes`); `None` otherwise.
pub fn result_rows() -> Option<crate::RowSet> {
    imp::result_rows()
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::Statement;
    use crate::bindings::helios::plugin::context;

    pub fn user() -> String {
        context::user()
    }
    pub fn database() -> String {
        context::database()
    }
    pub fn application_name() -> String {
        context::application_name()
    }
    pub fn client_addr() -> String {
        context::client_addr()
    }
    pub fn tenant() -> Option<String> {
        context::tenant()
    }
    pub fn attributes() -> Vec<(String, String)> {
        context::attributes()
    }
    pub fn tables(_stmt: &Statement) -> Vec<String> {
        context::tables()
    }
    pub fn hints(_stmt: &Statement) -> Vec<(String, String)> {
        context::hints()
    }
    pub fn result_rows() -> Option<crate::RowSet> {
        context::result_rows()
    }
    pub fn analysis(_stmt: &Statement) -> crate::StatementAnalysis {
        context::analysis()
    }
    pub fn fingerprint(_stmt: &Statement) -> String {
        context::fingerprint()
    }
    pub fn declare_pure(hooks: crate::Hooks) {
        context::declare_pure(hooks)
    }
    pub fn cache_result(ttl_ms: u32) {
        context::cache_result(ttl_ms)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use crate::Statement;
    use crate::testing::with_fake;

    pub fn user() -> String {
        with_fake(|h| h.session.user.clone())
    }
    pub fn database() -> String {
        with_fake(|h| h.session.database.clone())
    }
    pub fn application_name() -> String {
        with_fake(|h| h.session.application_name.clone())
    }
    pub fn client_addr() -> String {
        with_fake(|h| h.session.client_addr.clone())
    }
    pub fn tenant() -> Option<String> {
        with_fake(|h| h.session.tenant.clone())
    }
    pub fn attributes() -> Vec<(String, String)> {
        with_fake(|h| h.session.attributes.clone())
    }
    pub fn tables(stmt: &Statement) -> Vec<String> {
        let a = analysis(stmt);
        let mut out = a.reads;
        out.extend(
            a.writes
                .into_iter()
                .filter(|w| !out.contains(w))
                .collect::<Vec<_>>(),
        );
        out
    }
    pub fn hints(stmt: &Statement) -> Vec<(String, String)> {
        helios_sql::hints(&stmt.sql)
    }
    pub fn result_rows() -> Option<crate::RowSet> {
        with_fake(|h| h.result_rows.clone())
    }
    pub fn analysis(stmt: &Statement) -> crate::StatementAnalysis {
        let path = with_fake(|h| h.search_path.clone());
        crate::testing::analyse(&stmt.sql, &path)
    }
    pub fn fingerprint(stmt: &Statement) -> String {
        helios_analysis::fingerprint(&stmt.sql)
    }
    pub fn declare_pure(hooks: crate::Hooks) {
        with_fake(|h| h.pure = hooks)
    }
    pub fn cache_result(ttl_ms: u32) {
        with_fake(|h| h.cache_ttl_ms = Some(ttl_ms))
    }
}
