//! Statements a server keeps for the proxy never answer for a `Parse` that PostgreSQL would
//! analyse differently: after DDL (a table recreated with other column types, an enum
//! recreated), after a stale-plan error, under another `search_path`; and a pipeline after a
//! failed pipeline inside a savepoint gets every answer. Each sequence runs through psycopg
//! (every query an unnamed `Parse`, and named statements) and asyncpg, directly against
//! PostgreSQL first (the reference), then through the proxy in every pooling mode.

use helios_tests::heliosproxy::config::PoolMode;
use helios_tests::raw::{Raw, simple_query};
use helios_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_analysed_before_a_schema_change_never_answer_after_it() {
    let pg = shared_pg();
    create_database(pg, "stale_stmts").await;
    let direct = run_driver_script_at("stale_statements.py", pg.port, "stale_stmts", &[]).await;
    assert!(direct.contains("stale statements ok"), "{direct}");
    for (mode, extra) in [
        (PoolMode::Session, &[][..]),
        (PoolMode::Transaction, &[][..]),
        (PoolMode::Statement, &["--no-transactions"][..]),
    ] {
        let proxy = start_proxy(proxy_config(pg, mode, 4)).await;
        let out = run_driver_script_args("stale_statements.py", &proxy, "stale_stmts", extra).await;
        assert!(out.contains("stale statements ok"), "{mode:?}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_text_under_another_search_path_reads_the_other_schema() {
    let pg = shared_pg();
    create_database(pg, "stale_paths").await;
    let setup = connect(&pg.direct("stale_paths")).await.unwrap();
    setup
        .batch_execute(
            "create schema a; create schema b; \
             create table a.t(v text); create table b.t(v int, w int); \
             insert into a.t values ('from a'); insert into b.t values (2, 3)",
        )
        .await
        .unwrap();
    // One server connection: both clients' statements are prepared on it.
    let proxy = start_proxy(proxy_config(pg, PoolMode::Transaction, 1)).await;
    let ca = connect(&via_proxy(&proxy, "postgres", "stale_paths"))
        .await
        .unwrap();
    let cb = connect(&via_proxy(&proxy, "postgres", "stale_paths"))
        .await
        .unwrap();
    ca.batch_execute("set search_path = a").await.unwrap();
    cb.batch_execute("set search_path = b").await.unwrap();
    for _ in 0..3 {
        let a = ca
            .query("select * from t where true = $1", &[&true])
            .await
            .unwrap();
        assert_eq!(a[0].get::<_, String>(0), "from a");
        assert_eq!(a[0].len(), 1);
        let b = cb
            .query("select * from t where true = $1", &[&true])
            .await
            .unwrap();
        assert_eq!((b[0].get::<_, i32>(0), b[0].get::<_, i32>(1)), (2, 3));
    }
}

/// A pipeline whose first `Execute` fails inside a savepoint, `ROLLBACK TO SAVEPOINT`, then a
/// pipeline that parses the transaction's first statement under a new name — all sent before
/// reading any answer — as PostgreSQL answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_after_a_failed_pipeline_in_a_savepoint_gets_every_answer() {
    let pg = shared_pg();
    create_database(pg, "stale_sp").await;
    let setup = connect(&pg.direct("stale_sp")).await.unwrap();
    setup
        .batch_execute("create table sp(id serial primary key, name text not null)")
        .await
        .unwrap();
    let first = "insert into sp(name) values ($1)";
    let second = "insert into sp(id, name) values ($1, $2)";
    let script = |round: usize| {
        vec![
            simple_query("BEGIN"),
            pipeline("", first, &[&["a"]]),
            simple_query("SAVEPOINT sp"),
            pipeline(
                &format!("_pg3_7_{round}"),
                second,
                &[&["10", ""], &["11", "y"]],
            ),
            simple_query("ROLLBACK TO SAVEPOINT sp"),
            pipeline(&format!("_pg3_8_{round}"), first, &[&["b"], &["c"]]),
            simple_query("COMMIT"),
            simple_query("SELECT name FROM sp ORDER BY name"),
            simple_query("TRUNCATE sp"),
        ]
    };
    let addr = format!("127.0.0.1:{}", pg.port).parse().unwrap();
    let want = answers(Raw::login_at(addr, "stale_sp").await, script, 3).await;
    for mode in [PoolMode::Session, PoolMode::Transaction] {
        let proxy = start_proxy(proxy_config(pg, mode, 2)).await;
        let got = answers(Raw::login(&proxy, "stale_sp").await, script, 3).await;
        assert_eq!(want, got, "{mode:?}");
    }
    assert!(
        want.iter().any(|a| a.contains("DataRow b")),
        "the reference: {want:?}"
    );
}

/// Parse (named `name`, one text parameter per value), then Bind/Describe/Execute per row of
/// `rows` (`""` is NULL), `Sync` and `Flush`: what psycopg's pipeline mode sends.
fn pipeline(name: &str, sql: &str, rows: &[&[&str]]) -> Vec<u8> {
    use helios_tests::heliosproxy::wire::frame::write_message;
    let mut out = Vec::new();
    let params = rows[0].len() as i16;
    write_message(&mut out, b'P', |b| {
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        b.extend_from_slice(sql.as_bytes());
        b.push(0);
        b.extend_from_slice(&0i16.to_be_bytes());
    });
    for row in rows {
        write_message(&mut out, b'B', |b| {
            b.push(0);
            b.extend_from_slice(name.as_bytes());
            b.push(0);
            b.extend_from_slice(&0i16.to_be_bytes());
            b.extend_from_slice(&params.to_be_bytes());
            for v in *row {
                if v.is_empty() {
                    b.extend_from_slice(&(-1i32).to_be_bytes());
                } else {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v.as_bytes());
                }
            }
            b.extend_from_slice(&0i16.to_be_bytes());
        });
        write_message(&mut out, b'D', |b| b.extend_from_slice(b"P\0"));
        write_message(&mut out, b'E', |b| {
            b.push(0);
            b.extend_from_slice(&0i32.to_be_bytes());
        });
    }
    write_message(&mut out, b'S', |_| {});
    write_message(&mut out, b'H', |_| {});
    out
}

/// Sends every message of `script(round)` at once, `rounds` times, and returns the answers
/// to each, up to its `ReadyForQuery`.
async fn answers(
    mut raw: Raw,
    script: impl Fn(usize) -> Vec<Vec<u8>>,
    rounds: usize,
) -> Vec<String> {
    let mut all = Vec::new();
    for round in 0..rounds {
        let script = script(round);
        raw.send(&script.concat()).await;
        for (i, _) in script.iter().enumerate() {
            all.push(format!(
                "{i}: {}",
                raw.until_ready("script").await.join(" ")
            ));
        }
    }
    raw.assert_silent("after the script").await;
    all
}

/// psycopg's pipeline as SQLAlchemy's suite drives it: the first statement of a batch and a
/// Flush, the server's error, and only then the rest of the batch and its Sync. PostgreSQL
/// skips that rest; the proxy must not wait for answers to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_of_a_batch_sent_after_its_error_gets_postgres_answers() {
    let pg = shared_pg();
    create_database(pg, "stale_late").await;
    let setup = connect(&pg.direct("stale_late")).await.unwrap();
    setup
        .batch_execute("create table late(id int primary key, name text)")
        .await
        .unwrap();
    let insert = "insert into late(name) values ($1)";
    let addr = format!("127.0.0.1:{}", pg.port).parse().unwrap();
    let want = late_batch(Raw::login_at(addr, "stale_late").await, insert).await;
    assert!(want.iter().any(|a| a.contains("Error 23502")), "{want:?}");
    for mode in [PoolMode::Session, PoolMode::Transaction] {
        let proxy = start_proxy(proxy_config(pg, mode, 2)).await;
        let got = late_batch(Raw::login(&proxy, "stale_late").await, insert).await;
        assert_eq!(want, got, "{mode:?}");
    }
}

/// Three rounds of: BEGIN, SAVEPOINT, the failing first row with a Flush, the error read,
/// then the second row, Sync and Flush; ROLLBACK TO SAVEPOINT; a good pipeline; COMMIT.
async fn late_batch(mut raw: Raw, insert: &str) -> Vec<String> {
    use helios_tests::heliosproxy::wire::frame::write_message;
    let mut seen = Vec::new();
    for round in 0..3 {
        let name = format!("_pg3_{round}");
        seen.push(
            raw.run("begin", &simple_query("BEGIN; SAVEPOINT sp"))
                .await
                .join(" "),
        );
        let mut first = pipeline(&name, insert, &[&[""]]);
        // Drop its Sync and Flush: the first part ends with a Flush of its own.
        first.truncate(first.len() - 10);
        write_message(&mut first, b'H', |_| {});
        raw.send(&first).await;
        let mut part = Vec::new();
        loop {
            let (tag, body) = raw.next_message("first part").await;
            part.push(helios_tests::raw::describe(tag, &body));
            if tag == b'E' {
                break;
            }
        }
        let rest = pipeline(&name, insert, &[&["late"]]);
        // Only its Bind/Describe/Execute, Sync and Flush (no Parse).
        let parse_len = 1 + u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        raw.send(&rest[parse_len..]).await;
        part.extend(raw.until_ready("rest").await);
        seen.push(part.join(" "));
        let rollback = simple_query("ROLLBACK TO SAVEPOINT sp");
        seen.push(raw.run("rollback to", &rollback).await.join(" "));
        let good = pipeline(&format!("_pg3_ok{round}"), insert, &[&["a"], &["b"]]);
        raw.send(&good).await;
        seen.push(raw.until_ready("good").await.join(" "));
        seen.push(raw.run("commit", &simple_query("COMMIT")).await.join(" "));
    }
    let count = simple_query("SELECT count(*) FROM late");
    seen.push(raw.run("count", &count).await.join(" "));
    seen.push(
        raw.run("clean", &simple_query("DELETE FROM late"))
            .await
            .join(" "),
    );
    seen
}
