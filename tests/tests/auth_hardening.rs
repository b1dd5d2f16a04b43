//! Authentication against an adversary: a prober cannot tell unknown users from real ones,
//! SCRAM binds the TLS channel, and a pass-through login storm neither exhausts the
//! backend's connections nor keeps real clients out.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use helios_tests::heliosproxy::config::{AuthMethod, ClientTlsMode, PoolMode};
use helios_tests::heliosproxy::embedded::HostAuth;
use helios_tests::*;
use heliosproxy::wire::frame::{split_message, write_message};
use heliosproxy::wire::messages::ErrorFields;
use heliosproxy::wire::startup::encode_startup;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a prober sees of one SCRAM exchange: the salt, the iteration count, and the error
/// after a made-up proof.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    salt: Vec<u8>,
    iterations: u32,
    error: (String, String),
}

async fn read_message(s: &mut TcpStream, buf: &mut Vec<u8>) -> (u8, Vec<u8>) {
    loop {
        if let Some((tag, body)) = split_message(buf, 1 << 20).unwrap() {
            let out = (tag, body.to_vec());
            buf.drain(..5 + out.1.len());
            return out;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(n > 0, "connection closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn probe(proxy: &heliosproxy::server::ProxyHandle, user: &str) -> Seen {
    let mut s = TcpStream::connect(proxy.local_addr).await.unwrap();
    let mut out = Vec::new();
    encode_startup(&mut out, &[("user", user), ("database", "postgres")]);
    s.write_all(&out).await.unwrap();
    let mut buf = Vec::new();
    let (tag, body) = read_message(&mut s, &mut buf).await;
    assert_eq!((tag, &body[..4]), (b'R', &10i32.to_be_bytes()[..]));
    let client_first = b"n,,n=,r=prober-nonce";
    let mut out = Vec::new();
    write_message(&mut out, b'p', |b| {
        b.extend_from_slice(b"SCRAM-SHA-256\0");
        b.extend_from_slice(&(client_first.len() as i32).to_be_bytes());
        b.extend_from_slice(client_first);
    });
    s.write_all(&out).await.unwrap();
    let (tag, body) = read_message(&mut s, &mut buf).await;
    assert_eq!((tag, &body[..4]), (b'R', &11i32.to_be_bytes()[..]));
    let server_first = String::from_utf8(body[4..].to_vec()).unwrap();
    let attr = |k: &str| {
        server_first
            .split(',')
            .find_map(|a| a.strip_prefix(k))
            .unwrap()
            .to_owned()
    };
    let nonce = attr("r=");
    let salt = B64.decode(attr("s=")).unwrap();
    let iterations = attr("i=").parse().unwrap();
    let final_message = format!("c=biws,r={nonce},p={}", B64.encode([7u8; 32]));
    let mut out = Vec::new();
    write_message(&mut out, b'p', |b| {
        b.extend_from_slice(final_message.as_bytes())
    });
    s.write_all(&out).await.unwrap();
    let (tag, body) = read_message(&mut s, &mut buf).await;
    assert_eq!(tag, b'E');
    let e = ErrorFields::parse(&body).unwrap();
    Seen {
        salt,
        iterations,
        error: (e.code, e.message.replace(user, "<user>")),
    }
}

fn verifier(pw: &str) -> String {
    let v = heliosproxy::wire::auth::ScramVerifier::from_password(pw, b"0123456789abcdef", 4096);
    format!(
        "SCRAM-SHA-256${}:{}${}:{}",
        v.iterations,
        B64.encode(&v.salt),
        B64.encode(v.stored_key),
        B64.encode(v.server_key)
    )
}

fn users_file(dir: &std::path::Path) -> std::path::PathBuf {
    let users = dir.join("userlist.txt");
    let md5 = heliosproxy::wire::auth::md5_stored("md5pass", "bob");
    std::fs::write(
        &users,
        format!(
            "\"alice\" \"secret\"\n\"bob\" \"{md5}\"\n\"carol\" \"{}\"\n",
            verifier("scrampass")
        ),
    )
    .unwrap();
    users
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_is_indistinguishable_from_a_known_one() {
    let pg = shared_pg();
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.auth.method = AuthMethod::ScramSha256;
    config.auth.users_file = Some(users_file(&temp_dir("users")));
    let proxy = start_proxy(config).await;
    let known = probe(&proxy, "carol").await;
    assert_eq!(known.salt, b"0123456789abcdef");
    for user in ["mallory", "bob", "alice"] {
        let first = probe(&proxy, user).await;
        let again = probe(&proxy, user).await;
        assert_eq!(
            first, again,
            "{user}: a second attempt sees the same challenge"
        );
        assert_eq!(first.salt.len(), known.salt.len(), "{user}");
        assert_eq!(first.iterations, known.iterations, "{user}");
        assert_eq!(first.error, known.error, "{user}");
    }
    // The same proxy restarted (same users file) challenges unknown users the same way.
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.auth.method = AuthMethod::ScramSha256;
    config.auth.users_file = Some(users_file(&temp_dir("users")));
    let restarted = start_proxy(config).await;
    assert_eq!(
        probe(&restarted, "mallory").await,
        probe(&proxy, "mallory").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_plus_binds_the_channel_over_tls() {
    let pg = shared_pg();
    let direct = connect(&pg.direct("postgres")).await.unwrap();
    let _ = direct.batch_execute("CREATE ROLE carol LOGIN").await;
    let dir = temp_dir("tls-plus");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("server.crt"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), cert.signing_key.serialize_pem()).unwrap();
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.auth.method = AuthMethod::ScramSha256;
    config.auth.users_file = Some(users_file(&dir));
    config.tls.cert = Some(dir.join("server.crt"));
    config.tls.key = Some(dir.join("server.key"));
    config.tls.mode = ClientTlsMode::Allow;
    let proxy = start_proxy(config).await;
    let port = proxy.local_addr.port().to_string();
    let psql = |binding: &'static str, sslmode: &'static str, pw: &'static str| {
        let port = port.clone();
        async move {
            run_program(
                "psql",
                &[
                    "-X",
                    "-A",
                    "-t",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "carol",
                    "-d",
                    "postgres",
                    "-c",
                    "select 'bound'",
                ],
                &[
                    ("PGSSLMODE", sslmode),
                    ("PGCHANNELBINDING", binding),
                    ("PGPASSWORD", pw),
                ],
            )
            .await
        }
    };
    let (ok, out, err) = psql("require", "require", "scrampass").await;
    assert!(ok, "SCRAM-SHA-256-PLUS over TLS failed: {err}");
    assert_eq!(out.trim(), "bound");
    let (ok, _, err) = psql("require", "require", "wrong").await;
    assert!(!ok);
    assert!(err.contains("password authentication failed"), "{err}");
    // Without TLS there is no channel to bind; plain SCRAM still works.
    let (ok, _, _) = psql("require", "disable", "scrampass").await;
    assert!(!ok, "channel_binding=require cannot be met without TLS");
    let (ok, out, err) = psql("prefer", "disable", "scrampass").await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "bound");
}

/// Connects from a chosen loopback address, so a test can be two different clients.
async fn connect_from(
    from: &str,
    proxy: &heliosproxy::server::ProxyHandle,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(proxy.local_addr).await.unwrap();
    let mut config = tokio_postgres::Config::new();
    config
        .user("postgres")
        .dbname("postgres")
        .password(password);
    let (client, connection) = config.connect_raw(stream, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_login_storm_leaves_the_backend_to_real_clients() {
    let pg = start_pg(HostAuth::Scram, Some("backend-pw"));
    let mut config = proxy_config(&pg, PoolMode::Transaction, 2);
    config.auth.method = AuthMethod::Password;
    config.auth.passthrough = true;
    config.auth.server_password = None;
    config.auth.passthrough_max_checks = 3;
    config.auth.max_failed_logins = 20;
    let proxy = start_proxy(config).await;
    let direct = connect(&format!("{} password=backend-pw", pg.direct("postgres")))
        .await
        .unwrap();
    let backends = || async {
        direct
            .query_one(
                "select count(*) from pg_stat_activity where backend_type = 'client backend'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let before = backends().await;
    // 200 wrong passwords from one address, 50 at a time.
    let storm = {
        let proxy_addr = proxy.local_addr;
        tokio::spawn(async move {
            let mut refused = Vec::new();
            for _ in 0..4 {
                let attempts: Vec<_> = (0..50)
                    .map(|_| {
                        tokio::spawn(async move {
                            let socket = tokio::net::TcpSocket::new_v4().unwrap();
                            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
                            let stream = socket.connect(proxy_addr).await.unwrap();
                            let mut config = tokio_postgres::Config::new();
                            config.user("postgres").dbname("postgres").password("guess");
                            config
                                .connect_raw(stream, tokio_postgres::NoTls)
                                .await
                                .err()
                                .and_then(|e| e.code().map(|c| c.code().to_owned()))
                        })
                    })
                    .collect();
                for a in attempts {
                    refused.push(a.await.unwrap());
                }
            }
            refused
        })
    };
    let mut most = 0;
    while !storm.is_finished() {
        most = most.max(backends().await - before);
        // A real client from another address logs in and works during the storm.
        let c = connect_from("127.0.0.1", &proxy, "backend-pw")
            .await
            .unwrap();
        assert_eq!(
            c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
            1
        );
        drop(c);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = storm.await.unwrap();
    assert!(
        refused.iter().all(Option::is_some),
        "every guess was refused"
    );
    let throttled = refused
        .iter()
        .filter(|c| c.as_deref() == Some("28000"))
        .count();
    assert!(
        throttled >= 150,
        "after 20 failures the address is refused without a backend login ({throttled} of 200)"
    );
    // Pass-through checks (3) plus the pool (2) and this test's direct connection, and a few
    // checks' backends still exiting when a sample is taken; unbounded, 50 at once would show.
    assert!(
        most <= 3 + 2 + 1 + 4,
        "the storm held {most} backend connections"
    );
}
