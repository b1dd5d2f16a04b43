//! Write load for failover tests: clients writing through the proxy, each transaction a
//! ledger row plus a counter update, and what they saw: every acknowledged commit, every
//! error, how long commits paused; then checks on the new primary that every acknowledged
//! commit is there, applied once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Pg, connect, db_message};

/// One client's outcome: its number, its acknowledged commits and its errors.
pub type ClientOutcome = (i32, Vec<(i32, Instant)>, Vec<String>);

/// The running load.
pub struct WriteLoad {
    tasks: Vec<tokio::task::JoinHandle<ClientOutcome>>,
    disrupted_at: Arc<Mutex<Option<Instant>>>,
    first_commit_after: Arc<Mutex<Option<Instant>>>,
    stop_at: Arc<Mutex<Option<Instant>>>,
}

/// What the load saw.
pub struct LoadOutcome {
    /// Per client.
    pub clients: Vec<ClientOutcome>,
    /// Clients still waiting for an answer when the load was stopped.
    pub blocked: usize,
    /// The longest gap between two commits of one client around the disruption.
    pub pause: Option<Duration>,
}

/// Creates the load's tables (for `clients` clients) on the primary.
pub async fn prepare(primary: &Pg, clients: i32) {
    let p = connect(&primary.direct("postgres")).await.unwrap();
    p.batch_execute(&format!(
        "create table ledger (client int, n int, primary key (client, n));
         create table totals (client int primary key, total int not null);
         insert into totals select g, 0 from generate_series(0, {}) g;",
        clients - 1
    ))
    .await
    .unwrap();
}

impl WriteLoad {
    /// Starts `clients` writers on `url`.
    pub fn start(url: &str, clients: i32) -> WriteLoad {
        let load = WriteLoad {
            tasks: Vec::new(),
            disrupted_at: Arc::default(),
            first_commit_after: Arc::default(),
            stop_at: Arc::default(),
        };
        let tasks = (0..clients)
            .map(|client| {
                let url = url.to_owned();
                let (disrupted_at, first_commit_after, stop_at) = (
                    load.disrupted_at.clone(),
                    load.first_commit_after.clone(),
                    load.stop_at.clone(),
                );
                tokio::spawn(async move {
                    let mut c = connect(&url).await.unwrap();
                    let insert = c
                        .prepare("insert into ledger values ($1, $2)")
                        .await
                        .unwrap();
                    let add = c
                        .prepare("update totals set total = total + 1 where client = $1")
                        .await
                        .unwrap();
                    let (mut acked, mut errors, mut n) = (Vec::new(), Vec::new(), 0i32);
                    loop {
                        if stop_at.lock().unwrap().is_some_and(|t| Instant::now() > t) {
                            break;
                        }
                        n += 1;
                        let result = async {
                            let t = c.transaction().await?;
                            t.execute(&insert, &[&client, &n]).await?;
                            t.execute(&add, &[&client]).await?;
                            t.commit().await
                        }
                        .await;
                        match result {
                            Ok(()) => {
                                acked.push((n, Instant::now()));
                                if disrupted_at.lock().unwrap().is_some() {
                                    first_commit_after
                                        .lock()
                                        .unwrap()
                                        .get_or_insert_with(Instant::now);
                                }
                            }
                            Err(e) => {
                                errors.push(format!(
                                    "{}: {}",
                                    e.code().map(|c| c.code()).unwrap_or("-"),
                                    db_message(&e)
                                ));
                                if c.is_closed() {
                                    break;
                                }
                            }
                        }
                    }
                    (client, acked, errors)
                })
            })
            .collect();
        WriteLoad { tasks, ..load }
    }

    /// Marks the moment the primary was disrupted.
    pub fn disrupted(&self) -> Instant {
        let now = Instant::now();
        *self.disrupted_at.lock().unwrap() = Some(now);
        now
    }

    /// Waits (at most `within`) for a commit after the disruption, lets the load run one
    /// more second, and collects what every client saw; a client that has not answered
    /// 30 s after that counts as blocked.
    pub async fn finish(self, within: Duration) -> LoadOutcome {
        let disrupted = self
            .disrupted_at
            .lock()
            .unwrap()
            .unwrap_or_else(Instant::now);
        let deadline = disrupted + within;
        while self.first_commit_after.lock().unwrap().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        *self.stop_at.lock().unwrap() = Some(Instant::now() + Duration::from_secs(1));
        let (mut clients, mut blocked) = (Vec::new(), 0);
        let give_up = Instant::now() + Duration::from_secs(31);
        for t in self.tasks {
            let left = give_up.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, t).await {
                Ok(outcome) => clients.push(outcome.unwrap()),
                Err(_) => blocked += 1,
            }
        }
        // From just before the disruption on (backends orphaned by it may still commit
        // for a few ms).
        let pause = clients
            .iter()
            .filter_map(|(_, acked, _)| {
                let times: Vec<Instant> = acked
                    .iter()
                    .map(|(_, t)| *t)
                    .filter(|t| *t + Duration::from_millis(200) > disrupted)
                    .collect();
                times.windows(2).map(|w| w[1].duration_since(w[0])).max()
            })
            .max();
        LoadOutcome {
            clients,
            blocked,
            pause,
        }
    }
}

impl LoadOutcome {
    /// Every client's errors.
    pub fn errors(&self) -> Vec<&String> {
        self.clients.iter().flat_map(|(_, _, e)| e).collect()
    }

    /// Commits acknowledged in all.
    pub fn acked(&self) -> usize {
        self.clients.iter().map(|(_, a, _)| a.len()).sum()
    }

    /// Acknowledged commits missing on `pg`; asserts every stored ledger row was counted
    /// exactly once.
    pub async fn missing_on(&self, pg: &Pg) -> usize {
        let s = connect(&pg.direct("postgres")).await.unwrap();
        let mut missing = 0;
        for (client, acked, _) in &self.clients {
            let rows = s
                .query("select n from ledger where client = $1", &[client])
                .await
                .unwrap();
            let stored: HashSet<i32> = rows.iter().map(|r| r.get(0)).collect();
            let lost: Vec<i32> = acked
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| !stored.contains(n))
                .collect();
            if !lost.is_empty() {
                println!(
                    "client {client}: acknowledged but missing: {lost:?}; last acked {:?}",
                    acked.last().map(|a| a.0)
                );
            }
            missing += lost.len();
            let total: i32 = s
                .query_one("select total from totals where client = $1", &[client])
                .await
                .unwrap()
                .get(0);
            assert_eq!(
                total as usize,
                stored.len(),
                "client {client}: every ledger row counted exactly once"
            );
        }
        missing
    }
}
