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
        helios_sql::tables(&stmt.sql)
    }
    pub fn hints(stmt: &Statement) -> Vec<(String, String)> {
        helios_sql::hints(&stmt.sql)
    }
    pub fn result_rows() -> Option<crate::RowSet> {
        with_fake(|h| h.result_rows.clone())
    }
}
