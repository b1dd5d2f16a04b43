//! The query loop of one client session.
//!
//! Client messages are forwarded to a server connection borrowed from the pool when the first
//! message that needs one arrives; in transaction and statement mode the connection goes back
//! as soon as the server reports `ReadyForQuery` idle with nothing outstanding. The loop is
//! split by job:
//! - [`io`]: framing of client and server bytes, forwarding untouched runs without copying;
//! - [`expect`]: the queue of expected responses, with the proxy's own answers slotted in at
//!   the position the client expects them;
//! - [`frontend`]: one function per client message; [`backend`]: one per server message;
//! - [`answer`]: the proxy's own answers (a component's result, a refusal);
//! - [`portals`]: the portals something later needs;
//! - [`lease`]: the server lease — checkout, state restore, release, discard, cancel slot;
//! - [`isolate`]: what a session leaves on its connection, asked of the server before release;
//! - [`listen`]: LISTEN/UNLISTEN answered by the proxy and notifications delivered when idle;
//! - [`budget`]: what one client (and all of them) may make the proxy hold;
//! - [`cached`]: the result cache: answers, copies of misses, invalidation by writes.
//!
//! What a statement passes through before it reaches a server is in [`super::steps`]; what
//! happens when the server is lost is in [`super::recovery`].

mod answer;
pub mod backend;
pub mod budget;
mod cached;
pub mod expect;
pub mod frontend;
pub mod io;
mod isolate;
pub mod lease;
pub mod listen;
mod observers;
pub mod portals;
mod reprepare;
mod text;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::SessionError;
use super::cancel::Registration;
use super::cursors::Cursors;
use super::env::SessionEnv;
use super::isolation::Pins;
use super::login::LoggedIn;
use super::recovery::txlog::TxLog;
use super::state::SessionState;
use super::statements::ClientStatements;
use super::steps::Steps;
use crate::config::PoolMode;
use crate::hooks::{Pipeline, SessionInfo};
use crate::pool::{Checkout, Pool};
use crate::wire::messages::TxStatus;
use crate::wire::stream::Stream;
use expect::Expected;
use portals::Portals;

/// The session's query loop and everything it owns.
pub struct Relay {
    pub(in crate::session) env: Arc<SessionEnv>,
    /// The pool of the attached server (or the primary's when none is attached).
    pub(in crate::session) pool: Arc<Pool>,
    /// Pools per node for this session's database and role, created on first use.
    pub(in crate::session) node_pools: Vec<Option<Arc<Pool>>>,
    /// The node the next checkout goes to.
    pub(in crate::session) route_to: usize,
    pub(in crate::session) server_user: String,
    pub(in crate::session) server_password: Option<String>,
    /// The components this session calls; swapped between batches after a reload.
    pub(in crate::session) pipeline: Arc<Pipeline>,
    /// The steps built from `pipeline`.
    pub(in crate::session) steps: Steps,
    pub(in crate::session) info: Arc<SessionInfo>,
    pub(in crate::session) portals: Portals,
    pub(in crate::session) mode: PoolMode,
    pub(in crate::session) client: Stream,
    /// Client bytes read and not yet handled.
    pub(in crate::session) cbuf: BytesMut,
    /// Bytes for the client not yet written.
    pub(in crate::session) cout: Vec<u8>,
    /// How much the next client read may take; grows while reads fill the buffer.
    client_chunk: usize,
    pub(in crate::session) server: Option<Checkout>,
    /// Bytes for the server not yet written.
    pub(in crate::session) sout: Vec<u8>,
    pub(in crate::session) queue: Expected,
    pub(in crate::session) stmts: ClientStatements,
    pub(in crate::session) state: SessionState,
    pub(in crate::session) status: TxStatus,
    pub(in crate::session) in_copy: bool,
    /// Extended-protocol messages went to the server since its last `Sync`: the server is
    /// inside a batch (an implicit transaction) and cannot go back to the pool.
    pub(in crate::session) batch_open: bool,
    /// An error ended the client's batch: its messages are dropped up to `Sync`.
    pub(in crate::session) skip_until_sync: bool,
    /// The server is in COPY IN started by `Execute`: it ignores `Sync` until the copy ends.
    pub(in crate::session) syncs_ignored_in_copy: bool,
    pub(in crate::session) rollback_after_flush: bool,
    pub(in crate::session) cancel: Registration,
    pub(in crate::session) max_message: usize,
    /// The open transaction's log, when transaction replay is on.
    pub(in crate::session) tx: Option<Box<TxLog>>,
    /// Cursors declared `WITH HOLD`.
    pub(in crate::session) cursors: Cursors,
    /// The server holding the cursors was lost: re-create them on the next one.
    pub(in crate::session) restore_cursors: bool,
    /// A re-sent `COMMIT` or `ROLLBACK` runs outside a transaction: hide the server's
    /// "there is no transaction in progress" warning until the next `ReadyForQuery`.
    pub(in crate::session) hide_no_tx_warning: bool,
    /// Transactions this session started (journal transaction ids).
    pub(in crate::session) transactions: u64,
    /// The topology generation when the attached server was checked out.
    pub(in crate::session) attached_generation: u64,
    /// A statement sent since the last check could have changed hidden session state.
    pub(in crate::session) check_pending: bool,
    /// Why the client keeps its server connection between transactions.
    pub(in crate::session) pins: Pins,
    /// Custom setting names met in statements since the last check.
    pub(in crate::session) custom_names: Vec<String>,
    /// A `set_config` changed a setting whose name the proxy cannot know.
    pub(in crate::session) computed_setting: bool,
    /// A schema change ran in the open transaction: others see it when it ends.
    pub(in crate::session) schema_changed: bool,
    /// The channels this pooled session listens on, through the proxy's own connection.
    listening: Option<Box<listen::Listening>>,
    /// LISTEN/UNLISTEN waiting for their transaction to commit.
    channel_changes: listen::ChannelChanges,
    /// The proxy's answers to go right after the server message being handled.
    pub(in crate::session) spliced: Vec<u8>,
    /// The description of a client statement being received from the server.
    describing: reprepare::Description,
    /// The bytes this session last counted in the proxy's memory gauge.
    reported_bytes: usize,
    /// This client's row in `SHOW CLIENTS`; `KILL` ends the session through it.
    pub(in crate::session) presence: crate::observe::clients::ClientHandle,
    /// What the result cache keeps for this session between messages.
    cached: Box<cached::CacheState>,
}

enum Event {
    Client(std::io::Result<usize>),
    Server(std::io::Result<usize>),
    Notification(Vec<u8>),
    Killed,
}

/// How much is read from a server socket at once.
pub(in crate::session) const READ_CHUNK: usize = 16 * 1024;
/// A client's first read buffer; it doubles (up to [`CLIENT_READ_MAX`]) while reads fill it.
const CLIENT_READ_MIN: usize = 2 * 1024;
/// The largest read from a client at once.
const CLIENT_READ_MAX: usize = 64 * 1024;
/// Buffers larger than this are given back when the client goes idle, so ten thousand idle
/// clients do not each keep what one burst (a COPY, a large query or result) grew.
const IDLE_BUFFER: usize = 8 * 1024;

impl Relay {
    /// Prepares the loop for a client that passed login.
    pub fn new(env: Arc<SessionEnv>, login: LoggedIn) -> Self {
        let cbuf = login.leftover;
        let primary = env.topology.primary();
        let mut node_pools = vec![None; env.topology.nodes.len()];
        node_pools[primary] = Some(login.pool.clone());
        let mode = env.limits.mode;
        let pipeline = env.pipeline.load_full();
        let steps = Steps::new(&pipeline, mode, &env.topology, env.tables());
        Relay {
            mode,
            max_message: env.limits.max_message_bytes,
            pipeline,
            steps,
            tx: TxLog::for_session(env.ha.as_ref()),
            env,
            pool: login.pool,
            node_pools,
            route_to: primary,
            server_user: login.server_user,
            server_password: login.server_password,
            info: login.info,
            portals: Portals::default(),
            client: login.stream,
            cbuf,
            cout: Vec::new(),
            client_chunk: CLIENT_READ_MIN,
            server: None,
            sout: Vec::new(),
            queue: Expected::default(),
            stmts: ClientStatements::default(),
            state: login.state,
            status: TxStatus::Idle,
            in_copy: false,
            batch_open: false,
            skip_until_sync: false,
            syncs_ignored_in_copy: false,
            rollback_after_flush: false,
            cancel: login.cancel,
            presence: login.presence,
            cached: Box::default(),
            cursors: Cursors::default(),
            restore_cursors: false,
            hide_no_tx_warning: false,
            transactions: 0,
            attached_generation: 0,
            check_pending: false,
            pins: Pins::default(),
            custom_names: Vec::new(),
            computed_setting: false,
            schema_changed: false,
            listening: None,
            channel_changes: Default::default(),
            spliced: Vec::new(),
            describing: Default::default(),
            reported_bytes: 0,
        }
    }

    /// Runs until the client leaves; the server connection is cleaned up and returned.
    pub async fn run(mut self) -> Result<(), SessionError> {
        let result = self.serve().await;
        self.finish().await;
        self.stop_listening();
        self.release_budget();
        result
    }

    async fn serve(&mut self) -> Result<(), SessionError> {
        if !self.cbuf.is_empty() && !self.on_client_data().await? {
            return Ok(());
        }
        loop {
            if self.cbuf.capacity() - self.cbuf.len() < 512 {
                self.cbuf.reserve(self.client_chunk);
            }
            let client_spare = self.cbuf.capacity() - self.cbuf.len();
            let event = match self.server.as_mut() {
                Some(s) => {
                    let rbuf = &mut s.conn.rbuf;
                    if rbuf.capacity() - rbuf.len() < 1024 {
                        rbuf.reserve(READ_CHUNK);
                    }
                    tokio::select! {
                        r = s.conn.stream.read_buf(rbuf) => Event::Server(r),
                        r = self.client.read_buf(&mut self.cbuf) => Event::Client(r),
                        n = listen::next_notification(&mut self.listening) => Event::Notification(n),
                        _ = self.presence.killed() => Event::Killed,
                    }
                }
                None => tokio::select! {
                    r = self.client.read_buf(&mut self.cbuf) => Event::Client(r),
                    n = listen::next_notification(&mut self.listening) => Event::Notification(n),
                    _ = self.presence.killed() => Event::Killed,
                },
            };
            match event {
                Event::Client(Ok(0)) => return Ok(()),
                Event::Client(Ok(n)) => {
                    self.presence
                        .db
                        .received
                        .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    if n == client_spare {
                        self.client_chunk = (self.client_chunk * 2).min(CLIENT_READ_MAX);
                    }
                    if !self.on_client_data().await? {
                        return Ok(());
                    }
                }
                Event::Client(Err(e)) => return Err(e.into()),
                Event::Server(Ok(0)) => self.server_lost("server closed the connection").await?,
                Event::Server(Err(e)) => self.server_lost(&e.to_string()).await?,
                Event::Server(Ok(_)) => self.on_server_data().await?,
                Event::Killed => {
                    super::fatal(
                        &mut self.client,
                        crate::wire::messages::sqlstate::ADMIN_SHUTDOWN,
                        "terminating connection due to administrator command (KILL)",
                    )
                    .await;
                    return Ok(());
                }
                Event::Notification(n) => {
                    if let Some(l) = self.listening.as_mut() {
                        l.waiting.extend_from_slice(&n);
                    }
                    // Held until the client is out of its transaction: counted against its
                    // memory budget, past which it is told (54000) and disconnected.
                    self.within_budget().await?;
                }
            }
            self.deliver_notifications().await?;
        }
    }

    /// Picks up reloaded components between batches; a statement in flight keeps its own.
    pub(in crate::session) fn refresh_pipeline(&mut self) {
        if !self.queue.is_empty() {
            return;
        }
        let current = self.env.pipeline.load();
        if !Arc::ptr_eq(&self.pipeline, &current) {
            self.pipeline = Arc::clone(&current);
            self.steps = Steps::new(
                &self.pipeline,
                self.mode,
                &self.env.topology,
                self.env.tables(),
            );
        }
    }

    /// Gives back what a burst grew once the client is idle (no server attached, nothing
    /// buffered): an idle client holds a few hundred bytes, not tens of kilobytes.
    pub(in crate::session) fn shrink_when_idle(&mut self) {
        if self.server.is_some() {
            return;
        }
        if self.cbuf.is_empty() && self.cbuf.capacity() > IDLE_BUFFER {
            self.cbuf = BytesMut::new();
            self.client_chunk = CLIENT_READ_MIN;
        }
        if self.cout.is_empty() && self.cout.capacity() > IDLE_BUFFER {
            self.cout = Vec::new();
        }
        if self.sout.is_empty() && self.sout.capacity() > IDLE_BUFFER {
            self.sout = Vec::new();
        }
    }

    /// Writes the proxy's own answers that have reached the front of the queue.
    #[inline]
    pub(in crate::session) fn emit_synthetics(&mut self) {
        self.queue
            .emit_synthetics(&mut self.cout, self.status.byte());
    }
}
