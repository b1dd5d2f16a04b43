//! The `heliosproxy` binary as a newcomer runs it: `check-config`, and the first-run default
//! (a local PostgreSQL it starts itself, signed first-party components).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_heliosproxy"))
}

fn temp(label: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("helios-bin-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

#[test]
fn check_config_prints_every_problem_with_its_key_path() {
    let dir = temp("check");
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[auth]\nmethod = \"trust\"\n[[nodes]]\nname = \"pg\"\nhost = \"127.0.0.1\"\n",
    )
    .unwrap();
    let out = bin().arg("check-config").arg(&good).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "listen_address = \"nowhere\"\n[pool]\nserver_connections = 0\n",
    )
    .unwrap();
    let out = bin().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "listen_address",
        "pool.server_connections",
        "nodes",
        "auth.users_file",
    ] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "[pool]\nmax_conections = 3\n").unwrap();
    let out = bin().arg("check-config").arg(&typo).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_conections"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_config_starts_a_local_postgres_and_serves_it() {
    let state = temp("state");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = bin()
        .env("HELIOS_STATE_DIR", &state)
        .env("HELIOS_LISTEN", format!("127.0.0.1:{port}"))
        .env("HELIOS_ADMIN", format!("127.0.0.1:{admin}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut banner = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let done = line.contains("Press Ctrl-C");
            banner.push(line);
            if done {
                break;
            }
        }
    }
    let banner = banner.join("\n");
    assert!(banner.contains(&format!("port={port}")), "{banner}");
    let psql = heliosproxy::embedded::find_bindir().unwrap().join("psql");
    let out = Command::new(psql)
        .args([
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            "select 40 + 2",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "42",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // SIGTERM: the proxy stops and takes its PostgreSQL down with it.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        !state.join("pgdata/postmaster.pid").exists(),
        "PostgreSQL was stopped"
    );
    std::fs::remove_dir_all(&state).unwrap();
}
