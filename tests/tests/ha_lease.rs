//! Several proxies, one decision: a primary with two standbys and two proxies. When each
//! proxy can reach only one standby (chaos partitions crossed) and the primary dies, neither
//! holds a majority of the failover lease, so no standby is promoted — never two. With every
//! link up, one proxy promotes a standby and the other follows it.

use std::time::{Duration, Instant};

use helios_tests::*;

const KEY: &str = "lease-key";

async fn writable(pg: &Pg) -> Option<bool> {
    let c = connect(&pg.direct("postgres")).await.ok()?;
    let r = c.query_one("select pg_is_in_recovery()", &[]).await.ok()?;
    Some(!r.get::<_, bool>(0))
}

async fn cluster() -> (Pg, Pg, Pg) {
    let primary = start_pg(heliosproxy::embedded::HostAuth::Trust, None);
    let settings = |name: &str| {
        format!(
            "\ncluster_name = '{name}'\nwal_retrieve_retry_interval = '200ms'\nwal_receiver_timeout = '2s'\n"
        )
    };
    let a = start_standby_of(&primary, &settings("replica"));
    let b = start_standby_of(&primary, &settings("replica2"));
    let p = connect(&primary.direct("postgres")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = p
            .query_one(
                "select count(*) from pg_stat_replication where state = 'streaming'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the standbys did not stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (primary, a, b)
}

fn config(primary: &Pg, a: &Pg, b: &Pg) -> heliosproxy::config::Config {
    let mut config = ha_proxy_config(primary, a);
    add_replica(&mut config, b, "replica2", &[]);
    config.nodes[2].role = heliosproxy::config::NodeRole::Auto;
    config.admin.api_key = Some(KEY.into());
    config.chaos.enabled = true;
    config
}

async fn partition(proxy: &heliosproxy::ProxyHandle, node: &str) {
    let (code, body) = admin_http(
        proxy.admin_addr,
        "POST",
        "/api/chaos",
        Some(KEY),
        Some(&format!(
            r#"{{"node":"{node}","fault":"partition","duration_s":60}}"#
        )),
    )
    .await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_that_each_see_one_standby_never_promote_two() {
    let (primary, a, b) = cluster().await;
    let one = start_proxy(config(&primary, &a, &b)).await;
    let two = start_proxy(config(&primary, &a, &b)).await;
    partition(&one, "replica2").await;
    partition(&two, "replica").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill_9(&primary);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let promoted = [writable(&a).await, writable(&b).await];
    assert_ne!(
        promoted,
        [Some(true), Some(true)],
        "two proxies promoted two standbys: split brain"
    );
    println!("after the crash with crossed partitions: writable = {promoted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_link_up_one_standby_is_promoted_and_both_proxies_follow_it() {
    let (primary, a, b) = cluster().await;
    let one = start_proxy(config(&primary, &a, &b)).await;
    let two = start_proxy(config(&primary, &a, &b)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill_9(&primary);
    let deadline = Instant::now() + Duration::from_secs(30);
    let primary_of = |p: &heliosproxy::ProxyHandle| {
        let addr = p.admin_addr;
        async move {
            let (_, body) = admin_http(addr, "GET", "/api/topology", Some(KEY), None).await;
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["primary"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    loop {
        let (x, y) = (primary_of(&one).await, primary_of(&two).await);
        if x != "pg1" && x == y {
            break;
        }
        assert!(Instant::now() < deadline, "the proxies disagree: {x} / {y}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let promoted = [writable(&a).await, writable(&b).await];
    assert_eq!(
        promoted.iter().filter(|w| **w == Some(true)).count(),
        1,
        "exactly one standby was promoted: {promoted:?}"
    );
}
