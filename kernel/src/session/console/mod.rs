//! The SQL admin console: a client that logs in to the admin database (`[admin] database`,
//! `heliosproxy` by default) as one of `[admin] users` talks to the proxy itself, with
//! PgBouncer's commands — `SHOW POOLS|CLIENTS|SERVERS|STATS|DATABASES|CONFIG|VERSION|LISTS`
//! ([`show`]) and `PAUSE`, `RESUME`, `RELOAD`, `KILL`, `RECONNECT` ([`commands`]) — over the
//! simple query protocol.

mod commands;
mod show;

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::env::SessionEnv;
use crate::wire::frame::split_message;
use crate::wire::messages::{self, sqlstate};
use crate::wire::results;
use crate::wire::stream::Stream;

/// A result the console answers: column names and text rows, then the command tag.
pub struct Answer {
    /// Column names.
    pub columns: Vec<&'static str>,
    /// Rows; `None` is NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// `CommandComplete` tag.
    pub tag: String,
}

impl Answer {
    /// A result set tagged `SHOW`.
    pub fn rows(columns: Vec<&'static str>, rows: Vec<Vec<Option<String>>>) -> Answer {
        Answer {
            columns,
            rows,
            tag: "SHOW".into(),
        }
    }

    /// A command with no rows.
    pub fn done(tag: &str) -> Answer {
        Answer {
            columns: Vec::new(),
            rows: Vec::new(),
            tag: tag.into(),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        if !self.columns.is_empty() {
            results::row_description(out, &self.columns, &[]);
            for r in &self.rows {
                results::data_row(out, self.columns.len(), r);
            }
        }
        results::command_complete(out, &self.tag);
    }
}

/// An error the console reports (`SQLSTATE`, message).
pub type ConsoleError = (&'static str, String);

/// Serves a logged-in admin until it leaves. `leftover` holds bytes already read.
pub async fn serve(env: Arc<SessionEnv>, mut stream: Stream, mut buf: BytesMut, user: String) {
    tracing::info!(%user, "admin console session started");
    let limit = env.limits.max_message_bytes;
    loop {
        let (tag, body) = match split_message(&buf, limit) {
            Ok(Some((tag, body))) => (tag, body.to_vec()),
            Ok(None) => match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
            Err(e) => {
                super::fatal(&mut stream, sqlstate::PROTOCOL_VIOLATION, &e.to_string()).await;
                return;
            }
        };
        buf.advance(5 + body.len());
        let mut out = Vec::new();
        match tag {
            b'X' => return,
            b'Q' => {
                let sql = String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(&body));
                for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    match run(&env, statement, &user).await {
                        Ok(answer) => answer.encode(&mut out),
                        Err((code, message)) => {
                            messages::error_response(&mut out, "ERROR", code, &message);
                            break;
                        }
                    }
                }
                if sql.trim().trim_matches(';').trim().is_empty() {
                    out.extend_from_slice(&[b'I', 0, 0, 0, 4]);
                }
                messages::ready_for_query(&mut out, b'I');
            }
            b'S' => messages::ready_for_query(&mut out, b'I'),
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H' => {
                // Only the simple protocol: say so once, then the client's `Sync` gets its
                // `ReadyForQuery`.
                if tag == b'P' {
                    messages::error_response(
                        &mut out,
                        "ERROR",
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "the admin console accepts the simple query protocol only",
                    );
                }
            }
            other => {
                let msg = format!(
                    "unexpected message '{}' in the admin console",
                    other as char
                );
                super::fatal(&mut stream, sqlstate::PROTOCOL_VIOLATION, &msg).await;
                return;
            }
        }
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Runs one console command.
async fn run(env: &Arc<SessionEnv>, statement: &str, user: &str) -> Result<Answer, ConsoleError> {
    let words: Vec<String> = statement
        .split_whitespace()
        .map(|w| w.trim_matches('"').to_owned())
        .collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let arg = words.get(1).map(String::as_str);
    match upper.first().map(String::as_str) {
        Some("SHOW") => show::show(env, upper.get(1).map(String::as_str).unwrap_or("")),
        Some("PAUSE") => commands::pause(env, arg).await,
        Some("RESUME") => commands::resume(env, arg),
        Some("RELOAD") => commands::reload(env, user).await,
        Some("KILL") => commands::kill(env, arg, user),
        Some("RECONNECT") => commands::reconnect(env, arg),
        // psql and drivers send these on their own.
        Some("SET") => Ok(Answer::done("SET")),
        _ => Err((
            sqlstate::SYNTAX_ERROR,
            format!(
                "unknown admin console command: {statement:?} (SHOW POOLS|CLIENTS|SERVERS|STATS|\
                 DATABASES|CONFIG|VERSION|LISTS, PAUSE, RESUME, RELOAD, KILL, RECONNECT)"
            ),
        )),
    }
}

/// Whether `database` names a database clients use (a pool exists or a client is on it).
fn known_database(env: &SessionEnv, database: &str) -> bool {
    env.pools.all().iter().any(|p| p.key.database == database)
        || env.clients.all().iter().any(|c| c.database == database)
}

/// Logs in an admin: `Ok(true)` when `database` is the console's and the user may enter
/// (the caller then serves the console), `Ok(false)` when this is an ordinary login.
pub async fn admit(
    env: &SessionEnv,
    stream: &mut Stream,
    user: &str,
    database: &str,
    password: Option<&str>,
) -> Result<bool, super::SessionError> {
    let Some(console) = env.console.as_ref() else {
        return Ok(false);
    };
    if database != console.config.admin.database {
        return Ok(false);
    }
    let allowed = console.config.admin.users.iter().any(|u| u == user);
    // Pass-through logins were not checked yet: the users file is the judge here.
    let verified = !env.login.auth.passthrough
        || env
            .login
            .users
            .load()
            .get(user)
            .zip(password)
            .is_some_and(|(s, p)| crate::wire::auth::verify_cleartext(s, user, p));
    if !allowed || !verified {
        let msg = format!("user \"{user}\" is not allowed in the admin console");
        super::fatal(stream, sqlstate::INVALID_AUTHORIZATION, &msg).await;
        return Err(super::SessionError::Refused(msg));
    }
    let mut out = Vec::new();
    messages::authentication(&mut out, 0, &[]);
    for (name, value) in [
        ("server_version", "15.0 (heliosproxy admin console)"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("application_name", "heliosproxy"),
    ] {
        messages::parameter_status(&mut out, name, value);
    }
    messages::backend_key_data(&mut out, 0, 0);
    messages::ready_for_query(&mut out, b'I');
    stream.write_all(&out).await?;
    Ok(true)
}
