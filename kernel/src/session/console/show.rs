//! `SHOW …` in the admin console, with PgBouncer's column names where they mean the same
//! thing (and a `node` column where the proxy has more than one backend per pool).

use std::sync::atomic::Ordering::Relaxed;

use super::{Answer, ConsoleError};
use crate::observe::clients::ClientState;
use crate::session::env::SessionEnv;
use crate::wire::messages::sqlstate;

fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

/// `SHOW <what>`.
pub fn show(env: &SessionEnv, what: &str) -> Result<Answer, ConsoleError> {
    Ok(match what {
        "POOLS" => pools(env),
        "CLIENTS" => clients(env),
        "SERVERS" => servers(env),
        "STATS" => stats(env),
        "DATABASES" => databases(env),
        "CONFIG" => config(env),
        "VERSION" => Answer::rows(
            vec!["version"],
            vec![vec![s(format!(
                "HeliosProxy {}",
                env!("CARGO_PKG_VERSION")
            ))]],
        ),
        "LISTS" => lists(env),
        other => {
            return Err((
                sqlstate::SYNTAX_ERROR,
                format!(
                    "SHOW {other}: expected POOLS, CLIENTS, SERVERS, STATS, DATABASES, CONFIG, \
                     VERSION or LISTS"
                ),
            ));
        }
    })
}

/// `YYYY-MM-DD HH:MM:SS UTC` of Unix microseconds, as PgBouncer prints times.
fn time(unix_us: u64) -> String {
    let secs = unix_us / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn pools(env: &SessionEnv) -> Answer {
    let now = crate::pool::servers::unix_us();
    let primary = env.topology.nodes[env.topology.primary()].name().to_owned();
    let clients = env.clients.all();
    let mut pools = env.pools.all();
    pools.sort_by(|a, b| {
        (&a.key.database, &a.key.user, &a.key.node).cmp(&(
            &b.key.database,
            &b.key.user,
            &b.key.node,
        ))
    });
    let rows = pools
        .iter()
        .map(|p| {
            // Clients belong to the pool of the primary; a replica's pool lends to reads.
            let mine: Vec<_> = clients
                .iter()
                .filter(|c| {
                    p.key.node == primary && c.database == p.key.database && c.user == p.key.user
                })
                .collect();
            let waiting: Vec<_> = mine
                .iter()
                .filter(|c| c.state() == ClientState::Waiting)
                .collect();
            let maxwait_us = waiting
                .iter()
                .map(|c| now.saturating_sub(c.wait_since_us.load(Relaxed)))
                .max()
                .unwrap_or(0);
            let idle = p.idle();
            let used = p.idle_needing_check().min(idle);
            vec![
                s(&p.key.database),
                s(&p.key.user),
                s(mine.len() - waiting.len()),
                s(waiting.len().max(p.counters().waiting())),
                s(p.in_use()),
                s(idle - used),
                s(used),
                s(maxwait_us / 1_000_000),
                s(maxwait_us % 1_000_000),
                s(env.limits.mode.as_str()),
                s(&p.key.node),
            ]
        })
        .collect();
    Answer::rows(
        vec![
            "database",
            "user",
            "cl_active",
            "cl_waiting",
            "sv_active",
            "sv_idle",
            "sv_used",
            "maxwait",
            "maxwait_us",
            "pool_mode",
            "node",
        ],
        rows,
    )
}

fn clients(env: &SessionEnv) -> Answer {
    let now = crate::pool::servers::unix_us();
    let rows = env
        .clients
        .all()
        .iter()
        .map(|c| {
            let since = c.wait_since_us.load(Relaxed);
            let wait = if since == 0 {
                0
            } else {
                now.saturating_sub(since)
            };
            vec![
                s("C"),
                s(&c.user),
                s(&c.database),
                s(c.state().as_str()),
                s(c.addr.ip()),
                s(c.addr.port()),
                s(time(c.connect_time_us)),
                s(time(c.request_time_us.load(Relaxed))),
                s(wait / 1_000_000),
                s(wait % 1_000_000),
                s(if c.tls { "TLS" } else { "" }),
                s(&c.application_name),
                s(c.id),
            ]
        })
        .collect();
    Answer::rows(
        vec![
            "type",
            "user",
            "database",
            "state",
            "addr",
            "port",
            "connect_time",
            "request_time",
            "wait",
            "wait_us",
            "tls",
            "application_name",
            "id",
        ],
        rows,
    )
}

fn servers(env: &SessionEnv) -> Answer {
    let rows = env
        .pools
        .servers
        .all()
        .iter()
        .map(|c| {
            vec![
                s("S"),
                s(&c.user),
                s(&c.database),
                s(if c.active.load(Relaxed) {
                    "active"
                } else {
                    "idle"
                }),
                s(&c.host),
                s(c.port),
                s(time(c.connect_time_us)),
                s(time(c.request_time_us.load(Relaxed))),
                s(c.pid),
                s(if c.tls { "TLS" } else { "" }),
                s(c.id),
                s(&c.node),
            ]
        })
        .collect();
    Answer::rows(
        vec![
            "type",
            "user",
            "database",
            "state",
            "addr",
            "port",
            "connect_time",
            "request_time",
            "remote_pid",
            "tls",
            "id",
            "node",
        ],
        rows,
    )
}

fn stats(env: &SessionEnv) -> Answer {
    let pools = env.pools.all();
    let rows = env
        .clients
        .databases()
        .into_iter()
        .map(|(db, c)| {
            let of_db = pools.iter().filter(|p| p.key.database == db);
            let assignments: u64 = of_db.clone().map(|p| p.metrics().acquires).sum();
            let wait_us: u64 = of_db.map(|p| p.counters().waited.total_us()).sum();
            let queries = c.queries.load(Relaxed);
            let query_us = c.query_us.load(Relaxed);
            vec![
                s(&db),
                s(assignments),
                s(c.xacts.load(Relaxed)),
                s(queries),
                s(c.received.load(Relaxed)),
                s(c.sent.load(Relaxed)),
                s(query_us),
                s(wait_us),
                s(query_us.checked_div(queries).unwrap_or(0)),
                s(wait_us.checked_div(assignments).unwrap_or(0)),
            ]
        })
        .collect();
    Answer::rows(
        vec![
            "database",
            "total_server_assignment_count",
            "total_xact_count",
            "total_query_count",
            "total_received",
            "total_sent",
            "total_query_time",
            "total_wait_time",
            "avg_query_time",
            "avg_wait_time",
        ],
        rows,
    )
}

fn databases(env: &SessionEnv) -> Answer {
    let paused = env.pools.pause.paused();
    let mut seen: Vec<(String, String)> = env
        .pools
        .all()
        .iter()
        .map(|p| (p.key.database.clone(), p.key.node.clone()))
        .collect();
    seen.sort();
    seen.dedup();
    let servers = env.pools.servers.all();
    let rows = seen
        .into_iter()
        .map(|(db, node)| {
            let target = env
                .topology
                .by_name(&node)
                .map(|i| env.topology.nodes[i].target.clone());
            let open = servers
                .iter()
                .filter(|c| c.database == db && c.node == node)
                .count();
            vec![
                s(&db),
                target.as_ref().map(|t| t.host.clone()),
                target.as_ref().map(|t| t.port.to_string()),
                s(&db),
                s(env.pools.config().server_connections),
                s(env.pools.config().server_lifetime_s),
                s(env.limits.mode.as_str()),
                s(env.limits.max_connections),
                s(open),
                s(u8::from(paused.blocks(&db))),
                s(&node),
            ]
        })
        .collect();
    Answer::rows(
        vec![
            "name",
            "host",
            "port",
            "database",
            "pool_size",
            "server_lifetime",
            "pool_mode",
            "max_connections",
            "current_connections",
            "paused",
            "node",
        ],
        rows,
    )
}

fn config(env: &SessionEnv) -> Answer {
    let Some(console) = env.console.as_ref() else {
        return Answer::rows(vec!["key", "value", "default", "changeable"], Vec::new());
    };
    let rows = super::commands::settings(&console.config)
        .into_iter()
        .zip(super::commands::settings(&crate::config::Config::default()))
        .map(|((k, v), (_, d))| vec![s(k), s(v), s(d), s("no")])
        .collect();
    Answer::rows(vec!["key", "value", "default", "changeable"], rows)
}

fn lists(env: &SessionEnv) -> Answer {
    let pools = env.pools.all();
    let mut databases: Vec<_> = pools.iter().map(|p| p.key.database.clone()).collect();
    databases.sort();
    databases.dedup();
    let mut users: Vec<_> = pools.iter().map(|p| p.key.user.clone()).collect();
    users.sort();
    users.dedup();
    let servers = env.pools.servers.all();
    let active = servers.iter().filter(|c| c.active.load(Relaxed)).count();
    let items = [
        ("databases", databases.len()),
        ("users", users.len()),
        ("pools", pools.len()),
        ("used_clients", env.clients.all().len()),
        ("free_servers", servers.len() - active),
        ("used_servers", active),
        ("components", env.pipeline.load().plugins().len()),
    ];
    Answer::rows(
        vec!["list", "items"],
        items.iter().map(|(k, v)| vec![s(k), s(v)]).collect(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_print_like_pgbouncer() {
        assert_eq!(super::time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            super::time(1_796_000_000_000_000),
            "2026-11-30 00:53:20 UTC"
        );
        assert_eq!(super::time(951_782_400_000_000), "2000-02-29 00:00:00 UTC");
    }
}
