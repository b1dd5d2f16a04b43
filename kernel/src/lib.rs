//! HeliosProxy kernel: a PostgreSQL wire-protocol proxy with session, transaction and
//! statement pooling.
//!
//! The kernel owns what must be fast and correct on every byte: the wire codec ([`wire`]),
//! client sessions ([`session`]), server pools ([`pool`]) and the accept loop ([`server`]).
//! Policies arrive later as WebAssembly components bound to hook points.

pub mod config;
pub mod embedded;
pub mod hooks;
pub mod plugins;
pub mod pool;
pub mod server;
pub mod session;
pub mod topology;
pub mod wire;

pub use config::Config;
/// SQL helpers shared with the plugin SDK.
pub use helios_sql as sql;
pub use server::{Proxy, ProxyHandle};
