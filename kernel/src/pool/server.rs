//! One server connection: connecting, TLS, logging in to the backend, and the facts the
//! kernel keeps about it (parameters, key data, prepared statements, applied session state).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::BackendSslMode;
use crate::wire::frame::{read_cstr, split_message};
use crate::wire::messages::{self, ErrorFields};
use crate::wire::startup::{encode_ssl_request, encode_startup};
use crate::wire::stream::Stream;

/// Largest message accepted from a backend (PostgreSQL's own limit is 1 GiB).
pub const MAX_SERVER_MESSAGE: usize = 1 << 30;

/// Where and how to reach one backend node.
#[derive(Debug)]
pub struct ConnectTarget {
    /// Node name from config.
    pub node: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS mode.
    pub sslmode: BackendSslMode,
    /// TLS connector when `sslmode` is not `disable`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Whole-connect timeout.
    pub connect_timeout: Duration,
    /// Faults chaos mode injects into traffic to this node.
    pub chaos: Arc<crate::ops::chaos::NodeChaos>,
}

impl ConnectTarget {
    /// Whether `host` is a directory holding the server's Unix-domain socket (as libpq
    /// reads a host that starts with `/`).
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    /// The socket file in that directory for `port`.
    pub fn socket_path(&self) -> std::path::PathBuf {
        std::path::Path::new(&self.host).join(format!(".s.PGSQL.{}", self.port))
    }
}

/// Why a server connection could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// TCP or TLS failed.
    #[error("cannot connect to node {node} ({addr}): {source}")]
    Io {
        /// Node name.
        node: String,
        /// host:port.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The connect deadline passed.
    #[error("timed out connecting to node {0}")]
    Timeout(String),
    /// The backend refused (wrong password, unknown database, too many connections…).
    #[error("{}", .0.message)]
    Rejected(ErrorFields),
    /// The backend asks for a password and none is known for this user.
    #[error("no password is configured for server login as user \"{0}\"")]
    NoPassword(String),
    /// The backend wants TLS behaviour the config does not allow.
    #[error("node {node}: {what}")]
    Tls {
        /// Node name.
        node: String,
        /// What went wrong.
        what: String,
    },
    /// The backend spoke something unexpected.
    #[error("protocol error from node {node}: {what}")]
    Protocol {
        /// Node name.
        node: String,
        /// What.
        what: String,
    },
}

/// A logged-in server connection.
pub struct ServerConn {
    /// The socket.
    pub stream: Stream,
    /// Bytes read from the server not yet processed.
    pub rbuf: BytesMut,
    /// The backend's process id and secret, for cancel requests.
    pub key: (i32, i32),
    /// Which node.
    pub target: Arc<ConnectTarget>,
    /// `ParameterStatus` values reported at login.
    pub params: Vec<(String, String)>,
    /// The statements prepared on this connection under `hp_<hash>` names.
    pub prepared: super::statements::ServerStatements,
    /// Names of the SQL-level (`PREPARE`) statements it has.
    pub sql_prepared: Vec<String>,
    /// Hash of the client session state applied to this connection (0 = as logged in).
    pub state_hash: u64,
    /// When it was opened.
    pub created: Instant,
    /// When it was last returned to the pool.
    pub last_used: Instant,
    /// Its row in `SHOW SERVERS`, set by the pool that opened it.
    pub registration: Option<super::servers::Registration>,
}

impl ServerConn {
    /// Forgets every statement the server had (after `DISCARD ALL` or `DEALLOCATE ALL`).
    pub fn forget_prepared(&mut self) {
        self.prepared.clear();
        self.sql_prepared.clear();
    }

    /// Opens a connection to `target` and logs in as `user` on `database`.
    pub async fn connect(
        target: Arc<ConnectTarget>,
        user: &str,
        database: &str,
        password: Option<&str>,
    ) -> Result<ServerConn, ServerError> {
        let timeout = target.connect_timeout;
        let node = target.node.clone();
        if target.chaos.partitioned() {
            return Err(ServerError::Io {
                addr: format!("{}:{}", target.host, target.port),
                node,
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "chaos mode: the node is partitioned away",
                ),
            });
        }
        match tokio::time::timeout(
            timeout,
            Self::connect_inner(target, user, database, password),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(ServerError::Timeout(node)),
        }
    }

    async fn connect_inner(
        target: Arc<ConnectTarget>,
        user: &str,
        database: &str,
        password: Option<&str>,
    ) -> Result<ServerConn, ServerError> {
        let io_err = |source| ServerError::Io {
            node: target.node.clone(),
            addr: format!("{}:{}", target.host, target.port),
            source,
        };
        let mut stream = if target.is_unix_socket() {
            // A local server's socket directory (the first-run default): no TLS needed.
            Stream::Unix(
                tokio::net::UnixStream::connect(target.socket_path())
                    .await
                    .map_err(io_err)?,
            )
        } else {
            let tcp = TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(io_err)?;
            tcp.set_nodelay(true).map_err(io_err)?;
            negotiate_tls(&target, tcp).await?
        };
        let mut out = Vec::with_capacity(128);
        encode_startup(&mut out, &[("user", user), ("database", database)]);
        stream.write_all(&out).await.map_err(io_err)?;
        let mut conn = ServerConn {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            key: (0, 0),
            target: target.clone(),
            params: Vec::new(),
            prepared: Default::default(),
            sql_prepared: Vec::new(),
            state_hash: 0,
            created: Instant::now(),
            last_used: Instant::now(),
            registration: None,
        };
        conn.login(user, password).await?;
        Ok(conn)
    }

    async fn login(&mut self, user: &str, password: Option<&str>) -> Result<(), ServerError> {
        let mut scram: Option<ScramSha256> = None;
        loop {
            let (tag, body) = self.read_message().await?;
            match tag {
                b'R' => {
                    let code = i32::from_be_bytes(
                        body.get(..4)
                            .and_then(|b| b.try_into().ok())
                            .ok_or_else(|| self.protocol("short authentication message"))?,
                    );
                    let extra = &body[4..];
                    let mut out = Vec::new();
                    match code {
                        0 => continue,
                        3 => {
                            let pw =
                                password.ok_or_else(|| ServerError::NoPassword(user.into()))?;
                            let mut data = pw.as_bytes().to_vec();
                            data.push(0);
                            messages::password_message(&mut out, &data);
                        }
                        5 => {
                            let pw =
                                password.ok_or_else(|| ServerError::NoPassword(user.into()))?;
                            let salt: [u8; 4] = extra
                                .try_into()
                                .map_err(|_| self.protocol("bad MD5 salt"))?;
                            let hash = postgres_protocol::authentication::md5_hash(
                                user.as_bytes(),
                                pw.as_bytes(),
                                salt,
                            );
                            let mut data = hash.into_bytes();
                            data.push(0);
                            messages::password_message(&mut out, &data);
                        }
                        10 => {
                            let pw =
                                password.ok_or_else(|| ServerError::NoPassword(user.into()))?;
                            let offers_scram =
                                extra.split(|&b| b == 0).any(|m| m == b"SCRAM-SHA-256");
                            if !offers_scram {
                                return Err(self.protocol(
                                    "server offers no SASL mechanism the proxy supports",
                                ));
                            }
                            let s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                            messages::sasl_initial_response(&mut out, "SCRAM-SHA-256", s.message());
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram
                                .as_mut()
                                .ok_or_else(|| self.protocol("unexpected SASL continue"))?;
                            s.update(extra)
                                .map_err(|e| self.protocol(&format!("SCRAM: {e}")))?;
                            messages::password_message(&mut out, s.message());
                        }
                        12 => {
                            let mut s = scram
                                .take()
                                .ok_or_else(|| self.protocol("unexpected SASL final"))?;
                            s.finish(extra).map_err(|e| {
                                self.protocol(&format!("SCRAM server signature: {e}"))
                            })?;
                            continue;
                        }
                        other => {
                            return Err(self
                                .protocol(&format!("unsupported authentication request {other}")));
                        }
                    }
                    self.write(&out).await?;
                }
                b'S' => {
                    let (name, rest) = read_cstr(&body, "ParameterStatus")
                        .map_err(|e| self.protocol(&e.to_string()))?;
                    let (value, _) = read_cstr(rest, "ParameterStatus")
                        .map_err(|e| self.protocol(&e.to_string()))?;
                    self.params.push((
                        String::from_utf8_lossy(name).into_owned(),
                        String::from_utf8_lossy(value).into_owned(),
                    ));
                }
                b'K' if body.len() == 8 => {
                    self.key = (
                        i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                        i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
                    );
                }
                b'Z' => return Ok(()),
                b'E' => {
                    let f = ErrorFields::parse(&body).map_err(|e| self.protocol(&e.to_string()))?;
                    return Err(ServerError::Rejected(f));
                }
                b'N' | b'v' => {}
                other => {
                    return Err(self.protocol(&format!(
                        "unexpected message '{}' during login",
                        other as char
                    )));
                }
            }
        }
    }

    pub(super) fn protocol(&self, what: &str) -> ServerError {
        ServerError::Protocol {
            node: self.target.node.clone(),
            what: what.to_owned(),
        }
    }

    fn io(&self, source: std::io::Error) -> ServerError {
        ServerError::Io {
            node: self.target.node.clone(),
            addr: format!("{}:{}", self.target.host, self.target.port),
            source,
        }
    }

    /// Writes raw protocol bytes.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), ServerError> {
        self.stream.write_all(data).await.map_err(|e| self.io(e))
    }

    /// Reads one whole message (outside the relay's hot path: login and internal queries).
    pub async fn read_message(&mut self) -> Result<(u8, Vec<u8>), ServerError> {
        loop {
            match split_message(&self.rbuf, MAX_SERVER_MESSAGE) {
                Ok(Some((tag, body))) => {
                    let out = (tag, body.to_vec());
                    let _ = self.rbuf.split_to(5 + body.len());
                    return Ok(out);
                }
                Ok(None) => {}
                Err(e) => return Err(self.protocol(&e.to_string())),
            }
            self.rbuf.reserve(8192);
            let n = self
                .stream
                .read_buf(&mut self.rbuf)
                .await
                .map_err(|e| self.io(e))?;
            if n == 0 {
                return Err(self.io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Sends protocol bytes and reads up to the next `ReadyForQuery`, handing every other
    /// message to `each`; returns the transaction status.
    pub async fn exchange(
        &mut self,
        bytes: &[u8],
        mut each: impl FnMut(u8, &[u8]),
    ) -> Result<u8, ServerError> {
        self.write(bytes).await?;
        loop {
            let (tag, body) = self.read_message().await?;
            if tag == b'Z' {
                return Ok(body.first().copied().unwrap_or(b'I'));
            }
            each(tag, &body);
        }
    }

    /// Cheap liveness check for a connection that sat idle: a readable socket means the server
    /// closed it or sent something unsolicited (e.g. an admin shutdown), so it is not reusable.
    pub fn looks_alive(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read_raw(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

async fn negotiate_tls(target: &ConnectTarget, mut tcp: TcpStream) -> Result<Stream, ServerError> {
    if target.sslmode == BackendSslMode::Disable {
        return Ok(Stream::Plain(tcp));
    }
    let io_err = |source| ServerError::Io {
        node: target.node.clone(),
        addr: format!("{}:{}", target.host, target.port),
        source,
    };
    let mut req = Vec::new();
    encode_ssl_request(&mut req);
    tcp.write_all(&req).await.map_err(io_err)?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.map_err(io_err)?;
    match (answer[0], target.sslmode) {
        (b'S', _) => {
            let config = target.tls.clone().ok_or_else(|| ServerError::Tls {
                node: target.node.clone(),
                what: "TLS requested but no TLS client configuration".into(),
            })?;
            let name =
                rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(|e| {
                    ServerError::Tls {
                        node: target.node.clone(),
                        what: format!("invalid server name {}: {e}", target.host),
                    }
                })?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| ServerError::Tls {
                    node: target.node.clone(),
                    what: format!("TLS handshake failed: {e}"),
                })?;
            Ok(Stream::ClientTls(Box::new(tls)))
        }
        (b'N', BackendSslMode::Prefer) => Ok(Stream::Plain(tcp)),
        (b'N', _) => Err(ServerError::Tls {
            node: target.node.clone(),
            what: "server does not support TLS but backend_tls.sslmode requires it".into(),
        }),
        (other, _) => Err(ServerError::Protocol {
            node: target.node.clone(),
            what: format!("unexpected answer {other:#x} to SSLRequest"),
        }),
    }
}
