//! The shadow-execution comparator: `POST /api/shadow/start` mirrors live traffic to a
//! second backend for a window, without delaying any client (a bounded queue that drops and
//! counts when full), compares each answer with the primary's by a digest of the rows
//! (order-insensitive unless the statement has ORDER BY) and records the differences
//! (`GET /api/shadow/{id}/diff`). Only statements outside transaction blocks are mirrored;
//! writes only when `reads_only` is false, and then rolled back on the shadow.

pub mod tap;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use crate::ops::target::{Target, TargetError};
use crate::session::env::SessionEnv;
use tap::{Counts, Inlet, ShadowTap};

/// Divergences kept per run (the count goes on).
const MAX_DIVERGENCES: usize = 1000;

/// `POST /api/shadow/start`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowRequest {
    /// A node name or a `postgres://` DSN.
    pub target: String,
    /// Fraction of statements mirrored (default 1).
    pub sample: Option<f64>,
    /// Mirror reads only (default true); false mirrors writes, rolled back on the shadow.
    pub reads_only: Option<bool>,
    /// How long to run, seconds (default 300, at most a day).
    pub window: Option<u64>,
    /// Statements waiting at most (default 1024); beyond, statements are dropped.
    pub queue: Option<usize>,
    /// Shadow connections per user and database, i.e. workers (default 2, at most 16).
    pub connections: Option<usize>,
}

/// Why a run was refused.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    /// The target.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The live primary cannot shadow itself.
    #[error("{0} is the live primary: a shadow must be another server")]
    LivePrimary(String),
    /// One run at a time.
    #[error("shadow run {0} is already running; stop it first")]
    Running(u64),
    /// A bad field.
    #[error("{0}")]
    Invalid(String),
}

/// One side's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// Rows returned or affected.
    pub rows: u64,
    /// Digest of the rows (empty for an error).
    pub digest: String,
    /// SQLSTATE of an error.
    pub error: Option<String>,
}

/// A statement the shadow answered differently.
#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    /// The statement with its constants replaced.
    pub statement: String,
    /// Client user.
    pub user: String,
    /// Database.
    pub database: String,
    /// Whether rows were compared in order.
    pub ordered: bool,
    /// The primary's answer.
    pub primary: Digest,
    /// The shadow's answer.
    pub shadow: Digest,
    /// When, ms since the epoch.
    pub at_ms: u64,
}

/// One shadow run.
pub struct Run {
    id: u64,
    target: Target,
    reads_only: bool,
    sample: f64,
    started_ms: u64,
    ends_at_ms: u64,
    counts: Arc<Counts>,
    stopped: Mutex<Option<u64>>,
    stop: Notify,
    compared: AtomicU64,
    matched: AtomicU64,
    skipped: AtomicU64,
    errors: AtomicU64,
    diff_count: AtomicU64,
    divergent: Mutex<Vec<Divergence>>,
    last_error: Mutex<Option<String>>,
}

/// `GET /api/shadow/{id}`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Its id.
    pub shadow_id: u64,
    /// `running` or `stopped`.
    pub state: &'static str,
    /// The shadow.
    pub target: String,
    /// Whether only reads are mirrored.
    pub reads_only: bool,
    /// Fraction mirrored.
    pub sample: f64,
    /// Statements queued for the shadow.
    pub mirrored: u64,
    /// Statements dropped because the queue was full.
    pub dropped: u64,
    /// Statements not mirrored (writes in a reads-only run, several statements in one
    /// message, transaction control, session commands, text that cannot be analysed).
    pub skipped: u64,
    /// Statements run on the shadow and compared.
    pub compared: u64,
    /// Of those, the same answer.
    pub matched: u64,
    /// Of those, a different one.
    pub diff_count: u64,
    /// Statements the shadow could not run (connection failures).
    pub errors: u64,
    /// The last such failure.
    pub last_error: Option<String>,
    /// Started, ms since the epoch.
    pub started_at_ms: u64,
    /// Ends (or ended), ms since the epoch.
    pub ends_at_ms: u64,
}

impl Run {
    fn count_skipped(&self) {
        self.skipped.fetch_add(1, Relaxed);
    }

    fn count_match(&self) {
        self.compared.fetch_add(1, Relaxed);
        self.matched.fetch_add(1, Relaxed);
    }

    fn count_error(&self, what: String) {
        self.errors.fetch_add(1, Relaxed);
        *self.last_error.lock().expect("error lock") = Some(what);
    }

    fn diverged(&self, d: Divergence) {
        self.compared.fetch_add(1, Relaxed);
        self.diff_count.fetch_add(1, Relaxed);
        let mut list = self.divergent.lock().expect("divergent lock");
        if list.len() < MAX_DIVERGENCES {
            list.push(d);
        }
    }

    /// Its counters.
    pub fn status(&self) -> Status {
        let stopped = *self.stopped.lock().expect("stopped lock");
        Status {
            shadow_id: self.id,
            state: if stopped.is_some() {
                "stopped"
            } else {
                "running"
            },
            target: self.target.describe(),
            reads_only: self.reads_only,
            sample: self.sample,
            mirrored: self.counts.queued.load(Relaxed),
            dropped: self.counts.dropped.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            compared: self.compared.load(Relaxed),
            matched: self.matched.load(Relaxed),
            diff_count: self.diff_count.load(Relaxed),
            errors: self.errors.load(Relaxed),
            last_error: self.last_error.lock().expect("error lock").clone(),
            started_at_ms: self.started_ms,
            ends_at_ms: stopped.unwrap_or(self.ends_at_ms),
        }
    }

    /// Its id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether it still mirrors.
    pub fn running(&self) -> bool {
        self.stopped.lock().expect("stopped lock").is_none()
    }

    /// The divergences found so far (the first [`MAX_DIVERGENCES`]).
    pub fn divergences(&self) -> Vec<Divergence> {
        self.divergent.lock().expect("divergent lock").clone()
    }

    /// The number of divergences found.
    pub fn diff_count(&self) -> u64 {
        self.diff_count.load(Relaxed)
    }

    /// Statements compared.
    pub fn compared(&self) -> u64 {
        self.compared.load(Relaxed)
    }
}

/// Every shadow run of this proxy; one runs at a time.
pub struct Shadows {
    env: Arc<SessionEnv>,
    runs: Mutex<HashMap<u64, Arc<Run>>>,
    current: Mutex<Option<Arc<Run>>>,
    next: AtomicU64,
}

impl Shadows {
    /// Runs mirroring the sessions of `env` (through its [`ShadowTap`]).
    pub fn new(env: Arc<SessionEnv>) -> Shadows {
        Shadows {
            env,
            runs: Mutex::new(HashMap::new()),
            current: Mutex::new(None),
            next: AtomicU64::new(1),
        }
    }

    fn tap(&self) -> &ShadowTap {
        &self.env.shadow
    }

    /// Starts a run.
    pub async fn start(&self, req: ShadowRequest) -> Result<Arc<Run>, ShadowError> {
        let sample = req.sample.unwrap_or(1.0);
        if !(sample > 0.0 && sample <= 1.0) {
            return Err(ShadowError::Invalid("sample must be in (0, 1]".into()));
        }
        let window = req.window.unwrap_or(300);
        if !(1..=86_400).contains(&window) {
            return Err(ShadowError::Invalid(
                "window must be 1 to 86400 seconds".into(),
            ));
        }
        let queue = req.queue.unwrap_or(1024);
        if !(1..=65_536).contains(&queue) {
            return Err(ShadowError::Invalid("queue must be 1 to 65536".into()));
        }
        let workers = req.connections.unwrap_or(2);
        if !(1..=16).contains(&workers) {
            return Err(ShadowError::Invalid("connections must be 1 to 16".into()));
        }
        let target = Target::resolve(&self.env, &req.target)?;
        if target.is_live_primary(&self.env).await {
            return Err(ShadowError::LivePrimary(target.describe()));
        }
        let mut current = self.current.lock().expect("current lock");
        if let Some(c) = current.as_ref().filter(|c| c.running()) {
            return Err(ShadowError::Running(c.id));
        }
        let (tx, rx) = mpsc::channel(queue);
        let counts = Arc::new(Counts::default());
        let now = crate::topology::now_ms();
        let run = Arc::new(Run {
            id: self.next.fetch_add(1, Relaxed),
            target,
            reads_only: req.reads_only.unwrap_or(true),
            sample,
            started_ms: now,
            ends_at_ms: now + window * 1000,
            counts: counts.clone(),
            stopped: Mutex::new(None),
            stop: Notify::new(),
            compared: AtomicU64::new(0),
            matched: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            diff_count: AtomicU64::new(0),
            divergent: Mutex::new(Vec::new()),
            last_error: Mutex::new(None),
        });
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..workers {
            tokio::spawn(worker::work(self.env.clone(), run.clone(), rx.clone()));
        }
        self.tap().open(Arc::new(Inlet::new(tx, sample, counts)));
        *current = Some(run.clone());
        self.runs
            .lock()
            .expect("runs lock")
            .insert(run.id, run.clone());
        let (env, timed) = (self.env.clone(), run.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(window)) => {}
                _ = timed.stop.notified() => {}
            }
            finish(&env.shadow, &timed);
        });
        tracing::info!(shadow_id = run.id, target = %run.target.describe(), "shadow run started");
        Ok(run)
    }

    /// A run by id.
    pub fn get(&self, id: u64) -> Option<Arc<Run>> {
        self.runs.lock().expect("runs lock").get(&id).cloned()
    }

    /// Every run's status, newest first.
    pub fn list(&self) -> Vec<Status> {
        let runs = self.runs.lock().expect("runs lock");
        let mut all: Vec<Status> = runs.values().map(|r| r.status()).collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.shadow_id));
        all
    }

    /// Stops a run; false when unknown.
    pub fn stop(&self, id: u64) -> bool {
        let Some(run) = self.get(id) else {
            return false;
        };
        finish(self.tap(), &run);
        run.stop.notify_one();
        true
    }
}

/// Closes the tap (when it still feeds `run`) and marks the run stopped.
fn finish(tap: &ShadowTap, run: &Run) {
    let mut stopped = run.stopped.lock().expect("stopped lock");
    if stopped.is_none() {
        tap.close();
        *stopped = Some(crate::topology::now_ms());
        tracing::info!(
            shadow_id = run.id,
            compared = run.compared.load(Relaxed),
            diff_count = run.diff_count.load(Relaxed),
            "shadow run stopped"
        );
    }
}
