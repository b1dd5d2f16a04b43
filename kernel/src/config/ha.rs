//! `[ha]` (topology tracking, circuit breakers, failover, the switchover buffer, transaction
//! replay) and `[journal]` (the on-disk statement log).

use std::path::PathBuf;

use serde::Deserialize;

/// Whether the proxy promotes a standby by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverMode {
    /// Promote the best standby when the primary fails its health checks.
    Automatic,
    /// Only `POST /api/topology/switchover` promotes.
    Manual,
}

/// `[ha]`: present to turn on topology tracking (control connections to every node).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HaConfig {
    /// Role of the control connections (health checks, `pg_promote()`); needs superuser or
    /// `pg_monitor` plus EXECUTE on `pg_promote`.
    pub user: String,
    /// Its password, when the servers ask for one.
    pub password: Option<String>,
    /// Database the control connections use.
    pub database: String,
    /// Time between health checks of a healthy node.
    pub check_interval_ms: u64,
    /// Time between checks while a node is failing.
    pub retry_interval_ms: u64,
    /// A check that takes longer than this has failed.
    pub check_timeout_ms: u64,
    /// Consecutive failed checks after which a node is down (and a primary is failed over).
    pub failure_threshold: u32,
    /// Automatic or manual failover.
    pub failover: FailoverMode,
    /// Replicas further behind the primary than this receive no reads.
    pub max_replica_lag_bytes: u64,
    /// Consecutive failures (checks or connects) that open a node's circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker stays open before half-open probes.
    pub breaker_reset_ms: u64,
    /// Successful probes in half-open state that close the breaker.
    pub breaker_half_open_requests: u32,
    /// Queries that may wait for a switchover at once; more fail at once.
    pub buffer_max_waiters: usize,
    /// How long a query waits for a switchover before it fails.
    pub buffer_timeout_ms: u64,
    /// How long a promotion may take.
    pub promote_timeout_ms: u64,
    /// Replay the statements of transactions in flight on a failed primary.
    pub transaction_replay: bool,
    /// Statements kept per transaction for replay; longer transactions are not replayed.
    pub replay_max_statements: usize,
    /// Bytes kept per transaction for replay.
    pub replay_max_bytes: usize,
    /// Read each writing transaction's id (one hidden prepared statement in the same round
    /// trip) so a COMMIT interrupted by a failover is resolved instead of answered 08007.
    pub resolve_commits: bool,
    /// After a promotion, clear `synchronous_standby_names` on the new primary: it was
    /// usually inherited from the old primary when the standby was cloned, and no standby
    /// follows the new primary yet, so every commit would wait forever. `false` keeps it
    /// (for standbys an operator re-points at once).
    pub relax_synchronous_standbys: bool,
    /// Return the cluster to full redundancy after a failover: re-point the other standbys
    /// at the new primary (`primary_conninfo`, reloaded), and bring the old primary back as
    /// a standby with `pg_rewind` once it answers again (for nodes with a `data_dir` the
    /// proxy can reach: it stops, rewinds and starts them). Off by default.
    pub rejoin: bool,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            user: "postgres".into(),
            password: None,
            database: "postgres".into(),
            check_interval_ms: 500,
            retry_interval_ms: 100,
            check_timeout_ms: 1000,
            failure_threshold: 3,
            failover: FailoverMode::Automatic,
            max_replica_lag_bytes: 16 << 20,
            breaker_failures: 5,
            breaker_reset_ms: 30_000,
            breaker_half_open_requests: 3,
            buffer_max_waiters: 10_000,
            buffer_timeout_ms: 15_000,
            promote_timeout_ms: 30_000,
            transaction_replay: true,
            replay_max_statements: 1000,
            replay_max_bytes: 4 << 20,
            resolve_commits: true,
            relax_synchronous_standbys: true,
            rejoin: false,
        }
    }
}

impl HaConfig {
    /// Every semantic problem, prefixed with its key.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.user.is_empty() {
            problems.push("ha.user: must not be empty".into());
        }
        for (key, value) in [
            ("check_interval_ms", self.check_interval_ms),
            ("retry_interval_ms", self.retry_interval_ms),
            ("check_timeout_ms", self.check_timeout_ms),
            ("breaker_reset_ms", self.breaker_reset_ms),
            ("buffer_timeout_ms", self.buffer_timeout_ms),
            ("promote_timeout_ms", self.promote_timeout_ms),
        ] {
            if value == 0 {
                problems.push(format!("ha.{key}: must be at least 1"));
            }
        }
        if self.failure_threshold == 0 {
            problems.push("ha.failure_threshold: must be at least 1".into());
        }
        if self.breaker_failures == 0 {
            problems.push("ha.breaker_failures: must be at least 1".into());
        }
        if self.breaker_half_open_requests == 0 {
            problems.push("ha.breaker_half_open_requests: must be at least 1".into());
        }
    }
}

/// When the journal forces its writes to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// After every batch of records written.
    Always,
    /// At most every `fsync_interval_ms`.
    Interval,
    /// Never; the OS decides.
    Never,
}

/// `[journal]`: present to record every statement on disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Directory of the segment files.
    pub dir: PathBuf,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Oldest segments are deleted while the journal is larger than this.
    pub retention_bytes: u64,
    /// Segments whose newest record is older than this are deleted.
    pub retention_s: u64,
    /// Fsync policy.
    pub fsync: FsyncPolicy,
    /// Interval for `fsync = "interval"`.
    pub fsync_interval_ms: u64,
    /// Records waiting for the writer; when full, records are dropped and counted.
    pub queue_records: usize,
    /// Bytes of records waiting for the writer; past it, records are dropped and counted.
    pub queue_bytes: usize,
    /// Settings whose values are secret (case-insensitive substrings of the name): what a
    /// `SET`, `ALTER … SET` or `set_config` gives them is redacted before it is written.
    pub redact_settings: Vec<String>,
    /// Statements whose bound parameters are secret (case-insensitive substrings of the
    /// SQL): their parameters are redacted before they are written.
    pub redact_statements: Vec<String>,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            dir: PathBuf::from("journal"),
            segment_bytes: 64 << 20,
            retention_bytes: 1 << 30,
            retention_s: 7 * 24 * 3600,
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 100,
            queue_records: 65_536,
            queue_bytes: 64 << 20,
            redact_settings: ["pass", "secret", "token", "key", "credential"]
                .map(String::from)
                .to_vec(),
            redact_statements: ["password", "pgp_sym_encrypt", "crypt("]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl JournalConfig {
    /// Every semantic problem, prefixed with its key.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.segment_bytes < 4096 {
            problems.push("journal.segment_bytes: must be at least 4096".into());
        }
        if self.retention_bytes < self.segment_bytes {
            problems.push("journal.retention_bytes: must be at least journal.segment_bytes".into());
        }
        if self.fsync == FsyncPolicy::Interval && self.fsync_interval_ms == 0 {
            problems.push("journal.fsync_interval_ms: must be at least 1".into());
        }
        if self.queue_records == 0 {
            problems.push("journal.queue_records: must be at least 1".into());
        }
    }
}
