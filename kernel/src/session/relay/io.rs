//! Framing of client and server bytes. Client messages are handled one by one; server
//! messages are inspected in place and forwarded as untouched runs, copied only where the
//! proxy hides a message or slots its own answer in between.

use bytes::Buf;
use tokio::io::AsyncWriteExt;

use super::Relay;
use crate::pool::server::MAX_SERVER_MESSAGE;
use crate::session::{SessionError, fatal};
use crate::wire::WireError;
use crate::wire::frame::peek_header;
use crate::wire::messages::sqlstate;

impl Relay {
    /// Handles every complete client message; returns `false` when the client terminated.
    pub(super) async fn on_client_data(&mut self) -> Result<bool, SessionError> {
        if self.server.is_some() && self.env.topology.generation() != self.attached_generation {
            self.leave_fenced_server().await?;
        }
        self.refresh_pipeline();
        let mut buf = std::mem::take(&mut self.cbuf);
        let mut pos = 0;
        let mut keep_going = true;
        loop {
            let header = match peek_header(&buf[pos..], self.max_message) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    let code = match e {
                        WireError::TooLarge { .. } => sqlstate::PROGRAM_LIMIT_EXCEEDED,
                        _ => sqlstate::PROTOCOL_VIOLATION,
                    };
                    self.flush_client().await?;
                    fatal(
                        &mut self.client,
                        code,
                        &format!("invalid message from client: {e}"),
                    )
                    .await;
                    return Err(SessionError::Protocol(e.to_string()));
                }
            };
            if buf.len() - pos < header.total {
                buf.reserve(header.total - (buf.len() - pos));
                break;
            }
            let msg = &buf[pos..pos + header.total];
            pos += header.total;
            match self.on_client_message(header.tag, msg).await {
                Ok(true) => {}
                Ok(false) => {
                    keep_going = false;
                    break;
                }
                Err(e) => {
                    self.flush_client().await?;
                    fatal(
                        &mut self.client,
                        sqlstate::PROTOCOL_VIOLATION,
                        &e.to_string(),
                    )
                    .await;
                    return Err(e);
                }
            }
            self.emit_synthetics();
        }
        buf.advance(pos);
        self.cbuf = buf;
        self.flush_server().await?;
        self.flush_client().await?;
        self.maybe_release().await;
        self.shrink_when_idle();
        self.within_budget().await?;
        Ok(keep_going)
    }

    /// Handles every complete server message and forwards what the client sees.
    pub(super) async fn on_server_data(&mut self) -> Result<(), SessionError> {
        if self.commit_ack_untrusted() {
            return self
                .server_lost("the primary is being replaced; its answer to a commit is not trusted")
                .await;
        }
        let mut buf = {
            let server = self.server.as_mut().expect("attached");
            std::mem::take(&mut server.conn.rbuf)
        };
        let mut pos = 0;
        // The run of forwarded bytes not yet copied: buf[run_start..pos].
        let mut run_start = 0;
        let mut protocol_error = None;
        loop {
            let header = match peek_header(&buf[pos..], MAX_SERVER_MESSAGE) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    protocol_error = Some(e);
                    break;
                }
            };
            if buf.len() - pos < header.total {
                buf.reserve(header.total - (buf.len() - pos));
                break;
            }
            let forward = self.on_server_message(header.tag, &buf[pos + 5..pos + header.total]);
            if !forward {
                self.cout.extend_from_slice(&buf[run_start..pos]);
                run_start = pos + header.total;
            }
            pos += header.total;
            if self.queue.synthetic_next() || self.rollback_after_flush || !self.spliced.is_empty()
            {
                self.cout.extend_from_slice(&buf[run_start..pos]);
                run_start = pos;
                self.cout.append(&mut self.spliced);
                self.emit_synthetics();
                if self.rollback_after_flush {
                    self.replace_ready_in_statement_mode();
                }
            }
        }
        // Committed LISTENs and writes take effect before the client hears of the commit.
        self.apply_due_channels().await;
        self.flush_invalidations().await;
        if self.cout.is_empty() {
            self.count_sent(pos - run_start);
            self.client.write_all(&buf[run_start..pos]).await?;
        } else {
            self.cout.extend_from_slice(&buf[run_start..pos]);
            self.flush_client().await?;
        }
        buf.advance(pos);
        if let Some(server) = self.server.as_mut() {
            server.conn.rbuf = buf;
        }
        if let Some(e) = protocol_error {
            return self
                .server_lost(&format!("protocol error from server: {e}"))
                .await;
        }
        if std::mem::take(&mut self.rollback_after_flush) {
            self.rollback_statement_mode().await?;
        }
        self.maybe_release().await;
        self.shrink_when_idle();
        Ok(())
    }

    /// Writes what is queued for the server; a failed write is a lost server.
    pub(in crate::session) async fn flush_server(&mut self) -> Result<(), SessionError> {
        if self.sout.is_empty() {
            return Ok(());
        }
        let Some(s) = self.server.as_mut() else {
            self.sout.clear();
            return Ok(());
        };
        match s.conn.target.chaos.on_send() {
            crate::ops::chaos::Injected::None => {}
            crate::ops::chaos::Injected::Delay(d) => tokio::time::sleep(d).await,
            crate::ops::chaos::Injected::Drop => {
                // As if the network dropped it: what was to be sent is sent again (or
                // answered) wherever the session moves.
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut s.conn.stream).await;
            }
        }
        let Some(s) = self.server.as_mut() else {
            self.sout.clear();
            return Ok(());
        };
        if let Some(tx) = self.tx.as_deref_mut() {
            tx.sent(&self.sout);
        }
        if let Err(e) = s.conn.stream.write_all(&self.sout).await {
            self.sout.clear();
            return self.server_lost(&e.to_string()).await;
        }
        self.sout.clear();
        Ok(())
    }

    /// Writes what is queued for the client.
    pub(in crate::session) async fn flush_client(&mut self) -> Result<(), SessionError> {
        if !self.cout.is_empty() {
            self.count_sent(self.cout.len());
            self.client.write_all(&self.cout).await?;
            self.cout.clear();
        }
        Ok(())
    }

    /// Counts bytes for `SHOW STATS`.
    #[inline]
    fn count_sent(&self, n: usize) {
        self.presence
            .db
            .sent
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
}
