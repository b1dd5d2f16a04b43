//! What a component imports: refused at load when it imports a host interface its config
//! does not grant, and listed for `helios-plugin inspect`.

use std::collections::HashSet;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::LoadError;
use crate::config::{Grant, PluginConfig};

/// Refuses a component that imports a host interface its config does not grant.
pub(super) fn check_grants(
    engine: &Engine,
    component: &Component,
    config: &PluginConfig,
) -> Result<(), LoadError> {
    let granted: HashSet<&str> = config.grants.iter().map(|g| g.interface()).collect();
    let prefix = "helios:plugin/";
    for (import, _) in component.component_type().imports(engine) {
        let Some(rest) = import.strip_prefix(prefix) else {
            continue;
        };
        let interface = rest.split('@').next().unwrap_or(rest);
        // `documents` serves only what the component's own entry names: no grant needed.
        if interface == "types"
            || interface == "context"
            || interface == "documents"
            || granted.contains(interface)
        {
            continue;
        }
        let grant = [
            Grant::Kv,
            Grant::Crypto,
            Grant::Log,
            Grant::Clock,
            Grant::Topology,
        ]
        .into_iter()
        .find(|g| g.interface() == interface)
        .map(|g| g.interface().to_owned())
        .unwrap_or_else(|| interface.to_owned());
        return Err(LoadError::NotGranted {
            name: config.name.clone(),
            interface: import.to_owned(),
            grant,
        });
    }
    Ok(())
}

/// The import and export names of a component (for `helios-plugin inspect`).
pub fn describe(wasm: &[u8]) -> wasmtime::Result<(Vec<String>, Vec<String>)> {
    let engine = Engine::default();
    let component = Component::new(&engine, wasm)?;
    let ty = component.component_type();
    let imports = ty.imports(&engine).map(|(n, _)| n.to_owned()).collect();
    let exports = ty.exports(&engine).map(|(n, _)| n.to_owned()).collect();
    Ok((imports, exports))
}
