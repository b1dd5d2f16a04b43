//! A client cannot make the proxy hold more memory than its budget: one that pipelines
//! statements without ever sending `Sync`, or binds huge parameters the journal keeps, gets
//! 54000 and is disconnected, the proxy's memory stays bounded, and other clients are served.

use std::time::Duration;

use helios_tests::heliosproxy::config::{JournalConfig, PoolMode};
use helios_tests::heliosproxy::wire::frame::{split_message, write_message};
use helios_tests::heliosproxy::wire::messages::ErrorFields;
use helios_tests::heliosproxy::wire::startup::encode_startup;
use helios_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BUDGET: usize = 8 << 20;

/// The test process's resident memory (the proxy runs in it), in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

async fn proxy(db: &str, journal: bool) -> heliosproxy::server::ProxyHandle {
    let pg = shared_pg();
    create_database(pg, db).await;
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.limits.max_client_message_bytes = 1 << 20;
    config.limits.max_client_memory_bytes = BUDGET;
    config.limits.max_memory_bytes = 64 << 20;
    if journal {
        config.journal = Some(JournalConfig {
            dir: temp_dir("journal-budget"),
            ..Default::default()
        });
    }
    start_proxy(config).await
}

async fn login(proxy: &heliosproxy::server::ProxyHandle, db: &str) -> TcpStream {
    let mut s = TcpStream::connect(proxy.local_addr).await.unwrap();
    let mut out = Vec::new();
    encode_startup(&mut out, &[("user", "postgres"), ("database", db)]);
    s.write_all(&out).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.ends_with(&[b'Z', 0, 0, 0, 5, b'I']) {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    s
}

/// Sends `messages` batches of bytes while reading whatever comes back; returns the
/// error the proxy ended the connection with.
async fn flood(mut s: TcpStream, mut next: impl FnMut(usize) -> Vec<u8>) -> ErrorFields {
    let (mut rd, mut wr) = s.split();
    let writer = async {
        for i in 0.. {
            if wr.write_all(&next(i)).await.is_err() {
                break;
            }
            if i > 100_000 {
                panic!("the proxy kept accepting the flood");
            }
        }
    };
    let reader = async {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            while let Ok(Some((tag, body))) = split_message(&buf, 1 << 20) {
                let len = 5 + body.len();
                if tag == b'E' {
                    return ErrorFields::parse(body).unwrap();
                }
                buf.drain(..len);
            }
            let n = rd.read(&mut chunk).await.unwrap_or(0);
            assert!(n > 0, "closed without an error");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    // The writer stops when the proxy closes; the error must have arrived before that.
    tokio::join!(reader, writer).0
}

fn parse(name: &str, filler: usize) -> Vec<u8> {
    let mut out = Vec::new();
    write_message(&mut out, b'P', |b| {
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        b.extend_from_slice(format!("select 1 /* {} */", "x".repeat(filler)).as_bytes());
        b.push(0);
        b.extend_from_slice(&0i16.to_be_bytes());
    });
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelining_without_sync_is_cut_off_at_the_budget() {
    let proxy = proxy("budget_parse", false).await;
    let other = connect(&via_proxy(&proxy, "postgres", "budget_parse"))
        .await
        .unwrap();
    let before = rss();
    let s = login(&proxy, "budget_parse").await;
    // 2 KB statements under new names, 100 per write, never a Sync: 40 MB if all were kept.
    let e = tokio::time::timeout(
        Duration::from_secs(60),
        flood(s, |i| {
            (0..100)
                .flat_map(|j| parse(&format!("s{i}_{j}"), 2000))
                .collect()
        }),
    )
    .await
    .expect("the proxy answered the flood");
    assert_eq!(e.code, "54000", "{}", e.message);
    assert_eq!(e.severity, "FATAL");
    let grown = rss().saturating_sub(before);
    assert!(grown < 48 << 20, "the proxy grew by {grown} bytes");
    assert_eq!(
        other
            .query_one("select 7", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bind_parameters_kept_for_the_journal_are_cut_off_at_the_budget() {
    let proxy = proxy("budget_bind", true).await;
    let other = connect(&via_proxy(&proxy, "postgres", "budget_bind"))
        .await
        .unwrap();
    let mut s = login(&proxy, "budget_bind").await;
    let mut out = Vec::new();
    write_message(&mut out, b'P', |b| {
        b.extend_from_slice(b"big\0select length($1::text)\0");
        b.extend_from_slice(&0i16.to_be_bytes());
    });
    s.write_all(&out).await.unwrap();
    // 900 KB parameters bound to new portals, never executed or synced.
    let value = vec![b'v'; 900 << 10];
    let e = flood(s, |i| {
        let mut out = Vec::new();
        write_message(&mut out, b'B', |b| {
            b.extend_from_slice(format!("p{i}\0big\0").as_bytes());
            b.extend_from_slice(&0i16.to_be_bytes());
            b.extend_from_slice(&1i16.to_be_bytes());
            b.extend_from_slice(&(value.len() as i32).to_be_bytes());
            b.extend_from_slice(&value);
            b.extend_from_slice(&0i16.to_be_bytes());
        });
        out
    })
    .await;
    assert_eq!(e.code, "54000", "{}", e.message);
    assert_eq!(
        other
            .query_one("select 8", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        8
    );
}

/// A listener that stays inside a transaction while notifications pour in: they wait for the
/// transaction to end, counted against its budget; past it the listener gets 54000 and is
/// disconnected, and other clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_held_for_a_listener_in_a_transaction_are_cut_off_at_the_budget() {
    let db = "budget_notify";
    let proxy = proxy(db, false).await;
    let url = via_proxy(&proxy, "postgres", db);
    let (listener, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let ended = tokio::spawn(connection);
    listener.batch_execute("LISTEN flood").await.unwrap();
    listener.batch_execute("BEGIN").await.unwrap();
    let before = rss();
    let notifier = connect(&shared_pg().direct(db)).await.unwrap();
    let payload = "x".repeat(7000);
    // 40 MB of notifications (distinct payloads: PostgreSQL folds identical ones), five
    // times the budget.
    for _ in 0..600 {
        notifier
            .batch_execute(&format!(
                "select pg_notify('flood', '{payload}' || g) from generate_series(1, 10) g"
            ))
            .await
            .unwrap();
        if ended.is_finished() {
            break;
        }
    }
    let end = tokio::time::timeout(Duration::from_secs(20), ended)
        .await
        .expect("the listener was disconnected")
        .unwrap();
    let err = end.expect_err("the connection ended with an error");
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("54000"),
        "{err}"
    );
    assert!(
        rss() < before + 64 * (1 << 20),
        "the proxy held the notifications"
    );
    let other = connect(&url).await.unwrap();
    assert_eq!(
        rows(&other.simple_query("select 1").await.unwrap())[0][0].as_deref(),
        Some("1")
    );
}
