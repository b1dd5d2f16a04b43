//! Admin endpoints of high availability: the topology as the health checks see it, planned
//! switchover, and a time window of the statement journal.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::authorized;
use crate::failover::{self, FailoverError, FailoverReport};
use crate::topology::NodeView;

#[derive(Serialize)]
struct TopologyView<'a> {
    tracking: bool,
    failover: Option<&'static str>,
    primary: String,
    generation: u64,
    switching: bool,
    nodes: Vec<NodeView>,
    last_failover: Option<FailoverReport>,
    /// The last promotion cleared `synchronous_standby_names` on the new primary.
    relaxed_synchronous_standbys: Option<serde_json::Value>,
    sessions: &'a crate::session::recovery::SessionCounters,
    pinned: &'a crate::session::isolation::PinCounters,
}

/// `GET /api/topology`.
pub async fn topology(State(shared): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r.into_response();
    }
    let t = &shared.topology;
    Json(TopologyView {
        tracking: shared.ha.is_some(),
        failover: shared.ha.as_ref().map(|ha| match ha.failover {
            crate::config::FailoverMode::Automatic => "automatic",
            crate::config::FailoverMode::Manual => "manual",
        }),
        primary: t.nodes[t.primary()].name().to_owned(),
        generation: t.generation(),
        switching: t.switching(),
        nodes: t.view(),
        last_failover: shared.failover.last(),
        relaxed_synchronous_standbys: t
            .relaxed_sync
            .lock()
            .expect("topology lock")
            .as_ref()
            .map(|(node, previous)| serde_json::json!({ "node": node, "previous": previous })),
        sessions: &shared.sessions,
        pinned: &shared.pins,
    })
    .into_response()
}

/// Body of `POST /api/topology/switchover`.
#[derive(Debug, Default, Deserialize)]
pub struct SwitchoverRequest {
    /// The standby to promote; the best one when absent.
    pub target: Option<String>,
}

/// `POST /api/topology/switchover`.
pub async fn switchover(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: Option<Json<SwitchoverRequest>>,
) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r.into_response();
    }
    let target = body.and_then(|Json(b)| b.target);
    match failover::switchover(&shared.failover, target.as_deref()).await {
        Ok(report) => (StatusCode::OK, Json(report)).into_response(),
        Err(e) => {
            let status = match e {
                FailoverError::NotConfigured => StatusCode::NOT_IMPLEMENTED,
                FailoverError::Busy => StatusCode::CONFLICT,
                FailoverError::NoCandidate | FailoverError::BadTarget(..) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                FailoverError::Step { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
        }
    }
}

/// Query of `GET /api/journal`.
#[derive(Debug, Deserialize)]
pub struct JournalQuery {
    /// Window start, ms since the epoch (default: 5 minutes ago).
    pub from_ms: Option<u64>,
    /// Window end, ms since the epoch (default: now).
    pub to_ms: Option<u64>,
    /// At most this many records (default 1000).
    pub limit: Option<usize>,
}

#[derive(Serialize)]
struct RecordView {
    seq: u64,
    session_id: u64,
    transaction_id: u64,
    user: String,
    database: String,
    node: String,
    sql: String,
    params: Vec<Option<String>>,
    started_at_us: u64,
    duration_us: u64,
    rows: u64,
    checksum: String,
    error: Option<(String, String)>,
}

/// `GET /api/journal`: records of a time window, with the journal's counters.
pub async fn journal(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    Query(q): Query<JournalQuery>,
) -> Response {
    if let Err(r) = super::authorized_for_journal(&shared, &headers) {
        return r.into_response();
    }
    let Some(journal) = &shared.journal else {
        return (
            StatusCode::NOT_FOUND,
            "the journal is off (no [journal] section)",
        )
            .into_response();
    };
    let now = SystemTime::now();
    let from = q
        .from_ms
        .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
        .unwrap_or(now - Duration::from_secs(300));
    let to = q
        .to_ms
        .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
        .unwrap_or(now);
    let limit = q.limit.unwrap_or(1000);
    let shared2 = shared.clone();
    let result = tokio::task::spawn_blocking(move || {
        let journal = shared2.journal.as_ref().expect("checked");
        journal.barrier();
        let mut records = Vec::new();
        let mut errors = Vec::new();
        for r in journal.read(from, to).map_err(|e| e.to_string())? {
            match r {
                Ok(rec) if records.len() < limit => records.push(RecordView {
                    seq: rec.seq,
                    session_id: rec.session_id,
                    transaction_id: rec.transaction_id,
                    user: rec.user,
                    database: rec.database,
                    node: rec.node,
                    sql: rec.sql,
                    params: rec
                        .params
                        .iter()
                        .map(|p| p.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()))
                        .collect(),
                    started_at_us: rec.started_at_us,
                    duration_us: rec.duration_us,
                    rows: rec.rows,
                    checksum: format!("{:08x}", rec.checksum),
                    error: rec.error,
                }),
                Ok(_) => break,
                Err(e) => errors.push(e.to_string()),
            }
        }
        Ok::<_, String>((records, errors))
    })
    .await;
    match result {
        Ok(Ok((records, errors))) => Json(serde_json::json!({
            "records": records,
            "corrupt": errors,
            "queued": journal.stats.queued.load(Relaxed),
            "written": journal.stats.written.load(Relaxed),
            "dropped": journal.stats.dropped.load(Relaxed),
            "fsyncs": journal.stats.fsyncs.load(Relaxed),
        }))
        .into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
