//! HeliosProxy kernel: a PostgreSQL wire-protocol proxy with session, transaction and
//! statement pooling.
//!
//! The kernel owns what must be fast and correct on every byte: the wire codec ([`wire`]),
//! client sessions ([`session`]), server pools ([`pool`]), the backend nodes ([`topology`])
//! and the accept loop ([`server`]). Policies are WebAssembly components ([`plugins`], loaded
//! and verified through [`oci`]) called by the hook pipeline ([`hooks`]); the admin API lives
//! in [`admin`].

pub mod admin;
pub mod cache;
pub mod config;
pub mod embedded;
pub mod failover;
pub mod histogram;
pub mod hooks;
pub mod journal;
pub mod notify;
pub mod observe;
pub mod oci;
pub mod ops;
pub mod plugins;
pub mod pool;
pub mod server;
pub mod session;
pub mod topology;
pub mod when;

pub use config::Config;
/// SQL helpers shared with the plugin SDK.
pub use helios_sql as sql;
/// The wire protocol (its own crate so it can be fuzzed without the rest of the kernel).
pub use helios_wire as wire;
pub use server::{Proxy, ProxyHandle};
