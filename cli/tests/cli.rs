//! The `helios-plugin` binary as a script would use it: exit codes and files.

use std::path::{Path, PathBuf};
use std::process::Command;

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_helios-plugin"))
        .args(args)
        .output()
        .expect("helios-plugin runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp(label: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("helios-cli-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A real component: the guardrail, built for wasm32-wasip2 in the shared target/wasm dir.
fn component() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target").join("wasm");
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "-q",
            "--profile",
            "wasm",
            "--target",
            "wasm32-wasip2",
            "-p",
            "helios-llm-guardrail",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    target.join("wasm32-wasip2/wasm/helios_llm_guardrail.wasm")
}

#[test]
fn keygen_pack_sign_verify_inspect() {
    let dir = temp("flow");
    let d = dir.to_str().unwrap();
    let (code, _, err) = cli(&["keygen", "--name", "release", "--out", d]);
    assert_eq!(code, 0, "{err}");
    let mode = std::fs::metadata(dir.join("release.key"))
        .unwrap()
        .permissions();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.mode() & 0o777, 0o600, "private key is 0600");
    let trust = dir.join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(dir.join("release.pub"), trust.join("release.pub")).unwrap();

    let wasm = component();
    let art = dir.join("guard.tar.gz");
    let a = art.to_str().unwrap();
    let (code, _, err) = cli(&[
        "pack",
        "--wasm",
        wasm.to_str().unwrap(),
        "--name",
        "guardrail",
        "--version",
        "1.2.3",
        "--hooks",
        "validate",
        "--out",
        a,
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&["verify", "--trust-root", trust.to_str().unwrap(), a]);
    assert_eq!(code, 1, "unsigned artefact is refused");
    assert!(err.contains("not signed"), "{err}");
    let (code, _, err) = cli(&[
        "sign",
        "--key",
        dir.join("release.key").to_str().unwrap(),
        a,
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(&["verify", "--trust-root", trust.to_str().unwrap(), a]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("signed by release.pub"), "{out}");
    let (code, out, _) = cli(&["inspect", "--trust-root", trust.to_str().unwrap(), a]);
    assert_eq!(code, 0);
    for want in [
        "name:      guardrail",
        "version:   1.2.3",
        "helios:plugin@0.3.0",
        "valid, signed by release.pub",
        "validate",
        "helios:plugin/context@0.3.0",
        "exports:   init",
    ] {
        assert!(out.contains(want), "missing {want} in\n{out}");
    }

    // A different key in the trust root: refused with exit code 1.
    let other = dir.join("other");
    let (code, _, _) = cli(&[
        "keygen",
        "--name",
        "other",
        "--out",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let other_trust = other.join("trust");
    std::fs::create_dir_all(&other_trust).unwrap();
    std::fs::copy(other.join("other.pub"), other_trust.join("other.pub")).unwrap();
    let (code, _, err) = cli(&["verify", "--trust-root", other_trust.to_str().unwrap(), a]);
    assert_eq!(code, 1);
    assert!(err.contains("does not verify"), "{err}");
    // Garbage instead of an artefact: refused, not a crash.
    std::fs::write(dir.join("junk.tar.gz"), b"junk").unwrap();
    let (code, _, _) = cli(&[
        "verify",
        "--trust-root",
        trust.to_str().unwrap(),
        dir.join("junk.tar.gz").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    // keygen never overwrites a private key.
    let (code, _, _) = cli(&["keygen", "--name", "release", "--out", d]);
    assert_eq!(code, 3);
    let (code, _, _) = cli(&["frobnicate"]);
    assert_eq!(code, 2, "usage errors exit 2");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs cargo in `dir` with the scaffold's own target directory; fails with its output.
fn cargo_in(dir: &Path, args: &[&str]) {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold");
    let out = Command::new(env!("CARGO"))
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A plugin author's path with an installed CLI, outside this checkout: `new` in an empty
/// directory (by a copy of the binary elsewhere), the crate moved to another directory, its
/// own test, the wasm build, pack, sign, verify, and a proxy that loads it under a trust root.
#[test]
fn new_scaffolds_a_crate_that_builds_anywhere_and_loads_signed() {
    let dir = temp("new");
    let installed = dir.join("bin/helios-plugin");
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_helios-plugin"), &installed).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&installed).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "helios-plugin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let made = dir.join("made");
    std::fs::create_dir_all(&made).unwrap();
    run(&["new", "my-policy", "--dir", made.to_str().unwrap()]);
    // Moved elsewhere, as a copy to another machine would be.
    let krate = dir.join("elsewhere/my-policy");
    std::fs::create_dir_all(krate.parent().unwrap()).unwrap();
    std::fs::rename(made.join("my-policy"), &krate).unwrap();
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    assert!(
        !manifest.contains(&checkout.display().to_string()),
        "{manifest}"
    );
    cargo_in(&krate, &["test", "-q"]);
    cargo_in(
        &krate,
        &["build", "-q", "--release", "--target", "wasm32-wasip2"],
    );
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/scaffold/wasm32-wasip2/release/my_policy.wasm");
    let art = dir.join("my-policy.tar.gz");
    let (trust, key) = (dir.join("trust"), dir.join("release.key"));
    std::fs::create_dir_all(&trust).unwrap();
    run(&[
        "keygen",
        "--name",
        "release",
        "--out",
        dir.to_str().unwrap(),
    ]);
    std::fs::rename(dir.join("release.pub"), trust.join("release.pub")).unwrap();
    let (w, a) = (wasm.to_str().unwrap(), art.to_str().unwrap());
    run(&[
        "pack",
        "--wasm",
        w,
        "--name",
        "my-policy",
        "--hooks",
        "validate",
        "--out",
        a,
    ]);
    run(&["sign", "--key", key.to_str().unwrap(), a]);
    run(&["verify", "--trust-root", trust.to_str().unwrap(), a]);
    let config = dir.join("heliosproxy.toml");
    std::fs::write(
        &config,
        format!(
            "listen_address = \"127.0.0.1:0\"\nadmin_address = \"127.0.0.1:0\"\n\
             [auth]\nmethod = \"trust\"\n\
             [plugin_runtime]\ntrust_root = {:?}\n\
             [[nodes]]\nname = \"primary\"\nhost = \"127.0.0.1\"\nport = 1\n\
             [[plugins]]\nname = \"my-policy\"\nsource = {a:?}\n\
             [plugins.config]\nprotected_table = \"accounts\"\n",
            trust.display().to_string()
        ),
    )
    .unwrap();
    let config = heliosproxy::config::Config::load(&config).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let proxy = heliosproxy::server::Proxy::bind(config)
            .await
            .unwrap_or_else(|e| panic!("the signed scaffold loads: {e}"))
            .start();
        let plugins = proxy.shared.pipeline.load().plugins().to_vec();
        assert_eq!(plugins.len(), 1);
        let provenance = plugins[0].provenance.lock().unwrap().clone();
        assert_eq!(provenance.signed_by.as_deref(), Some("release.pub"));
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn push_and_pull_through_a_real_registry() {
    let dir = temp("oci");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    std::fs::write(
        dir.join("config.yml"),
        format!("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n", dir.join("data").display()),
    )
    .unwrap();
    let mut registry = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("docker-registry is installed");
    for _ in 0..200 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let art = dir.join("a.tar.gz");
    let (code, _, err) = cli(&[
        "pack",
        "--wasm",
        component().to_str().unwrap(),
        "--name",
        "g",
        "--out",
        art.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let reference = format!("oci://{addr}/helios/g:1");
    let (code, out, err) = cli(&["push", "--insecure", art.to_str().unwrap(), &reference]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pushed"), "{out}");
    let back = dir.join("back.tar.gz");
    let (code, _, err) = cli(&[
        "pull",
        "--insecure",
        &reference,
        "-o",
        back.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(&art).unwrap(),
        std::fs::read(&back).unwrap(),
        "the same bytes come back"
    );
    let (code, _, _) = cli(&[
        "pull",
        "--insecure",
        &format!("oci://{addr}/helios/missing:1"),
        "-o",
        back.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "a missing image is an error");
    let _ = registry.kill();
    let _ = registry.wait();
    std::fs::remove_dir_all(&dir).unwrap();
}
