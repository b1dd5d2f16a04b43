//! The sessions' side of the shadow comparator: while a shadow run is active, a sampled
//! statement outside a transaction block gets a [`Probe`] that sums its rows as they pass to
//! the client and, when the statement completes, queues it for the run's workers. The queue
//! is bounded and never waits: a full queue drops the statement and counts it. While no run
//! is active the check is one relaxed load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use arc_swap::ArcSwapOption;
use tokio::sync::mpsc;

use crate::journal::ResultSum;
use crate::ops::statement::{RowSet, Statement};

/// A statement the client ran, with what the primary answered.
#[derive(Debug)]
pub struct Mirrored {
    /// What to run.
    pub statement: Statement,
    /// Client user.
    pub user: String,
    /// Database.
    pub database: String,
    /// The primary's rows in order.
    pub sum: ResultSum,
    /// The primary's rows regardless of order.
    pub set: RowSet,
    /// The primary's SQLSTATE, when it failed.
    pub error: Option<String>,
}

/// What an inlet let in and dropped.
#[derive(Debug, Default)]
pub struct Counts {
    /// Statements dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Statements queued.
    pub queued: AtomicU64,
}

/// The active run's inlet. Only the tap and the probes in flight hold it, so the queue
/// closes (and the workers end) once the tap is closed and they are done.
pub struct Inlet {
    tx: mpsc::Sender<Mirrored>,
    /// Fraction of statements mirrored.
    sample: f64,
    counts: Arc<Counts>,
}

impl Inlet {
    /// An inlet into `tx` mirroring `sample` of the statements, counting into `counts`.
    pub fn new(tx: mpsc::Sender<Mirrored>, sample: f64, counts: Arc<Counts>) -> Inlet {
        Inlet { tx, sample, counts }
    }
}

/// Whether a shadow run is active, and where its statements go.
#[derive(Default)]
pub struct ShadowTap {
    active: AtomicBool,
    inlet: ArcSwapOption<Inlet>,
}

impl ShadowTap {
    /// Whether statements are being mirrored.
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Relaxed)
    }

    /// Starts sending to `inlet`.
    pub fn open(&self, inlet: Arc<Inlet>) {
        self.inlet.store(Some(inlet));
        self.active.store(true, Relaxed);
    }

    /// Stops mirroring; statements in flight still arrive.
    pub fn close(&self) {
        self.active.store(false, Relaxed);
        self.inlet.store(None);
    }

    /// A probe for a statement about to run outside a transaction block, when a run is
    /// active and samples it.
    pub fn probe(&self, statement: impl FnOnce() -> Statement) -> Option<Box<Probe>> {
        if !self.active() {
            return None;
        }
        let inlet = self.inlet.load_full()?;
        if inlet.sample < 1.0 && rand::random::<f64>() >= inlet.sample {
            return None;
        }
        Some(Box::new(Probe {
            inlet,
            statement: statement(),
            sum: ResultSum::default(),
            set: RowSet::default(),
        }))
    }
}

/// A statement being summed as it passes.
pub struct Probe {
    inlet: Arc<Inlet>,
    statement: Statement,
    sum: ResultSum,
    set: RowSet,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("sql", &self.statement.sql)
            .finish()
    }
}

impl Probe {
    /// A `DataRow` passed.
    #[inline]
    pub fn note_row(&mut self, body: &[u8]) {
        self.sum.note_row(body);
        self.set.note_row(body);
    }

    /// A command tag passed.
    pub fn note_tag(&mut self, tag: &[u8]) {
        self.sum.note_tag(tag);
    }

    /// The statement completed: queue it (or count it dropped).
    pub fn send(self, user: &str, database: &str, error: Option<String>) {
        let m = Mirrored {
            statement: self.statement,
            user: user.to_owned(),
            database: database.to_owned(),
            sum: self.sum,
            set: self.set,
            error,
        };
        match self.inlet.tx.try_send(m) {
            Ok(()) => self.inlet.counts.queued.fetch_add(1, Relaxed),
            Err(_) => self.inlet.counts.dropped.fetch_add(1, Relaxed),
        };
    }
}
