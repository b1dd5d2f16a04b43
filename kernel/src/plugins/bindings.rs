//! Host-side bindings generated from `wit/plugin.wit` (`helios:plugin@0.2.0`).

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    additional_derives: [PartialEq],
});

pub use helios::plugin::types::{Identity, Refusal, ResultSet, StatementClass};
