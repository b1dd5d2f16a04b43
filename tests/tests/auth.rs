//! Client authentication (SCRAM-SHA-256, MD5, cleartext pass-through) and TLS to clients.

use helios_tests::heliosproxy::config::{AuthMethod, ClientTlsMode, PoolMode};
use helios_tests::heliosproxy::embedded::HostAuth;
use helios_tests::*;

async fn users_setup(db: &str, method: AuthMethod) -> heliosproxy::server::ProxyHandle {
    let pg = shared_pg();
    create_database(pg, db).await;
    let direct = connect(&pg.direct("postgres")).await.unwrap();
    let _ = direct.batch_execute("CREATE ROLE alice LOGIN").await;
    let _ = direct.batch_execute("CREATE ROLE carol LOGIN").await;
    let dir = temp_dir("users");
    let users = dir.join("userlist.txt");
    let md5 = heliosproxy::wire::auth::md5_stored("md5pass", "bob");
    let scram = postgres_protocol_verifier("scrampass");
    std::fs::write(
        &users,
        format!("\"alice\" \"secret\"\n\"bob\" \"{md5}\"\n\"carol\" \"{scram}\"\n"),
    )
    .unwrap();
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.auth.method = method;
    config.auth.users_file = Some(users);
    start_proxy(config).await
}

fn postgres_protocol_verifier(pw: &str) -> String {
    // The same format PostgreSQL stores in pg_authid.
    let v = heliosproxy::wire::auth::ScramVerifier::from_password(pw, b"0123456789abcdef", 4096);
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD;
    format!(
        "SCRAM-SHA-256${}:{}${}:{}",
        v.iterations,
        b.encode(&v.salt),
        b.encode(v.stored_key),
        b.encode(v.server_key)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_login_accepts_the_right_password_and_refuses_a_wrong_one() {
    let proxy = users_setup("auth_scram", AuthMethod::ScramSha256).await;
    let ok = connect(&format!(
        "{} password=secret",
        via_proxy(&proxy, "alice", "auth_scram")
    ))
    .await
    .unwrap();
    let who: String = ok
        .query_one("select current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "alice");
    let err = connect(&format!(
        "{} password=wrong",
        via_proxy(&proxy, "alice", "auth_scram")
    ))
    .await
    .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "28P01", "{err}");
    // A stored SCRAM verifier works without the proxy knowing the password.
    let carol = connect(&format!(
        "{} password=scrampass",
        via_proxy(&proxy, "carol", "auth_scram")
    ))
    .await
    .unwrap();
    let who: String = carol
        .query_one("select current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "carol");
    let err = connect(&format!(
        "{} password=x",
        via_proxy(&proxy, "nobody_here", "auth_scram")
    ))
    .await
    .unwrap_err();
    assert_eq!(
        err.code().unwrap().code(),
        "28P01",
        "unknown users look like wrong passwords"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_login_works_with_plaintext_and_md5_secrets() {
    let proxy = users_setup("auth_md5", AuthMethod::Md5).await;
    let c = connect(&format!(
        "{} password=secret",
        via_proxy(&proxy, "alice", "auth_md5")
    ))
    .await
    .unwrap();
    assert_eq!(
        c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
    let err = connect(&format!(
        "{} password=nope",
        via_proxy(&proxy, "bob", "auth_md5")
    ))
    .await
    .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "28P01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_uses_the_clients_password_against_a_scram_backend() {
    let pg = start_pg(HostAuth::Scram, Some("backend-pw"));
    let mut config = proxy_config(&pg, PoolMode::Transaction, 2);
    config.auth.method = AuthMethod::Password;
    config.auth.passthrough = true;
    config.auth.server_password = None;
    let proxy = start_proxy(config).await;
    let c = connect(&format!(
        "{} password=backend-pw",
        via_proxy(&proxy, "postgres", "postgres")
    ))
    .await
    .unwrap();
    assert_eq!(
        c.query_one("select 9", &[]).await.unwrap().get::<_, i32>(0),
        9
    );
    let err = connect(&format!(
        "{} password=wrong",
        via_proxy(&proxy, "postgres", "postgres")
    ))
    .await
    .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "28P01", "{err}");
    // Pooled connections opened later use the remembered password.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(
            connect(&format!(
                "{} password=backend-pw",
                via_proxy(&proxy, "postgres", "postgres")
            ))
            .await
            .unwrap(),
        );
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| {
            tokio::spawn(
                async move { c.query_one("select pg_sleep(0.2)::text", &[]).await.is_ok() },
            )
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_offered_to_clients_and_can_be_required() {
    let pg = shared_pg();
    create_database(pg, "auth_tls").await;
    let dir = temp_dir("tls");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("server.crt"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), cert.signing_key.serialize_pem()).unwrap();
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.tls.cert = Some(dir.join("server.crt"));
    config.tls.key = Some(dir.join("server.key"));
    config.tls.mode = ClientTlsMode::Require;
    let proxy = start_proxy(config).await;
    let port = proxy.local_addr.port().to_string();
    let (ok, out, err) = run_program(
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
            "postgres",
            "-d",
            "auth_tls",
            "-c",
            "select 'over tls'",
        ],
        &[("PGSSLMODE", "require")],
    )
    .await;
    assert!(ok, "psql over TLS failed: {err}");
    assert_eq!(out.trim(), "over tls");
    let (ok, _, err) = run_program(
        "psql",
        &[
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            "auth_tls",
            "-c",
            "select 1",
        ],
        &[("PGSSLMODE", "disable")],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("TLS is required"), "{err}");
}
