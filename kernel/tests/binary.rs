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

/// A running proxy, stopped (SIGTERM, which stops its PostgreSQL too) when dropped, so a
/// failed assertion leaves nothing running.
struct Running(std::process::Child);

impl Running {
    /// Stops it and returns whether it exited cleanly.
    fn stop(mut self) -> bool {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let ok = self.0.wait().is_ok_and(|s| s.success());
        std::mem::forget(self);
        ok
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// Starts the first-run default on `port`/`admin` and returns it with its banner.
fn start_default(state: &std::path::Path, port: u16, admin: u16) -> (Running, String) {
    let mut child = bin()
        .env("HELIOS_STATE_DIR", state)
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
    (Running(child), banner.join("\n"))
}

fn psql(port: u16, password: Option<&str>, sql: &str) -> std::process::Output {
    let psql = heliosproxy::embedded::find_bindir().unwrap().join("psql");
    let mut cmd = Command::new(psql);
    cmd.args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", "postgres", "-w", "-c", sql]);
    cmd.env_remove("PGPASSWORD");
    if let Some(pw) = password {
        cmd.env("PGPASSWORD", pw);
    }
    cmd.output().unwrap()
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
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
    let (child, banner) = start_default(&state, port, admin);
    assert!(banner.contains(&format!("port={port}")), "{banner}");
    // Clients log in with the password made on first run, shown once.
    let password = banner
        .split("with password ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no password in the banner:\n{banner}"))
        .to_owned();
    let out = psql(port, Some(&password), "select 40 + 2");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "42",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = psql(port, None, "select 1");
    assert!(
        !out.status.success(),
        "a client without the password got in"
    );
    let out = psql(port, Some("guess"), "select 1");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // PostgreSQL keeps its data safe and is reachable only through the proxy.
    let out = psql(
        port,
        Some(&password),
        "select current_setting('fsync') || '|' || current_setting('listen_addresses')",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "on|");
    assert_eq!(mode(&state.join("users.txt")), 0o600);
    assert_eq!(mode(&state.join("pgsocket")), 0o700);
    // The admin API shows the tracked node and the journal has the query.
    let admin_key = std::fs::read_to_string(state.join("admin.key")).unwrap();
    let journal_key = std::fs::read_to_string(state.join("journal.key")).unwrap();
    let get = |path: &str, key: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nConnection: close\r\n\r\n",
            key.trim()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let topology = get("/api/topology", &admin_key);
    assert!(topology.contains("\"role\":\"primary\""), "{topology}");
    let journal = get("/api/journal", &journal_key);
    assert!(journal.contains("select 40 + 2"), "{journal}");
    // SIGTERM: the proxy stops and takes its PostgreSQL down with it.
    assert!(child.stop(), "the proxy exits cleanly");
    assert!(
        !state.join("pgdata/postmaster.pid").exists(),
        "PostgreSQL was stopped"
    );
    // A second run keeps the password and does not show it again.
    let (child, banner) = start_default(&state, port, admin);
    assert!(!banner.contains(&password), "{banner}");
    let out = psql(port, Some(&password), "select 'again'");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "again");
    assert!(child.stop());
    std::fs::remove_dir_all(&state).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_journal_survives_kill_9_of_the_proxy_mid_write() {
    use heliosproxy::config::{FsyncPolicy, JournalConfig};
    use heliosproxy::embedded::{InitOptions, LocalPostgres};
    use heliosproxy::journal::{Journal, Reader, Record};

    let dir = temp("journal");
    let mut pg = LocalPostgres::init(&dir.join("pgdata"), &InitOptions::default()).unwrap();
    pg.start(free_port()).unwrap();
    let (port, admin) = (free_port(), free_port());
    let journal_dir = dir.join("journal");
    let config = dir.join("heliosproxy.toml");
    std::fs::write(
        &config,
        format!(
            "listen_address = \"127.0.0.1:{port}\"\nadmin_address = \"127.0.0.1:{admin}\"\n\
             [auth]\nmethod = \"trust\"\n\
             [[nodes]]\nname = \"pg\"\nhost = \"127.0.0.1\"\nport = {}\n\
             [journal]\ndir = \"{}\"\nsegment_bytes = 65536\nfsync = \"interval\"\n",
            pg.port,
            journal_dir.display()
        ),
    )
    .unwrap();
    let mut child = bin()
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the proxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c.batch_execute("create table j (client int, n int)")
            .await
            .unwrap();
        // Four clients write as fast as they can; the proxy is killed under them.
        for client in 0..4i32 {
            let url = url.clone();
            tokio::spawn(async move {
                let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                let insert = c.prepare("insert into j values ($1, $2)").await.unwrap();
                for n in 0..i32::MAX {
                    if c.execute(&insert, &[&client, &n]).await.is_err() {
                        break;
                    }
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    rt.shutdown_timeout(Duration::from_secs(1));

    // Every record verifies and each client's inserts are in order.
    let records: Vec<Record> = Reader::open(&journal_dir, 0, u64::MAX)
        .unwrap()
        .map(|r| r.expect("every record verifies"))
        .collect();
    let inserts: Vec<&Record> = records
        .iter()
        .filter(|r| r.sql.starts_with("insert"))
        .collect();
    assert!(inserts.len() > 100, "{} inserts journaled", inserts.len());
    for w in records.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "no gaps in the sequence");
    }
    let mut last: std::collections::HashMap<u64, i32> = Default::default();
    for r in &inserts {
        assert_eq!(r.rows, 1);
        assert!(r.error.is_none());
        let n: i32 = std::str::from_utf8(r.params[1].as_deref().unwrap())
            .ok()
            .and_then(|v| v.parse().ok())
            .or_else(|| {
                // Binary format (tokio-postgres): big-endian int4.
                Some(i32::from_be_bytes(r.params[1].as_deref()?.try_into().ok()?))
            })
            .unwrap();
        if let Some(prev) = last.insert(r.session_id, n) {
            assert_eq!(n, prev + 1, "session {} in order", r.session_id);
        }
    }

    // A crash can also leave half a record behind: the journal opens, cuts it off, and
    // goes on numbering where it stopped.
    let (_, newest) = heliosproxy::journal::segment::list(&journal_dir)
        .unwrap()
        .pop()
        .unwrap();
    let mut torn = Vec::new();
    inserts[0].encode_framed(&mut torn);
    torn.truncate(torn.len() / 3);
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap()
        .write_all(&torn)
        .unwrap();
    let journal = Journal::open(&JournalConfig {
        dir: journal_dir.clone(),
        segment_bytes: 65536,
        fsync: FsyncPolicy::Always,
        ..JournalConfig::default()
    })
    .unwrap();
    assert_eq!(
        journal
            .stats
            .torn_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
        torn.len() as u64
    );
    journal.append(Record {
        sql: "after restart".into(),
        ..Record::default()
    });
    journal.barrier();
    let after: Vec<Record> = Reader::open(&journal_dir, 0, u64::MAX)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(after.len(), records.len() + 1);
    assert_eq!(after.last().unwrap().seq, records.last().unwrap().seq + 1);
    drop(journal);
    pg.stop().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
