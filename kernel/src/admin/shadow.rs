//! The shadow comparator over the admin API: `POST /api/shadow/start`, `GET /api/shadow`,
//! `GET /api/shadow/{id}`, `GET /api/shadow/{id}/diff`, `POST /api/shadow/{id}/stop`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{AdminState, authorized, authorized_json_to, not_found};
use crate::ops::shadow::{ShadowError, ShadowRequest};
use crate::ops::target::TargetError;

pub(super) async fn start(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: Result<Json<ShadowRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let req = match authorized_json_to(&shared, &headers, body, |r| &r.target) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match shared.shadows.start(req).await {
        Ok(run) => (StatusCode::CREATED, Json(run.status())).into_response(),
        Err(e) => {
            let code = match &e {
                ShadowError::Target(TargetError::UnknownNode(_)) => StatusCode::NOT_FOUND,
                ShadowError::Target(TargetError::BadDsn(_)) | ShadowError::Invalid(_) => {
                    StatusCode::BAD_REQUEST
                }
                ShadowError::LivePrimary(_) | ShadowError::Running(_) => StatusCode::CONFLICT,
            };
            (code, e.to_string()).into_response()
        }
    }
}

pub(super) async fn list(State(shared): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r.into_response();
    }
    Json(shared.shadows.list()).into_response()
}

/// `answer` for the run `id`, once the key checks out; 404 when there is no such run.
fn with_run(
    shared: &AdminState,
    headers: &HeaderMap,
    id: u64,
    answer: impl FnOnce(Arc<crate::ops::shadow::Run>) -> Response,
) -> Response {
    if let Err(r) = authorized(shared, headers) {
        return r.into_response();
    }
    match shared.shadows.get(id) {
        Some(run) => answer(run),
        None => not_found("shadow run", id),
    }
}

pub(super) async fn show(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    with_run(&shared, &headers, id, |run| {
        Json(run.status()).into_response()
    })
}

pub(super) async fn diff(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    with_run(&shared, &headers, id, |run| {
        Json(serde_json::json!({
            "shadow_id": id,
            "compared": run.compared(),
            "diff_count": run.diff_count(),
            "divergent": run.divergences(),
        }))
        .into_response()
    })
}

pub(super) async fn stop(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    with_run(&shared, &headers, id, |run| {
        shared.shadows.stop(id);
        Json(run.status()).into_response()
    })
}
