//! The admin API (axum) on `admin_address`: health (open), the loaded components with their
//! provenance and counters, reload / disable / enable of a component, and (in `ha`) the
//! topology, switchover and the journal, and (in `chaos`, `replay`, `shadow`, `upgrade`) operations. Every endpoint but
//! health needs the API key from `[admin] api_key` in an `X-API-Key` or
//! `Authorization: Bearer` header; without a configured key those endpoints are closed.

use std::sync::Arc;

use arc_swap::ArcSwap;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::config::HookName;
use crate::failover::Coordinator;
use crate::hooks::Pipeline;
use crate::journal::Journal;
use crate::plugins::LoadedPlugin;
use crate::plugins::registry::Registry;
use crate::session::recovery::SessionCounters;
use crate::topology::Topology;
use crate::wire::auth::constant_time_eq;

pub mod cache;
mod chaos;
mod ha;
mod observe;
mod replay;
mod shadow;
mod upgrade;

/// What the admin API reaches.
pub struct AdminState {
    /// `[admin] api_key`; `None` closes every endpoint but health.
    pub api_key: Option<String>,
    /// `[admin] journal_api_key`; `None` closes `GET /api/journal`.
    pub journal_api_key: Option<String>,
    /// `[admin] write_api_key`; `None` refuses writing replays and `as_user`.
    pub write_api_key: Option<String>,
    /// `[ha]`, when configured.
    pub ha: Option<crate::config::HaConfig>,
    /// The backend nodes.
    pub topology: Arc<Topology>,
    /// The components sessions call; replaced after a reload or toggle.
    pub pipeline: Arc<ArcSwap<Pipeline>>,
    /// Every loaded component.
    pub components: Arc<Registry>,
    /// Failovers and switchovers.
    pub failover: Arc<Coordinator>,
    /// What sessions went through when their server was lost.
    pub sessions: Arc<SessionCounters>,
    /// Sessions pinned to their server connection, by reason.
    pub pins: Arc<crate::session::isolation::PinCounters>,
    /// The statement journal, when configured.
    pub journal: Option<Arc<Journal>>,
    /// `[admin] metrics_open`: `/metrics` without the key.
    pub metrics_open: bool,
    /// What `/metrics` reads.
    pub metrics: Arc<crate::observe::metrics::Sources>,
    /// Query analytics, when on.
    pub analytics: Option<Arc<crate::observe::queries::QueryStats>>,
    /// The result cache, when on.
    pub cache: Option<Arc<crate::cache::ResultCache>>,
    /// Chaos mode.
    pub chaos: Arc<crate::ops::chaos::Chaos>,
    /// Time-travel replays.
    pub replays: Arc<crate::ops::replay::Replays>,
    /// Shadow runs.
    pub shadows: Arc<crate::ops::shadow::Shadows>,
    /// The upgrade orchestrator, when `[upgrade]` is configured.
    pub upgrade: Option<Arc<crate::ops::upgrade::Upgrade>>,
}

impl AdminState {
    /// Publishes a changed component list to sessions.
    fn publish(&self) -> impl FnOnce(Vec<Arc<LoadedPlugin>>) + '_ {
        |enabled| self.pipeline.store(Arc::new(Pipeline::new(enabled)))
    }
}

/// The admin router over the proxy's admin state.
pub fn app(shared: Arc<AdminState>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/plugins", get(list_plugins))
        .route("/plugins/{name}/reload", post(reload))
        .route("/plugins/{name}/disable", post(disable))
        .route("/plugins/{name}/enable", post(enable))
        .route("/api/topology", get(ha::topology))
        .route("/api/topology/switchover", post(ha::switchover))
        .route("/api/journal", get(ha::journal))
        .route("/metrics", get(observe::metrics))
        .route("/api/analytics", get(observe::analytics))
        .route("/api/analytics/reset", post(observe::reset_analytics))
        .route("/api/cache", get(cache::show))
        .route("/api/cache/invalidate", post(cache::invalidate))
        .route("/api/chaos", post(chaos::start))
        .route("/api/chaos/active", get(chaos::active))
        .route("/api/chaos/{id}", axum::routing::delete(chaos::stop))
        .route("/api/replay", post(replay::start).get(replay::list))
        .route("/api/replay/{id}", get(replay::show).delete(replay::cancel))
        .route("/api/shadow", get(shadow::list))
        .route("/api/shadow/start", post(shadow::start))
        .route("/api/shadow/{id}", get(shadow::show))
        .route("/api/shadow/{id}/diff", get(shadow::diff))
        .route("/api/shadow/{id}/stop", post(shadow::stop))
        .route("/api/upgrade", get(upgrade::show))
        .route("/api/upgrade/start", post(upgrade::start))
        .route("/api/upgrade/cut", post(upgrade::cut))
        .route("/api/upgrade/rollback", post(upgrade::rollback))
        .route("/api/upgrade/confirm", post(upgrade::confirm))
        .with_state(shared)
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    components: usize,
}

async fn health(State(shared): State<Arc<AdminState>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        components: shared.pipeline.load().plugins().len(),
    })
}

/// One component as `GET /plugins` reports it.
#[derive(Debug, Serialize)]
pub struct PluginView {
    /// Name from config.
    pub name: String,
    /// Manifest version, for artefacts.
    pub version: Option<String>,
    /// SHA-256 of the wasm.
    pub digest: String,
    /// `verified by KEY`, or `unverified`.
    pub signature: String,
    /// Hooks the kernel calls.
    pub hooks: Vec<&'static str>,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Calls that hit their deadline.
    pub timeouts: u64,
    /// Decisions of hooks declared pure answered from the kernel's cache (no call made).
    pub cached_decisions: u64,
    /// Hooks the component declared pure.
    pub pure: Vec<&'static str>,
    /// The contract version the component was built against (`0.3.0`, `0.2.0`).
    pub contract: &'static str,
    /// Mean call time in microseconds.
    pub mean_call_us: f64,
    /// 99th percentile call time in microseconds (upper bound of its power-of-two bucket).
    pub p99_call_us: f64,
}

pub(crate) fn authorized(
    shared: &AdminState,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, &'static str)> {
    let Some(expected) = shared.api_key.as_deref() else {
        return Err((
            StatusCode::FORBIDDEN,
            "admin API key not configured ([admin] api_key)",
        ));
    };
    key_matches(expected, headers)
}

/// Checks the key and unwraps a JSON request body; the response to send instead when the
/// key is wrong (401/403) or the body malformed (400, with serde's reason).
pub(crate) fn authorized_json<T>(
    shared: &AdminState,
    headers: &HeaderMap,
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, Box<Response>> {
    authorized(shared, headers).map_err(|r| Box::new(r.into_response()))?;
    body.map(|Json(b)| b)
        .map_err(|e| Box::new((StatusCode::BAD_REQUEST, e.body_text()).into_response()))
}

/// Like [`authorized_json`], for a request that sends clients' statements to its `target`:
/// a server outside `[[nodes]]` (a DSN) receives every statement with its parameters, which
/// is reading them, so it needs the journal key; a node needs the API key (or the journal
/// key).
pub(crate) fn authorized_json_to<T>(
    shared: &AdminState,
    headers: &HeaderMap,
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
    target: impl FnOnce(&T) -> &str,
) -> Result<T, Box<Response>> {
    let journal_key = authorized_for_journal(shared, headers).is_ok();
    if !journal_key {
        authorized(shared, headers).map_err(|r| Box::new(r.into_response()))?;
    }
    let req = body
        .map(|Json(b)| b)
        .map_err(|e| Box::new((StatusCode::BAD_REQUEST, e.body_text()).into_response()))?;
    if crate::ops::target::is_dsn(target(&req)) && !journal_key {
        return Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                "a target outside [[nodes]] (a DSN) receives every client's statements and \
                 parameters: it needs the journal key ([admin] journal_api_key)",
            )
                .into_response(),
        ));
    }
    Ok(req)
}

/// The response for something the request named by id that does not exist.
pub(crate) fn not_found(what: &str, id: u64) -> Response {
    (StatusCode::NOT_FOUND, format!("no {what} {id}")).into_response()
}

/// Checks the journal's own key: reading every client's SQL is a permission of its own.
pub(crate) fn authorized_for_journal(
    shared: &AdminState,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, &'static str)> {
    let Some(expected) = shared.journal_api_key.as_deref() else {
        return Err((
            StatusCode::FORBIDDEN,
            "reading the journal needs its own key ([admin] journal_api_key)",
        ));
    };
    key_matches(expected, headers)
}

/// Checks the write key in `X-Write-Key` (on top of the request's own key): writing on a
/// target, or acting as another user, is a power of its own.
pub(crate) fn authorized_to_write(
    shared: &AdminState,
    headers: &HeaderMap,
    what: &str,
) -> Result<(), Box<Response>> {
    let refuse = |code: StatusCode, why: String| Err(Box::new((code, why).into_response()));
    let Some(expected) = shared.write_api_key.as_deref() else {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("{what} needs the write key ([admin] write_api_key), which is not set"),
        );
    };
    match headers.get("x-write-key").and_then(|v| v.to_str().ok()) {
        Some(p) if constant_time_eq(p.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => refuse(
            StatusCode::FORBIDDEN,
            format!("{what} needs the write key in X-Write-Key ([admin] write_api_key)"),
        ),
    }
}

fn key_matches(expected: &str, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
    let presented = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        });
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err((StatusCode::UNAUTHORIZED, "missing or wrong admin API key")),
    }
}

async fn list_plugins(State(shared): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r.into_response();
    }
    let views: Vec<PluginView> = shared
        .components
        .all()
        .into_iter()
        .map(|(p, enabled)| {
            let prov = p.provenance.lock().expect("provenance lock").clone();
            let calls = p.stats.calls.load(Relaxed);
            PluginView {
                name: p.name.clone(),
                version: prov.version,
                digest: p.digest.clone(),
                signature: prov
                    .signed_by
                    .map(|k| format!("verified by {k}"))
                    .unwrap_or_else(|| "unverified".into()),
                hooks: HookName::ALL
                    .into_iter()
                    .filter(|h| p.has_hook(*h))
                    .map(HookName::as_str)
                    .collect(),
                enabled,
                calls,
                errors: p.stats.errors.load(Relaxed),
                timeouts: p.stats.timeouts.load(Relaxed),
                cached_decisions: p.stats.cached.load(Relaxed),
                pure: HookName::ALL
                    .into_iter()
                    .filter(|h| p.is_pure(*h))
                    .map(HookName::as_str)
                    .collect(),
                contract: p.contract(),
                p99_call_us: p.stats.quantile_us(0.99),
                mean_call_us: if calls == 0 {
                    0.0
                } else {
                    p.stats.total_ns.load(Relaxed) as f64 / calls as f64 / 1000.0
                },
            }
        })
        .collect();
    Json(views).into_response()
}

async fn reload(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r.into_response();
    }
    // Loading compiles wasm: keep it off the async workers.
    let s = shared.clone();
    let result = tokio::task::spawn_blocking(move || s.components.reload(&name, s.publish())).await;
    match result {
        Ok(Ok(digest)) => (StatusCode::OK, Json(serde_json::json!({ "reloaded": true, "digest": digest }))).into_response(),
        Ok(Err(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "reloaded": false, "error": e.to_string(), "still_serving": "previous version" })),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn disable(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    toggle(shared, headers, name, false).await
}

async fn enable(
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    toggle(shared, headers, name, true).await
}

async fn toggle(shared: Arc<AdminState>, headers: HeaderMap, name: String, on: bool) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r.into_response();
    }
    match shared.components.set_enabled(&name, on, shared.publish()) {
        Ok(()) => (
            StatusCode::OK,
            Json(serde_json::json!({ "name": name, "enabled": on })),
        )
            .into_response(),
        Err(e) => (StatusCode::NOT_FOUND, e).into_response(),
    }
}
