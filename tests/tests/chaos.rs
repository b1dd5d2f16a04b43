//! Chaos mode through the admin API, as an operator drives it with curl: faults on the
//! proxy's traffic to a node (latency, an error, a dropped connection, a partition) that
//! revert by themselves, and the refusals: chaos off, an unknown node, an overlap, bad
//! values.

use std::time::{Duration, Instant};

use helios_tests::heliosproxy::config::PoolMode;
use helios_tests::*;

async fn post(proxy: &heliosproxy::ProxyHandle, body: &str) -> (u16, String) {
    admin_http(
        proxy.admin_addr,
        "POST",
        "/api/chaos",
        Some("k"),
        Some(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_apply_to_a_node_and_revert_by_themselves() {
    let pg = shared_pg();
    let mut off = proxy_config(pg, PoolMode::Transaction, 2);
    off.admin.api_key = Some("k".into());
    let off = start_proxy(off).await;
    let (code, body) = post(
        &off,
        r#"{"node":"primary","fault":"latency","latency_ms":100,"duration_s":5}"#,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("[chaos] enabled"), "{body}");

    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.admin.api_key = Some("k".into());
    config.chaos.enabled = true;
    let proxy = start_proxy(config).await;
    let c = connect(&via_proxy(&proxy, "postgres", "postgres"))
        .await
        .unwrap();
    c.simple_query("select 1").await.unwrap();

    for (body, want) in [
        (
            r#"{"node":"nope","fault":"latency","latency_ms":5,"duration_s":5}"#,
            404,
        ),
        (
            r#"{"node":"primary","fault":"latency","duration_s":5}"#,
            400,
        ),
        (
            r#"{"node":"primary","fault":"error","probability":2,"duration_s":5}"#,
            400,
        ),
        (r#"{"node":"primary","fault":"melt","duration_s":5}"#, 400),
        (r#"{"node":"primary","fault":"error","duration_s":0}"#, 400),
    ] {
        let (code, text) = post(&proxy, body).await;
        assert_eq!(code, want, "{body}: {text}");
    }

    // Latency: every statement waits; an overlapping latency fault is refused; DELETE ends it.
    let (code, body) = post(
        &proxy,
        r#"{"node":"primary","fault":"latency","latency_ms":300,"duration_s":30}"#,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let fault: serde_json::Value = serde_json::from_str(&body).unwrap();
    let started = Instant::now();
    c.simple_query("select 1").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        post(
            &proxy,
            r#"{"node":"primary","fault":"latency","latency_ms":5,"duration_s":5}"#
        )
        .await
        .0,
        409
    );
    let (code, active) = admin_http(
        proxy.admin_addr,
        "GET",
        "/api/chaos/active",
        Some("k"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        active.contains("\"latency\"") && active.contains("\"primary\""),
        "{active}"
    );
    let path = format!("/api/chaos/{}", fault["id"]);
    assert_eq!(
        admin_http(proxy.admin_addr, "DELETE", &path, Some("k"), None)
            .await
            .0,
        204
    );
    assert_eq!(
        admin_http(proxy.admin_addr, "DELETE", &path, Some("k"), None)
            .await
            .0,
        404
    );
    let started = Instant::now();
    c.simple_query("select 1").await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));

    // An error with the SQLSTATE asked for, until the fault's time is up.
    let (code, body) = post(
        &proxy,
        r#"{"node":"primary","fault":"error","sqlstate":"53300","duration_s":1}"#,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let e = c.simple_query("select 1").await.unwrap_err();
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("53300"),
        "{e}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.simple_query("select 1")
        .await
        .expect("the fault reverted by itself");

    // A dropped server connection: the statement fails, the proxy serves the next one.
    let (code, _) = post(
        &proxy,
        r#"{"node":"primary","fault":"drop_connection","duration_s":1}"#,
    )
    .await;
    assert_eq!(code, 201);
    let c2 = connect(&via_proxy(&proxy, "postgres", "postgres"))
        .await
        .unwrap();
    assert!(c2.simple_query("select 1").await.is_err());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let c3 = connect(&via_proxy(&proxy, "postgres", "postgres"))
        .await
        .unwrap();
    c3.simple_query("select 1")
        .await
        .expect("after the drop fault");

    // A partition: no new connection reaches the node while it lasts.
    let (code, _) = post(
        &proxy,
        r#"{"node":"primary","fault":"partition","duration_s":1}"#,
    )
    .await;
    assert_eq!(code, 201);
    proxy.shared.pools.close_idle_on("primary");
    let e = c3.simple_query("select 1").await.unwrap_err();
    assert!(db_message(&e).contains("partitioned"), "{e}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c3.simple_query("select 1").await.expect("reachable again");
}
