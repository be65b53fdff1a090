//! Write Sluice plugins in plain Rust.
//!
//! A plugin is a type that implements one of the kind traits ([`Router`],
//! [`Risk`], [`Pricing`], [`Translator`]) and one export macro call:
//!
//! ```
//! use sluice_sdk::{Config, PluginError, Request, Router};
//!
//! struct FirstChannel;
//!
//! impl Router for FirstChannel {
//!     fn new(_config: Config) -> Result<Self, PluginError> {
//!         Ok(FirstChannel)
//!     }
//!
//!     fn route(&self, request: &Request) -> Result<Vec<u32>, PluginError> {
//!         Ok((0..request.candidates().len() as u32).collect())
//!     }
//! }
//!
//! sluice_sdk::export_router!(FirstChannel);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`: the `.wasm` file
//! is the plugin component. The crate type must be `cdylib` only: `cargo
//! test` still runs the unit tests natively, while an extra `rlib` would make
//! it link the component's exports natively, which fails.
//!
//! The plugin value is built once per instance, from its configuration, on
//! the first call. The host may keep an instance warm for many calls, one at
//! a time, or give each call a fresh one: keep no state that must survive,
//! and no state that one caller could leak to the next.
//!
//! A [`Request`] fetches a field from the host only when the plugin reads
//! it, so a plugin that reads little costs little; unit tests build one
//! from given values with [`Request::given`].

// The generated bindings name their runtime by absolute path, which must
// also resolve inside this crate.
extern crate self as sluice_sdk;

pub mod bindings;
pub mod canonical;
mod config;
mod exports;
pub mod json;
pub mod log;
pub mod ratio;
mod request;
pub mod seeded;
pub mod sse;
#[cfg(test)]
mod testgen;

pub use bindings::pricing::exports::sluice::plugin::pricing::PriceTable;
pub use bindings::risk::exports::sluice::plugin::risk::{Denial, Verdict};
pub use bindings::translator::exports::sluice::plugin::translator::{
    CredentialPlacement, Direction, ErrorResponse, StreamEnd, UpstreamRequest,
};
pub use bindings::types::{Caller, Channel, ChannelCandidate, PluginError, Usage};
pub use config::Config;
pub use request::{Candidate, Envelope, Request};

impl PluginError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        PluginError {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl Channel {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// Chooses and orders the channels that may serve a request.
pub trait Router: Sized + 'static {
    /// Builds the plugin from its configuration, once per instance.
    fn new(config: Config) -> Result<Self, PluginError>;

    /// Indices into `request.candidates()`, most preferred first, each at
    /// most once.
    fn route(&self, request: &Request) -> Result<Vec<u32>, PluginError>;
}

/// Admits or refuses a request.
pub trait Risk: Sized + 'static {
    fn new(config: Config) -> Result<Self, PluginError>;

    /// `content` gives the request's text, fetched from the host only if
    /// asked for: checks that need only the request's fields stay cheap.
    fn check(&self, request: &Request, content: &RequestContent) -> Result<Verdict, PluginError>;
}

/// Turns usage into an integer charge.
pub trait Pricing: Sized + 'static {
    fn new(config: Config) -> Result<Self, PluginError>;

    fn price(
        &self,
        request: &Request,
        usage: &Usage,
        prices: &PriceTable,
    ) -> Result<u64, PluginError>;
}

/// Converts one wire protocol to and from the canonical (OpenAI Chat
/// Completions) form. See the `translator` interface in the WIT contract for
/// the meaning of each function.
pub trait Translator: Sized + 'static {
    type Stream: StreamTranslator;

    fn new(config: Config) -> Result<Self, PluginError>;
    fn request_to_canonical(&self, body: Vec<u8>) -> Result<Vec<u8>, PluginError>;
    fn request_from_canonical(
        &self,
        body: Vec<u8>,
        model: &str,
    ) -> Result<UpstreamRequest, PluginError>;
    fn request_passthrough(
        &self,
        body: Vec<u8>,
        model: &str,
        headers: &[(String, String)],
    ) -> Result<UpstreamRequest, PluginError>;
    fn response_to_canonical(&self, body: Vec<u8>) -> Result<Vec<u8>, PluginError>;
    fn response_from_canonical(&self, body: Vec<u8>) -> Result<Vec<u8>, PluginError>;
    fn response_usage(&self, body: &[u8]) -> Result<Option<Usage>, PluginError>;
    fn error_to_canonical(&self, error: ErrorResponse) -> Result<ErrorResponse, PluginError>;
    fn error_from_canonical(&self, error: ErrorResponse) -> Result<ErrorResponse, PluginError>;
    /// Starts translating one stream.
    fn stream(&self, direction: Direction) -> Self::Stream;
}

/// The state of one translated stream.
pub trait StreamTranslator: 'static {
    /// Takes the next bytes (split anywhere) and returns the output that is
    /// complete so far.
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, PluginError>;
    /// Ends the input: returns what is left to send and the usage seen.
    fn finish(&mut self) -> Result<StreamEnd, PluginError>;
}

/// The request's content, for risk plugins: fetched from the host on first
/// use and kept for the rest of the check.
pub struct RequestContent {
    text: std::cell::OnceCell<String>,
}

impl RequestContent {
    /// Content that a native unit test supplies directly.
    pub fn from_text(text: impl Into<String>) -> Self {
        RequestContent {
            text: std::cell::OnceCell::from(text.into()),
        }
    }

    #[doc(hidden)]
    pub fn from_host() -> Self {
        RequestContent {
            text: std::cell::OnceCell::new(),
        }
    }

    /// All human-readable text of the request, joined with newlines.
    pub fn message_text(&self) -> &str {
        self.text.get_or_init(exports::host_message_text)
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::exports::{PluginCell, with_plugin};
    pub use wit_bindgen::rt;
}
