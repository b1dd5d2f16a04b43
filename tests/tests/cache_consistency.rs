//! When could a cached answer differ from PostgreSQL's? Across proxies and nodes: a lagging
//! replica's answer, an invalidation that did not reach Redis, a result stored in Redis
//! after a write's invalidation passed. Each is a sequence a user could run, against real
//! PostgreSQL servers and a real Redis; a proxy's own link to Redis is slowed or cut with
//! [`Link`] while the other proxies' links are fine.

use std::time::{Duration, Instant};

use helios_tests::cache::{cached_config, warm};
use helios_tests::heliosproxy::config::Grant;
use helios_tests::link::Link;
use helios_tests::redis::Redis;
use helios_tests::*;

/// A read a lagging replica answers after a commit's invalidation is not stored: once the
/// replica has caught up, the next read sees the committed row, not the replica's old one
/// kept for the TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_a_lagging_replica_are_not_stored() {
    let (primary, replica) = start_primary_and_replica().await;
    let direct = connect(&primary.direct("postgres")).await.unwrap();
    direct
        .batch_execute(
            "create table lag_items (id int primary key, name text);
             insert into lag_items values (1, 'old')",
        )
        .await
        .unwrap();
    wait_for_replay(&primary, &replica).await;
    let mut config = cached_config(&primary, None);
    add_replica(&mut config, &replica, "replica1", &[]);
    config.plugins.push(plugin(
        "router",
        "helios-router",
        &[Grant::Topology, Grant::Clock],
        "",
    ));
    let proxy = start_proxy(config).await;
    let c = connect(&via_proxy(&proxy, "postgres", "postgres"))
        .await
        .unwrap();
    assert_eq!(
        rows(
            &c.simple_query("select pg_is_in_recovery()::text")
                .await
                .unwrap()
        ),
        vec![vec![Some("true".into())]],
        "reads go to the replica"
    );
    let read = "select name from lag_items where id = 1";
    let on_replica = connect(&replica.direct("postgres")).await.unwrap();
    on_replica
        .batch_execute("select pg_wal_replay_pause()")
        .await
        .unwrap();
    c.batch_execute("update lag_items set name = 'new' where id = 1")
        .await
        .unwrap();
    // The replica still answers `old`: it is behind the invalidation.
    assert_eq!(warm(&c, read).await[0][0].as_deref(), Some("old"));
    on_replica
        .batch_execute("select pg_wal_replay_resume()")
        .await
        .unwrap();
    wait_for_replay(&primary, &replica).await;
    assert_eq!(
        rows(&c.simple_query(read).await.unwrap())[0][0].as_deref(),
        Some("new"),
        "the lagging replica's answer was not kept"
    );
}

async fn table(db: &str, name: &str) {
    let pg = shared_pg();
    create_database(pg, db).await;
    connect(&pg.direct(db))
        .await
        .unwrap()
        .batch_execute(&format!(
            "create table {name} (id int primary key, v text); \
             insert into {name} values (1, 'before')"
        ))
        .await
        .unwrap();
}

/// Proxy A's store into Redis is slow (its link holds each command 800 ms); a write through
/// proxy B commits and invalidates while A's store is on its way. The late store must not
/// become an answer: a third proxy reading through Redis sees the committed row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_stored_in_redis_after_a_writes_invalidation_is_never_served() {
    let db = "cache_late_store";
    table(db, "late").await;
    let pg = shared_pg();
    let redis = Redis::start();
    let slow = Link::start(redis.port).await;
    let mut config = cached_config(pg, Some(slow.redis_url()));
    if let Some(l2) = config.cache.as_mut().and_then(|c| c.l2.as_mut()) {
        l2.timeout_ms = 5000;
    }
    let a = start_proxy(config).await;
    let b = start_proxy(cached_config(pg, Some(redis.url()))).await;
    let ca = connect(&via_proxy(&a, "postgres", db)).await.unwrap();
    let cb = connect(&via_proxy(&b, "postgres", db)).await.unwrap();
    let read = "select v from late where id = 1";
    // A learns from the catalog that `late` is a table, then misses and stores slowly.
    ca.simple_query(read).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    slow.set_delay(Duration::from_millis(800));
    // Control: with no write in between, A's slow store does land in Redis.
    let stored = || {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &redis.port.to_string(),
                "--scan",
                "--pattern",
                "*:r2:*",
            ])
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    ca.simple_query("select count(*) from late").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    ca.simple_query("select count(*) from late").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(stored(), 1, "A's store through the slow link lands");
    let got = rows(&ca.simple_query(read).await.unwrap());
    assert_eq!(got[0][0].as_deref(), Some("before"));
    cb.batch_execute("update late set v = 'after' where id = 1")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    slow.set_delay(Duration::ZERO);
    assert_eq!(stored(), 1, "the late store was refused");
    let c = start_proxy(cached_config(pg, Some(redis.url()))).await;
    let cc = connect(&via_proxy(&c, "postgres", db)).await.unwrap();
    for _ in 0..3 {
        let got = rows(&cc.simple_query(read).await.unwrap());
        assert_eq!(
            got[0][0].as_deref(),
            Some("after"),
            "a result read before the write, stored after it, was served from Redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Proxy A's link to Redis is cut when a write through A commits: the invalidation cannot
/// reach Redis or proxy B, which holds the old row. It is retried until Redis takes it, so
/// once the link is back B stops answering the old row within seconds, not the TTL (60 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_redis_missed_reaches_the_other_proxies_once_it_is_back() {
    let db = "cache_lost_invalidation";
    table(db, "lost").await;
    let pg = shared_pg();
    let redis = Redis::start();
    let link = Link::start(redis.port).await;
    let a = start_proxy(cached_config(pg, Some(link.redis_url()))).await;
    let b = start_proxy(cached_config(pg, Some(redis.url()))).await;
    let ca = connect(&via_proxy(&a, "postgres", db)).await.unwrap();
    let cb = connect(&via_proxy(&b, "postgres", db)).await.unwrap();
    let read = "select v from lost where id = 1";
    assert_eq!(warm(&cb, read).await[0][0].as_deref(), Some("before"));
    link.cut();
    ca.batch_execute("update lost set v = 'after' where id = 1")
        .await
        .unwrap();
    assert_eq!(
        rows(&ca.simple_query(read).await.unwrap())[0][0].as_deref(),
        Some("after"),
        "the writer's own proxy dropped its entry at once"
    );
    link.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = rows(&cb.simple_query(read).await.unwrap());
        if got[0][0].as_deref() == Some("after") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "proxy B still answers the row from before the write, 10 s after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
