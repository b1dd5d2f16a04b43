//! What the catalog says about the relations and functions a cached statement uses: only
//! tables (`r`, `p`) are cached — a view's rows change with its base tables, which a write
//! to the view's name would not invalidate — and only immutable functions. Verdicts are
//! looked up in the background on first sight (the statement is not cached that time) and
//! kept for a minute, or until DDL names the relation. A name the catalog cannot answer for
//! (a lookup that fails: a schema that does not exist) is "not cacheable" for that minute,
//! and a name already being looked up is not looked up again, so a failing statement sent
//! in a loop costs one lookup, not one per statement.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::pool::Pool;

/// Catalog verdicts per database.
pub struct Catalog {
    verdicts: moka::sync::Cache<String, bool>,
    /// Keys a background lookup is answering now.
    pending: Mutex<HashSet<String>>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            verdicts: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            pending: Mutex::default(),
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
        let mut lookups: Vec<(String, String)> = Vec::new();
        {
            let mut pending = self.pending.lock().expect("catalog lock");
            let asked = relations
                .into_iter()
                .map(|r| (relation_key(&database, &r), relation_query(&r)))
                .chain(
                    functions
                        .into_iter()
                        .map(|f| (function_key(&database, &f), function_query(&f))),
                );
            for (key, sql) in asked {
                if self.verdicts.get(&key).is_none() && pending.insert(key.clone()) {
                    lookups.push((key, sql));
                }
            }
        }
        if lookups.is_empty() {
            return;
        }
        let catalog = self.clone();
        tokio::spawn(async move {
            let _done = Pending {
                catalog: &catalog,
                keys: &lookups,
            };
            let Ok(mut checkout) = pool.checkout().await else {
                return;
            };
            let mut usable = true;
            for (key, sql) in &lookups {
                match checkout.conn.query_rows(sql).await {
                    Ok(a) if a.status == b'I' => {
                        // An error (the name cannot be resolved) is remembered as "no":
                        // asking again would fail again.
                        let yes = a.error.is_none()
                            && a.rows.first().and_then(|r| r.first().cloned().flatten())
                                == Some("t".to_owned());
                        catalog.verdicts.insert(key.clone(), yes);
                    }
                    _ => {
                        usable = false;
                        break;
                    }
                }
            }
            if usable {
                pool.release(checkout);
            } else {
                pool.discard(checkout);
            }
        });
    }
}

/// Takes a lookup's keys off the pending set when it ends, however it ends.
struct Pending<'a> {
    catalog: &'a Catalog,
    keys: &'a [(String, String)],
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let mut pending = self.catalog.pending.lock().expect("catalog lock");
        for (k, _) in self.keys {
            pending.remove(k);
        }
    }
}

/// Whether `relation` is a table (`t`), a row with NULL when it does not resolve.
fn relation_query(relation: &str) -> String {
    format!(
        "SELECT c.relkind IN ('r', 'p') FROM pg_catalog.pg_class c \
         WHERE c.oid = pg_catalog.to_regclass({})",
        literal(relation)
    )
}

/// Whether every function named `function` is immutable (`t`); `to_regnamespace` keeps a
/// schema that does not exist from failing the lookup.
fn function_query(function: &str) -> String {
    let (schema, name) = match function.rsplit_once('.') {
        Some((s, n)) => (Some(s), n),
        None => (None, function),
    };
    let schema_filter = schema
        .map(|s| {
            format!(
                " AND p.pronamespace = pg_catalog.to_regnamespace({})",
                literal(s)
            )
        })
        .unwrap_or_default();
    format!(
        "SELECT coalesce(bool_and(p.provolatile = 'i'), false) FROM pg_catalog.pg_proc p \
         WHERE p.proname = {}{schema_filter}",
        literal(name)
    )
}
