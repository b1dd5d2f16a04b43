//! Failover leaves a cluster that can take writes: a standby cloned with
//! `synchronous_standby_names` set would, once promoted, make every COMMIT wait forever for
//! a synchronous standby that no longer exists. The proxy clears the setting on the new
//! primary (`[ha] relax_synchronous_standbys`, on by default) and says so in
//! `/api/topology`.

use std::time::Duration;

use helios_tests::heliosproxy::config::{Config, HaConfig, NodeRole, PoolMode};
use helios_tests::sync_pair::start_inheriting_sync_pair;
use helios_tests::*;

const KEY: &str = "ha-sync-key";

fn ha_config(primary: &Pg, standby: &Pg, relax: bool) -> Config {
    let mut c = proxy_config(primary, PoolMode::Transaction, 4);
    c.nodes[0].name = "pg1".into();
    c.nodes[0].role = NodeRole::Auto;
    add_replica(&mut c, standby, "replica", &[]);
    c.nodes[1].role = NodeRole::Auto;
    c.ha = Some(HaConfig {
        check_interval_ms: 100,
        retry_interval_ms: 50,
        check_timeout_ms: 500,
        failure_threshold: 2,
        relax_synchronous_standbys: relax,
        ..HaConfig::default()
    });
    c.admin.api_key = Some(KEY.into());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_standby_with_inherited_synchronous_standbys_takes_writes() {
    let (primary, standby) = start_inheriting_sync_pair().await;
    let proxy = start_proxy(ha_config(&primary, &standby, true)).await;
    let c = connect(&via_proxy(&proxy, "postgres", "postgres"))
        .await
        .unwrap();
    c.batch_execute("create table after_failover (x int)")
        .await
        .unwrap();
    kill_9(&primary);
    let mut promoted = false;
    for _ in 0..200 {
        let (_, body) = admin_http(proxy.admin_addr, "GET", "/api/topology", Some(KEY), None).await;
        let t: serde_json::Value = serde_json::from_str(&body).unwrap();
        if t["primary"] == "replica" && t["switching"] == false {
            promoted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(promoted, "the standby was promoted");
    // Its commit must come back, not hang.
    let write = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match c
                .batch_execute("insert into after_failover values (1)")
                .await
            {
                Ok(()) => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    assert!(
        write.is_ok(),
        "a commit on the promoted standby did not return"
    );
    let direct = connect(&standby.direct("postgres")).await.unwrap();
    let names: String = direct
        .query_one("select current_setting('synchronous_standby_names')", &[])
        .await
        .unwrap()
        .get(0);
    let (_, body) = admin_http(proxy.admin_addr, "GET", "/api/topology", Some(KEY), None).await;
    assert_eq!(names, "", "cleared on the new primary: {body}");
    let n: i64 = direct
        .query_one("select count(*) from after_failover", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n >= 1);
    let (code, body) = admin_http(proxy.admin_addr, "GET", "/api/topology", Some(KEY), None).await;
    assert_eq!(code, 200);
    let t: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["primary"], "replica", "{t}");
    assert_eq!(t["relaxed_synchronous_standbys"]["node"], "replica", "{t}");
    assert_eq!(
        t["relaxed_synchronous_standbys"]["previous"], "replica",
        "{t}"
    );
}
