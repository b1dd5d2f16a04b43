//! Node, failover and component families.

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::{Labels, Sources, family};
use crate::config::HookName;
use crate::topology::Role;
use crate::topology::breaker::BreakerState;

impl Sources {
    pub(super) fn nodes(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
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

    pub(super) fn components(
        &self,
        enc: &mut DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
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
}
