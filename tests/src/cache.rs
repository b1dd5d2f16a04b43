//! What the result-cache tests share: a proxy config with the cache-policy component and
//! the cache on (with Redis as its shared tier when given), and a warm-up that gets a
//! statement stored.

use std::time::Duration;

use heliosproxy::config::{CacheConfig, Config, L2Config, PoolMode};

use crate::{Pg, plugin, proxy_config, rows};

/// A transaction-mode proxy over `pg` caching what the cache-policy component allows (every
/// table but `public.uncached`, 60 s), with Redis at `redis_url` as the shared tier.
pub fn cached_config(pg: &Pg, redis_url: Option<String>) -> Config {
    let mut c = proxy_config(pg, PoolMode::Transaction, 4);
    c.admin.api_key = Some("k".into());
    c.plugins.push(plugin(
        "cache-policy",
        "helios-cache-policy",
        &[],
        "default_ttl_s = 60\nexclude_tables = [\"public.uncached\"]\n",
    ));
    c.cache = Some(CacheConfig {
        l2: redis_url.map(|url| L2Config {
            url,
            timeout_ms: 200,
            ..L2Config::default()
        }),
        ..CacheConfig::default()
    });
    c
}

/// Runs `sql` three times: the catalog is asked the first time, the result stored the
/// second, answered from the cache the third.
pub async fn warm(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut last = Vec::new();
    for _ in 0..3 {
        last = rows(&c.simple_query(sql).await.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}
