//! Running a plan: each recorded session on its own server connection (at most
//! `max_connections` at once), statements in recorded order, optionally at the recorded
//! pacing, compared with what the journal recorded.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::plan::{Plan, ShadowForm, Step};
use super::{DiffMode, Divergence, Job, Outcome};
use crate::ops::statement::{self, Statement};
use crate::ops::target::Target;
use crate::session::env::SessionEnv;

/// What every session's run shares.
pub struct Run {
    /// The proxy's view (credentials).
    pub env: Arc<SessionEnv>,
    /// Where to.
    pub target: Target,
    /// Log in as this user instead of the recorded one.
    pub as_user: Option<String>,
    /// Run writes rolled back.
    pub shadow: bool,
    /// Writes may be kept: otherwise every transaction on the target is read-only.
    pub allow_writes: bool,
    /// What to compare.
    pub diff_mode: DiffMode,
    /// 1.0 = recorded pacing, 0 = as fast as possible.
    pub speed: f64,
    /// Connections at once.
    pub max_connections: usize,
    /// The topology's generation when the target was judged not to be the live primary: a
    /// failover since means judging again.
    pub generation: u64,
}

impl Run {
    /// Runs every session of `plan`, reporting into `job`.
    pub async fn all(self: Arc<Self>, plan: Plan, job: Arc<Job>) {
        let limit = Arc::new(Semaphore::new(self.max_connections.max(1)));
        let started = Instant::now();
        let first_us = plan.first_us;
        let mut tasks = tokio::task::JoinSet::new();
        for session in plan.sessions {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                break;
            };
            if job.cancelled() {
                break;
            }
            let (run, job) = (self.clone(), job.clone());
            tasks.spawn(async move {
                run.session(session, &job, started, first_us).await;
                job.sessions_done.fetch_add(1, Relaxed);
                drop(permit);
            });
        }
        while tasks.join_next().await.is_some() {}
        job.finish(started.elapsed());
    }

    /// One recorded session.
    async fn session(&self, steps: Vec<Step>, job: &Job, started: Instant, first_us: u64) {
        let first = &steps[0].record;
        if !self.allow_writes
            && self.env.topology.generation() != self.generation
            && self.target.is_live_primary(&self.env).await
        {
            job.note_error(
                "the target is the primary now (a failover happened during the replay): \
                 stopped without allow_writes"
                    .into(),
            );
            job.cancel.store(true, Relaxed);
            return;
        }
        let login = self.target.connect(
            &self.env,
            self.as_user.as_deref(),
            &first.user,
            &first.database,
        );
        let mut conn = match login.await {
            Ok(c) => c,
            Err(e) => {
                job.errors.fetch_add(steps.len() as u64, Relaxed);
                job.note_error(format!("session {}: {e}", first.session_id));
                return;
            }
        };
        // A statement the parser calls a read may call a function that writes: without
        // `allow_writes` (and outside shadow mode, whose writes run and are rolled back) every
        // transaction on the target is read-only.
        if !self.allow_writes
            && !self.shadow
            && let Err(e) = conn
                .run_internal("SET default_transaction_read_only = on")
                .await
        {
            job.errors.fetch_add(steps.len() as u64, Relaxed);
            job.note_error(format!("session {}: {e}", first.session_id));
            return;
        }
        let mut bytes = Vec::new();
        let mut idle = true;
        for step in &steps {
            if job.cancelled() {
                return;
            }
            self.pace(step, started, first_us, job).await;
            if self.shadow && step.shadow == ShadowForm::Skip {
                job.skipped.fetch_add(1, Relaxed);
                continue;
            }
            bytes.clear();
            let rolled_back = self.encode(step, &mut bytes);
            // In shadow mode a read outside a transaction block runs read-only, rolled back.
            let read_only = self.shadow
                && idle
                && step.shadow == ShadowForm::AsIs
                && !super::plan::is_transaction_control(&step.record.sql);
            let begin = if rolled_back {
                Some("BEGIN READ WRITE")
            } else if read_only {
                Some("BEGIN READ ONLY")
            } else {
                None
            };
            if let Some(begin) = begin
                && let Err(e) = conn.run_internal(begin).await
            {
                job.errors.fetch_add(1, Relaxed);
                job.note_error(format!("session {}: {e}", first.session_id));
                return;
            }
            let answer = match statement::run(&mut conn, &bytes).await {
                Ok(a) => a,
                Err(e) => {
                    job.errors.fetch_add(1, Relaxed);
                    job.note_error(format!("session {}: {e}", first.session_id));
                    return;
                }
            };
            if begin.is_some() {
                let _ = conn.run_internal("ROLLBACK").await;
            } else {
                idle = answer.status == b'I';
            }
            job.replayed.fetch_add(1, Relaxed);
            if answer.error.is_some() {
                job.errors.fetch_add(1, Relaxed);
            }
            self.compare(step, &answer, job);
        }
        if self.shadow {
            // A transaction the window ended inside of is not left open either.
            let _ = conn.run_internal("ROLLBACK").await;
        }
    }

    /// Appends what `step` sends; whether it runs inside a `BEGIN` … `ROLLBACK` of its own.
    fn encode(&self, step: &Step, out: &mut Vec<u8>) -> bool {
        let r = &step.record;
        let stmt = Statement {
            sql: if self.shadow && step.shadow == ShadowForm::Rollback {
                "ROLLBACK".into()
            } else {
                r.sql.clone()
            },
            param_formats: r.param_formats.clone(),
            params: r.params.clone(),
            result_formats: r.result_formats.clone(),
        };
        stmt.encode(out);
        self.shadow && step.shadow == ShadowForm::RolledBack
    }

    /// Waits until the step's recorded offset (scaled by `speed`) has passed.
    async fn pace(&self, step: &Step, started: Instant, first_us: u64, job: &Job) {
        if self.speed <= 0.0 {
            return;
        }
        let offset_us = step.record.started_at_us.saturating_sub(first_us) as f64 / self.speed;
        let due = started + Duration::from_micros(offset_us as u64);
        while Instant::now() < due && !job.cancelled() {
            let left = due - Instant::now();
            tokio::time::sleep(left.min(Duration::from_millis(100))).await;
        }
    }

    fn compare(&self, step: &Step, answer: &statement::Answer, job: &Job) {
        let r = &step.record;
        let recorded_error = r.error.as_ref().map(|(c, _)| c.clone());
        let rolled = self.shadow && step.shadow == ShadowForm::Rollback;
        let differs = match self.diff_mode {
            DiffMode::None => false,
            _ if rolled => false,
            DiffMode::Rowcount => answer.sum.rows != r.rows || answer.error != recorded_error,
            DiffMode::Rows => {
                answer.sum.rows != r.rows
                    || answer.error != recorded_error
                    || (answer.error.is_none() && answer.sum.checksum() != r.checksum)
            }
        };
        if differs {
            job.diverged(Divergence {
                seq: r.seq,
                session_id: r.session_id,
                statement: helios_analysis::normalize(&r.sql)
                    .unwrap_or_else(|| helios_analysis::UNREADABLE.to_owned()),
                recorded: Outcome {
                    rows: r.rows,
                    checksum: format!("{:08x}", r.checksum),
                    error: recorded_error,
                },
                replayed: Outcome {
                    rows: answer.sum.rows,
                    checksum: format!("{:08x}", answer.sum.checksum()),
                    error: answer.error.clone(),
                },
            });
        }
    }
}
