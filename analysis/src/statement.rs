//! Facts about one parsed statement: its kind and class, the data-modifying statements it
//! contains wherever they hide, its query levels, opaque code and session effects.

use pg_query::NodeEnum;
use pg_query::protobuf::{self, CmdType, a_const};

use crate::details::{details, set_config_target};
use crate::levels::Levels;
use crate::model::{
    Limit, Modification, ModificationKind, QueryBlock, StatementClass, StatementFacts, TableName,
    Via, WhereFacts,
};
use crate::predicate::{restricts_source, where_facts};
use crate::visit;

/// Functions whose call changes state, so a SELECT calling them is not a plain read.
const STATEFUL_FUNCTIONS: &[&str] = &[
    "nextval",
    "setval",
    "set_config",
    "pg_notify",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_create_restore_point",
    "txid_current",
    "pg_current_xact_id",
    "dblink_exec",
    "pg_file_write",
    "pg_promote",
];

/// Analyses one statement of `text`.
pub fn facts(text: &str, node: &NodeEnum) -> StatementFacts {
    let found = visit::walk(node);
    let kind = kebab(found.first_node.unwrap_or("Unknown"));
    let ctes = &found.cte_names;
    let is_cte = |t: &TableName| t.schema.is_none() && ctes.contains(&t.name);
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    for (table, target) in &found.relations {
        if is_cte(table) {
            continue;
        }
        let list = if *target { &mut writes } else { &mut reads };
        if !list.contains(table) {
            list.push(table.clone());
        }
    }
    let mut out = StatementFacts {
        text: text.to_owned(),
        kind,
        class: StatementClass::Other,
        reads,
        writes,
        modifications: Vec::new(),
        functions: dedup(found.functions.clone()),
        opaque: Vec::new(),
        blocks: Vec::new(),
        locking: Vec::new(),
        drops: Vec::new(),
        server_copy: None,
        setting: None,
        setting_value: None,
        executes: None,
        prepares: None,
        statement_names: found.statement_names.clone(),
        channel: None,
    };
    modifications(node, Via::TopLevel, &mut out.modifications);
    // The typed walk above follows every place PostgreSQL accepts a data-modifying
    // statement; should the grammar grow another, the complete walk still sees the node and
    // the statement is reported as an unfiltered change rather than as nothing.
    let typed = count_nodes(&out.modifications);
    // A plain EXPLAIN plans its statement without running it.
    let dormant = match node {
        NodeEnum::ExplainStmt(e) if !explain_analyze(e) => {
            self::node(&e.query).map_or(0, |q| visit::walk(q).modifying_nodes)
        }
        _ => 0,
    };
    if found.modifying_nodes > typed + dormant {
        out.modifications.push(Modification {
            kind: ModificationKind::Delete,
            table: TableName {
                schema: None,
                name: "(unanalysed)".into(),
            },
            filter: WhereFacts::default(),
            via: Via::Cte,
        });
    }
    let mut levels = Levels {
        ctes: &found.cte_names,
        blocks: Vec::new(),
        locking: Vec::new(),
    };
    levels.statement(node);
    out.blocks = levels.blocks;
    out.locking = levels.locking;
    // Tables read outside any level found above count as read unfiltered.
    let covered: Vec<&TableName> = out.blocks.iter().flat_map(|b| &b.tables).collect();
    let stray: Vec<TableName> = out
        .reads
        .iter()
        .filter(|t| !covered.contains(t))
        .cloned()
        .collect();
    if !stray.is_empty() {
        out.blocks.push(QueryBlock {
            tables: stray,
            filter: WhereFacts::default(),
            limit: Limit::None,
        });
    }
    if found.locking > out.locking.len() {
        out.locking.push("for update".into());
    }
    details(node, &mut out);
    if out.setting.is_none() {
        out.setting = set_config_target(node, &out.functions);
    }
    out.class = class(node, &out);
    out
}

/// `AlterTableStmt` → `alter-table`.
fn kebab(name: &str) -> String {
    let name = name.strip_suffix("Stmt").unwrap_or(name);
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = Vec::with_capacity(v.len());
    v.retain(|x| {
        if seen.contains(x) {
            false
        } else {
            seen.push(x.clone());
            true
        }
    });
    v
}

pub(crate) fn node(n: &Option<Box<protobuf::Node>>) -> Option<&NodeEnum> {
    n.as_ref().and_then(|n| n.node.as_ref())
}

pub(crate) fn table(r: &protobuf::RangeVar) -> TableName {
    TableName {
        schema: (!r.schemaname.is_empty()).then(|| r.schemaname.clone()),
        name: r.relname.clone(),
    }
}

/// Each modification counts as one tree node, except MERGE actions (one MERGE node).
fn count_nodes(mods: &[Modification]) -> usize {
    let upserts = mods
        .windows(2)
        .filter(|w| {
            w[0].kind == ModificationKind::Insert
                && w[1].kind == ModificationKind::Update
                && w[0].table == w[1].table
                && w[0].via == w[1].via
                && w[1].via != Via::Merge
        })
        .count();
    let merges = mods.iter().filter(|m| m.via == Via::Merge).count();
    let merge_nodes = mods
        .iter()
        .filter(|m| m.via == Via::Merge)
        .map(|m| &m.table)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    mods.iter()
        .filter(|m| {
            !matches!(
                m.kind,
                ModificationKind::Truncate | ModificationKind::CopyFrom
            )
        })
        .count()
        .saturating_sub(merges)
        .saturating_add(merge_nodes)
        .saturating_sub(upserts)
}

fn with_ctes(with: &Option<protobuf::WithClause>, via: Via, out: &mut Vec<Modification>) {
    let Some(with) = with else { return };
    let inner = if via == Via::TopLevel { Via::Cte } else { via };
    for cte in &with.ctes {
        if let Some(NodeEnum::CommonTableExpr(c)) = cte.node.as_ref()
            && let Some(q) = node(&c.ctequery)
        {
            modifications(q, inner, out);
        }
    }
}

/// Every data-modifying statement in `n`, reached through CTEs, EXPLAIN ANALYZE, MERGE
/// actions, PREPARE bodies and COPY queries.
fn modifications(n: &NodeEnum, via: Via, out: &mut Vec<Modification>) {
    let nested = |v: Via| if via == Via::TopLevel { v } else { via };
    match n {
        NodeEnum::SelectStmt(s) => {
            with_ctes(&s.with_clause, via, out);
            for arm in [&s.larg, &s.rarg].into_iter().flatten() {
                modifications(&NodeEnum::SelectStmt(arm.clone()), via, out);
            }
        }
        NodeEnum::InsertStmt(s) => {
            with_ctes(&s.with_clause, via, out);
            if let Some(r) = &s.relation {
                out.push(Modification {
                    kind: ModificationKind::Insert,
                    table: table(r),
                    filter: WhereFacts::default(),
                    via,
                });
                // ON CONFLICT DO UPDATE updates every existing row the inserted rows collide
                // with: bounded for a VALUES list, every row for `INSERT … SELECT`.
                if let Some(c) = &s.on_conflict_clause
                    && c.action == protobuf::OnConflictAction::OnconflictUpdate as i32
                {
                    let mut filter = where_facts(c.where_clause.as_deref());
                    let values = matches!(
                        node(&s.select_stmt),
                        Some(NodeEnum::SelectStmt(q)) if !q.values_lists.is_empty()
                    );
                    if values && !filter.present {
                        filter.present = true;
                    }
                    out.push(Modification {
                        kind: ModificationKind::Update,
                        table: table(r),
                        filter,
                        via,
                    });
                }
            }
        }
        NodeEnum::UpdateStmt(s) => {
            with_ctes(&s.with_clause, via, out);
            if let Some(r) = &s.relation {
                out.push(Modification {
                    kind: ModificationKind::Update,
                    table: table(r),
                    filter: where_facts(s.where_clause.as_deref()),
                    via,
                });
            }
        }
        NodeEnum::DeleteStmt(s) => {
            with_ctes(&s.with_clause, via, out);
            if let Some(r) = &s.relation {
                out.push(Modification {
                    kind: ModificationKind::Delete,
                    table: table(r),
                    filter: where_facts(s.where_clause.as_deref()),
                    via,
                });
            }
        }
        NodeEnum::MergeStmt(s) => {
            with_ctes(&s.with_clause, via, out);
            let Some(r) = &s.relation else { return };
            let mut on = where_facts(s.join_condition.as_deref());
            // A join on the key with a source nothing restricts (the target itself, another
            // table) matches every target row, like `WHERE true`.
            if on.equalities.is_empty() && !restricts_source(s.source_relation.as_deref()) {
                on.constant = true;
            }
            for clause in &s.merge_when_clauses {
                let Some(NodeEnum::MergeWhenClause(w)) = clause.node.as_ref() else {
                    continue;
                };
                let kind = match CmdType::try_from(w.command_type) {
                    Ok(CmdType::CmdDelete) => ModificationKind::Delete,
                    Ok(CmdType::CmdUpdate) => ModificationKind::Update,
                    Ok(CmdType::CmdInsert) => ModificationKind::Insert,
                    _ => continue,
                };
                let mut filter = on.clone();
                // WHEN NOT MATCHED BY SOURCE acts on every target row the join leaves out:
                // the join condition filters nothing for it.
                if w.match_kind == protobuf::MergeMatchKind::MergeWhenNotMatchedBySource as i32 {
                    filter = WhereFacts {
                        present: false,
                        ..WhereFacts::default()
                    };
                }
                if w.condition.is_some() {
                    let cond = where_facts(w.condition.as_deref());
                    filter.constant &= cond.constant;
                    filter.equalities.extend(cond.equalities);
                }
                out.push(Modification {
                    kind,
                    table: table(r),
                    filter,
                    via: nested(Via::Merge),
                });
            }
        }
        NodeEnum::ExplainStmt(s) => {
            if explain_analyze(s)
                && let Some(q) = node(&s.query)
            {
                modifications(q, nested(Via::ExplainAnalyze), out);
            }
        }
        NodeEnum::PrepareStmt(s) => {
            if let Some(q) = node(&s.query) {
                modifications(q, nested(Via::Prepare), out);
            }
        }
        NodeEnum::CopyStmt(s) => {
            if let Some(q) = node(&s.query) {
                modifications(q, nested(Via::Copy), out);
            }
            if s.is_from
                && let Some(r) = &s.relation
            {
                out.push(Modification {
                    kind: ModificationKind::CopyFrom,
                    table: table(r),
                    filter: WhereFacts::default(),
                    via,
                });
            }
        }
        NodeEnum::TruncateStmt(s) => {
            for r in &s.relations {
                if let Some(NodeEnum::RangeVar(r)) = r.node.as_ref() {
                    out.push(Modification {
                        kind: ModificationKind::Truncate,
                        table: table(r),
                        filter: WhereFacts::default(),
                        via,
                    });
                }
            }
        }
        _ => {}
    }
}

/// `EXPLAIN (ANALYZE)` runs the statement; `ANALYZE false/off/0` does not.
pub(crate) fn explain_analyze(s: &protobuf::ExplainStmt) -> bool {
    s.options.iter().any(|o| match o.node.as_ref() {
        Some(NodeEnum::DefElem(d)) if d.defname.eq_ignore_ascii_case("analyze") => {
            match d.arg.as_ref().and_then(|a| a.node.as_ref()) {
                None => true,
                Some(NodeEnum::String(v)) => !matches!(
                    v.sval.to_ascii_lowercase().as_str(),
                    "false" | "off" | "0" | "no"
                ),
                Some(NodeEnum::Boolean(b)) => b.boolval,
                Some(NodeEnum::Integer(i)) => i.ival != 0,
                Some(NodeEnum::AConst(c)) => match &c.val {
                    Some(a_const::Val::Boolval(b)) => b.boolval,
                    Some(a_const::Val::Sval(s)) => !matches!(
                        s.sval.to_ascii_lowercase().as_str(),
                        "false" | "off" | "0" | "no"
                    ),
                    Some(a_const::Val::Ival(i)) => i.ival != 0,
                    _ => true,
                },
                _ => true,
            }
        }
        _ => false,
    })
}

/// The class for routing, from the node and what the analysis found inside it.
fn class(n: &NodeEnum, f: &StatementFacts) -> StatementClass {
    let stateful = f.functions.iter().any(|name| {
        let bare = name.rsplit('.').next().unwrap_or(name);
        STATEFUL_FUNCTIONS.contains(&bare)
            || bare.starts_with("pg_advisory")
            || bare.starts_with("pg_try_advisory")
            || bare.starts_with("lo_")
    });
    let changes = !f.modifications.is_empty() || !f.locking.is_empty() || stateful;
    match n {
        NodeEnum::SelectStmt(s) => {
            if changes || s.into_clause.is_some() {
                StatementClass::Write
            } else {
                StatementClass::Read
            }
        }
        NodeEnum::InsertStmt(_)
        | NodeEnum::UpdateStmt(_)
        | NodeEnum::DeleteStmt(_)
        | NodeEnum::MergeStmt(_) => StatementClass::Write,
        NodeEnum::CopyStmt(c) => {
            if changes || c.is_from || c.is_program || !c.filename.is_empty() {
                StatementClass::Write
            } else {
                StatementClass::Read
            }
        }
        NodeEnum::ExplainStmt(e) => match node(&e.query) {
            Some(q) if explain_analyze(e) => class(q, f),
            _ => StatementClass::Read,
        },
        NodeEnum::VariableShowStmt(_) => StatementClass::Read,
        NodeEnum::TransactionStmt(_) => StatementClass::Transaction,
        // A cursor lives in the session: its statements go where the session is, and what
        // its query changes is counted when the cursor is declared.
        NodeEnum::DeclareCursorStmt(_) if changes => StatementClass::Write,
        NodeEnum::DeclareCursorStmt(_) | NodeEnum::FetchStmt(_) | NodeEnum::ClosePortalStmt(_) => {
            StatementClass::Session
        }
        NodeEnum::VariableSetStmt(_)
        | NodeEnum::DiscardStmt(_)
        | NodeEnum::ListenStmt(_)
        | NodeEnum::UnlistenStmt(_)
        | NodeEnum::PrepareStmt(_)
        | NodeEnum::DeallocateStmt(_)
        | NodeEnum::LoadStmt(_) => StatementClass::Session,
        NodeEnum::TruncateStmt(_)
        | NodeEnum::GrantStmt(_)
        | NodeEnum::GrantRoleStmt(_)
        | NodeEnum::CommentStmt(_)
        | NodeEnum::RenameStmt(_)
        | NodeEnum::SecLabelStmt(_)
        | NodeEnum::RuleStmt(_)
        | NodeEnum::IndexStmt(_)
        | NodeEnum::ViewStmt(_) => StatementClass::Ddl,
        _ if f.kind.starts_with("create")
            || f.kind.starts_with("alter")
            || f.kind.starts_with("drop") =>
        {
            StatementClass::Ddl
        }
        _ => StatementClass::Other,
    }
}
