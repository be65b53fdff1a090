//! Instances of one plugin version: warm ones reused one call at a time,
//! fresh ones where the plugin asks for them, each call bounded by its
//! deadline and memory cap, and any instance that faulted thrown away.
//!
//! Idle instances are kept per thread, like the gateway's upstream
//! connections: a worker takes and returns its own without a lock, and no
//! other core ever writes the memory it uses to do so.

use super::bindings::{
    PluginError, PricingPlugin, PricingPluginPre, RiskPlugin, RiskPluginPre, RouterPlugin,
    RouterPluginPre, TranslatorPlugin, TranslatorPluginPre,
};
use super::bundle::{Instances, PluginId};
use super::fault::{CallError, Failure, classify};
use super::metrics::PluginMetrics;
use super::runtime::Runtime;
use super::state::PluginState;
use crossbeam_utils::CachePadded;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thread_local::ThreadLocal;
use wasmtime::Store;
use wasmtime::component::InstancePre;

/// One plugin world's generated bindings, instantiable from a prepared
/// component. Implemented for the four worlds of the contract only.
pub trait World: Send + Sync + Sized + 'static {
    type Pre: Send + Sync + 'static;
    fn pre(instance_pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre>;
    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<PluginState>,
    ) -> impl Future<Output = wasmtime::Result<Self>> + Send;
}

macro_rules! world {
    ($bindings:ty, $pre:ident) => {
        impl World for $bindings {
            type Pre = $pre<PluginState>;
            fn pre(instance_pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre> {
                $pre::new(instance_pre)
            }
            async fn instantiate(
                pre: &Self::Pre,
                store: &mut Store<PluginState>,
            ) -> wasmtime::Result<Self> {
                pre.instantiate_async(store).await
            }
        }
    };
}

world!(RouterPlugin, RouterPluginPre);
world!(RiskPlugin, RiskPluginPre);
world!(PricingPlugin, PricingPluginPre);
world!(TranslatorPlugin, TranslatorPluginPre);

#[derive(Clone, Debug)]
pub(super) struct PoolSettings {
    pub config_json: Arc<str>,
    pub deadline: Duration,
    pub memory_limit: usize,
    pub instances: Instances,
    pub warm_idle: usize,
    pub warm_max_calls: u64,
}

/// One thread's idle instances, on cache lines of its own.
type Shelf<W> = CachePadded<RefCell<Vec<Box<Instance<W>>>>>;

pub(super) struct Pool<W: World> {
    runtime: Arc<Runtime>,
    id: Arc<PluginId>,
    settings: PoolSettings,
    pre: W::Pre,
    idle: ThreadLocal<Shelf<W>>,
    metrics: Arc<PluginMetrics>,
}

/// A store with its instance. Nothing else ever runs in this store.
/// Always boxed: the bindings of a world are hundreds of bytes, and an
/// instance moves from the shelf to a call and back on every call.
pub(super) struct Instance<W> {
    pub store: Store<PluginState>,
    pub bindings: W,
    calls: u64,
    /// When the current call started.
    armed_at: Instant,
}

impl<W: World> Pool<W> {
    pub fn new(
        runtime: Arc<Runtime>,
        id: Arc<PluginId>,
        settings: PoolSettings,
        pre: W::Pre,
        metrics: Arc<PluginMetrics>,
    ) -> Self {
        Pool {
            runtime,
            id,
            settings,
            pre,
            idle: ThreadLocal::new(),
            metrics,
        }
    }

    pub fn id(&self) -> &Arc<PluginId> {
        &self.id
    }

    /// A new instance in a store of its own.
    pub async fn instantiate(&self) -> Result<Box<Instance<W>>, CallError> {
        let mut store = self.runtime.new_store(self.id.clone(), &self.settings);
        // Instantiation runs guest code (data initialisation, start
        // functions), so it is bounded like a call.
        self.runtime
            .arm_deadline(&mut store, self.settings.deadline);
        match W::instantiate(&self.pre, &mut store).await {
            Ok(bindings) => Ok(Box::new(Instance {
                store,
                bindings,
                calls: 0,
                armed_at: Instant::now(),
            })),
            Err(error) => {
                let failure = if error.downcast_ref::<wasmtime::Trap>().is_some()
                    || store.data().memory.exceeded
                {
                    classify(&error, store.data(), self.settings.deadline)
                } else {
                    Failure::Unavailable(format!("{error:#}"))
                };
                Err(self.error(failure))
            }
        }
    }

    /// An instance for one call: a warm one when there is one idle.
    pub async fn lease(&self) -> Result<Lease<'_, W>, CallError> {
        Ok(Lease {
            pool: self,
            instance: Some(self.take().await?),
        })
    }

    /// A warm instance when this thread has one idle, else a new one. Give
    /// it back with [`Pool::release`] only after it ended in a clean state.
    pub async fn take(&self) -> Result<Box<Instance<W>>, CallError> {
        let idle = match self.settings.instances {
            Instances::Warm => self.idle.get_or_default().borrow_mut().pop(),
            Instances::Fresh => None,
        };
        match idle {
            Some(instance) => Ok(instance),
            // Boxed: wasmtime's instantiation is a large future, and every
            // plugin call's future would otherwise be as large, and moved
            // whole on each call.
            None => Box::pin(self.instantiate()).await,
        }
    }

    /// Creates one instance, proving the plugin starts. It is not kept:
    /// plugins mostly load on threads that serve no calls (start-up, the
    /// plugin folder's watcher).
    pub async fn check_start(&self) -> Result<(), CallError> {
        self.instantiate().await.map(drop)
    }

    /// Drops the instances idle on this thread, such as those a load's
    /// self-tests left on a thread that serves no calls.
    pub fn forget_idle_here(&self) {
        if let Some(idle) = self.idle.get() {
            idle.borrow_mut().clear();
        }
    }

    #[cfg(test)]
    pub fn idle_here(&self) -> usize {
        self.idle.get().map_or(0, |idle| idle.borrow().len())
    }

    pub fn release(&self, mut instance: Box<Instance<W>>) {
        if self.settings.instances == Instances::Fresh
            || instance.calls >= self.settings.warm_max_calls
            // An instance whose memory grew past half its cap is replaced
            // before it can run into the cap in the middle of a call.
            || instance.store.data().memory.current > self.settings.memory_limit / 2
        {
            return;
        }
        let state = instance.store.data_mut();
        state.request = None;
        state.request_text = None;
        let mut idle = self.idle.get_or_default().borrow_mut();
        if idle.len() < self.settings.warm_idle {
            idle.push(instance);
        }
    }

    /// The call failed: counted, and named for the caller.
    pub fn error(&self, failure: Failure) -> CallError {
        self.metrics.failure(&failure);
        CallError {
            plugin: self.id.clone(),
            failure,
        }
    }

    pub fn arm(&self, instance: &mut Instance<W>) {
        instance.calls += 1;
        instance.armed_at = Instant::now();
        self.runtime
            .arm_deadline(&mut instance.store, self.settings.deadline);
    }

    /// Turns a call's raw result into the plugin's answer or a typed error.
    /// `Err` means the instance faulted; the caller must drop it.
    pub fn outcome<R>(
        &self,
        instance: &Instance<W>,
        result: wasmtime::Result<Result<R, PluginError>>,
    ) -> Result<Result<R, CallError>, CallError> {
        self.metrics.call(instance.armed_at.elapsed());
        match result {
            Ok(Ok(value)) => Ok(Ok(value)),
            Ok(Err(refusal)) => Ok(Err(self.error(Failure::Refused {
                code: refusal.code,
                message: refusal.message,
            }))),
            Err(error) => Err(self.error(classify(
                &error,
                instance.store.data(),
                self.settings.deadline,
            ))),
        }
    }
}

/// An instance lent to one call. It goes back to the pool only through
/// [`Lease::settle`] after a clean call; dropped any other way (a fault, or
/// the caller's future cancelled mid-call) it is discarded, since its state
/// is then unknown.
pub(super) struct Lease<'p, W: World> {
    pool: &'p Pool<W>,
    instance: Option<Box<Instance<W>>>,
}

impl<W: World> Lease<'_, W> {
    /// The instance, armed for one call.
    pub fn armed(&mut self) -> &mut Instance<W> {
        let instance = self
            .instance
            .as_mut()
            .expect("a lease holds its instance until settled");
        self.pool.arm(instance);
        instance
    }

    /// Settles a call: `check` validates the plugin's answer against the
    /// contract. A fault or a malformed answer discards the instance.
    pub fn settle<R, T>(
        mut self,
        result: wasmtime::Result<Result<R, PluginError>>,
        check: impl FnOnce(R) -> Result<T, String>,
    ) -> Result<T, CallError> {
        let instance = self.instance.take().expect("settled once");
        match self.pool.outcome(&instance, result) {
            Ok(Ok(value)) => match check(value) {
                Ok(checked) => {
                    self.pool.release(instance);
                    Ok(checked)
                }
                Err(reason) => Err(self.pool.error(Failure::BadOutput(reason))),
            },
            Ok(Err(refused)) => {
                self.pool.release(instance);
                Err(refused)
            }
            Err(fault) => Err(fault),
        }
    }
}
