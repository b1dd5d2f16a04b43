//! A fake host for native unit tests of component logic: set the nodes the `topology`
//! interface reports and the session `context` reports, inspect the key/value store and the
//! log lines.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::Call;
use crate::host::{Level, Node};

/// The session [`crate::context`] reports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Session {
    /// Login user.
    pub user: String,
    /// Database.
    pub database: String,
    /// `application_name`.
    pub application_name: String,
    /// Client address.
    pub client_addr: String,
    /// Tenant.
    pub tenant: Option<String>,
    /// Attributes.
    pub attributes: Vec<(String, String)>,
}

/// What the fake host holds (one per test thread).
#[derive(Debug, Default, Clone)]
pub struct FakeHost {
    /// Nodes reported by `host::nodes()`.
    pub nodes: Vec<Node>,
    /// The key/value store.
    pub kv: HashMap<String, Vec<u8>>,
    /// Log lines written by the component.
    pub logs: Vec<(Level, String)>,
    /// What `host::now_ms()` returns.
    pub now_ms: u64,
    /// What `context` reports about the session.
    pub session: Session,
    /// What `context::result_rows()` returns in PostQuery.
    pub result_rows: Option<crate::RowSet>,
    /// The session's `search_path`, for resolving table names.
    pub search_path: Vec<String>,
    /// Hooks the component declared pure.
    pub pure: crate::Hooks,
    /// What the component asked through `context::cache_result` (reset it between calls).
    pub cache_ttl_ms: Option<u32>,
    /// What `host::document(name)` returns.
    pub documents: HashMap<String, Vec<u8>>,
    /// The documents the component asked to refresh, in order.
    pub refreshed: Vec<String>,
}

impl Default for crate::Hooks {
    fn default() -> Self {
        crate::Hooks::empty()
    }
}

thread_local! {
    static FAKE: RefCell<FakeHost> = RefCell::new(FakeHost::default());
}

/// Runs `f` on this thread's fake host.
pub fn with_fake<R>(f: impl FnOnce(&mut FakeHost) -> R) -> R {
    FAKE.with(|h| f(&mut h.borrow_mut()))
}

/// Replaces this thread's fake host.
pub fn reset(host: FakeHost) {
    FAKE.with(|h| *h.borrow_mut() = host);
}

/// A node for [`FakeHost::nodes`].
pub fn node(name: &str, role: &str, tags: &[&str], lag_bytes: Option<u64>) -> Node {
    Node {
        name: name.to_owned(),
        role: role.to_owned(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        healthy: true,
        lag_bytes,
    }
}

/// Makes `context` report a session of user `app` with this `application_name`, and returns
/// its call outside any transaction.
pub fn session(application_name: &str) -> Call {
    with_fake(|h| {
        h.session = Session {
            user: "app".into(),
            database: "app".into(),
            application_name: application_name.to_owned(),
            client_addr: "127.0.0.1:50000".into(),
            tenant: None,
            attributes: Vec::new(),
        }
    });
    Call {
        session_id: 1,
        in_transaction: false,
    }
}

/// The [`crate::Statement`] the kernel passes for `text`.
#[cfg(not(target_arch = "wasm32"))]
pub fn statement(text: &str) -> crate::Statement {
    use helios_analysis::StatementClass as C;
    let a = helios_analysis::analyze(text);
    let class = match a.statements.first().map(|s| s.class) {
        Some(C::Read) if a.statements.iter().all(|s| s.class == C::Read) => {
            crate::StatementClass::Read
        }
        Some(C::Ddl) => crate::StatementClass::Ddl,
        Some(C::Transaction) => crate::StatementClass::Transaction,
        Some(C::Session) => crate::StatementClass::Session,
        Some(C::Write | C::Read) => crate::StatementClass::Write,
        Some(C::Other) | None => crate::StatementClass::Other,
    };
    crate::Statement {
        sql: text.to_owned(),
        class,
        fingerprint: u64::from_str_radix(a.fingerprint.get(..16).unwrap_or("0"), 16).unwrap_or(0),
    }
}

/// What `context::analysis` reports for `sql` (its first statement), as the kernel builds it.
#[cfg(not(target_arch = "wasm32"))]
pub fn analyse(sql: &str, search_path: &[String]) -> crate::StatementAnalysis {
    use crate::{
        Equality, Modification, ModificationKind as K, OpaqueCode, QueryBlock, RowLimit,
        StatementAnalysis, Via as V, WhereFacts,
    };
    use helios_analysis as h;
    let a = h::analyze(sql);
    let resolve = |ts: &[h::TableName]| ts.iter().map(|t| t.resolved(search_path)).collect();
    let filter = |w: &h::WhereFacts| WhereFacts {
        present: w.present,
        constant: w.constant,
        equalities: w
            .equalities
            .iter()
            .map(|e| Equality {
                column: e.column.clone(),
                parameter: e.parameter,
            })
            .collect(),
    };
    let Some(s) = a.statements.first() else {
        return StatementAnalysis {
            kind: if a.error.is_none() {
                "empty".into()
            } else {
                String::new()
            },
            reads: Vec::new(),
            writes: Vec::new(),
            modifications: Vec::new(),
            functions: Vec::new(),
            opaque: Vec::new(),
            blocks: Vec::new(),
            locking: Vec::new(),
            drops: Vec::new(),
            server_copy: None,
            setting: None,
            executes: None,
            parse_error: a.error,
        };
    };
    StatementAnalysis {
        kind: s.kind.clone(),
        reads: resolve(&s.reads),
        writes: resolve(&s.writes),
        modifications: s
            .modifications
            .iter()
            .map(|m| Modification {
                kind: match m.kind {
                    h::ModificationKind::Insert => K::Insert,
                    h::ModificationKind::Update => K::Update,
                    h::ModificationKind::Delete => K::Delete,
                    h::ModificationKind::Truncate => K::Truncate,
                    h::ModificationKind::CopyFrom => K::CopyFrom,
                },
                table: m.table.resolved(search_path),
                filter: filter(&m.filter),
                via: match m.via {
                    h::Via::TopLevel => V::TopLevel,
                    h::Via::Cte => V::Cte,
                    h::Via::ExplainAnalyze => V::ExplainAnalyze,
                    h::Via::Merge => V::Merge,
                    h::Via::Prepare => V::Prepare,
                    h::Via::Copy => V::Copy,
                    h::Via::Execute => V::Execute,
                },
            })
            .collect(),
        functions: s.functions.clone(),
        opaque: s
            .opaque
            .iter()
            .map(|o| OpaqueCode {
                kind: o.kind.clone(),
                name: o.name.clone(),
                language: o.language.clone(),
            })
            .collect(),
        blocks: s
            .blocks
            .iter()
            .map(|b| QueryBlock {
                tables: resolve(&b.tables),
                filter: filter(&b.filter),
                limit: match b.limit {
                    h::Limit::None => RowLimit::None,
                    h::Limit::All => RowLimit::All,
                    h::Limit::Count(n) => RowLimit::Count(n),
                    h::Limit::Expression => RowLimit::Expression,
                },
            })
            .collect(),
        locking: s.locking.clone(),
        drops: s.drops.clone(),
        server_copy: s.server_copy.clone(),
        setting: s.setting.clone(),
        executes: s.executes.clone(),
        parse_error: None,
    }
}
