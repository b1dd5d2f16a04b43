//! The adapter for components built against `helios:plugin@0.2.0`: they import the same
//! host interfaces under the older package, and each call is answered by the 0.3.0
//! implementation in [`super::host`]. (The hook types are shared, see [`super::bindings`].)

use super::bindings::helios::plugin::{clock, context, crypto, kv, log, topology};
use super::bindings::v2::helios::plugin as old;
use super::host::HostState;

impl old::kv::Host for HostState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        kv::Host::get(self, key)
    }
    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) {
        kv::Host::set(self, key, value, ttl_ms)
    }
    fn delete(&mut self, key: String) {
        kv::Host::delete(self, key)
    }
    fn incr(&mut self, key: String, delta: i64, ttl_ms: Option<u64>) -> i64 {
        kv::Host::incr(self, key, delta, ttl_ms)
    }
}

impl old::crypto::Host for HostState {
    fn sha256_hex(&mut self, data: Vec<u8>) -> String {
        crypto::Host::sha256_hex(self, data)
    }
    fn hmac_sha256_hex(&mut self, key: Vec<u8>, data: Vec<u8>) -> String {
        crypto::Host::hmac_sha256_hex(self, key, data)
    }
}

impl old::log::Host for HostState {
    fn write(&mut self, level: old::log::Level, message: String) {
        let level = match level {
            old::log::Level::Trace => log::Level::Trace,
            old::log::Level::Debug => log::Level::Debug,
            old::log::Level::Info => log::Level::Info,
            old::log::Level::Warn => log::Level::Warn,
            old::log::Level::Error => log::Level::Error,
        };
        log::Host::write(self, level, message)
    }
}

impl old::clock::Host for HostState {
    fn now_ms(&mut self) -> u64 {
        clock::Host::now_ms(self)
    }
}

impl old::topology::Host for HostState {
    fn nodes(&mut self) -> Vec<old::topology::Node> {
        topology::Host::nodes(self)
            .into_iter()
            .map(|n| old::topology::Node {
                name: n.name,
                role: n.role,
                tags: n.tags,
                healthy: n.healthy,
                lag_bytes: n.lag_bytes,
            })
            .collect()
    }
}

impl old::context::Host for HostState {
    fn user(&mut self) -> String {
        context::Host::user(self)
    }
    fn database(&mut self) -> String {
        context::Host::database(self)
    }
    fn application_name(&mut self) -> String {
        context::Host::application_name(self)
    }
    fn client_addr(&mut self) -> String {
        context::Host::client_addr(self)
    }
    fn tenant(&mut self) -> Option<String> {
        context::Host::tenant(self)
    }
    fn attributes(&mut self) -> Vec<(String, String)> {
        context::Host::attributes(self)
    }
    fn tables(&mut self) -> Vec<String> {
        context::Host::tables(self)
    }
    fn hints(&mut self) -> Vec<(String, String)> {
        context::Host::hints(self)
    }
    fn result_rows(&mut self) -> Option<old::context::RowSet> {
        context::Host::result_rows(self).map(|r| old::context::RowSet {
            columns: r.columns,
            rows: r.rows,
            truncated: r.truncated,
        })
    }
}
