//! The request a policy plugin decides on. In a running gateway a field
//! never read costs nothing: strings, tags, the caller and the candidate
//! figures are fetched from the host on first read and kept; numbers on
//! every read (a host call that lowers no string is cheap); a candidate's
//! name, protocol and tags ([`Request::channel`]) on every call, so a router
//! that sorts by them fetches each once (`sort_by_cached_key`). In a native
//! unit test the plugin author gives every field up front with
//! [`Request::given`].

use crate::bindings::types::{self, Caller, Channel, ChannelCandidate};
use std::cell::OnceCell;

/// The fields of a request, as a unit test gives them.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// The model the client asked for, as the client spelled it.
    pub model: String,
    /// Whether the client asked for a streamed answer.
    pub stream: bool,
    /// The client's cap on output tokens, when it set one.
    pub max_output_tokens: Option<u32>,
    /// The host's estimate of the prompt's size in tokens.
    pub estimated_prompt_tokens: u32,
    /// The inbound wire protocol, e.g. `openai-chat`.
    pub inbound_protocol: String,
    /// Labels from the client's key, the configuration or earlier plugins.
    pub tags: Vec<String>,
    /// When the host admitted the request, milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    /// The request's random seed (see [`crate::seeded`]).
    pub seed: u64,
}

/// A candidate channel, as a unit test gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub name: String,
    pub protocol: String,
    pub weight: u32,
    pub priority: i32,
    pub tags: Vec<String>,
    pub latency_ms: Option<u32>,
}

/// The request a policy plugin decides on.
pub struct Request<'a> {
    source: Source<'a>,
    model: OnceCell<String>,
    inbound_protocol: OnceCell<String>,
    tags: OnceCell<Vec<String>>,
    caller: OnceCell<Caller>,
    candidates: OnceCell<Vec<ChannelCandidate>>,
}

enum Source<'a> {
    Host(&'a types::Request),
    Given {
        envelope: Box<Envelope>,
        caller: Caller,
        candidates: Vec<Candidate>,
    },
}

impl<'a> Request<'a> {
    #[doc(hidden)]
    pub fn from_host(request: &'a types::Request) -> Self {
        Request::new(Source::Host(request))
    }

    fn new(source: Source<'a>) -> Self {
        Request {
            source,
            model: OnceCell::new(),
            inbound_protocol: OnceCell::new(),
            tags: OnceCell::new(),
            caller: OnceCell::new(),
            candidates: OnceCell::new(),
        }
    }
}

impl Request<'static> {
    /// A request with every field given, for native unit tests.
    pub fn given(envelope: Envelope, caller: Caller) -> Self {
        Request::new(Source::Given {
            envelope: Box::new(envelope),
            caller,
            candidates: Vec::new(),
        })
    }

    /// The same request with these candidate channels, for routers.
    pub fn with_candidates(mut self, given: Vec<Candidate>) -> Self {
        if let Source::Given { candidates, .. } = &mut self.source {
            *candidates = given;
        }
        self.candidates = OnceCell::new();
        self
    }
}

impl Request<'_> {
    pub fn model(&self) -> &str {
        match &self.source {
            Source::Host(host) => self.model.get_or_init(|| host.model()),
            Source::Given { envelope, .. } => &envelope.model,
        }
    }

    pub fn stream(&self) -> bool {
        match &self.source {
            Source::Host(host) => host.stream(),
            Source::Given { envelope, .. } => envelope.stream,
        }
    }

    pub fn max_output_tokens(&self) -> Option<u32> {
        match &self.source {
            Source::Host(host) => host.max_output_tokens(),
            Source::Given { envelope, .. } => envelope.max_output_tokens,
        }
    }

    pub fn estimated_prompt_tokens(&self) -> u32 {
        match &self.source {
            Source::Host(host) => host.estimated_prompt_tokens(),
            Source::Given { envelope, .. } => envelope.estimated_prompt_tokens,
        }
    }

    pub fn inbound_protocol(&self) -> &str {
        match &self.source {
            Source::Host(host) => self
                .inbound_protocol
                .get_or_init(|| host.inbound_protocol()),
            Source::Given { envelope, .. } => &envelope.inbound_protocol,
        }
    }

    pub fn tags(&self) -> &[String] {
        match &self.source {
            Source::Host(host) => self.tags.get_or_init(|| host.tags()),
            Source::Given { envelope, .. } => &envelope.tags,
        }
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags().iter().any(|t| t == tag)
    }

    pub fn received_at_ms(&self) -> u64 {
        match &self.source {
            Source::Host(host) => host.received_at_ms(),
            Source::Given { envelope, .. } => envelope.received_at_ms,
        }
    }

    pub fn seed(&self) -> u64 {
        match &self.source {
            Source::Host(host) => host.seed(),
            Source::Given { envelope, .. } => envelope.seed,
        }
    }

    /// Who is calling.
    pub fn caller(&self) -> &Caller {
        match &self.source {
            Source::Host(host) => self.caller.get_or_init(|| host.caller()),
            Source::Given { caller, .. } => caller,
        }
    }

    /// The channels that may serve the request (for routers): the figures
    /// to weigh; [`Request::channel`] names one.
    pub fn candidates(&self) -> &[ChannelCandidate] {
        self.candidates.get_or_init(|| match &self.source {
            Source::Host(host) => host.candidates(),
            Source::Given { candidates, .. } => candidates
                .iter()
                .map(|c| ChannelCandidate {
                    weight: c.weight,
                    priority: c.priority,
                    latency_ms: c.latency_ms,
                })
                .collect(),
        })
    }

    /// Name, protocol and tags of the candidate at `index`.
    pub fn channel(&self, index: usize) -> Option<Channel> {
        match &self.source {
            Source::Host(host) => host.channel(u32::try_from(index).ok()?),
            Source::Given { candidates, .. } => candidates.get(index).map(|c| Channel {
                name: c.name.clone(),
                protocol: c.protocol.clone(),
                tags: c.tags.clone(),
            }),
        }
    }
}
