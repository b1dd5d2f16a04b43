//! A fake host for native unit tests of component logic: set the nodes the `topology`
//! interface reports, inspect the key/value store and the log lines, build sessions.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::SessionInfo;
use crate::host::{Level, Node};

/// What the fake host holds (one per test thread).
#[derive(Debug, Default, Clone)]
pub struct FakeHost {
    /// Nodes reported by `host::nodes()`.
    pub nodes: Vec<Node>,
    /// The key/value store.
    pub kv: HashMap<String, Vec<u8>>,
    /// Log lines written by the component.
    pub logs: Vec<(Level, String)>,
    /// What `host::now_ms()` returns.
    pub now_ms: u64,
}

thread_local! {
    static FAKE: RefCell<FakeHost> = RefCell::new(FakeHost::default());
}

/// Runs `f` on this thread's fake host.
pub fn with_fake<R>(f: impl FnOnce(&mut FakeHost) -> R) -> R {
    FAKE.with(|h| f(&mut h.borrow_mut()))
}

/// Replaces this thread's fake host.
pub fn reset(host: FakeHost) {
    FAKE.with(|h| *h.borrow_mut() = host);
}

/// A node for [`FakeHost::nodes`].
pub fn node(name: &str, role: &str, tags: &[&str], lag_bytes: Option<u64>) -> Node {
    Node {
        name: name.to_owned(),
        role: role.to_owned(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        healthy: true,
        lag_bytes,
    }
}

/// A session outside any transaction.
pub fn session(application_name: &str) -> SessionInfo {
    SessionInfo {
        session_id: 1,
        user: "app".into(),
        database: "app".into(),
        application_name: application_name.to_owned(),
        client_addr: "127.0.0.1:50000".into(),
        tenant: None,
        attributes: Vec::new(),
        in_transaction: false,
    }
}
