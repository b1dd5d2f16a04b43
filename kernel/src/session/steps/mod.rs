//! The steps a statement passes before it reaches a server, and the observers that watch it
//! while it runs.
//!
//! A [`Step`] looks at a statement (a simple `Query` or a `Parse`) and at a `Bind`, and either
//! lets it continue, answers it itself, or delays it. The order is written once, in
//! [`Steps::new`], and rebuilt when the component pipeline is swapped: a new policy on the
//! query path is a new file here and one line in that list, not a branch in the relay.
//! Observers of an in-flight statement (PostQuery, the journal) live in [`observe`].

pub mod guard;
pub mod hooks;
pub mod journal;
pub mod observe;
pub mod route;
pub mod tables;

use std::sync::Arc;
use std::time::Duration;

use crate::config::PoolMode;
use crate::hooks::Facts;
use crate::hooks::{Pipeline, SessionInfo};
use crate::plugins::bindings::ResultSet;
use crate::session::relay::expect::SqlError;
use crate::session::statements::Prepared;
use crate::topology::Topology;

pub use observe::PostCtx;

/// How a statement reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A simple `Query` message: the answer ends with `ReadyForQuery`.
    Simple,
    /// A `Parse` of the extended protocol: after a refusal the batch is skipped to `Sync`.
    Extended,
}

/// What a step decided.
#[derive(Debug)]
pub enum Verdict {
    /// Go on to the next step.
    Continue,
    /// The proxy answers; nothing reaches a server and later steps are not called.
    Answer(Answer),
    /// Wait this long, then go on to the next step.
    Delay(Duration),
}

/// An answer the proxy gives instead of a server.
#[derive(Debug)]
pub enum Answer {
    /// An error with a SQLSTATE.
    Error(SqlError),
    /// A result the proxy serves itself (a component's answer).
    Rows(ResultSet),
}

/// A statement on its way to a server, and what the steps found out about it.
pub struct StatementCx<'a> {
    /// The SQL as the client sent it.
    pub sql: &'a str,
    /// Which protocol carried it.
    pub protocol: Protocol,
    /// The session is inside a transaction block.
    pub in_transaction: bool,
    /// A server connection is attached already (so no routing decision applies).
    pub attached: bool,
    /// Who is asking.
    pub info: &'a Arc<SessionInfo>,
    /// The SQL after a component rewrote it.
    pub rewritten: Option<String>,
    /// The facts components saw about the final SQL, once a step computed them.
    pub facts: Option<Arc<Facts>>,
    /// The node chosen for the checkout this statement starts.
    pub route: Option<usize>,
    /// The session's SQL-level prepared statements, so `EXECUTE name` is judged by what it
    /// runs.
    pub session: Option<&'a crate::session::state::SessionState>,
}

impl StatementCx<'_> {
    /// The SQL that will run: rewritten by a component, or as sent.
    pub fn effective_sql(&self) -> &str {
        self.rewritten.as_deref().unwrap_or(self.sql)
    }

    /// The facts about the final SQL, computed on first use.
    pub fn facts(&mut self) -> Arc<Facts> {
        if self.facts.is_none() {
            self.facts = Some(crate::hooks::statement(self.effective_sql()));
        }
        self.facts.clone().expect("just set")
    }
}

/// A `Bind` (or a statement `Describe`) of a prepared statement about to start a checkout.
pub struct BindCx<'a> {
    /// The statement being bound.
    pub stmt: &'a Prepared,
    /// The session is inside a transaction block.
    pub in_transaction: bool,
    /// A server connection is attached already.
    pub attached: bool,
    /// Who is asking.
    pub info: &'a Arc<SessionInfo>,
    /// The node chosen for the checkout.
    pub route: Option<usize>,
}

/// One step of the query path. Both phases default to [`Verdict::Continue`].
pub trait Step: Send + Sync {
    /// Runs for each simple `Query` and each `Parse`, before anything is sent to a server.
    fn on_statement(&self, _cx: &mut StatementCx<'_>) -> Verdict {
        Verdict::Continue
    }

    /// Runs for each `Bind` and statement `Describe` of a known prepared statement.
    fn on_bind(&self, _cx: &mut BindCx<'_>) -> Verdict {
        Verdict::Continue
    }
}

/// The steps of a session's query path, in order.
pub struct Steps {
    list: Vec<Box<dyn Step>>,
}

impl Steps {
    /// The steps for `pipeline`: the statement-mode guard, then the components' PreQuery and
    /// Validate, then Route, then the proxy's own tables (`tables`: when clients may read
    /// them, over the analytics if on). A step with nothing to do is left out.
    pub fn new(
        pipeline: &Arc<Pipeline>,
        mode: PoolMode,
        topology: &Arc<Topology>,
        tables: Option<tables::TableSources>,
    ) -> Self {
        let mut list: Vec<Box<dyn Step>> = Vec::new();
        if mode == PoolMode::Statement {
            list.push(Box::new(guard::StatementModeGuard));
        }
        if pipeline.has_pre_query_or_validate() {
            list.push(Box::new(hooks::Hooks::new(pipeline.clone())));
        }
        if pipeline.has_route() {
            list.push(Box::new(route::RouteStep::new(
                pipeline.clone(),
                topology.clone(),
            )));
        }
        if let Some(sources) = tables {
            list.push(Box::new(tables::ProxyTables::new(sources)));
        }
        Steps { list }
    }

    /// Runs every step on a statement; the answer of the first that gave one.
    pub async fn on_statement(&self, cx: &mut StatementCx<'_>) -> Option<Answer> {
        for step in &self.list {
            match step.on_statement(cx) {
                Verdict::Continue => {}
                Verdict::Answer(a) => return Some(a),
                Verdict::Delay(d) => tokio::time::sleep(d).await,
            }
        }
        None
    }

    /// Runs every step on a bind; the answer of the first that gave one.
    pub async fn on_bind(&self, cx: &mut BindCx<'_>) -> Option<Answer> {
        for step in &self.list {
            match step.on_bind(cx) {
                Verdict::Continue => {}
                Verdict::Answer(a) => return Some(a),
                Verdict::Delay(d) => tokio::time::sleep(d).await,
            }
        }
        None
    }

    /// Whether no step runs at all (the common case without components).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn info() -> Arc<SessionInfo> {
        Arc::new(SessionInfo {
            session_id: 1,
            user: "app".into(),
            database: "app".into(),
            application_name: String::new(),
            client_addr: "127.0.0.1:1".into(),
            tenant: None,
            attributes: Vec::new(),
            search_path: Vec::new(),
        })
    }

    pub(crate) fn cx_for<'a>(
        info: &'a Arc<SessionInfo>,
        sql: &'a str,
        protocol: Protocol,
    ) -> StatementCx<'a> {
        StatementCx {
            sql,
            protocol,
            in_transaction: false,
            attached: false,
            info,
            rewritten: None,
            facts: None,
            route: None,
            session: None,
        }
    }

    struct Slow;
    impl Step for Slow {
        fn on_statement(&self, _cx: &mut StatementCx<'_>) -> Verdict {
            Verdict::Delay(Duration::from_millis(20))
        }
    }

    struct Rewrite;
    impl Step for Rewrite {
        fn on_statement(&self, cx: &mut StatementCx<'_>) -> Verdict {
            cx.rewritten = Some(format!("{} limit 1", cx.effective_sql()));
            Verdict::Continue
        }
    }

    #[tokio::test]
    async fn steps_run_in_order_and_the_first_answer_stops_the_rest() {
        let steps = Steps {
            list: vec![
                Box::new(Slow),
                Box::new(Rewrite),
                Box::new(guard::StatementModeGuard),
                Box::new(Rewrite),
            ],
        };
        let info = info();
        let mut cx = cx_for(&info, "select 1", Protocol::Simple);
        let started = std::time::Instant::now();
        assert!(steps.on_statement(&mut cx).await.is_none());
        assert!(started.elapsed() >= Duration::from_millis(20), "delayed");
        assert_eq!(cx.effective_sql(), "select 1 limit 1 limit 1");

        let mut cx = cx_for(&info, "begin", Protocol::Simple);
        let answer = steps.on_statement(&mut cx).await;
        assert!(matches!(answer, Some(Answer::Error(e)) if e.code == "0A000"));
        assert_eq!(
            cx.effective_sql(),
            "begin limit 1",
            "steps after the answer did not run"
        );
    }

    #[test]
    fn a_proxy_without_components_in_transaction_mode_runs_no_step() {
        let pipeline = Arc::new(Pipeline::default());
        let topology = Arc::new(Topology::new(&crate::config::Config::default(), None));
        assert!(Steps::new(&pipeline, PoolMode::Transaction, &topology, None).is_empty());
        assert!(!Steps::new(&pipeline, PoolMode::Statement, &topology, None).is_empty());
    }
}
