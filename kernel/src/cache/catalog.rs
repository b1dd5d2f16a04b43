//! What the catalog says about the relations and functions a cached statement uses: only
//! tables (`r`, `p`) are cached — a view's rows change with its base tables, which a write
//! to the view's name would not invalidate — and only immutable functions. Verdicts are
//! looked up in the background on first sight (the statement is not cached that time) and
//! kept for a minute, or until DDL names the relation.

use std::sync::Arc;
use std::time::Duration;

use crate::pool::Pool;

/// Catalog verdicts per database.
pub struct Catalog {
    verdicts: moka::sync::Cache<String, bool>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            verdicts: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }
}

fn relation_key(database: &str, name: &str) -> String {
    format!("{database}\0r\0{name}")
}

fn function_key(database: &str, name: &str) -> String {
    format!("{database}\0f\0{name}")
}

/// A SQL string constant.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Catalog {
    /// `Some(true)` when every relation is a table and every function immutable,
    /// `Some(false)` when one is not, `None` when something is not known yet.
    pub fn verdict(
        &self,
        database: &str,
        relations: &[String],
        functions: &[String],
    ) -> Option<bool> {
        let mut known = true;
        for (k, _) in relations
            .iter()
            .map(|r| (relation_key(database, r), r))
            .chain(functions.iter().map(|f| (function_key(database, f), f)))
        {
            match self.verdicts.get(&k) {
                Some(false) => return Some(false),
                Some(true) => {}
                None => known = false,
            }
        }
        known.then_some(true)
    }

    /// Forgets what is known about `relation` (DDL named it).
    pub fn forget(&self, database: &str, relation: &str) {
        self.verdicts.invalidate(&relation_key(database, relation));
    }

    /// Looks the unknown names up on a connection of `pool`, in the background.
    pub fn resolve(
        self: &Arc<Self>,
        pool: Arc<Pool>,
        relations: Vec<String>,
        functions: Vec<String>,
    ) {
        let database = pool.key.database.clone();
        let relations: Vec<String> = relations
            .into_iter()
            .filter(|r| self.verdicts.get(&relation_key(&database, r)).is_none())
            .collect();
        let functions: Vec<String> = functions
            .into_iter()
            .filter(|f| self.verdicts.get(&function_key(&database, f)).is_none())
            .collect();
        if relations.is_empty() && functions.is_empty() {
            return;
        }
        let catalog = self.clone();
        tokio::spawn(async move {
            let Ok(mut checkout) = pool.checkout().await else {
                return;
            };
            let mut ok = true;
            for r in &relations {
                let sql = format!(
                    "SELECT c.relkind IN ('r', 'p') FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass({})",
                    literal(r)
                );
                match checkout.conn.query_rows(&sql).await {
                    Ok(a) if a.error.is_none() && a.status == b'I' => {
                        let table = a.rows.first().and_then(|r| r.first().cloned().flatten());
                        catalog
                            .verdicts
                            .insert(relation_key(&database, r), table.as_deref() == Some("t"));
                    }
                    _ => ok = false,
                }
            }
            for f in &functions {
                let (schema, name) = match f.rsplit_once('.') {
                    Some((s, n)) => (Some(s), n),
                    None => (None, f.as_str()),
                };
                let schema_filter = schema
                    .map(|s| format!(" AND p.pronamespace = {}::regnamespace", literal(s)))
                    .unwrap_or_default();
                let sql = format!(
                    "SELECT coalesce(bool_and(p.provolatile = 'i'), false) FROM pg_catalog.pg_proc p WHERE p.proname = {}{schema_filter}",
                    literal(name)
                );
                match checkout.conn.query_rows(&sql).await {
                    Ok(a) if a.error.is_none() && a.status == b'I' => {
                        let immutable = a.rows.first().and_then(|r| r.first().cloned().flatten());
                        catalog.verdicts.insert(
                            function_key(&database, f),
                            immutable.as_deref() == Some("t"),
                        );
                    }
                    _ => ok = false,
                }
            }
            if ok {
                pool.release(checkout);
            } else {
                pool.discard(checkout);
            }
        });
    }
}
