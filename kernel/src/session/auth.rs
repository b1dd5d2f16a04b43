//! Client authentication: the exchange for each `[auth] method`, and what keeps it from
//! being used against the proxy or its backends.
//!
//! - SCRAM: a user without a verifier (unknown, or with only an MD5 secret) is challenged
//!   with a salt derived from a server secret and the name, the usual iteration count, and
//!   no extra work, so a prober cannot tell it from a real user. PBKDF2 for plaintext
//!   secrets runs on blocking threads, a bounded number at a time, once per user.
//!   Over TLS, `SCRAM-SHA-256-PLUS` binds the exchange to the proxy's certificate.
//! - Pass-through: the backend checks the password, at most a few logins per backend at
//!   once; a failed one never takes a pool slot.
//! - Every failed login counts against the client's address; past the limit the address is
//!   refused for the rest of the window without a password being checked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use super::env::SessionEnv;
use super::{SessionError, fatal};
use crate::config::AuthMethod;
use crate::pool::Pool;
use crate::wire::auth::{self, ScramServer, ScramVerifier, Secret};
use crate::wire::frame::{read_cstr, read_i32, split_message};
use crate::wire::messages::{self, sqlstate};
use crate::wire::scram;
use crate::wire::startup::MAX_STARTUP_LEN;
use crate::wire::stream::Stream;

/// What authentication keeps between logins.
pub struct AuthState {
    /// Secret the stand-in salts of unknown users are derived from.
    secret: [u8; 32],
    /// SCRAM verifiers derived from plaintext secrets, by user.
    derived: Mutex<HashMap<String, ScramVerifier>>,
    /// PBKDF2 derivations running at once.
    pbkdf2: Semaphore,
    /// Pass-through password checks running at once, per backend node.
    passthrough: Mutex<HashMap<String, Arc<Semaphore>>>,
    passthrough_limit: usize,
    /// Failed logins per client address in the current window.
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    max_failures: u32,
    window: Duration,
    /// `tls-server-end-point` data of the proxy's certificate, when clients may use TLS.
    pub tls_end_point: Option<Vec<u8>>,
}

impl AuthState {
    /// State for a proxy whose users file (or, without one, configuration) is `seed`; the
    /// stand-in salts stay the same across restarts while it does.
    pub fn new(
        seed: &[u8],
        tls_end_point: Option<Vec<u8>>,
        passthrough_limit: usize,
        max_failures: u32,
        window: Duration,
    ) -> Self {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"heliosproxy scram stand-in\0");
        h.update(seed);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        AuthState {
            secret: h.finalize().into(),
            derived: Mutex::default(),
            pbkdf2: Semaphore::new(cores),
            passthrough: Mutex::default(),
            passthrough_limit: passthrough_limit.max(1),
            failures: Mutex::default(),
            max_failures,
            window,
            tls_end_point,
        }
    }

    /// Whether `addr` is refused for now after too many failed logins.
    fn throttled(&self, addr: IpAddr) -> bool {
        let failures = self.failures.lock().expect("failures");
        failures
            .get(&addr)
            .is_some_and(|(n, since)| *n >= self.max_failures && since.elapsed() < self.window)
    }

    fn note_failure(&self, addr: IpAddr) {
        let mut failures = self.failures.lock().expect("failures");
        if failures.len() > 100_000 {
            let window = self.window;
            failures.retain(|_, (_, since)| since.elapsed() < window);
        }
        let entry = failures.entry(addr).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    /// The SCRAM verifier for a plaintext secret: derived once per user, off the async
    /// workers, with a salt as stable as a stored verifier's.
    async fn verifier_from_plain(&self, user: &str, password: &str) -> ScramVerifier {
        if let Some(v) = self.derived.lock().expect("derived").get(user) {
            return v.clone();
        }
        let salt = scram::derived_salt(&self.secret, user);
        let password = password.to_owned();
        let v = self
            .pbkdf2(move || {
                ScramVerifier::from_password(&password, &salt, auth::DEFAULT_ITERATIONS)
            })
            .await;
        self.derived
            .lock()
            .expect("derived")
            .insert(user.to_owned(), v.clone());
        v
    }

    /// Runs a PBKDF2 computation on a blocking thread, a bounded number at a time.
    async fn pbkdf2<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let _permit = self.pbkdf2.acquire().await.expect("never closed");
        tokio::task::spawn_blocking(work)
            .await
            .expect("PBKDF2 does not panic")
    }

    fn passthrough_permits(&self, node: &str) -> Arc<Semaphore> {
        self.passthrough
            .lock()
            .expect("passthrough")
            .entry(node.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.passthrough_limit)))
            .clone()
    }
}

/// Authenticates the client; returns the cleartext password when the method revealed it.
pub async fn authenticate(
    env: &SessionEnv,
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    peer: IpAddr,
) -> Result<Option<String>, SessionError> {
    let state = &env.login.auth_state;
    let failed = || format!("password authentication failed for user \"{user}\"");
    if env.login.auth.method != AuthMethod::Trust && state.throttled(peer) {
        let msg = "too many failed login attempts from this address; try again later";
        fatal(stream, sqlstate::INVALID_AUTHORIZATION, msg).await;
        return Err(SessionError::Refused(msg.into()));
    }
    let result = exchange(env, stream, buf, user).await;
    match result {
        Ok(Some(outcome)) => Ok(outcome),
        Ok(None) => {
            state.note_failure(peer);
            fatal(stream, sqlstate::INVALID_PASSWORD, &failed()).await;
            Err(SessionError::Refused(failed()))
        }
        Err(e) => {
            if matches!(e, SessionError::Protocol(_)) {
                state.note_failure(peer);
            }
            Err(e)
        }
    }
}

/// Checks a pass-through password by logging in to the backend with it, a bounded number
/// at a time per backend; a failure is counted against the client's address.
pub async fn check_with_backend(
    env: &SessionEnv,
    pool: &Pool,
    password: &str,
    peer: IpAddr,
) -> Result<(), crate::pool::ServerError> {
    let permits = env.login.auth_state.passthrough_permits(&pool.key.node);
    let _permit = permits.acquire().await.expect("never closed");
    let result = pool.connect_with(Some(password)).await.map(drop);
    if result.is_err() {
        env.login.auth_state.note_failure(peer);
    }
    result
}

/// The exchange itself: `Ok(Some(password))` on success (the password when the method
/// revealed it), `Ok(None)` for a wrong password.
async fn exchange(
    env: &SessionEnv,
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
) -> Result<Option<Option<String>>, SessionError> {
    let users = env.login.users.load();
    let secret = users.get(user);
    let state = &env.login.auth_state;
    match env.login.auth.method {
        AuthMethod::Trust => Ok(Some(None)),
        AuthMethod::Password => {
            send_auth(stream, 3, &[]).await?;
            let body = read_password(stream, buf).await?;
            let (pw, _) = read_cstr(&body, "PasswordMessage").map_err(protocol)?;
            let pw = String::from_utf8_lossy(pw).into_owned();
            if env.login.auth.passthrough {
                return Ok(Some(Some(pw)));
            }
            let Some(secret) = secret.cloned() else {
                return Ok(None);
            };
            let (user, check) = (user.to_owned(), pw.clone());
            let ok = state
                .pbkdf2(move || auth::verify_cleartext(&secret, &user, &check))
                .await;
            Ok(ok.then_some(Some(pw)))
        }
        AuthMethod::Md5 => {
            let mut salt = [0u8; 4];
            rand::rng().fill_bytes(&mut salt);
            send_auth(stream, 5, &salt).await?;
            let body = read_password(stream, buf).await?;
            let (resp, _) = read_cstr(&body, "PasswordMessage").map_err(protocol)?;
            let ok = secret.is_some_and(|s| auth::verify_md5(s, user, salt, resp));
            Ok(ok.then_some(None))
        }
        AuthMethod::ScramSha256 => scram_exchange(env, stream, buf, user, secret).await,
        AuthMethod::Component => {
            if !stream.is_tls() && !env.login.auth.trusted_network {
                let msg =
                    "token logins need TLS (sslmode=require), or [auth] trusted_network = true";
                fatal(stream, sqlstate::INVALID_AUTHORIZATION, msg).await;
                return Err(SessionError::Refused(msg.into()));
            }
            // The token is judged by the Authenticate components, not here.
            send_auth(stream, 3, &[]).await?;
            let body = read_password(stream, buf).await?;
            let (token, _) = read_cstr(&body, "PasswordMessage").map_err(protocol)?;
            Ok(Some(Some(String::from_utf8_lossy(token).into_owned())))
        }
    }
}

/// A login the Authenticate components refused (or mapped to a role config does not allow):
/// counted against the client's address, and answered with the same words whatever the
/// reason, which goes to the log.
pub async fn refuse_identity(
    env: &SessionEnv,
    stream: &mut Stream,
    user: &str,
    peer: IpAddr,
    reason: &str,
) -> SessionError {
    env.login.auth_state.note_failure(peer);
    tracing::warn!(user, client = %peer, "login refused: {reason}");
    let msg = format!("password authentication failed for user \"{user}\"");
    fatal(stream, sqlstate::INVALID_PASSWORD, &msg).await;
    SessionError::Refused(msg)
}

async fn scram_exchange(
    env: &SessionEnv,
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    secret: Option<&Secret>,
) -> Result<Option<Option<String>>, SessionError> {
    let state = &env.login.auth_state;
    let verifier = match secret {
        Some(Secret::Scram(v)) => Some(v.clone()),
        Some(Secret::Plain(p)) => Some(state.verifier_from_plain(user, p).await),
        Some(Secret::Md5(_)) | None => None,
    };
    let known = verifier.is_some();
    let verifier = verifier.unwrap_or_else(|| scram::unknown_user_verifier(&state.secret, user));
    let binding = state.tls_end_point.as_deref().filter(|_| stream.is_tls());
    let mechanisms = if binding.is_some() {
        ScramServer::MECHANISMS_PLUS
    } else {
        ScramServer::MECHANISMS
    };
    send_auth(stream, 10, mechanisms).await?;
    let body = read_password(stream, buf).await?;
    let (mechanism, rest) = read_cstr(&body, "SASLInitialResponse").map_err(protocol)?;
    let (len, data) = read_i32(rest, "SASLInitialResponse").map_err(protocol)?;
    if len < 0 || len as usize != data.len() {
        return Err(refuse(stream, "malformed SASLInitialResponse").await);
    }
    let (server, server_first) = match ScramServer::start(verifier, mechanism, data, binding) {
        Ok(x) => x,
        Err(auth::AuthError::BadMessage("mechanism")) => {
            return Err(refuse(
                stream,
                "client selected an invalid SASL authentication mechanism",
            )
            .await);
        }
        Err(e) => return Err(refuse(stream, &e.to_string()).await),
    };
    send_auth(stream, 11, server_first.as_bytes()).await?;
    let body = read_password(stream, buf).await?;
    match server.finish(&body) {
        Ok(server_final) if known => {
            send_auth(stream, 12, server_final.as_bytes()).await?;
            Ok(Some(None))
        }
        Ok(_) | Err(auth::AuthError::WrongPassword) => Ok(None),
        Err(e) => Err(refuse(stream, &e.to_string()).await),
    }
}

/// Ends the login with a protocol violation.
async fn refuse(stream: &mut Stream, msg: &str) -> SessionError {
    fatal(stream, sqlstate::PROTOCOL_VIOLATION, msg).await;
    SessionError::Protocol(msg.into())
}

fn protocol(e: impl std::fmt::Display) -> SessionError {
    SessionError::Protocol(e.to_string())
}

async fn send_auth(stream: &mut Stream, code: i32, extra: &[u8]) -> Result<(), SessionError> {
    let mut out = Vec::with_capacity(16 + extra.len());
    messages::authentication(&mut out, code, extra);
    stream.write_all(&out).await?;
    Ok(())
}

/// Reads one `PasswordMessage`-family (`p`) message body during login.
async fn read_password(stream: &mut Stream, buf: &mut BytesMut) -> Result<Vec<u8>, SessionError> {
    loop {
        match split_message(buf, MAX_STARTUP_LEN) {
            Ok(Some((b'p', body))) => {
                let body = body.to_vec();
                buf.advance(5 + body.len());
                return Ok(body);
            }
            Ok(Some((other, _))) => {
                let msg = format!(
                    "expected a password message, got message type '{}'",
                    other as char
                );
                return Err(refuse(stream, &msg).await);
            }
            Ok(None) => {}
            Err(e) => return Err(refuse(stream, &e.to_string()).await),
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(SessionError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
}
