//! A local PostgreSQL server the proxy (first-run default) and the test harness start
//! themselves: `initdb` into a directory, `pg_ctl start` on a loopback port, stop on drop.
//!
//! PostgreSQL refuses to run as root; when the proxy runs as root the server runs as the
//! `postgres` system user (or `nobody`) and its directory is handed to that user.

mod rewind;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Why a local server could not be prepared or started.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// No PostgreSQL server binaries were found.
    #[error(
        "PostgreSQL server binaries not found (looked at `pg_config --bindir` and /usr/lib/postgresql/*/bin); install them, e.g. `apt-get install postgresql`"
    )]
    NoBinaries,
    /// A command could not be run.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// Program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A command failed.
    #[error("{program} failed: {output}")]
    Failed {
        /// Program.
        program: String,
        /// Its stderr and stdout.
        output: String,
    },
    /// File system trouble.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How clients authenticate to the local server over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAuth {
    /// No password.
    Trust,
    /// SCRAM-SHA-256 with the superuser password.
    Scram,
    /// MD5 with the superuser password.
    Md5,
}

/// Options for [`LocalPostgres::init`].
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Superuser name.
    pub superuser: String,
    /// Superuser password (required for `Scram` and `Md5`).
    pub password: Option<String>,
    /// TCP authentication.
    pub host_auth: HostAuth,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            superuser: "postgres".into(),
            password: None,
            host_auth: HostAuth::Trust,
        }
    }
}

/// A PostgreSQL data directory and, once started, its running server.
#[derive(Debug)]
pub struct LocalPostgres {
    bindir: PathBuf,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The TCP port (loopback).
    pub port: u16,
    run_as: Option<(u32, u32)>,
    running: bool,
}

/// Finds the PostgreSQL server binaries.
pub fn find_bindir() -> Result<PathBuf, EmbeddedError> {
    if let Ok(dir) = std::env::var("HELIOS_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    candidates.sort();
    candidates.pop().ok_or(EmbeddedError::NoBinaries)
}

/// Picks a free loopback TCP port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("loopback is available")
}

/// The uid/gid to run PostgreSQL as when we are root.
fn unprivileged_user() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    for wanted in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3 && f[0] == wanted {
                return Some((f[2].parse().ok()?, f[3].parse().ok()?));
            }
        }
    }
    None
}

impl LocalPostgres {
    /// Uses an existing data directory (initialised earlier), without starting it.
    pub fn existing(data_dir: &Path) -> Result<Self, EmbeddedError> {
        Ok(Self::existing_in(&find_bindir()?, data_dir))
    }

    /// Like [`LocalPostgres::existing`], with the binaries of `bindir` (another major
    /// version, say).
    pub fn existing_in(bindir: &Path, data_dir: &Path) -> Self {
        LocalPostgres {
            bindir: bindir.to_owned(),
            data_dir: data_dir.to_owned(),
            port: 0,
            run_as: unprivileged_user(),
            running: false,
        }
    }

    /// Runs `initdb` into `data_dir` (which must not exist or be empty).
    pub fn init(data_dir: &Path, options: &InitOptions) -> Result<Self, EmbeddedError> {
        Self::init_in(&find_bindir()?, data_dir, options)
    }

    /// Like [`LocalPostgres::init`], with the binaries of `bindir`.
    pub fn init_in(
        bindir: &Path,
        data_dir: &Path,
        options: &InitOptions,
    ) -> Result<Self, EmbeddedError> {
        let pg = Self::existing_in(bindir, data_dir);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| EmbeddedError::Io { path, source }
        };
        std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        pg.chown(data_dir)?;
        let mut cmd = pg.command("initdb");
        cmd.arg("-D")
            .arg(data_dir)
            .arg("-U")
            .arg(&options.superuser)
            .arg("--no-sync")
            .arg("-E")
            .arg("UTF8")
            .arg("--locale=C")
            .arg("--auth-local=trust");
        let auth = match options.host_auth {
            HostAuth::Trust => "trust",
            HostAuth::Scram => "scram-sha-256",
            HostAuth::Md5 => "md5",
        };
        cmd.arg(format!("--auth-host={auth}"));
        let pwfile = data_dir.with_extension("pw");
        if let Some(pw) = &options.password {
            std::fs::write(&pwfile, pw).map_err(io(&pwfile))?;
            pg.chown(&pwfile)?;
            cmd.arg(format!("--pwfile={}", pwfile.display()));
        }
        let result = run(cmd, "initdb");
        let _ = std::fs::remove_file(&pwfile);
        result?;
        if options.host_auth == HostAuth::Md5 {
            let conf = data_dir.join("postgresql.conf");
            append(&conf, "password_encryption = md5\n")?;
        }
        Ok(pg)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd.env_remove("PGDATA").env("LC_ALL", "C");
        cmd
    }

    fn chown(&self, path: &Path) -> Result<(), EmbeddedError> {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|source| {
                EmbeddedError::Io {
                    path: path.to_owned(),
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// Makes a streaming standby of `primary` (which must be running) in `data_dir` with
    /// `pg_basebackup -R`; start it with [`LocalPostgres::start`].
    pub fn standby_of(
        primary: &LocalPostgres,
        data_dir: &Path,
        user: &str,
    ) -> Result<Self, EmbeddedError> {
        let pg = Self::existing(data_dir)?;
        std::fs::create_dir_all(data_dir).map_err(|source| EmbeddedError::Io {
            path: data_dir.to_owned(),
            source,
        })?;
        pg.chown(data_dir)?;
        let mut cmd = pg.command("pg_basebackup");
        cmd.arg("-D")
            .arg(data_dir)
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(primary.port.to_string())
            .arg("-U")
            .arg(user)
            .arg("-R")
            .arg("-X")
            .arg("stream")
            .arg("--no-sync");
        run(cmd, "pg_basebackup")?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700));
        Ok(pg)
    }

    /// Appends settings to `postgresql.conf`.
    pub fn configure(&self, settings: &str) -> Result<(), EmbeddedError> {
        append(&self.data_dir.join("postgresql.conf"), settings)
    }

    /// Starts the server on `port` (loopback only) and waits until it accepts connections.
    /// For tests and throwaway servers: `fsync` is off.
    pub fn start(&mut self, port: u16) -> Result<(), EmbeddedError> {
        // The socket lives beside the data directory, not in it: tools that copy a data
        // directory (pg_basebackup, pg_rewind) would trip over it.
        let sockets = self.socket_dir();
        std::fs::create_dir_all(&sockets).map_err(|source| EmbeddedError::Io {
            path: sockets.clone(),
            source,
        })?;
        self.chown(&sockets)?;
        let opts = format!(
            "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' -c fsync=off -c max_connections=200",
            sockets.display()
        );
        self.start_with(port, opts)?;
        let port = self.port;
        self.wait_ready(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    }

    /// Starts the server for real data (the first-run default): `fsync` on, no TCP at all,
    /// reachable only through its socket in `socket_dir`, which is made private (0700, the
    /// server's user) with the socket itself 0700.
    pub fn start_private(&mut self, port: u16, socket_dir: &Path) -> Result<(), EmbeddedError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(socket_dir).map_err(|source| EmbeddedError::Io {
            path: socket_dir.to_owned(),
            source,
        })?;
        std::fs::set_permissions(socket_dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| EmbeddedError::Io {
                path: socket_dir.to_owned(),
                source,
            },
        )?;
        self.chown(socket_dir)?;
        let opts = format!(
            "-c port={port} -c listen_addresses='' -c unix_socket_directories='{}' -c unix_socket_permissions=0700 -c fsync=on -c max_connections=200",
            socket_dir.display()
        );
        self.start_with(port, opts)?;
        let socket = socket_dir.join(format!(".s.PGSQL.{port}"));
        self.wait_ready(Duration::from_secs(30), || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        })
    }

    fn start_with(&mut self, port: u16, opts: String) -> Result<(), EmbeddedError> {
        self.port = port;
        let log = self.data_dir.join("server.log");
        let mut cmd = self.command("pg_ctl");
        cmd.arg("start")
            .arg("-w")
            .arg("-t")
            .arg("60")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(opts);
        // pg_ctl's server inherits our stdout; keep it off the caller's terminal and pipes.
        cmd.stdin(std::process::Stdio::null());
        if let Err(e) = run(cmd, "pg_ctl start") {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(EmbeddedError::Failed {
                program: "pg_ctl start".into(),
                output: format!("{e}\nserver log:\n{tail}"),
            });
        }
        self.running = true;
        Ok(())
    }

    fn wait_ready(&self, timeout: Duration, ready: impl Fn() -> bool) -> Result<(), EmbeddedError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if ready() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(EmbeddedError::Failed {
            program: "postgres".into(),
            output: format!(
                "not accepting connections on port {} after {timeout:?}",
                self.port
            ),
        })
    }

    /// Stops the server (`fast` mode: clients are disconnected, data is flushed).
    pub fn stop(&mut self) -> Result<(), EmbeddedError> {
        self.stop_mode("fast")
    }

    /// Stops the server immediately, like a crash.
    pub fn kill(&mut self) -> Result<(), EmbeddedError> {
        self.stop_mode("immediate")
    }

    fn stop_mode(&mut self, mode: &str) -> Result<(), EmbeddedError> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop")
            .arg("-w")
            .arg("-m")
            .arg(mode)
            .arg("-D")
            .arg(&self.data_dir);
        run(cmd, "pg_ctl stop").map(|_| ())
    }

    /// Runs a `psql` command against this server as `user` and returns its stdout.
    pub fn psql(&self, user: &str, sql: &str) -> Result<String, EmbeddedError> {
        let mut cmd = self.command("psql");
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.socket_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(user)
            .arg("-d")
            .arg("postgres")
            .arg("-c")
            .arg(sql);
        let out = run(cmd, "psql")?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Where [`LocalPostgres::start`] puts the server's Unix-domain socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.data_dir.with_extension("sock")
    }

    /// The directory of the server binaries.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn append(path: &Path, text: &str) -> Result<(), EmbeddedError> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| EmbeddedError::Io {
            path: path.to_owned(),
            source,
        })
}

fn run(mut cmd: Command, program: &str) -> Result<Output, EmbeddedError> {
    let out = cmd.output().map_err(|source| EmbeddedError::Spawn {
        program: program.into(),
        source,
    })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(EmbeddedError::Failed {
            program: program.into(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ),
        })
    }
}
