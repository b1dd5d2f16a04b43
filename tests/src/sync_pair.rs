//! A primary and a synchronous standby cloned after `synchronous_standby_names` was set, as
//! a plain `pg_basebackup -R` set-up gives: the standby carries the setting too, so once
//! promoted it waits for a synchronous standby of its own.

use crate::{Pg, connect, start_pg, start_standby_of, wait_for_standby};
use heliosproxy::embedded::HostAuth;

/// Starts the pair and waits until the standby is synchronous.
pub async fn start_inheriting_sync_pair() -> (Pg, Pg) {
    let primary = start_pg(HostAuth::Trust, None);
    let standby = start_standby_of(
        &primary,
        "\ncluster_name = 'replica'\nwal_retrieve_retry_interval = '200ms'\nwal_receiver_timeout = '2s'\nsynchronous_standby_names = 'replica'\n",
    );
    let p = connect(&primary.direct("postgres")).await.unwrap();
    // Each alone: ALTER SYSTEM refuses to run inside a multi-statement query.
    p.batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'replica'")
        .await
        .unwrap();
    p.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    wait_for_standby(&p, true).await;
    (primary, standby)
}
