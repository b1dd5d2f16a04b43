//! Back to full redundancy after a failover (`[ha] rejoin`): a primary with two streaming
//! standbys freezes; the proxy promotes one, re-points the other at it, and when the old
//! primary wakes up (a primary still, on the old timeline) fences it, rewinds it with
//! `pg_rewind` and starts it as a standby of the new primary. Asserted on the servers:
//! who streams from whom, and that a write through the proxy reaches every node.

use std::time::{Duration, Instant};

use helios_tests::*;

const KEY: &str = "rejoin-key";

async fn poll<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The port the server's WAL receiver streams from (`None` when it does not stream).
async fn streams_from(pg: &Pg) -> Option<i32> {
    let c = connect(&pg.direct("postgres")).await.ok()?;
    c.query_opt(
        "select sender_port from pg_stat_wal_receiver where status = 'streaming'",
        &[],
    )
    .await
    .ok()?
    .map(|r| r.get(0))
}

async fn has_row(pg: &Pg, n: i32) -> bool {
    let Ok(c) = connect(&pg.direct("postgres")).await else {
        return false;
    };
    c.query_opt("select 1 from rejoin where n = $1", &[&n])
        .await
        .is_ok_and(|r| r.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_standbys_follow_the_new_primary_and_the_old_one_rejoins() {
    let primary = start_pg(heliosproxy::embedded::HostAuth::Trust, None);
    // pg_rewind needs hint bits logged (or checksums) on the server it rewinds.
    let c = connect(&primary.direct("postgres")).await.unwrap();
    c.batch_execute("alter system set wal_log_hints = on")
        .await
        .unwrap();
    // …and the old primary's WAL back to the last checkpoint before the fork.
    c.batch_execute("alter system set wal_keep_size = '256MB'")
        .await
        .unwrap();
    c.batch_execute("create table rejoin (n int primary key)")
        .await
        .unwrap();
    drop(c);
    stop(&primary);
    restart(&primary);
    // A frozen primary is lost to its standbys after 2 s: the evidence failover waits for.
    let retry = "\nwal_retrieve_retry_interval = '200ms'\nwal_receiver_timeout = '2s'\n";
    let a = start_standby_of(&primary, &format!("cluster_name = 'replica'{retry}"));
    let b = start_standby_of(&primary, &format!("cluster_name = 'replica2'{retry}"));
    for s in [&a, &b] {
        poll("the standby streams", 20, || async {
            streams_from(s).await.is_some()
        })
        .await;
    }
    let mut config = ha_proxy_config(&primary, &a);
    add_replica(&mut config, &b, "replica2", &[]);
    config.nodes[2].role = heliosproxy::config::NodeRole::Auto;
    config.nodes[0].data_dir = Some(primary.data_dir.clone());
    config.ha.as_mut().unwrap().rejoin = true;
    config.admin.api_key = Some(KEY.into());
    let proxy = start_proxy(config).await;
    let client = connect(&via_proxy(&proxy, "postgres", "postgres"))
        .await
        .unwrap();
    client
        .batch_execute("insert into rejoin values (1)")
        .await
        .unwrap();
    // A checkpoint both sides share: pg_rewind starts from the last one before the fork.
    let c = connect(&primary.direct("postgres")).await.unwrap();
    c.batch_execute("checkpoint").await.unwrap();
    for s in [&a, &b] {
        wait_for_replay(&primary, s).await;
    }

    let frozen = helios_tests::signals::freeze(&primary);
    let topology = || async {
        let (_, body) = admin_http(proxy.admin_addr, "GET", "/api/topology", Some(KEY), None).await;
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    poll("a standby was promoted", 20, || async {
        topology().await["primary"] != "pg1"
    })
    .await;
    let t = topology().await;
    let (new, other) = if t["primary"] == "replica" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let new_port = new.port as i32;
    poll("the other standby follows the new primary", 20, || async {
        streams_from(other).await == Some(new_port)
    })
    .await;
    // The client reconnects through the proxy and writes; the other standby has it.
    let client = connect(&via_proxy(&proxy, "postgres", "postgres"))
        .await
        .unwrap();
    client
        .batch_execute("insert into rejoin values (2)")
        .await
        .unwrap();
    poll("the re-pointed standby replays new writes", 20, || async {
        has_row(other, 2).await
    })
    .await;

    // The old primary comes back on its old timeline: fenced, rewound, a standby again.
    frozen.thaw();
    poll(
        "the old primary was rewound into a standby of the new one",
        60,
        || async { streams_from(&primary).await == Some(new_port) },
    )
    .await;
    client
        .batch_execute("insert into rejoin values (3)")
        .await
        .unwrap();
    poll("the rejoined node replays new writes", 20, || async {
        has_row(&primary, 3).await
    })
    .await;
    poll("the topology shows it as a replica", 20, || async {
        topology().await["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "pg1" && n["role"] == "replica")
    })
    .await;
}

/// A rewind that cannot work (the old primary has neither `wal_log_hints` nor checksums, so
/// `pg_rewind` refuses) must not leave the old primary stopped: it is started again as it
/// was, fenced read-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rewind_leaves_the_old_primary_running_read_only() {
    let primary = start_pg(heliosproxy::embedded::HostAuth::Trust, None);
    let standby = start_standby_of(
        &primary,
        "\ncluster_name = 'replica'\nwal_retrieve_retry_interval = '200ms'\nwal_receiver_timeout = '2s'\n",
    );
    poll("the standby streams", 20, || async {
        streams_from(&standby).await.is_some()
    })
    .await;
    let started_before: String = connect(&primary.direct("postgres"))
        .await
        .unwrap()
        .query_one("select pg_postmaster_start_time()::text", &[])
        .await
        .unwrap()
        .get(0);
    let mut config = ha_proxy_config(&primary, &standby);
    config.nodes[0].data_dir = Some(primary.data_dir.clone());
    config.ha.as_mut().unwrap().rejoin = true;
    config.admin.api_key = Some(KEY.into());
    let proxy = start_proxy(config).await;
    let frozen = helios_tests::signals::freeze(&primary);
    poll("the standby was promoted", 20, || async {
        let (_, body) = admin_http(proxy.admin_addr, "GET", "/api/topology", Some(KEY), None).await;
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["primary"] == "replica"
    })
    .await;
    frozen.thaw();
    // Fenced, rewind tried and failed, started again: a new postmaster, read-only.
    poll(
        "the old primary runs again, read-only, after the failed rewind",
        60,
        || async {
            let Ok(c) = connect(&primary.direct("postgres")).await else {
                return false;
            };
            let Ok(row) = c
                .query_one(
                    "select pg_postmaster_start_time()::text, \
                     current_setting('default_transaction_read_only'), pg_is_in_recovery()",
                    &[],
                )
                .await
            else {
                return false;
            };
            let (started, read_only, recovering): (String, String, bool) =
                (row.get(0), row.get(1), row.get(2));
            started != started_before && read_only == "on" && !recovering
        },
    )
    .await;
}
