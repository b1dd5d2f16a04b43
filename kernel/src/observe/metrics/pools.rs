//! Pool and client families.

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::{Labels, Sources, family};

/// Upper bounds (seconds) of the pool wait-time histogram.
const WAIT_BOUNDS_S: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

impl Sources {
    pub(super) fn pools(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut pools = self.pools.all();
        pools.sort_by(|a, b| {
            (&a.key.node, &a.key.database, &a.key.user).cmp(&(
                &b.key.node,
                &b.key.database,
                &b.key.user,
            ))
        });
        let labels = |p: &crate::pool::Pool| -> Labels {
            vec![
                ("node", p.key.node.clone()),
                ("database", p.key.database.clone()),
                ("user", p.key.user.clone()),
            ]
        };
        let with = |p: &crate::pool::Pool, k: &'static str, v: &str| {
            let mut l = labels(p);
            l.push((k, v.to_owned()));
            l
        };
        let mut f = family(
            enc,
            "pool_clients",
            "Clients of the pool: active (holding a server) and waiting (for one)",
            MetricType::Gauge,
        )?;
        for p in &pools {
            f.gauge(&with(p, "state", "active"), p.in_use() as f64)?;
            f.gauge(&with(p, "state", "waiting"), p.counters().waiting() as f64)?;
        }
        let mut f = family(
            enc,
            "pool_servers",
            "Server connections: active (lent), idle, used (idle long enough to be checked before reuse)",
            MetricType::Gauge,
        )?;
        for p in &pools {
            let idle = p.idle();
            let used = p.idle_needing_check().min(idle);
            f.gauge(&with(p, "state", "active"), p.in_use() as f64)?;
            f.gauge(&with(p, "state", "idle"), (idle - used) as f64)?;
            f.gauge(&with(p, "state", "used"), used as f64)?;
        }
        let mut f = family(
            enc,
            "pool_max_servers",
            "Configured server connections per pool",
            MetricType::Gauge,
        )?;
        for p in &pools {
            f.gauge(&labels(p), p.limit() as f64)?;
        }
        type Pick = fn(&crate::pool::MetricsSnapshot) -> u64;
        let counters: [(&str, &str, Pick); 6] = [
            ("pool_acquires", "Server connections lent", |m| m.acquires),
            (
                "pool_waits",
                "Checkouts that waited for a free connection",
                |m| m.waits,
            ),
            ("pool_timeouts", "Checkouts that gave up waiting", |m| {
                m.timeouts
            }),
            (
                "pool_connections_created",
                "Server connections opened",
                |m| m.created,
            ),
            (
                "pool_connections_closed",
                "Server connections closed",
                |m| m.closed,
            ),
            (
                "pool_health_check_failures",
                "Idle connections found dead before reuse",
                |m| m.health_check_failures,
            ),
        ];
        for (name, help, pick) in counters {
            let mut f = family(enc, name, help, MetricType::Counter)?;
            for p in &pools {
                f.counter(&labels(p), pick(&p.metrics()))?;
            }
        }
        let mut f = family(
            enc,
            "pool_wait_seconds",
            "Time a checkout waited for a server connection",
            MetricType::Histogram,
        )?;
        for p in &pools {
            let waited = &p.counters().waited;
            let acquires = p.metrics().acquires;
            // Checkouts that found a free connection waited zero.
            let immediate = acquires.saturating_sub(waited.count());
            let bounds_us: Vec<u64> = WAIT_BOUNDS_S.iter().map(|s| (s * 1e6) as u64).collect();
            let cumulative = waited.cumulative(&bounds_us);
            let mut buckets = Vec::with_capacity(WAIT_BOUNDS_S.len() + 1);
            let mut previous = 0;
            for (i, &le) in WAIT_BOUNDS_S.iter().enumerate() {
                let c = cumulative[i] + immediate;
                buckets.push((le, c - previous));
                previous = c;
            }
            let total = waited.count() + immediate;
            buckets.push((f64::MAX, total - previous));
            f.histogram(&labels(p), waited.total_us() as f64 / 1e6, total, &buckets)?;
        }
        Ok(())
    }

    pub(super) fn clients(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut counts: std::collections::BTreeMap<(String, String, &'static str), u64> =
            Default::default();
        for c in self.clients.all() {
            *counts
                .entry((c.database.clone(), c.user.clone(), c.state().as_str()))
                .or_default() += 1;
        }
        let mut f = family(
            enc,
            "clients",
            "Logged-in clients by database, login user and state",
            MetricType::Gauge,
        )?;
        for ((database, user, state), n) in counts {
            f.gauge(
                &vec![
                    ("database", database),
                    ("user", user),
                    ("state", state.into()),
                ],
                n as f64,
            )?;
        }
        Ok(())
    }
}
