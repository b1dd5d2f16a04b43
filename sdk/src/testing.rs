//! A fake host for native unit tests of component logic: set the nodes the `topology`
//! interface reports and the session `context` reports, inspect the key/value store and the
//! log lines.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::Call;
use crate::host::{Level, Node};

/// The session [`crate::context`] reports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Session {
    /// Login user.
    pub user: String,
    /// Database.
    pub database: String,
    /// `application_name`.
    pub application_name: String,
    /// Client address.
    pub client_addr: String,
    /// Tenant.
    pub tenant: Option<String>,
    /// Attributes.
    pub attributes: Vec<(String, String)>,
}

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
    /// What `context` reports about the session.
    pub session: Session,
    /// What `context::result_rows()` returns in PostQuery.
    pub result_rows: Option<crate::RowSet>,
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

/// Makes `context` report a session of user `app` with this `application_name`, and returns
/// its call outside any transaction.
pub fn session(application_name: &str) -> Call {
    with_fake(|h| {
        h.session = Session {
            user: "app".into(),
            database: "app".into(),
            application_name: application_name.to_owned(),
            client_addr: "127.0.0.1:50000".into(),
            tenant: None,
            attributes: Vec::new(),
        }
    });
    Call {
        session_id: 1,
        in_transaction: false,
    }
}
