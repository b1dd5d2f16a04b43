//! WHERE and LIMIT facts: whether a filter keeps every row, its top-level `column = value`
//! conjuncts, and the row limit of a query block.

use pg_query::NodeEnum;
use pg_query::protobuf::{self, BoolExprType, LimitOption, a_const};

use crate::model::{Equality, Limit, WhereFacts};
use crate::visit;

/// The facts of an optional WHERE clause.
pub fn where_facts(clause: Option<&protobuf::Node>) -> WhereFacts {
    let Some(expr) = clause.and_then(|n| n.node.as_ref()) else {
        return WhereFacts::default();
    };
    let mut equalities = Vec::new();
    conjuncts(expr, &mut equalities);
    WhereFacts {
        present: true,
        constant: keeps_every_row(expr),
        equalities,
    }
}

/// Whether a filter keeps every row (or none): it references no column at all, compares an
/// expression with itself, or is an OR with such a branch. Constant conditions count even
/// when false — a DELETE that deletes nothing needs no exception.
fn keeps_every_row(expr: &NodeEnum) -> bool {
    if visit::walk(expr).column_refs == 0 {
        return true;
    }
    match expr {
        NodeEnum::BoolExpr(b) => {
            let args = b.args.iter().filter_map(|a| a.node.as_ref());
            match BoolExprType::try_from(b.boolop) {
                Ok(BoolExprType::OrExpr) => {
                    args.clone().any(keeps_every_row) || null_or_not_null(&b.args)
                }
                Ok(BoolExprType::AndExpr) => args.clone().all(keeps_every_row),
                // `NOT (x <> x)`.
                Ok(BoolExprType::NotExpr) => match b.args.first().and_then(|a| a.node.as_ref()) {
                    Some(NodeEnum::AExpr(a)) => {
                        let same = match (&a.lexpr, &a.rexpr) {
                            (Some(l), Some(r)) => l.node.is_some() && same_expr(&l.node, &r.node),
                            _ => false,
                        };
                        same && matches!(operator(a).as_deref(), Some("<>" | "!=" | "<" | ">"))
                    }
                    _ => false,
                },
                _ => false,
            }
        }
        NodeEnum::AExpr(a) => {
            // `x = x`, `x >= x`, `x <= x` and `x IS NOT DISTINCT FROM x` filter nothing but NULLs.
            let op = operator(a);
            let same = match (&a.lexpr, &a.rexpr) {
                (Some(l), Some(r)) => l.node.is_some() && same_expr(&l.node, &r.node),
                _ => false,
            };
            same && (matches!(op.as_deref(), Some("=" | ">=" | "<="))
                || a.kind == protobuf::AExprKind::AexprNotDistinct as i32)
        }
        // `(…) IS TRUE` / `IS NOT FALSE` of a condition that keeps every row.
        NodeEnum::BooleanTest(t) => t
            .arg
            .as_ref()
            .and_then(|a| a.node.as_ref())
            .is_some_and(keeps_every_row),
        _ => false,
    }
}

/// `x IS NULL OR x IS NOT NULL` (in any order, among other branches).
fn null_or_not_null(args: &[protobuf::Node]) -> bool {
    let tests: Vec<(&Option<NodeEnum>, i32)> = args
        .iter()
        .filter_map(|a| match a.node.as_ref() {
            Some(NodeEnum::NullTest(t)) => Some((&t.arg.as_ref()?.node, t.nulltesttype)),
            _ => None,
        })
        .collect();
    tests.iter().any(|(x, kind)| {
        tests
            .iter()
            .any(|(y, other)| kind != other && same_expr(x, y))
    })
}

/// Structural equality ignoring source locations (`coalesce(id, 0)` on both sides).
fn same_expr(a: &Option<NodeEnum>, b: &Option<NodeEnum>) -> bool {
    match (a, b) {
        (Some(NodeEnum::ColumnRef(x)), Some(NodeEnum::ColumnRef(y))) => x.fields == y.fields,
        (Some(x), Some(y)) => match (serde_json::to_value(x), serde_json::to_value(y)) {
            (Ok(mut x), Ok(mut y)) => {
                drop_locations(&mut x);
                drop_locations(&mut y);
                x == y
            }
            _ => false,
        },
        _ => false,
    }
}

fn drop_locations(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("location");
            m.values_mut().for_each(drop_locations);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(drop_locations),
        _ => {}
    }
}

fn operator(a: &protobuf::AExpr) -> Option<String> {
    if a.kind != protobuf::AExprKind::AexprOp as i32 {
        return None;
    }
    match a.name.last().and_then(|n| n.node.as_ref()) {
        Some(NodeEnum::String(s)) => Some(s.sval.clone()),
        _ => None,
    }
}

/// Collects the top-level AND conjuncts of the form `column = constant or parameter`.
fn conjuncts(expr: &NodeEnum, out: &mut Vec<Equality>) {
    match expr {
        NodeEnum::BoolExpr(b) if b.boolop == BoolExprType::AndExpr as i32 => {
            for arg in b.args.iter().filter_map(|a| a.node.as_ref()) {
                conjuncts(arg, out);
            }
        }
        NodeEnum::AExpr(a) if operator(a).as_deref() == Some("=") => {
            let (Some(l), Some(r)) = (
                a.lexpr.as_ref().and_then(|n| n.node.as_ref()),
                a.rexpr.as_ref().and_then(|n| n.node.as_ref()),
            ) else {
                return;
            };
            let pair = match (column(l), value(r)) {
                (Some(c), Some(p)) => Some((c, p)),
                _ => column(r).zip(value(l)),
            };
            if let Some((column, parameter)) = pair {
                out.push(Equality { column, parameter });
            }
        }
        _ => {}
    }
}

/// The column name of a plain column reference.
fn column(n: &NodeEnum) -> Option<String> {
    let NodeEnum::ColumnRef(c) = n else {
        return None;
    };
    match c.fields.last().and_then(|f| f.node.as_ref()) {
        Some(NodeEnum::String(s)) => Some(s.sval.clone()),
        _ => None,
    }
}

/// `Some(is_parameter)` when `n` is a non-NULL constant or a `$n` parameter (optionally cast).
fn value(n: &NodeEnum) -> Option<bool> {
    match n {
        NodeEnum::AConst(c) if !c.isnull => Some(false),
        NodeEnum::ParamRef(_) => Some(true),
        NodeEnum::TypeCast(t) => value(t.arg.as_ref()?.node.as_ref()?),
        _ => None,
    }
}

/// The LIMIT of a SELECT level.
pub fn limit(select: &protobuf::SelectStmt) -> Limit {
    let Some(count) = select.limit_count.as_ref().and_then(|n| n.node.as_ref()) else {
        return Limit::None;
    };
    if select.limit_option == LimitOption::Undefined as i32 {
        return Limit::None;
    }
    match count {
        NodeEnum::AConst(c) if c.isnull => Limit::All,
        NodeEnum::AConst(c) => match &c.val {
            Some(a_const::Val::Ival(i)) => Limit::Count(i64::from(i.ival)),
            Some(a_const::Val::Fval(f)) => f
                .fval
                .parse::<f64>()
                .map_or(Limit::Expression, |v| Limit::Count(v as i64)),
            _ => Limit::Expression,
        },
        _ => Limit::Expression,
    }
}

/// Aggregate functions: a level whose every output is one of these (not as a window
/// function) and that has no GROUP BY returns at most one row.
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "bit_xor",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "corr",
    "covar_pop",
    "covar_samp",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "array_agg",
    "json_agg",
    "jsonb_agg",
    "string_agg",
    "xmlagg",
    "json_object_agg",
    "jsonb_object_agg",
    "range_agg",
    "range_intersect_agg",
];

/// Whether a SELECT level returns at most one row whatever its tables hold: no GROUP BY, no
/// window, and every output an aggregate call (`SELECT count(*) FROM events`). Anything else
/// (a constant beside the aggregate, a window function, a set-returning call) is not
/// recognised, which only makes the level look unbounded.
pub fn one_row(select: &protobuf::SelectStmt) -> bool {
    if !select.group_clause.is_empty()
        || !select.window_clause.is_empty()
        || select.target_list.is_empty()
        || !select.values_lists.is_empty()
    {
        return false;
    }
    select.target_list.iter().all(|t| {
        let Some(NodeEnum::ResTarget(r)) = t.node.as_ref() else {
            return false;
        };
        let Some(NodeEnum::FuncCall(f)) = r.val.as_ref().and_then(|v| v.node.as_ref()) else {
            return false;
        };
        let name = f.funcname.last().and_then(|n| match n.node.as_ref() {
            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        });
        let qualified_elsewhere = f.funcname.len() > 1
            && !matches!(
                f.funcname.first().and_then(|n| n.node.as_ref()),
                Some(NodeEnum::String(s)) if s.sval == "pg_catalog"
            );
        f.over.is_none() && !qualified_elsewhere && name.is_some_and(|n| AGGREGATES.contains(&n))
    })
}

/// Whether a MERGE source is restricted to rows a constant names: a VALUES list, a SELECT
/// without FROM, or a subquery whose WHERE has a `column = constant or $n` conjunct or whose
/// LIMIT is a number. A table, or a subquery over one without such a filter, is not: joined
/// on its key it matches every target row.
pub fn restricts_source(source: Option<&protobuf::Node>) -> bool {
    let Some(NodeEnum::RangeSubselect(sub)) = source.and_then(|n| n.node.as_ref()) else {
        return false;
    };
    let Some(NodeEnum::SelectStmt(s)) = sub.subquery.as_ref().and_then(|q| q.node.as_ref()) else {
        return false;
    };
    if !s.values_lists.is_empty() || (s.from_clause.is_empty() && s.larg.is_none()) {
        return true;
    }
    if matches!(limit(s), Limit::Count(_)) {
        return true;
    }
    let facts = where_facts(s.where_clause.as_deref());
    !facts.constant && !facts.equalities.is_empty()
}
