//! Journal, session, analytics and result-cache families.

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::{Labels, Sources, family};

impl Sources {
    pub(super) fn journal(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
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

    pub(super) fn sessions(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
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

    pub(super) fn cache(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
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

    pub(super) fn analytics(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
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
