//! Statement mode's guard: a transaction block would keep a server connection past one
//! statement, which statement pooling promises never happens, so it is refused up front.

use super::{Answer, Protocol, StatementCx, Step, Verdict};
use crate::session::relay::expect::SqlError;
use crate::sql::opens_transaction;
use crate::wire::messages::sqlstate;

/// Refuses simple queries that open a transaction block (`BEGIN`, `START TRANSACTION`).
pub struct StatementModeGuard;

impl Step for StatementModeGuard {
    fn on_statement(&self, cx: &mut StatementCx<'_>) -> Verdict {
        if cx.protocol == Protocol::Simple && opens_transaction(cx.sql) {
            return Verdict::Answer(Answer::Error(SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "transaction blocks are not allowed in statement pooling mode",
            )));
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::steps::tests::{cx_for, info};

    #[test]
    fn begin_is_refused_and_other_statements_pass() {
        let info = info();
        let mut cx = cx_for(&info, "begin; select 1", Protocol::Simple);
        assert!(matches!(
            StatementModeGuard.on_statement(&mut cx),
            Verdict::Answer(Answer::Error(e)) if e.code == "0A000"
        ));
        let mut cx = cx_for(&info, "select 1", Protocol::Simple);
        assert!(matches!(
            StatementModeGuard.on_statement(&mut cx),
            Verdict::Continue
        ));
    }
}
