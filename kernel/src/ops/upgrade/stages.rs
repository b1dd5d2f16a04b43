//! The upgrade's stages: operator SQL run on its tick against the new (or old) server for
//! as long as the upgrade runs, each run's outcome kept for `GET /api/upgrade`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::SimpleQueryMessage;

use super::replication::Login;
use crate::config::{StageConfig, StageServer};

/// What a stage did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageReport {
    /// Its name.
    pub name: String,
    /// `to` or `from`.
    pub on: &'static str,
    /// Runs that succeeded.
    pub runs: u64,
    /// Runs that failed.
    pub errors: u64,
    /// The first value of the last result's first row, when there was one.
    pub last_result: Option<String>,
    /// Rows the last statement returned or affected.
    pub last_rows: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it last ran, ms since the epoch.
    pub last_run_ms: u64,
}

/// Runs `stage` every tick until `done` says stop.
pub async fn run(
    stage: StageConfig,
    database: String,
    from: Login,
    to: Login,
    report: Arc<Mutex<StageReport>>,
    done: impl Fn() -> bool,
) {
    let login = match stage.on {
        StageServer::To => to,
        StageServer::From => from,
    };
    let mut client = None;
    let mut tick = tokio::time::interval(stage.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if done() {
            return;
        }
        if client
            .as_ref()
            .is_none_or(|c: &tokio_postgres::Client| c.is_closed())
        {
            client = login.connect(&database).await.ok();
        }
        let outcome = match &client {
            None => Err("cannot connect".to_owned()),
            Some(c) => tokio::time::timeout(
                stage.tick.max(Duration::from_secs(5)),
                c.simple_query(&stage.sql),
            )
            .await
            .map_err(|_| "timed out".to_owned())
            .and_then(|r| {
                r.map_err(|e| {
                    e.as_db_error()
                        .map_or(e.to_string(), |d| d.message().to_owned())
                })
            }),
        };
        let mut r = report.lock().expect("stage lock");
        r.last_run_ms = crate::topology::now_ms();
        match outcome {
            Ok(messages) => {
                r.runs += 1;
                r.last_error = None;
                let mut first = None;
                for m in &messages {
                    match m {
                        SimpleQueryMessage::Row(row) if first.is_none() => {
                            first = Some(row.get(0).map(str::to_owned))
                        }
                        SimpleQueryMessage::CommandComplete(n) => r.last_rows = *n,
                        _ => {}
                    }
                }
                r.last_result = first.flatten();
            }
            Err(e) => {
                r.errors += 1;
                r.last_error = Some(e);
                client = None;
            }
        }
    }
}
