//! The result cache end to end: a cache-policy component (real wasm) decides, the kernel
//! answers hits in both protocols — with the backend stopped — invalidates on writes through
//! any proxy (two proxies sharing a real Redis), never hands one role's or search_path's
//! rows to another, and keeps serving from the backend when Redis dies.

use std::time::Duration;

use helios_tests::cache::{cached_config, warm};
use helios_tests::heliosproxy::embedded::HostAuth;
use helios_tests::heliosproxy::server::ProxyHandle;
use helios_tests::redis::Redis;
use helios_tests::*;

async fn cache_stats(proxy: &ProxyHandle) -> serde_json::Value {
    let (code, body) = admin_http(proxy.admin_addr, "GET", "/api/cache", Some("k"), None).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn l1_hits(v: &serde_json::Value) -> u64 {
    v["tiers"][0]["cache_hits"].as_u64().unwrap()
}

async fn items(pg: &Pg, db: &str) {
    create_database(pg, db).await;
    let d = connect(&pg.direct(db)).await.unwrap();
    d.batch_execute(
        "create table items (id int primary key, name text, price numeric(8,2));
         insert into items select g, 'item ' || g, g * 1.25 from generate_series(1, 20) g;
         create table uncached (x int); insert into uncached values (1);
         create view items_view as select * from items;",
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_are_answered_in_both_protocols_with_the_backend_stopped() {
    let pg = start_pg(HostAuth::Trust, None);
    items(&pg, "cache_hits").await;
    let proxy = start_proxy(cached_config(&pg, None)).await;
    let url = via_proxy(&proxy, "postgres", "cache_hits");
    let c = connect(&url).await.unwrap();

    let simple = "select id, name from items where id = 1";
    let expected = warm(&c, simple).await;
    assert_eq!(
        expected,
        vec![vec![Some("1".into()), Some("item 1".into())]]
    );
    assert!(
        l1_hits(&cache_stats(&proxy).await) >= 1,
        "the third run was a hit"
    );
    // Another spelling of the same statement shares the entry.
    let before = l1_hits(&cache_stats(&proxy).await);
    let other = rows(
        &c.simple_query("SELECT id,  name FROM items /* same */ WHERE id = 01")
            .await
            .unwrap(),
    );
    assert_eq!(other, expected);
    assert_eq!(
        l1_hits(&cache_stats(&proxy).await),
        before + 1,
        "a spelling hit"
    );
    // What the policy or the kernel refuses is never cached.
    for sql in [
        "select x from uncached",
        "select id, now() from items where id = 1",
        "select id from items_view where id = 1",
    ] {
        warm(&c, sql).await;
    }
    let hits = l1_hits(&cache_stats(&proxy).await);

    // tokio-postgres: prepare (Parse + Describe), then Bind/Execute, binary results.
    let extended = "select id, name, price from items where id = $1";
    let mut typed = Vec::new();
    for _ in 0..3 {
        let r = c.query(extended, &[&5i32]).await.unwrap();
        typed = r
            .iter()
            .map(|r| (r.get::<_, i32>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(typed, vec![(5, "item 5".to_owned())]);
    assert!(
        l1_hits(&cache_stats(&proxy).await) > hits,
        "an extended-protocol hit"
    );

    let warm_drivers = run_driver_script_args("cache_reads.py", &proxy, "cache_hits", &["3"]).await;

    stop(&pg);
    // Simple protocol, a new session too.
    assert_eq!(rows(&c.simple_query(simple).await.unwrap()), expected);
    let c2 = connect(&url).await.unwrap();
    assert_eq!(rows(&c2.simple_query(simple).await.unwrap()), expected);
    let r = c2.query(extended, &[&5i32]).await.unwrap();
    assert_eq!(r[0].get::<_, String>(1), "item 5");
    // Not cached: the backend is needed, and gone.
    assert!(c2.simple_query("select x from uncached").await.is_err());
    assert!(
        c2.simple_query("select id from items_view where id = 1")
            .await
            .is_err()
    );
    let down = run_driver_script_args("cache_reads.py", &proxy, "cache_hits", &["1", "down"]).await;
    let warm: serde_json::Value = serde_json::from_str(warm_drivers.trim()).unwrap();
    let down: serde_json::Value = serde_json::from_str(down.trim()).unwrap();
    for driver in ["psycopg_text", "psycopg_binary", "asyncpg"] {
        assert_eq!(warm[driver], down[driver], "{driver}: {down}");
        assert!(warm[driver][0].is_array(), "{warm}");
    }
    assert_eq!(down["uncached"], "error");
    restart(&pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_one_proxy_invalidate_the_other_and_rollbacks_do_not() {
    let redis = Redis::start();
    let pg = shared_pg();
    items(pg, "cache_shared").await;
    let a = start_proxy(cached_config(pg, Some(redis.url()))).await;
    let b = start_proxy(cached_config(pg, Some(redis.url()))).await;
    let ca = connect(&via_proxy(&a, "postgres", "cache_shared"))
        .await
        .unwrap();
    let cb = connect(&via_proxy(&b, "postgres", "cache_shared"))
        .await
        .unwrap();
    let read = "select name from items where id = 7";
    assert_eq!(warm(&cb, read).await[0][0].as_deref(), Some("item 7"));
    // A's L1 is empty: its first read of the same statement is answered by Redis (L2).
    let first = rows(&ca.simple_query(read).await.unwrap());
    assert_eq!(first[0][0].as_deref(), Some("item 7"));
    let sa = cache_stats(&a).await;
    assert_eq!(sa["tiers"][1]["cache_hits"].as_u64(), Some(1), "{sa}");

    // A commits a write: B's L1 and Redis lose the entry.
    ca.batch_execute("begin; update items set name = 'renamed' where id = 7; commit")
        .await
        .unwrap();
    let mut seen = None;
    for _ in 0..50 {
        let v = rows(&cb.simple_query(read).await.unwrap())[0][0].clone();
        if v.as_deref() == Some("renamed") {
            seen = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen.as_deref(),
        Some("renamed"),
        "B saw the committed write"
    );
    assert!(
        cache_stats(&b).await["tiers"][1]["invalidations"].as_u64() >= Some(1),
        "B heard of it through Redis"
    );
    // An autocommit write and a TRUNCATE invalidate too; a rolled-back one does not.
    warm(&cb, read).await;
    let hits = l1_hits(&cache_stats(&b).await);
    ca.batch_execute("begin; update items set name = 'never' where id = 7; rollback")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rows(&cb.simple_query(read).await.unwrap())[0][0].as_deref(),
        Some("renamed")
    );
    assert_eq!(
        l1_hits(&cache_stats(&b).await),
        hits + 1,
        "still a hit after the rollback"
    );
    ca.simple_query("update items set name = 'again' where id = 7")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rows(&cb.simple_query(read).await.unwrap())[0][0].as_deref(),
        Some("again")
    );
    // The admin API drops entries by table.
    warm(&ca, read).await;
    let (code, body) = admin_http(
        a.admin_addr,
        "POST",
        "/api/cache/invalidate",
        Some("k"),
        Some(r#"{"table": "items", "database": "cache_shared"}"#),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"invalidated\":1"), "{body}");
    let (code, _) = admin_http(
        a.admin_addr,
        "POST",
        "/api/cache/invalidate",
        Some("k"),
        Some("{}"),
    )
    .await;
    assert_eq!(code, 400);

    // Redis dies: statements keep working from the backend.
    let mut redis = redis;
    redis.kill();
    for i in 0..5 {
        let sql = format!("select name from items where id = {}", 10 + i);
        assert_eq!(
            rows(&ca.simple_query(&sql).await.unwrap())[0][0],
            Some(format!("item {}", 10 + i))
        );
    }
    ca.simple_query("update items set name = 'x' where id = 11")
        .await
        .unwrap();
    let stats = cache_stats(&a).await;
    assert_eq!(stats["redis_up"], false, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_search_paths_never_share_rows() {
    let pg = shared_pg();
    create_database(pg, "cache_leak").await;
    let d = connect(&pg.direct("cache_leak")).await.unwrap();
    d.batch_execute(
        "do $$ begin
           if not exists (select from pg_roles where rolname = 'alice') then create role alice login; end if;
           if not exists (select from pg_roles where rolname = 'bob') then create role bob login; end if;
         end $$;
         create table docs (owner text, body text);
         insert into docs values ('alice', 'alice secret'), ('bob', 'bob secret');
         alter table docs enable row level security;
         create policy mine on docs using (owner = current_user);
         grant select on docs to alice, bob;
         create table cols (id int, salary int);
         insert into cols values (1, 100);
         grant select (id, salary) on cols to alice;
         grant select (id) on cols to bob;
         grant alice, bob to postgres;
         create schema a; create schema b;
         create table a.t (v text); create table b.t (v text);
         insert into a.t values ('from a'); insert into b.t values ('from b');
         grant usage on schema a, b to alice, bob;
         grant select on a.t, b.t to alice, bob;",
    )
    .await
    .unwrap();
    let proxy = start_proxy(cached_config(pg, None)).await;
    let alice = connect(&via_proxy(&proxy, "alice", "cache_leak"))
        .await
        .unwrap();
    let bob = connect(&via_proxy(&proxy, "bob", "cache_leak"))
        .await
        .unwrap();
    let read = "select body from docs";
    assert_eq!(
        warm(&alice, read).await,
        vec![vec![Some("alice secret".into())]]
    );
    assert_eq!(
        warm(&bob, read).await,
        vec![vec![Some("bob secret".into())]]
    );
    assert_eq!(
        warm(&alice, read).await,
        vec![vec![Some("alice secret".into())]]
    );

    // Column grants: alice's cached answer is not bob's.
    assert_eq!(
        warm(&alice, "select salary from cols").await[0][0].as_deref(),
        Some("100")
    );
    let e = bob
        .simple_query("select salary from cols")
        .await
        .unwrap_err();
    assert!(db_message(&e).contains("permission denied"), "{e}");

    // SET ROLE inside one login.
    let admin = connect(&via_proxy(&proxy, "postgres", "cache_leak"))
        .await
        .unwrap();
    admin.simple_query("set role alice").await.unwrap();
    assert_eq!(
        warm(&admin, read).await,
        vec![vec![Some("alice secret".into())]]
    );
    admin.simple_query("set role bob").await.unwrap();
    assert_eq!(
        warm(&admin, read).await,
        vec![vec![Some("bob secret".into())]]
    );

    // Same text, two search_paths.
    let sa = connect(&via_proxy(&proxy, "alice", "cache_leak"))
        .await
        .unwrap();
    let sb = connect(&via_proxy(&proxy, "alice", "cache_leak"))
        .await
        .unwrap();
    sa.simple_query("set search_path = a").await.unwrap();
    sb.simple_query("set search_path = b").await.unwrap();
    assert_eq!(
        warm(&sa, "select v from t").await[0][0].as_deref(),
        Some("from a")
    );
    assert_eq!(
        warm(&sb, "select v from t").await[0][0].as_deref(),
        Some("from b")
    );
    assert_eq!(
        warm(&sa, "select v from t").await[0][0].as_deref(),
        Some("from a")
    );
    assert!(l1_hits(&cache_stats(&proxy).await) >= 6);
}

/// Two statements that differ only in which parameter goes where, bound with the same values,
/// answer differently in PostgreSQL: the cache must not hand one's rows to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_differing_only_in_parameter_order_never_share_an_answer() {
    let pg = shared_pg();
    create_database(pg, "cache_params").await;
    let d = connect(&pg.direct("cache_params")).await.unwrap();
    d.batch_execute(
        "create table msgs (sender text, recipient text, body text);
         insert into msgs values ('ann', 'bob', 'ann to bob'), ('bob', 'ann', 'bob to ann');",
    )
    .await
    .unwrap();
    let proxy = start_proxy(cached_config(pg, None)).await;
    let c = connect(&via_proxy(&proxy, "postgres", "cache_params"))
        .await
        .unwrap();
    let forward = "select body from msgs where sender = $1 and recipient = $2";
    let backward = "select body from msgs where sender = $2 and recipient = $1";
    for _ in 0..3 {
        for (sql, want) in [(forward, "ann to bob"), (backward, "bob to ann")] {
            let got: String = c.query_one(sql, &[&"ann", &"bob"]).await.unwrap().get(0);
            assert_eq!(got, want, "{sql}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = cache_stats(&proxy).await;
    assert!(l1_hits(&stats) > 0, "the cache answered some: {stats}");
}

/// A privilege change through the proxy takes effect at once: a role whose SELECT was revoked
/// must not keep reading cached rows, and a row-level security policy created must filter
/// the next read (neither statement names the table as one it writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_privileges_and_new_policies_are_not_answered_from_the_cache() {
    let pg = shared_pg();
    items(pg, "cache_grants").await;
    let d = connect(&pg.direct("cache_grants")).await.unwrap();
    d.batch_execute(
        "do $$ begin create role cache_reader login; exception when duplicate_object then null; end $$;
         grant select on items to cache_reader;
         create table notes (id int, body text);
         insert into notes values (1, 'one'), (2, 'two');
         grant select on notes to cache_reader;
         alter table notes enable row level security;
         create policy everyone on notes for select using (true);",
    )
    .await
    .unwrap();
    let proxy = start_proxy(cached_config(pg, None)).await;
    let admin = connect(&via_proxy(&proxy, "postgres", "cache_grants"))
        .await
        .unwrap();
    let reader = connect(&via_proxy(&proxy, "cache_reader", "cache_grants"))
        .await
        .unwrap();
    let notes = "select body from notes order by id";
    assert_eq!(warm(&reader, notes).await.len(), 2);
    let items_sql = "select name from items where id <= 3 order by id";
    assert_eq!(warm(&reader, items_sql).await.len(), 3);
    assert!(l1_hits(&cache_stats(&proxy).await) >= 2, "warmed");
    // A restrictive policy: the next read sees one row.
    admin
        .batch_execute("create policy only_two on notes as restrictive for select using (id = 2)")
        .await
        .unwrap();
    let after_policy = rows(&reader.simple_query(notes).await.unwrap());
    assert_eq!(after_policy, vec![vec![Some("two".to_owned())]]);
    admin
        .batch_execute("revoke select on items from cache_reader")
        .await
        .unwrap();
    let e = reader
        .simple_query(items_sql)
        .await
        .expect_err("SELECT was revoked");
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e}");
}

/// Settings the statement text does not show: `set_config('search_path', …)` per tenant, a
/// setting an RLS policy reads, and a temporary table named like a cached one. Each session
/// must read its own rows, never another's from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_made_with_set_config_and_temp_tables_never_share_rows() {
    let pg = shared_pg();
    create_database(pg, "cache_settings").await;
    let d = connect(&pg.direct("cache_settings")).await.unwrap();
    d.batch_execute(
        "create schema tenant_a; create schema tenant_b;
         create table tenant_a.accounts (owner text); insert into tenant_a.accounts values ('a');
         create table tenant_b.accounts (owner text); insert into tenant_b.accounts values ('b');
         create table shared (tenant text, secret text);
         insert into shared values ('a', 'secret of a'), ('b', 'secret of b');
         do $$ begin create role cache_tenant login; exception when duplicate_object then null; end $$;
         grant usage on schema tenant_a, tenant_b to cache_tenant;
         grant select on tenant_a.accounts, tenant_b.accounts, shared to cache_tenant;
         alter table shared enable row level security;
         create policy by_tenant on shared for select
             using (tenant = current_setting('app.tenant', true));",
    )
    .await
    .unwrap();
    let proxy = start_proxy(cached_config(pg, None)).await;
    let url = via_proxy(&proxy, "cache_tenant", "cache_settings");
    let (a, b) = (connect(&url).await.unwrap(), connect(&url).await.unwrap());
    for (c, t) in [(&a, "a"), (&b, "b")] {
        c.simple_query(&format!(
            "select set_config('search_path', 'tenant_{t}', false), \
             set_config('app.tenant', '{t}', false)"
        ))
        .await
        .unwrap();
    }
    for _ in 0..3 {
        for (c, t) in [(&a, "a"), (&b, "b")] {
            let got = rows(&c.simple_query("select owner from accounts").await.unwrap());
            assert_eq!(got, vec![vec![Some(t.to_owned())]], "search_path of {t}");
            let got = rows(
                &c.simple_query("select secret from public.shared")
                    .await
                    .unwrap(),
            );
            assert_eq!(
                got,
                vec![vec![Some(format!("secret of {t}"))]],
                "app.tenant of {t}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A temporary table shadowing a cached one.
    let plain = connect(&url).await.unwrap();
    plain
        .simple_query("set search_path = tenant_a")
        .await
        .unwrap();
    assert_eq!(
        warm(&plain, "select owner from accounts").await[0][0].as_deref(),
        Some("a")
    );
    let shadow = connect(&url).await.unwrap();
    shadow
        .batch_execute(
            "set search_path = tenant_a; create temp table accounts (owner text); \
             insert into accounts values ('temp')",
        )
        .await
        .unwrap();
    let got = rows(
        &shadow
            .simple_query("select owner from accounts")
            .await
            .unwrap(),
    );
    assert_eq!(got, vec![vec![Some("temp".to_owned())]]);
}

/// A statement whose catalog lookup fails (a schema that does not exist) neither costs a
/// server connection per statement nor asks the catalog again each time: the lookup's
/// connection goes back to the pool and the failure is remembered as "not cacheable".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_catalog_lookups_keep_their_connection_and_are_asked_once() {
    let pg = shared_pg();
    create_database(pg, "cache_lookup_fail").await;
    let d = connect(&pg.direct("cache_lookup_fail")).await.unwrap();
    d.batch_execute("create table t (a text); insert into t values ('x')")
        .await
        .unwrap();
    let proxy = start_proxy(cached_config(pg, None)).await;
    let c = connect(&via_proxy(&proxy, "postgres", "cache_lookup_fail"))
        .await
        .unwrap();
    for _ in 0..30 {
        let err = c
            .simple_query("select nosuchschema.lower(a) from t")
            .await
            .expect_err("the schema does not exist");
        assert_eq!(err.code().map(|c| c.code()), Some("3F000"), "{err:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        rows(&c.simple_query("select a from t").await.unwrap()),
        vec![vec![Some("x".into())]]
    );
    let created: u64 = proxy
        .shared
        .pools
        .all()
        .iter()
        .map(|p| p.metrics().created)
        .sum();
    assert!(
        created <= 4,
        "30 failing statements opened {created} server connections (pool of 4)"
    );
}
