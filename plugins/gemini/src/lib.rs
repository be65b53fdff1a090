//! The built-in translator for Google's Gemini generateContent protocol.
//!
//! Gemini is above all a channel: Sluice calls it with requests translated
//! from the canonical (OpenAI Chat) form and translates its answers, errors
//! and streams back. The other direction, for a Gemini-speaking client, is
//! complete too, ready for an inbound Gemini endpoint.

mod client;
mod errors;
mod finish;
mod ids;
mod request;
mod response;
mod schema;
mod stream;
mod usage;
mod wire;

#[cfg(test)]
mod tests;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_sdk::{
    Config, Direction, ErrorResponse, PluginError, Translator, UpstreamRequest, Usage,
};
use stream::GeminiStream;

struct Gemini;

impl Translator for Gemini {
    type Stream = GeminiStream;

    fn new(_config: Config) -> Result<Self, PluginError> {
        Ok(Gemini)
    }

    fn request_to_canonical(&self, body: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        client::request::to_canonical(&body)
    }

    fn request_from_canonical(
        &self,
        body: Vec<u8>,
        model: &str,
    ) -> Result<UpstreamRequest, PluginError> {
        request::from_canonical(&body, model)
    }

    fn request_passthrough(
        &self,
        body: Vec<u8>,
        model: &str,
        _headers: &[(String, String)],
    ) -> Result<UpstreamRequest, PluginError> {
        request::passthrough(body, model)
    }

    fn response_to_canonical(&self, body: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        response::to_canonical(&body)
    }

    fn response_from_canonical(&self, body: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        client::response::from_canonical(&body)
    }

    fn response_usage(&self, body: &[u8]) -> Result<Option<Usage>, PluginError> {
        response::usage(body)
    }

    fn error_to_canonical(&self, error: ErrorResponse) -> Result<ErrorResponse, PluginError> {
        Ok(errors::to_canonical(&error))
    }

    fn error_from_canonical(&self, error: ErrorResponse) -> Result<ErrorResponse, PluginError> {
        Ok(errors::from_canonical(&error))
    }

    fn stream(&self, direction: Direction) -> GeminiStream {
        GeminiStream::new(direction)
    }
}

sluice_sdk::export_translator!(Gemini);

/// A client's request Sluice cannot translate: the host answers 400.
fn invalid_request(message: impl Into<String>) -> PluginError {
    PluginError::new("invalid_request_error", message)
}

/// An upstream answer this translator cannot read.
fn invalid_response(message: impl Into<String>) -> PluginError {
    PluginError::new("invalid_response", message)
}

fn read_request<T: DeserializeOwned>(body: &[u8]) -> Result<T, PluginError> {
    serde_json::from_slice(body).map_err(|e| invalid_request(format!("request body: {e}")))
}

fn read_response<T: DeserializeOwned>(body: &[u8]) -> Result<T, PluginError> {
    serde_json::from_slice(body).map_err(|e| invalid_response(format!("response body: {e}")))
}

/// JSON text of a document built here. Plain data with string keys always
/// serializes, so the empty fallback is never taken; it only spares a panic.
fn to_json(document: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(document).unwrap_or_default()
}
