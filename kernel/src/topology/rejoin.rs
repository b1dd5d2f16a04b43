//! Returning the cluster to full redundancy after a failover (`[ha] rejoin`): the other
//! standbys are re-pointed at the new primary (their `primary_conninfo` rewritten with its
//! host and port, then reloaded: PostgreSQL restarts the WAL receiver and follows the new
//! timeline), and the old primary, once it answers again, is rewound with `pg_rewind` and
//! started as the new primary's standby (when its data directory is on this machine).

use std::sync::Arc;

use super::tracker;
use super::{Role, Topology};
use crate::config::HaConfig;

/// Re-points every standby but `new_primary` at it; how many were changed.
pub async fn repoint_standbys(topology: Arc<Topology>, new_primary: usize, ha: HaConfig) -> usize {
    let target = topology.nodes[new_primary].target.clone();
    let mut changed = 0;
    for i in 0..topology.nodes.len() {
        let n = &topology.nodes[i];
        if i == new_primary || n.role() != Role::Replica {
            continue;
        }
        let result = async {
            let c = tracker::connect(&topology, i, &ha).await?;
            let current: String = c
                .query_one("show primary_conninfo", &[])
                .await
                .map_err(|e| e.to_string())?
                .get(0);
            let next = with_host_port(&current, &target.host, target.port);
            if next == current {
                return Ok(false);
            }
            let literal = format!("'{}'", next.replace('\'', "''"));
            c.batch_execute(&format!("alter system set primary_conninfo = {literal}"))
                .await
                .map_err(|e| e.to_string())?;
            c.batch_execute("select pg_reload_conf()")
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(true)
        }
        .await;
        match result {
            Ok(true) => {
                changed += 1;
                tracing::warn!(node = n.name(), primary = %target.node, "standby re-pointed at the new primary");
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(node = n.name(), "re-pointing the standby failed: {e}"),
        }
    }
    changed
}

/// Rewinds the replaced primary `node` from the current primary and starts it as its
/// standby. Runs the server programs, so off the async workers.
pub async fn rewind(topology: Arc<Topology>, node: usize, ha: HaConfig) -> Result<(), String> {
    let n = &topology.nodes[node];
    let data_dir = n
        .data_dir
        .clone()
        .ok_or_else(|| format!("node {} has no data_dir", n.name()))?;
    // A promoted server records its new timeline in its control file only at its next
    // checkpoint; before that pg_rewind sees one timeline and rewinds nothing.
    let checkpoint = async {
        let c = tracker::connect(&topology, topology.primary(), &ha).await?;
        c.batch_execute("checkpoint")
            .await
            .map_err(|e| e.to_string())
    };
    checkpoint
        .await
        .map_err(|e| format!("checkpoint on the new primary: {e}"))?;
    let primary = &topology.nodes[topology.primary()].target;
    let mut source = format!(
        "host={} port={} user={} dbname={} application_name={}",
        quote(&primary.host),
        primary.port,
        quote(&ha.user),
        quote(&ha.database),
        quote(n.name())
    );
    if let Some(pw) = &ha.password {
        source.push_str(&format!(" password={}", quote(pw)));
    }
    tokio::task::spawn_blocking(move || {
        crate::embedded::LocalPostgres::rejoin_as_standby(&data_dir, &source)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `conninfo` with its host and port replaced (and `hostaddr` dropped); every other
/// setting kept as it was. Unchanged when it already points there.
fn with_host_port(conninfo: &str, host: &str, port: u16) -> String {
    let current = pairs(conninfo);
    let value = |key: &str| {
        current
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    if value("host") == Some(host) && value("port") == Some(&port.to_string()) {
        return conninfo.to_owned();
    }
    let mut out: Vec<String> = current
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "host" | "hostaddr" | "port"))
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .collect();
    out.push(format!("host={}", quote(host)));
    out.push(format!("port={port}"));
    out.join(" ")
}

/// The `key=value` pairs of a libpq connection string (values bare or single-quoted with
/// backslash escapes).
fn pairs(conninfo: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_owned();
        if key.is_empty() {
            return out;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_replaced_and_the_rest_kept() {
        let before = "user=postgres passfile='/root/.pgpass' host=127.0.0.1 port=5433 \
                      application_name='replica 2' sslmode=prefer";
        let after = with_host_port(before, "10.0.0.9", 6000);
        let p = pairs(&after);
        let get = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("host"), Some("10.0.0.9"));
        assert_eq!(get("port"), Some("6000"));
        assert_eq!(get("application_name"), Some("replica 2"));
        assert_eq!(get("passfile"), Some("/root/.pgpass"));
        assert_eq!(get("sslmode"), Some("prefer"));
        assert_eq!(
            with_host_port(&after, "10.0.0.9", 6000),
            after,
            "already there"
        );
        assert_eq!(
            pairs("a='it\\'s' b=2"),
            vec![("a".into(), "it's".into()), ("b".into(), "2".into())]
        );
    }
}
