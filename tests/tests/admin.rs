//! The admin API over a real socket: auth, the component list, and hot reload under load.

use std::time::Duration;

use helios_tests::heliosproxy::config::{Grant, PoolMode};
use helios_tests::heliosproxy::oci::Artifact;
use helios_tests::*;

async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
) -> (u16, String) {
    admin_http(addr, method, path, key, None).await
}

fn pack(crate_name: &str, path: &std::path::Path) {
    let wasm = std::fs::read(component_wasm(crate_name)).unwrap();
    let a = Artifact::new("policy", "1", vec![], vec![], wasm);
    std::fs::write(path, a.pack().unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_the_key_except_for_health() {
    let pg = shared_pg();
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.admin.api_key = Some("s3cret-key".into());
    config
        .plugins
        .push(plugin("guardrail", "helios-llm-guardrail", &[], ""));
    let proxy = start_proxy(config).await;
    let (code, body) = http(proxy.admin_addr, "GET", "/api/health", None).await;
    assert_eq!(code, 200);
    assert!(body.contains("\"ok\""), "{body}");
    assert_eq!(http(proxy.admin_addr, "GET", "/plugins", None).await.0, 401);
    assert_eq!(
        http(proxy.admin_addr, "GET", "/plugins", Some("wrong"))
            .await
            .0,
        401
    );
    let (code, body) = http(proxy.admin_addr, "GET", "/plugins", Some("s3cret-key")).await;
    assert_eq!(code, 200, "{body}");
    for want in [
        "\"name\":\"guardrail\"",
        "\"digest\":",
        "\"signature\":\"unverified\"",
        "\"validate\"",
        "\"calls\":",
        "\"p99_call_us\":",
    ] {
        assert!(body.contains(want), "{want} in {body}");
    }
    assert_eq!(
        http(
            proxy.admin_addr,
            "POST",
            "/plugins/nope/disable",
            Some("s3cret-key")
        )
        .await
        .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_pgbench_load_loses_no_transaction() {
    let pg = shared_pg();
    create_database(pg, "admin_reload").await;
    let direct = connect(&pg.direct("admin_reload")).await.unwrap();
    direct
        .batch_execute("create table probe(x int); insert into probe values (1)")
        .await
        .unwrap();
    let dir = temp_dir("reload");
    let artifact = dir.join("policy.tar.gz");
    pack("helios-misbehave", &artifact);
    let mut config = proxy_config(pg, PoolMode::Transaction, 4);
    config.admin.api_key = Some("k".into());
    let mut p = plugin(
        "policy",
        "helios-misbehave",
        &[Grant::Kv],
        "mode = \"noop\"\nlarge_tables = [\"probe\"]\n",
    );
    p.source = artifact.display().to_string();
    config.plugins.push(p);
    let proxy = start_proxy(config).await;
    let port = proxy.local_addr.port().to_string();
    let c = connect(&via_proxy(&proxy, "postgres", "admin_reload"))
        .await
        .unwrap();
    c.simple_query("select * from probe")
        .await
        .expect("v1 lets everything through");

    let (ok, _, err) = run_program(
        "pgbench",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-i",
            "-q",
            "admin_reload",
        ],
        &[],
    )
    .await;
    assert!(ok, "{err}");
    let bench = tokio::spawn(async move {
        run_program(
            "pgbench",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-n",
                "-S",
                "-c",
                "4",
                "-T",
                "4",
                "admin_reload",
            ],
            &[],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A broken artefact: refused, the old version keeps serving.
    std::fs::write(&artifact, b"truncated").unwrap();
    let (code, body) = http(
        proxy.admin_addr,
        "POST",
        "/plugins/policy/reload",
        Some("k"),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("artefact") && body.contains("previous version"),
        "{body}"
    );
    // The new version: the guardrail, which refuses SELECT on probe without LIMIT.
    pack("helios-llm-guardrail", &artifact);
    let (code, body) = http(
        proxy.admin_addr,
        "POST",
        "/plugins/policy/reload",
        Some("k"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (ok, out, err) = bench.await.unwrap();
    assert!(ok, "pgbench failed during reload: {err}");
    assert!(out.contains("number of failed transactions: 0"), "{out}");
    let err = c.simple_query("select * from probe").await.unwrap_err();
    assert_eq!(
        err.code().unwrap().code(),
        "42501",
        "the reloaded component is active"
    );
    // Disable and enable.
    assert_eq!(
        http(
            proxy.admin_addr,
            "POST",
            "/plugins/policy/disable",
            Some("k")
        )
        .await
        .0,
        200
    );
    c.simple_query("select * from probe")
        .await
        .expect("disabled component is not called");
    assert_eq!(
        http(
            proxy.admin_addr,
            "POST",
            "/plugins/policy/enable",
            Some("k")
        )
        .await
        .0,
        200
    );
    assert!(c.simple_query("select * from probe").await.is_err());
}
