//! The proxy speaks the full protocol to a real driver (tokio-postgres) in transaction mode.

use futures_util::{StreamExt, TryStreamExt, pin_mut};
use helios_tests::heliosproxy::config::PoolMode;
use helios_tests::*;
use tokio_postgres::SimpleQueryMessage;

async fn setup(db: &str) -> heliosproxy::server::ProxyHandle {
    let pg = shared_pg();
    create_database(pg, db).await;
    start_proxy(proxy_config(pg, PoolMode::Transaction, 4)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_simple_query_returns_every_result() {
    let proxy = setup("proto_multi").await;
    let c = connect(&via_proxy(&proxy, "postgres", "proto_multi"))
        .await
        .unwrap();
    let msgs = c
        .simple_query("create table t(x int); insert into t values (1),(2); select x from t order by x; select 'done'")
        .await
        .unwrap();
    let rows: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(rows, vec!["1", "2", "done"]);
    let completes = msgs
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count();
    assert_eq!(completes, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_query_with_parameters_and_prepared_statements() {
    let proxy = setup("proto_ext").await;
    let c = connect(&via_proxy(&proxy, "postgres", "proto_ext"))
        .await
        .unwrap();
    let row = c
        .query_one(
            "select $1::int + $2::int, $3::text",
            &[&20i32, &22i32, &"hi"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(row.get::<_, &str>(1), "hi");
    let stmt = c.prepare("select $1::int * 2").await.unwrap();
    for i in 0..50 {
        let r = c.query_one(&stmt, &[&i]).await.unwrap();
        assert_eq!(r.get::<_, i32>(0), i * 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_queries_all_complete_in_order() {
    let proxy = setup("proto_pipe").await;
    let c = connect(&via_proxy(&proxy, "postgres", "proto_pipe"))
        .await
        .unwrap();
    let stmt = c.prepare("select $1::int").await.unwrap();
    // tokio-postgres pipelines concurrent requests on one connection.
    let futures = (0..100).map(|i| {
        let c = &c;
        let stmt = &stmt;
        async move { c.query_one(stmt, &[&i]).await.map(|r| r.get::<_, i32>(0)) }
    });
    let results = futures_util::future::join_all(futures).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), i as i32);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_keep_the_backend_sqlstate_and_the_session_usable() {
    let proxy = setup("proto_err").await;
    let c = connect(&via_proxy(&proxy, "postgres", "proto_err"))
        .await
        .unwrap();
    let err = c
        .simple_query("select * from no_such_table")
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42P01");
    let err = c.query("select 1/$1::int", &[&0i32]).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "22012");
    c.batch_execute("begin").await.unwrap();
    assert!(c.simple_query("select broken syntax here").await.is_err());
    let err = c.simple_query("select 1").await.unwrap_err();
    assert_eq!(
        err.code().unwrap().code(),
        "25P02",
        "in a failed transaction"
    );
    c.batch_execute("rollback").await.unwrap();
    let row = c.query_one("select 7", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_reach_the_client() {
    let proxy = setup("proto_notice").await;
    let (client, mut connection) = tokio_postgres::connect(
        &via_proxy(&proxy, "postgres", "proto_notice"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        pin_mut!(stream);
        while let Some(Ok(msg)) = stream.next().await {
            if let tokio_postgres::AsyncMessage::Notice(n) = msg {
                let _ = tx.send(n.message().to_owned());
            }
        }
    });
    client
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'hello from the server'; END $$")
        .await
        .unwrap();
    let notice = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(notice, "hello from the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_round_trip() {
    let proxy = setup("proto_copy").await;
    let c = connect(&via_proxy(&proxy, "postgres", "proto_copy"))
        .await
        .unwrap();
    c.batch_execute("create table items(id int, name text)")
        .await
        .unwrap();
    let sink = c.copy_in("copy items from stdin").await.unwrap();
    pin_mut!(sink);
    let mut data = String::new();
    for i in 0..10_000 {
        data.push_str(&format!("{i}\titem {i}\n"));
    }
    use futures_util::SinkExt;
    sink.send(bytes::Bytes::from(data.clone())).await.unwrap();
    let n = sink.finish().await.unwrap();
    assert_eq!(n, 10_000);
    let stream = c
        .copy_out("copy (select * from items order by id) to stdout")
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    let out: Vec<u8> = chunks.concat();
    assert_eq!(String::from_utf8(out).unwrap(), data);
    assert_eq!(
        c.query_one("select count(*) from items", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        10_000
    );
    // A failed COPY reports the server's error. (tokio-postgres itself desynchronises its own
    // connection after this, against PostgreSQL directly too, so the check continues on a
    // second client.)
    let Err(err) = c
        .copy_in::<_, bytes::Bytes>("copy no_table from stdin")
        .await
    else {
        panic!("COPY into a missing table must fail");
    };
    assert_eq!(err.code().unwrap().code(), "42P01");
    let c2 = connect(&via_proxy(&proxy, "postgres", "proto_copy"))
        .await
        .unwrap();
    assert_eq!(
        c2.query_one("select count(*) from items", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        10_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mebibyte_query_and_200k_rows_stream_through() {
    let proxy = setup("proto_large").await;
    let c = connect(&via_proxy(&proxy, "postgres", "proto_large"))
        .await
        .unwrap();
    let big = "x".repeat(1 << 20);
    let sql = format!("select length('{big}')");
    let rows = c.simple_query(&sql).await.unwrap();
    let len = rows
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_owned()),
            _ => None,
        })
        .unwrap();
    assert_eq!(len, (1 << 20).to_string());
    let stream = c
        .query_raw(
            "select g, repeat('y', 100) from generate_series(1, 200000) g",
            std::iter::empty::<i32>(),
        )
        .await
        .unwrap();
    pin_mut!(stream);
    let mut count = 0i64;
    let mut sum = 0i64;
    while let Some(row) = stream.next().await {
        let row = row.unwrap();
        sum += row.get::<_, i32>(0) as i64;
        count += 1;
    }
    assert_eq!(count, 200_000);
    assert_eq!(sum, 200_000 * 200_001 / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_reaches_the_right_server_connection() {
    let proxy = setup("proto_cancel").await;
    let c = connect(&via_proxy(&proxy, "postgres", "proto_cancel"))
        .await
        .unwrap();
    // Another busy client so the canceled one does not simply own server connection 0.
    let other = connect(&via_proxy(&proxy, "postgres", "proto_cancel"))
        .await
        .unwrap();
    let other_task = tokio::spawn(async move {
        other
            .query_one("select pg_sleep(1.5)::text, 1", &[])
            .await
            .map(|r| r.get::<_, i32>(1))
    });
    let token = c.cancel_token();
    let started = std::time::Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let err = c.simple_query("select pg_sleep(30)").await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "57014", "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    canceller.await.unwrap().unwrap();
    assert_eq!(
        other_task.await.unwrap().unwrap(),
        1,
        "the other client was not canceled"
    );
    assert_eq!(
        c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
}
