//! Helpers shared by the integration tests: the real bundles the build
//! produced, and requests to call them with.
#![allow(dead_code)]

use sluice::plugins::bindings::Caller;
use sluice::plugins::{
    Bundle, Candidate, Envelope, Loaded, LoadedPlugin, PolicyRequest, Runtime, RuntimeConfig,
};
use std::path::Path;
use std::sync::Arc;

/// A bundle built from this workspace: `router`, `faulty-router`, ….
pub fn bundle(name: &str) -> Bundle {
    Bundle::read_dir(&Path::new(env!("SLUICE_BUNDLES_DIR")).join(name)).unwrap()
}

pub fn runtime() -> Arc<Runtime> {
    Runtime::new(RuntimeConfig::default()).unwrap()
}

/// Loads `bundle` as a plugin of the kind `P` (`Router`, `Risk`, …),
/// without its self-tests (tests here give bundles other configurations).
pub async fn load<P: TryFrom<LoadedPlugin, Error = LoadedPlugin>>(
    runtime: &Arc<Runtime>,
    bundle: &Bundle,
) -> P {
    let Loaded { plugin, .. } = runtime.compile(bundle).await.unwrap();
    P::try_from(plugin).expect("a plugin of the expected kind")
}

pub fn envelope(model: &str) -> Envelope {
    Envelope {
        model: model.into(),
        stream: false,
        max_output_tokens: Some(256),
        estimated_prompt_tokens: 42,
        inbound_protocol: "openai-chat".into(),
        tags: vec![],
        received_at_ms: 1_764_000_000_000,
        seed: 7,
    }
}

pub fn caller() -> Caller {
    Caller {
        tenant: "acme".into(),
        user: "alice".into(),
        group: "default".into(),
        key_id: "key-1".into(),
    }
}

pub fn channel(name: &str, priority: i32, weight: u32) -> Candidate {
    Candidate {
        name: name.into(),
        protocol: "openai-chat".into(),
        weight,
        priority,
        tags: vec![],
        latency_ms: None,
    }
}

/// `envelope` from `caller()`, with these candidate channels.
pub fn request(envelope: Envelope, candidates: &[Candidate]) -> Arc<PolicyRequest> {
    Arc::new(PolicyRequest::new(envelope, Arc::new(caller())).with_candidates(candidates.to_vec()))
}
