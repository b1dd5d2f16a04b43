//! The crate HeliosProxy component authors depend on.
//!
//! Implement [`Plugin`] (every hook has a default that does nothing), register with
//! [`export_plugin!`], build with `cargo build --release --target wasm32-wasip2`. A hook gets
//! the [`Call`] (session id, whether a transaction is open) and the [`Statement`] (SQL, class,
//! fingerprint); the rest of the session and the statement's tables and hints are read on
//! demand from [`context`]. Host capabilities are in [`host`]; on a native target both talk to
//! a fake host you control from [`testing`], so a component's logic is unit-tested with plain
//! `cargo test`.
//!
//! ```ignore
//! use helios_sdk::*;
//!
//! struct OnlyReads;
//!
//! impl Plugin for OnlyReads {
//!     fn init(_config: &Config) -> Result<Hooks, String> {
//!         Ok(Hooks::VALIDATE)
//!     }
//!     fn validate(_call: &Call, stmt: &Statement) -> Verdict {
//!         if stmt.class == StatementClass::Read {
//!             Verdict::Allow
//!         } else {
//!             deny("42501", "this proxy is read-only")
//!         }
//!     }
//! }
//!
//! export_plugin!(OnlyReads);
//! ```

pub mod config;
pub mod context;
pub mod host;
pub mod testing;

/// Guest bindings generated from `wit/plugin.wit`.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_helios_world",
        default_bindings_module: "helios_sdk::bindings",
        additional_derives: [PartialEq],
    });
}

pub use bindings::helios::plugin::context::{
    Equality, Modification, ModificationKind, OpaqueCode, QueryBlock, RowLimit, RowSet,
    StatementAnalysis, Via, WhereFacts,
};
pub use bindings::helios::plugin::types::{
    AuthDecision, AuthRequest, Call, ConfigValue, Hooks, Identity, Outcome, PreQueryAction,
    Refusal, ResultSet, RouteTarget, Statement, StatementClass, Verdict,
};
pub use config::Config;
/// SQL lexing helpers shared with the kernel (statement splitting, hints, quoting). Judge
/// statements by [`context::analysis`], never by lexing their text.
pub use helios_sql as sql;

/// A policy component. Implement the hooks you need and declare them from [`Plugin::init`];
/// the kernel never calls the others.
pub trait Plugin {
    /// Reads the component's config and declares the hooks it implements. Runs once per
    /// instance before any hook.
    fn init(config: &Config) -> Result<Hooks, String>;

    /// Once per session, after the kernel checked the password.
    fn authenticate(_request: &AuthRequest) -> AuthDecision {
        AuthDecision::Allow(Identity {
            backend_role: None,
            tenant: None,
            attributes: Vec::new(),
        })
    }

    /// Before a statement runs: proceed, rewrite, block or respond.
    fn pre_query(_call: &Call, _stmt: &Statement) -> PreQueryAction {
        PreQueryAction::Proceed
    }

    /// On the final SQL.
    fn validate(_call: &Call, _stmt: &Statement) -> Verdict {
        Verdict::Allow
    }

    /// Chooses the node when a statement starts a new server checkout.
    fn route(_call: &Call, _stmt: &Statement) -> RouteTarget {
        RouteTarget::Default
    }

    /// After a statement completed or failed.
    fn post_query(_call: &Call, _stmt: &Statement, _outcome: &Outcome) {}
}

/// A refusal with a SQLSTATE and message, for `Verdict::Deny`.
pub fn deny(sqlstate: &str, message: impl Into<String>) -> Verdict {
    Verdict::Deny(refusal(sqlstate, message))
}

/// A refusal value.
pub fn refusal(sqlstate: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        sqlstate: sqlstate.to_owned(),
        message: message.into(),
    }
}

/// The value of a hint, e.g. `hint(stmt, "route")` for `/*+ route=primary */` (asks the host
/// only when the SQL has a hint comment at all).
pub fn hint(stmt: &Statement, key: &str) -> Option<String> {
    if !stmt.sql.contains("/*+") {
        return None;
    }
    context::hints(stmt)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// Builds the [`Statement`] the kernel would pass for `sql` (native targets: tests and the
/// fake host; the class comes from PostgreSQL's parser like in the kernel).
#[cfg(not(target_arch = "wasm32"))]
pub fn statement(text: &str) -> Statement {
    testing::statement(text)
}

/// Registers a [`Plugin`] implementation as the component's exports.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __HeliosExports;

        impl $crate::bindings::Guest for __HeliosExports {
            fn init(
                config: ::std::vec::Vec<(::std::string::String, $crate::ConfigValue)>,
            ) -> ::std::result::Result<
                $crate::bindings::helios::plugin::types::Registration,
                ::std::string::String,
            > {
                let config = $crate::Config::new(config);
                <$plugin as $crate::Plugin>::init(&config)
                    .map(|hooks| $crate::bindings::helios::plugin::types::Registration { hooks })
            }
            fn authenticate(request: $crate::AuthRequest) -> $crate::AuthDecision {
                <$plugin as $crate::Plugin>::authenticate(&request)
            }
            fn pre_query(call: $crate::Call, stmt: $crate::Statement) -> $crate::PreQueryAction {
                <$plugin as $crate::Plugin>::pre_query(&call, &stmt)
            }
            fn validate(call: $crate::Call, stmt: $crate::Statement) -> $crate::Verdict {
                <$plugin as $crate::Plugin>::validate(&call, &stmt)
            }
            fn route(call: $crate::Call, stmt: $crate::Statement) -> $crate::RouteTarget {
                <$plugin as $crate::Plugin>::route(&call, &stmt)
            }
            fn post_query(call: $crate::Call, stmt: $crate::Statement, outcome: $crate::Outcome) {
                <$plugin as $crate::Plugin>::post_query(&call, &stmt, &outcome)
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_helios_world!(__HeliosExports with_types_in $crate::bindings);
    };
}
