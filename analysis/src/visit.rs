//! A complete walk of a parse tree. The tree's types derive `serde::Serialize`, so a
//! serializer that records instead of writing visits every field of every node — including
//! node types this crate never names — without a hand-written (and inevitably incomplete)
//! walker. It collects what must not be missed wherever it hides: function calls, relation
//! names, CTE names and data-modifying statement nodes.

use serde::ser::{self, Serialize};

use crate::model::TableName;

/// What the walk found.
#[derive(Debug, Default)]
pub struct Found {
    /// The kind of the first node met (the statement's own node type).
    pub first_node: Option<&'static str>,
    /// Function names, lower case, dotted when qualified.
    pub functions: Vec<String>,
    /// Every relation name (RangeVar), with whether it is the target of a DML statement,
    /// a COPY, a TRUNCATE/LOCK or a DDL statement.
    pub relations: Vec<(TableName, bool)>,
    /// Names of CTEs.
    pub cte_names: Vec<String>,
    /// INSERT/UPDATE/DELETE/MERGE nodes met, anywhere.
    pub modifying_nodes: usize,
    /// A column reference was met.
    pub column_refs: usize,
    /// A locking clause was met.
    pub locking: usize,
    /// Names of SQL-level prepared statements prepared, executed or deallocated, anywhere
    /// (`EXPLAIN EXECUTE`, `CREATE TABLE … AS EXECUTE` too).
    pub statement_names: Vec<String>,
}

/// Walks `node` (any parse-tree value) and returns what it found.
pub fn walk<T: Serialize + ?Sized>(node: &T) -> Found {
    let mut w = Walker::default();
    // The walker never fails; an error would only mean a type it cannot see into.
    let _ = node.serialize(&mut w);
    w.found
}

/// One open struct: its name and the field being serialized.
#[derive(Clone, Copy)]
struct Frame {
    name: &'static str,
    field: &'static str,
}

#[derive(Default)]
struct Walker {
    found: Found,
    stack: Vec<Frame>,
    /// The function name being assembled (inside `FuncCall.funcname`).
    func: Option<String>,
    /// The RangeVar being assembled.
    range: Option<(String, String, bool)>,
}

/// Structs whose `relation`/`relations` fields name the table they change.
const TARGETS: &[&str] = &[
    "InsertStmt",
    "UpdateStmt",
    "DeleteStmt",
    "MergeStmt",
    "TruncateStmt",
    "AlterTableStmt",
    "CreateStmt",
    "IndexStmt",
    "CreateTrigStmt",
    "RuleStmt",
    "LockStmt",
    "VacuumRelation",
    "ClusterStmt",
    "RefreshMatViewStmt",
    "ReindexStmt",
    "CreatePolicyStmt",
    "AlterPolicyStmt",
    "RenameStmt",
    "GrantStmt",
    "CommentStmt",
    "ViewStmt",
    "IntoClause",
];

impl Walker {
    /// The innermost struct other than the generic `Node`/`List` wrappers and `String`.
    fn owner(&self) -> Option<Frame> {
        self.stack
            .iter()
            .rev()
            .find(|f| !matches!(f.name, "Node" | "List" | "String"))
            .copied()
    }

    fn string(&mut self, v: &str) {
        let Some(top) = self.stack.last().copied() else {
            return;
        };
        match (top.name, top.field) {
            ("String", "sval") => {
                if let (Some(owner), Some(func)) = (self.owner(), self.func.as_mut())
                    && owner.name == "FuncCall"
                    && owner.field == "funcname"
                {
                    if !func.is_empty() {
                        func.push('.');
                    }
                    func.push_str(&v.to_lowercase());
                }
            }
            ("RangeVar", "schemaname") => {
                if let Some(r) = self.range.as_mut() {
                    r.0 = v.to_owned();
                }
            }
            ("RangeVar", "relname") => {
                if let Some(r) = self.range.as_mut() {
                    r.1 = v.to_owned();
                }
            }
            ("CommonTableExpr", "ctename") => self.found.cte_names.push(v.to_owned()),
            ("ExecuteStmt" | "PrepareStmt" | "DeallocateStmt", "name") => {
                self.found.statement_names.push(v.to_owned())
            }
            _ => {}
        }
    }

    fn open(&mut self, name: &'static str) {
        match name {
            "FuncCall" => self.func = Some(String::new()),
            "RangeVar" => {
                let target = self.owner().is_some_and(|o| {
                    (o.field == "relation" || o.field == "relations" || o.field == "rel")
                        && TARGETS.contains(&o.name)
                        || (o.name == "CopyStmt" && o.field == "relation")
                });
                self.range = Some((String::new(), String::new(), target));
            }
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                self.found.modifying_nodes += 1
            }
            "ColumnRef" => self.found.column_refs += 1,
            // CURRENT_TIMESTAMP, CURRENT_DATE, LOCALTIME, CURRENT_USER, …: keywords, not
            // calls, but they read the clock or the role all the same.
            "SqlValueFunction" => self.found.functions.push(SQL_VALUE_FUNCTION.to_owned()),
            "LockingClause" => self.found.locking += 1,
            _ => {}
        }
        if self.found.first_node.is_none() && name != "Node" && name != "RawStmt" {
            self.found.first_node = Some(name);
        }
        self.stack.push(Frame { name, field: "" });
    }

    fn close(&mut self) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        match frame.name {
            // A FuncCall's name is complete once its `funcname` field is done; nested calls
            // in its arguments start their own.
            "RangeVar" => {
                if let Some((schema, name, target)) = self.range.take() {
                    let schema = (!schema.is_empty()).then_some(schema);
                    self.found
                        .relations
                        .push((TableName { schema, name }, target));
                }
            }
            "FuncCall" => self.finish_func(),
            _ => {}
        }
    }

    fn finish_func(&mut self) {
        if let Some(f) = self.func.take()
            && !f.is_empty()
        {
            self.found.functions.push(f);
        }
    }

    fn field(&mut self, key: &'static str) {
        if let Some(top) = self.stack.last_mut() {
            // Leaving `funcname`: the name is complete before the arguments are walked.
            if top.name == "FuncCall" && top.field == "funcname" {
                top.field = key;
                self.finish_func();
                return;
            }
            top.field = key;
        }
    }
}

/// How `functions` lists a SQL value function (`CURRENT_TIMESTAMP`, `CURRENT_USER`, …).
pub const SQL_VALUE_FUNCTION: &str = "sql_value_function";

/// The walk cannot fail; this error type only satisfies serde.
#[derive(Debug)]
pub struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("walk stopped")
    }
}

impl std::error::Error for Never {}

impl ser::Error for Never {
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        Never
    }
}

type R = Result<(), Never>;

impl ser::Serializer for &mut Walker {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, _v: bool) -> R {
        Ok(())
    }
    fn serialize_i8(self, _v: i8) -> R {
        Ok(())
    }
    fn serialize_i16(self, _v: i16) -> R {
        Ok(())
    }
    fn serialize_i32(self, _v: i32) -> R {
        Ok(())
    }
    fn serialize_i64(self, _v: i64) -> R {
        Ok(())
    }
    fn serialize_u8(self, _v: u8) -> R {
        Ok(())
    }
    fn serialize_u16(self, _v: u16) -> R {
        Ok(())
    }
    fn serialize_u32(self, _v: u32) -> R {
        Ok(())
    }
    fn serialize_u64(self, _v: u64) -> R {
        Ok(())
    }
    fn serialize_f32(self, _v: f32) -> R {
        Ok(())
    }
    fn serialize_f64(self, _v: f64) -> R {
        Ok(())
    }
    fn serialize_char(self, _v: char) -> R {
        Ok(())
    }
    fn serialize_str(self, v: &str) -> R {
        self.string(v);
        Ok(())
    }
    fn serialize_bytes(self, _v: &[u8]) -> R {
        Ok(())
    }
    fn serialize_none(self) -> R {
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> R {
        value.serialize(self)
    }
    fn serialize_unit(self) -> R {
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> R {
        Ok(())
    }
    fn serialize_unit_variant(self, _n: &'static str, _i: u32, _v: &'static str) -> R {
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _n: &'static str, value: &T) -> R {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        value: &T,
    ) -> R {
        value.serialize(self)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _n: &'static str, _len: usize) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _n: &'static str,
        _i: u32,
        _v: &'static str,
        _len: usize,
    ) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Self, Never> {
        self.open(name);
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _n: &'static str,
        _i: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self, Never> {
        self.open(variant);
        Ok(self)
    }
}

impl ser::SerializeSeq for &mut Walker {
    type Ok = ();
    type Error = Never;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> R {
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        Ok(())
    }
}

impl ser::SerializeTuple for &mut Walker {
    type Ok = ();
    type Error = Never;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> R {
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for &mut Walker {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> R {
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for &mut Walker {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> R {
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        Ok(())
    }
}

impl ser::SerializeMap for &mut Walker {
    type Ok = ();
    type Error = Never;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> R {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> R {
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Walker {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> R {
        self.field(key);
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        self.close();
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Walker {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> R {
        self.field(key);
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        self.close();
        Ok(())
    }
}
