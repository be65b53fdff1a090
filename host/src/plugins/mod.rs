//! The sandboxed plugin platform: bundles, the wasmtime runtime, instance
//! pools, and the typed calls the gateway makes into each plugin kind.

pub mod bindings;
pub mod builtin;
mod bundle;
mod cache;
mod chain;
mod fault;
mod kinds;
pub mod metrics;
mod pool;
mod request;
mod runtime;
pub mod selftest;
mod state;
pub mod watch;

pub use bundle::{Bundle, BundleError, Instances, Manifest, ManifestLimits, PluginId, PluginKind};
pub use cache::Origin;
pub use chain::{Chain, Chains};
pub use fault::{CallError, Failure};
pub use kinds::{LoadedPlugin, Plugin, Pricing, Risk, Router, Translator, TranslatorStream};
pub use pool::World;
pub use request::{Candidate, Envelope, PolicyRequest};
pub use runtime::{LoadError, Loaded, Runtime, RuntimeConfig};
pub use state::RequestText;
