//! `GET /metrics`: the proxy's counters in the OpenMetrics text format, read at scrape time
//! from the atomics the parts keep anyway, so metrics cost the query path nothing. The
//! families are written by part: [`pools`] (pools and clients), [`nodes`] (nodes, failovers,
//! components) and [`counters`] (journal, sessions, analytics, result cache).

mod counters;
mod nodes;
mod pools;

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::failover::Coordinator;
use crate::journal::Journal;
use crate::plugins::registry::Registry as Components;
use crate::pool::Pools;
use crate::session::isolation::PinCounters;
use crate::session::recovery::SessionCounters;
use crate::topology::Topology;

use super::clients::Clients;
use super::queries::QueryStats;

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
