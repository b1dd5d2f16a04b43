//! Cancel requests: the proxy hands each client its own `BackendKeyData` and forwards a
//! `CancelRequest` carrying that key to whichever server connection the client is using.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::pool::ConnectTarget;
use crate::wire::startup::encode_cancel;

/// Where a client's queries currently run.
#[derive(Default)]
pub struct CancelSlot {
    current: Mutex<Option<(Arc<ConnectTarget>, i32, i32)>>,
}

impl CancelSlot {
    /// The client now uses the server with this key.
    #[inline]
    pub fn attach(&self, target: &Arc<ConnectTarget>, key: (i32, i32)) {
        *self.current.lock().expect("cancel lock") = Some((target.clone(), key.0, key.1));
    }

    /// The client has no server connection.
    #[inline]
    pub fn detach(&self) {
        *self.current.lock().expect("cancel lock") = None;
    }
}

/// Every live client's cancel key.
#[derive(Default)]
pub struct CancelRegistry {
    slots: Mutex<HashMap<(i32, i32), Arc<CancelSlot>>>,
}

/// Removes the key from the registry when the session ends.
pub struct Registration {
    registry: Arc<CancelRegistry>,
    /// The key given to the client.
    pub key: (i32, i32),
    /// The slot the session updates.
    pub slot: Arc<CancelSlot>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry
            .slots
            .lock()
            .expect("cancel lock")
            .remove(&self.key);
    }
}

impl CancelRegistry {
    /// Gives a new session a unique random key.
    pub fn register(self: &Arc<Self>) -> Registration {
        let mut slots = self.slots.lock().expect("cancel lock");
        let mut rng = rand::rng();
        loop {
            let key = (rng.random_range(1..i32::MAX), rng.random::<i32>());
            if let std::collections::hash_map::Entry::Vacant(e) = slots.entry(key) {
                let slot = Arc::new(CancelSlot::default());
                e.insert(slot.clone());
                return Registration {
                    registry: self.clone(),
                    key,
                    slot,
                };
            }
        }
    }

    /// Forwards a cancel for the client holding `key`; unknown keys are ignored, as
    /// PostgreSQL does, so a guesser learns nothing.
    pub async fn cancel(&self, key: (i32, i32)) {
        let target = {
            let slots = self.slots.lock().expect("cancel lock");
            slots
                .get(&key)
                .and_then(|s| s.current.lock().expect("cancel lock").clone())
        };
        let Some((target, pid, secret)) = target else {
            return;
        };
        let mut packet = Vec::with_capacity(16);
        encode_cancel(&mut packet, pid, secret);
        let sent = if target.is_unix_socket() {
            match tokio::net::UnixStream::connect(target.socket_path()).await {
                Ok(mut s) => s.write_all(&packet).await,
                Err(e) => Err(e),
            }
        } else {
            match TcpStream::connect((target.host.as_str(), target.port)).await {
                Ok(mut s) => s.write_all(&packet).await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = sent {
            tracing::warn!(node = %target.node, "forwarding cancel request failed: {e}");
        }
    }
}
