//! A translator that echoes its input and misbehaves when a chunk or body is
//! exactly the name of a fault (see `test_faults`). A stream reports the
//! number of bytes it was fed as its completion tokens, so tests can see
//! that each stream keeps its own state.

use sluice_sdk::{
    Config, CredentialPlacement, Direction, ErrorResponse, PluginError, StreamEnd,
    StreamTranslator, Translator, UpstreamRequest, Usage,
};

struct Echo;

fn echo(body: Vec<u8>) -> Result<Vec<u8>, PluginError> {
    test_faults::commit(&String::from_utf8_lossy(&body));
    Ok(body)
}

impl Translator for Echo {
    type Stream = Counting;

    fn new(_config: Config) -> Result<Self, PluginError> {
        Ok(Echo)
    }

    fn request_to_canonical(&self, body: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        echo(body)
    }

    fn request_from_canonical(
        &self,
        body: Vec<u8>,
        _model: &str,
    ) -> Result<UpstreamRequest, PluginError> {
        Ok(UpstreamRequest {
            path: "/echo".into(),
            headers: vec![],
            credential: CredentialPlacement::Header("x-echo-key".into()),
            body: echo(body)?,
        })
    }

    fn request_passthrough(
        &self,
        body: Vec<u8>,
        model: &str,
        _headers: &[(String, String)],
    ) -> Result<UpstreamRequest, PluginError> {
        self.request_from_canonical(body, model)
    }

    fn response_to_canonical(&self, body: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        echo(body)
    }

    fn response_from_canonical(&self, body: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        echo(body)
    }

    fn response_usage(&self, _body: &[u8]) -> Result<Option<Usage>, PluginError> {
        Ok(None)
    }

    fn error_to_canonical(&self, error: ErrorResponse) -> Result<ErrorResponse, PluginError> {
        Ok(error)
    }

    fn error_from_canonical(&self, error: ErrorResponse) -> Result<ErrorResponse, PluginError> {
        Ok(error)
    }

    fn stream(&self, _direction: Direction) -> Counting {
        Counting { bytes: 0 }
    }
}

struct Counting {
    bytes: u64,
}

impl StreamTranslator for Counting {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, PluginError> {
        self.bytes += chunk.len() as u64;
        echo(chunk.to_vec())
    }

    fn finish(&mut self) -> Result<StreamEnd, PluginError> {
        Ok(StreamEnd {
            tail: Vec::new(),
            used: Some(Usage {
                prompt_tokens: 0,
                completion_tokens: self.bytes,
                cached_tokens: 0,
                cache_write_tokens: 0,
                reasoning_tokens: 0,
            }),
            complete: true,
        })
    }
}

sluice_sdk::export_translator!(Echo);
