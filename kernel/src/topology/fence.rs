//! Fencing a primary that was replaced: made read-only (`default_transaction_read_only`
//! through `ALTER SYSTEM`, so it survives a restart) and every client backend on it ended,
//! including backends still waiting for a synchronous standby that is now the primary. Run
//! by a switchover before promotion, and by the health checks on an old primary that comes
//! back (a frozen or partitioned node waking up), so nothing more commits there.

use tokio_postgres::Client;

use super::tracker::MONITOR_APPLICATION;

/// Fences the node `client` is connected to; returns how many backends were ended.
pub async fn fence(client: &Client) -> Result<u64, tokio_postgres::Error> {
    // ALTER SYSTEM cannot share a query string (an implicit transaction) with anything.
    client
        .batch_execute("alter system set default_transaction_read_only = on")
        .await?;
    client.batch_execute("select pg_reload_conf()").await?;
    let ended = client
        .query_one(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity \
              where backend_type = 'client backend' and pid <> pg_backend_pid() \
                and application_name is distinct from $1",
            &[&MONITOR_APPLICATION],
        )
        .await?
        .get::<_, i64>(0);
    Ok(ended as u64)
}
