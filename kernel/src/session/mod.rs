//! Client sessions: the startup handshake and login ([`login`]), then the query loop
//! ([`relay`]) that lends server connections according to the pooling mode, the steps a
//! statement passes on its way ([`steps`]), and what happens when a server is lost
//! ([`recovery`]).

pub mod auth;
pub mod cancel;
pub mod console;
pub mod cursors;
pub mod env;
pub mod isolation;
pub mod login;
pub mod recovery;
pub mod relay;
pub mod served;
pub mod state;
pub mod statements;
pub mod steps;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::wire::messages;
use crate::wire::stream::Stream;
use env::SessionEnv;

/// Why a session ended early; what the client was told is in the message.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client's socket failed or closed.
    #[error("client I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The client broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Login was refused.
    #[error("login refused: {0}")]
    Refused(String),
    /// The client took too long to log in.
    #[error("login timed out")]
    LoginTimeout,
}

/// Serves one accepted client connection until it ends. `permit` is `None` when the client
/// exceeds `pool.max_connections`; it is then told so after its startup packet.
pub async fn serve(
    env: Arc<SessionEnv>,
    tcp: TcpStream,
    peer: SocketAddr,
    permit: Option<OwnedSemaphorePermit>,
) {
    let _ = tcp.set_nodelay(true);
    let login_timeout = std::time::Duration::from_millis(env.limits.login_timeout_ms);
    let login = tokio::time::timeout(
        login_timeout,
        login::login(&env, Stream::Plain(tcp), peer, permit.is_some()),
    )
    .await;
    let session = match login {
        Ok(Ok(Some(login::Entered::Client(session)))) => *session,
        Ok(Ok(Some(login::Entered::Console(stream, leftover, user)))) => {
            console::serve(env, stream, leftover, user).await;
            drop(permit);
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::info!(%peer, "{e}");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "client did not finish login within {login_timeout:?}");
            return;
        }
    };
    tracing::debug!(%peer, user = %session.user, database = %session.database, "client logged in");
    let result = relay::Relay::new(env, session).run().await;
    drop(permit);
    if let Err(e) = result {
        tracing::debug!(%peer, "session ended: {e}");
    }
}

/// Sends a `FATAL` error and closes the connection.
pub(crate) async fn fatal(stream: &mut Stream, code: &str, message: &str) {
    let mut out = Vec::new();
    messages::error_response(&mut out, "FATAL", code, message);
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}
