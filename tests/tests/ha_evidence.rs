//! Failover decided on evidence, not on one proxy's view: a proxy that loses its own link
//! to a live primary (its standby still streams from it) promotes nothing and fences
//! nothing, while another proxy keeps writing; and a proxy started after a failover finds
//! the primary by timeline (the old primary is writable-looking but on the old timeline),
//! not by config order.

use std::time::{Duration, Instant};

use helios_tests::*;

const KEY: &str = "evidence-key";

async fn topology(proxy: &heliosproxy::ProxyHandle) -> serde_json::Value {
    let (code, body) = admin_http(proxy.admin_addr, "GET", "/api/topology", Some(KEY), None).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn read_only(pg: &Pg) -> String {
    connect(&pg.direct("postgres"))
        .await
        .unwrap()
        .query_one("show default_transaction_read_only", &[])
        .await
        .unwrap()
        .get(0)
}

async fn in_recovery(pg: &Pg) -> bool {
    connect(&pg.direct("postgres"))
        .await
        .unwrap()
        .query_one("select pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_cut_off_from_a_live_primary_promotes_and_fences_nothing() {
    let (primary, standby) = start_ha_pair(false).await;
    connect(&primary.direct("postgres"))
        .await
        .unwrap()
        .batch_execute("create table evidence (n int)")
        .await
        .unwrap();
    let mut config = ha_proxy_config(&primary, &standby);
    config.admin.api_key = Some(KEY.into());
    config.chaos.enabled = true;
    // The breaker the partition opens lets probes through after a second.
    if let Some(ha) = config.ha.as_mut() {
        ha.breaker_reset_ms = 1000;
    }
    let a = start_proxy(config.clone()).await;
    let b = start_proxy(config).await;
    let writer = connect(&via_proxy(&a, "postgres", "postgres"))
        .await
        .unwrap();
    // Proxy B alone loses pg1; the standby and proxy A still reach it.
    let (code, body) = admin_http(
        b.admin_addr,
        "POST",
        "/api/chaos",
        Some(KEY),
        Some(r#"{"node":"pg1","fault":"partition","duration_s":4}"#),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let until = Instant::now() + Duration::from_secs(5);
    let mut writes = 0;
    while Instant::now() < until {
        writer
            .batch_execute("insert into evidence values (1)")
            .await
            .unwrap_or_else(|e| panic!("proxy A's write {writes} failed: {}", db_message(&e)));
        writes += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!in_recovery(&primary).await);
    assert!(in_recovery(&standby).await, "the standby was not promoted");
    assert_eq!(
        read_only(&primary).await,
        "off",
        "the live primary was not fenced"
    );
    let t = topology(&b).await;
    assert_eq!(t["primary"], "pg1", "{t:#}");
    // Once its link is back, proxy B writes to pg1 again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let through_b = connect(&via_proxy(&b, "postgres", "postgres"))
        .await
        .unwrap();
    while let Err(e) = through_b
        .batch_execute("insert into evidence values (2)")
        .await
    {
        assert!(
            Instant::now() < deadline,
            "proxy B cannot write after the partition: {}",
            db_message(&e)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("proxy A wrote {writes} times during proxy B's partition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_started_after_a_failover_adopts_the_new_primary() {
    let (primary, standby) = start_ha_pair(false).await;
    let mut config = ha_proxy_config(&primary, &standby);
    config.admin.api_key = Some(KEY.into());
    {
        let first = start_proxy(config.clone()).await;
        let (code, body) = admin_http(
            first.admin_addr,
            "POST",
            "/api/topology/switchover",
            Some(KEY),
            Some(r#"{"target":"replica"}"#),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        assert!(!in_recovery(&standby).await);
        assert_eq!(read_only(&primary).await, "on", "the old primary is fenced");
    }
    // Both nodes answer as writable-looking servers; config order names pg1 first.
    let restarted = start_proxy(config).await;
    let t = topology(&restarted).await;
    assert_eq!(t["primary"], "replica", "{t:#}");
    let c = connect(&via_proxy(&restarted, "postgres", "postgres"))
        .await
        .unwrap();
    let port: i32 = c
        .query_one("select inet_server_port()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        port,
        i32::from(standby.port),
        "queries go to the new primary"
    );
    c.batch_execute("create table after_restart (n int)")
        .await
        .unwrap_or_else(|e| panic!("{}", db_message(&e)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        read_only(&standby).await,
        "off",
        "the new primary was not fenced by the restarted proxy"
    );
}
