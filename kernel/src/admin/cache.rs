//! `GET /api/cache` (entries, bytes, hits and misses per tier, invalidations) and
//! `POST /api/cache/invalidate` (`{"table": "schema.name", "database": "db"}` or
//! `{"all": true}`).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AdminState, authorized};

pub(super) async fn show(State(shared): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r.into_response();
    }
    let Some(cache) = &shared.cache else {
        return (
            StatusCode::NOT_FOUND,
            "the result cache is off (no [cache] section)",
        )
            .into_response();
    };
    Json(serde_json::json!({
        "tiers": cache.tiers(),
        "stores": cache.stats.stores.load(Relaxed),
        "skipped": cache.stats.skipped.load(Relaxed),
        "redis_up": cache.l2.as_ref().map(|l2| l2.up()),
        "redis_errors": cache.l2.as_ref().map(|l2| l2.stats.errors.load(Relaxed)),
        "redis_unacked_invalidations": cache.l2.as_ref().map(|l2| l2.unacked()),
    }))
    .into_response()
}

/// What to invalidate.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Invalidate {
    table: Option<String>,
    database: Option<String>,
    #[serde(default)]
    all: bool,
}

pub(super) async fn invalidate(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: Result<Json<Invalidate>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r.into_response();
    }
    let Some(cache) = &shared.cache else {
        return (
            StatusCode::NOT_FOUND,
            "the result cache is off (no [cache] section)",
        )
            .into_response();
    };
    let Ok(Json(req)) = body else {
        return (
            StatusCode::BAD_REQUEST,
            "expected {\"table\": \"schema.name\", \"database\": \"db\"} or {\"all\": true}",
        )
            .into_response();
    };
    let before = cache.stats.invalidations.load(Relaxed);
    match (req.all, req.table, req.database) {
        (true, None, None) => cache.invalidate_all().await,
        (false, Some(table), Some(database)) => {
            let name = if table.contains('.') {
                table
            } else {
                format!("public.{table}")
            };
            cache.invalidate(&[format!("{database}\0{name}")]).await;
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "give either all = true, or table and database",
            )
                .into_response();
        }
    }
    Json(serde_json::json!({
        "invalidated": cache.stats.invalidations.load(Relaxed) - before,
    }))
    .into_response()
}
