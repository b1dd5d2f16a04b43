//! `router`: read/write split with hints, workload patterns and a replica lag limit.
//!
//! Route order, first match wins:
//! 1. hints: `/*+ route=primary */`, `route=replica`, `route=node:NAME`, `route=tag:TAG`;
//! 2. inside a transaction block, or any statement that is not a plain read: the primary;
//! 3. workload patterns (`[plugins.config.workload.NAME] tag = "…", patterns = ["…"]`): a read
//!    whose SQL contains a pattern goes to a node carrying that tag;
//! 4. other reads: a healthy replica whose replay lag is within `max_replica_lag_bytes`
//!    (spread by session), else the primary.
//!
//! Needs the `topology` and `clock` grants.

use std::sync::OnceLock;

use helios_sdk::*;

struct Workload {
    tag: String,
    patterns: Vec<String>,
}

struct Settings {
    max_lag: Option<u64>,
    workloads: Vec<Workload>,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

fn settings() -> &'static Settings {
    SETTINGS.get().expect("init ran before any hook")
}

/// The router component.
pub struct Router;

impl Plugin for Router {
    fn init(config: &Config) -> Result<Hooks, String> {
        let max_lag = match config.integer("max_replica_lag_bytes") {
            Some(n) if n < 0 => return Err("max_replica_lag_bytes must not be negative".into()),
            Some(n) => Some(n as u64),
            None => None,
        };
        let mut workloads = Vec::new();
        for name in config.children("workload") {
            let tag = config
                .text(&format!("workload.{name}.tag"))
                .ok_or_else(|| format!("workload.{name}.tag is required"))?
                .to_owned();
            let patterns = config
                .texts(&format!("workload.{name}.patterns"))
                .into_iter()
                .map(|p| p.to_lowercase())
                .collect();
            workloads.push(Workload { tag, patterns });
        }
        let _ = SETTINGS.set(Settings { max_lag, workloads });
        Ok(Hooks::ROUTE)
    }

    fn route(session: &Call, stmt: &Statement) -> RouteTarget {
        if let Some(target) = hint(stmt, "route").and_then(|v| from_hint(&v)) {
            return target;
        }
        if session.in_transaction || stmt.class != StatementClass::Read {
            return RouteTarget::Primary;
        }
        let settings = settings();
        if !settings.workloads.is_empty() {
            let sql = stmt.sql.to_lowercase();
            for w in &settings.workloads {
                if w.patterns.iter().any(|p| sql.contains(p.as_str())) {
                    return RouteTarget::Tag(w.tag.clone());
                }
            }
        }
        let max_lag = settings.max_lag;
        with_nodes(|nodes| {
            let replicas: Vec<&host::Node> = nodes
                .iter()
                .filter(|n| n.role == "replica" && n.healthy)
                .filter(|n| match (max_lag, n.lag_bytes) {
                    (Some(max), Some(lag)) => lag <= max,
                    _ => true,
                })
                .collect();
            if replicas.is_empty() {
                return RouteTarget::Primary;
            }
            let pick = (session.session_id % replicas.len() as u64) as usize;
            RouteTarget::Node(replicas[pick].name.clone())
        })
    }
}

/// How long this instance reuses the node list before asking the host again.
const NODES_TTL_MS: u64 = 200;

thread_local! {
    static NODES: std::cell::RefCell<(u64, Vec<host::Node>)> = const { std::cell::RefCell::new((0, Vec::new())) };
}

/// Runs `f` on the node list, refreshed from the host at most every [`NODES_TTL_MS`] (lag and
/// health change on the scale of seconds; fetching the list on every statement would not pay).
fn with_nodes<R>(f: impl FnOnce(&[host::Node]) -> R) -> R {
    let now = host::now_ms();
    NODES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.1.is_empty() || now.saturating_sub(cache.0) > NODES_TTL_MS {
            *cache = (now, host::nodes());
        }
        f(&cache.1)
    })
}

fn from_hint(value: &str) -> Option<RouteTarget> {
    match value {
        "primary" => Some(RouteTarget::Primary),
        "replica" => Some(RouteTarget::Replica),
        v => {
            if let Some(node) = v.strip_prefix("node:") {
                Some(RouteTarget::Node(node.to_owned()))
            } else {
                v.strip_prefix("tag:")
                    .map(|t| RouteTarget::Tag(t.to_owned()))
            }
        }
    }
}

export_plugin!(Router);

#[cfg(test)]
mod tests {
    use super::*;
    use helios_sdk::testing::{FakeHost, node, reset, session};

    fn setup() {
        let _ = Router::init(&Config::from_pairs([
            ("max_replica_lag_bytes", ConfigValue::Integer(1000)),
            ("workload.olap.tag", ConfigValue::Text("analytics".into())),
            (
                "workload.olap.patterns",
                ConfigValue::Texts(vec!["group by".into()]),
            ),
        ]));
        reset(FakeHost {
            nodes: vec![
                node("pg1", "primary", &[], None),
                node("pg2", "replica", &[], Some(10)),
                node("pg3", "replica", &["analytics"], Some(5000)),
            ],
            ..Default::default()
        });
    }

    #[test]
    fn reads_go_to_a_replica_within_lag_and_writes_to_the_primary() {
        setup();
        let s = session("app");
        assert_eq!(
            Router::route(&s, &statement("select 1")),
            RouteTarget::Node("pg2".into())
        );
        assert_eq!(
            Router::route(&s, &statement("insert into t values (1)")),
            RouteTarget::Primary
        );
        let mut tx = session("app");
        tx.in_transaction = true;
        assert_eq!(
            Router::route(&tx, &statement("select 1")),
            RouteTarget::Primary
        );
    }

    #[test]
    fn hints_and_workloads_win() {
        setup();
        let s = session("app");
        assert_eq!(
            Router::route(&s, &statement("/*+ route=primary */ select 1")),
            RouteTarget::Primary
        );
        assert_eq!(
            Router::route(&s, &statement("/*+ route=node:pg3 */ select 1")),
            RouteTarget::Node("pg3".into())
        );
        assert_eq!(
            Router::route(&s, &statement("select k, count(*) from t group by k")),
            RouteTarget::Tag("analytics".into())
        );
    }

    #[test]
    fn lagging_replicas_are_skipped() {
        setup();
        helios_sdk::testing::with_fake(|f| f.nodes[1].lag_bytes = Some(1_000_000));
        assert_eq!(
            Router::route(&session("app"), &statement("select 1")),
            RouteTarget::Primary
        );
    }
}
