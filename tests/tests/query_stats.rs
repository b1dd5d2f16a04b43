//! `heliosproxy_query_stats` read as a table by clients: another client's text stays inside
//! its literal whatever the reader's encoding, a reader sees only its own database's and
//! user's statements (admins see all), and a statement that names the table many times is
//! refused before it is built.

use helios_tests::heliosproxy::config::PoolMode;
use helios_tests::*;

/// Another client's statement text in `heliosproxy_query_stats`, read by a client whose
/// encoding has multi-byte characters ending in a `\` byte (SJIS): `Á\'` written by one client
/// must stay inside the literal the proxy splices for the other (before, the server read
/// `Á\` as one SJIS character plus a backslash quoting the `'`, and refused the statement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_stats_read_in_sjis_keeps_other_clients_text_inside_its_literal() {
    let pg = shared_pg();
    create_database(pg, "obs_sjis").await;
    let proxy = start_proxy(proxy_config(pg, PoolMode::Transaction, 2)).await;
    let url = via_proxy(&proxy, "postgres", "obs_sjis");
    let writer = connect(&url).await.unwrap();
    writer
        .simple_query("SELECT 1 AS \"Á\\'), (E'injected\"")
        .await
        .unwrap();
    let reader = connect(&url).await.unwrap();
    reader
        .batch_execute("SET client_encoding = 'SJIS'")
        .await
        .unwrap();
    let counted = reader
        .simple_query(
            "SELECT count(*) FROM heliosproxy_query_stats \
             WHERE query_pattern LIKE '%injected%'",
        )
        .await
        .unwrap_or_else(|e| panic!("the SJIS client's read failed: {}", db_message(&e)));
    assert_eq!(rows(&counted), vec![vec![Some("1".to_owned())]]);
}

/// `heliosproxy_query_stats` shows a client its own database's and user's statements only
/// (an admin-console user sees all, with each row's database and user), and a statement
/// naming the table many times is refused before the proxy builds it, not after it has
/// spent the client's memory budget many times over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_stats_show_a_client_its_own_statements_within_its_memory_budget() {
    let pg = shared_pg();
    create_database(pg, "obs_scope_a").await;
    create_database(pg, "obs_scope_b").await;
    let admin = connect(&pg.direct("postgres")).await.unwrap();
    admin
        .batch_execute(
            "DROP ROLE IF EXISTS scope_reader; CREATE ROLE scope_reader LOGIN; \
             GRANT ALL ON DATABASE obs_scope_a, obs_scope_b TO scope_reader",
        )
        .await
        .unwrap();
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.admin.users = vec!["postgres".into()];
    config.limits.max_client_message_bytes = 64 << 10;
    config.limits.max_client_memory_bytes = 1 << 20;
    let proxy = start_proxy(config).await;
    let run = |user: &'static str, db: &'static str, sql: String| {
        let url = via_proxy(&proxy, user, db);
        async move {
            let c = connect(&url).await.unwrap();
            c.simple_query(&sql).await.map(|m| rows(&m))
        }
    };
    run(
        "scope_reader",
        "obs_scope_a",
        "SELECT 1 AS alpha_marker".into(),
    )
    .await
    .unwrap();
    run("postgres", "obs_scope_a", "SELECT 1 AS beta_marker".into())
        .await
        .unwrap();
    run(
        "scope_reader",
        "obs_scope_b",
        "SELECT 1 AS gamma_marker".into(),
    )
    .await
    .unwrap();
    let markers = "SELECT string_agg(substring(query_pattern FROM '(\\w+)_marker'), ',' \
                   ORDER BY query_pattern) FROM heliosproxy_query_stats \
                   WHERE query_pattern LIKE '%\\_marker%'";
    let seen = |r: Vec<Vec<Option<String>>>| r[0][0].clone().unwrap_or_default();
    assert_eq!(
        seen(
            run("scope_reader", "obs_scope_a", markers.into())
                .await
                .unwrap()
        ),
        "alpha",
        "a client sees its own database's and user's statements"
    );
    assert_eq!(
        seen(
            run("scope_reader", "obs_scope_b", markers.into())
                .await
                .unwrap()
        ),
        "gamma"
    );
    let everyone = run(
        "postgres",
        "obs_scope_b",
        "SELECT database, username FROM heliosproxy_query_stats \
         WHERE query_pattern LIKE '%beta\\_marker%'"
            .into(),
    )
    .await
    .unwrap();
    assert_eq!(
        everyone,
        vec![vec![Some("obs_scope_a".into()), Some("postgres".into())]],
        "an admin sees every database's statements, with their owner"
    );

    // 300 fingerprints make one copy of the table ~100 KB; 100 references would be ~10 MB
    // for a client whose budget is 1 MiB.
    let c = connect(&via_proxy(&proxy, "postgres", "obs_scope_a"))
        .await
        .unwrap();
    for i in 0..300 {
        c.simple_query(&format!("SELECT 1 AS filler_column_{i}"))
            .await
            .unwrap();
    }
    let many = (0..100)
        .map(|_| "(SELECT count(*) FROM heliosproxy_query_stats)")
        .collect::<Vec<_>>()
        .join(", ");
    let err = run("postgres", "obs_scope_a", format!("SELECT {many}"))
        .await
        .expect_err("a statement that expands past the client's budget is refused");
    let db = err.as_db_error().expect("a server-style error");
    assert_eq!(db.code().code(), "54000", "{}", db.message());
    assert!(
        db.message().contains("heliosproxy_query_stats"),
        "{}",
        db.message()
    );
    // The proxy serves everyone else, and one reference still works.
    let one = run(
        "postgres",
        "obs_scope_a",
        "SELECT count(*) > 300 FROM heliosproxy_query_stats".into(),
    )
    .await
    .unwrap();
    assert_eq!(one, vec![vec![Some("t".into())]]);
}
