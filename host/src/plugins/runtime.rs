//! The plugin runtime: one wasmtime engine with its pooling allocator and
//! epoch clock, a linker per plugin kind, and the artifact cache. Loading a
//! bundle checks it against the world its manifest declares and yields a
//! typed, ready-to-call plugin.

use super::bindings::{PricingPlugin, RiskPlugin, RouterPlugin, TranslatorPlugin};
use super::bundle::{Bundle, PluginId, PluginKind};
use super::cache::{ArtifactCache, Origin, RecentComponents};
use super::fault::DeadlineReached;
use super::kinds::{LoadedPlugin, Plugin};
use super::metrics::MetricsRegistry;
use super::pool::{Pool, PoolSettings, World};
use super::selftest;
use super::state::PluginState;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, Store,
    UpdateDeadline,
};

/// Runtime settings; the `[plugins.runtime]` table of the gateway's config.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Deadline of one plugin call (or one stream chunk), unless the
    /// bundle's manifest asks for another, up to `max_deadline_ms`.
    pub deadline_ms: u64,
    pub max_deadline_ms: u64,
    /// Memory cap of one instance, unless the manifest asks for another, up
    /// to `max_memory_mib`.
    pub memory_mib: u64,
    pub max_memory_mib: u64,
    /// Instances alive at once across all plugins: calls in flight, open
    /// streams and warm idle instances. Beyond it a call fails as
    /// unavailable instead of exhausting the machine.
    pub max_instances: u32,
    /// Idle warm instances kept per plugin version and thread.
    pub warm_idle: usize,
    /// Calls after which a warm instance is replaced, so slow leaks in a
    /// plugin cannot accumulate.
    pub warm_max_calls: u64,
    /// Where compiled plugins are cached; none compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// The epoch clock's period: the granularity of deadlines.
    pub tick_ms: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            deadline_ms: 100,
            max_deadline_ms: 5_000,
            memory_mib: 64,
            max_memory_mib: 512,
            max_instances: 1_000,
            warm_idle: 64,
            warm_max_calls: 10_000,
            cache_dir: None,
            tick_ms: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin bundle {plugin}: {reason}")]
    Invalid { plugin: String, reason: String },
    #[error("plugin runtime: {0}")]
    Runtime(String),
}

/// Compiled components kept in memory (a few MiB each).
const RECENT_COMPONENTS: usize = 32;

pub struct Runtime {
    engine: Engine,
    linkers: [Linker<PluginState>; 4],
    cache: Option<ArtifactCache>,
    recent: std::sync::Mutex<RecentComponents>,
    config: RuntimeConfig,
    /// Figures of every plugin version loaded.
    pub metrics: MetricsRegistry,
    _ticker: EpochTicker,
}

/// A loaded plugin with how its code was obtained.
#[derive(Debug)]
pub struct Loaded {
    pub plugin: LoadedPlugin,
    pub origin: Origin,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Arc<Self>, LoadError> {
        let runtime_error = |e: wasmtime::Error| LoadError::Runtime(format!("{e:#}"));
        let max_memory = usize::try_from(config.max_memory_mib << 20)
            .map_err(|_| LoadError::Runtime("max_memory_mib is too large".into()))?;
        let mut pool = PoolingAllocationConfig::default();
        // A component of a Rust guest holds a handful of core instances
        // (its module plus WASI adapter shims) and one or two memories.
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances.saturating_mul(8))
            .total_memories(config.max_instances.saturating_mul(2))
            .total_tables(config.max_instances.saturating_mul(4))
            .total_stacks(config.max_instances)
            .max_core_instances_per_component(16)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_memory_size(max_memory);
        let mut engine_config = Config::new();
        engine_config
            .epoch_interruption(true)
            .wasm_component_model(true)
            .cranelift_opt_level(OptLevel::Speed)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&engine_config).map_err(runtime_error)?;
        let linkers = PluginKind::ALL.map(|kind| linker_for(&engine, kind));
        let [router, risk, pricing, translator] = linkers;
        let linkers = [router?, risk?, pricing?, translator?];
        let cache =
            match &config.cache_dir {
                Some(dir) => Some(ArtifactCache::new(dir.clone()).map_err(|e| {
                    LoadError::Runtime(format!("plugin cache {}: {e}", dir.display()))
                })?),
                None => None,
            };
        let ticker =
            EpochTicker::start(engine.clone(), Duration::from_millis(config.tick_ms.max(1)));
        Ok(Arc::new(Runtime {
            engine,
            linkers,
            cache,
            recent: std::sync::Mutex::new(RecentComponents::new(RECENT_COMPONENTS)),
            metrics: MetricsRegistry::default(),
            config,
            _ticker: ticker,
        }))
    }

    /// Compiles (or loads from the cache) and checks a bundle, then runs
    /// the self-tests of its manifest: a bundle loads only when they all
    /// pass.
    pub async fn load(self: &Arc<Self>, bundle: &Bundle) -> Result<Loaded, LoadError> {
        let loaded = self.compile(bundle).await?;
        let failures: Vec<_> = selftest::run(&loaded.plugin, &bundle.manifest.tests)
            .await
            .into_iter()
            .filter_map(|outcome| Some(format!("{:?}: {}", outcome.name, outcome.failure?)))
            .collect();
        loaded.plugin.forget_idle_here();
        if failures.is_empty() {
            Ok(loaded)
        } else {
            Err(LoadError::Invalid {
                plugin: bundle.id().to_string(),
                reason: format!("self-tests failed: {}", failures.join("; ")),
            })
        }
    }

    /// Compiles (or loads from the cache) and checks a bundle, without its
    /// self-tests. On success one instance has already been created, so a
    /// plugin that cannot even start is refused here rather than on its
    /// first request.
    pub async fn compile(self: &Arc<Self>, bundle: &Bundle) -> Result<Loaded, LoadError> {
        let id = Arc::new(bundle.id());
        let invalid = |reason: String| LoadError::Invalid {
            plugin: id.to_string(),
            reason,
        };
        let kind = bundle.manifest.kind;
        let (component, origin) = self
            .component(bundle, &id.content_hash)
            .await
            .map_err(|e| invalid(format!("not a valid WebAssembly component: {e:#}")))?;
        self.check_world(&component, kind).map_err(invalid)?;
        let instance_pre = self.linkers[kind as usize]
            .instantiate_pre(&component)
            .map_err(|e| {
                invalid(format!(
                    "imports something a {kind} plugin is not given: {e:#}"
                ))
            })?;
        let settings = self.settings(bundle).map_err(invalid)?;
        let plugin = match kind {
            PluginKind::Router => self
                .plugin(&id, settings, instance_pre)
                .map(LoadedPlugin::Router),
            PluginKind::Risk => self
                .plugin(&id, settings, instance_pre)
                .map(LoadedPlugin::Risk),
            PluginKind::Pricing => self
                .plugin(&id, settings, instance_pre)
                .map(LoadedPlugin::Pricing),
            PluginKind::Translator => self
                .plugin(&id, settings, instance_pre)
                .map(LoadedPlugin::Translator),
        }
        .map_err(|e| invalid(format!("does not fit the {kind} world: {e:#}")))?;
        plugin
            .check_start()
            .await
            .map_err(|e| invalid(format!("cannot start: {}", e.failure)))?;
        Ok(Loaded { plugin, origin })
    }

    /// The compiled component of `bundle`: a recent one, else from the
    /// disk cache or compiled, on a blocking thread, since compiling takes
    /// tens of milliseconds of CPU that a request thread must not wait on.
    async fn component(
        self: &Arc<Self>,
        bundle: &Bundle,
        content_hash: &str,
    ) -> wasmtime::Result<(Component, Origin)> {
        let recent = self
            .recent
            .lock()
            .expect("the lock is never poisoned")
            .get(content_hash);
        if let Some(component) = recent {
            return Ok((component, Origin::Cached));
        }
        let (runtime, wasm) = (self.clone(), bundle.component.clone());
        let (component, origin) = tokio::task::spawn_blocking(move || match &runtime.cache {
            Some(cache) => cache.load(&runtime.engine, &wasm),
            None => Component::new(&runtime.engine, &wasm).map(|c| (c, Origin::Compiled)),
        })
        .await??;
        self.recent
            .lock()
            .expect("the lock is never poisoned")
            .insert(content_hash.to_string(), component.clone());
        Ok((component, origin))
    }

    fn plugin<W: World>(
        self: &Arc<Self>,
        id: &Arc<PluginId>,
        settings: PoolSettings,
        instance_pre: InstancePre<PluginState>,
    ) -> wasmtime::Result<Plugin<W>> {
        let pre = W::pre(instance_pre)?;
        Ok(Plugin::new(Pool::new(
            self.clone(),
            id.clone(),
            settings,
            pre,
            self.metrics.register(id.clone()),
        )))
    }

    /// The kind a manifest declares must be the world the component exports.
    fn check_world(&self, component: &Component, declared: PluginKind) -> Result<(), String> {
        let exported: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        if exported.contains(&declared.export_interface()) {
            return Ok(());
        }
        let actual = PluginKind::ALL
            .into_iter()
            .find(|kind| exported.contains(&kind.export_interface()));
        Err(match actual {
            Some(actual) => format!(
                "the manifest declares a {declared} plugin but the component is a {actual} plugin (it exports {})",
                actual.export_interface()
            ),
            None => format!(
                "the manifest declares a {declared} plugin but the component does not export {} (it exports: {})",
                declared.export_interface(),
                if exported.is_empty() {
                    "nothing".to_string()
                } else {
                    exported.join(", ")
                }
            ),
        })
    }

    fn settings(&self, bundle: &Bundle) -> Result<PoolSettings, String> {
        let limits = &bundle.manifest.limits;
        let deadline_ms = limits.deadline_ms.unwrap_or(self.config.deadline_ms);
        if deadline_ms == 0 || deadline_ms > self.config.max_deadline_ms {
            return Err(format!(
                "deadline_ms {deadline_ms} must be between 1 and {}",
                self.config.max_deadline_ms
            ));
        }
        let memory_mib = limits.memory_mib.unwrap_or(self.config.memory_mib);
        if memory_mib == 0 || memory_mib > self.config.max_memory_mib {
            return Err(format!(
                "memory_mib {memory_mib} must be between 1 and {}",
                self.config.max_memory_mib
            ));
        }
        Ok(PoolSettings {
            config_json: bundle.config_json().into(),
            deadline: Duration::from_millis(deadline_ms),
            memory_limit: (memory_mib << 20) as usize,
            instances: bundle.manifest.instances,
            warm_idle: self.config.warm_idle,
            warm_max_calls: self.config.warm_max_calls,
        })
    }

    pub(super) fn new_store(
        &self,
        plugin: Arc<PluginId>,
        settings: &PoolSettings,
    ) -> Store<PluginState> {
        let state = PluginState::new(plugin, settings.config_json.clone(), settings.memory_limit);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        // Every tick past the armed deadline lands here: yield to the tokio
        // scheduler so a long call never starves other tasks, and interrupt
        // the call once its budget of ticks is spent.
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            if state.ticks_left == 0 {
                return Err(DeadlineReached.into());
            }
            state.ticks_left -= 1;
            // tokio's own yield, not wasmtime's plain re-wake: it lets the
            // scheduler poll its I/O driver before resuming this call.
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        store
    }

    /// Gives the next call on `store` its deadline.
    pub(super) fn arm_deadline(&self, store: &mut Store<PluginState>, deadline: Duration) {
        let tick = self.config.tick_ms.max(1);
        let ticks = (deadline.as_millis() as u64).div_ceil(tick).max(1);
        store.data_mut().ticks_left = ticks - 1;
        store.set_epoch_deadline(1);
    }
}

fn linker_for(engine: &Engine, kind: PluginKind) -> Result<Linker<PluginState>, LoadError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|e| LoadError::Runtime(format!("{e:#}")))?;
    type State = HasSelf<PluginState>;
    let linked = match kind {
        PluginKind::Router => RouterPlugin::add_to_linker::<PluginState, State>(&mut linker, |s| s),
        PluginKind::Risk => RiskPlugin::add_to_linker::<PluginState, State>(&mut linker, |s| s),
        PluginKind::Pricing => {
            PricingPlugin::add_to_linker::<PluginState, State>(&mut linker, |s| s)
        }
        PluginKind::Translator => {
            TranslatorPlugin::add_to_linker::<PluginState, State>(&mut linker, |s| s)
        }
    };
    linked.map_err(|e| LoadError::Runtime(format!("{e:#}")))?;
    Ok(linker)
}

/// Advances the engine's epoch every tick, for deadlines.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::park_timeout(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
