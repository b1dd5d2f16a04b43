//! Malformed bytes get a clear error, lose nothing, and never stop the proxy serving others.

use std::time::Duration;

use helios_tests::heliosproxy::config::PoolMode;
use helios_tests::heliosproxy::wire::frame::split_message;
use helios_tests::heliosproxy::wire::messages::ErrorFields;
use helios_tests::heliosproxy::wire::startup::encode_startup;
use helios_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads messages until an ErrorResponse (returned) or `ReadyForQuery` (None) or EOF.
async fn read_until_error_or_ready(s: &mut TcpStream) -> Option<ErrorFields> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Ok(Some((tag, body))) = split_message(&buf, 1 << 20) {
            let len = 5 + body.len();
            match tag {
                b'E' => return Some(ErrorFields::parse(body).unwrap()),
                b'Z' => return None,
                _ => {}
            }
            buf.drain(..len);
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn logged_in(proxy: &heliosproxy::server::ProxyHandle, db: &str) -> TcpStream {
    let mut s = TcpStream::connect(proxy.local_addr).await.unwrap();
    let mut out = Vec::new();
    encode_startup(&mut out, &[("user", "postgres"), ("database", db)]);
    s.write_all(&out).await.unwrap();
    assert!(
        read_until_error_or_ready(&mut s).await.is_none(),
        "login succeeded"
    );
    s
}

async fn still_serves(proxy: &heliosproxy::server::ProxyHandle, db: &str) {
    let c = connect(&via_proxy(proxy, "postgres", db)).await.unwrap();
    assert_eq!(
        c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_startup_packet_is_refused() {
    let pg = shared_pg();
    create_database(pg, "bad_garbage").await;
    let proxy = start_proxy(proxy_config(pg, PoolMode::Transaction, 2)).await;
    let mut s = TcpStream::connect(proxy.local_addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let err = read_until_error_or_ready(&mut s)
        .await
        .expect("an error response");
    assert_eq!(err.code, "08P01");
    assert!(err.message.contains("startup"), "{}", err.message);
    still_serves(&proxy, "bad_garbage").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_gib_length_field_is_refused_without_reading_it() {
    let pg = shared_pg();
    create_database(pg, "bad_len").await;
    let proxy = start_proxy(proxy_config(pg, PoolMode::Transaction, 2)).await;
    let mut s = logged_in(&proxy, "bad_len").await;
    s.write_all(&[b'Q', 0x7f, 0xff, 0xff, 0xff, b's'])
        .await
        .unwrap();
    let err = read_until_error_or_ready(&mut s)
        .await
        .expect("an error response");
    assert_eq!(err.code, "54000");
    assert!(err.message.contains("exceeds"), "{}", err.message);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "connection closed after the fatal error");
    still_serves(&proxy, "bad_len").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_protocol_violations() {
    let pg = shared_pg();
    create_database(pg, "bad_msgs").await;
    let proxy = start_proxy(proxy_config(pg, PoolMode::Transaction, 2)).await;
    for bad in [
        vec![b'Q', 0, 0, 0, 3],                // length below 4
        vec![b'P', 0, 0, 0, 7, b'x', 0, b'y'], // Parse without terminators
        vec![b'?', 0, 0, 0, 4],                // unknown message type
        vec![b'B', 0, 0, 0, 6, 0, 0],          // Bind cut short
    ] {
        let mut s = logged_in(&proxy, "bad_msgs").await;
        s.write_all(&bad).await.unwrap();
        let err = read_until_error_or_ready(&mut s)
            .await
            .expect("an error response");
        assert_eq!(err.code, "08P01", "for {bad:?}: {}", err.message);
    }
    still_serves(&proxy, "bad_msgs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_startup_is_dropped() {
    let pg = shared_pg();
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.limits.client_login_timeout_ms = 300;
    let proxy = start_proxy(config).await;
    let mut s = TcpStream::connect(proxy.local_addr).await.unwrap();
    s.write_all(&[0, 0, 0, 100]).await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
}

/// Empty and blank queries in both protocols, with the journal, analytics and the guardrail
/// on (each looks at the text): answered as PostgreSQL answers them, and the proxy keeps
/// serving (an empty query once aborted the whole process in PostgreSQL's scanner bindings).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_blank_queries_are_answered_and_crash_nothing() {
    let pg = shared_pg();
    create_database(pg, "bad_empty").await;
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.journal = Some(helios_tests::heliosproxy::config::JournalConfig {
        dir: temp_dir("empty-journal"),
        ..Default::default()
    });
    config
        .plugins
        .push(plugin("guardrail", "helios-llm-guardrail", &[], ""));
    let proxy = start_proxy(config).await;
    let c = connect(&via_proxy(&proxy, "postgres", "bad_empty"))
        .await
        .unwrap();
    for text in ["", " ", "\n\t", ";", "-- nothing", "/* nothing */"] {
        c.simple_query(text)
            .await
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        c.query(text, &[])
            .await
            .unwrap_or_else(|e| panic!("{text:?} (extended): {e}"));
    }
    still_serves(&proxy, "bad_empty").await;
}
