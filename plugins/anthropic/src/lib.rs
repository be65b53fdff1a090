//! The built-in translator for the Anthropic Messages protocol, both as an
//! upstream channel (Sluice calls Anthropic) and as the protocol of
//! Sluice's own `/v1/messages` (an Anthropic client calls Sluice).

mod errors;
mod ids;
mod request_from_canonical;
mod request_to_canonical;
mod response;
mod stop_reason;
mod stream_from_canonical;
mod stream_to_canonical;
mod tool_calls;
mod usage;
mod wire;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use sluice_sdk::canonical::chat::{ChatCompletion, ChatRequest};
use sluice_sdk::json;
use sluice_sdk::{
    Config, CredentialPlacement, Direction, ErrorResponse, PluginError, StreamEnd,
    StreamTranslator, Translator, UpstreamRequest, Usage,
};
use stream_from_canonical::FromCanonical;
use stream_to_canonical::ToCanonical;

/// Channel base URLs end in `/v1`.
const MESSAGES_PATH: &str = "/messages";
const API_KEY_HEADER: &str = "x-api-key";
const VERSION_HEADER: &str = "anthropic-version";
/// The version whose shapes this translator reads and writes.
const API_VERSION: &str = "2023-06-01";

struct Anthropic {
    settings: Settings,
}

#[derive(Deserialize)]
#[serde(default)]
struct Settings {
    /// Anthropic requires `max_tokens`; OpenAI clients often leave it out.
    default_max_tokens: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_max_tokens: 8192,
        }
    }
}

impl Translator for Anthropic {
    type Stream = AnthropicStream;

    fn new(config: Config) -> Result<Self, PluginError> {
        Ok(Anthropic {
            settings: config.parse()?,
        })
    }

    fn request_to_canonical(&self, body: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        Ok(json_bytes(&request_to_canonical::translate(&body)?))
    }

    fn request_from_canonical(
        &self,
        body: Vec<u8>,
        model: &str,
    ) -> Result<UpstreamRequest, PluginError> {
        let request: ChatRequest = serde_json::from_slice(&body)
            .map_err(|e| invalid_request(format!("request body: {e}")))?;
        let request =
            request_from_canonical::translate(request, model, self.settings.default_max_tokens)?;
        Ok(upstream_request(
            vec![(VERSION_HEADER.into(), API_VERSION.into())],
            json_bytes(&request),
        ))
    }

    /// The body goes on as the client wrote it, key order included, but for
    /// the model; so do the client's `anthropic-*` headers (version, beta
    /// features), which say how Anthropic should read it.
    fn request_passthrough(
        &self,
        body: Vec<u8>,
        model: &str,
        headers: &[(String, String)],
    ) -> Result<UpstreamRequest, PluginError> {
        let invalid = |e: serde_json::Error| invalid_request(format!("request body: {e}"));
        let body = json::with_field(body, "model", &model).map_err(invalid)?;
        let mut forwarded: Vec<(String, String)> = headers
            .iter()
            .filter(|(name, _)| name.to_ascii_lowercase().starts_with("anthropic-"))
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
            .collect();
        if !forwarded.iter().any(|(name, _)| name == VERSION_HEADER) {
            forwarded.insert(0, (VERSION_HEADER.into(), API_VERSION.into()));
        }
        Ok(upstream_request(forwarded, body))
    }

    fn response_to_canonical(&self, body: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        let message = response::read(&body)?;
        Ok(json_bytes(&response::to_canonical(message)))
    }

    fn response_from_canonical(&self, body: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        let completion: ChatCompletion = serde_json::from_slice(&body)
            .map_err(|e| invalid_response(format!("canonical response: {e}")))?;
        Ok(json_bytes(&response::from_canonical(completion)?))
    }

    fn response_usage(&self, body: &[u8]) -> Result<Option<Usage>, PluginError> {
        let message = response::read(body)?;
        Ok(message.usage.map(|usage| usage.to_usage()))
    }

    fn error_to_canonical(&self, error: ErrorResponse) -> Result<ErrorResponse, PluginError> {
        Ok(errors::to_canonical(&error))
    }

    fn error_from_canonical(&self, error: ErrorResponse) -> Result<ErrorResponse, PluginError> {
        Ok(errors::from_canonical(&error))
    }

    fn stream(&self, direction: Direction) -> AnthropicStream {
        match direction {
            Direction::ToCanonical => AnthropicStream::ToCanonical(ToCanonical::new()),
            Direction::Observe => AnthropicStream::ToCanonical(ToCanonical::observing()),
            Direction::FromCanonical => AnthropicStream::FromCanonical(FromCanonical::new()),
        }
    }
}

fn upstream_request(headers: Vec<(String, String)>, body: Vec<u8>) -> UpstreamRequest {
    UpstreamRequest {
        path: MESSAGES_PATH.into(),
        headers,
        credential: CredentialPlacement::Header(API_KEY_HEADER.into()),
        body,
    }
}

enum AnthropicStream {
    ToCanonical(ToCanonical),
    FromCanonical(FromCanonical),
}

impl StreamTranslator for AnthropicStream {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, PluginError> {
        match self {
            AnthropicStream::ToCanonical(stream) => stream.push(chunk),
            AnthropicStream::FromCanonical(stream) => stream.push(chunk),
        }
    }

    fn finish(&mut self) -> Result<StreamEnd, PluginError> {
        match self {
            AnthropicStream::ToCanonical(stream) => stream.finish(),
            AnthropicStream::FromCanonical(stream) => stream.finish(),
        }
    }
}

/// A client request Sluice cannot translate; the host answers 400.
fn invalid_request(message: impl Into<String>) -> PluginError {
    PluginError::new("invalid_request_error", message)
}

/// An upstream answer this cannot read.
fn invalid_response(message: impl Into<String>) -> PluginError {
    PluginError::new("invalid_response", message)
}

fn json_bytes(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("documents with string keys serialize")
}

sluice_sdk::export_translator!(Anthropic);
