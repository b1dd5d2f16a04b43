//! What bounds a replay: the statements it holds in memory (count and bytes) and how many
//! finished replays the proxy remembers.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Filter, Job};
use crate::journal::Record;

/// The records `filter` admits, refused when they pass `max_statements` or `max_bytes`.
pub(super) fn collect(
    read: impl Iterator<Item = Result<Record, String>>,
    filter: &Filter,
    max_statements: usize,
    max_bytes: usize,
) -> Result<Vec<Record>, String> {
    let mut records = Vec::new();
    let mut bytes = 0usize;
    for r in read {
        let r = r?;
        if !filter.admits(&r) {
            continue;
        }
        bytes += record_bytes(&r);
        if records.len() == max_statements || bytes > max_bytes {
            return Err(format!(
                "the window holds more than {} statements or {} MiB of them; narrow it",
                max_statements.min(records.len() + 1),
                max_bytes >> 20
            ));
        }
        records.push(r);
    }
    Ok(records)
}

/// What a record takes in memory, near enough to bound a replay.
fn record_bytes(r: &Record) -> usize {
    let params: usize = r
        .params
        .iter()
        .map(|p| p.as_ref().map_or(0, Vec::len) + 24)
        .sum();
    std::mem::size_of::<Record>()
        + r.sql.len()
        + r.user.len()
        + r.database.len()
        + r.node.len()
        + params
        + 2 * (r.param_formats.len() + r.result_formats.len())
        + r.error.as_ref().map_or(0, |(c, m)| c.len() + m.len())
}

/// Drops the oldest finished replays beyond `keep`; running ones always stay.
pub(super) fn forget_oldest_finished(jobs: &mut HashMap<u64, Arc<Job>>, keep: usize) {
    let mut finished: Vec<u64> = jobs
        .iter()
        .filter(|(_, j)| !j.running())
        .map(|(id, _)| *id)
        .collect();
    if finished.len() <= keep {
        return;
    }
    finished.sort_unstable();
    for id in &finished[..finished.len() - keep] {
        jobs.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sql: &str) -> Result<Record, String> {
        Ok(Record {
            sql: sql.to_owned(),
            ..Record::default()
        })
    }

    #[test]
    fn a_window_past_the_byte_bound_is_refused_before_it_is_all_read() {
        let mut read = 0;
        let many = std::iter::repeat_with(|| {
            read += 1;
            record(&"x".repeat(1000))
        })
        .take(10_000);
        let err = collect(many, &Filter::default(), 1_000_000, 1 << 20).unwrap_err();
        assert!(err.contains("narrow it"), "{err}");
        assert!(read < 1100, "stopped at the bound, after {read} records");
        let few = (0..10).map(|_| record("select 1"));
        assert_eq!(
            collect(few, &Filter::default(), 10, 1 << 20).unwrap().len(),
            10
        );
        let one_too_many = (0..11).map(|_| record("select 1"));
        assert!(collect(one_too_many, &Filter::default(), 10, 1 << 20).is_err());
    }

    #[test]
    fn the_oldest_finished_replays_are_forgotten_and_running_ones_kept() {
        let mut jobs = HashMap::new();
        for id in 1..=10 {
            let job = Job::new(id, "t".into(), (Default::default(), false), 1, 1, 0);
            if id != 2 {
                job.finish(std::time::Duration::ZERO);
            }
            jobs.insert(id, Arc::new(job));
        }
        forget_oldest_finished(&mut jobs, 4);
        let mut left: Vec<u64> = jobs.keys().copied().collect();
        left.sort_unstable();
        assert_eq!(left, vec![2, 7, 8, 9, 10]);
    }
}
