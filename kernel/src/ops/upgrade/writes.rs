//! Which server takes writes from clients outside the proxy. At the cut the old server stops
//! taking them — not only through the proxy's routing: each replicated database defaults to
//! read-only transactions and its client sessions are ended — while the upgrade's own role
//! keeps writing there, so the rollback path (its subscription runs as that role) still
//! applies. A rollback moves the same setting the other way.

use tokio_postgres::Client;

/// A quoted identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn db_err(what: &'static str) -> impl Fn(tokio_postgres::Error) -> String {
    move |e| match e.as_db_error() {
        Some(d) => format!("{what}: {}", d.message()),
        None => format!("{what}: {e}"),
    }
}

/// Makes `database` on the server `client` is connected to refuse writes from everyone but
/// `role` (the upgrade's superuser), and ends the sessions that could still write; how many
/// were ended.
pub async fn refuse(client: &Client, database: &str, role: &str) -> Result<u64, String> {
    let (db, role) = (ident(database), ident(role));
    client
        .batch_execute(&format!(
            "alter database {db} set default_transaction_read_only = on"
        ))
        .await
        .map_err(db_err("making the old database read-only"))?;
    client
        .batch_execute(&format!(
            "alter role {role} in database {db} set default_transaction_read_only = off"
        ))
        .await
        .map_err(db_err("keeping the rollback path writable"))?;
    let ended: i64 = client
        .query_one(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity \
              where backend_type = 'client backend' and datname = $1 \
                and pid <> pg_backend_pid()",
            &[&database],
        )
        .await
        .map_err(db_err("ending the old database's sessions"))?
        .get(0);
    Ok(ended as u64)
}

/// Undoes [`refuse`]: `database` takes writes from everyone again.
pub async fn accept(client: &Client, database: &str, role: &str) -> Result<(), String> {
    let (db, role) = (ident(database), ident(role));
    client
        .batch_execute(&format!(
            "alter database {db} reset default_transaction_read_only"
        ))
        .await
        .map_err(db_err("making the database writable again"))?;
    client
        .batch_execute(&format!(
            "alter role {role} in database {db} reset default_transaction_read_only"
        ))
        .await
        .map_err(db_err("resetting the upgrade role's setting"))
}
