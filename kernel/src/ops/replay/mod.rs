//! Time-travel replay: a window of journalled statements run again against a node or a
//! candidate server (`POST /api/replay`), per recorded session, in the original order and
//! transaction boundaries, with the bound parameters and result formats, optionally at the
//! recorded pacing, as the recorded user or `as_user`, and compared with the recorded row
//! counts and checksums. Runs in the background, bounded in connections, cancellable.
//!
//! Replay never writes where it was not asked to: a window holding writes is refused unless
//! `allow_writes` (or `shadow`, which rolls every write back), and the live primary is
//! refused as a target unless `allow_writes`.

mod bounds;
mod plan;
mod run;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use plan::Filter;

use crate::journal::Journal;
use crate::ops::target::{Target, TargetError};
use crate::session::env::SessionEnv;
use crate::when::EpochMs;

/// Divergences kept per replay (the count goes on).
const MAX_DIVERGENCES: usize = 1000;

/// Replays running at once.
const MAX_RUNNING: usize = 4;

/// Statements one replay may hold.
const MAX_STATEMENTS: usize = 2_000_000;

/// Bytes of statements (text, parameters, names) one replay may hold in memory.
const MAX_PLAN_BYTES: usize = 256 << 20;

/// Finished replays kept for `GET /api/replay` (the oldest go first).
const KEEP_FINISHED: usize = 50;

/// What to compare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffMode {
    /// Nothing.
    None,
    /// Row counts and error codes.
    #[default]
    Rowcount,
    /// Row counts, error codes and the checksum of the rows.
    Rows,
}

/// `POST /api/replay`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Window start: ms since the epoch or an RFC 3339 time.
    pub from: EpochMs,
    /// Window end, likewise (default: now).
    pub to: Option<EpochMs>,
    /// A node name, or a `postgres://` DSN.
    pub target: String,
    /// Log in as this user instead of each session's recorded one.
    pub as_user: Option<String>,
    /// Run writes inside transactions that are rolled back.
    #[serde(default)]
    pub shadow: bool,
    /// What to compare with the recording.
    #[serde(default)]
    pub diff_mode: DiffMode,
    /// 1.0 = the recorded pacing, 2.0 twice as fast, 0 (default) as fast as possible.
    #[serde(default)]
    pub speed: f64,
    /// Which records.
    #[serde(default)]
    pub filter: Filter,
    /// Allow writes that stay (and the live primary as target).
    #[serde(default)]
    pub allow_writes: bool,
    /// Server connections at once (default 8, at most 64).
    pub max_connections: Option<usize>,
}

/// Why a replay was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No `[journal]`.
    #[error("the journal is off (no [journal] section): there is nothing to replay")]
    NoJournal,
    /// The target.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A bad field.
    #[error("{0}")]
    Invalid(String),
    /// Nothing recorded in the window.
    #[error("no journal records between {0} and {1} (ms since the epoch) match")]
    EmptyWindow(u64, u64),
    /// The window writes and writes were not allowed.
    #[error(
        "the window holds {count} statements that may write (the first is journal record {first}); \
         set \"shadow\": true to roll them back or \"allow_writes\": true to keep them"
    )]
    Writes {
        /// How many.
        count: usize,
        /// The first one's position.
        first: u64,
    },
    /// The target is the live primary.
    #[error("{0} is the live primary: replaying there needs \"allow_writes\": true")]
    LivePrimary(String),
    /// Too many running.
    #[error("{MAX_RUNNING} replays are already running")]
    Busy,
    /// The journal could not be read.
    #[error("reading the journal: {0}")]
    Journal(String),
}

/// A recorded or replayed outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Rows returned or affected.
    pub rows: u64,
    /// CRC-32 of the rows and tags.
    pub checksum: String,
    /// SQLSTATE of an error.
    pub error: Option<String>,
}

/// A statement whose replay differed from its recording.
#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    /// Journal position.
    pub seq: u64,
    /// Recorded session.
    pub session_id: u64,
    /// The statement with its constants replaced.
    pub statement: String,
    /// As recorded.
    pub recorded: Outcome,
    /// As replayed.
    pub replayed: Outcome,
}

/// One replay.
pub struct Job {
    id: u64,
    target: String,
    diff_mode: DiffMode,
    shadow: bool,
    sessions: usize,
    statements: usize,
    started_ms: u64,
    cancel: AtomicBool,
    sessions_done: AtomicU64,
    replayed: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
    diff_count: AtomicU64,
    divergent: Mutex<Vec<Divergence>>,
    failures: Mutex<Vec<String>>,
    started: std::time::Instant,
    elapsed: Mutex<Option<Duration>>,
}

/// `GET /api/replay/{id}`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Its id.
    pub replay_id: u64,
    /// `running`, `done` or `cancelled`.
    pub state: &'static str,
    /// Where to.
    pub target: String,
    /// What is compared.
    pub diff_mode: DiffMode,
    /// Whether writes were rolled back.
    pub shadow: bool,
    /// Recorded sessions in the window.
    pub sessions: usize,
    /// Sessions finished.
    pub sessions_done: u64,
    /// Statements in the window.
    pub statements: usize,
    /// Statements run.
    pub statements_replayed: u64,
    /// Statements that failed on the target (or could not be sent).
    pub errors: u64,
    /// Statements shadow mode could not run without keeping their effect.
    pub skipped: u64,
    /// Statements whose outcome differed.
    pub diff_count: u64,
    /// Their journal positions, in the order found.
    pub divergent_query_ids: Vec<u64>,
    /// The first [`MAX_DIVERGENCES`] of them, with both outcomes.
    pub divergent: Vec<Divergence>,
    /// Connection failures.
    pub failures: Vec<String>,
    /// Started, ms since the epoch.
    pub started_at_ms: u64,
    /// Time so far, or in all once finished.
    pub elapsed_ms: u64,
    /// Statements per second.
    pub statements_per_s: f64,
}

impl Job {
    /// Its id.
    pub fn id(&self) -> u64 {
        self.id
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Relaxed)
    }

    fn note_error(&self, what: String) {
        let mut f = self.failures.lock().expect("failures lock");
        if f.len() < 100 {
            f.push(what);
        }
    }

    fn diverged(&self, d: Divergence) {
        self.diff_count.fetch_add(1, Relaxed);
        let mut list = self.divergent.lock().expect("divergent lock");
        if list.len() < MAX_DIVERGENCES {
            list.push(d);
        }
    }

    fn finish(&self, elapsed: Duration) {
        *self.elapsed.lock().expect("elapsed lock") = Some(elapsed);
    }

    fn new(
        id: u64,
        target: String,
        (diff_mode, shadow): (DiffMode, bool),
        sessions: usize,
        statements: usize,
        started_ms: u64,
    ) -> Job {
        Job {
            id,
            target,
            diff_mode,
            shadow,
            sessions,
            statements,
            started_ms,
            cancel: AtomicBool::new(false),
            sessions_done: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            diff_count: AtomicU64::new(0),
            divergent: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            started: std::time::Instant::now(),
            elapsed: Mutex::new(None),
        }
    }

    fn running(&self) -> bool {
        self.elapsed.lock().expect("elapsed lock").is_none()
    }

    /// What it did so far.
    pub fn status(&self) -> Status {
        let elapsed = self
            .elapsed
            .lock()
            .expect("elapsed lock")
            .unwrap_or_else(|| self.started.elapsed());
        let replayed = self.replayed.load(Relaxed);
        let divergent = self.divergent.lock().expect("divergent lock").clone();
        Status {
            replay_id: self.id,
            state: match (self.running(), self.cancelled()) {
                (true, _) => "running",
                (false, true) => "cancelled",
                (false, false) => "done",
            },
            target: self.target.clone(),
            diff_mode: self.diff_mode,
            shadow: self.shadow,
            sessions: self.sessions,
            sessions_done: self.sessions_done.load(Relaxed),
            statements: self.statements,
            statements_replayed: replayed,
            errors: self.errors.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            diff_count: self.diff_count.load(Relaxed),
            divergent_query_ids: divergent.iter().map(|d| d.seq).collect(),
            divergent,
            failures: self.failures.lock().expect("failures lock").clone(),
            started_at_ms: self.started_ms,
            elapsed_ms: elapsed.as_millis() as u64,
            statements_per_s: if elapsed.is_zero() {
                0.0
            } else {
                replayed as f64 / elapsed.as_secs_f64()
            },
        }
    }
}

/// Every replay of this proxy.
pub struct Replays {
    env: Arc<SessionEnv>,
    journal: Option<Arc<Journal>>,
    jobs: Mutex<HashMap<u64, Arc<Job>>>,
    next: AtomicU64,
}

impl Replays {
    /// Replays over `journal`, connecting with what `env` knows.
    pub fn new(env: Arc<SessionEnv>, journal: Option<Arc<Journal>>) -> Replays {
        Replays {
            env,
            journal,
            jobs: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }

    /// Checks the request, reads the window and starts the replay in the background.
    pub async fn start(&self, req: ReplayRequest) -> Result<Arc<Job>, ReplayError> {
        let journal = self.journal.clone().ok_or(ReplayError::NoJournal)?;
        if !(req.speed.is_finite() && (0.0..=1000.0).contains(&req.speed)) {
            return Err(ReplayError::Invalid(
                "speed must be between 0 and 1000".into(),
            ));
        }
        let max_connections = req.max_connections.unwrap_or(8);
        if !(1..=64).contains(&max_connections) {
            return Err(ReplayError::Invalid(
                "max_connections must be 1 to 64".into(),
            ));
        }
        let now_ms = crate::topology::now_ms();
        let to = req.to.map_or(now_ms, |t| t.0);
        let from = req.from.0;
        if from >= to {
            return Err(ReplayError::Invalid(format!(
                "the window is empty: from ({from}) is not before to ({to})"
            )));
        }
        let target = Target::resolve(&self.env, &req.target)?;
        let generation = self.env.topology.generation();
        if !req.allow_writes && target.is_live_primary(&self.env).await {
            return Err(ReplayError::LivePrimary(target.describe()));
        }
        if self.running() >= MAX_RUNNING {
            return Err(ReplayError::Busy);
        }
        let filter = req.filter.clone();
        let to_ms = to;
        let plan = tokio::task::spawn_blocking(move || {
            journal.barrier();
            let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
            let read = journal
                .read(at(from), at(to_ms))
                .map_err(|e| e.to_string())?
                .map(|r| r.map_err(|e| e.to_string()));
            let records = bounds::collect(read, &filter, MAX_STATEMENTS, MAX_PLAN_BYTES)?;
            Ok(plan::build(records))
        })
        .await
        .map_err(|e| ReplayError::Journal(e.to_string()))?
        .map_err(ReplayError::Journal)?;
        if plan.statements == 0 {
            return Err(ReplayError::EmptyWindow(from, to));
        }
        if plan.writes > 0 && !req.allow_writes && !req.shadow {
            return Err(ReplayError::Writes {
                count: plan.writes,
                first: plan.first_write.unwrap_or(0),
            });
        }
        let id = self.next.fetch_add(1, Relaxed);
        let job = Arc::new(Job::new(
            id,
            target.describe(),
            (req.diff_mode, req.shadow),
            plan.sessions.len(),
            plan.statements,
            now_ms,
        ));
        {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            bounds::forget_oldest_finished(&mut jobs, KEEP_FINISHED);
            jobs.insert(id, job.clone());
        }
        tracing::info!(
            replay_id = id,
            target = %job.target,
            statements = plan.statements,
            sessions = job.sessions,
            shadow = req.shadow,
            "replay started"
        );
        let run = Arc::new(run::Run {
            env: self.env.clone(),
            target,
            as_user: req.as_user,
            shadow: req.shadow,
            allow_writes: req.allow_writes,
            diff_mode: req.diff_mode,
            speed: req.speed,
            max_connections,
            generation,
        });
        tokio::spawn(run.all(plan, job.clone()));
        Ok(job)
    }

    fn running(&self) -> usize {
        let jobs = self.jobs.lock().expect("jobs lock");
        jobs.values().filter(|j| j.running()).count()
    }

    /// A replay by id.
    pub fn get(&self, id: u64) -> Option<Arc<Job>> {
        self.jobs.lock().expect("jobs lock").get(&id).cloned()
    }

    /// Every replay's status, newest first.
    pub fn list(&self) -> Vec<Status> {
        let jobs = self.jobs.lock().expect("jobs lock");
        let mut all: Vec<Status> = jobs.values().map(|j| j.status()).collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.replay_id));
        all
    }

    /// Asks a running replay to stop after the statements in flight; false when unknown.
    pub fn cancel(&self, id: u64) -> bool {
        match self.get(id) {
            Some(j) => {
                j.cancel.store(true, Relaxed);
                true
            }
            None => false,
        }
    }
}
