//! A statement a component refuses at Parse, inside a pipeline, behaves like a PostgreSQL
//! error: everything up to the next `Sync` is skipped, `ReadyForQuery` follows, the session
//! stays usable, and what ran before the refusal in the same implicit transaction (no `Sync`
//! in between) is rolled back; inside `BEGIN` the transaction fails instead.
//!
//! The refusing component is `llm-guardrail`, which refuses DELETE without WHERE at Parse with
//! SQLSTATE 42501. Every expected message sequence here is PostgreSQL's own for a statement it
//! rejects at Parse (checked against a real server, with a syntax error or an unknown table in
//! place of the refusal). The proxy runs in transaction mode, each test on its own database,
//! and every step has a timeout so a pipeline that never answers fails instead of hanging.

use std::time::Duration;

use futures_util::future::join3;
use helios_tests::heliosproxy::config::PoolMode;
use helios_tests::heliosproxy::server::ProxyHandle;
use helios_tests::raw::{Raw, batch, simple_query, within};
use helios_tests::*;

/// Refused by the guardrail at Parse: a DELETE without WHERE.
const REFUSED: &str = "DELETE FROM items";
/// The guardrail's SQLSTATE (insufficient_privilege).
const REFUSED_CODE: &str = "42501";

/// A fresh database `db` with an empty `items` table, and a transaction-mode proxy in front of
/// it whose guardrail checks every session.
async fn guarded_proxy(db: &str) -> ProxyHandle {
    let pg = shared_pg();
    within("create the database", create_database(pg, db)).await;
    let direct = within("connect to PostgreSQL", connect(&pg.direct(db)))
        .await
        .unwrap();
    within(
        "create the table",
        direct.batch_execute("create table items(id int)"),
    )
    .await
    .unwrap();
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config
        .plugins
        .push(plugin("guardrail", "helios-llm-guardrail", &[], ""));
    start_proxy(config).await
}

/// The committed rows of `items`, read straight from PostgreSQL.
async fn committed_ids(db: &str) -> Vec<i32> {
    let c = within("connect to PostgreSQL", connect(&shared_pg().direct(db)))
        .await
        .unwrap();
    within(
        "read the committed rows",
        c.query("select id from items order by id", &[]),
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<_, i32>(0))
    .collect()
}

/// Asserts no server connection to `db` is left inside a transaction, as PostgreSQL shows it
/// (allowing the proxy a moment to finish a rollback it has started).
async fn assert_no_open_transaction(db: &str) {
    let c = within("connect to PostgreSQL", connect(&shared_pg().direct(db)))
        .await
        .unwrap();
    let mut attempts = 0;
    loop {
        let open = within(
            "read pg_stat_activity",
            c.query(
                "select state || ': ' || query from pg_stat_activity \
                 where datname = $1 and state like 'idle in transaction%'",
                &[&db],
            ),
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>();
        if open.is_empty() {
            return;
        }
        attempts += 1;
        assert!(
            attempts < 40,
            "server connections to {db} stay inside a transaction: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, tokio_postgres::Error>, what: &str) {
    let err = result.expect_err(&format!("{what}: the refused statement succeeded"));
    assert_eq!(
        err.code().map(|c| c.code()),
        Some(REFUSED_CODE),
        "{what}: {err}"
    );
    let msg = db_message(&err);
    assert!(
        msg.contains("component guardrail") && msg.contains("without a WHERE clause"),
        "{what}: {msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_pipeline_fails_only_the_refused_statement_wherever_it_is() {
    let db = "pipe_tpg";
    let proxy = guarded_proxy(db).await;
    let c = within("connect", connect(&via_proxy(&proxy, "postgres", db)))
        .await
        .unwrap();
    let insert = within("prepare", c.prepare("insert into items values ($1)"))
        .await
        .unwrap();
    let count = within("prepare", c.prepare("select count(*) from items"))
        .await
        .unwrap();
    // tokio-postgres sends each request as soon as its future is first polled, all before any
    // answer, and ends every request with its own Sync: each statement is its own implicit
    // transaction, so PostgreSQL runs (and commits) the others around the refused one.

    // Refused first.
    let (refused, inserted, counted) = within(
        "refused first",
        join3(
            c.execute(REFUSED, &[]),
            c.execute(&insert, &[&1i32]),
            c.query_one(&count, &[]),
        ),
    )
    .await;
    assert_refused(refused, "refused first");
    assert_eq!(inserted.unwrap(), 1, "the INSERT after the refusal ran");
    assert_eq!(counted.unwrap().get::<_, i64>(0), 1, "the SELECT ran last");
    assert_eq!(committed_ids(db).await, vec![1]);

    // Refused in the middle.
    let (inserted, refused, counted) = within(
        "refused in the middle",
        join3(
            c.execute(&insert, &[&2i32]),
            c.execute(REFUSED, &[]),
            c.query_one(&count, &[]),
        ),
    )
    .await;
    assert_eq!(inserted.unwrap(), 1, "the INSERT before the refusal ran");
    assert_refused(refused, "refused in the middle");
    assert_eq!(
        counted.unwrap().get::<_, i64>(0),
        2,
        "the SELECT after it ran"
    );
    assert_eq!(
        committed_ids(db).await,
        vec![1, 2],
        "the INSERT before the refusal had its own Sync, so it stays committed"
    );

    // Refused last.
    let (inserted, counted, refused) = within(
        "refused last",
        join3(
            c.execute(&insert, &[&3i32]),
            c.query_one(&count, &[]),
            c.execute(REFUSED, &[]),
        ),
    )
    .await;
    assert_eq!(inserted.unwrap(), 1);
    assert_eq!(counted.unwrap().get::<_, i64>(0), 3);
    assert_refused(refused, "refused last");
    assert_eq!(committed_ids(db).await, vec![1, 2, 3]);

    // Parse, Bind, Describe and Execute of the refused statement in one request (one Sync),
    // between two others: its Bind, Describe and Execute are skipped up to its Sync.
    let (inserted, refused, counted) = within(
        "refused with its Bind and Execute in the same request",
        join3(
            c.execute(&insert, &[&4i32]),
            c.query_typed(REFUSED, &[]),
            c.query_one(&count, &[]),
        ),
    )
    .await;
    assert_eq!(inserted.unwrap(), 1);
    assert_refused(refused, "refused in one request");
    assert_eq!(counted.unwrap().get::<_, i64>(0), 4);
    assert_eq!(committed_ids(db).await, vec![1, 2, 3, 4]);

    // The connection is as good as new.
    let one = within("select 1", c.query_one("select 1", &[]))
        .await
        .unwrap();
    assert_eq!(one.get::<_, i32>(0), 1);
    let rows = within("simple query", c.simple_query("select 'still here'"))
        .await
        .unwrap();
    assert!(
        rows.iter().any(|m| matches!(
            m,
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("still here")
        )),
        "{rows:?}"
    );
    assert_no_open_transaction(db).await;
}

/// A client writing protocol messages by hand, so a whole batch goes out before one `Sync`.
/// Asserts the last answer's one error is the guardrail's refusal.
fn assert_refusal(raw: &Raw, what: &str) {
    assert_eq!(raw.errors.len(), 1, "{what}: {:?}", raw.errors);
    let e = &raw.errors[0];
    assert_eq!(e.code, REFUSED_CODE, "{what}: {e:?}");
    assert!(
        e.message.contains("component guardrail") && e.message.contains("without a WHERE clause"),
        "{what}: {}",
        e.message
    );
}

/// The answer to one Parse/Bind/Execute of a one-row INSERT.
const INSERTED: [&str; 3] = [
    "ParseComplete",
    "BindComplete",
    "CommandComplete INSERT 0 1",
];

/// An expected answer: `parts` one after another.
fn answer(parts: &[&[&str]]) -> Vec<String> {
    parts.concat().into_iter().map(str::to_owned).collect()
}

/// A batch after a refused one works normally and sees none of the refused batch's rows.
async fn next_batch_works(raw: &mut Raw, db: &str, committed_before: &[i32]) {
    let seen = raw
        .run(
            "the next batch",
            &batch(&[
                "INSERT INTO items VALUES (100)",
                "SELECT count(*) FROM items",
            ]),
        )
        .await;
    let count = format!("DataRow {}", committed_before.len() + 1);
    assert_eq!(
        seen,
        answer(&[
            &INSERTED,
            &[
                "ParseComplete",
                "BindComplete",
                count.as_str(),
                "CommandComplete SELECT 1",
                "ReadyForQuery I",
            ],
        ])
    );
    assert!(raw.errors.is_empty(), "{:?}", raw.errors);
    let mut expected = committed_before.to_vec();
    expected.push(100);
    assert_eq!(committed_ids(db).await, expected);
    assert_no_open_transaction(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_mid_batch_answers_error_then_ready_and_rolls_back_the_batch() {
    let db = "pipe_mid";
    let proxy = guarded_proxy(db).await;
    let mut raw = Raw::login(&proxy, db).await;
    let seen = raw
        .run(
            "refused in the middle",
            &batch(&["INSERT INTO items VALUES (1)", REFUSED, "SELECT 1"]),
        )
        .await;
    assert_eq!(
        seen,
        answer(&[&INSERTED, &["Error 42501", "ReadyForQuery I"]]),
        "the SELECT after the refusal is skipped"
    );
    assert_refusal(&raw, "refused in the middle");
    assert_eq!(
        committed_ids(db).await,
        Vec::<i32>::new(),
        "the INSERT before the refusal, in the same implicit transaction, was rolled back"
    );
    assert_no_open_transaction(db).await;
    next_batch_works(&mut raw, db, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_first_in_a_batch_skips_the_whole_batch() {
    let db = "pipe_first";
    let proxy = guarded_proxy(db).await;
    let mut raw = Raw::login(&proxy, db).await;
    let seen = raw
        .run(
            "refused first",
            &batch(&[REFUSED, "INSERT INTO items VALUES (1)", "SELECT 1"]),
        )
        .await;
    assert_eq!(seen, ["Error 42501", "ReadyForQuery I"]);
    assert_refusal(&raw, "refused first");
    assert_eq!(committed_ids(db).await, Vec::<i32>::new());
    next_batch_works(&mut raw, db, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_last_in_a_batch_rolls_back_everything_before_it() {
    let db = "pipe_last";
    let proxy = guarded_proxy(db).await;
    let mut raw = Raw::login(&proxy, db).await;
    let seen = raw
        .run(
            "refused right before Sync",
            &batch(&[
                "INSERT INTO items VALUES (1)",
                "SELECT count(*) FROM items",
                REFUSED,
            ]),
        )
        .await;
    assert_eq!(
        seen,
        answer(&[
            &INSERTED,
            &[
                "ParseComplete",
                "BindComplete",
                "DataRow 1",
                "CommandComplete SELECT 1",
                "Error 42501",
                "ReadyForQuery I",
            ],
        ])
    );
    assert_refusal(&raw, "refused last");
    assert_eq!(committed_ids(db).await, Vec::<i32>::new());
    assert_no_open_transaction(db).await;
    next_batch_works(&mut raw, db, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_inside_begin_fails_the_transaction_until_rollback() {
    let db = "pipe_tx";
    let proxy = guarded_proxy(db).await;
    let mut raw = Raw::login(&proxy, db).await;
    let seen = raw.run("BEGIN", &simple_query("BEGIN")).await;
    assert_eq!(seen, ["CommandComplete BEGIN", "ReadyForQuery T"]);
    let seen = raw
        .run(
            "refused in a transaction",
            &batch(&["INSERT INTO items VALUES (1)", REFUSED, "SELECT 1"]),
        )
        .await;
    assert_eq!(
        seen,
        answer(&[&INSERTED, &["Error 42501", "ReadyForQuery E"]]),
        "the transaction has failed"
    );
    assert_refusal(&raw, "refused in a transaction");
    // Like any failed transaction: statements are refused until it ends.
    let seen = raw
        .run(
            "a statement in the failed transaction",
            &batch(&["SELECT 1"]),
        )
        .await;
    assert_eq!(seen, ["Error 25P02", "ReadyForQuery E"]);
    let seen = raw.run("ROLLBACK", &simple_query("ROLLBACK")).await;
    assert_eq!(seen, ["CommandComplete ROLLBACK", "ReadyForQuery I"]);
    assert_eq!(committed_ids(db).await, Vec::<i32>::new());
    assert_no_open_transaction(db).await;
    next_batch_works(&mut raw, db, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_after_a_refusal_inside_begin_rolls_back() {
    let db = "pipe_commit";
    let proxy = guarded_proxy(db).await;
    let mut raw = Raw::login(&proxy, db).await;
    let seen = raw.run("BEGIN", &simple_query("BEGIN")).await;
    assert_eq!(seen, ["CommandComplete BEGIN", "ReadyForQuery T"]);
    let seen = raw
        .run(
            "refused in a transaction",
            &batch(&["INSERT INTO items VALUES (1)", REFUSED]),
        )
        .await;
    assert_eq!(
        seen,
        answer(&[&INSERTED, &["Error 42501", "ReadyForQuery E"]])
    );
    // PostgreSQL answers COMMIT of a failed transaction with the tag ROLLBACK.
    let seen = raw.run("COMMIT", &simple_query("COMMIT")).await;
    assert_eq!(seen, ["CommandComplete ROLLBACK", "ReadyForQuery I"]);
    assert_eq!(
        committed_ids(db).await,
        Vec::<i32>::new(),
        "nothing of the failed transaction was committed"
    );
    next_batch_works(&mut raw, db, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_before_the_refusal_keeps_what_came_before_it() {
    let db = "pipe_sync";
    let proxy = guarded_proxy(db).await;
    let mut raw = Raw::login(&proxy, db).await;
    // Three batches written at once: INSERT | refused | SELECT, each ended by its own Sync.
    let mut out = batch(&["INSERT INTO items VALUES (1)"]);
    out.extend(batch(&[REFUSED]));
    out.extend(batch(&["SELECT count(*) FROM items"]));
    raw.send(&out).await;
    let seen = raw.until_ready("the INSERT's batch").await;
    assert_eq!(seen, answer(&[&INSERTED, &["ReadyForQuery I"]]));
    let seen = raw.until_ready("the refused batch").await;
    assert_eq!(seen, ["Error 42501", "ReadyForQuery I"]);
    assert_refusal(&raw, "refused in its own batch");
    let seen = raw.until_ready("the SELECT's batch").await;
    assert_eq!(
        seen,
        [
            "ParseComplete",
            "BindComplete",
            "DataRow 1",
            "CommandComplete SELECT 1",
            "ReadyForQuery I",
        ]
    );
    raw.assert_silent("after the three batches").await;
    assert_eq!(
        committed_ids(db).await,
        vec![1],
        "the INSERT's own Sync committed it"
    );
    next_batch_works(&mut raw, db, &[1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_and_asyncpg_pipelines_get_the_refusal_and_keep_their_connection() {
    let db = "pipe_py";
    let proxy = guarded_proxy(db).await;
    let stdout = run_driver_script("pipelines.py", &proxy, db).await;
    assert!(
        stdout.contains("psycopg ok") && stdout.contains("asyncpg ok"),
        "{stdout}"
    );
    assert_no_open_transaction(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_batch_has_its_statements_rolled_back() {
    let db = "pipe_leave";
    let proxy = guarded_proxy(db).await;
    let mut raw = Raw::login(&proxy, db).await;
    // INSERT without Sync, then Flush so the answers arrive, then the client leaves.
    let mut out = Vec::new();
    helios_tests::raw::statement(&mut out, "INSERT INTO items VALUES (7)");
    out.extend_from_slice(&[b'H', 0, 0, 0, 4]);
    raw.send(&out).await;
    for want in INSERTED {
        let (tag, body) = raw.next_message("answers before Sync").await;
        assert_eq!(helios_tests::raw::describe(tag, &body), want);
    }
    raw.send(&[b'X', 0, 0, 0, 4]).await;
    drop(raw);
    // Another client, on the same two server connections, runs statements of its own.
    let c = within("connect", connect(&via_proxy(&proxy, "postgres", db)))
        .await
        .unwrap();
    for _ in 0..4 {
        within("a later client's statement", c.simple_query("select 1"))
            .await
            .unwrap();
    }
    assert_eq!(
        committed_ids(db).await,
        Vec::<i32>::new(),
        "the unsynced INSERT of a client that left was committed by someone else's statement"
    );
}
