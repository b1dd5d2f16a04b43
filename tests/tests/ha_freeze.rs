//! A primary that stops answering without crashing, under 8 writing clients: frozen with
//! SIGSTOP for 6 s, or cut off from the proxy (a chaos partition) and from its standby (its
//! replication stopped), so the standby has lost it too. The proxy promotes the standby, the
//! requests in flight on the old primary move like after a crash (no client stays blocked,
//! no acknowledged commit is lost), and when the old primary answers again it is fenced:
//! read-only, so nothing more commits there.

use std::time::{Duration, Instant};

use helios_tests::signals::freeze;
use helios_tests::write_load::{self, WriteLoad};
use helios_tests::*;

const KEY: &str = "freeze-key";

async fn topology(proxy: &heliosproxy::ProxyHandle) -> serde_json::Value {
    let (code, body) = admin_http(proxy.admin_addr, "GET", "/api/topology", Some(KEY), None).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn wait_for_primary(proxy: &heliosproxy::ProxyHandle, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while topology(proxy).await["primary"] != name {
        assert!(Instant::now() < deadline, "{:#}", topology(proxy).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the old primary refuses writes, and checks that it does.
async fn wait_fenced(old: &Pg) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(c) = connect(&old.direct("postgres")).await {
            let on = c
                .query_one("show default_transaction_read_only", &[])
                .await
                .map(|r| r.get::<_, String>(0) == "on")
                .unwrap_or(false);
            if on {
                let e = c
                    .batch_execute("insert into ledger values (-1, -1)")
                    .await
                    .expect_err("the fenced node refuses writes");
                assert_eq!(e.code().map(|c| c.code()), Some("25006"), "{e}");
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the old primary was never fenced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn report(what: &str, outcome: &write_load::LoadOutcome, missing: usize, t: &serde_json::Value) {
    println!(
        "{what}: longest client-visible pause {:?}, {} commits acknowledged, {} blocked, \
         client errors {:?}, {missing} acknowledged commits missing; sessions {}; last failover {}",
        outcome.pause,
        outcome.acked(),
        outcome.blocked,
        outcome.errors(),
        t["sessions"],
        t["last_failover"]
    );
}

fn assert_clean(outcome: &write_load::LoadOutcome, missing: usize) {
    assert_eq!(outcome.blocked, 0, "clients stayed blocked");
    assert_eq!(
        missing, 0,
        "acknowledged commits missing on the new primary"
    );
    assert!(
        outcome.errors().is_empty(),
        "client errors: {:?}",
        outcome.errors()
    );
    let pause = outcome.pause.expect("commits resumed");
    assert!(pause < Duration::from_secs(5), "pause {pause:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_primary_is_replaced_and_fenced_and_no_client_stays_blocked() {
    let (primary, standby) = start_ha_pair(true).await;
    write_load::prepare(&primary, 8).await;
    let mut config = ha_proxy_config(&primary, &standby);
    config.admin.api_key = Some(KEY.into());
    let proxy = start_proxy(config).await;
    let load = WriteLoad::start(&via_proxy(&proxy, "postgres", "postgres"), 8);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let frozen = freeze(&primary);
    load.disrupted();
    wait_for_primary(&proxy, "replica").await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    frozen.thaw();
    let outcome = load.finish(Duration::from_secs(20)).await;
    let t = topology(&proxy).await;
    let missing = outcome.missing_on(&standby).await;
    report("freeze", &outcome, missing, &t);
    assert_eq!(t["last_failover"]["kind"], "failover", "{t:#}");
    assert_clean(&outcome, missing);
    wait_fenced(&primary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_primary_is_replaced_and_fenced_when_it_is_reachable_again() {
    let (primary, standby) = start_ha_pair(true).await;
    write_load::prepare(&primary, 8).await;
    let mut config = ha_proxy_config(&primary, &standby);
    config.admin.api_key = Some(KEY.into());
    config.chaos.enabled = true;
    let proxy = start_proxy(config).await;
    let load = WriteLoad::start(&via_proxy(&proxy, "postgres", "postgres"), 8);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The standby loses the primary too: without that evidence the proxy would not promote
    // (see ha_evidence.rs).
    let s = connect(&standby.direct("postgres")).await.unwrap();
    s.batch_execute("alter system set primary_conninfo = ''")
        .await
        .unwrap();
    s.batch_execute("select pg_reload_conf()").await.unwrap();
    let (code, body) = admin_http(
        proxy.admin_addr,
        "POST",
        "/api/chaos",
        Some(KEY),
        Some(r#"{"node":"pg1","fault":"partition","duration_s":6}"#),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    load.disrupted();
    wait_for_primary(&proxy, "replica").await;
    let outcome = load.finish(Duration::from_secs(20)).await;
    let t = topology(&proxy).await;
    let missing = outcome.missing_on(&standby).await;
    report("partition", &outcome, missing, &t);
    assert_clean(&outcome, missing);
    // The partition ends by itself; then the old primary is fenced.
    wait_fenced(&primary).await;
}
