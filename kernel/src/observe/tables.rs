//! `heliosproxy_query_stats` and `heliosproxy_cache_stats` as tables any client can read:
//! a statement that names them (unqualified, in a read) has each reference replaced by the
//! proxy's current rows as a typed `VALUES` list, so every SQL feature works on them
//! (filters, ordering, aggregates, casts, joins) and the server never sees a table.
//!
//! A reader sees the statements of its own database and login user unless it is an admin;
//! the text a statement expands to is bounded before it is built, since each reference
//! copies the whole table.

use std::fmt::Write;

use super::queries::{EntryView, Owner, QueryStats};
use crate::cache::CacheTier;

/// A statement whose expansion would pass the reader's bound.
#[derive(Debug, thiserror::Error)]
#[error(
    "this statement names heliosproxy_query_stats or heliosproxy_cache_stats {references} \
     times, which expands to {bytes} bytes; the limit is {limit} ([limits] \
     max_client_memory_bytes)"
)]
pub struct TooLarge {
    /// References to the proxy's tables.
    pub references: usize,
    /// What the expansion would take.
    pub bytes: usize,
    /// The bound.
    pub limit: usize,
}

/// Who reads the tables, and how large the statement may grow.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    /// The reader's own statements, or every owner's (`None`: an admin).
    pub scope: Option<Owner<'a>>,
    /// The most bytes the rewritten statement may take.
    pub max_bytes: usize,
}

/// The query analytics table.
pub const QUERY_STATS: &str = "heliosproxy_query_stats";
/// The result-cache table.
pub const CACHE_STATS: &str = "heliosproxy_cache_stats";

/// Whether `sql` could name one of the tables (a cheap scan for `heliosproxy_`, any case).
#[inline]
pub fn may_name_tables(sql: &str) -> bool {
    const NEEDLE: &[u8] = b"heliosproxy_";
    let b = sql.as_bytes();
    b.len() >= NEEDLE.len()
        && b.iter()
            .enumerate()
            .take(b.len() - NEEDLE.len() + 1)
            .any(|(i, &c)| c | 0x20 == b'h' && b[i..i + NEEDLE.len()].eq_ignore_ascii_case(NEEDLE))
}

/// `sql` with the tables replaced by the rows `reader` may see, `Ok(None)` when it does not
/// read them.
pub fn rewrite(
    sql: &str,
    stats: Option<&QueryStats>,
    cache: &[CacheTier],
    reader: Reader<'_>,
) -> Result<Option<String>, TooLarge> {
    let Some(spans) = helios_analysis::relation_spans(sql, &[QUERY_STATS, CACHE_STATS]) else {
        return Ok(None);
    };
    if spans.is_empty() {
        return Ok(None);
    }
    // Each table's rows are written once, then copied per reference after the size check.
    let names_query = spans.iter().filter(|s| s.name == QUERY_STATS).count();
    let mut query_text = String::new();
    if names_query > 0 {
        let rows = stats
            .map(|s| s.snapshot_of(reader.scope))
            .unwrap_or_default();
        query_stats_select(&mut query_text, &rows);
    }
    let mut cache_text = String::new();
    if names_query < spans.len() {
        cache_stats_select(&mut cache_text, cache);
    }
    let bytes = sql.len()
        + names_query * (query_text.len() + 64)
        + (spans.len() - names_query) * (cache_text.len() + 64);
    if bytes > reader.max_bytes {
        return Err(TooLarge {
            references: spans.len(),
            bytes,
            limit: reader.max_bytes,
        });
    }
    let mut out = String::with_capacity(bytes);
    let mut at = 0;
    for s in &spans {
        out.push_str(&sql[at..s.start]);
        out.push('(');
        out.push_str(if s.name == QUERY_STATS {
            &query_text
        } else {
            &cache_text
        });
        out.push(')');
        if !s.aliased {
            let _ = write!(out, " AS {}", s.name);
        }
        at = s.end;
    }
    out.push_str(&sql[at..]);
    Ok(Some(out))
}

/// A string constant that means the same whatever `standard_conforming_strings` is, and
/// whatever the client's encoding: every byte it adds is printable ASCII (other characters
/// are `\u`/`\U` escapes), so an encoding whose multi-byte characters end in `\` or `'`
/// bytes (SJIS, BIG5, GBK) cannot read it as closing early. Statement texts are other
/// clients' words: they must stay inside the literal.
fn literal(out: &mut String, s: &str) {
    out.push_str("E'");
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08X}", u32::from(c));
            }
        }
    }
    out.push('\'');
}

fn timestamp(out: &mut String, unix_us: u64) {
    let _ = write!(out, "to_timestamp({}::float8 / 1e6)", unix_us);
}

fn query_stats_select(out: &mut String, rows: &[EntryView]) {
    // The typed first branch names the columns; `WHERE false` keeps it out of the result.
    out.push_str(
        "SELECT NULL::text AS fingerprint, NULL::text AS query_pattern, \
         NULL::bigint AS call_count, NULL::bigint AS error_count, NULL::bigint AS rows, \
         NULL::float8 AS total_duration, NULL::float8 AS avg_duration, \
         NULL::float8 AS p50_duration, NULL::float8 AS p99_duration, \
         NULL::float8 AS max_duration, NULL::timestamptz AS first_seen, \
         NULL::timestamptz AS last_seen, NULL::bigint AS cache_hits, \
         NULL::bigint AS cache_misses, NULL::float8 AS cache_hit_rate, \
         NULL::text AS database, NULL::text AS username WHERE false",
    );
    for (i, r) in rows.iter().enumerate() {
        out.push_str(if i == 0 { " UNION ALL VALUES (" } else { ", (" });
        literal(out, &r.fingerprint);
        out.push_str(", ");
        literal(out, &r.query_pattern);
        let lookups = r.cache_hits + r.cache_misses;
        let hit_rate = if lookups == 0 {
            0.0
        } else {
            r.cache_hits as f64 / lookups as f64
        };
        let _ = write!(
            out,
            ", {}, {}, {}, {:?}::float8, {:?}::float8, {:?}::float8, {:?}::float8, {:?}::float8, ",
            r.call_count,
            r.error_count,
            r.rows,
            r.total_duration_ms,
            r.avg_duration_ms,
            r.p50_duration_ms,
            r.p99_duration_ms,
            r.max_duration_ms
        );
        timestamp(out, r.first_seen_us);
        out.push_str(", ");
        timestamp(out, r.last_seen_us);
        let _ = write!(
            out,
            ", {}, {}, {:?}::float8, ",
            r.cache_hits, r.cache_misses, hit_rate
        );
        literal(out, &r.database);
        out.push_str(", ");
        literal(out, &r.username);
        out.push(')');
    }
}

fn cache_stats_select(out: &mut String, tiers: &[CacheTier]) {
    out.push_str(
        "SELECT NULL::text AS tier, NULL::bigint AS entries, NULL::bigint AS bytes, \
         NULL::bigint AS cache_hits, NULL::bigint AS cache_misses, \
         NULL::bigint AS invalidations WHERE false",
    );
    for (i, t) in tiers.iter().enumerate() {
        out.push_str(if i == 0 { " UNION ALL VALUES (" } else { ", (" });
        literal(out, &t.tier);
        let _ = write!(
            out,
            ", {}, {}, {}, {}, {})",
            t.entries, t.bytes, t.cache_hits, t.cache_misses, t.invalidations
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AnalyticsConfig;

    #[test]
    fn literals_are_printable_ascii_whatever_they_hold() {
        let mut out = String::new();
        literal(&mut out, "Á\\' ü 𝄞\nx");
        assert_eq!(out, "E'\\u00C1\\\\'' \\u00FC \\U0001D11E\\u000Ax'");
        assert!(out.bytes().all(|b| (b' '..=b'~').contains(&b)), "{out}");
    }

    #[test]
    fn the_cheap_scan_finds_any_case() {
        assert!(may_name_tables("select * from HeliosProxy_Query_Stats"));
        assert!(!may_name_tables(
            "select * from pgbench_accounts where aid = 1"
        ));
        assert!(!may_name_tables("heliosproxy"));
    }

    #[test]
    fn references_become_typed_rows() {
        let stats = QueryStats::new(&AnalyticsConfig::default()).unwrap();
        let owner = Owner {
            database: "d",
            user: "u",
        };
        let e = stats.entry(owner, "select 'it''s', 1 from t").unwrap();
        let _ = e;
        let reader = Reader {
            scope: Some(owner),
            max_bytes: 1 << 20,
        };
        let sql = rewrite(
            "select query_pattern, call_count from heliosproxy_query_stats s order by 2",
            Some(&stats),
            &[],
            reader,
        )
        .unwrap()
        .unwrap();
        assert!(
            sql.starts_with(
                "select query_pattern, call_count from (SELECT NULL::text AS fingerprint"
            ),
            "{sql}"
        );
        assert!(sql.ends_with(") s order by 2"), "{sql}");
        assert!(sql.contains("UNION ALL VALUES (E'"), "{sql}");
        // What came out parses: the replaced text is valid SQL.
        assert!(
            helios_analysis::relation_spans(&sql, &["x"]).is_some(),
            "{sql}"
        );
        let plain = rewrite(
            "select sum(cache_hits) from heliosproxy_cache_stats",
            None,
            &[],
            reader,
        )
        .unwrap()
        .unwrap();
        assert!(
            plain.ends_with("WHERE false) AS heliosproxy_cache_stats"),
            "{plain}"
        );
        assert!(
            rewrite("select 1", Some(&stats), &[], reader)
                .unwrap()
                .is_none()
        );
        let tight = Reader {
            max_bytes: 1200,
            ..reader
        };
        let twice = "select 1 from heliosproxy_query_stats, heliosproxy_query_stats b";
        let err = rewrite(twice, Some(&stats), &[], tight).unwrap_err();
        assert_eq!(err.references, 2);
    }
}
