//! The zero-downtime major-version upgrade orchestrator (`[upgrade]`, driven through
//! `/api/upgrade`): logical replication from the old server to the new one (schema copied,
//! publication, subscription, initial copy), the operator's stage SQL on its ticks, live
//! reads compared on the new server in shadow windows, and a cut once a whole window stayed
//! at or under the diff threshold: queries are held while the new server applies the old
//! one's last commits and sequences are copied, then writes go to the new server. Reverse
//! replication is set up at the cut, so a rollback moves back without losing what was
//! written since; a confirm removes it.

mod cut;
mod replication;
mod stages;
mod writes;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::config::UpgradeConfig;
use crate::ops::shadow::{ShadowRequest, Shadows};
use crate::session::env::SessionEnv;
pub use cut::CutReport;
use replication::{FORWARD, Login, REVERSE};
pub use stages::StageReport;

/// Where the upgrade is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not started.
    Idle,
    /// Copying the schema, publishing, subscribing.
    Preparing,
    /// The initial copy runs.
    Syncing,
    /// Live reads are compared on the new server.
    Shadowing,
    /// A window passed; waiting for `POST /api/upgrade/cut`.
    Ready,
    /// Queries are held while the new server catches up.
    Cutting,
    /// Writes go to the new server; reverse replication keeps the old one current.
    Cut,
    /// Moving back.
    RollingBack,
    /// Back on the old server.
    RolledBack,
    /// Done: the rollback path was removed.
    Confirmed,
    /// A step failed (see `error`); the old server still serves.
    Failed,
}

/// One shadow window.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// Its shadow run.
    pub shadow_id: u64,
    /// Statements compared.
    pub compared: u64,
    /// Statements that differed.
    pub diff_count: u64,
    /// Whether it allows the cut.
    pub passed: bool,
}

/// `GET /api/upgrade`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Where it is.
    pub phase: Phase,
    /// The old server's node.
    pub from: String,
    /// The new server's node.
    pub to: String,
    /// Databases moved.
    pub databases: Vec<String>,
    /// Started, ms since the epoch.
    pub started_at_ms: Option<u64>,
    /// Tables whose initial copy runs.
    pub tables_syncing: i64,
    /// Replication lag per database in bytes (as the sending server's slot shows it).
    pub lag_bytes: Vec<(String, Option<i64>)>,
    /// The shadow run of the current window.
    pub shadow_id: Option<u64>,
    /// Divergent statements in the current window.
    pub diff_count: u64,
    /// Finished windows, oldest first.
    pub windows: Vec<Window>,
    /// The stages.
    pub stages: Vec<StageReport>,
    /// The cut.
    pub cut: Option<CutReport>,
    /// The rollback.
    pub rollback: Option<CutReport>,
    /// What failed last.
    pub error: Option<String>,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// No `[upgrade]` or `enabled = false`.
    #[error("no upgrade is configured ([upgrade] in heliosproxy.toml, enabled = true)")]
    NotConfigured,
    /// Not in a phase that allows it.
    #[error("{0}")]
    Conflict(String),
}

/// The orchestrator.
pub struct Upgrade {
    config: UpgradeConfig,
    env: Arc<SessionEnv>,
    shadows: Arc<Shadows>,
    from: usize,
    to: usize,
    status: Mutex<Status>,
    stage_reports: Vec<Arc<Mutex<StageReport>>>,
    cut_now: AtomicBool,
}

impl Upgrade {
    /// The orchestrator for `config` (node names already validated).
    pub fn new(
        config: UpgradeConfig,
        env: Arc<SessionEnv>,
        shadows: Arc<Shadows>,
    ) -> Option<Upgrade> {
        let from = env.topology.by_name(&config.from_backend)?;
        let to = env.topology.by_name(&config.to_backend)?;
        let stage_reports = config
            .stages
            .iter()
            .map(|s| {
                Arc::new(Mutex::new(StageReport {
                    name: s.name.clone(),
                    on: match s.on {
                        crate::config::StageServer::To => "to",
                        crate::config::StageServer::From => "from",
                    },
                    ..StageReport::default()
                }))
            })
            .collect();
        let status = Status {
            phase: Phase::Idle,
            from: config.from_backend.clone(),
            to: config.to_backend.clone(),
            databases: config.databases.clone(),
            started_at_ms: None,
            tables_syncing: 0,
            lag_bytes: Vec::new(),
            shadow_id: None,
            diff_count: 0,
            windows: Vec::new(),
            stages: Vec::new(),
            cut: None,
            rollback: None,
            error: None,
        };
        Some(Upgrade {
            config,
            env,
            shadows,
            from,
            to,
            status: Mutex::new(status),
            stage_reports,
            cut_now: AtomicBool::new(false),
        })
    }

    /// Where it is.
    pub fn status(&self) -> Status {
        let mut s = self.status.lock().expect("upgrade lock").clone();
        if let Some(id) = s.shadow_id
            && let Some(run) = self.shadows.get(id)
        {
            s.diff_count = run.diff_count();
        }
        s.stages = self
            .stage_reports
            .iter()
            .map(|r| r.lock().expect("stage lock").clone())
            .collect();
        s
    }

    fn phase(&self) -> Phase {
        self.status.lock().expect("upgrade lock").phase
    }

    fn set(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().expect("upgrade lock"));
    }

    fn fail(&self, error: String) {
        tracing::error!("upgrade failed: {error}");
        self.set(|s| {
            s.phase = Phase::Failed;
            s.error = Some(error);
        });
    }

    fn login(&self, node: usize) -> Login {
        Login::to(
            &self.env.topology.nodes[node].target,
            &self.config.user,
            self.config.password.as_deref(),
        )
    }

    /// Starts the upgrade in the background.
    pub fn start(self: &Arc<Self>) -> Result<(), UpgradeError> {
        if !self.config.enabled {
            return Err(UpgradeError::NotConfigured);
        }
        {
            let mut s = self.status.lock().expect("upgrade lock");
            if !matches!(s.phase, Phase::Idle | Phase::Failed | Phase::RolledBack) {
                return Err(UpgradeError::Conflict(format!(
                    "the upgrade is {:?} already",
                    s.phase
                )));
            }
            if self.env.topology.primary() != self.from {
                return Err(UpgradeError::Conflict(format!(
                    "{} is not the primary",
                    self.config.from_backend
                )));
            }
            s.phase = Phase::Preparing;
            s.error = None;
            s.started_at_ms = Some(crate::topology::now_ms());
            s.cut = None;
            s.rollback = None;
        }
        self.cut_now.store(false, Relaxed);
        let up = self.clone();
        tokio::spawn(async move {
            if let Err(e) = up.run().await {
                up.fail(e);
            }
        });
        Ok(())
    }

    /// Asks for the cut: when a window has passed (`Ready`), or at once with `force`.
    pub fn request_cut(&self, force: bool) -> Result<(), UpgradeError> {
        match self.phase() {
            Phase::Ready => {}
            Phase::Shadowing if force => {}
            other => {
                return Err(UpgradeError::Conflict(format!(
                    "cannot cut while {other:?}: a shadow window must pass first (or \"force\": true while shadowing)"
                )));
            }
        }
        self.cut_now.store(true, Relaxed);
        Ok(())
    }

    /// Moves back to the old server (after the cut).
    pub fn rollback(self: &Arc<Self>) -> Result<(), UpgradeError> {
        {
            let mut s = self.status.lock().expect("upgrade lock");
            if s.phase != Phase::Cut {
                return Err(UpgradeError::Conflict(format!(
                    "nothing to roll back while {:?}",
                    s.phase
                )));
            }
            s.phase = Phase::RollingBack;
        }
        let up = self.clone();
        tokio::spawn(async move {
            let logins = (up.login(up.to), up.login(up.from));
            match cut::switch(&up, up.to, up.from, logins, false).await {
                Ok(report) => up.set(|s| {
                    s.phase = Phase::RolledBack;
                    s.rollback = Some(report);
                }),
                Err(e) => up.set(|s| {
                    s.phase = Phase::Cut;
                    s.error = Some(format!("rollback: {e}"));
                }),
            }
        });
        Ok(())
    }

    /// Confirms the cut: the rollback path and the marker are removed.
    pub async fn confirm(&self) -> Result<(), UpgradeError> {
        if self.phase() != Phase::Cut {
            return Err(UpgradeError::Conflict(format!(
                "nothing to confirm while {:?}",
                self.phase()
            )));
        }
        let (old, new) = (self.login(self.from), self.login(self.to));
        for (i, db) in self.config.databases.iter().enumerate() {
            let result = async {
                let o = old.connect(db).await?;
                let n = new.connect(db).await?;
                replication::unsubscribe(&o, &format!("{REVERSE}_{i}")).await?;
                replication::unpublish(&n, REVERSE).await?;
                replication::unpublish(&o, FORWARD).await?;
                replication::drop_marker(&n).await?;
                replication::drop_marker(&o).await
            }
            .await;
            if let Err(e) = result {
                self.set(|s| s.error = Some(format!("confirm: {e}")));
                return Err(UpgradeError::Conflict(e));
            }
        }
        self.set(|s| s.phase = Phase::Confirmed);
        Ok(())
    }

    fn finished(&self) -> bool {
        matches!(
            self.phase(),
            Phase::Failed | Phase::RolledBack | Phase::Confirmed | Phase::Idle
        )
    }

    async fn run(self: &Arc<Self>) -> Result<(), String> {
        let (old, new) = (self.login(self.from), self.login(self.to));
        self.prepare(&old, &new).await?;
        self.start_stages(&old, &new);
        self.set(|s| s.phase = Phase::Syncing);
        loop {
            let mut syncing = 0;
            for db in &self.config.databases {
                syncing += replication::tables_syncing(&new.connect(db).await?).await?;
            }
            self.set(|s| s.tables_syncing = syncing);
            if syncing == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.set(|s| s.phase = Phase::Shadowing);
        loop {
            self.refresh_lag(&old).await;
            let passed = self.window().await?;
            if passed && !self.config.auto_cut {
                self.set(|s| s.phase = Phase::Ready);
                while !self.cut_now.load(Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            if passed || self.cut_now.load(Relaxed) {
                self.set(|s| s.phase = Phase::Cutting);
                match cut::switch(self, self.from, self.to, (old.clone(), new.clone()), true).await
                {
                    Ok(report) => {
                        self.set(|s| {
                            s.phase = Phase::Cut;
                            s.cut = Some(report);
                        });
                        return Ok(());
                    }
                    Err(e) => {
                        // The old server still serves; try again after another window.
                        tracing::warn!("upgrade cut abandoned: {e}");
                        self.set(|s| {
                            s.phase = Phase::Shadowing;
                            s.error = Some(format!("cut: {e}"));
                        });
                        self.cut_now.store(false, Relaxed);
                    }
                }
            }
        }
    }

    /// Schema, marker, publication and subscription for every database.
    async fn prepare(&self, old: &Login, new: &Login) -> Result<(), String> {
        let admin = new.connect("postgres").await?;
        replication::check_logical(&old.connect("postgres").await?, &self.config.from_backend)
            .await?;
        replication::check_logical(&admin, &self.config.to_backend).await?;
        let bindir = crate::embedded::find_bindir().map_err(|e| e.to_string())?;
        for (i, db) in self.config.databases.iter().enumerate() {
            replication::ensure_database(&admin, db).await?;
            let o = old.connect(db).await?;
            let n = new.connect(db).await?;
            replication::create_marker(&o).await?;
            if self.config.copy_schema {
                replication::copy_schema(&bindir, old, &n, db).await?;
            }
            replication::create_marker(&n).await?;
            replication::publish(&o, FORWARD).await?;
            let name = format!("{FORWARD}_{i}");
            replication::subscribe(&n, &name, &old.conninfo(db), FORWARD, true, true).await?;
        }
        Ok(())
    }

    fn start_stages(self: &Arc<Self>, old: &Login, new: &Login) {
        for (stage, report) in self.config.stages.iter().zip(&self.stage_reports) {
            let database = stage
                .database
                .clone()
                .unwrap_or_else(|| self.config.databases[0].clone());
            let up = self.clone();
            tokio::spawn(stages::run(
                stage.clone(),
                database,
                old.clone(),
                new.clone(),
                report.clone(),
                move || up.finished(),
            ));
        }
    }

    async fn refresh_lag(&self, old: &Login) {
        let mut lag = Vec::new();
        for (i, db) in self.config.databases.iter().enumerate() {
            let bytes = match old.connect(db).await {
                Ok(c) => replication::slot_lag(&c, &format!("{FORWARD}_{i}"))
                    .await
                    .ok()
                    .flatten(),
                Err(_) => None,
            };
            lag.push((db.clone(), bytes));
        }
        self.set(|s| s.lag_bytes = lag);
    }

    /// One shadow window; whether it allows the cut. Ends early on a forced cut.
    async fn window(&self) -> Result<bool, String> {
        let req = ShadowRequest {
            target: self.config.to_backend.clone(),
            sample: None,
            reads_only: Some(true),
            window: Some(self.config.shadow_window.as_secs().max(1)),
            queue: None,
            connections: None,
        };
        let run = loop {
            match self.shadows.start(req.clone()).await {
                Ok(run) => break run,
                Err(e) => {
                    // An operator's own shadow run holds the comparator: wait for it.
                    self.set(|s| s.error = Some(format!("shadow window: {e}")));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if self.cut_now.load(Relaxed) {
                        return Ok(false);
                    }
                }
            }
        };
        let id = run.id();
        self.set(|s| s.shadow_id = Some(id));
        while run.running() {
            if self.cut_now.load(Relaxed) {
                self.shadows.stop(id);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (compared, diff_count) = (run.compared(), run.diff_count());
        let passed = !self.cut_now.load(Relaxed)
            && diff_count <= self.config.cut_threshold
            && compared >= self.config.min_compared;
        self.set(|s| {
            s.windows.push(Window {
                shadow_id: id,
                compared,
                diff_count,
                passed,
            });
            if s.windows.len() > 100 {
                s.windows.remove(0);
            }
        });
        Ok(passed)
    }
}
