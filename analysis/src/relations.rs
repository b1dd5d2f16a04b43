//! Where a statement names given relations: the byte span of each reference in the text, so
//! the proxy can put its own rows in their place (`heliosproxy_query_stats`).

use pg_query::NodeRef;

/// One reference to a relation in a `FROM` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationSpan {
    /// Byte offset where the name starts.
    pub start: usize,
    /// Byte offset just past the name.
    pub end: usize,
    /// The name, as PostgreSQL resolved it (folded).
    pub name: String,
    /// Whether an alias follows the name.
    pub aliased: bool,
}

/// The unqualified references to any of `names` in `sql`, when every statement in it is a
/// plain read (`SELECT`, `VALUES`, `TABLE`, `EXPLAIN` of those is not included) and no CTE
/// shadows the names. `None` when the text does not parse or a reference is in any other
/// statement; an empty list when nothing refers to them.
pub fn relation_spans(sql: &str, names: &[&str]) -> Option<Vec<RelationSpan>> {
    let parsed = pg_query::parse(sql, 0).ok()?;
    let all_selects = parsed.protobuf.stmts.iter().all(|s| {
        matches!(
            s.stmt.as_ref().and_then(|n| n.node.as_ref()),
            Some(pg_query::NodeEnum::SelectStmt(_))
        )
    });
    let mut spans = Vec::new();
    for (node, _, _, _) in parsed.protobuf.nodes() {
        match node {
            NodeRef::CommonTableExpr(cte) if names.contains(&cte.ctename.as_str()) => {
                return None;
            }
            NodeRef::RangeVar(rv)
                if rv.schemaname.is_empty()
                    && rv.catalogname.is_empty()
                    && names.contains(&rv.relname.as_str()) =>
            {
                if !all_selects {
                    return None;
                }
                let start = usize::try_from(rv.location).ok()?;
                let end = name_end(sql, start)?;
                spans.push(RelationSpan {
                    start,
                    end,
                    name: rv.relname.clone(),
                    aliased: rv.alias.is_some(),
                });
            }
            _ => {}
        }
    }
    spans.sort_by_key(|s| s.start);
    spans.dedup_by_key(|s| s.start);
    Some(spans)
}

/// The end of the identifier starting at `start`: a quoted one up to its closing quote,
/// otherwise the run of identifier characters.
fn name_end(sql: &str, start: usize) -> Option<usize> {
    let rest = sql.as_bytes().get(start..)?;
    if rest.first() == Some(&b'"') {
        let mut i = 1;
        loop {
            match rest.get(i)? {
                b'"' if rest.get(i + 1) == Some(&b'"') => i += 2,
                b'"' => return Some(start + i + 1),
                _ => i += 1,
            }
        }
    }
    let len = rest
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80))
        .unwrap_or(rest.len());
    (len > 0).then_some(start + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["heliosproxy_query_stats"];

    fn spans(sql: &str) -> Option<Vec<(String, bool)>> {
        relation_spans(sql, NAMES).map(|v| {
            v.into_iter()
                .map(|s| (sql[s.start..s.end].to_owned(), s.aliased))
                .collect()
        })
    }

    #[test]
    fn finds_each_reference_in_reads() {
        assert_eq!(
            spans(
                "select q.calls from heliosproxy_query_stats q join (select 1 from \"heliosproxy_query_stats\") x on true"
            ),
            Some(vec![
                ("heliosproxy_query_stats".into(), true),
                ("\"heliosproxy_query_stats\"".into(), false)
            ])
        );
        assert_eq!(
            spans("SELECT * FROM HELIOSPROXY_QUERY_STATS ORDER BY 1"),
            Some(vec![("HELIOSPROXY_QUERY_STATS".into(), false)])
        );
        assert_eq!(spans("select * from other"), Some(vec![]));
        assert_eq!(
            spans("select * from public.heliosproxy_query_stats"),
            Some(vec![])
        );
    }

    #[test]
    fn leaves_writes_ctes_and_broken_text_alone() {
        assert_eq!(
            spans("insert into heliosproxy_query_stats values (1)"),
            None
        );
        assert_eq!(
            spans(
                "with heliosproxy_query_stats as (select 1) select * from heliosproxy_query_stats"
            ),
            None
        );
        assert_eq!(spans("select * from heliosproxy_query_stats where"), None);
    }
}
