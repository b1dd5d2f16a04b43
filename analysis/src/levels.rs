//! The query levels of a statement (each SELECT/UPDATE/DELETE/MERGE level, set-operation
//! arm, subquery and CTE), with the tables each reads directly, its filter and its LIMIT —
//! what per-level policies (tenant filters, row limits) judge.

use pg_query::NodeEnum;
use pg_query::protobuf::{self, LockClauseStrength};

use crate::model::{Limit, QueryBlock, TableName, WhereFacts};
use crate::predicate::{limit, one_row, where_facts};
use crate::statement::{node, table};

/// The query levels of a statement and their locking clauses.
pub(crate) struct Levels<'a> {
    pub(crate) ctes: &'a [String],
    pub(crate) blocks: Vec<QueryBlock>,
    pub(crate) locking: Vec<String>,
}

impl Levels<'_> {
    /// The levels of `n`, outermost first.
    pub(crate) fn statement(&mut self, n: &NodeEnum) {
        match n {
            NodeEnum::SelectStmt(s) => self.select(s, Limit::None),
            NodeEnum::UpdateStmt(s) => {
                let mut tables: Vec<TableName> = s.relation.iter().map(table).collect();
                self.from(&s.from_clause, &mut tables);
                self.push(tables, where_facts(s.where_clause.as_deref()), Limit::None);
                self.ctes(&s.with_clause);
                self.expr(s.where_clause.as_deref());
            }
            NodeEnum::DeleteStmt(s) => {
                let mut tables: Vec<TableName> = s.relation.iter().map(table).collect();
                self.from(&s.using_clause, &mut tables);
                self.push(tables, where_facts(s.where_clause.as_deref()), Limit::None);
                self.ctes(&s.with_clause);
                self.expr(s.where_clause.as_deref());
            }
            NodeEnum::InsertStmt(s) => {
                self.ctes(&s.with_clause);
                if let Some(q) = node(&s.select_stmt) {
                    self.statement(q);
                }
            }
            NodeEnum::MergeStmt(s) => {
                let mut tables: Vec<TableName> = s.relation.iter().map(table).collect();
                if let Some(src) = s.source_relation.as_deref() {
                    self.from(std::slice::from_ref(src), &mut tables);
                }
                self.push(
                    tables,
                    where_facts(s.join_condition.as_deref()),
                    Limit::None,
                );
                self.ctes(&s.with_clause);
            }
            NodeEnum::ExplainStmt(s) => self.optional(&s.query),
            NodeEnum::PrepareStmt(s) => self.optional(&s.query),
            NodeEnum::CreateTableAsStmt(s) => self.optional(&s.query),
            NodeEnum::DeclareCursorStmt(s) => self.optional(&s.query),
            NodeEnum::ViewStmt(s) => self.optional(&s.query),
            NodeEnum::CopyStmt(s) => {
                if s.query.is_some() {
                    self.optional(&s.query);
                } else if let Some(r) = &s.relation
                    && !s.is_from
                {
                    self.push(vec![table(r)], WhereFacts::default(), Limit::None);
                }
            }
            _ => {}
        }
    }

    fn optional(&mut self, q: &Option<Box<protobuf::Node>>) {
        if let Some(q) = node(q) {
            self.statement(q);
        }
    }

    fn push(&mut self, tables: Vec<TableName>, filter: WhereFacts, limit: Limit) {
        self.blocks.push(QueryBlock {
            tables,
            filter,
            limit,
        });
    }

    /// A SELECT level; `inherited` is the LIMIT of the set operation it is an arm of (the
    /// grammar puts `… UNION … LIMIT n` on the whole, not on the last arm).
    fn select(&mut self, s: &protobuf::SelectStmt, inherited: Limit) {
        self.ctes(&s.with_clause);
        let own = limit(s);
        let limit = if own == Limit::None { inherited } else { own };
        if s.larg.is_some() || s.rarg.is_some() {
            for arm in [&s.larg, &s.rarg].into_iter().flatten() {
                self.select(arm, limit);
            }
            return;
        }
        for l in &s.locking_clause {
            if let Some(NodeEnum::LockingClause(c)) = l.node.as_ref() {
                let name = match LockClauseStrength::try_from(c.strength) {
                    Ok(LockClauseStrength::LcsForkeyshare) => "for key share",
                    Ok(LockClauseStrength::LcsForshare) => "for share",
                    Ok(LockClauseStrength::LcsFornokeyupdate) => "for no key update",
                    _ => "for update",
                };
                self.locking.push(name.into());
            }
        }
        let limit = if limit == Limit::None && one_row(s) {
            Limit::Count(1)
        } else {
            limit
        };
        let mut tables = Vec::new();
        self.from(&s.from_clause, &mut tables);
        self.push(tables, where_facts(s.where_clause.as_deref()), limit);
        // WHERE, target lists and HAVING may hold subqueries: levels of their own.
        self.expr(s.where_clause.as_deref());
        for t in &s.target_list {
            self.expr(Some(t));
        }
        self.expr(s.having_clause.as_deref());
    }

    fn ctes(&mut self, with: &Option<protobuf::WithClause>) {
        let Some(with) = with else { return };
        for cte in &with.ctes {
            if let Some(NodeEnum::CommonTableExpr(c)) = cte.node.as_ref() {
                self.optional(&c.ctequery);
            }
        }
    }

    /// Tables named directly in a FROM list (joins included); subqueries become levels.
    fn from(&mut self, items: &[protobuf::Node], tables: &mut Vec<TableName>) {
        for item in items {
            match item.node.as_ref() {
                Some(NodeEnum::RangeVar(r)) => {
                    let t = table(r);
                    if !(t.schema.is_none() && self.ctes.contains(&t.name)) {
                        tables.push(t);
                    }
                }
                Some(NodeEnum::JoinExpr(j)) => {
                    for side in [&j.larg, &j.rarg].into_iter().flatten() {
                        self.from(std::slice::from_ref(&**side), tables);
                    }
                    self.expr(j.quals.as_deref());
                }
                Some(NodeEnum::RangeSubselect(r)) => self.optional(&r.subquery),
                _ => {}
            }
        }
    }

    /// Subqueries inside an expression become levels of their own.
    fn expr(&mut self, expr: Option<&protobuf::Node>) {
        let Some(n) = expr.and_then(|n| n.node.as_ref()) else {
            return;
        };
        match n {
            NodeEnum::SubLink(s) => {
                self.optional(&s.subselect);
                self.expr(s.testexpr.as_deref());
            }
            NodeEnum::BoolExpr(b) => b.args.iter().for_each(|a| self.expr(Some(a))),
            NodeEnum::AExpr(a) => {
                self.expr(a.lexpr.as_deref());
                self.expr(a.rexpr.as_deref());
            }
            NodeEnum::ResTarget(r) => self.expr(r.val.as_deref()),
            NodeEnum::TypeCast(t) => self.expr(t.arg.as_deref()),
            NodeEnum::FuncCall(f) => f.args.iter().for_each(|a| self.expr(Some(a))),
            NodeEnum::NullTest(t) => self.expr(t.arg.as_deref()),
            NodeEnum::CoalesceExpr(c) => c.args.iter().for_each(|a| self.expr(Some(a))),
            NodeEnum::List(l) => l.items.iter().for_each(|a| self.expr(Some(a))),
            _ => {}
        }
    }
}
