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

use std::future::Future;
use std::time::Duration;

use futures_util::future::join3;
use helios_tests::heliosproxy::config::PoolMode;
use helios_tests::heliosproxy::server::ProxyHandle;
use helios_tests::heliosproxy::wire::frame::{split_message, write_message};
use helios_tests::heliosproxy::wire::messages::{self, ErrorFields};
use helios_tests::heliosproxy::wire::startup::encode_startup;
use helios_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Refused by the guardrail at Parse: a DELETE without WHERE.
const REFUSED: &str = "DELETE FROM items";
/// The guardrail's SQLSTATE (insufficient_privilege).
const REFUSED_CODE: &str = "42501";
/// How long one step may take before the test calls it a hang.
const STEP: Duration = Duration::from_secs(20);

/// Awaits `step`, failing the test when it takes longer than [`STEP`].
async fn within<T>(what: &str, step: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, step).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {STEP:?} (the pipeline hangs)"),
    }
}

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
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The errors among the messages the last [`Raw::until_ready`] returned.
    errors: Vec<ErrorFields>,
}

impl Raw {
    /// Connects and logs in (the test proxy trusts every user).
    async fn login(proxy: &ProxyHandle, db: &str) -> Raw {
        let stream = within("connect", TcpStream::connect(proxy.local_addr))
            .await
            .unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
            errors: Vec::new(),
        };
        let mut out = Vec::new();
        encode_startup(&mut out, &[("user", "postgres"), ("database", db)]);
        raw.send(&out).await;
        let login = raw.until_ready("login").await;
        assert!(raw.errors.is_empty(), "login failed: {:?}", raw.errors);
        assert_eq!(
            login.last().map(String::as_str),
            Some("ReadyForQuery I"),
            "{login:?}"
        );
        raw
    }

    async fn send(&mut self, bytes: &[u8]) {
        within("send", self.stream.write_all(bytes)).await.unwrap();
    }

    /// The next complete message from the proxy as `(tag, body)`.
    async fn next_message(&mut self, what: &str) -> (u8, Vec<u8>) {
        loop {
            let next = split_message(&self.buf, 1 << 20)
                .expect("a well-formed message from the proxy")
                .map(|(tag, body)| (tag, body.to_vec()));
            if let Some((tag, body)) = next {
                self.buf.drain(..5 + body.len());
                return (tag, body);
            }
            let mut chunk = [0u8; 8192];
            let n = within(what, self.stream.read(&mut chunk)).await.unwrap();
            assert!(n > 0, "{what}: the proxy closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The messages up to and including the next `ReadyForQuery`, described by [`describe`].
    async fn until_ready(&mut self, what: &str) -> Vec<String> {
        self.errors.clear();
        let mut seen = Vec::new();
        loop {
            let (tag, body) = self.next_message(what).await;
            if tag == b'E' {
                self.errors.push(ErrorFields::parse(&body).unwrap());
            }
            seen.push(describe(tag, &body));
            if tag == b'Z' {
                return seen;
            }
        }
    }

    /// Asserts that nothing more arrives (within a short wait) after a `ReadyForQuery`.
    async fn assert_silent(&mut self, what: &str) {
        let mut chunk = [0u8; 8192];
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(300), self.stream.read(&mut chunk)).await
        {
            let n = read.unwrap();
            assert!(n > 0, "{what}: the proxy closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let mut extra = Vec::new();
        loop {
            let next = split_message(&self.buf, 1 << 20)
                .ok()
                .flatten()
                .map(|(tag, body)| (tag, body.to_vec()));
            let Some((tag, body)) = next else { break };
            extra.push(describe(tag, &body));
            self.buf.drain(..5 + body.len());
        }
        assert!(
            extra.is_empty() && self.buf.is_empty(),
            "{what}: more after ReadyForQuery: {extra:?} {:?}",
            self.buf
        );
    }

    /// Sends `batch` and returns the answer up to `ReadyForQuery`, asserting nothing follows.
    async fn run(&mut self, what: &str, batch: &[u8]) -> Vec<String> {
        self.send(batch).await;
        let seen = self.until_ready(what).await;
        self.assert_silent(what).await;
        seen
    }

    /// Asserts the last answer's one error is the guardrail's refusal.
    fn assert_refusal(&self, what: &str) {
        assert_eq!(self.errors.len(), 1, "{what}: {:?}", self.errors);
        let e = &self.errors[0];
        assert_eq!(e.code, REFUSED_CODE, "{what}: {e:?}");
        assert!(
            e.message.contains("component guardrail")
                && e.message.contains("without a WHERE clause"),
            "{what}: {}",
            e.message
        );
    }
}

/// A backend message in a comparable form: its name, with the command tag, the DataRow's
/// values, the error's SQLSTATE or the transaction status.
fn describe(tag: u8, body: &[u8]) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b.strip_suffix(b"\0").unwrap_or(b)).into_owned();
    match tag {
        b'1' => "ParseComplete".into(),
        b'2' => "BindComplete".into(),
        b'3' => "CloseComplete".into(),
        b'n' => "NoData".into(),
        b'T' => "RowDescription".into(),
        b'D' => format!("DataRow {}", data_row(body).join(",")),
        b'C' => format!("CommandComplete {}", text(body)),
        b'E' => format!("Error {}", ErrorFields::parse(body).unwrap().code),
        b'N' => "Notice".into(),
        b'Z' => format!("ReadyForQuery {}", body[0] as char),
        b'R' => "Authentication".into(),
        b'S' => "ParameterStatus".into(),
        b'K' => "BackendKeyData".into(),
        other => format!("message {:?}", other as char),
    }
}

/// The text values of a DataRow (`NULL` for null).
fn data_row(body: &[u8]) -> Vec<String> {
    let columns = i16::from_be_bytes([body[0], body[1]]);
    let mut rest = &body[2..];
    let mut values = Vec::new();
    for _ in 0..columns {
        let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        rest = &rest[4..];
        if len < 0 {
            values.push("NULL".to_owned());
        } else {
            let len = len as usize;
            values.push(String::from_utf8_lossy(&rest[..len]).into_owned());
            rest = &rest[len..];
        }
    }
    values
}

/// Parse (unnamed statement), Bind (unnamed portal, no parameters) and Execute of `sql`: what
/// a driver sends for one statement in a pipeline.
fn statement(out: &mut Vec<u8>, sql: &str) {
    write_message(out, b'P', |b| {
        b.push(0);
        b.extend_from_slice(sql.as_bytes());
        b.push(0);
        b.extend_from_slice(&0i16.to_be_bytes());
    });
    write_message(out, b'B', |b| {
        b.push(0); // portal
        b.push(0); // statement
        b.extend_from_slice(&0i16.to_be_bytes()); // parameter formats
        b.extend_from_slice(&0i16.to_be_bytes()); // parameters
        b.extend_from_slice(&0i16.to_be_bytes()); // result formats
    });
    write_message(out, b'E', |b| {
        b.push(0);
        b.extend_from_slice(&0i32.to_be_bytes());
    });
}

/// `statements` one after another, then one `Sync`.
fn batch(statements: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for sql in statements {
        statement(&mut out, sql);
    }
    messages::sync(&mut out);
    out
}

fn simple_query(sql: &str) -> Vec<u8> {
    let mut out = Vec::new();
    messages::query(&mut out, sql);
    out
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
    raw.assert_refusal("refused in the middle");
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
    raw.assert_refusal("refused first");
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
    raw.assert_refusal("refused last");
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
    raw.assert_refusal("refused in a transaction");
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
    raw.assert_refusal("refused in its own batch");
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
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/drivers/pipelines.py");
    let port = proxy.local_addr.port().to_string();
    let run = tokio::process::Command::new("python3")
        .args([script, "127.0.0.1", &port, db, "postgres"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the pipeline script finished in time (a pipeline hangs)")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pipeline checks failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("psycopg ok") && stdout.contains("asyncpg ok"),
        "{stdout}"
    );
    assert_no_open_transaction(db).await;
}
