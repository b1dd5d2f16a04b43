//! The admin API as JSON: one request, the status code and the body parsed (a body that is
//! not JSON comes back as a JSON string).

use crate::admin_http;

/// Sends `method path` with `key` and `body`; returns the status and the body as JSON.
pub async fn admin_json(
    proxy: &heliosproxy::server::ProxyHandle,
    key: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let (code, text) = admin_http(proxy.admin_addr, method, path, Some(key), body).await;
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (code, value)
}
