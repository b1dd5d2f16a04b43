//! What hooks learn about a statement: the `statement` record they are called with and the
//! analysis PostgreSQL's parser gives (`context.analysis`), resolved against the session.
//! Analyses come from one process-wide cache keyed by the SHA-256 of the text.

use std::sync::{Arc, OnceLock};

use helios_analysis::{
    Analysis, Analyzer, Key, Limit, ModificationKind, StatementClass as Class, StatementFacts, Via,
    WhereFacts,
};

use super::bindings::v3::helios::plugin::context as wit;
use super::bindings::{Statement, StatementClass};

/// Analyses kept (by text); a statement shape seen more often stays.
const CACHE_CAPACITY: usize = 20_000;

/// The process-wide analysis cache.
pub fn analyzer() -> &'static Analyzer {
    static ANALYZER: OnceLock<Analyzer> = OnceLock::new();
    ANALYZER.get_or_init(|| Analyzer::new(CACHE_CAPACITY))
}

/// One statement as hooks see it.
#[derive(Debug)]
pub struct Facts {
    /// The record hooks are called with.
    pub stmt: Statement,
    /// The parser's analysis of the text (shared with every text of the same analysis key).
    whole: Arc<Analysis>,
    /// Cache key of the analysed text (SHA-256 of the text).
    pub key: Key,
    /// What a cache policy asked through `context.cache-result`: keep the result this many
    /// milliseconds (0 = not asked).
    pub cache_ttl_ms: std::sync::atomic::AtomicU32,
}

impl Facts {
    /// Facts about a statement's text, one entry per statement it holds (text that does not
    /// parse, or holds no statement, gives one entry for the whole text).
    pub fn of(sql: &str) -> Vec<Arc<Facts>> {
        let (key, analysis) = analyzer().analyze(sql);
        if analysis.statements.len() <= 1 {
            return vec![Arc::new(Facts::single(sql, key, &analysis))];
        }
        analysis
            .statements
            .iter()
            .map(|s| {
                let (key, a) = analyzer().analyze(&s.text);
                Arc::new(Facts::single(&s.text, key, &a))
            })
            .collect()
    }

    /// Facts about a whole message's text: for several statements, the first one's analysis
    /// with the class that routes them all (a plain read only when every one is).
    pub fn message(sql: &str) -> Arc<Facts> {
        let (key, analysis) = analyzer().analyze(sql);
        let mut facts = Facts::single(sql, key, &analysis);
        if analysis.statements.len() > 1 {
            let classes: Vec<Class> = analysis.statements.iter().map(|s| s.class).collect();
            if !classes.iter().all(|c| *c == Class::Read) {
                facts.stmt.class = if classes.contains(&Class::Ddl) {
                    StatementClass::Ddl
                } else {
                    StatementClass::Write
                };
            }
        }
        Arc::new(facts)
    }

    /// Facts about text that holds (at most) one statement.
    fn single(sql: &str, key: Key, analysis: &Arc<Analysis>) -> Facts {
        let class = match analysis.statements.first().map(|f| f.class) {
            Some(Class::Read) => StatementClass::Read,
            Some(Class::Write) => StatementClass::Write,
            Some(Class::Ddl) => StatementClass::Ddl,
            Some(Class::Transaction) => StatementClass::Transaction,
            Some(Class::Session) => StatementClass::Session,
            // Text that does not parse is never a plain read.
            Some(Class::Other) | None => StatementClass::Other,
        };
        let short =
            u64::from_str_radix(analysis.fingerprint.get(..16).unwrap_or("0"), 16).unwrap_or(0);
        Facts {
            cache_ttl_ms: Default::default(),
            stmt: Statement {
                sql: sql.to_owned(),
                class,
                fingerprint: short,
            },
            whole: analysis.clone(),
            key,
        }
    }

    /// The parser's facts about the statement; `None` when the text does not parse.
    pub fn analysis(&self) -> Option<&StatementFacts> {
        self.whole.statements.first()
    }

    /// PostgreSQL's parse error, when its grammar rejects the text.
    pub fn parse_error(&self) -> Option<&str> {
        self.whole.error.as_deref()
    }

    /// SHA-256 (hex) of the normalised text.
    pub fn fingerprint(&self) -> &str {
        &self.whole.fingerprint
    }

    /// For `EXECUTE name`: these facts with those of the statement it runs merged in (by
    /// `via execute`), looked up with `prepared`; unchanged for other statements. An unknown
    /// name stays as it is: the server will refuse it.
    pub fn resolve_execute(
        self: Arc<Facts>,
        prepared: &dyn Fn(&str) -> Option<Arc<str>>,
    ) -> Arc<Facts> {
        let Some(name) = self.analysis().and_then(|a| a.executes.as_deref()) else {
            return self;
        };
        let Some(text) = prepared(name) else {
            return self;
        };
        let (_, body) = analyzer().analyze(&text);
        let Some(prepare) = body.statements.first() else {
            return self;
        };
        let mut merged = self.with_executed(prepare);
        // The same EXECUTE text runs different statements in different sessions: the key
        // covers both, so a cached verdict is never reused for another body.
        merged.key = helios_analysis::key(&format!("{}\0{text}", self.stmt.sql));
        Arc::new(merged)
    }

    /// Merges the analysis of the prepared statement an `EXECUTE` runs.
    pub fn with_executed(&self, body: &StatementFacts) -> Facts {
        let mut whole = (*self.whole).clone();
        if let Some(a) = whole.statements.first_mut() {
            for m in &body.modifications {
                let mut m = m.clone();
                m.via = Via::Execute;
                a.modifications.push(m);
            }
            a.drops.extend(body.drops.iter().cloned());
            if a.server_copy.is_none() {
                a.server_copy = body.server_copy.clone();
            }
            a.reads.extend(body.reads.iter().cloned());
            a.writes.extend(body.writes.iter().cloned());
            a.functions.extend(body.functions.iter().cloned());
            a.blocks.extend(body.blocks.iter().cloned());
            a.locking.extend(body.locking.iter().cloned());
            a.opaque.extend(body.opaque.iter().cloned());
        }
        Facts {
            cache_ttl_ms: Default::default(),
            stmt: self.stmt.clone(),
            whole: Arc::new(whole),
            key: self.key,
        }
    }

    /// Tables read or written, resolved.
    pub fn tables(&self, search_path: &[String]) -> Vec<String> {
        let Some(a) = self.analysis() else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        for t in a.reads.iter().chain(&a.writes) {
            let r = t.resolved(search_path);
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }

    /// The `context.analysis` record.
    pub fn to_wit(&self, search_path: &[String]) -> wit::StatementAnalysis {
        let resolve = |ts: &[helios_analysis::TableName]| -> Vec<String> {
            ts.iter().map(|t| t.resolved(search_path)).collect()
        };
        let Some(a) = self.analysis() else {
            // No statement: text that does not parse, or nothing but comments and `;`
            // (which PostgreSQL answers with EmptyQueryResponse; kind `empty`).
            let error = self.parse_error().map(str::to_owned);
            return wit::StatementAnalysis {
                kind: if error.is_none() {
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
                parse_error: error,
            };
        };
        wit::StatementAnalysis {
            kind: a.kind.clone(),
            reads: resolve(&a.reads),
            writes: resolve(&a.writes),
            modifications: a
                .modifications
                .iter()
                .map(|m| wit::Modification {
                    kind: match m.kind {
                        ModificationKind::Insert => wit::ModificationKind::Insert,
                        ModificationKind::Update => wit::ModificationKind::Update,
                        ModificationKind::Delete => wit::ModificationKind::Delete,
                        ModificationKind::Truncate => wit::ModificationKind::Truncate,
                        ModificationKind::CopyFrom => wit::ModificationKind::CopyFrom,
                    },
                    table: m.table.resolved(search_path),
                    filter: where_wit(&m.filter),
                    via: match m.via {
                        Via::TopLevel => wit::Via::TopLevel,
                        Via::Cte => wit::Via::Cte,
                        Via::ExplainAnalyze => wit::Via::ExplainAnalyze,
                        Via::Merge => wit::Via::Merge,
                        Via::Prepare => wit::Via::Prepare,
                        Via::Copy => wit::Via::Copy,
                        Via::Execute => wit::Via::Execute,
                    },
                })
                .collect(),
            functions: a.functions.clone(),
            opaque: a
                .opaque
                .iter()
                .map(|o| wit::OpaqueCode {
                    kind: o.kind.clone(),
                    name: o.name.clone(),
                    language: o.language.clone(),
                })
                .collect(),
            blocks: a
                .blocks
                .iter()
                .map(|b| wit::QueryBlock {
                    tables: resolve(&b.tables),
                    filter: where_wit(&b.filter),
                    limit: match b.limit {
                        Limit::None => wit::RowLimit::None,
                        Limit::All => wit::RowLimit::All,
                        Limit::Count(n) => wit::RowLimit::Count(n),
                        Limit::Expression => wit::RowLimit::Expression,
                    },
                })
                .collect(),
            locking: a.locking.clone(),
            drops: a.drops.clone(),
            server_copy: a.server_copy.clone(),
            setting: a.setting.clone(),
            executes: a.executes.clone(),
            parse_error: None,
        }
    }
}

fn where_wit(w: &WhereFacts) -> wit::WhereFacts {
    wit::WhereFacts {
        present: w.present,
        constant: w.constant,
        equalities: w
            .equalities
            .iter()
            .map(|e| wit::Equality {
                column: e.column.clone(),
                parameter: e.parameter,
            })
            .collect(),
    }
}
