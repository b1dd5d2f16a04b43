//! Signed components: with a trust root only artefacts signed by a trusted key load; every
//! kind of tampering is refused with an error naming the component, the source and the reason.

use std::path::{Path, PathBuf};

use helios_tests::heliosproxy::config::{Config, PoolMode};
use helios_tests::heliosproxy::oci::{Artifact, trust};
use helios_tests::heliosproxy::server::Proxy;
use helios_tests::*;

struct Keys {
    dir: PathBuf,
    trusted: PathBuf,
    trusted_key: PathBuf,
    untrusted_key: PathBuf,
}

fn keys() -> Keys {
    let dir = temp_dir("keys");
    let trusted = dir.join("trust");
    std::fs::create_dir_all(&trusted).unwrap();
    let (private, public) = trust::generate_key_pair();
    std::fs::write(dir.join("trusted.key"), private).unwrap();
    std::fs::write(trusted.join("trusted.pub"), public).unwrap();
    let (private, _) = trust::generate_key_pair();
    std::fs::write(dir.join("untrusted.key"), private).unwrap();
    Keys {
        trusted_key: dir.join("trusted.key"),
        untrusted_key: dir.join("untrusted.key"),
        trusted,
        dir,
    }
}

fn artifact(
    keys: &Keys,
    name: &str,
    sign_with: Option<&Path>,
    tamper: impl FnOnce(&mut Artifact),
) -> PathBuf {
    let wasm = std::fs::read(component_wasm("helios-llm-guardrail")).unwrap();
    let mut a = Artifact::new("guardrail", "1.0.0", vec!["validate".into()], vec![], wasm);
    if let Some(key) = sign_with {
        a.sign(&trust::load_signing_key(key).unwrap());
    }
    tamper(&mut a);
    let path = keys.dir.join(format!("{name}.tar.gz"));
    std::fs::write(&path, a.pack().unwrap()).unwrap();
    path
}

fn config_with(source: &Path, trust_root: Option<&Path>) -> Config {
    let pg = shared_pg();
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    let mut p = plugin("guardrail", "helios-llm-guardrail", &[], "");
    p.source = source.display().to_string();
    config.plugins.push(p);
    config.plugin_runtime.trust_root = trust_root.map(Path::to_owned);
    config
}

async fn load_error(config: Config) -> String {
    match Proxy::bind(config).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("loading must fail"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_signed_by_a_trusted_key_loads_and_runs() {
    let k = keys();
    let good = artifact(&k, "good", Some(&k.trusted_key), |_| {});
    let pg = shared_pg();
    create_database(pg, "signed_ok").await;
    let proxy = start_proxy(config_with(&good, Some(&k.trusted))).await;
    let plugin = proxy.shared.pipeline.load().plugins()[0].clone();
    let provenance = plugin.provenance.lock().unwrap().clone();
    assert_eq!(provenance.signed_by.as_deref(), Some("trusted.pub"));
    assert_eq!(provenance.version.as_deref(), Some("1.0.0"));
    let c = connect(&via_proxy(&proxy, "postgres", "signed_ok"))
        .await
        .unwrap();
    let err = c.simple_query("drop table nothing").await.unwrap_err();
    assert_eq!(
        err.code().unwrap().code(),
        "42501",
        "the signed guardrail is active"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_untrusted_and_unsigned_components_are_refused() {
    let k = keys();
    let cases = [
        (
            artifact(&k, "tampered", Some(&k.trusted_key), |a| {
                let n = a.wasm.len() - 1;
                a.wasm[n] ^= 0xff;
                a.manifest.wasm_sha256 = heliosproxy::oci::artifact::sha256_hex(&a.wasm);
            }),
            "does not verify",
        ),
        (
            artifact(&k, "lying", Some(&k.trusted_key), |a| {
                a.manifest.wasm_sha256 = "00".repeat(32);
            }),
            "but the manifest says",
        ),
        (
            artifact(&k, "renamed", Some(&k.trusted_key), |a| {
                a.manifest.name = "audit".into();
            }),
            "does not verify",
        ),
        (
            artifact(&k, "reversioned", Some(&k.trusted_key), |a| {
                a.manifest.version = "9.9.9".into();
                a.manifest.hooks.push("authenticate".into());
            }),
            "does not verify",
        ),
        (
            artifact(&k, "untrusted", Some(&k.untrusted_key), |_| {}),
            "does not verify",
        ),
        (artifact(&k, "unsigned", None, |_| {}), "not signed"),
        (component_wasm("helios-llm-guardrail"), "no signature file"),
    ];
    for (source, why) in cases {
        let err = load_error(config_with(&source, Some(&k.trusted))).await;
        assert!(err.contains("component guardrail"), "{err}");
        assert!(
            err.contains(&source.display().to_string()),
            "names the source: {err}"
        );
        assert!(err.contains(why), "{why}: {err}");
    }
    // A truncated artefact.
    let good = artifact(&k, "cut", Some(&k.trusted_key), |_| {});
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&good, &bytes[..bytes.len() / 3]).unwrap();
    let err = load_error(config_with(&good, Some(&k.trusted))).await;
    assert!(err.contains("artefact"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_trust_root_artefacts_and_bare_wasm_load_unverified() {
    let k = keys();
    let unsigned = artifact(&k, "dev", None, |_| {});
    let proxy = start_proxy(config_with(&unsigned, None)).await;
    let plugin = proxy.shared.pipeline.load().plugins()[0].clone();
    assert_eq!(plugin.provenance.lock().unwrap().signed_by, None);
}

/// Runs a key or signing tool; fails the test with its output when it fails.
fn tool(program: &str, args: &[&str], dir: &Path) {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (scripts/setup.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The product page's trust format: a bare `x.wasm` loads with a trust root only when
/// `x.wasm.sig` beside it verifies, signed with the tools operators have (openssl, signify).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_wasm_loads_with_a_sidecar_signature_made_by_openssl_or_signify() {
    let dir = temp_dir("sidecar");
    let trust = dir.join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    let wasm = std::fs::read(component_wasm("helios-llm-guardrail")).unwrap();
    for name in [
        "o.wasm",
        "s.wasm",
        "bare.wasm",
        "tampered.wasm",
        "other.wasm",
        "junk.wasm",
    ] {
        std::fs::write(dir.join(name), &wasm).unwrap();
    }
    // openssl: a PEM key pair, a raw 64-byte signature.
    tool(
        "openssl",
        &["genpkey", "-algorithm", "ed25519", "-out", "o.key"],
        &dir,
    );
    tool(
        "openssl",
        &[
            "pkey",
            "-in",
            "o.key",
            "-pubout",
            "-out",
            "trust/openssl.pub",
        ],
        &dir,
    );
    let sign = ["pkeyutl", "-sign", "-rawin", "-inkey", "o.key", "-in"];
    tool(
        "openssl",
        &[&sign[..], &["o.wasm", "-out", "o.wasm.sig"]].concat(),
        &dir,
    );
    tool(
        "openssl",
        &[&sign[..], &["tampered.wasm", "-out", "tampered.wasm.sig"]].concat(),
        &dir,
    );
    // signify: its own key and signature formats.
    tool(
        "signify-openbsd",
        &["-G", "-n", "-p", "signify.pub", "-s", "signify.sec"],
        &dir,
    );
    tool(
        "signify-openbsd",
        &["-S", "-s", "signify.sec", "-m", "s.wasm"],
        &dir,
    );
    std::fs::copy(dir.join("signify.pub"), trust.join("signify.pub")).unwrap();
    // A key outside the trust root.
    tool(
        "openssl",
        &["genpkey", "-algorithm", "ed25519", "-out", "x.key"],
        &dir,
    );
    tool(
        "openssl",
        &[
            "pkeyutl",
            "-sign",
            "-rawin",
            "-inkey",
            "x.key",
            "-in",
            "other.wasm",
            "-out",
            "other.wasm.sig",
        ],
        &dir,
    );
    std::fs::write(
        dir.join("junk.wasm.sig"),
        "untrusted comment: nothing\nbm90IGEgc2lnbmF0dXJl\n",
    )
    .unwrap();
    let mut tampered = wasm.clone();
    tampered.extend_from_slice(b"\0");
    std::fs::write(dir.join("tampered.wasm"), tampered).unwrap();

    for (file, signer) in [("o.wasm", "openssl.pub"), ("s.wasm", "signify.pub")] {
        let proxy = start_proxy(config_with(&dir.join(file), Some(&trust))).await;
        let plugin = proxy.shared.pipeline.load().plugins()[0].clone();
        let signed_by = plugin.provenance.lock().unwrap().signed_by.clone();
        assert_eq!(signed_by.as_deref(), Some(signer), "{file}");
    }
    for (file, why) in [
        ("bare.wasm", "no signature file"),
        ("tampered.wasm", "does not verify"),
        ("other.wasm", "does not verify"),
        ("junk.wasm", "not an Ed25519 signature"),
    ] {
        let err = load_error(config_with(&dir.join(file), Some(&trust))).await;
        assert!(
            err.contains(why) && err.contains("guardrail"),
            "{file}: {err}"
        );
    }
}
