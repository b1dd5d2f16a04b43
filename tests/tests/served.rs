//! A component's own answer (PreQuery `respond`) served by the proxy in the extended
//! protocol: `Parse`, `Bind`, `Describe` and `Execute` (with its row limit) of a statement a
//! component answered get PostgreSQL's messages from the proxy without touching a server,
//! in any mix with statements that go to the server in the same pipeline, and in both result
//! formats. The component is `misbehave` in `respond` mode: it answers every statement with
//! two rows (`42, component` and `NULL, null row`) except those containing `spare-me`.

use helios_tests::heliosproxy::config::{Grant, PoolMode};
use helios_tests::heliosproxy::server::ProxyHandle;
use helios_tests::heliosproxy::wire::frame::write_message;
use helios_tests::heliosproxy::wire::messages;
use helios_tests::raw::{Raw, batch, within};
use helios_tests::tokio_postgres::types::Type;
use helios_tests::*;

async fn responding_proxy(db: &str) -> ProxyHandle {
    let pg = shared_pg();
    create_database(pg, db).await;
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.plugins.push(plugin(
        "misbehave",
        "helios-misbehave",
        &[Grant::Kv],
        "mode = \"respond\"\n",
    ));
    start_proxy(config).await
}

const SERVED: [&str; 2] = ["DataRow 42,component", "DataRow NULL,null row"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_gets_a_served_result_through_prepare_bind_and_execute() {
    let proxy = responding_proxy("served_tp").await;
    let c = connect(&via_proxy(&proxy, "postgres", "served_tp"))
        .await
        .unwrap();
    let before = server_acquires(&proxy);
    // tokio-postgres prepares (Parse, Describe, Sync), then binds asking for binary results.
    let rows = within("query", c.query("select anything", &[]))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<_, Option<String>>(0).as_deref(), Some("42"));
    assert_eq!(rows[0].get::<_, &str>(1), "component");
    assert_eq!(rows[1].get::<_, Option<String>>(0), None);
    assert_eq!(rows[1].get::<_, &str>(1), "null row");

    let stmt = within(
        "prepare with a declared parameter",
        c.prepare_typed("select $1::int4 as anything", &[Type::INT4]),
    )
    .await
    .unwrap();
    assert_eq!(stmt.params(), &[Type::INT4]);
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["answer", "source"]);
    assert!(stmt.columns().iter().all(|c| *c.type_() == Type::TEXT));
    let rows = within("execute with a parameter", c.query(&stmt, &[&7i32]))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        server_acquires(&proxy),
        before,
        "no server connection was needed for served statements"
    );

    // Statements the component lets through still reach the server, on the same session.
    let row = within(
        "server statement",
        c.query_one("select 'spare-me'::text", &[]),
    )
    .await
    .unwrap();
    assert_eq!(row.get::<_, &str>(0), "spare-me");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_and_server_statements_mix_in_one_pipeline() {
    let proxy = responding_proxy("served_mix").await;
    let mut raw = Raw::login(&proxy, "served_mix").await;
    let seen = raw
        .run(
            "served, server, served",
            &batch(&[
                "select anything",
                "select 'spare-me' as server",
                "select anything else",
            ]),
        )
        .await;
    let mut want = vec!["ParseComplete", "BindComplete"];
    want.extend(SERVED);
    want.extend([
        "CommandComplete SELECT 2",
        "ParseComplete",
        "BindComplete",
        "DataRow spare-me",
        "CommandComplete SELECT 1",
        "ParseComplete",
        "BindComplete",
    ]);
    want.extend(SERVED);
    want.extend(["CommandComplete SELECT 2", "ReadyForQuery I"]);
    assert_eq!(seen, want);
    assert!(raw.errors.is_empty(), "{:?}", raw.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_limit_on_execute_suspends_a_served_portal() {
    let proxy = responding_proxy("served_limit").await;
    let mut raw = Raw::login(&proxy, "served_limit").await;
    let mut out = Vec::new();
    // Parse "s1", Bind portal "p" (binary results), Describe both, three Executes of one
    // row each, a server statement in between, Close the portal, Sync.
    write_message(&mut out, b'P', |b| {
        b.extend_from_slice(b"s1\0select anything\0");
        b.extend_from_slice(&0i16.to_be_bytes());
    });
    write_message(&mut out, b'B', |b| {
        b.extend_from_slice(b"p\0s1\0");
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
    });
    write_message(&mut out, b'D', |b| b.extend_from_slice(b"Ss1\0"));
    write_message(&mut out, b'D', |b| b.extend_from_slice(b"Pp\0"));
    let execute_one = |out: &mut Vec<u8>| {
        write_message(out, b'E', |b| {
            b.extend_from_slice(b"p\0");
            b.extend_from_slice(&1i32.to_be_bytes());
        })
    };
    execute_one(&mut out);
    helios_tests::raw::statement(&mut out, "select 'spare-me' as between");
    execute_one(&mut out);
    execute_one(&mut out);
    write_message(&mut out, b'C', |b| b.extend_from_slice(b"Pp\0"));
    messages::sync(&mut out);
    let seen = raw.run("portal with a row limit", &out).await;
    assert_eq!(
        seen,
        [
            "ParseComplete",
            "BindComplete",
            "ParameterDescription",
            "RowDescription",
            "RowDescription",
            SERVED[0],
            "PortalSuspended",
            "ParseComplete",
            "BindComplete",
            "DataRow spare-me",
            "CommandComplete SELECT 1",
            SERVED[1],
            "CommandComplete SELECT 1",
            "CommandComplete SELECT 0",
            "CloseComplete",
            "ReadyForQuery I",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_and_asyncpg_read_served_results_in_text_and_binary() {
    let proxy = responding_proxy("served_py").await;
    let stdout = run_driver_script("served.py", &proxy, "served_py").await;
    assert!(
        stdout.contains("psycopg ok") && stdout.contains("asyncpg ok"),
        "{stdout}"
    );
}
