//! What the analysis says about SQL text: plain data, no parser types, so the kernel can hand
//! it to components and cache it.

/// A table (or view) as a statement names it; identifiers are as PostgreSQL folds them
/// (lower case unless quoted).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// Schema, when the statement qualifies the name.
    pub schema: Option<String>,
    /// Relation name.
    pub name: String,
}

impl TableName {
    /// `schema.name`, qualified with the first usable schema of `search_path` when the
    /// statement left it unqualified (`$user`, `pg_catalog` and `pg_temp` entries are
    /// skipped: without the catalog the kernel cannot know whether such a schema holds the
    /// table; `public` when nothing is left).
    pub fn resolved(&self, search_path: &[String]) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => {
                let schema = search_path
                    .iter()
                    .map(|s| s.trim())
                    .find(|s| {
                        !s.is_empty()
                            && *s != "$user"
                            && *s != "\"$user\""
                            && *s != "pg_catalog"
                            && !s.starts_with("pg_temp")
                    })
                    .unwrap_or("public");
                format!("{schema}.{}", self.name)
            }
        }
    }
}

/// What a statement does, for routing and for components that only need the gist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementClass {
    /// Reads only: SELECT/VALUES/TABLE/SHOW/EXPLAIN without ANALYZE, with nothing that
    /// writes, locks or changes session state hidden inside.
    Read,
    /// Writes data, locks rows, or calls a function that changes state (`nextval`,
    /// `set_config`, advisory locks, …).
    Write,
    /// Changes the schema or privileges.
    Ddl,
    /// Transaction control.
    Transaction,
    /// Session commands (SET, RESET, DISCARD, LISTEN, PREPARE, DEALLOCATE, …).
    Session,
    /// Anything else (DO, CALL, VACUUM, EXECUTE, …): treated like a write for routing.
    Other,
}

/// What a data-modifying (sub-)statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModificationKind {
    /// INSERT (or a MERGE `THEN INSERT` action).
    Insert,
    /// UPDATE (or a MERGE `THEN UPDATE` action).
    Update,
    /// DELETE (or a MERGE `THEN DELETE` action).
    Delete,
    /// TRUNCATE.
    Truncate,
    /// COPY … FROM (rows loaded into the table).
    CopyFrom,
}

/// Where a data-modifying statement sits inside the statement the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// It is the statement.
    TopLevel,
    /// A data-modifying CTE (`WITH d AS (DELETE …)`).
    Cte,
    /// The target of `EXPLAIN ANALYZE` (which runs it).
    ExplainAnalyze,
    /// An action of a MERGE.
    Merge,
    /// The body of a `PREPARE` (runs on `EXECUTE`).
    Prepare,
    /// The query of a `COPY (…) TO`.
    Copy,
    /// The statement of a client's prepared statement that `EXECUTE` runs.
    Execute,
}

/// The WHERE clause of a DELETE, UPDATE or query block, as far as a policy needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct WhereFacts {
    /// A WHERE clause (or MERGE join condition) exists.
    pub present: bool,
    /// It keeps every row: it references no column of any table (`1=1`, `true`, `now() >
    /// '2000-01-01'`), compares a column with itself, or is an OR with such a branch.
    pub constant: bool,
    /// Top-level AND conjuncts of the form `column = constant` or `column = $n`: the column
    /// name (last part, as folded) and whether the value is a parameter.
    pub equalities: Vec<Equality>,
}

/// One `column = value` conjunct.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Equality {
    /// Column name (without qualifier).
    pub column: String,
    /// The value is a `$n` parameter (else a constant).
    pub parameter: bool,
}

/// A data-modifying statement wherever it hides.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Modification {
    /// What it does.
    pub kind: ModificationKind,
    /// The table it changes.
    pub table: TableName,
    /// Its WHERE (for MERGE: the join condition; for INSERT/TRUNCATE/COPY: absent).
    pub filter: WhereFacts,
    /// Where it sits.
    pub via: Via,
}

/// LIMIT of a query block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// No LIMIT / FETCH FIRST.
    None,
    /// `LIMIT ALL` or `LIMIT NULL` (no limit at all).
    All,
    /// A constant row count; 1 for a level that returns at most one row without a LIMIT
    /// (only aggregates, no GROUP BY: `SELECT count(*) FROM events`).
    Count(i64),
    /// A parameter or expression.
    Expression,
}

/// One SELECT/UPDATE/DELETE level of a statement (set operations, subqueries and CTEs are
/// levels of their own): the tables it reads directly and its filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueryBlock {
    /// Tables in this level's FROM/USING (and the target of an UPDATE/DELETE).
    pub tables: Vec<TableName>,
    /// This level's WHERE.
    pub filter: WhereFacts,
    /// This level's LIMIT (SELECT only).
    pub limit: Limit,
}

/// Code the kernel cannot see into.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpaqueCode {
    /// `do`, `create-function`, `create-procedure`, `call`, `create-trigger` or `create-rule`.
    pub kind: String,
    /// The function or procedure name, when there is one.
    pub name: Option<String>,
    /// The language, when declared.
    pub language: Option<String>,
}

/// Facts about one statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatementFacts {
    /// The statement's own text (one statement of a multi-statement message; for an
    /// analysis shared by texts of one shape, that of the first such text).
    pub text: String,
    /// The parser node kind in kebab case without `Stmt`: `select`, `delete`, `merge`,
    /// `drop`, `truncate`, `alter-table`, `variable-set`, `create-function`, `do`, …
    pub kind: String,
    /// Class for routing.
    pub class: StatementClass,
    /// Tables read (CTE names excluded).
    pub reads: Vec<TableName>,
    /// Tables written or changed (DML targets, DDL targets, COPY FROM).
    pub writes: Vec<TableName>,
    /// Every data-modifying (sub-)statement.
    pub modifications: Vec<Modification>,
    /// Functions called (qualified when written qualified), lower case; SQL value functions
    /// (`CURRENT_TIMESTAMP`, `LOCALTIME`, `CURRENT_USER`, …) as `sql_value_function`.
    pub functions: Vec<String>,
    /// Code the kernel cannot analyse.
    pub opaque: Vec<OpaqueCode>,
    /// The statement's query levels, the outermost first.
    pub blocks: Vec<QueryBlock>,
    /// Locking clauses (`for update`, `for no key update`, `for share`, `for key share`).
    pub locking: Vec<String>,
    /// What DROP / ALTER … DROP removes: object type and name (`table public.users`,
    /// `column users.email`).
    pub drops: Vec<String>,
    /// COPY to or from the server itself: `program <command>` or `file <path>`.
    pub server_copy: Option<String>,
    /// The setting a SET/RESET or `set_config` changes (`role`, `session_authorization`,
    /// `search_path`, …).
    pub setting: Option<String>,
    /// The value it is set to, when a constant (`None` for RESET, DEFAULT or a computed
    /// value).
    pub setting_value: Option<String>,
    /// `EXECUTE name`: the prepared statement it runs.
    pub executes: Option<String>,
    /// `PREPARE name AS …`: the name.
    pub prepares: Option<String>,
    /// Every SQL-level prepared statement name the statement prepares, executes or
    /// deallocates, wherever it appears (`EXPLAIN EXECUTE`, `CREATE TABLE … AS EXECUTE`).
    pub statement_names: Vec<String>,
    /// `LISTEN`/`UNLISTEN`: the channel as the server names it (empty for `UNLISTEN *`, every
    /// channel; a quoted `"*"` is a channel of its own).
    pub channel: Option<String>,
}

/// The analysis of SQL text: its statements, or why PostgreSQL's grammar rejects it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Analysis {
    /// The statements, in order (empty when the text has none or does not parse).
    pub statements: Vec<StatementFacts>,
    /// PostgreSQL's parse error, when the grammar rejects the text.
    pub error: Option<String>,
    /// SHA-256 (hex) of the text with constants replaced by placeholders: equal for
    /// statements that differ only in constants; empty when the text does not parse.
    pub fingerprint: String,
}
