//! The shadow run's workers: each takes mirrored statements off the queue, runs them on
//! the shadow target as the same user on the same database (writes, when allowed, inside a
//! transaction that is rolled back), and compares the answer with the primary's — in order
//! when the statement orders its rows, as a set of rows otherwise.

use std::collections::HashMap;
use std::sync::Arc;

use helios_analysis::StatementClass;
use tokio::sync::{Mutex, mpsc};

use super::tap::Mirrored;
use super::{Digest, Divergence, Run};
use crate::ops::statement;
use crate::pool::server::ServerConn;
use crate::session::env::SessionEnv;

/// Analyses a worker remembers (by SQL text).
const KNOWN: usize = 10_000;

/// What the shadow does with a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Run it in a read-only transaction, rolled back; `ordered` when its rows come in a
    /// defined order.
    Read { ordered: bool },
    /// Run it inside `BEGIN` … `ROLLBACK`.
    RolledBack { ordered: bool },
    /// Not mirrored.
    Skip,
}

/// Runs until the queue closes.
pub async fn work(env: Arc<SessionEnv>, run: Arc<Run>, rx: Arc<Mutex<mpsc::Receiver<Mirrored>>>) {
    let mut conns: HashMap<(String, String), ServerConn> = HashMap::new();
    let mut known: HashMap<String, Plan> = HashMap::new();
    let mut bytes = Vec::new();
    loop {
        let Some(m) = rx.lock().await.recv().await else {
            return;
        };
        if known.len() >= KNOWN {
            known.clear();
        }
        let plan = *known
            .entry(m.statement.sql.clone())
            .or_insert_with(|| plan(&m.statement.sql, run.reads_only));
        let ordered = match plan {
            Plan::Skip => {
                run.count_skipped();
                continue;
            }
            Plan::Read { ordered } | Plan::RolledBack { ordered } => ordered,
        };
        let key = (m.user.clone(), m.database.clone());
        if !conns.contains_key(&key) {
            match run.target.connect(&env, None, &m.user, &m.database).await {
                Ok(c) => {
                    conns.insert(key.clone(), c);
                }
                Err(e) => {
                    run.count_error(format!("connecting as {}: {e}", m.user));
                    continue;
                }
            }
        }
        let conn = conns.get_mut(&key).expect("inserted");
        bytes.clear();
        m.statement.encode(&mut bytes);
        // Every mirrored statement runs in a transaction that is rolled back, reads in a
        // read-only one: what the parser calls a read may call a function that writes.
        let begin = match plan {
            Plan::RolledBack { .. } => "BEGIN READ WRITE",
            _ => "BEGIN READ ONLY",
        };
        let result = async {
            conn.run_internal(begin).await?;
            let answer = statement::run(conn, &bytes).await?;
            conn.run_internal("ROLLBACK").await?;
            Ok::<_, crate::pool::server::ServerError>(answer)
        }
        .await;
        match result {
            Ok(answer) => compare(&run, &m, &answer, ordered),
            Err(e) => {
                conns.remove(&key);
                run.count_error(e.to_string());
            }
        }
    }
}

fn compare(run: &Run, m: &Mirrored, answer: &statement::Answer, ordered: bool) {
    let primary = digest(ordered, m.sum.rows, m.sum.checksum(), m.set, &m.error);
    let shadow = digest(
        ordered,
        answer.sum.rows,
        answer.sum.checksum(),
        answer.set,
        &answer.error,
    );
    if primary == shadow {
        run.count_match();
        return;
    }
    run.diverged(Divergence {
        statement: helios_analysis::normalize(&m.statement.sql)
            .unwrap_or_else(|| helios_analysis::UNREADABLE.to_owned()),
        user: m.user.clone(),
        database: m.database.clone(),
        ordered,
        primary,
        shadow,
        at_ms: crate::topology::now_ms(),
    });
}

fn digest(
    ordered: bool,
    rows: u64,
    crc: u32,
    set: statement::RowSet,
    error: &Option<String>,
) -> Digest {
    Digest {
        rows,
        digest: match error {
            Some(_) => String::new(),
            None if ordered => format!("{crc:08x}"),
            None => format!("{:016x}", set.digest),
        },
        error: error.clone(),
    }
}

/// What to do with `sql`: PostgreSQL's parser decides; text it cannot parse, several
/// statements in one message, transaction control and session commands are not mirrored.
fn plan(sql: &str, reads_only: bool) -> Plan {
    let analysis = helios_analysis::analyze(sql);
    if analysis.error.is_some() || analysis.statements.len() != 1 {
        return Plan::Skip;
    }
    let ordered = helios_analysis::normalize(sql)
        .is_some_and(|n| n.to_ascii_lowercase().contains("order by"));
    match analysis.statements[0].class {
        StatementClass::Read => Plan::Read { ordered },
        StatementClass::Transaction | StatementClass::Session => Plan::Skip,
        _ if reads_only => Plan::Skip,
        _ => Plan::RolledBack { ordered },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_reads_are_mirrored_unless_writes_are_allowed() {
        assert_eq!(plan("select * from t", true), Plan::Read { ordered: false });
        assert_eq!(
            plan("select * from t order by 1", true),
            Plan::Read { ordered: true }
        );
        assert_eq!(
            plan("select 'order by' from t", true),
            Plan::Read { ordered: false },
            "a constant is not a clause"
        );
        assert_eq!(plan("insert into t values (1)", true), Plan::Skip);
        assert_eq!(
            plan("insert into t values (1)", false),
            Plan::RolledBack { ordered: false }
        );
        assert_eq!(plan("select nextval('s')", true), Plan::Skip);
        assert_eq!(plan("select 1; select 2", true), Plan::Skip);
        assert_eq!(plan("begin", false), Plan::Skip);
        assert_eq!(plan("set search_path to x", false), Plan::Skip);
        assert_eq!(plan("selec oops", false), Plan::Skip);
    }
}
