//! Relations whose writes reach rows the statement text does not name: views (a write goes
//! to the base tables), partitioned tables and partitions, inheritance parents and
//! children, tables with user triggers or non-`SELECT` rules, and tables other tables
//! reference with a cascading foreign key. The catalog gives the set once per database
//! (kept a minute, dropped when DDL passes through the proxy); a committed write to one of
//! them, or to any relation while the set is not known, invalidates every cached result.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::pool::Pool;

/// The relations of one database, as `schema.name` in the catalog's own spelling.
const QUERY: &str = "\
SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('v', 'p', 'f') OR c.relispartition \
OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal) \
OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid AND r.ev_type <> '1') \
OR EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid) \
OR EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.contype = 'f' AND k.confrelid = c.oid \
  AND (k.confdeltype IN ('c', 'n', 'd') OR k.confupdtype IN ('c', 'n', 'd'))) \
LIMIT 100001";

/// More relations than this: every write is taken to spread.
const MAX_RELATIONS: usize = 100_000;

/// What a database's catalog says about spreading writes.
#[derive(Debug)]
pub enum Known {
    /// These relations spread.
    Relations(HashSet<String>),
    /// Too many to keep: every write spreads.
    All,
}

impl Known {
    /// Whether a write to `relation` (`schema.name`) reaches beyond it.
    pub fn spreads(&self, relation: &str) -> bool {
        match self {
            Known::Relations(set) => set.contains(relation),
            Known::All => true,
        }
    }
}

/// Per database, the relations whose writes spread.
pub struct Spread {
    known: moka::sync::Cache<String, Arc<Known>>,
    pending: Mutex<HashSet<String>>,
}

impl Default for Spread {
    fn default() -> Self {
        Spread {
            known: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            pending: Mutex::default(),
        }
    }
}

impl Spread {
    /// What is known about `database`, `None` until its catalog has been read.
    pub fn of(&self, database: &str) -> Option<Arc<Known>> {
        self.known.get(database)
    }

    /// Forgets what is known about `database` (DDL passed: a trigger, rule, partition or
    /// foreign key may have come or gone).
    pub fn forget(&self, database: &str) {
        self.known.invalidate(database);
    }

    /// Reads the set for `pool`'s database in the background, unless known or being read.
    pub fn load(self: &Arc<Self>, pool: Arc<Pool>) {
        let database = pool.key.database.clone();
        if self.known.get(&database).is_some()
            || !self
                .pending
                .lock()
                .expect("spread lock")
                .insert(database.clone())
        {
            return;
        }
        let spread = self.clone();
        tokio::spawn(async move {
            let result = match pool.checkout().await {
                Ok(mut checkout) => match checkout.conn.query_rows(QUERY).await {
                    Ok(a) if a.status == b'I' => {
                        pool.release(checkout);
                        a.error.is_none().then_some(a.rows)
                    }
                    _ => {
                        pool.discard(checkout);
                        None
                    }
                },
                Err(_) => None,
            };
            if let Some(rows) = result {
                let known = if rows.len() > MAX_RELATIONS {
                    Known::All
                } else {
                    Known::Relations(
                        rows.into_iter()
                            .filter_map(|r| r.into_iter().next().flatten())
                            .collect(),
                    )
                };
                spread.known.insert(database.clone(), Arc::new(known));
            }
            spread
                .pending
                .lock()
                .expect("spread lock")
                .remove(&database);
        });
    }
}
