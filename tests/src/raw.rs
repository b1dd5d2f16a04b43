//! A raw wire-protocol client for tests that need exact message sequences: log in, send
//! hand-built batches, read the answer up to `ReadyForQuery` in a comparable form, and check
//! that nothing follows. Every step has a timeout so a proxy that never answers fails the
//! test instead of hanging it.

use std::future::Future;
use std::time::Duration;

use heliosproxy::server::ProxyHandle;
use heliosproxy::wire::frame::{split_message, write_message};
use heliosproxy::wire::messages::{self, ErrorFields};
use heliosproxy::wire::startup::encode_startup;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one step may take before the test calls it a hang.
pub const STEP: Duration = Duration::from_secs(20);

/// Awaits `step`, failing the test when it takes longer than [`STEP`].
pub async fn within<T>(what: &str, step: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, step).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {STEP:?} (the pipeline hangs)"),
    }
}

/// A logged-in raw protocol connection.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The errors among the messages the last [`Raw::until_ready`] returned.
    pub errors: Vec<ErrorFields>,
}

impl Raw {
    /// Connects and logs in (the test proxy trusts every user).
    pub async fn login(proxy: &ProxyHandle, db: &str) -> Raw {
        Raw::login_at(proxy.local_addr, db).await
    }

    /// Connects to `addr` (the proxy, or a trust-auth PostgreSQL) and logs in as `postgres`.
    pub async fn login_at(addr: std::net::SocketAddr, db: &str) -> Raw {
        let stream = within("connect", TcpStream::connect(addr)).await.unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
            errors: Vec::new(),
        };
        let mut out = Vec::new();
        encode_startup(&mut out, &[("user", "postgres"), ("database", db)]);
        raw.send(&out).await;
        let login = raw.until_ready("login").await;
        assert!(raw.errors.is_empty(), "login failed: {:?}", raw.errors);
        assert_eq!(
            login.last().map(String::as_str),
            Some("ReadyForQuery I"),
            "{login:?}"
        );
        raw
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        within("send", self.stream.write_all(bytes)).await.unwrap();
    }

    /// The next complete message from the proxy as `(tag, body)`.
    pub async fn next_message(&mut self, what: &str) -> (u8, Vec<u8>) {
        loop {
            let next = split_message(&self.buf, 1 << 20)
                .expect("a well-formed message from the proxy")
                .map(|(tag, body)| (tag, body.to_vec()));
            if let Some((tag, body)) = next {
                self.buf.drain(..5 + body.len());
                return (tag, body);
            }
            let mut chunk = [0u8; 8192];
            let n = within(what, self.stream.read(&mut chunk)).await.unwrap();
            assert!(n > 0, "{what}: the proxy closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The messages up to and including the next `ReadyForQuery`, described by [`describe`].
    pub async fn until_ready(&mut self, what: &str) -> Vec<String> {
        self.errors.clear();
        let mut seen = Vec::new();
        loop {
            let (tag, body) = self.next_message(what).await;
            if tag == b'E' {
                self.errors.push(ErrorFields::parse(&body).unwrap());
            }
            seen.push(describe(tag, &body));
            if tag == b'Z' {
                return seen;
            }
        }
    }

    /// Asserts that nothing more arrives (within a short wait) after a `ReadyForQuery`.
    pub async fn assert_silent(&mut self, what: &str) {
        let mut chunk = [0u8; 8192];
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(300), self.stream.read(&mut chunk)).await
        {
            let n = read.unwrap();
            assert!(n > 0, "{what}: the proxy closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let mut extra = Vec::new();
        loop {
            let next = split_message(&self.buf, 1 << 20)
                .ok()
                .flatten()
                .map(|(tag, body)| (tag, body.to_vec()));
            let Some((tag, body)) = next else { break };
            extra.push(describe(tag, &body));
            self.buf.drain(..5 + body.len());
        }
        assert!(
            extra.is_empty() && self.buf.is_empty(),
            "{what}: more after ReadyForQuery: {extra:?} {:?}",
            self.buf
        );
    }

    /// Sends `batch` and returns the answer up to `ReadyForQuery`, asserting nothing follows.
    pub async fn run(&mut self, what: &str, batch: &[u8]) -> Vec<String> {
        self.send(batch).await;
        let seen = self.until_ready(what).await;
        self.assert_silent(what).await;
        seen
    }
}

/// A backend message in a comparable form: its name, with the command tag, the DataRow's
/// values, the error's SQLSTATE or the transaction status.
pub fn describe(tag: u8, body: &[u8]) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b.strip_suffix(b"\0").unwrap_or(b)).into_owned();
    match tag {
        b'1' => "ParseComplete".into(),
        b'2' => "BindComplete".into(),
        b'3' => "CloseComplete".into(),
        b'n' => "NoData".into(),
        b's' => "PortalSuspended".into(),
        b't' => "ParameterDescription".into(),
        b'T' => "RowDescription".into(),
        b'D' => format!("DataRow {}", data_row(body).join(",")),
        b'C' => format!("CommandComplete {}", text(body)),
        b'E' => format!("Error {}", ErrorFields::parse(body).unwrap().code),
        b'N' => "Notice".into(),
        b'Z' => format!("ReadyForQuery {}", body[0] as char),
        b'R' => "Authentication".into(),
        b'S' => "ParameterStatus".into(),
        b'K' => "BackendKeyData".into(),
        other => format!("message {:?}", other as char),
    }
}

/// The text values of a DataRow (`NULL` for null).
pub fn data_row(body: &[u8]) -> Vec<String> {
    let columns = i16::from_be_bytes([body[0], body[1]]);
    let mut rest = &body[2..];
    let mut values = Vec::new();
    for _ in 0..columns {
        let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        rest = &rest[4..];
        if len < 0 {
            values.push("NULL".to_owned());
        } else {
            let len = len as usize;
            values.push(String::from_utf8_lossy(&rest[..len]).into_owned());
            rest = &rest[len..];
        }
    }
    values
}

/// Parse (unnamed statement), Bind (unnamed portal, no parameters) and Execute of `sql`: what
/// a driver sends for one statement in a pipeline.
pub fn statement(out: &mut Vec<u8>, sql: &str) {
    write_message(out, b'P', |b| {
        b.push(0);
        b.extend_from_slice(sql.as_bytes());
        b.push(0);
        b.extend_from_slice(&0i16.to_be_bytes());
    });
    write_message(out, b'B', |b| {
        b.push(0); // portal
        b.push(0); // statement
        b.extend_from_slice(&0i16.to_be_bytes()); // parameter formats
        b.extend_from_slice(&0i16.to_be_bytes()); // parameters
        b.extend_from_slice(&0i16.to_be_bytes()); // result formats
    });
    write_message(out, b'E', |b| {
        b.push(0);
        b.extend_from_slice(&0i32.to_be_bytes());
    });
}

/// `statements` one after another, then one `Sync`.
pub fn batch(statements: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for sql in statements {
        statement(&mut out, sql);
    }
    messages::sync(&mut out);
    out
}

/// A simple `Query` message.
pub fn simple_query(sql: &str) -> Vec<u8> {
    let mut out = Vec::new();
    messages::query(&mut out, sql);
    out
}
