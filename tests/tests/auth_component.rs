//! Token logins judged by the signed `auth` component, pulled from a real registry: a client
//! sends a JWT (or an API key) as its password, through tokio-postgres and through `psql`
//! (libpq); a valid RS256 or ES256 token lands on the role its claim maps to (checked with
//! `current_user`), and what an attacker sends is refused with the same words every time;
//! keys rotate and API keys are revoked through the files the kernel serves, without a restart.

use helios_tests::heliosproxy::config::{AuthMethod, Config, Grant, HookName, PoolMode};
use helios_tests::published::publish;
use helios_tests::tokens::{Issuer, RSA_JWK, b64, now_s};
use helios_tests::*;

const ISSUER: &str = "https://idp.test";

fn claims(sub: &str, role: &str, exp: i64) -> String {
    format!(
        r#"{{"sub":"{sub}","iss":"{ISSUER}","aud":"heliosproxy","exp":{exp},"iat":{},"role":"{role}","tenant":"acme"}}"#,
        now_s() - 5
    )
}

async fn proxy_with_auth(issuer: &Issuer, reg: &Registry, trusted: bool) -> ProxyHandle {
    let pg = shared_pg();
    let mut config: Config = proxy_config(pg, PoolMode::Transaction, 2);
    config.auth.method = AuthMethod::Component;
    config.auth.trusted_network = trusted;
    config.auth.allowed_roles = vec!["token_reader".into()];
    let api_key_hash = {
        let d = ring::digest::digest(&ring::digest::SHA256, b"hpk_test_key");
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let plugin_config = format!(
        "jwks = '{}'\nissuer = \"{ISSUER}\"\naudience = \"heliosproxy\"\n\
         api_keys = [\"{api_key_hash}:svc:token_reader:0:20\"]\n",
        issuer.jwks()
    );
    let mut p = plugin(
        "auth",
        "helios-auth",
        &[Grant::Crypto, Grant::Clock, Grant::Log],
        &plugin_config,
    );
    p.hooks = vec![HookName::Authenticate];
    publish(&mut config, p, "helios-auth", reg).await;
    start_proxy(config).await
}

use helios_tests::heliosproxy::server::ProxyHandle;

async fn login(proxy: &ProxyHandle, user: &str, token: &str) -> Result<String, String> {
    let url = format!(
        "host=127.0.0.1 port={} user={user} dbname=postgres password='{token}'",
        proxy.local_addr.port()
    );
    let c = connect(&url).await.map_err(|e| db_message(&e))?;
    let row = c
        .query_one("select current_user::text", &[])
        .await
        .map_err(|e| db_message(&e))?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_log_in_on_their_mapped_role_and_forgeries_are_refused() {
    let admin = connect(&shared_pg().direct("postgres")).await.unwrap();
    admin
        .batch_execute(
            "do $$ begin create role token_reader login; exception when duplicate_object or unique_violation then null; end $$",
        )
        .await
        .unwrap();
    let issuer = Issuer::new();
    let reg = Registry::start();
    let proxy = proxy_with_auth(&issuer, &reg, true).await;
    let exp = now_s() + 300;

    // Valid RS256 and ES256 tokens, and an API key.
    let rs = issuer.sign("RS256", "rsa-1", &claims("alice", "token_reader", exp));
    assert_eq!(login(&proxy, "alice", &rs).await.unwrap(), "token_reader");
    let es = issuer.sign("ES256", "ec-1", &claims("alice", "token_reader", exp));
    assert_eq!(login(&proxy, "alice", &es).await.unwrap(), "token_reader");
    assert_eq!(
        login(&proxy, "svc", "hpk_test_key").await.unwrap(),
        "token_reader"
    );
    // libpq (psql) with the token in PGPASSWORD, as RDS IAM users pass theirs.
    let (ok, out, err) = run_program(
        "psql",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &proxy.local_addr.port().to_string(),
            "-U",
            "alice",
            "-d",
            "postgres",
            "-tAc",
            "select current_user",
        ],
        &[("PGPASSWORD", rs.as_str())],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "token_reader");

    // What an attacker sends: every refusal reads the same.
    let expect_refused = |what: &'static str| {
        move |r: Result<String, String>| {
            let e = r.expect_err(what);
            assert!(
                e.contains("password authentication failed for user"),
                "{what}: {e}"
            );
        }
    };
    expect_refused("expired")(
        login(
            &proxy,
            "alice",
            &issuer.sign(
                "RS256",
                "rsa-1",
                &claims("alice", "token_reader", now_s() - 120),
            ),
        )
        .await,
    );
    let stranger = Issuer::new();
    expect_refused("signed by another key")(
        login(
            &proxy,
            "alice",
            &stranger.sign("ES256", "ec-1", &claims("alice", "token_reader", exp)),
        )
        .await,
    );
    let body = claims("alice", "token_reader", exp);
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(body.as_bytes())
    );
    expect_refused("alg none")(login(&proxy, "alice", &none).await);
    let n: serde_json::Value = serde_json::from_str(RSA_JWK).unwrap();
    let n = n["n"].as_str().unwrap();
    let signed = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","kid":"rsa-1"}"#),
        b64(body.as_bytes())
    );
    for secret in [n.as_bytes().to_vec(), RSA_JWK.as_bytes().to_vec()] {
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
            signed.as_bytes(),
        );
        expect_refused("HS256 keyed with the RSA public key")(
            login(&proxy, "alice", &format!("{signed}.{}", b64(mac.as_ref()))).await,
        );
    }
    let wrong_aud = body.replace("\"heliosproxy\"", "\"another-service\"");
    expect_refused("wrong audience")(
        login(&proxy, "alice", &issuer.sign("RS256", "rsa-1", &wrong_aud)).await,
    );
    expect_refused("a claim naming a role config does not allow")(
        login(
            &proxy,
            "alice",
            &issuer.sign("RS256", "rsa-1", &claims("alice", "postgres", exp)),
        )
        .await,
    );
    expect_refused("another user's token")(login(&proxy, "mallory", &rs).await);
    expect_refused("an unknown API key")(login(&proxy, "svc", "hpk_guess").await);
    expect_refused("no token")(login(&proxy, "alice", "").await);

    // Without TLS and without `trusted_network`, no token is even asked for.
    let strict = proxy_with_auth(&issuer, &reg, false).await;
    let e = login(&strict, "alice", &rs).await.expect_err("plain TCP");
    assert!(e.contains("TLS"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_and_api_keys_are_revoked_through_their_files_without_a_restart() {
    let admin = connect(&shared_pg().direct("postgres")).await.unwrap();
    admin
        .batch_execute(
            "do $$ begin create role token_reader login; exception when duplicate_object or unique_violation then null; end $$",
        )
        .await
        .unwrap();
    let issuer = Issuer::new();
    let reg = Registry::start();
    let dir = temp_dir("auth-documents");
    let (jwks_file, keys_file) = (dir.join("jwks.json"), dir.join("api-keys"));
    std::fs::write(&jwks_file, format!(r#"{{"keys":[{RSA_JWK}]}}"#)).unwrap();
    let hash: String = ring::digest::digest(&ring::digest::SHA256, b"hpk_rotating")
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(
        &keys_file,
        format!("# service keys\n{hash}:svc:token_reader:0:0\n"),
    )
    .unwrap();
    let mut config: Config = proxy_config(shared_pg(), PoolMode::Transaction, 2);
    config.auth.method = AuthMethod::Component;
    config.auth.trusted_network = true;
    config.auth.allowed_roles = vec!["token_reader".into()];
    let mut p = plugin(
        "auth",
        "helios-auth",
        &[Grant::Crypto, Grant::Clock, Grant::Log],
        &format!(
            "jwks_document = \"jwks\"\napi_keys_document = \"keys\"\nissuer = \"{ISSUER}\"\naudience = \"heliosproxy\"\n"
        ),
    );
    p.hooks = vec![HookName::Authenticate];
    p.documents = [
        ("jwks".to_owned(), jwks_file.display().to_string()),
        ("keys".to_owned(), keys_file.display().to_string()),
    ]
    .into_iter()
    .collect();
    publish(&mut config, p, "helios-auth", &reg).await;
    let proxy = start_proxy(config).await;
    let es = issuer.sign(
        "ES256",
        "ec-1",
        &claims("alice", "token_reader", now_s() + 300),
    );
    let rs = issuer.sign(
        "RS256",
        "rsa-1",
        &claims("alice", "token_reader", now_s() + 300),
    );
    assert_eq!(login(&proxy, "alice", &rs).await.unwrap(), "token_reader");
    login(&proxy, "alice", &es)
        .await
        .expect_err("the EC key is not published yet");
    assert_eq!(
        login(&proxy, "svc", "hpk_rotating").await.unwrap(),
        "token_reader"
    );

    // The identity provider publishes its new key; the operator revokes the API key.
    std::fs::write(&jwks_file, issuer.jwks()).unwrap();
    std::fs::write(&keys_file, "# revoked\n").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(login(&proxy, "alice", &es).await.unwrap(), "token_reader");
    let e = login(&proxy, "svc", "hpk_rotating")
        .await
        .expect_err("revoked");
    assert!(e.contains("password authentication failed"), "{e}");
}

/// A JWKS served over HTTP, as identity providers publish theirs: read at load, and fetched
/// again when a token names a key id the proxy does not have yet.
async fn jwks_server(body: std::sync::Arc<std::sync::Mutex<String>>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.lock().unwrap().clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_at_the_jwks_url_is_picked_up() {
    let admin = connect(&shared_pg().direct("postgres")).await.unwrap();
    admin
        .batch_execute(
            "do $$ begin create role token_reader login; exception when duplicate_object or unique_violation then null; end $$",
        )
        .await
        .unwrap();
    let issuer = Issuer::new();
    let reg = Registry::start();
    let published =
        std::sync::Arc::new(std::sync::Mutex::new(format!(r#"{{"keys":[{RSA_JWK}]}}"#)));
    let port = jwks_server(published.clone()).await;
    let mut config: Config = proxy_config(shared_pg(), PoolMode::Transaction, 2);
    config.auth.method = AuthMethod::Component;
    config.auth.trusted_network = true;
    config.auth.allowed_roles = vec!["token_reader".into()];
    let mut p = plugin(
        "auth",
        "helios-auth",
        &[Grant::Crypto, Grant::Clock, Grant::Log],
        &format!("jwks_document = \"jwks\"\nissuer = \"{ISSUER}\"\naudience = \"heliosproxy\"\n"),
    );
    p.hooks = vec![HookName::Authenticate];
    p.documents = [(
        "jwks".to_owned(),
        format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
    )]
    .into_iter()
    .collect();
    publish(&mut config, p, "helios-auth", &reg).await;
    let proxy = start_proxy(config).await;
    let rs = issuer.sign(
        "RS256",
        "rsa-1",
        &claims("alice", "token_reader", now_s() + 300),
    );
    let es = issuer.sign(
        "ES256",
        "ec-1",
        &claims("alice", "token_reader", now_s() + 300),
    );
    let until = |secs: u64| std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let deadline = until(10);
    while login(&proxy, "alice", &rs).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the JWKS was never fetched"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    login(&proxy, "alice", &es)
        .await
        .expect_err("ec-1 is not published yet");
    // The issuer rotates in its new key; a token naming it makes the proxy fetch again.
    *published.lock().unwrap() = issuer.jwks();
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let deadline = until(10);
    while let Err(e) = login(&proxy, "alice", &es).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated key was never picked up: {e}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
