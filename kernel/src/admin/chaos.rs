//! Chaos mode over the admin API: `POST /api/chaos` (a [`FaultRequest`]) starts a fault,
//! `GET /api/chaos/active` lists them, `DELETE /api/chaos/{id}` ends one early.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{AdminState, authorized, authorized_json, not_found};
use crate::ops::chaos::{ChaosError, FaultRequest};

pub(super) async fn start(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: Result<Json<FaultRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let req = match authorized_json(&shared, &headers, body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match shared.chaos.start(req) {
        Ok(f) => (StatusCode::CREATED, Json(f)).into_response(),
        Err(e) => {
            let code = match e {
                ChaosError::Disabled => StatusCode::FORBIDDEN,
                ChaosError::UnknownNode(_) => StatusCode::NOT_FOUND,
                ChaosError::Overlaps(..) => StatusCode::CONFLICT,
                ChaosError::Invalid(_) => StatusCode::BAD_REQUEST,
            };
            (code, e.to_string()).into_response()
        }
    }
}

pub(super) async fn active(State(shared): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r.into_response();
    }
    Json(shared.chaos.active()).into_response()
}

pub(super) async fn stop(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r.into_response();
    }
    if shared.chaos.stop(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found("active fault", id)
    }
}
