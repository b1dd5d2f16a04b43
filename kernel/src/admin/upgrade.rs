//! The upgrade orchestrator over the admin API: `GET /api/upgrade` (phase, lag, windows and
//! diff counts, stages, the cut), `POST /api/upgrade/start`, `POST /api/upgrade/cut`
//! (`{"force": true}` cuts before a window passed), `POST /api/upgrade/rollback`,
//! `POST /api/upgrade/confirm`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{AdminState, authorized};
use crate::ops::upgrade::{Upgrade, UpgradeError};

/// The orchestrator, or the response saying there is none.
fn orchestrator(shared: &AdminState, headers: &HeaderMap) -> Result<Arc<Upgrade>, Box<Response>> {
    authorized(shared, headers).map_err(|r| Box::new(r.into_response()))?;
    shared.upgrade.clone().ok_or_else(|| {
        Box::new(
            (
                StatusCode::NOT_FOUND,
                UpgradeError::NotConfigured.to_string(),
            )
                .into_response(),
        )
    })
}

fn answer(shared: &Upgrade, result: Result<(), UpgradeError>) -> Response {
    match result {
        Ok(()) => (StatusCode::ACCEPTED, Json(shared.status())).into_response(),
        Err(e @ UpgradeError::NotConfigured) => {
            (StatusCode::NOT_FOUND, e.to_string()).into_response()
        }
        Err(e) => (StatusCode::CONFLICT, e.to_string()).into_response(),
    }
}

pub(super) async fn show(State(shared): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    match orchestrator(&shared, &headers) {
        Ok(up) => Json(up.status()).into_response(),
        Err(r) => *r,
    }
}

pub(super) async fn start(State(shared): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    match orchestrator(&shared, &headers) {
        Ok(up) => answer(&up, up.start()),
        Err(r) => *r,
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct CutRequest {
    #[serde(default)]
    force: bool,
}

pub(super) async fn cut(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: Option<Json<CutRequest>>,
) -> Response {
    match orchestrator(&shared, &headers) {
        Ok(up) => {
            let force = body.map(|Json(b)| b.force).unwrap_or(false);
            answer(&up, up.request_cut(force))
        }
        Err(r) => *r,
    }
}

pub(super) async fn rollback(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
) -> Response {
    match orchestrator(&shared, &headers) {
        Ok(up) => answer(&up, up.rollback()),
        Err(r) => *r,
    }
}

pub(super) async fn confirm(State(shared): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    match orchestrator(&shared, &headers) {
        Ok(up) => {
            let result = up.confirm().await;
            answer(&up, result)
        }
        Err(r) => *r,
    }
}
