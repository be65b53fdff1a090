//! The request as policy plugins see it. The host keeps it whole; a plugin
//! call borrows it through the contract's `request` resource and reads the
//! fields it needs, one host call each, so a plugin that reads nothing pays
//! nothing for the fields (lowering a string into a guest costs a call into
//! its allocator).

use super::bindings::{Caller, Channel, ChannelCandidate, Request, types};
use super::state::PluginState;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use wasmtime::component::Resource;

/// The few fields the host parsed from the client's body, and its own
/// figures about the call. Recorded with each billed call, so a dry run
/// replays a plugin on the inputs it had.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The model the client asked for, as the client spelled it.
    pub model: String,
    pub stream: bool,
    pub max_output_tokens: Option<u32>,
    pub estimated_prompt_tokens: u32,
    /// The client's wire protocol.
    pub inbound_protocol: String,
    pub tags: Vec<String>,
    /// Admission time, milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    /// The request's random seed.
    pub seed: u64,
}

/// A channel that may serve the request, as routers see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub name: String,
    pub protocol: String,
    pub weight: u32,
    pub priority: i32,
    pub tags: Vec<String>,
    pub latency_ms: Option<u32>,
}

/// Everything a policy plugin call may read.
#[derive(Clone, Debug)]
pub struct PolicyRequest {
    pub envelope: Envelope,
    pub caller: Arc<Caller>,
    /// For routers; empty for the other kinds.
    pub candidates: Vec<Candidate>,
}

impl PolicyRequest {
    pub fn new(envelope: Envelope, caller: Arc<Caller>) -> Self {
        PolicyRequest {
            envelope,
            caller,
            candidates: Vec::new(),
        }
    }

    /// The same request with `candidates`, as a router is shown it.
    pub fn with_candidates(self, candidates: Vec<Candidate>) -> Self {
        PolicyRequest { candidates, ..self }
    }
}

/// The handle a call lends: the store holds one request at a time, so the
/// handle names no table entry.
pub(super) fn lent() -> Resource<Request> {
    Resource::new_borrow(0)
}

impl PluginState {
    /// The request of the call in progress. Borrowed handles die with their
    /// call, so a guest can only ask during one; an empty request answers
    /// otherwise rather than failing the host.
    fn lent_request(&self) -> &PolicyRequest {
        static NONE: std::sync::LazyLock<PolicyRequest> = std::sync::LazyLock::new(|| {
            PolicyRequest::new(
                Envelope {
                    model: String::new(),
                    stream: false,
                    max_output_tokens: None,
                    estimated_prompt_tokens: 0,
                    inbound_protocol: String::new(),
                    tags: Vec::new(),
                    received_at_ms: 0,
                    seed: 0,
                },
                Arc::new(Caller {
                    tenant: String::new(),
                    user: String::new(),
                    group: String::new(),
                    key_id: String::new(),
                }),
            )
        });
        self.request.as_deref().unwrap_or(&NONE)
    }
}

impl types::HostRequest for PluginState {
    fn model(&mut self, _: Resource<Request>) -> String {
        self.lent_request().envelope.model.clone()
    }

    fn stream(&mut self, _: Resource<Request>) -> bool {
        self.lent_request().envelope.stream
    }

    fn max_output_tokens(&mut self, _: Resource<Request>) -> Option<u32> {
        self.lent_request().envelope.max_output_tokens
    }

    fn estimated_prompt_tokens(&mut self, _: Resource<Request>) -> u32 {
        self.lent_request().envelope.estimated_prompt_tokens
    }

    fn inbound_protocol(&mut self, _: Resource<Request>) -> String {
        self.lent_request().envelope.inbound_protocol.clone()
    }

    fn tags(&mut self, _: Resource<Request>) -> Vec<String> {
        self.lent_request().envelope.tags.clone()
    }

    fn received_at_ms(&mut self, _: Resource<Request>) -> u64 {
        self.lent_request().envelope.received_at_ms
    }

    fn seed(&mut self, _: Resource<Request>) -> u64 {
        self.lent_request().envelope.seed
    }

    fn caller(&mut self, _: Resource<Request>) -> Caller {
        Caller::clone(&self.lent_request().caller)
    }

    fn candidates(&mut self, _: Resource<Request>) -> Vec<ChannelCandidate> {
        self.lent_request()
            .candidates
            .iter()
            .map(|c| ChannelCandidate {
                weight: c.weight,
                priority: c.priority,
                latency_ms: c.latency_ms,
            })
            .collect()
    }

    fn channel(&mut self, _: Resource<Request>, index: u32) -> Option<Channel> {
        let candidate = self.lent_request().candidates.get(index as usize)?;
        Some(Channel {
            name: candidate.name.clone(),
            protocol: candidate.protocol.clone(),
            tags: candidate.tags.clone(),
        })
    }

    fn drop(&mut self, _: Resource<Request>) -> wasmtime::Result<()> {
        // Only ever lent, never owned by a guest: nothing to free.
        Ok(())
    }
}
