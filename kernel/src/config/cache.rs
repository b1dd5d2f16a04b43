//! `[cache]` (the result cache: L1 in this process) and `[cache.l2]` (Redis, shared by
//! proxies, which also carries invalidations between them).

use serde::Deserialize;

/// `[cache]`; the result cache is on when the section is present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Bytes of results the in-process cache holds (least recently used go first).
    pub l1_bytes: u64,
    /// The longest a result is kept, whatever the policy asked.
    pub max_ttl_s: u64,
    /// Results larger than this are never cached.
    pub max_result_bytes: usize,
    /// Redis, shared by every proxy; absent = this proxy alone.
    pub l2: Option<L2Config>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            l1_bytes: 64 << 20,
            max_ttl_s: 3600,
            max_result_bytes: 1 << 20,
            l2: None,
        }
    }
}

/// `[cache.l2]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct L2Config {
    /// Redis URL (`redis://host:port/db`).
    pub url: String,
    /// The longest a result is kept in Redis.
    pub ttl_s: u64,
    /// How long one Redis call may take before it counts as a miss.
    pub timeout_ms: u64,
    /// Prefix of every key and channel, so proxies of different clusters can share a Redis.
    pub prefix: String,
}

impl Default for L2Config {
    fn default() -> Self {
        L2Config {
            url: "redis://127.0.0.1:6379".into(),
            ttl_s: 3600,
            timeout_ms: 25,
            prefix: "heliosproxy".into(),
        }
    }
}

impl CacheConfig {
    /// Problems with the values, each with its key path.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.l1_bytes < 1 << 16 {
            p.push("cache.l1_bytes: must be at least 65536".into());
        }
        if self.max_ttl_s == 0 {
            p.push("cache.max_ttl_s: must be at least 1".into());
        }
        if let Some(l2) = &self.l2 {
            if !l2.url.starts_with("redis://") && !l2.url.starts_with("rediss://") {
                p.push(format!(
                    "cache.l2.url = {:?}: expected redis://host:port",
                    l2.url
                ));
            }
            if l2.timeout_ms == 0 {
                p.push("cache.l2.timeout_ms: must be at least 1".into());
            }
        }
        p
    }
}
