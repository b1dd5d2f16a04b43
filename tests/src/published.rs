//! First-party components as production gets them: signed with a fresh key, pushed to a real
//! registry, and named in the config by `oci://` reference with the key's public half as the
//! trust root, so the proxy pulls and verifies them before they run.

use heliosproxy::config::{Config, PluginConfig};
use heliosproxy::oci::{Artifact, registry, trust};

use crate::{Registry, component_wasm, temp_dir};

/// Signs `crate_name`'s component, pushes it to `reg` as `helios/<name>:1.0.0` and points
/// `plugin` (already in `config`'s terms: name, grants, config) at it.
pub async fn publish(
    config: &mut Config,
    mut plugin: PluginConfig,
    crate_name: &str,
    reg: &Registry,
) {
    let dir = temp_dir("published");
    let (private, public) = trust::generate_key_pair();
    let key_path = dir.join("signer.key");
    std::fs::write(&key_path, private).unwrap();
    std::fs::create_dir_all(dir.join("trust")).unwrap();
    std::fs::write(dir.join("trust").join("signer.pub"), public).unwrap();
    let key = trust::load_signing_key(&key_path).unwrap();
    let wasm = std::fs::read(component_wasm(crate_name)).unwrap();
    let hooks = plugin.hooks.iter().map(|h| h.as_str().to_owned()).collect();
    let grants = plugin
        .grants
        .iter()
        .map(|g| g.interface().to_owned())
        .collect();
    let mut artifact = Artifact::new(&plugin.name, "1.0.0", hooks, grants, wasm);
    artifact.sign(&key);
    let bytes = artifact.pack().unwrap();
    let reference = format!("{}/helios/{}:1.0.0", reg.addr, plugin.name);
    let (r, insecure) = (reference.clone(), vec![reg.addr.clone()]);
    tokio::task::spawn_blocking(move || registry::push(&r, bytes, &insecure))
        .await
        .unwrap()
        .expect("push to the test registry");
    plugin.source = format!("oci://{reference}");
    config.plugins.push(plugin);
    config.plugin_runtime.trust_root = Some(dir.join("trust"));
    config.plugin_runtime.insecure_registries = vec![reg.addr.clone()];
    config.plugin_runtime.registry_timeout_ms = 5000;
}
