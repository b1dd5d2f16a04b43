//! The SQL of a major-version upgrade, on one database: the schema copied with
//! `pg_dump --schema-only`, a publication of every table on the old server and a
//! subscription to it on the new one (initial copy, then streaming changes), a marker row
//! that tells when the subscriber has applied everything committed before it, sequences
//! copied across (logical replication does not carry them), and the same in reverse for
//! the rollback path.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use crate::pool::server::ConnectTarget;

/// The schema holding the marker table, on both servers for the upgrade's duration.
pub const MARKER_SCHEMA: &str = "heliosproxy_upgrade";

/// Publication (on the sending server) and subscription prefix (on the receiving one).
pub const FORWARD: &str = "helios_upgrade";
/// The rollback path's names.
pub const REVERSE: &str = "helios_rollback";

/// How the orchestrator logs in to a server.
#[derive(Debug, Clone)]
pub struct Login {
    /// Where.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Superuser.
    pub user: String,
    /// Its password.
    pub password: Option<String>,
}

impl Login {
    /// The login to `target` as `user`.
    pub fn to(target: &ConnectTarget, user: &str, password: Option<&str>) -> Login {
        Login {
            host: target.host.clone(),
            port: target.port,
            user: user.to_owned(),
            password: password.map(str::to_owned),
        }
    }

    /// Connects to `database`.
    pub async fn connect(&self, database: &str) -> Result<Client, String> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(database)
            .application_name("heliosproxy-upgrade")
            .connect_timeout(Duration::from_secs(5));
        if let Some(pw) = &self.password {
            config.password(pw);
        }
        let (client, connection) = config.connect(NoTls).await.map_err(|e| {
            format!(
                "connecting to {}:{} ({database}): {e}",
                self.host, self.port
            )
        })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A libpq connection string to `database` for a subscription.
    pub fn conninfo(&self, database: &str) -> String {
        let q = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut s = format!(
            "host={} port={} user={} dbname={}",
            q(&self.host),
            self.port,
            q(&self.user),
            q(database)
        );
        if let Some(pw) = &self.password {
            s.push_str(&format!(" password={}", q(pw)));
        }
        s
    }
}

/// A SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn db_err(what: &str) -> impl Fn(tokio_postgres::Error) -> String + '_ {
    move |e| match e.as_db_error() {
        Some(d) => format!("{what}: {}", d.message()),
        None => format!("{what}: {e}"),
    }
}

/// Creates `database` on the server `admin` is connected to (its `postgres` database)
/// when it does not exist.
pub async fn ensure_database(admin: &Client, database: &str) -> Result<(), String> {
    let exists = admin
        .query_opt("select 1 from pg_database where datname = $1", &[&database])
        .await
        .map_err(db_err("looking up the database"))?
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!(
                "create database \"{}\"",
                database.replace('"', "\"\"")
            ))
            .await
            .map_err(db_err("creating the database"))?;
    }
    Ok(())
}

/// Whether the database has tables of its own (outside the system schemas).
async fn has_tables(client: &Client) -> Result<bool, String> {
    Ok(client
        .query_one(
            "select count(*) from pg_tables where schemaname not in ('pg_catalog', 'information_schema') \
               and schemaname <> $1",
            &[&MARKER_SCHEMA],
        )
        .await
        .map_err(db_err("listing tables"))?
        .get::<_, i64>(0)
        > 0)
}

/// The marker table the catch-up check writes to (created before the schema is copied, so
/// the copy and the publication include it).
pub async fn create_marker(client: &Client) -> Result<(), String> {
    client
        .batch_execute(&format!(
            "create schema if not exists {MARKER_SCHEMA}; \
             create table if not exists {MARKER_SCHEMA}.marker (id bigint primary key, at timestamptz not null default now())"
        ))
        .await
        .map_err(db_err("creating the marker table"))
}

/// Copies the schema of `database` from `from` to `to` with `pg_dump --schema-only | psql`
/// (the binaries in `bindir`), unless the new database has tables already.
pub async fn copy_schema(
    bindir: &std::path::Path,
    from: &Login,
    to_client: &Client,
    database: &str,
) -> Result<bool, String> {
    if has_tables(to_client).await? {
        return Ok(false);
    }
    let mut dump = tokio::process::Command::new(bindir.join("pg_dump"));
    dump.args([
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        "--no-publications",
    ])
    .args([
        "--no-subscriptions",
        "-h",
        &from.host,
        "-p",
        &from.port.to_string(),
    ])
    .args(["-U", &from.user, "-d", database])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    if let Some(pw) = &from.password {
        dump.env("PGPASSWORD", pw);
    }
    let out = dump
        .output()
        .await
        .map_err(|e| format!("running pg_dump: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pg_dump --schema-only {database}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // psql meta-commands (`\restrict` in current dumps) are psql's, not the server's.
    let schema: String = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('\\'))
        .map(|l| format!("{l}\n"))
        .collect();
    to_client
        .batch_execute(&schema)
        .await
        .map_err(db_err("creating the schema on the new server"))?;
    to_client
        .batch_execute("select pg_catalog.set_config('search_path', 'public', false)")
        .await
        .map_err(db_err("resetting search_path"))?;
    Ok(true)
}

/// Publishes every table of the database `client` is connected to as `name`.
pub async fn publish(client: &Client, name: &str) -> Result<(), String> {
    let exists = client
        .query_opt("select 1 from pg_publication where pubname = $1", &[&name])
        .await
        .map_err(db_err("looking up the publication"))?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("create publication {name} for all tables"))
            .await
            .map_err(db_err("creating the publication"))?;
    }
    Ok(())
}

/// Refuses a server that cannot take part: both ends of logical replication (and of its
/// way back) need `wal_level = logical`.
pub async fn check_logical(client: &Client, node: &str) -> Result<(), String> {
    let level: String = client
        .query_one("show wal_level", &[])
        .await
        .map_err(db_err("reading wal_level"))?
        .get(0);
    if level != "logical" {
        return Err(format!(
            "{node}: wal_level is {level:?}; logical replication (and the rollback path) needs              wal_level = logical on both servers (set it and restart)"
        ));
    }
    Ok(())
}

/// Subscribes (as `name`) to the publication `publication` at `conninfo`; `copy` copies
/// the existing rows first; `enabled` false creates its slot but applies nothing yet.
pub async fn subscribe(
    client: &Client,
    name: &str,
    conninfo: &str,
    publication: &str,
    copy: bool,
    enabled: bool,
) -> Result<(), String> {
    let exists = client
        .query_opt("select 1 from pg_subscription where subname = $1", &[&name])
        .await
        .map_err(db_err("looking up the subscription"))?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!(
                "create subscription {name} connection {} publication {publication} \
                 with (copy_data = {copy}, enabled = {enabled})",
                literal(conninfo)
            ))
            .await
            .map_err(db_err("creating the subscription"))?;
    }
    Ok(())
}

/// Starts a subscription created disabled.
pub async fn enable(client: &Client, name: &str) -> Result<(), String> {
    client
        .batch_execute(&format!("alter subscription {name} enable"))
        .await
        .map_err(db_err("enabling the subscription"))
}

/// Drops a subscription (and its slot on the publisher).
pub async fn unsubscribe(client: &Client, name: &str) -> Result<(), String> {
    client
        .batch_execute(&format!("drop subscription if exists {name}"))
        .await
        .map_err(db_err("dropping the subscription"))
}

/// Drops a publication.
pub async fn unpublish(client: &Client, name: &str) -> Result<(), String> {
    client
        .batch_execute(&format!("drop publication if exists {name}"))
        .await
        .map_err(db_err("dropping the publication"))
}

/// Tables whose initial copy is not finished yet.
pub async fn tables_syncing(client: &Client) -> Result<i64, String> {
    Ok(client
        .query_one(
            "select count(*) from pg_subscription_rel where srsubstate not in ('r', 's')",
            &[],
        )
        .await
        .map_err(db_err("reading the subscription's tables"))?
        .get(0))
}

/// Bytes of WAL the slot `slot` has not had confirmed (`None` when there is no slot).
pub async fn slot_lag(client: &Client, slot: &str) -> Result<Option<i64>, String> {
    Ok(client
        .query_opt(
            "select (pg_current_wal_lsn() - confirmed_flush_lsn)::int8 from pg_replication_slots \
              where slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(db_err("reading the replication slot"))?
        .and_then(|r| r.get::<_, Option<i64>>(0)))
}

/// Writes a marker on the sender and waits (at most `within`) until the receiver has
/// applied it: everything committed on the sender before it is then applied too.
pub async fn wait_caught_up(
    sender: &Client,
    receiver: &Client,
    within: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let id: i64 = sender
        .query_one(
            &format!(
                "insert into {MARKER_SCHEMA}.marker (id) \
                 select coalesce(max(id), 0) + 1 from {MARKER_SCHEMA}.marker returning id"
            ),
            &[],
        )
        .await
        .map_err(db_err("writing the catch-up marker"))?
        .get(0);
    let probe = format!("select 1 from {MARKER_SCHEMA}.marker where id = $1");
    loop {
        let seen = receiver
            .query_opt(&probe, &[&id])
            .await
            .map_err(db_err("reading the catch-up marker"))?
            .is_some();
        if seen {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            return Err(format!(
                "the new server did not catch up within {} ms",
                within.as_millis()
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sets every sequence on `to` to its value on `from`; how many.
pub async fn copy_sequences(from: &Client, to: &Client) -> Result<usize, String> {
    let rows = from
        .query(
            "select format('%I.%I', schemaname, sequencename), last_value from pg_sequences \
              where last_value is not null",
            &[],
        )
        .await
        .map_err(db_err("reading sequences"))?;
    for r in &rows {
        let (name, value): (String, i64) = (r.get(0), r.get(1));
        to.query_one(
            "select setval($1::text::regclass, $2, true)",
            &[&name, &value],
        )
        .await
        .map_err(db_err("setting a sequence"))?;
    }
    Ok(rows.len())
}

/// Drops the marker schema.
pub async fn drop_marker(client: &Client) -> Result<(), String> {
    client
        .batch_execute(&format!("drop schema if exists {MARKER_SCHEMA} cascade"))
        .await
        .map_err(db_err("dropping the marker schema"))
}
