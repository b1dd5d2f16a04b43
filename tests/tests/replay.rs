//! Time-travel replay through the admin API, as an operator drives it with curl: traffic
//! recorded through the proxy (simple and extended protocol, binary results, transactions,
//! an error) replayed against a candidate server by DSN, compared row by row with the
//! recording; shadow mode leaving nothing behind; writes kept only when allowed; `as_user`;
//! cancelling; and the refusals (writes, the live primary, an unknown node, an empty window,
//! a malformed request).

use std::time::{Duration, Instant};

use helios_tests::heliosproxy::config::{JournalConfig, PoolMode};
use helios_tests::*;
use serde_json::Value;

const KEY: &str = "replay-key";
/// Replaying to a server outside `[[nodes]]` sends it every client's statements: the
/// journal's own key.
const JOURNAL_KEY: &str = "replay-journal-key";

/// Replays that keep their writes or act as another user: the write key, besides the other.
const WRITE_KEY: &str = "replay-write-key";

async fn post(proxy: &heliosproxy::ProxyHandle, body: &str) -> (u16, String) {
    let mut headers = vec![("X-API-Key", JOURNAL_KEY)];
    if body.contains("as_user") || body.contains("allow_writes") {
        headers.push(("X-Write-Key", WRITE_KEY));
    }
    admin_http_with(
        proxy.admin_addr,
        "POST",
        "/api/replay",
        &headers,
        Some(body),
    )
    .await
}

/// A server that asks for a clear-text password and reports whether it was sent one.
async fn password_trap() -> (u16, tokio::task::JoinHandle<bool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Every connection is asked (the proxy may first ask the server who it is, then log in
    // for the replay); the trap ends once none came for 3 s.
    let trap = tokio::spawn(async move {
        let mut sent = false;
        let mut wait = Duration::from_secs(20);
        while let Ok(Ok((mut s, _))) = tokio::time::timeout(wait, listener.accept()).await {
            wait = Duration::from_secs(3);
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).await.is_err() {
                continue;
            }
            let mut startup = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
            if s.read_exact(&mut startup).await.is_err() {
                continue;
            }
            // AuthenticationCleartextPassword.
            let _ = s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await;
            let mut tag = [0u8; 1];
            sent |= matches!(
                tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut tag)).await,
                Ok(Ok(_)) if tag[0] == b'p'
            );
        }
        sent
    });
    (port, trap)
}

/// Starts a replay and waits for it to finish; returns its final status.
async fn replay(proxy: &heliosproxy::ProxyHandle, body: &str) -> Value {
    let (code, text) = post(proxy, body).await;
    assert_eq!(code, 202, "{body}: {text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["replay_id"].clone();
    wait_done(proxy, &id).await
}

async fn wait_done(proxy: &heliosproxy::ProxyHandle, id: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, text) = admin_http(
            proxy.admin_addr,
            "GET",
            &format!("/api/replay/{id}"),
            Some(KEY),
            None,
        )
        .await;
        assert_eq!(code, 200, "{text}");
        let status: Value = serde_json::from_str(&text).unwrap();
        if status["state"] != "running" {
            return status;
        }
        assert!(Instant::now() < deadline, "replay still running: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

const SCHEMA: &str = "create table items (id int primary key, name text, price numeric); \
     insert into items select i, 'item ' || i, i * 1.5 from generate_series(1, 50) i; \
     create role alice login";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_window_replays_against_a_candidate_and_differences_are_found() {
    let pg = shared_pg();
    create_database(pg, "replayed").await;
    let candidate = start_pg(heliosproxy::embedded::HostAuth::Trust, None);
    create_database(&candidate, "replayed").await;
    for server in [pg, &candidate] {
        let c = connect(&server.direct("replayed")).await.unwrap();
        c.batch_execute(&format!("drop role if exists alice; {SCHEMA}"))
            .await
            .unwrap();
    }
    let mut config = proxy_config(pg, PoolMode::Transaction, 4);
    config.admin.api_key = Some(KEY.into());
    config.admin.journal_api_key = Some(JOURNAL_KEY.into());
    config.admin.write_api_key = Some(WRITE_KEY.into());
    // A password the proxy knows for every user: it must never reach a DSN target.
    config.auth.server_password = Some("s3cret-server-pw".into());
    config.journal = Some(JournalConfig {
        dir: temp_dir("replay-journal"),
        ..Default::default()
    });
    let proxy = start_proxy(config).await;

    // The reads: simple queries, a prepared statement with binary results, an error.
    let reads_from = now_ms();
    let c = connect(&via_proxy(&proxy, "postgres", "replayed"))
        .await
        .unwrap();
    c.simple_query("select id, name from items where id <= 5 order by id")
        .await
        .unwrap();
    let by_id = c
        .prepare("select name, price::text from items where id = $1")
        .await
        .unwrap();
    for id in [3i32, 7, 11] {
        c.query(&by_id, &[&id]).await.unwrap();
    }
    c.simple_query("select current_user").await.unwrap();
    assert!(c.simple_query("select * from missing_table").await.is_err());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let reads_to = now_ms();

    // The writes: autocommit and in a transaction.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let writes_from = now_ms();
    c.execute(
        "insert into items values ($1, $2, $3::text::numeric)",
        &[&101i32, &"new", &"9.5"],
    )
    .await
    .unwrap();
    c.batch_execute("begin").await.unwrap();
    c.batch_execute("update items set price = price + 1 where id <= 10")
        .await
        .unwrap();
    c.batch_execute("delete from items where id = 50")
        .await
        .unwrap();
    c.batch_execute("commit").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let writes_to = now_ms();

    // The candidate differs in one row the reads saw.
    let cand = connect(&candidate.direct("replayed")).await.unwrap();
    cand.batch_execute("update items set name = 'renamed' where id = 7")
        .await
        .unwrap();
    let dsn = format!("postgres://postgres@127.0.0.1:{}/replayed", candidate.port);

    // Refusals.
    let writes_window = format!(r#""from":{writes_from},"to":{writes_to}"#);
    let (code, text) = post(&proxy, &format!(r#"{{{writes_window},"target":"{dsn}"}}"#)).await;
    assert_eq!(code, 409, "{text}");
    assert!(
        text.contains("may write") && text.contains("shadow"),
        "{text}"
    );
    let (code, text) = post(
        &proxy,
        &format!(r#"{{"from":{reads_from},"target":"primary"}}"#),
    )
    .await;
    assert_eq!(code, 409, "{text}");
    assert!(text.contains("live primary"), "{text}");
    let (code, text) = post(
        &proxy,
        &format!(r#"{{"from":{reads_from},"target":"nope"}}"#),
    )
    .await;
    assert_eq!(code, 404, "{text}");
    let future = now_ms() + 3_600_000;
    let (code, text) = post(
        &proxy,
        &format!(
            r#"{{"from":{future},"to":{},"target":"{dsn}"}}"#,
            future + 1000
        ),
    )
    .await;
    assert_eq!(code, 404, "{text}");
    assert!(text.contains("no journal records"), "{text}");
    for bad in [
        r#"{"target":"primary"}"#.to_owned(),
        format!(r#"{{"from":{reads_from},"target":"{dsn}","diff_mode":"bytes"}}"#),
        format!(r#"{{"from":"yesterday","target":"{dsn}"}}"#),
        format!(r#"{{"from":{reads_from},"target":"{dsn}","speed":-1}}"#),
        format!(r#"{{"from":{reads_from},"target":"postgres://u@:x/db"}}"#),
        format!(r#"{{"from":{reads_to},"to":{reads_from},"target":"{dsn}"}}"#),
    ] {
        let (code, text) = post(&proxy, &bad).await;
        assert_eq!(code, 400, "{bad}: {text}");
    }
    let (code, _) = admin_http(proxy.admin_addr, "POST", "/api/replay", None, Some("{}")).await;
    assert_eq!(code, 401);
    let reads_body = format!(r#"{{"from":{reads_from},"to":{reads_to},"target":"{dsn}"}}"#);
    let (code, text) = admin_http(
        proxy.admin_addr,
        "POST",
        "/api/replay",
        Some(KEY),
        Some(&reads_body),
    )
    .await;
    assert_eq!(
        code, 403,
        "the admin key alone cannot send statements to a DSN: {text}"
    );
    assert!(text.contains("journal_api_key"), "{text}");
    // A DSN server that asks for a clear-text password gets none: the proxy's credentials
    // stay with its own nodes.
    let (trap_port, trap) = password_trap().await;
    let status = replay(
        &proxy,
        &format!(
            r#"{{"from":{reads_from},"to":{reads_to},"target":"postgres://127.0.0.1:{trap_port}/replayed","max_connections":1}}"#
        ),
    )
    .await;
    assert!(!trap.await.unwrap(), "a password was sent to a DSN target");
    assert_eq!(status["statements_replayed"], 0, "{status}");
    assert!(
        status["failures"][0].as_str().unwrap().contains("password"),
        "{status}"
    );

    // The reads replay with one divergence: the renamed row, found by its checksum (the
    // binary-format rows of the other two executions match byte for byte).
    let reads_window = format!(r#""from":{reads_from},"to":{reads_to}"#);
    let status = replay(
        &proxy,
        &format!(r#"{{{reads_window},"target":"{dsn}","diff_mode":"rows"}}"#),
    )
    .await;
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["statements"], 6, "{status}");
    assert_eq!(status["statements_replayed"], 6, "{status}");
    assert_eq!(
        status["errors"], 1,
        "the missing table fails again: {status}"
    );
    assert_eq!(status["diff_count"], 1, "{status}");
    let d = &status["divergent"][0];
    assert!(
        d["statement"].as_str().unwrap().contains("where id = $1"),
        "{status}"
    );
    assert_eq!(d["recorded"]["rows"], 1);
    assert_eq!(d["replayed"]["rows"], 1);
    assert_ne!(d["recorded"]["checksum"], d["replayed"]["checksum"]);
    assert_eq!(status["divergent_query_ids"][0], d["seq"]);
    // Row counts alone do not see a renamed row.
    let status = replay(
        &proxy,
        &format!(r#"{{{reads_window},"target":"{dsn}","diff_mode":"rowcount"}}"#),
    )
    .await;
    assert_eq!(status["diff_count"], 0, "{status}");

    // Acting as another user and keeping writes are powers of their own: neither the
    // journal key nor the API key gives them.
    for body in [
        format!(r#"{{{reads_window},"target":"{dsn}","as_user":"alice"}}"#),
        format!(r#"{{{writes_window},"target":"{dsn}","allow_writes":true}}"#),
    ] {
        for key in [JOURNAL_KEY, KEY] {
            let (code, text) = admin_http(
                proxy.admin_addr,
                "POST",
                "/api/replay",
                Some(key),
                Some(&body),
            )
            .await;
            assert_eq!(code, 403, "{body} with {key}: {text}");
            if key == JOURNAL_KEY {
                assert!(text.contains("write_api_key"), "{text}");
            }
        }
        let (code, text) = admin_http_with(
            proxy.admin_addr,
            "POST",
            "/api/replay",
            &[("X-API-Key", JOURNAL_KEY), ("X-Write-Key", JOURNAL_KEY)],
            Some(&body),
        )
        .await;
        assert_eq!(code, 403, "the journal key is not the write key: {text}");
    }

    // As another user: `current_user` answers differently.
    let status = replay(
        &proxy,
        &format!(
            r#"{{{reads_window},"target":"{dsn}","diff_mode":"rows","as_user":"alice","filter":{{"contains":"current_user"}}}}"#
        ),
    )
    .await;
    assert_eq!(
        (
            status["statements_replayed"].clone(),
            status["diff_count"].clone()
        ),
        (1.into(), 1.into()),
        "{status}"
    );

    // Shadow mode runs the writes and keeps none of them.
    let count = |c: tokio_postgres::Client| async move {
        let row = c
            .query_one("select count(*), sum(price)::text from items", &[])
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, String>(1))
    };
    let before = count(connect(&candidate.direct("replayed")).await.unwrap()).await;
    let status = replay(
        &proxy,
        &format!(r#"{{{writes_window},"target":"{dsn}","shadow":true,"diff_mode":"rowcount"}}"#),
    )
    .await;
    assert_eq!(status["statements_replayed"], 5, "{status}");
    assert_eq!(status["errors"], 0, "{status}");
    assert_eq!(status["diff_count"], 0, "row counts as recorded: {status}");
    assert_eq!(
        count(connect(&candidate.direct("replayed")).await.unwrap()).await,
        before,
        "nothing stays on the candidate"
    );

    // Allowed, the writes land and the candidate matches the primary.
    let status = replay(
        &proxy,
        &format!(r#"{{{writes_window},"target":"{dsn}","allow_writes":true}}"#),
    )
    .await;
    assert_eq!(
        (status["errors"].clone(), status["diff_count"].clone()),
        (0.into(), 0.into()),
        "{status}"
    );
    let on_candidate = count(connect(&candidate.direct("replayed")).await.unwrap()).await;
    let on_primary = count(connect(&pg.direct("replayed")).await.unwrap()).await;
    assert_eq!(on_candidate, on_primary);

    // Paced replay is cancellable: at 1/1000 of the recorded speed it would take minutes.
    let (code, text) = post(
        &proxy,
        &format!(r#"{{{reads_window},"target":"{dsn}","speed":0.001}}"#),
    )
    .await;
    assert_eq!(code, 202, "{text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["replay_id"].clone();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, _) = admin_http(
        proxy.admin_addr,
        "DELETE",
        &format!("/api/replay/{id}"),
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(code, 202);
    let status = wait_done(&proxy, &id).await;
    assert_eq!(status["state"], "cancelled", "{status}");
    assert!(
        status["statements_replayed"].as_u64().unwrap() < 6,
        "{status}"
    );
    let (code, list) = admin_http(proxy.admin_addr, "GET", "/api/replay", Some(KEY), None).await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&list)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        7
    );
}
