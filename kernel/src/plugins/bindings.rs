//! Host-side bindings generated from the WIT contract: `helios:plugin@0.3.0` (`wit/`), and
//! `helios:plugin@0.2.0` (`wit/v0.2.0/`) for components built before it. Both versions share
//! the `types` interface unchanged, so hooks of either version take and return the same Rust
//! values; [`Bindings`] calls whichever an instance implements.

#![allow(missing_docs)]

/// `helios:plugin@0.3.0`, the current contract.
pub mod v3 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        additional_derives: [PartialEq],
    });
}

/// `helios:plugin@0.2.0`: same hook types, an older `context` interface.
pub mod v2 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "plugin",
        additional_derives: [PartialEq],
        with: {
            "helios:plugin/types": super::v3::helios::plugin::types,
        },
    });
}

pub use v3::helios;
pub use v3::helios::plugin::types::{
    AuthDecision, AuthRequest, Call, ConfigValue, Hooks, Identity, Outcome, PreQueryAction,
    Refusal, Registration, ResultSet, RouteTarget, Statement, StatementClass, Verdict,
};

use wasmtime::Store;

use super::host::HostState;

/// A ready-to-instantiate component of either contract version.
pub enum Pre {
    /// Built against 0.3.0.
    V3(v3::PluginPre<HostState>),
    /// Built against 0.2.0.
    V2(v2::PluginPre<HostState>),
}

impl Pre {
    /// Instantiates the component in `store`.
    pub fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Bindings> {
        Ok(match self {
            Pre::V3(p) => Bindings::V3(p.instantiate(store)?),
            Pre::V2(p) => Bindings::V2(p.instantiate(store)?),
        })
    }

    /// The contract version the component was built against.
    pub fn version(&self) -> &'static str {
        match self {
            Pre::V3(_) => "0.3.0",
            Pre::V2(_) => "0.2.0",
        }
    }
}

/// An instance's exports, of either contract version.
pub enum Bindings {
    /// Built against 0.3.0.
    V3(v3::Plugin),
    /// Built against 0.2.0.
    V2(v2::Plugin),
}

/// Calls the same export on either version (the hook types are shared).
macro_rules! either {
    ($self:ident, $b:ident => $call:expr) => {
        match $self {
            Bindings::V3($b) => $call,
            Bindings::V2($b) => $call,
        }
    };
}

impl Bindings {
    /// `init`.
    pub fn call_init(
        &self,
        s: &mut Store<HostState>,
        config: &[(String, ConfigValue)],
    ) -> wasmtime::Result<Result<Registration, String>> {
        either!(self, b => b.call_init(s, config))
    }

    /// `authenticate`.
    pub fn call_authenticate(
        &self,
        s: &mut Store<HostState>,
        request: &AuthRequest,
    ) -> wasmtime::Result<AuthDecision> {
        either!(self, b => b.call_authenticate(s, request))
    }

    /// `pre-query`.
    pub fn call_pre_query(
        &self,
        s: &mut Store<HostState>,
        call: Call,
        stmt: &Statement,
    ) -> wasmtime::Result<PreQueryAction> {
        either!(self, b => b.call_pre_query(s, call, stmt))
    }

    /// `validate`.
    pub fn call_validate(
        &self,
        s: &mut Store<HostState>,
        call: Call,
        stmt: &Statement,
    ) -> wasmtime::Result<Verdict> {
        either!(self, b => b.call_validate(s, call, stmt))
    }

    /// `route`.
    pub fn call_route(
        &self,
        s: &mut Store<HostState>,
        call: Call,
        stmt: &Statement,
    ) -> wasmtime::Result<RouteTarget> {
        either!(self, b => b.call_route(s, call, stmt))
    }

    /// `post-query`.
    pub fn call_post_query(
        &self,
        s: &mut Store<HostState>,
        call: Call,
        stmt: &Statement,
        outcome: &Outcome,
    ) -> wasmtime::Result<()> {
        either!(self, b => b.call_post_query(s, call, stmt, outcome))
    }
}
