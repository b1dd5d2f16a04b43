//! Where replay and the shadow comparator send statements: a node of the topology by name,
//! or a candidate server by DSN (`postgres://user:password@host:port/database`), and with
//! which credentials the proxy logs in there as a given user.

use std::sync::Arc;
use std::time::Duration;

use crate::pool::server::{ConnectTarget, ServerConn, ServerError};
use crate::session::env::SessionEnv;

/// A server statements are sent to.
#[derive(Debug, Clone)]
pub struct Target {
    /// How to reach it.
    pub connect: Arc<ConnectTarget>,
    /// The topology node it is, when named by node.
    pub node: Option<usize>,
    /// User, password and database given in a DSN (they override the recorded ones).
    pub dsn_login: Option<DsnLogin>,
}

/// The login parts of a DSN.
#[derive(Debug, Clone, Default)]
pub struct DsnLogin {
    /// User, when given.
    pub user: Option<String>,
    /// Password, when given.
    pub password: Option<String>,
    /// Database, when given.
    pub database: Option<String>,
}

/// Why a target was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Neither a node nor a DSN.
    #[error("unknown node {0:?} (give a node name from [[nodes]] or a postgres:// DSN)")]
    UnknownNode(String),
    /// A DSN that does not parse.
    #[error("bad DSN: {0}")]
    BadDsn(String),
}

/// Whether `spec` names a server by DSN rather than a node.
pub fn is_dsn(spec: &str) -> bool {
    spec.starts_with("postgres://") || spec.starts_with("postgresql://")
}

impl Target {
    /// Resolves `spec`: a `postgres://` or `postgresql://` DSN, else a node name.
    pub fn resolve(env: &SessionEnv, spec: &str) -> Result<Target, TargetError> {
        if let Some(rest) = spec
            .strip_prefix("postgres://")
            .or_else(|| spec.strip_prefix("postgresql://"))
        {
            let (login, host, port) = parse_dsn(rest)?;
            let primary = &env.topology.nodes[env.topology.primary()].target;
            return Ok(Target {
                connect: Arc::new(ConnectTarget {
                    node: format!("{host}:{port}"),
                    host,
                    port,
                    sslmode: crate::config::BackendSslMode::Disable,
                    tls: None,
                    connect_timeout: primary.connect_timeout.max(Duration::from_secs(1)),
                    chaos: Default::default(),
                }),
                node: None,
                dsn_login: Some(login),
            });
        }
        let node = env
            .topology
            .by_name(spec)
            .ok_or_else(|| TargetError::UnknownNode(spec.to_owned()))?;
        Ok(Target {
            connect: env.topology.nodes[node].target.clone(),
            node: Some(node),
            dsn_login: None,
        })
    }

    /// Whether this is the server the proxy sends writes to now: the primary node by name or
    /// by host and port, or — whatever name a DSN gives it (`localhost`, another address) —
    /// the same server as the primary by its own word: the same system identifier and
    /// postmaster start time, asked of both. A clone restored from the primary's backup
    /// shares its system identifier but not its start time.
    pub async fn is_live_primary(&self, env: &SessionEnv) -> bool {
        let primary = env.topology.primary();
        let at = &env.topology.nodes[primary].target;
        if self.node == Some(primary)
            || (self.connect.host == at.host && self.connect.port == at.port)
        {
            return true;
        }
        let Some(dsn) = &self.dsn_login else {
            return false;
        };
        let user = dsn.user.as_deref().unwrap_or("postgres");
        let database = dsn.database.as_deref().unwrap_or("postgres");
        let Some(here) = self.identity(env, user, database).await else {
            return false;
        };
        let primary_target = Target {
            connect: at.clone(),
            node: Some(primary),
            dsn_login: None,
        };
        primary_target.identity(env, user, database).await == Some(here)
    }

    /// The server's identity (system identifier and postmaster start time), when it answers.
    async fn identity(&self, env: &SessionEnv, user: &str, database: &str) -> Option<String> {
        let ask = async {
            let mut conn = self.connect(env, None, user, database).await.ok()?;
            let a = conn
                .query_rows(
                    "SELECT system_identifier::text || ':' || pg_postmaster_start_time()::text \
                     FROM pg_control_system()",
                )
                .await
                .ok()?;
            a.rows.first()?.first()?.clone()
        };
        tokio::time::timeout(Duration::from_secs(5), ask)
            .await
            .ok()
            .flatten()
    }

    /// Logs in on `database` (a DSN's database wins) as `as_user`, else the DSN's user,
    /// else `recorded_user`. A node gets the password the proxy knows for that user; a DSN
    /// only its own password, for its own user: the proxy's credentials never go to a server
    /// outside `[[nodes]]` (it could ask for them in clear text).
    pub async fn connect(
        &self,
        env: &SessionEnv,
        as_user: Option<&str>,
        recorded_user: &str,
        database: &str,
    ) -> Result<ServerConn, ServerError> {
        let (user, database, password) = match &self.dsn_login {
            Some(dsn) => {
                let user = as_user.or(dsn.user.as_deref()).unwrap_or(recorded_user);
                let password = dsn
                    .password
                    .clone()
                    .filter(|_| dsn.user.as_deref() == Some(user));
                (user, dsn.database.as_deref().unwrap_or(database), password)
            }
            None => {
                let user = as_user.unwrap_or(recorded_user);
                (user, database, password_for(env, database, user))
            }
        };
        ServerConn::connect(self.connect.clone(), user, database, password.as_deref()).await
    }

    /// The target as shown in reports (never with a password).
    pub fn describe(&self) -> String {
        self.connect.node.clone()
    }
}

/// The password the proxy logs in to a backend with as `user`: what its pool uses, the
/// users file's, or `[auth] server_password`.
pub fn password_for(env: &SessionEnv, database: &str, user: &str) -> Option<String> {
    env.pools.password_for(database, user).or_else(|| {
        env.login
            .users
            .load()
            .get(user)
            .and_then(|s| s.plaintext().map(str::to_owned))
            .or_else(|| env.login.auth.server_password.clone())
    })
}

/// `user:password@host:port/database` (every part but the host optional).
fn parse_dsn(rest: &str) -> Result<(DsnLogin, String, u16), TargetError> {
    let bad = |why: &str| TargetError::BadDsn(why.to_owned());
    let rest = rest.split('?').next().unwrap_or_default();
    let (auth, hostpart) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let (hostport, database) = match hostpart.split_once('/') {
        Some((h, d)) => (h, (!d.is_empty()).then(|| d.to_owned())),
        None => (hostpart, None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>().map_err(|_| bad("port is not a number"))?,
        ),
        None => (hostport, 5432),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let (user, password) = match auth {
        Some(a) => match a.split_once(':') {
            Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
            None => (Some(a.to_owned()), None),
        },
        None => (None, None),
    };
    Ok((
        DsnLogin {
            user: user.filter(|u| !u.is_empty()),
            password,
            database,
        },
        host.to_owned(),
        port,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsns_parse_with_and_without_their_optional_parts() {
        let (login, host, port) = parse_dsn("app:s3cret@127.0.0.1:6543/shop").unwrap();
        assert_eq!((host.as_str(), port), ("127.0.0.1", 6543));
        assert_eq!(login.user.as_deref(), Some("app"));
        assert_eq!(login.password.as_deref(), Some("s3cret"));
        assert_eq!(login.database.as_deref(), Some("shop"));
        let (login, host, port) = parse_dsn("db.internal").unwrap();
        assert_eq!((host.as_str(), port), ("db.internal", 5432));
        assert!(login.user.is_none() && login.database.is_none());
        assert!(parse_dsn("u@:x/db").is_err());
        assert!(parse_dsn("@/db").is_err());
    }
}
