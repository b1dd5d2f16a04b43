//! The startup handshake: TLS negotiation, cancel requests, client authentication, choosing
//! the pool, and the greeting (`AuthenticationOk`, `ParameterStatus`, `BackendKeyData`,
//! `ReadyForQuery`).

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cancel::Registration;
use super::env::SessionEnv;
use super::state::SessionState;
use super::{SessionError, fatal};
use crate::config::ClientTlsMode;
use crate::hooks::SessionInfo;
use crate::plugins::bindings::AuthRequest;
use crate::pool::{CheckoutError, Pool, PoolKey, ServerError};
use crate::wire::auth;
use crate::wire::messages::{self, sqlstate};
use crate::wire::startup::{MAX_STARTUP_LEN, StartupPacket, parse_startup};
use crate::wire::stream::Stream;

/// A client that passed login.
pub struct LoggedIn {
    /// Its socket.
    pub stream: Stream,
    /// Bytes the client already sent after its last login message.
    pub leftover: BytesMut,
    /// Login user.
    pub user: String,
    /// Database.
    pub database: String,
    /// The primary's pool for this session's database and backend role.
    pub pool: Arc<Pool>,
    /// The role server connections log in as (the login user unless a component mapped it).
    pub server_user: String,
    /// The password for server logins, when known.
    pub server_password: Option<String>,
    /// What hooks see about this session.
    pub info: std::sync::Arc<SessionInfo>,
    /// Its session state as implied by startup parameters.
    pub state: SessionState,
    /// Its cancel key.
    pub cancel: Registration,
    /// Its row in `SHOW CLIENTS`.
    pub presence: crate::observe::clients::ClientHandle,
}

/// Where a login leads.
pub enum Entered {
    /// A client of a backend database.
    Client(Box<LoggedIn>),
    /// An administrator in the SQL admin console: its socket, bytes already read, user.
    Console(Stream, BytesMut, String),
}

/// Runs the startup phase. `Ok(None)` means the connection was a cancel request or ended
/// politely; errors have already been reported to the client.
pub async fn login(
    env: &Arc<SessionEnv>,
    mut stream: Stream,
    peer: std::net::SocketAddr,
    has_slot: bool,
) -> Result<Option<Entered>, SessionError> {
    let mut buf = BytesMut::with_capacity(1024);
    let params = loop {
        let packet = loop {
            match parse_startup(&buf) {
                Ok(Some((packet, used))) => {
                    buf.advance(used);
                    break packet;
                }
                Ok(None) => {}
                Err(e) => {
                    fatal(
                        &mut stream,
                        sqlstate::PROTOCOL_VIOLATION,
                        &format!("invalid startup packet: {e}"),
                    )
                    .await;
                    return Err(SessionError::Protocol(e.to_string()));
                }
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(None);
            }
            if buf.len() > MAX_STARTUP_LEN + 16 {
                return Err(SessionError::Protocol("startup packet too long".into()));
            }
        };
        match packet {
            StartupPacket::SslRequest => {
                if !buf.is_empty() {
                    // Bytes sent before the TLS handshake could be injected by a man in the middle.
                    fatal(
                        &mut stream,
                        sqlstate::PROTOCOL_VIOLATION,
                        "unencrypted data after SSL request",
                    )
                    .await;
                    return Err(SessionError::Protocol("data after SSLRequest".into()));
                }
                stream = match (env.login.tls.as_ref(), stream) {
                    (Some(acceptor), Stream::Plain(tcp)) => {
                        tcp_write(&tcp, b"S").await?;
                        let tls = acceptor.accept(tcp).await?;
                        Stream::ServerTls(Box::new(tls))
                    }
                    (_, mut other) => {
                        other.write_all(b"N").await?;
                        other
                    }
                };
            }
            StartupPacket::GssEncRequest => stream.write_all(b"N").await?,
            StartupPacket::Cancel { pid, secret } => {
                env.login.cancels.cancel((pid, secret)).await;
                return Ok(None);
            }
            StartupPacket::Startup { params } => break params,
        }
    };
    if !has_slot {
        let msg = format!(
            "sorry, too many clients already (pool.max_connections = {})",
            env.limits.max_connections
        );
        fatal(&mut stream, sqlstate::TOO_MANY_CONNECTIONS, &msg).await;
        return Err(SessionError::Refused(msg));
    }
    if env.login.tls_mode == ClientTlsMode::Require && !stream.is_tls() {
        let msg = "TLS is required: connect with sslmode=require";
        fatal(&mut stream, sqlstate::INVALID_AUTHORIZATION, msg).await;
        return Err(SessionError::Refused(msg.into()));
    }
    if StartupPacket::param(&params, "replication").is_some_and(|v| v != "false" && v != "0") {
        let msg = "replication connections are not supported by the proxy";
        fatal(&mut stream, sqlstate::FEATURE_NOT_SUPPORTED, msg).await;
        return Err(SessionError::Refused(msg.into()));
    }
    let Some(user) = StartupPacket::param(&params, "user").map(str::to_owned) else {
        let msg = "no PostgreSQL user name specified in startup packet";
        fatal(&mut stream, sqlstate::INVALID_AUTHORIZATION, msg).await;
        return Err(SessionError::Refused(msg.into()));
    };
    let database = StartupPacket::param(&params, "database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_owned();

    let password = super::auth::authenticate(env, &mut stream, &mut buf, &user, peer.ip()).await?;
    if super::console::admit(env, &mut stream, &user, &database, password.as_deref()).await? {
        return Ok(Some(Entered::Console(stream, buf, user)));
    }
    let pipeline = env.pipeline.load_full();
    let by_component = env.login.auth.method == crate::config::AuthMethod::Component;
    if by_component && !pipeline.has_authenticate() {
        let reason = "[auth] method = \"component\" but no component has an Authenticate hook";
        return Err(super::auth::refuse_identity(env, &mut stream, &user, peer.ip(), reason).await);
    }
    let identity = if pipeline.has_authenticate() {
        let request = AuthRequest {
            user: user.clone(),
            database: database.clone(),
            client_addr: peer.to_string(),
            tls: stream.is_tls(),
            credential: password.clone(),
            params: params.clone(),
        };
        match pipeline.authenticate(&request) {
            Ok(identity) => Some(identity),
            Err(refused) if by_component => {
                return Err(super::auth::refuse_identity(
                    env,
                    &mut stream,
                    &user,
                    peer.ip(),
                    &format!("{} ({})", refused.message, refused.code),
                )
                .await);
            }
            Err(refused) => {
                fatal(&mut stream, &refused.code, &refused.message).await;
                return Err(SessionError::Refused(refused.message));
            }
        }
    } else {
        None
    };
    let mapped = identity.as_ref().and_then(|i| i.backend_role.clone());
    if let Some(role) = mapped.as_deref()
        && role != user
        && !env.login.auth.allowed_roles.iter().any(|r| r == role)
    {
        let reason = format!(
            "a component mapped the session to role {role:?}, which [auth] allowed_roles does not list"
        );
        return Err(
            super::auth::refuse_identity(env, &mut stream, &user, peer.ip(), &reason).await,
        );
    }
    let server_user = mapped.unwrap_or_else(|| user.clone());
    let server_password = password
        .clone()
        .filter(|_| env.login.auth.passthrough)
        .or_else(|| {
            env.login
                .users
                .load()
                .get(&server_user)
                .and_then(|s| s.plaintext().map(str::to_owned))
        })
        .or_else(|| env.login.auth.server_password.clone());
    let primary = &env.topology.nodes[env.topology.primary()].target;
    let key = PoolKey {
        node: primary.node.clone(),
        database: database.clone(),
        user: server_user.clone(),
    };
    let pool = env
        .pools
        .get_or_create(key, primary, server_password.clone());
    if env.login.auth.passthrough {
        // The backend is the judge of the password; remember it for this user's pool.
        let pw = password.clone().unwrap_or_default();
        if let Err(e) = super::auth::check_with_backend(env, &pool, &pw, peer.ip()).await {
            report_server_error(&mut stream, &e).await;
            return Err(SessionError::Refused(e.to_string()));
        }
        pool.set_password(&pw);
    }
    let server_params = match pool.server_params().await {
        Ok(p) => p,
        Err(CheckoutError::Connect(e)) => {
            report_server_error(&mut stream, &e).await;
            return Err(SessionError::Refused(e.to_string()));
        }
        Err(e) => {
            fatal(&mut stream, sqlstate::TOO_MANY_CONNECTIONS, &e.to_string()).await;
            return Err(SessionError::Refused(e.to_string()));
        }
    };

    let cancel = env.login.cancels.register();
    let mut out = Vec::with_capacity(512);
    messages::authentication(&mut out, 0, &[]);
    for (name, value) in server_params.iter() {
        let client_value = params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        messages::parameter_status(&mut out, name, client_value.unwrap_or(value));
    }
    messages::backend_key_data(&mut out, cancel.key.0, cancel.key.1);
    messages::ready_for_query(&mut out, b'I');
    stream.write_all(&out).await?;
    let info = SessionInfo {
        session_id: ((cancel.key.0 as u32 as u64) << 32) | cancel.key.1 as u32 as u64,
        user: user.clone(),
        database: database.clone(),
        application_name: StartupPacket::param(&params, "application_name")
            .unwrap_or_default()
            .to_owned(),
        client_addr: peer.to_string(),
        tenant: identity.as_ref().and_then(|i| i.tenant.clone()),
        attributes: identity.map(|i| i.attributes).unwrap_or_default(),
        search_path: StartupPacket::param(&params, "search_path")
            .map(|p| p.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default(),
    };
    let presence = env.clients.register(crate::observe::clients::NewClient {
        user: user.clone(),
        database: database.clone(),
        addr: peer,
        tls: stream.is_tls(),
        application_name: info.application_name.clone(),
    });
    Ok(Some(Entered::Client(Box::new(LoggedIn {
        presence,
        stream,
        leftover: buf,
        user,
        database,
        pool,
        server_user,
        server_password,
        info: std::sync::Arc::new(info),
        state: SessionState::from_startup(&params, &server_params),
        cancel,
    }))))
}

async fn tcp_write(tcp: &tokio::net::TcpStream, data: &[u8]) -> std::io::Result<()> {
    let mut written = 0;
    while written < data.len() {
        tcp.writable().await?;
        match tcp.try_write(&data[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Tells the client why the backend refused, keeping the backend's SQLSTATE when there is one.
async fn report_server_error(stream: &mut Stream, e: &ServerError) {
    match e {
        ServerError::Rejected(f) => fatal(stream, &f.code, &f.message).await,
        other => fatal(stream, sqlstate::CANNOT_CONNECT, &other.to_string()).await,
    }
}

/// Parses a users file into a lookup table.
pub fn load_users(text: &str) -> Result<std::collections::HashMap<String, auth::Secret>, String> {
    Ok(auth::parse_users_file(text)?.into_iter().collect())
}
