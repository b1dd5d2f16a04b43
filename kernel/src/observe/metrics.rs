//! `GET /metrics`: the proxy's counters in the OpenMetrics text format, read at scrape time
//! from the atomics the parts keep anyway (pools, nodes, components, journal, sessions,
//! analytics), so metrics cost the query path nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::config::HookName;
use crate::failover::Coordinator;
use crate::journal::Journal;
use crate::plugins::registry::Registry as Components;
use crate::pool::Pools;
use crate::session::isolation::PinCounters;
use crate::session::recovery::SessionCounters;
use crate::topology::breaker::BreakerState;
use crate::topology::{Role, Topology};

use super::clients::Clients;
use super::queries::QueryStats;

/// Upper bounds (seconds) of the pool wait-time histogram.
const WAIT_BOUNDS_S: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// What the metrics read.
pub struct Sources {
    /// Server pools.
    pub pools: Arc<Pools>,
    /// Backend nodes.
    pub topology: Arc<Topology>,
    /// Loaded components.
    pub components: Arc<Components>,
    /// Failovers.
    pub failover: Arc<Coordinator>,
    /// Session recovery counters.
    pub sessions: Arc<SessionCounters>,
    /// Pinned sessions.
    pub pins: Arc<PinCounters>,
    /// Logged-in clients.
    pub clients: Arc<Clients>,
    /// The journal, when on.
    pub journal: Option<Arc<Journal>>,
    /// Query analytics, when on.
    pub analytics: Option<Arc<QueryStats>>,
    /// The result cache, when on.
    pub cache: Option<Arc<crate::cache::ResultCache>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sources")
    }
}

/// Renders every metric in the OpenMetrics text format.
pub fn render(sources: Arc<Sources>) -> String {
    let mut registry = Registry::with_prefix("heliosproxy");
    registry.register_collector(Box::new(Scrape(sources)));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

type Labels = Vec<(&'static str, String)>;

/// One metric family being written.
struct Family<'e>(MetricEncoder<'e>);

fn family<'e>(
    enc: &'e mut DescriptorEncoder<'_>,
    name: &'e str,
    help: &str,
    kind: MetricType,
) -> Result<Family<'e>, std::fmt::Error> {
    Ok(Family(enc.encode_descriptor(name, help, None, kind)?))
}

impl Family<'_> {
    fn gauge(&mut self, labels: &Labels, v: f64) -> Result<(), std::fmt::Error> {
        self.0.encode_family(labels)?.encode_gauge(&v)
    }

    fn counter(&mut self, labels: &Labels, v: u64) -> Result<(), std::fmt::Error> {
        self.0
            .encode_family(labels)?
            .encode_counter::<NoLabelSet, _, u64>(&v, None)
    }

    fn histogram(
        &mut self,
        labels: &Labels,
        sum: f64,
        count: u64,
        buckets: &[(f64, u64)],
    ) -> Result<(), std::fmt::Error> {
        self.0
            .encode_family(labels)?
            .encode_histogram::<NoLabelSet>(sum, count, buckets, None)
    }
}

/// One scrape of the sources.
#[derive(Debug)]
struct Scrape(Arc<Sources>);

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        s.pools(&mut enc)?;
        s.clients(&mut enc)?;
        s.nodes(&mut enc)?;
        s.components(&mut enc)?;
        s.journal(&mut enc)?;
        s.sessions(&mut enc)?;
        s.analytics(&mut enc)?;
        s.cache(&mut enc)?;
        Ok(())
    }
}

impl Sources {
    fn pools(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
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

    fn clients(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
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

    fn nodes(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let t = &self.topology;
        let node = |i: usize| -> Labels { vec![("node", t.nodes[i].name().to_owned())] };
        let mut f = family(
            enc,
            "node_up",
            "Whether the node passes its health checks",
            MetricType::Gauge,
        )?;
        for i in 0..t.nodes.len() {
            f.gauge(&node(i), if t.nodes[i].healthy() { 1.0 } else { 0.0 })?;
        }
        let mut f = family(
            enc,
            "node_role",
            "The node's role as last seen (1 for its current role)",
            MetricType::Gauge,
        )?;
        for i in 0..t.nodes.len() {
            let role = t.nodes[i].role();
            for (r, name) in [
                (Role::Primary, "primary"),
                (Role::Replica, "replica"),
                (Role::Fenced, "fenced"),
                (Role::Unknown, "unknown"),
            ] {
                let mut l = node(i);
                l.push(("role", name.into()));
                f.gauge(&l, if role == r { 1.0 } else { 0.0 })?;
            }
        }
        let mut f = family(
            enc,
            "node_replication_lag_bytes",
            "WAL bytes a replica is behind the primary",
            MetricType::Gauge,
        )?;
        for i in 0..t.nodes.len() {
            if let Some(lag) = t.lag_bytes(i) {
                f.gauge(&node(i), lag as f64)?;
            }
        }
        let mut f = family(
            enc,
            "node_breaker_open",
            "Circuit breaker state: 0 closed, 0.5 half-open, 1 open",
            MetricType::Gauge,
        )?;
        for i in 0..t.nodes.len() {
            let v = match t.nodes[i].breaker.state() {
                BreakerState::Closed => 0.0,
                BreakerState::HalfOpen => 0.5,
                BreakerState::Open => 1.0,
            };
            f.gauge(&node(i), v)?;
        }
        let mut f = family(
            enc,
            "failovers",
            "Failovers and switchovers, by outcome",
            MetricType::Counter,
        )?;
        f.counter(
            &vec![("outcome", "completed".into())],
            self.failover.completed.load(Relaxed),
        )?;
        f.counter(
            &vec![("outcome", "failed".into())],
            self.failover.failed.load(Relaxed),
        )?;
        Ok(())
    }

    fn components(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let all = self.components.all();
        let rows: Vec<_> = all
            .iter()
            .flat_map(|(p, _)| {
                HookName::ALL
                    .into_iter()
                    .filter(|h| p.has_hook(*h))
                    .map(move |h| (p, h))
            })
            .collect();
        let labels = |p: &crate::plugins::LoadedPlugin, h: HookName| -> Labels {
            vec![("component", p.name.clone()), ("hook", h.as_str().into())]
        };
        type Pick = fn(&crate::plugins::CallStats) -> u64;
        let counters: [(&str, &str, Pick); 4] = [
            ("hook_calls", "Component calls", |s| s.calls.load(Relaxed)),
            ("hook_errors", "Component calls that failed", |s| {
                s.errors.load(Relaxed)
            }),
            (
                "hook_timeouts",
                "Component calls that hit their deadline",
                |s| s.timeouts.load(Relaxed),
            ),
            (
                "hook_cached_decisions",
                "Decisions of pure hooks answered without a call",
                |s| s.cached.load(Relaxed),
            ),
        ];
        for (name, help, pick) in counters {
            let mut f = family(enc, name, help, MetricType::Counter)?;
            for (p, h) in &rows {
                f.counter(&labels(p, *h), pick(p.stats.hook(*h)))?;
            }
        }
        let mut f = family(
            enc,
            "hook_call_seconds",
            "Time of a component call",
            MetricType::Histogram,
        )?;
        for (p, h) in &rows {
            let s = p.stats.hook(*h);
            let counts = s.buckets();
            let n = counts.len();
            let buckets: Vec<(f64, u64)> = counts
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    let le = if i + 1 == n {
                        f64::MAX
                    } else {
                        (1u64 << (i + 1)) as f64 / 1e9
                    };
                    (le, c)
                })
                .collect();
            f.histogram(
                &labels(p, *h),
                s.total_ns.load(Relaxed) as f64 / 1e9,
                counts.iter().sum(),
                &buckets,
            )?;
        }
        Ok(())
    }

    fn journal(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(j) = &self.journal else {
            return Ok(());
        };
        let none = Labels::new();
        let s = &j.stats;
        for (name, help, v) in [
            (
                "journal_records_queued",
                "Statements queued for the journal",
                s.queued.load(Relaxed),
            ),
            (
                "journal_records_written",
                "Journal records written",
                s.written.load(Relaxed),
            ),
            (
                "journal_records_dropped",
                "Journal records dropped: the queue was full",
                s.dropped.load(Relaxed),
            ),
            (
                "journal_fsyncs",
                "Journal fsync calls",
                s.fsyncs.load(Relaxed),
            ),
        ] {
            family(enc, name, help, MetricType::Counter)?.counter(&none, v)?;
        }
        family(
            enc,
            "journal_queued_bytes",
            "Bytes of journal records queued and not yet written",
            MetricType::Gauge,
        )?
        .gauge(&none, s.queued_bytes.load(Relaxed) as f64)?;
        Ok(())
    }

    fn sessions(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut f = family(
            enc,
            "sessions_pinned",
            "Sessions pinned to their server connection, by reason",
            MetricType::Gauge,
        )?;
        for (reason, n) in self.pins.counts() {
            f.gauge(&vec![("reason", reason.into())], n as f64)?;
        }
        let s = &self.sessions;
        let none = Labels::new();
        for (name, help, v) in [
            (
                "sessions_moved",
                "Sessions moved to another server after theirs was lost",
                s.moved.load(Relaxed),
            ),
            (
                "transactions_replayed",
                "Transactions replayed on a new primary",
                s.transactions_replayed.load(Relaxed),
            ),
        ] {
            family(enc, name, help, MetricType::Counter)?.counter(&none, v)?;
        }
        Ok(())
    }

    fn cache(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(cache) = &self.cache else {
            return Ok(());
        };
        let tiers = cache.tiers();
        let tier = |t: &str| vec![("tier", t.to_owned())];
        for (name, help, pick) in [
            (
                "result_cache_hits",
                "Answers from the result cache",
                (|t| t.cache_hits) as fn(&crate::cache::CacheTier) -> u64,
            ),
            (
                "result_cache_misses",
                "Lookups the tier could not answer",
                |t| t.cache_misses,
            ),
            (
                "result_cache_invalidations",
                "Entries dropped by writes",
                |t| t.invalidations,
            ),
        ] {
            let mut f = family(enc, name, help, MetricType::Counter)?;
            for t in &tiers {
                f.counter(&tier(&t.tier), pick(t))?;
            }
        }
        let mut f = family(
            enc,
            "result_cache_bytes",
            "Bytes the in-process tier holds",
            MetricType::Gauge,
        )?;
        f.gauge(&tier("l1"), tiers[0].bytes as f64)?;
        let mut f = family(
            enc,
            "result_cache_entries",
            "Entries the in-process tier holds",
            MetricType::Gauge,
        )?;
        f.gauge(&tier("l1"), tiers[0].entries as f64)?;
        Ok(())
    }

    fn analytics(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(a) = &self.analytics else {
            return Ok(());
        };
        let none = Labels::new();
        let snapshot = a.snapshot();
        family(
            enc,
            "query_fingerprints",
            "Statement fingerprints the analytics hold",
            MetricType::Gauge,
        )?
        .gauge(&none, snapshot.len() as f64)?;
        family(
            enc,
            "query_fingerprint_evictions",
            "Fingerprints dropped to stay within analytics.max_entries",
            MetricType::Counter,
        )?
        .counter(&none, a.evictions())?;
        let (calls, errors, hits, misses) = snapshot.iter().fold((0, 0, 0, 0), |t, e| {
            (
                t.0 + e.call_count,
                t.1 + e.error_count,
                t.2 + e.cache_hits,
                t.3 + e.cache_misses,
            )
        });
        for (name, help, v) in [
            (
                "queries",
                "Statements counted by the analytics (held fingerprints)",
                calls,
            ),
            (
                "query_errors",
                "Statements that failed (held fingerprints)",
                errors,
            ),
            (
                "cache_hits",
                "Statements answered from the result cache",
                hits,
            ),
            (
                "cache_misses",
                "Cacheable statements the result cache did not hold",
                misses,
            ),
        ] {
            family(enc, name, help, MetricType::Counter)?.counter(&none, v)?;
        }
        Ok(())
    }
}
