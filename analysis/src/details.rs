//! Statement details outside the data flow: opaque code, what DROP / ALTER … DROP removes,
//! COPY PROGRAM, the setting a SET or `set_config` changes, PREPARE / EXECUTE names.

use pg_query::NodeEnum;
use pg_query::protobuf::{self, AlterTableType, ObjectType};

use crate::model::{OpaqueCode, StatementFacts, TableName};
use crate::statement::{explain_analyze, facts, node};

/// Opaque code, drops, COPY PROGRAM, settings, PREPARE/EXECUTE names.
pub(crate) fn details(n: &NodeEnum, out: &mut StatementFacts) {
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
                        Ok(AlterTableType::AtAlterColumnType) => {
                            out.drops.push(format!("column type {rel}.{}", c.name))
                        }
                        Ok(AlterTableType::AtDropIdentity) => {
                            out.drops.push(format!("identity {rel}.{}", c.name))
                        }
                        _ => {}
                    }
                }
            }
        }
        NodeEnum::CopyStmt(c) if c.is_program => {
            out.server_copy = Some(format!("program {}", c.filename))
        }
        NodeEnum::CopyStmt(c) if !c.filename.is_empty() => {
            out.server_copy = Some(format!("file {}", c.filename))
        }
        NodeEnum::VariableSetStmt(v) => setting(v, out),
        NodeEnum::ListenStmt(l) => out.channel = Some(l.conditionname.clone()),
        // `UNLISTEN *` (every channel) is the empty name, which no channel has: a quoted
        // `"*"` is a channel of its own.
        NodeEnum::UnlistenStmt(u) if u.conditionname.is_empty() => {
            out.channel = Some(String::new())
        }
        NodeEnum::UnlistenStmt(u) => out.channel = Some(u.conditionname.clone()),
        // `ALTER ROLE/DATABASE … SET` changes the setting for every later session of that
        // role or database, including the proxy's own server connections.
        NodeEnum::AlterRoleSetStmt(a) => {
            if let Some(v) = &a.setstmt {
                setting(v, out);
            }
        }
        NodeEnum::AlterDatabaseSetStmt(a) => {
            if let Some(v) = &a.setstmt {
                setting(v, out);
            }
        }
        NodeEnum::ExecuteStmt(e) => out.executes = Some(e.name.clone()),
        NodeEnum::PrepareStmt(p) => {
            out.prepares = Some(p.name.clone());
            if let Some(q) = node(&p.query) {
                let mut inner = facts("", q);
                out.opaque.append(&mut inner.opaque);
                out.drops.append(&mut inner.drops);
                if out.server_copy.is_none() {
                    out.server_copy = inner.server_copy;
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

fn setting(v: &protobuf::VariableSetStmt, out: &mut StatementFacts) {
    out.setting = Some(if v.name.is_empty() {
        "all".into()
    } else {
        v.name.to_lowercase()
    });
    out.setting_value = v.args.first().and_then(|a| constant_text(a.node.as_ref()?));
}

/// The text of a constant (`'UTF8'`, `on`, `42`).
fn constant_text(n: &NodeEnum) -> Option<String> {
    use pg_query::protobuf::a_const::Val;
    match n {
        NodeEnum::AConst(c) => match c.val.as_ref()? {
            Val::Sval(s) => Some(s.sval.clone()),
            Val::Ival(i) => Some(i.ival.to_string()),
            Val::Fval(f) => Some(f.fval.clone()),
            Val::Boolval(b) => Some(b.boolval.to_string()),
            Val::Bsval(b) => Some(b.bsval.clone()),
        },
        NodeEnum::String(s) => Some(s.sval.clone()),
        _ => None,
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

/// The setting a `set_config(name, …)` call changes (`set_config('role', …)` is `SET ROLE`);
/// `(not a constant)` when the name is computed. Rare, so the tree is searched generically.
pub(crate) fn set_config_target(n: &NodeEnum, functions: &[String]) -> Option<String> {
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
                    // A setting the kernel or a policy cares about wins over a harmless one.
                    let sensitive = matches!(
                        setting.as_str(),
                        "(not a constant)"
                            | "role"
                            | "session_authorization"
                            | "client_encoding"
                            | "standard_conforming_strings"
                    );
                    if found.is_none() || sensitive {
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
