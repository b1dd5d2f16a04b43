//! The components' Route hook as a step: when a statement starts a server checkout, the
//! first component with an opinion picks the node.

use std::sync::Arc;

use super::{Answer, BindCx, Protocol, StatementCx, Step, Verdict};
use crate::hooks::Facts;
use crate::hooks::{self, Pipeline, Route, SessionInfo};
use crate::session::relay::expect::SqlError;
use crate::topology::Topology;
use crate::wire::messages::sqlstate;

/// Calls Route for statements that will check a server out.
pub struct RouteStep {
    pipeline: Arc<Pipeline>,
    topology: Arc<Topology>,
}

impl RouteStep {
    /// The step for `pipeline` over `topology`.
    pub fn new(pipeline: Arc<Pipeline>, topology: Arc<Topology>) -> Self {
        RouteStep { pipeline, topology }
    }

    /// The node for `stmt`, or the refusal.
    fn pick(
        &self,
        info: &Arc<SessionInfo>,
        in_transaction: bool,
        stmt: &Arc<Facts>,
    ) -> Result<usize, SqlError> {
        let topology = &self.topology;
        Ok(match self.pipeline.route(info, in_transaction, stmt) {
            Route::Default | Route::Primary => topology.primary(),
            Route::Replica => topology.any_replica().unwrap_or(topology.primary()),
            Route::Node(name) => topology.by_name(&name).ok_or_else(|| {
                SqlError::new(
                    sqlstate::CANNOT_CONNECT,
                    format!("routing chose node \"{name}\", which is not configured"),
                )
            })?,
            Route::Tag(tag) => topology.by_tag(&tag).unwrap_or(topology.primary()),
            Route::Block(r) => return Err(SqlError::new(r.code, r.message)),
        })
    }
}

impl Step for RouteStep {
    fn on_statement(&self, cx: &mut StatementCx<'_>) -> Verdict {
        // A `Parse` is routed when it is bound; an attached server stays where it is.
        if cx.protocol == Protocol::Extended || cx.attached {
            return Verdict::Continue;
        }
        let facts = cx.facts();
        match self.pick(cx.info, cx.in_transaction, &facts) {
            Ok(node) => {
                cx.route = Some(node);
                Verdict::Continue
            }
            Err(e) => Verdict::Answer(Answer::Error(e)),
        }
    }

    fn on_bind(&self, cx: &mut BindCx<'_>) -> Verdict {
        if cx.attached {
            return Verdict::Continue;
        }
        let facts = hooks::statement(cx.stmt.sql());
        match self.pick(cx.info, cx.in_transaction, &facts) {
            Ok(node) => {
                cx.route = Some(node);
                Verdict::Continue
            }
            Err(e) => Verdict::Answer(Answer::Error(e)),
        }
    }
}
