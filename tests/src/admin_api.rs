//! The admin API over plain HTTP/1.1: one request with any headers, the status code and the
//! body (as text, or parsed as JSON: a body that is not JSON comes back as a JSON string).

use std::time::Duration;

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

/// One HTTP/1.1 request to the admin API; returns the status code and the body.
pub async fn admin_http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let headers: Vec<(&str, &str)> = key.map(|k| ("X-API-Key", k)).into_iter().collect();
    admin_http_with(addr, method, path, &headers, body).await
}

/// Like [`admin_http`], with any request `headers`.
pub async fn admin_http_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let body = body.unwrap_or("");
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}
