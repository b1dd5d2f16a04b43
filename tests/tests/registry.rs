//! Components from a real OCI registry (Debian's docker-registry on loopback): pushed, pulled,
//! verified, cached; a registry that is down or hangs does not stop the proxy from starting
//! from its cache, and never hangs it.

use std::path::Path;
use std::time::{Duration, Instant};

use helios_tests::heliosproxy::config::{Config, PoolMode};
use helios_tests::heliosproxy::oci::{Artifact, registry, trust};
use helios_tests::heliosproxy::server::Proxy;
use helios_tests::*;

fn signed(dir: &Path, trusted: bool) -> Vec<u8> {
    let key_name = if trusted { "trusted" } else { "stranger" };
    let key_path = dir.join(format!("{key_name}.key"));
    if !key_path.exists() {
        let (private, public) = trust::generate_key_pair();
        std::fs::write(&key_path, private).unwrap();
        if trusted {
            std::fs::create_dir_all(dir.join("trust")).unwrap();
            std::fs::write(dir.join("trust").join("trusted.pub"), public).unwrap();
        }
    }
    let key = trust::load_signing_key(&key_path).unwrap();
    let wasm = std::fs::read(component_wasm("helios-llm-guardrail")).unwrap();
    let mut a = Artifact::new("guardrail", "2.0.0", vec!["validate".into()], vec![], wasm);
    a.sign(&key);
    a.pack().unwrap()
}

fn config(source: String, dir: &Path, registry: &str) -> Config {
    let mut config = proxy_config(shared_pg(), PoolMode::Transaction, 2);
    let mut p = plugin("guardrail", "helios-llm-guardrail", &[], "");
    p.source = source;
    config.plugins.push(p);
    config.plugin_runtime.trust_root = Some(dir.join("trust"));
    config.plugin_runtime.cache_dir = Some(dir.join("cache"));
    config.plugin_runtime.insecure_registries = vec![registry.to_owned()];
    config.plugin_runtime.registry_timeout_ms = 3000;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_component_is_pulled_verified_and_served_from_cache_when_the_registry_is_down() {
    let dir = temp_dir("oci");
    let reg = Registry::start();
    let reference = format!("{}/helios/guardrail:2.0.0", reg.addr);
    let insecure = vec![reg.addr.clone()];
    let r = reference.clone();
    let bytes = signed(&dir, true);
    let manifest_url = tokio::task::spawn_blocking(move || registry::push(&r, bytes, &insecure))
        .await
        .unwrap()
        .unwrap();
    let digest = manifest_url.rsplit('/').next().unwrap().to_owned();
    assert!(digest.starts_with("sha256:"), "{manifest_url}");

    let pg = shared_pg();
    create_database(pg, "oci_pull").await;
    let source = format!("oci://{reference}");
    let proxy = start_proxy(config(source.clone(), &dir, &reg.addr)).await;
    let plugin = proxy.shared.pipeline.load().plugins()[0].clone();
    assert_eq!(
        plugin.provenance.lock().unwrap().signed_by.as_deref(),
        Some("trusted.pub")
    );
    assert_eq!(
        plugin.provenance.lock().unwrap().version.as_deref(),
        Some("2.0.0")
    );
    let c = connect(&via_proxy(&proxy, "postgres", "oci_pull"))
        .await
        .unwrap();
    assert_eq!(
        c.simple_query("drop table nope")
            .await
            .unwrap_err()
            .code()
            .unwrap()
            .code(),
        "42501"
    );
    proxy.stop().await;
    // Digest pinning.
    let pinned = format!("oci://{}/helios/guardrail@{digest}", reg.addr);
    let proxy = start_proxy(config(pinned, &dir, &reg.addr)).await;
    assert_eq!(proxy.shared.pipeline.load().plugins().len(), 1);
    proxy.stop().await;

    // The registry goes away: the proxy starts from its cache.
    let addr = reg.addr.clone();
    drop(reg);
    let proxy = start_proxy(config(source, &dir, &addr)).await;
    assert_eq!(proxy.shared.pipeline.load().plugins().len(), 1);

    // An artefact signed by a stranger is refused even when it comes from a registry.
    let reg = Registry::start();
    let reference = format!("{}/helios/guardrail:evil", reg.addr);
    let insecure = vec![reg.addr.clone()];
    let r = reference.clone();
    let bytes = signed(&dir, false);
    tokio::task::spawn_blocking(move || registry::push(&r, bytes, &insecure))
        .await
        .unwrap()
        .unwrap();
    let err = match Proxy::bind(config(format!("oci://{reference}"), &dir, &reg.addr)).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("an untrusted signature must be refused"),
    };
    assert!(
        err.contains("component guardrail") && err.contains("does not verify"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_hangs_fails_the_load_within_the_timeout() {
    let dir = temp_dir("hang");
    signed(&dir, true);
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let started = Instant::now();
    let err = match Proxy::bind(config(format!("oci://{addr}/helios/x:1"), &dir, &addr)).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("must fail"),
    };
    assert!(err.contains("did not answer within 3000 ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_an_artefact_between_registries_and_it_still_verifies() {
    if std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("skopeo is required (apt-get install skopeo)");
    }
    let dir = temp_dir("skopeo");
    let (a, b) = (Registry::start(), Registry::start());
    let src = format!("{}/helios/guardrail:1", a.addr);
    let dst = format!("{}/mirror/guardrail:1", b.addr);
    let insecure = vec![a.addr.clone()];
    let (r, bytes) = (src.clone(), signed(&dir, true));
    tokio::task::spawn_blocking(move || registry::push(&r, bytes, &insecure))
        .await
        .unwrap()
        .unwrap();
    let out = tokio::process::Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{src}"))
        .arg(format!("docker://{dst}"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let proxy = start_proxy(config(format!("oci://{dst}"), &dir, &b.addr)).await;
    let plugin = proxy.shared.pipeline.load().plugins()[0].clone();
    assert_eq!(
        plugin.provenance.lock().unwrap().signed_by.as_deref(),
        Some("trusted.pub")
    );
}
