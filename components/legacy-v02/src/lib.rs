//! `legacy-v02` (Validate): a component built against `helios:plugin@0.2.0` (`wit/v0.2.0`)
//! with plain `wit-bindgen`, as components were before contract 0.3.0. The kernel keeps
//! loading such components through an adapter; the tests load this one to prove it. It
//! refuses statements that touch a table named `legacy_secret`, read through the 0.2.0
//! `context.tables`, and reports the class the kernel gave the statement.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.2.0",
        world: "plugin",
    });
}

use bindings::helios::plugin::context;
use bindings::helios::plugin::types::{
    AuthDecision, AuthRequest, Call, ConfigValue, Hooks, Identity, Outcome, PreQueryAction,
    Refusal, Registration, RouteTarget, Statement, Verdict,
};

/// The component.
pub struct Legacy;

impl bindings::Guest for Legacy {
    fn init(_config: Vec<(String, ConfigValue)>) -> Result<Registration, String> {
        Ok(Registration {
            hooks: Hooks::VALIDATE,
        })
    }

    fn authenticate(_request: AuthRequest) -> AuthDecision {
        AuthDecision::Allow(Identity {
            backend_role: None,
            tenant: None,
            attributes: Vec::new(),
        })
    }

    fn pre_query(_call: Call, _stmt: Statement) -> PreQueryAction {
        PreQueryAction::Proceed
    }

    fn validate(_call: Call, stmt: Statement) -> Verdict {
        let tables = context::tables();
        match tables.iter().find(|t| t.ends_with("legacy_secret")) {
            Some(t) => Verdict::Deny(Refusal {
                sqlstate: "42501".into(),
                message: format!("0.2.0 component refuses {t} ({:?})", stmt.class),
            }),
            None => Verdict::Allow,
        }
    }

    fn route(_call: Call, _stmt: Statement) -> RouteTarget {
        RouteTarget::Default
    }

    fn post_query(_call: Call, _stmt: Statement, _outcome: Outcome) {}
}

#[cfg(target_arch = "wasm32")]
bindings::export!(Legacy with_types_in bindings);
