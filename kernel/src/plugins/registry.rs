//! The components a proxy has loaded, enabled or not, and the two ways an operator changes
//! them while the proxy runs: reload (re-read, verify, instantiate, swap atomically) and
//! enable/disable. Whoever serves statements learns of a change through a `publish`
//! callback that receives the enabled components in config order, called under the
//! registry's lock so changes are published in the order they were made.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::host::TopologySource;
use super::{LoadedPlugin, Runtime};
use crate::config::{HookName, PluginConfig};

/// The loaded components.
pub struct Registry {
    runtime: Option<Runtime>,
    configs: Vec<PluginConfig>,
    topology: Arc<dyn TopologySource>,
    state: Mutex<Loaded>,
}

#[derive(Default)]
struct Loaded {
    /// In config order.
    loaded: Vec<Arc<LoadedPlugin>>,
    /// Names of disabled components.
    disabled: HashSet<String>,
}

impl Loaded {
    fn enabled(&self) -> Vec<Arc<LoadedPlugin>> {
        self.loaded
            .iter()
            .filter(|p| !self.disabled.contains(&p.name))
            .cloned()
            .collect()
    }
}

impl Registry {
    /// A registry of `loaded` components (all enabled), able to reload them from `configs`
    /// with `runtime` (absent when no component is configured).
    pub fn new(
        runtime: Option<Runtime>,
        configs: Vec<PluginConfig>,
        topology: Arc<dyn TopologySource>,
        loaded: Vec<Arc<LoadedPlugin>>,
    ) -> Self {
        Registry {
            runtime,
            configs,
            topology,
            state: Mutex::new(Loaded {
                loaded,
                disabled: HashSet::new(),
            }),
        }
    }

    /// The enabled components, in config order.
    pub fn enabled(&self) -> Vec<Arc<LoadedPlugin>> {
        self.lock().enabled()
    }

    /// Every loaded component with whether it is enabled, in config order.
    pub fn all(&self) -> Vec<(Arc<LoadedPlugin>, bool)> {
        let state = self.lock();
        state
            .loaded
            .iter()
            .map(|p| (p.clone(), !state.disabled.contains(&p.name)))
            .collect()
    }

    /// Re-reads, verifies and instantiates a component from its configured source and swaps
    /// it in atomically: statements already past their hooks finish on the old version, new
    /// ones use the new. On any failure the old version keeps serving. Returns the new
    /// digest.
    pub fn reload(
        &self,
        name: &str,
        publish: impl FnOnce(Vec<Arc<LoadedPlugin>>),
    ) -> Result<String, String> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or("no components are configured")?;
        let config = self
            .configs
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("no component named {name}"))?;
        let fresh = runtime
            .load(config, self.topology.clone())
            .map_err(|e| e.to_string())?;
        let digest = fresh.digest.clone();
        let mut state = self.lock();
        let Some(slot) = state.loaded.iter_mut().find(|p| p.name == name) else {
            return Err(format!("no component named {name}"));
        };
        let old = std::mem::replace(slot, fresh);
        let new = slot.clone();
        publish(state.enabled());
        tracing::warn!(
            component = name,
            old_digest = %old.digest,
            new_digest = %digest,
            changed = old.digest != digest,
            old_hooks = ?hooks_of(&old),
            new_hooks = ?hooks_of(&new),
            contract = new.contract(),
            "component reloaded"
        );
        Ok(digest)
    }

    /// Enables or disables a component without unloading it.
    pub fn set_enabled(
        &self,
        name: &str,
        enabled: bool,
        publish: impl FnOnce(Vec<Arc<LoadedPlugin>>),
    ) -> Result<(), String> {
        let mut state = self.lock();
        if !state.loaded.iter().any(|p| p.name == name) {
            return Err(format!("no component named {name}"));
        }
        let changed = if enabled {
            state.disabled.remove(name)
        } else {
            state.disabled.insert(name.to_owned())
        };
        let hooks = state
            .loaded
            .iter()
            .find(|p| p.name == name)
            .map(|p| hooks_of(p))
            .unwrap_or_default();
        publish(state.enabled());
        // Turning a policy off is a security event: say which hooks stopped (or started)
        // running, and what remains enabled.
        tracing::warn!(
            component = name,
            action = if enabled { "enable" } else { "disable" },
            changed,
            hooks = ?hooks,
            now_enabled = ?state.enabled().iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
            "component {}",
            if enabled { "enabled" } else { "disabled" }
        );
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.state.lock().expect("components lock")
    }
}

/// The hooks the kernel calls on a component, by name.
fn hooks_of(p: &LoadedPlugin) -> Vec<&'static str> {
    HookName::ALL
        .into_iter()
        .filter(|h| p.has_hook(*h))
        .map(HookName::as_str)
        .collect()
}
