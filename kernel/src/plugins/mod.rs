//! The WebAssembly component host: one wasmtime engine, components compiled once (and cached
//! on disk by digest), instances created ahead of use and reused, every call bounded by an
//! epoch deadline and a memory limit. A trap, timeout or out-of-memory fails only that call;
//! the instance is thrown away and a fresh one takes its place.

mod adapter;
pub mod bindings;
pub mod cache;
mod config_values;
mod deadline;
pub mod decisions;
pub mod documents;
mod errors;
pub mod facts;
mod grants;
pub mod host;
pub mod registry;
mod stats;
pub mod verify;

pub use config_values::flatten_config;
pub use deadline::DeadlineWatch;
use deadline::deadline_reached;
pub use errors::{CallError, LoadError};
use grants::check_grants;
pub use grants::describe;
pub use stats::{CallStats, PluginStats};

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, StoreLimitsBuilder};

use self::bindings::{Bindings, ConfigValue, Hooks, Pre, v2, v3};
use self::host::{HostState, KvStore, TopologySource};
use crate::config::{HookName, OnError, PluginConfig, PluginRuntimeConfig};
use crate::oci::TrustRoot;

pub use crate::oci::artifact::WIT_PACKAGE;
/// Milliseconds per epoch tick; call deadlines are counted in ticks.
const TICK: Duration = Duration::from_millis(1);

/// The engine and linker every component shares, plus the epoch ticker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<cache::CompiledCache>,
    trust: Option<TrustRoot>,
    fetch: crate::oci::FetchOptions,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Relaxed);
    }
}

impl Runtime {
    /// Creates the engine (pooling allocator, epoch interruption) and starts the ticker.
    pub fn new(config: &PluginRuntimeConfig) -> Result<Runtime, LoadError> {
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            name: "(runtime)".into(),
            message: format!("{e:#}"),
        };
        let mut pooling = wasmtime::PoolingAllocationConfig::default();
        let n = config.max_instances.max(8);
        pooling
            .total_component_instances(n)
            .total_core_instances(n * 2)
            .total_memories(n * 2)
            .total_tables(n * 2)
            .max_memory_size(256 << 20);
        let mut wt = wasmtime::Config::new();
        wt.epoch_interruption(true)
            .concurrency_support(false)
            .memory_reservation(256 << 20)
            .memory_guard_size(64 << 10)
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling));
        let engine = Engine::new(&wt).map_err(invalid)?;
        let mut linker = Linker::<HostState>::new(&engine);
        v3::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(invalid)?;
        // 0.2.0 components import the older interfaces; both share the `types` interface.
        linker.allow_shadowing(true);
        v2::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(invalid)?;
        linker.allow_shadowing(false);
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (e, stop) = (engine.clone(), stop_ticker.clone());
        std::thread::Builder::new()
            .name("helios-epoch".into())
            .spawn(move || {
                while !stop.load(Relaxed) {
                    std::thread::sleep(TICK);
                    e.increment_epoch();
                }
            })
            .expect("can start the epoch thread");
        let trust = match &config.trust_root {
            Some(dir) => Some(TrustRoot::load(dir)?),
            None => {
                tracing::warn!(
                    "plugin_runtime.trust_root is not set: components are loaded WITHOUT signature verification (development only)"
                );
                None
            }
        };
        let cache =
            config
                .cache_dir
                .as_deref()
                .and_then(|dir| match cache::CompiledCache::open(dir) {
                    Ok(c) => Some(c),
                    Err(why) => {
                        tracing::warn!("compiled-component cache not used: {why}");
                        None
                    }
                });
        Ok(Runtime {
            engine,
            linker,
            cache,
            trust,
            fetch: crate::oci::FetchOptions {
                insecure_registries: config.insecure_registries.clone(),
                cache_dir: config.cache_dir.clone(),
                timeout: Duration::from_millis(config.registry_timeout_ms),
            },
            stop_ticker,
        })
    }

    /// Compiles (or loads from cache), checks grants, instantiates and initialises a
    /// component from its configuration.
    pub fn load(
        &self,
        config: &PluginConfig,
        topology: Arc<dyn TopologySource>,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        let verified = crate::oci::resolve(&config.source, self.trust.as_ref(), &self.fetch)
            .map_err(|error| LoadError::Source {
                name: config.name.clone(),
                source_path: config.source.clone(),
                error,
            })?;
        if let Some(key) = &verified.signed_by {
            tracing::info!(component = %config.name, key = %key, "signature verified");
        }
        let plugin = self.load_bytes(config, &verified.wasm, topology)?;
        *plugin.provenance.lock().expect("provenance lock") = Provenance {
            version: verified.manifest.map(|m| m.version),
            signed_by: verified.signed_by,
        };
        Ok(plugin)
    }

    /// Like [`Runtime::load`] with the wasm bytes already in hand.
    pub fn load_bytes(
        &self,
        config: &PluginConfig,
        bytes: &[u8],
        topology: Arc<dyn TopologySource>,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        let name = config.name.clone();
        let invalid = |message: String| LoadError::Invalid {
            name: name.clone(),
            message,
        };
        let digest = hex::encode(Sha256::digest(bytes));
        let component = self
            .compile(&digest, bytes)
            .map_err(|e| invalid(format!("{e:#}")))?;
        check_grants(&self.engine, &component, config)?;
        let mut linker = self.linker.clone();
        // Rust's std makes components import WASI even when they never call it: such calls trap.
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| invalid(format!("{e:#}")))?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| invalid(format!("{e:#}")))?;
        // The version is in the names of the host interfaces the component imports.
        let older = component
            .component_type()
            .imports(&self.engine)
            .any(|(name, _)| name.starts_with("helios:plugin/") && name.ends_with("@0.2.0"));
        let pre = if older {
            v2::PluginPre::new(instance_pre).map(Pre::V2)
        } else {
            v3::PluginPre::new(instance_pre).map(Pre::V3)
        }
        .map_err(|e| {
            invalid(format!(
                "does not implement {WIT_PACKAGE} (nor {}): {e:#}",
                crate::oci::artifact::OLDER_WIT_PACKAGES.join(", ")
            ))
        })?;
        let plugin = LoadedPlugin {
            provenance: Mutex::new(Provenance::default()),
            name: config.name.clone(),
            digest,
            config_values: flatten_config(&config.config),
            pre,
            engine: self.engine.clone(),
            kv: Arc::new(KvStore::default()),
            topology,
            component_name: Arc::from(config.name.as_str()),
            memory_bytes: (config.memory_mb as usize) << 20,
            rows_bytes: config.post_query_rows_bytes,
            documents: Arc::new(documents::Documents::new(&config.documents)),
            deadline_ticks: config.timeout_ms + 1,
            timeout_ms: config.timeout_ms,
            on_error: config.on_error,
            idle: Mutex::new(Vec::new()),
            hooks: Mutex::new(Hooks::empty()),
            pure: std::sync::atomic::AtomicU8::new(0),
            decisions: decisions::Decisions::default(),
            enabled: config.hooks.iter().copied().collect(),
            stats: PluginStats::default(),
        };
        // The first instance runs init and tells us which hooks the component implements.
        let first = plugin.instantiate().map_err(|e| LoadError::Init {
            name: config.name.clone(),
            message: e.to_string(),
        })?;
        plugin.idle.lock().expect("instances lock").push(first);
        // A component named for a hook it does not implement would silently drop that hook
        // (a wrong component under the guardrail's name would remove validation): refuse it.
        let declared = *plugin.hooks.lock().expect("hooks lock");
        let missing: Vec<&str> = config
            .hooks
            .iter()
            .filter(|h| !declared.contains(hook_flag(**h)))
            .map(|h| h.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(invalid(format!(
                "configured hooks [{}] but the component does not implement them",
                missing.join(", ")
            )));
        }
        tracing::info!(
            component = %config.name,
            contract = plugin.pre.version(),
            digest = %&plugin.digest[..12],
            "component loaded"
        );
        for _ in 1..config.instances {
            if let Ok(i) = plugin.instantiate() {
                plugin.idle.lock().expect("instances lock").push(i);
            }
        }
        Ok(Arc::new(plugin))
    }

    fn compile(&self, digest: &str, bytes: &[u8]) -> wasmtime::Result<Component> {
        let Some(cache) = &self.cache else {
            return Component::new(&self.engine, bytes);
        };
        if let Some(native) = cache.load(digest) {
            // SAFETY: the bytes were written by `Component::serialize` of a component whose
            // digest (of the verified wasm) they are bound to by the cache's HMAC, in the
            // proxy's private directory; wasmtime checks the engine version and
            // configuration before using them.
            match unsafe { Component::deserialize(&self.engine, &native) } {
                Ok(c) => return Ok(c),
                Err(e) => tracing::warn!("ignoring unusable cached component {digest}: {e:#}"),
            }
        }
        let component = Component::new(&self.engine, bytes)?;
        if let Err(e) = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|native| cache.store(digest, &native))
        {
            tracing::warn!("cannot cache compiled component {digest}: {e:#}");
        }
        Ok(component)
    }
}

struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
}

/// A hook's bit in [`LoadedPlugin`]'s lock-free set of pure hooks.
fn hook_bit(hook: HookName) -> u8 {
    match hook {
        HookName::Authenticate => 1,
        HookName::PreQuery => 2,
        HookName::Validate => 4,
        HookName::Route => 8,
        HookName::PostQuery => 16,
    }
}

/// The `hooks` flag of a hook.
fn hook_flag(hook: HookName) -> Hooks {
    match hook {
        HookName::Authenticate => Hooks::AUTHENTICATE,
        HookName::PreQuery => Hooks::PRE_QUERY,
        HookName::Validate => Hooks::VALIDATE,
        HookName::Route => Hooks::ROUTE,
        HookName::PostQuery => Hooks::POST_QUERY,
    }
}

/// Where a loaded component came from.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// Version from the artefact's manifest.
    pub version: Option<String>,
    /// Trust-root key file that verified it.
    pub signed_by: Option<String>,
}

/// A loaded component with its ready instances.
pub struct LoadedPlugin {
    /// Version and signature status.
    pub provenance: Mutex<Provenance>,
    /// Name from config.
    pub name: String,
    /// SHA-256 of the wasm bytes.
    pub digest: String,
    config_values: Vec<(String, ConfigValue)>,
    pre: Pre,
    engine: Engine,
    kv: Arc<KvStore>,
    topology: Arc<dyn TopologySource>,
    component_name: Arc<str>,
    memory_bytes: usize,
    /// Bytes of result rows its PostQuery may read per statement (0 = none).
    pub rows_bytes: usize,
    documents: Arc<documents::Documents>,
    deadline_ticks: u64,
    timeout_ms: u64,
    on_error: Option<OnError>,
    idle: Mutex<Vec<Instance>>,
    hooks: Mutex<Hooks>,
    /// Bits of the hooks declared pure (read on every statement: no lock).
    pure: std::sync::atomic::AtomicU8,
    /// Cached decisions of pure hooks.
    pub decisions: decisions::Decisions,
    enabled: HashSet<HookName>,
    /// Counters.
    pub stats: PluginStats,
}

impl LoadedPlugin {
    /// Whether the kernel calls this hook of this component.
    pub fn has_hook(&self, hook: HookName) -> bool {
        let declared = *self.hooks.lock().expect("hooks lock");
        declared.contains(hook_flag(hook))
            && (self.enabled.is_empty() || self.enabled.contains(&hook))
    }

    /// Whether the component declared `hook` pure, so the kernel may cache its decisions.
    pub fn is_pure(&self, hook: HookName) -> bool {
        self.pure.load(Relaxed) & hook_bit(hook) != 0
    }

    /// The contract version the component was built against.
    pub fn contract(&self) -> &'static str {
        self.pre.version()
    }

    /// The failure policy for `hook`.
    pub fn on_error(&self, hook: HookName) -> OnError {
        self.on_error.unwrap_or_else(|| hook.default_on_error())
    }

    /// Instances ready for calls.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().expect("instances lock").len()
    }

    fn instantiate(&self) -> Result<Instance, CallError> {
        let state = HostState {
            component: self.component_name.clone(),
            kv: self.kv.clone(),
            topology: self.topology.clone(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.memory_bytes)
                .instances(4)
                .tables(8)
                .memories(4)
                .trap_on_grow_failure(false)
                .build(),
            scope: None,
            deadline: DeadlineWatch::default(),
            rows_bytes: self.rows_bytes,
            pure: Hooks::empty(),
            reads: Vec::new(),
            documents: self.documents.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let window = self.deadline_ticks;
        store.epoch_deadline_callback(move |mut ctx| Ok(deadline_reached(ctx.data_mut(), window)));
        // Instantiation and init get a generous deadline of their own.
        store.set_epoch_deadline(1000);
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        let registration = bindings
            .call_init(&mut store, &self.config_values)
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?
            .map_err(CallError::Instantiate)?;
        *self.hooks.lock().expect("hooks lock") = registration.hooks;
        let pure = store.data().pure & registration.hooks;
        let bits = HookName::ALL
            .into_iter()
            .filter(|h| pure.contains(hook_flag(*h)))
            .fold(0, |bits, h| bits | hook_bit(h));
        self.pure.store(bits, Relaxed);
        Ok(Instance { store, bindings })
    }

    /// Runs one bounded call on an idle instance, with `scope` readable through the
    /// `context` interface for its duration. On failure the instance is dropped (its memory
    /// returns to the pool) and the next call gets a fresh one.
    pub fn call<R>(
        &self,
        hook: HookName,
        scope: Option<&host::CallScope>,
        f: impl FnOnce(&Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.call_reading(hook, scope, f).map(|(r, _)| r)
    }

    /// Like [`LoadedPlugin::call`], also returning the session values the hook read through
    /// `context` (the key of a cached decision).
    pub fn call_reading<R>(
        &self,
        hook: HookName,
        scope: Option<&host::CallScope>,
        f: impl FnOnce(&Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<(R, Vec<host::Read>), CallError> {
        self.stats.call(hook);
        let started = Instant::now();
        let popped = self.idle.lock().expect("instances lock").pop();
        let mut instance = match popped {
            Some(i) => i,
            None => self.instantiate().inspect_err(|_| {
                self.stats.error(hook);
            })?,
        };
        instance.store.set_epoch_deadline(self.deadline_ticks);
        instance.store.data_mut().deadline = DeadlineWatch::default();
        instance.store.data_mut().scope = scope.cloned();
        instance.store.data_mut().reads.clear();
        let result = f(&instance.bindings, &mut instance.store);
        instance.store.data_mut().scope = None;
        let reads = std::mem::take(&mut instance.store.data_mut().reads);
        self.stats.record(hook, started.elapsed().as_nanos() as u64);
        match result {
            Ok(v) => {
                self.idle.lock().expect("instances lock").push(instance);
                Ok((v, reads))
            }
            Err(e) => {
                self.stats.error(hook);
                let timed_out = e
                    .downcast_ref::<wasmtime::Trap>()
                    .is_some_and(|t| *t == wasmtime::Trap::Interrupt);
                if timed_out {
                    self.stats.timeout(hook);
                    Err(CallError::Timeout(self.timeout_ms))
                } else {
                    Err(CallError::Trap(format!("{e:#}")))
                }
            }
        }
    }
}
