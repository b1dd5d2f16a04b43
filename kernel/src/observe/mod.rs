//! What the proxy tells its operators: Prometheus metrics ([`metrics`]), per-fingerprint
//! query analytics and the slow-query log ([`queries`]), the analytics as SQL tables any
//! client can read ([`tables`]), and the registry of logged-in clients ([`clients`]) that
//! `SHOW CLIENTS` and `KILL` use.

pub mod clients;
pub mod metrics;
pub mod owner;
pub mod queries;
pub mod tables;
pub mod text_key;
