//! `GET /metrics` (OpenMetrics text; open when `[admin] metrics_open`, else behind the API
//! key) and the query analytics: `GET /api/analytics`, `POST /api/analytics/reset`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AdminState, authorized};

/// OpenMetrics' content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub(super) async fn metrics(State(shared): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if !shared.metrics_open
        && let Err(r) = authorized(&shared, &headers)
    {
        return r.into_response();
    }
    let text = crate::observe::metrics::render(shared.metrics.clone());
    ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
}

/// `?limit=N&order=calls|total|mean|p99|errors`.
#[derive(Deserialize)]
pub(super) struct AnalyticsQuery {
    limit: Option<usize>,
    order: Option<String>,
}

pub(super) async fn analytics(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    Query(q): Query<AnalyticsQuery>,
) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r.into_response();
    }
    let Some(stats) = &shared.analytics else {
        return (
            StatusCode::NOT_FOUND,
            "analytics are off ([analytics] enabled = false)",
        )
            .into_response();
    };
    let mut rows = stats.snapshot();
    let key: fn(&crate::observe::queries::EntryView) -> f64 = match q.order.as_deref() {
        None | Some("calls") => |e| e.call_count as f64,
        Some("total") => |e| e.total_duration_ms,
        Some("mean") => |e| e.avg_duration_ms,
        Some("p99") => |e| e.p99_duration_ms,
        Some("errors") => |e| e.error_count as f64,
        Some(other) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("order={other}: expected calls, total, mean, p99 or errors"),
            )
                .into_response();
        }
    };
    rows.sort_by(|a, b| key(b).total_cmp(&key(a)));
    rows.truncate(q.limit.unwrap_or(100));
    Json(serde_json::json!({
        "fingerprints": stats.snapshot().len(),
        "evictions": stats.evictions(),
        "queries": rows,
    }))
    .into_response()
}

pub(super) async fn reset_analytics(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r.into_response();
    }
    if let Some(stats) = &shared.analytics {
        stats.reset();
    }
    StatusCode::NO_CONTENT.into_response()
}
