//! What a replay runs: the journal's records of a window, filtered, grouped per recorded
//! session in their original order, each marked with whether it may write (PostgreSQL's
//! parser decides; text it cannot parse counts as a write), and how shadow mode rewrites a
//! statement so nothing it does stays on the target.

use std::collections::{BTreeMap, HashMap};

use helios_analysis::StatementClass;
use serde::Deserialize;

use crate::journal::Record;

/// Which records of the window to replay; every field narrows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Only this client user.
    pub user: Option<String>,
    /// Only this database.
    pub database: Option<String>,
    /// Only this recorded session.
    pub session_id: Option<u64>,
    /// Only statements whose text contains this (case-insensitive).
    pub contains: Option<String>,
    /// Leave out statements that failed when recorded.
    #[serde(default)]
    pub skip_failed: bool,
}

impl Filter {
    /// Whether `r` passes.
    pub fn admits(&self, r: &Record) -> bool {
        self.user.as_ref().is_none_or(|u| *u == r.user)
            && self.database.as_ref().is_none_or(|d| *d == r.database)
            && self.session_id.is_none_or(|s| s == r.session_id)
            && self
                .contains
                .as_ref()
                .is_none_or(|c| r.sql.to_lowercase().contains(&c.to_lowercase()))
            && !(self.skip_failed && r.error.is_some())
    }
}

/// One statement to replay.
#[derive(Debug)]
pub struct Step {
    /// The record.
    pub record: Record,
    /// What shadow mode sends instead (`None`: as recorded).
    pub shadow: ShadowForm,
}

/// How a statement runs in shadow mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShadowForm {
    /// As recorded (reads, and statements inside a transaction block, which ends rolled
    /// back).
    AsIs,
    /// Wrapped in `BEGIN` … `ROLLBACK` (a write outside a transaction block).
    RolledBack,
    /// Replaced with `ROLLBACK` (a `COMMIT`, `END`, `PREPARE TRANSACTION`, …).
    Rollback,
    /// Not run: it cannot be undone (several statements with writes or transaction control
    /// in one message).
    Skip,
}

/// The window grouped by session, oldest session first.
#[derive(Debug, Default)]
pub struct Plan {
    /// Each session's steps in recorded order.
    pub sessions: Vec<Vec<Step>>,
    /// Statements in all.
    pub statements: usize,
    /// Statements that may write, and the first of them.
    pub writes: usize,
    /// The first write's journal position.
    pub first_write: Option<u64>,
    /// Start of the first record, µs since the epoch.
    pub first_us: u64,
}

/// Groups `records` (in journal order) into a plan.
pub fn build(records: Vec<Record>) -> Plan {
    let mut by_session: BTreeMap<u64, Vec<Step>> = BTreeMap::new();
    let mut known: HashMap<String, (bool, ShadowForm)> = HashMap::new();
    let mut plan = Plan {
        first_us: records.first().map_or(0, |r| r.started_at_us),
        ..Plan::default()
    };
    for record in records {
        let (writes, shadow) = known
            .entry(record.sql.clone())
            .or_insert_with(|| classify(&record.sql))
            .clone();
        let shadow = match shadow {
            ShadowForm::RolledBack if record.transaction_id != 0 => ShadowForm::AsIs,
            other => other,
        };
        plan.statements += 1;
        if writes {
            plan.writes += 1;
            plan.first_write.get_or_insert(record.seq);
        }
        plan.first_us = plan.first_us.min(record.started_at_us);
        by_session
            .entry(record.session_id)
            .or_default()
            .push(Step { record, shadow });
    }
    let mut sessions: Vec<Vec<Step>> = by_session.into_values().collect();
    sessions.sort_by_key(|s| s[0].record.started_at_us);
    plan.sessions = sessions;
    plan
}

/// Whether `sql` may write, and its shadow form.
fn classify(sql: &str) -> (bool, ShadowForm) {
    let analysis = helios_analysis::analyze(sql);
    if analysis.error.is_some() {
        return (true, ShadowForm::RolledBack);
    }
    let writes = analysis.statements.iter().any(|s| {
        !matches!(
            s.class,
            StatementClass::Read | StatementClass::Transaction | StatementClass::Session
        )
    });
    let control = analysis
        .statements
        .iter()
        .any(|s| s.class == StatementClass::Transaction);
    if analysis.statements.len() > 1 && (writes || control) {
        return (writes, ShadowForm::Skip);
    }
    let form = match analysis.statements.first() {
        Some(s) if s.class == StatementClass::Transaction => transaction_form(&s.text),
        _ if writes => ShadowForm::RolledBack,
        _ => ShadowForm::AsIs,
    };
    (writes, form)
}

/// Whether `text` starts or ends a transaction block or a savepoint.
pub fn is_transaction_control(text: &str) -> bool {
    let words = helios_sql::leading_words(text, 1);
    matches!(
        words.first().map(String::as_str),
        Some("begin" | "start" | "savepoint" | "release" | "rollback" | "abort" | "commit" | "end")
    )
}

/// Transaction control that keeps nothing runs as is; anything that would end a
/// transaction by keeping its work becomes `ROLLBACK`.
fn transaction_form(text: &str) -> ShadowForm {
    let words = helios_sql::leading_words(text, 2);
    let first = words.first().map(String::as_str).unwrap_or("");
    let second = words.get(1).map(String::as_str).unwrap_or("");
    match first {
        "begin" | "start" | "savepoint" | "release" => ShadowForm::AsIs,
        "rollback" | "abort" if second != "prepared" => ShadowForm::AsIs,
        _ => ShadowForm::Rollback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_found_by_the_parser_and_unparsable_text_counts_as_one() {
        assert_eq!(classify("select * from t"), (false, ShadowForm::AsIs));
        assert_eq!(
            classify("insert into t values (1)"),
            (true, ShadowForm::RolledBack)
        );
        assert_eq!(
            classify("with d as (delete from t returning *) select * from d"),
            (true, ShadowForm::RolledBack)
        );
        assert!(classify("select nextval('s')").0);
        assert!(classify("selec oops").0);
        assert_eq!(classify("commit"), (false, ShadowForm::Rollback));
        assert_eq!(classify("END"), (false, ShadowForm::Rollback));
        assert_eq!(
            classify("prepare transaction 'x'"),
            (false, ShadowForm::Rollback)
        );
        assert_eq!(
            classify("commit prepared 'x'"),
            (false, ShadowForm::Rollback)
        );
        assert_eq!(
            classify("rollback prepared 'x'"),
            (false, ShadowForm::Rollback)
        );
        assert_eq!(classify("begin"), (false, ShadowForm::AsIs));
        assert_eq!(
            classify("rollback to savepoint a"),
            (false, ShadowForm::AsIs)
        );
        assert_eq!(
            classify("begin; insert into t values (1); commit"),
            (true, ShadowForm::Skip)
        );
        assert_eq!(classify("select 1; select 2"), (false, ShadowForm::AsIs));
    }

    #[test]
    fn sessions_keep_their_order_and_writes_in_a_transaction_run_as_recorded() {
        let rec = |seq, session_id, transaction_id, sql: &str| Record {
            seq,
            session_id,
            transaction_id,
            sql: sql.into(),
            started_at_us: 1000 + seq,
            ..Record::default()
        };
        let plan = build(vec![
            rec(1, 9, 0, "select 1"),
            rec(2, 4, 1, "begin"),
            rec(3, 9, 0, "insert into t values (1)"),
            rec(4, 4, 1, "insert into t values (2)"),
            rec(5, 4, 1, "commit"),
        ]);
        assert_eq!(plan.statements, 5);
        assert_eq!((plan.writes, plan.first_write), (2, Some(3)));
        let order: Vec<Vec<u64>> = plan
            .sessions
            .iter()
            .map(|s| s.iter().map(|x| x.record.seq).collect())
            .collect();
        assert_eq!(order, vec![vec![1, 3], vec![2, 4, 5]]);
        assert_eq!(plan.sessions[0][1].shadow, ShadowForm::RolledBack);
        assert_eq!(plan.sessions[1][1].shadow, ShadowForm::AsIs);
        assert_eq!(plan.sessions[1][2].shadow, ShadowForm::Rollback);
    }
}
