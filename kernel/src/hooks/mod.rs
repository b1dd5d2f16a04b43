//! The hook pipeline: runs the loaded components' hooks in config order with the chaining
//! rules of the design — rewrites chain, the first block or deny wins, the first non-default
//! route wins — and applies each component's failure policy when a call fails.
//!
//! Phases, in the order the relay calls them for a statement:
//! 1. [`Pipeline::pre_query`]: proceed, rewrite, block, or respond without a backend;
//! 2. [`Pipeline::validate`]: allow or deny the final SQL;
//! 3. [`Pipeline::route`]: choose the node when the statement starts a server checkout;
//! 4. [`Pipeline::post_query`]: observe the outcome.
//!
//! [`Pipeline::authenticate`] runs once per session at login.

mod encoding;

pub use encoding::startup_breaks_analysis;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{HookName, OnError};
use crate::plugins::LoadedPlugin;
use crate::plugins::bindings::{
    AuthDecision, AuthRequest, Call, Identity, Outcome, PreQueryAction, Refusal, ResultSet,
    RouteTarget, Verdict,
};
use crate::plugins::decisions::Decision;
pub use crate::plugins::facts::Facts;
pub use crate::plugins::host::{CallScope, CapturedRows, SessionInfo};

/// SQLSTATE used when a component failed and its policy is to deny.
pub const COMPONENT_FAILED: &str = "58000";

/// A refusal as the client will see it (component name already in the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// SQLSTATE.
    pub code: String,
    /// Message.
    pub message: String,
}

/// What PreQuery decided for a statement.
#[derive(Debug)]
pub enum PreQuery {
    /// Continue, with the SQL rewritten when `Some`.
    Proceed(Option<String>),
    /// Refused.
    Block(Refused),
    /// Answered by a component.
    Respond(ResultSet),
}

/// Where Route sends a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// No component chose: the primary.
    Default,
    /// The primary.
    Primary,
    /// Any healthy replica.
    Replica,
    /// A node by name.
    Node(String),
    /// A node by tag.
    Tag(String),
    /// Refused.
    Block(Refused),
}

/// The components of a proxy, ready to be called.
#[derive(Default)]
pub struct Pipeline {
    plugins: Vec<Arc<LoadedPlugin>>,
    authenticate: Vec<usize>,
    pre_query: Vec<usize>,
    validate: Vec<usize>,
    route: Vec<usize>,
    post_query: Vec<usize>,
    rows_limit: usize,
}

impl Pipeline {
    /// Indexes which component implements which hook.
    pub fn new(plugins: Vec<Arc<LoadedPlugin>>) -> Self {
        let with = |hook| {
            (0..plugins.len())
                .filter(|&i| plugins[i].has_hook(hook))
                .collect::<Vec<_>>()
        };
        let post_query = with(HookName::PostQuery);
        let rows_limit = post_query
            .iter()
            .map(|&i| plugins[i].rows_bytes)
            .max()
            .unwrap_or(0);
        Pipeline {
            rows_limit,
            authenticate: with(HookName::Authenticate),
            pre_query: with(HookName::PreQuery),
            validate: with(HookName::Validate),
            route: with(HookName::Route),
            post_query,
            plugins,
        }
    }

    /// The loaded components.
    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    /// Whether any component looks at statements (so the kernel computes their facts).
    #[inline]
    pub fn has_statement_hooks(&self) -> bool {
        !(self.pre_query.is_empty()
            && self.validate.is_empty()
            && self.route.is_empty()
            && self.post_query.is_empty())
    }

    /// Whether any component implements PreQuery or Validate.
    #[inline]
    pub fn has_pre_query_or_validate(&self) -> bool {
        !(self.pre_query.is_empty() && self.validate.is_empty())
    }

    /// Whether any component implements Authenticate.
    pub fn has_authenticate(&self) -> bool {
        !self.authenticate.is_empty()
    }

    /// Whether any component implements PostQuery.
    #[inline]
    pub fn has_post_query(&self) -> bool {
        !self.post_query.is_empty()
    }

    /// Whether any component implements Route.
    #[inline]
    pub fn has_route(&self) -> bool {
        !self.route.is_empty()
    }

    /// Runs PreQuery then Validate on each statement of `sql_text` on its own (a refusal of
    /// any statement refuses the whole text); returns the decision and the facts about the
    /// final text.
    /// `prepared` gives the `PREPARE` text of the session's SQL-level prepared statements,
    /// so `EXECUTE name` is judged with what it runs.
    pub fn pre_query_and_validate(
        &self,
        session: &Arc<SessionInfo>,
        in_transaction: bool,
        sql_text: &str,
        prepared: &dyn Fn(&str) -> Option<Arc<str>>,
    ) -> (PreQuery, Arc<Facts>) {
        let parts: Vec<Arc<Facts>> = Facts::of(sql_text)
            .into_iter()
            .map(|f| f.resolve_execute(prepared))
            .collect();
        if parts.len() == 1 {
            let facts = parts.into_iter().next().expect("one part");
            return self.one_statement(session, in_transaction, facts);
        }
        let mut texts = Vec::with_capacity(parts.len());
        let mut rewrote = false;
        for facts in parts {
            match self.one_statement(session, in_transaction, facts) {
                (PreQuery::Proceed(Some(new_sql)), _) => {
                    rewrote = true;
                    texts.push(new_sql);
                }
                (PreQuery::Proceed(None), f) => texts.push(f.stmt.sql.clone()),
                (PreQuery::Respond(_), f) => {
                    let r = Refused {
                        code: "0A000".into(),
                        message: "a component answered one statement of a multi-statement \
                                  query itself; send that statement on its own"
                            .into(),
                    };
                    return (PreQuery::Block(r), f);
                }
                blocked => return blocked,
            }
        }
        // A newline before each `;`: a statement may end in a `--` comment.
        let rewritten = rewrote.then(|| texts.join("\n;\n"));
        let facts = Facts::message(rewritten.as_deref().unwrap_or(sql_text));
        (PreQuery::Proceed(rewritten), facts)
    }

    /// PreQuery then Validate on one statement.
    fn one_statement(
        &self,
        session: &Arc<SessionInfo>,
        in_transaction: bool,
        facts: Arc<Facts>,
    ) -> (PreQuery, Arc<Facts>) {
        if let Some(r) = encoding::breaks_analysis(&facts) {
            return (PreQuery::Block(r), facts);
        }
        let (call, mut scope) = call_for(session, in_transaction, facts);
        let mut rewritten = None;
        for &i in &self.pre_query {
            let p = &self.plugins[i];
            let facts = scope.stmt.clone().expect("statement scope");
            let action = decide(p, HookName::PreQuery, &scope, in_transaction, |b, s| {
                b.call_pre_query(s, call, &facts.stmt)
                    .map(Decision::PreQuery)
            });
            match action {
                Ok(Decision::PreQuery(PreQueryAction::Proceed)) => {}
                Ok(Decision::PreQuery(PreQueryAction::Rewrite(new_sql))) => {
                    scope.stmt = Some(Facts::message(&new_sql));
                    rewritten = Some(new_sql);
                }
                Ok(Decision::PreQuery(PreQueryAction::Block(r))) => {
                    return (PreQuery::Block(refused(p, r)), facts);
                }
                Ok(Decision::PreQuery(PreQueryAction::Respond(rows))) => {
                    return (PreQuery::Respond(rows), facts);
                }
                Ok(_) => {}
                Err(e) => {
                    if let Some(r) = failure(p, HookName::PreQuery, &e) {
                        return (PreQuery::Block(r), facts);
                    }
                }
            }
        }
        let facts = scope.stmt.clone().expect("statement scope");
        for &i in &self.validate {
            let p = &self.plugins[i];
            let verdict = decide(p, HookName::Validate, &scope, in_transaction, |b, s| {
                b.call_validate(s, call, &facts.stmt).map(Decision::Verdict)
            });
            match verdict {
                Ok(Decision::Verdict(Verdict::Deny(r))) => {
                    return (PreQuery::Block(refused(p, r)), facts);
                }
                Ok(_) => {}
                Err(e) => {
                    if let Some(r) = failure(p, HookName::Validate, &e) {
                        return (PreQuery::Block(r), facts);
                    }
                }
            }
        }
        (PreQuery::Proceed(rewritten), facts)
    }

    /// Runs Route; the first component with an opinion decides.
    pub fn route(
        &self,
        session: &Arc<SessionInfo>,
        in_transaction: bool,
        facts: &Arc<Facts>,
    ) -> Route {
        let (call, scope) = call_for(session, in_transaction, facts.clone());
        for &i in &self.route {
            let p = &self.plugins[i];
            let target = decide(p, HookName::Route, &scope, in_transaction, |b, s| {
                b.call_route(s, call, &facts.stmt).map(Decision::Route)
            });
            match target {
                Ok(Decision::Route(RouteTarget::Default)) => {}
                Ok(Decision::Route(RouteTarget::Primary)) => return Route::Primary,
                Ok(Decision::Route(RouteTarget::Replica)) => return Route::Replica,
                Ok(Decision::Route(RouteTarget::Node(n))) => return Route::Node(n),
                Ok(Decision::Route(RouteTarget::Tag(t))) => return Route::Tag(t),
                Ok(Decision::Route(RouteTarget::Block(r))) => return Route::Block(refused(p, r)),
                Ok(_) => {}
                Err(e) => {
                    if let Some(r) = failure(p, HookName::Route, &e) {
                        return Route::Block(r);
                    }
                }
            }
        }
        Route::Default
    }

    /// The most bytes of result rows any PostQuery component asked for (0 = none): the
    /// kernel captures rows only up to this.
    #[inline]
    pub fn rows_limit(&self) -> usize {
        self.rows_limit
    }

    /// Runs PostQuery on every component that wants it (failures are only counted); `rows`
    /// are the result rows captured for components that asked for them.
    pub fn post_query(
        &self,
        session: &Arc<SessionInfo>,
        in_transaction: bool,
        facts: &Arc<Facts>,
        outcome: &Outcome,
        rows: Option<Arc<CapturedRows>>,
    ) {
        let (call, mut scope) = call_for(session, in_transaction, facts.clone());
        scope.rows = rows;
        for &i in &self.post_query {
            let p = &self.plugins[i];
            if let Err(e) = p.call(HookName::PostQuery, Some(&scope), |b, s| {
                b.call_post_query(s, call, &facts.stmt, outcome)
            }) {
                tracing::warn!(component = %p.name, "post-query failed: {e}");
            }
        }
    }

    /// Runs Authenticate; the first deny wins, identities merge (first value wins).
    pub fn authenticate(&self, request: &AuthRequest) -> Result<Identity, Refused> {
        let mut identity = Identity {
            backend_role: None,
            tenant: None,
            attributes: Vec::new(),
        };
        for &i in &self.authenticate {
            let p = &self.plugins[i];
            match p.call(HookName::Authenticate, None, |b, s| {
                b.call_authenticate(s, request)
            }) {
                Ok(AuthDecision::Allow(id)) => {
                    identity.backend_role = identity.backend_role.or(id.backend_role);
                    identity.tenant = identity.tenant.or(id.tenant);
                    identity.attributes.extend(id.attributes);
                }
                Ok(AuthDecision::Deny(r)) => return Err(refused(p, r)),
                Err(e) => {
                    if let Some(r) = failure(p, HookName::Authenticate, &e) {
                        return Err(r);
                    }
                }
            }
        }
        Ok(identity)
    }
}

/// A hook's decision: from the kernel's cache when the component declared the hook pure and
/// decided the same statement for a session with the same values before, else by calling it
/// (and caching what a pure hook said).
fn decide(
    p: &LoadedPlugin,
    hook: HookName,
    scope: &CallScope,
    in_transaction: bool,
    f: impl FnOnce(
        &crate::plugins::bindings::Bindings,
        &mut wasmtime::Store<crate::plugins::host::HostState>,
    ) -> wasmtime::Result<Decision>,
) -> Result<Decision, crate::plugins::CallError> {
    let facts = scope.stmt.as_ref().expect("statement scope");
    let pure = p.is_pure(hook);
    if pure
        && let Some(d) = p
            .decisions
            .get(hook, &facts.key, in_transaction, &scope.session)
    {
        p.stats
            .cached
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        p.stats
            .hook(hook)
            .cached
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(d);
    }
    let (decision, reads) = p.call_reading(hook, Some(scope), f)?;
    if pure {
        p.decisions.put(
            hook,
            &facts.key,
            in_transaction,
            &reads,
            &scope.session,
            decision.clone(),
        );
    }
    Ok(decision)
}

/// The `call` record a statement hook gets and the scope its `context` reads.
fn call_for(
    session: &Arc<SessionInfo>,
    in_transaction: bool,
    stmt: Arc<Facts>,
) -> (Call, CallScope) {
    let call = Call {
        session_id: session.session_id,
        in_transaction,
    };
    let scope = CallScope {
        session: session.clone(),
        stmt: Some(stmt),
        rows: None,
    };
    (call, scope)
}

fn refused(p: &LoadedPlugin, r: Refusal) -> Refused {
    let code = if r.sqlstate.len() == 5 && r.sqlstate.bytes().all(|b| b.is_ascii_alphanumeric()) {
        r.sqlstate
    } else {
        "42501".to_owned()
    };
    Refused {
        code,
        message: format!("component {}: {}", p.name, r.message),
    }
}

/// Applies the component's failure policy: `Some` refusal when it denies.
fn failure(p: &LoadedPlugin, hook: HookName, e: &crate::plugins::CallError) -> Option<Refused> {
    match p.on_error(hook) {
        OnError::Allow => {
            tracing::warn!(component = %p.name, hook = hook.as_str(), "component call failed, skipping it: {e}");
            None
        }
        OnError::Deny => {
            tracing::warn!(component = %p.name, hook = hook.as_str(), "component call failed, refusing: {e}");
            Some(Refused {
                code: COMPONENT_FAILED.into(),
                message: format!(
                    "component {} failed in {} ({e}); refused because its on_error policy is deny",
                    p.name,
                    hook.as_str()
                ),
            })
        }
    }
}

/// The facts hooks receive about a whole message's text.
pub fn statement(sql_text: &str) -> Arc<Facts> {
    Facts::message(sql_text)
}

/// Builds the outcome record from a command tag or an error.
pub fn outcome(tag: &str, error: Option<(&str, &str)>, elapsed: Duration, node: &str) -> Outcome {
    let rows = crate::wire::messages::tag_rows(tag.as_bytes()).unwrap_or(0);
    Outcome {
        command_tag: tag.to_owned(),
        rows,
        duration_us: elapsed.as_micros() as u64,
        error: error.map(|(code, message)| Refusal {
            sqlstate: code.to_owned(),
            message: message.to_owned(),
        }),
        node: node.to_owned(),
    }
}
