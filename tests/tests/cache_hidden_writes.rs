//! Writes the statement text does not name must still invalidate what they change: a
//! trigger's writes, `ON DELETE CASCADE`, `TRUNCATE … CASCADE`, an `UPDATE` through a view,
//! partitions and their parent (both ways), inheritance children, and an `EXECUTE` of a SQL
//! `PREPARE` in both protocols. Each: a read is cached, another client writes through the
//! proxy, the read must see the write. A write to a plain table must not drop the rest.

use std::time::Duration;

use helios_tests::cache::{cached_config, warm};
use helios_tests::*;

const SCHEMA: &str = "
create table log (id int primary key, n int); insert into log values (1, 0);
create table src (id int);
create function bump() returns trigger language plpgsql as
  $$ begin update log set n = n + 1 where id = 1; return new; end $$;
create trigger bump after insert on src for each row execute function bump();
create table parent (id int primary key); insert into parent values (1);
create table child (id int primary key, pid int references parent on delete cascade, v text);
insert into child values (1, 1, 'c');
create table parent2 (id int primary key); insert into parent2 values (1);
create table child2 (id int primary key, pid int references parent2, v text);
insert into child2 values (1, 1, 'c2');
create table base (id int primary key, v text); insert into base values (1, 'old');
create view base_view as select * from base;
create table meas (id int, v text) partition by list (id);
create table meas_1 partition of meas for values in (1); insert into meas values (1, 'old');
create table animals (id int, v text);
create table dogs () inherits (animals); insert into dogs values (1, 'rex');
create table plain (id int primary key, v text); insert into plain values (1, 'old');
create table plain2 (id int primary key, v text); insert into plain2 values (1, 'old');
create table unrelated (id int primary key, v text); insert into unrelated values (1, 'u');
";

async fn one(c: &tokio_postgres::Client, sql: &str) -> Option<String> {
    rows(&c.simple_query(sql).await.unwrap())
        .first()
        .and_then(|r| r[0].clone())
}

async fn l1_hits(proxy: &helios_tests::heliosproxy::ProxyHandle) -> u64 {
    let (code, body) = admin_http(proxy.admin_addr, "GET", "/api/cache", Some("k"), None).await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["tiers"][0]["cache_hits"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_the_text_does_not_name_invalidate_what_they_change() {
    let pg = shared_pg();
    create_database(pg, "cache_hidden").await;
    connect(&pg.direct("cache_hidden"))
        .await
        .unwrap()
        .batch_execute(SCHEMA)
        .await
        .unwrap();
    let proxy = start_proxy(cached_config(pg, None)).await;
    let url = via_proxy(&proxy, "postgres", "cache_hidden");
    let reader = connect(&url).await.unwrap();
    let writer = connect(&url).await.unwrap();

    // Each case: the cached read, what it answered, the write, what it answers after.
    let cases: [(&str, Option<&str>, &str, Option<&str>); 8] = [
        (
            "select n::text from log where id = 1",
            Some("0"),
            "insert into src values (1)",
            Some("1"),
        ),
        (
            "select v from child where id = 1",
            Some("c"),
            "delete from parent where id = 1",
            None,
        ),
        (
            "select v from child2 where id = 1",
            Some("c2"),
            "truncate parent2 cascade",
            None,
        ),
        (
            "select v from base where id = 1",
            Some("old"),
            "update base_view set v = 'via view' where id = 1",
            Some("via view"),
        ),
        (
            "select v from meas_1 where id = 1",
            Some("old"),
            "update meas set v = 'via parent' where id = 1",
            Some("via parent"),
        ),
        (
            "select v from meas where id = 1",
            Some("via parent"),
            "update meas_1 set v = 'via partition' where id = 1",
            Some("via partition"),
        ),
        (
            "select v from animals where id = 1",
            Some("rex"),
            "update dogs set v = 'fido' where id = 1",
            Some("fido"),
        ),
        (
            "select v from plain where id = 1",
            Some("old"),
            "execute set_plain('simple')",
            Some("simple"),
        ),
    ];
    writer
        .batch_execute("prepare set_plain(text) as update plain set v = $1 where id = 1")
        .await
        .unwrap();
    for (read, before, write, after) in cases {
        let got = warm(&reader, read).await;
        assert_eq!(
            got.first().and_then(|r| r[0].clone()).as_deref(),
            before,
            "{read}"
        );
        let hits = l1_hits(&proxy).await;
        assert_eq!(one(&reader, read).await.as_deref(), before);
        assert_eq!(
            l1_hits(&proxy).await,
            hits + 1,
            "{read} is answered from the cache"
        );
        writer.batch_execute(write).await.unwrap();
        assert_eq!(
            one(&reader, read).await.as_deref(),
            after,
            "after `{write}`, `{read}` answered from the cache what was there before"
        );
    }

    // EXECUTE through the extended protocol (Parse/Bind/Execute of the EXECUTE text).
    let read = "select v from plain where id = 1";
    warm(&reader, read).await;
    writer
        .execute("execute set_plain('extended')", &[])
        .await
        .unwrap();
    assert_eq!(one(&reader, read).await.as_deref(), Some("extended"));

    // A write to a plain table drops only what read it.
    assert_eq!(
        warm(&reader, "select v from unrelated where id = 1").await[0][0].as_deref(),
        Some("u")
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    writer
        .batch_execute("update plain2 set v = 'new' where id = 1")
        .await
        .unwrap();
    let hits = l1_hits(&proxy).await;
    assert_eq!(
        one(&reader, "select v from unrelated where id = 1")
            .await
            .as_deref(),
        Some("u")
    );
    assert_eq!(
        l1_hits(&proxy).await,
        hits + 1,
        "a write to a plain table kept the cached read of another"
    );
}

/// With the default `search_path` (`"$user", public`), a role with a schema of its own name
/// reads its own table under an unqualified name: a write naming that table qualified (or
/// unqualified, from that role) must invalidate the role's cached read, and the other way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_reached_through_the_user_schema_is_invalidated_by_its_writes() {
    let pg = shared_pg();
    create_database(pg, "cache_user_schema").await;
    connect(&pg.direct("cache_user_schema"))
        .await
        .unwrap()
        .batch_execute(
            "do $$ begin create role cache_owner login; exception when duplicate_object then null; end $$;
             create table public.notes (id int primary key, v text);
             insert into public.notes values (1, 'public');
             create schema cache_owner authorization cache_owner;
             create table cache_owner.notes (id int primary key, v text);
             insert into cache_owner.notes values (1, 'own');
             alter table cache_owner.notes owner to cache_owner;",
        )
        .await
        .unwrap();
    let proxy = start_proxy(cached_config(pg, None)).await;
    let owner = connect(&via_proxy(&proxy, "cache_owner", "cache_user_schema"))
        .await
        .unwrap();
    let admin = connect(&via_proxy(&proxy, "postgres", "cache_user_schema"))
        .await
        .unwrap();
    let read = "select v from notes where id = 1";
    assert_eq!(warm(&owner, read).await[0][0].as_deref(), Some("own"));
    admin
        .batch_execute("update cache_owner.notes set v = 'changed' where id = 1")
        .await
        .unwrap();
    assert_eq!(one(&owner, read).await.as_deref(), Some("changed"));

    let qualified = "select v from cache_owner.notes where id = 1";
    assert_eq!(
        warm(&admin, qualified).await[0][0].as_deref(),
        Some("changed")
    );
    owner
        .batch_execute("update notes set v = 'again' where id = 1")
        .await
        .unwrap();
    assert_eq!(one(&admin, qualified).await.as_deref(), Some("again"));
}
