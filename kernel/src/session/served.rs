//! Statements a component answered itself, in both protocols. A simple query's answer is
//! written at once; a `Parse` that a component answered becomes a *served* statement, and
//! the portals bound from it are answered by the proxy — `Bind`, `Describe`, `Execute` (with
//! its row limit and `PortalSuspended`) and `Close` — without a server, in any mix with
//! portals that go to the server in the same pipeline.

use std::sync::Arc;

use crate::plugins::bindings::ResultSet;
use crate::wire::results::{self, NO_DATA, PORTAL_SUSPENDED};

/// A statement whose result a component gave at `Parse`.
#[derive(Debug)]
pub struct Served {
    /// The parameter types the client declared in its `Parse`.
    pub param_types: Vec<u32>,
    /// The component's result.
    pub result: ResultSet,
}

impl Served {
    /// A served statement from a `Parse`'s declared parameter types (the raw body part:
    /// count, then OIDs) and the component's result.
    pub fn new(param_types: &[u8], result: ResultSet) -> Self {
        let param_types = param_types
            .get(2..)
            .unwrap_or_default()
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Served {
            param_types,
            result,
        }
    }

    /// Appends the answer to `Describe` of the statement: `ParameterDescription`, then
    /// `RowDescription` (text format, as PostgreSQL reports it before `Bind`) or `NoData`.
    pub fn describe(&self, out: &mut Vec<u8>) {
        results::parameter_description(out, &self.param_types);
        describe_rows(out, &self.result, &[]);
    }
}

/// Appends a whole result as a simple query gets it: `RowDescription`, the rows and
/// `CommandComplete`.
pub fn encode_result(out: &mut Vec<u8>, result: &ResultSet) {
    results::row_description(out, &result.columns, &[]);
    let width = result.columns.len();
    for row in &result.rows {
        results::data_row(out, width, row);
    }
    results::command_complete(out, &tag(result, result.rows.len()));
}

/// What a served portal answers from.
#[derive(Debug)]
enum Source {
    /// A component's result.
    Component(Arc<Served>),
    /// A result from the result cache, as the server sent it.
    Cached(Arc<crate::cache::CachedResult>),
}

/// A portal bound from a served statement, or from a cached result.
#[derive(Debug)]
pub struct ServedPortal {
    /// The portal's name.
    pub name: Box<[u8]>,
    source: Source,
    formats: Vec<i16>,
    next_row: usize,
}

impl ServedPortal {
    /// A portal named `name` over `stmt` with the `Bind`'s result format codes.
    pub fn new(name: &[u8], stmt: Arc<Served>, formats: Vec<i16>) -> Self {
        ServedPortal {
            name: name.into(),
            source: Source::Component(stmt),
            formats,
            next_row: 0,
        }
    }

    /// A portal named `name` answered from a cached result (whose key holds `formats`).
    pub fn cached(name: &[u8], result: Arc<crate::cache::CachedResult>, formats: Vec<i16>) -> Self {
        ServedPortal {
            name: name.into(),
            source: Source::Cached(result),
            formats,
            next_row: 0,
        }
    }

    /// Appends the answer to `Describe` of the portal: `RowDescription` with the portal's
    /// result formats, or `NoData`.
    pub fn describe(&self, out: &mut Vec<u8>) {
        match &self.source {
            Source::Component(stmt) => describe_rows(out, &stmt.result, &self.formats),
            Source::Cached(r) => r.describe(&self.formats, out),
        }
    }

    /// Appends the answer to `Execute` with a row limit (0 = all): the next rows, then
    /// `PortalSuspended` when rows remain, else `CommandComplete`.
    pub fn execute(&mut self, max_rows: i32, out: &mut Vec<u8>) {
        let stmt = match &self.source {
            Source::Component(stmt) => stmt.clone(),
            Source::Cached(r) => {
                let limit = u64::try_from(max_rows).unwrap_or(0);
                self.next_row = r.execute(self.next_row as u64, limit, out) as usize;
                return;
            }
        };
        let result = &stmt.result;
        let remaining = result.rows.len() - self.next_row;
        let limit = usize::try_from(max_rows).unwrap_or(0);
        let take = if limit == 0 {
            remaining
        } else {
            limit.min(remaining)
        };
        let width = result.columns.len();
        for row in &result.rows[self.next_row..self.next_row + take] {
            results::data_row(out, width, row);
        }
        self.next_row += take;
        if limit > 0 && take == limit && self.next_row < result.rows.len() {
            out.extend_from_slice(&PORTAL_SUSPENDED);
        } else {
            results::command_complete(out, &tag(result, take));
        }
    }
}

/// `RowDescription` of the result's columns, or `NoData` when it has none.
fn describe_rows(out: &mut Vec<u8>, result: &ResultSet, formats: &[i16]) {
    if result.columns.is_empty() {
        out.extend_from_slice(&NO_DATA);
    } else {
        results::row_description(out, &result.columns, formats);
    }
}

/// The command tag for `rows` rows: the component's own tag for a whole result, `SELECT n`
/// for a part (as PostgreSQL counts the rows of each `Execute`).
fn tag(result: &ResultSet, rows: usize) -> String {
    if result.command_tag.is_empty()
        || (result.command_tag.starts_with("SELECT") && rows != result.rows.len())
    {
        format!("SELECT {rows}")
    } else {
        result.command_tag.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::split_message;

    fn tags(mut out: &[u8]) -> Vec<u8> {
        let mut tags = Vec::new();
        while let Some((tag, body)) = split_message(out, 1 << 20).unwrap() {
            tags.push(tag);
            out = &out[5 + body.len()..];
        }
        tags
    }

    fn three_rows() -> Arc<Served> {
        Arc::new(Served::new(
            &[0, 1, 0, 0, 0, 23],
            ResultSet {
                columns: vec!["n".into()],
                rows: vec![vec![Some("1".into())], vec![Some("2".into())], vec![None]],
                command_tag: "SELECT 3".into(),
            },
        ))
    }

    #[test]
    fn a_row_limit_suspends_the_portal_until_the_rows_run_out() {
        let mut portal = ServedPortal::new(b"p", three_rows(), vec![1]);
        let mut out = Vec::new();
        portal.execute(2, &mut out);
        assert_eq!(tags(&out), b"DDs");
        out.clear();
        portal.execute(2, &mut out);
        assert_eq!(tags(&out), b"DC");
        assert!(out.ends_with(b"SELECT 1\0"), "rows of this Execute");
        out.clear();
        portal.execute(0, &mut out);
        assert_eq!(tags(&out), b"C");
    }

    #[test]
    fn describing_the_statement_reports_declared_parameters_and_text_columns() {
        let mut out = Vec::new();
        three_rows().describe(&mut out);
        assert_eq!(tags(&out), b"tT");
        let mut whole = Vec::new();
        encode_result(&mut whole, &three_rows().result);
        assert_eq!(tags(&whole), b"TDDDC");
        assert!(whole.ends_with(b"SELECT 3\0"));
    }
}
