//! Facts about one parsed statement: its kind and class, the data-modifying statements it
//! contains wherever they hide, its query levels, opaque code and session effects.

use pg_query::NodeEnum;
use pg_query::protobuf::{self, AlterTableType, CmdType, LockClauseStrength, ObjectType, a_const};

use crate::model::{
    Limit, Modification, ModificationKind, OpaqueCode, QueryBlock, StatementClass, StatementFacts,
    TableName, Via, WhereFacts,
};
use crate::predicate::{limit, where_facts};
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
        copy_program: None,
        setting: None,
        executes: None,
        prepares: None,
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

/// The setting a `set_config(name, …)` call changes (`set_config('role', …)` is `SET ROLE`);
/// `(not a constant)` when the name is computed. Rare, so the tree is searched generically.
fn set_config_target(n: &NodeEnum, functions: &[String]) -> Option<String> {
    if !functions
        .iter()
        .any(|f| f == "set_config" || f == "pg_catalog.set_config")
    {
        return None;
    }
    let tree = serde_json::to_value(n).ok()?;
    let mut found = None;
    find_set_config(&tree, &mut found);
    Some(found.unwrap_or_else(|| "(not a constant)".into()))
}

fn find_set_config(v: &serde_json::Value, found: &mut Option<String>) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            if let Some(call) = m.get("FuncCall") {
                let name = call["funcname"]
                    .as_array()
                    .and_then(|parts| parts.last())
                    .and_then(|p| p["node"]["String"]["sval"].as_str());
                if name == Some("set_config") {
                    let first = &call["args"][0]["node"]["AConst"]["val"]["Sval"]["sval"];
                    let setting = first
                        .as_str()
                        .map_or_else(|| "(not a constant)".to_owned(), str::to_lowercase);
                    // A computed name wins: it could be anything.
                    if found.is_none() || setting == "(not a constant)" || setting == "role" {
                        *found = Some(setting);
                    }
                }
            }
            m.values().for_each(|x| find_set_config(x, found));
        }
        Value::Array(a) => a.iter().for_each(|x| find_set_config(x, found)),
        _ => {}
    }
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

fn node(n: &Option<Box<protobuf::Node>>) -> Option<&NodeEnum> {
    n.as_ref().and_then(|n| n.node.as_ref())
}

fn table(r: &protobuf::RangeVar) -> TableName {
    TableName {
        schema: (!r.schemaname.is_empty()).then(|| r.schemaname.clone()),
        name: r.relname.clone(),
    }
}

/// Each modification counts as one tree node, except MERGE actions (one MERGE node).
fn count_nodes(mods: &[Modification]) -> usize {
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
        - merges
        + merge_nodes
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
            let on = where_facts(s.join_condition.as_deref());
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
fn explain_analyze(s: &protobuf::ExplainStmt) -> bool {
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

/// The query levels of a statement and their locking clauses.
struct Levels<'a> {
    ctes: &'a [String],
    blocks: Vec<QueryBlock>,
    locking: Vec<String>,
}

impl Levels<'_> {
    /// The levels of `n`, outermost first.
    fn statement(&mut self, n: &NodeEnum) {
        match n {
            NodeEnum::SelectStmt(s) => self.select(s),
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

    fn select(&mut self, s: &protobuf::SelectStmt) {
        self.ctes(&s.with_clause);
        if s.larg.is_some() || s.rarg.is_some() {
            for arm in [&s.larg, &s.rarg].into_iter().flatten() {
                self.select(arm);
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
        let mut tables = Vec::new();
        self.from(&s.from_clause, &mut tables);
        self.push(tables, where_facts(s.where_clause.as_deref()), limit(s));
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

/// Opaque code, drops, COPY PROGRAM, settings, PREPARE/EXECUTE names.
fn details(n: &NodeEnum, out: &mut StatementFacts) {
    match n {
        NodeEnum::DoStmt(d) => out.opaque.push(OpaqueCode {
            kind: "do".into(),
            name: None,
            language: def_text(&d.args, "language"),
        }),
        NodeEnum::CreateFunctionStmt(f) => out.opaque.push(OpaqueCode {
            kind: if f.is_procedure {
                "create-procedure".into()
            } else {
                "create-function".into()
            },
            name: Some(names(&f.funcname)),
            language: def_text(&f.options, "language"),
        }),
        NodeEnum::CallStmt(c) => out.opaque.push(OpaqueCode {
            kind: "call".into(),
            name: c.funccall.as_ref().map(|f| names(&f.funcname)),
            language: None,
        }),
        NodeEnum::CreateTrigStmt(t) => out.opaque.push(OpaqueCode {
            kind: "create-trigger".into(),
            name: Some(names(&t.funcname)),
            language: None,
        }),
        NodeEnum::RuleStmt(r) => out.opaque.push(OpaqueCode {
            kind: "create-rule".into(),
            name: Some(r.rulename.clone()),
            language: None,
        }),
        NodeEnum::DropStmt(d) => {
            let what = ObjectType::try_from(d.remove_type)
                .map(|t| object_type(t.as_str_name()))
                .unwrap_or_else(|_| "object".into());
            for o in &d.objects {
                let name = match o.node.as_ref() {
                    Some(NodeEnum::List(l)) => names(&l.items),
                    Some(NodeEnum::String(s)) => s.sval.clone(),
                    Some(NodeEnum::TypeName(t)) => names(&t.names),
                    Some(NodeEnum::ObjectWithArgs(f)) => names(&f.objname),
                    _ => String::from("?"),
                };
                if what == "table" || what == "view" || what == "materialized-view" {
                    let mut parts: Vec<&str> = name.split('.').collect();
                    let rel = parts.pop().unwrap_or_default().to_owned();
                    let t = TableName {
                        schema: parts.last().map(|s| (*s).to_owned()),
                        name: rel,
                    };
                    if !out.writes.contains(&t) {
                        out.writes.push(t);
                    }
                }
                out.drops.push(format!("{what} {name}"));
            }
        }
        NodeEnum::AlterTableStmt(a) => {
            let rel = a
                .relation
                .as_ref()
                .map(|r| r.relname.clone())
                .unwrap_or_default();
            for c in &a.cmds {
                if let Some(NodeEnum::AlterTableCmd(c)) = c.node.as_ref() {
                    match AlterTableType::try_from(c.subtype) {
                        Ok(AlterTableType::AtDropColumn) => {
                            out.drops.push(format!("column {rel}.{}", c.name))
                        }
                        Ok(AlterTableType::AtDropConstraint) => {
                            out.drops.push(format!("constraint {rel}.{}", c.name))
                        }
                        Ok(AlterTableType::AtDropExpression) => {
                            out.drops.push(format!("expression {rel}.{}", c.name))
                        }
                        Ok(AlterTableType::AtDropIdentity) => {
                            out.drops.push(format!("identity {rel}.{}", c.name))
                        }
                        _ => {}
                    }
                }
            }
        }
        NodeEnum::CopyStmt(c) if c.is_program => out.copy_program = Some(c.filename.clone()),
        NodeEnum::VariableSetStmt(v) => {
            out.setting = Some(if v.name.is_empty() {
                "all".into()
            } else {
                v.name.to_lowercase()
            })
        }
        NodeEnum::ExecuteStmt(e) => out.executes = Some(e.name.clone()),
        NodeEnum::PrepareStmt(p) => {
            out.prepares = Some(p.name.clone());
            if let Some(q) = node(&p.query) {
                let mut inner = facts("", q);
                out.opaque.append(&mut inner.opaque);
                out.drops.append(&mut inner.drops);
                if out.copy_program.is_none() {
                    out.copy_program = inner.copy_program;
                }
            }
        }
        NodeEnum::ExplainStmt(e) => {
            if explain_analyze(e)
                && let Some(q) = node(&e.query)
            {
                let mut inner = facts("", q);
                out.opaque.append(&mut inner.opaque);
            }
        }
        _ => {}
    }
}

/// `OBJECT_MATVIEW` → `materialized-view`, `OBJECT_TABLE` → `table`.
fn object_type(name: &str) -> String {
    let bare = name.strip_prefix("OBJECT_").unwrap_or(name).to_lowercase();
    match bare.as_str() {
        "matview" => "materialized-view".into(),
        other => other.replace('_', "-"),
    }
}

fn names(parts: &[protobuf::Node]) -> String {
    parts
        .iter()
        .filter_map(|p| match p.node.as_ref() {
            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn def_text(options: &[protobuf::Node], key: &str) -> Option<String> {
    options.iter().find_map(|o| match o.node.as_ref() {
        Some(NodeEnum::DefElem(d)) if d.defname == key => {
            match d.arg.as_ref().and_then(|a| a.node.as_ref()) {
                Some(NodeEnum::String(s)) => Some(s.sval.to_lowercase()),
                _ => None,
            }
        }
        _ => None,
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
