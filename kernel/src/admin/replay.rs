//! Time-travel replay over the admin API: `POST /api/replay` starts one (202 with its
//! `replay_id`), `GET /api/replay` lists them, `GET /api/replay/{id}` reports progress and
//! divergences, `DELETE /api/replay/{id}` cancels.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{AdminState, authorized, authorized_json_to, not_found};
use crate::ops::replay::{ReplayError, ReplayRequest};
use crate::ops::target::TargetError;

pub(super) async fn start(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: Result<Json<ReplayRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let req = match authorized_json_to(&shared, &headers, body, |r| &r.target) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let power = match (req.allow_writes, req.as_user.is_some()) {
        (true, _) => Some("a replay that keeps its writes (allow_writes)"),
        (false, true) => Some("a replay as another user (as_user)"),
        (false, false) => None,
    };
    if let Some(what) = power
        && let Err(r) = super::authorized_to_write(&shared, &headers, what)
    {
        return *r;
    }
    match shared.replays.start(req).await {
        Ok(job) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "replay_id": job.id() })),
        )
            .into_response(),
        Err(e) => {
            let code = match &e {
                ReplayError::NoJournal
                | ReplayError::EmptyWindow(..)
                | ReplayError::Target(TargetError::UnknownNode(_)) => StatusCode::NOT_FOUND,
                ReplayError::Invalid(_) | ReplayError::Target(TargetError::BadDsn(_)) => {
                    StatusCode::BAD_REQUEST
                }
                ReplayError::Writes { .. } | ReplayError::LivePrimary(_) => StatusCode::CONFLICT,
                ReplayError::Busy => StatusCode::TOO_MANY_REQUESTS,
                ReplayError::Journal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (code, e.to_string()).into_response()
        }
    }
}

pub(super) async fn list(State(shared): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r.into_response();
    }
    Json(shared.replays.list()).into_response()
}

pub(super) async fn show(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r.into_response();
    }
    match shared.replays.get(id) {
        Some(job) => Json(job.status()).into_response(),
        None => not_found("replay", id),
    }
}

pub(super) async fn cancel(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r.into_response();
    }
    if shared.replays.cancel(id) {
        StatusCode::ACCEPTED.into_response()
    } else {
        not_found("replay", id)
    }
}
