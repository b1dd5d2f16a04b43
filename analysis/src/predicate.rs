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
