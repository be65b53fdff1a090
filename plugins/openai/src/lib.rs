//! The built-in translator for the OpenAI Chat Completions protocol.
//!
//! OpenAI's shape is Sluice's canonical form, so translation is the identity
//! but for the upstream model name; what this plugin adds is the protocol's
//! HTTP details and reading usage from bodies and streams.

use sluice_sdk::canonical;
use sluice_sdk::json;
use sluice_sdk::sse::SseDecoder;
use sluice_sdk::{
    Config, CredentialPlacement, Direction, ErrorResponse, PluginError, StreamEnd,
    StreamTranslator, Translator, UpstreamRequest, Usage,
};

struct OpenAi;

impl Translator for OpenAi {
    type Stream = UsageWatcher;

    fn new(_config: Config) -> Result<Self, PluginError> {
        Ok(OpenAi)
    }

    fn request_to_canonical(&self, body: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        Ok(body)
    }

    fn request_from_canonical(
        &self,
        body: Vec<u8>,
        model: &str,
    ) -> Result<UpstreamRequest, PluginError> {
        self.request_passthrough(body, model, &[])
    }

    /// The canonical form is this protocol, so a passthrough is the same
    /// call; OpenAI defines no request headers worth forwarding.
    fn request_passthrough(
        &self,
        body: Vec<u8>,
        model: &str,
        _headers: &[(String, String)],
    ) -> Result<UpstreamRequest, PluginError> {
        let invalid = |e: serde_json::Error| {
            PluginError::new("invalid_request", format!("request body: {e}"))
        };
        let body = json::with_field(body, "model", &model).map_err(invalid)?;
        Ok(UpstreamRequest {
            path: "/chat/completions".into(),
            headers: vec![],
            credential: CredentialPlacement::Bearer,
            body,
        })
    }

    fn response_to_canonical(&self, body: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        Ok(body)
    }

    fn response_from_canonical(&self, body: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        Ok(body)
    }

    fn response_usage(&self, body: &[u8]) -> Result<Option<Usage>, PluginError> {
        canonical::usage(body)
            .map_err(|e| PluginError::new("invalid_response", format!("response body: {e}")))
    }

    fn error_to_canonical(&self, error: ErrorResponse) -> Result<ErrorResponse, PluginError> {
        Ok(error)
    }

    fn error_from_canonical(&self, error: ErrorResponse) -> Result<ErrorResponse, PluginError> {
        Ok(error)
    }

    fn stream(&self, direction: Direction) -> UsageWatcher {
        UsageWatcher {
            forward: !matches!(direction, Direction::Observe),
            decoder: SseDecoder::new(),
            seen: Seen::default(),
        }
    }
}

/// Passes the stream through unchanged (or, observing, not at all) and
/// remembers the last usage it carried and whether it ended properly.
struct UsageWatcher {
    forward: bool,
    decoder: SseDecoder,
    seen: Seen,
}

#[derive(Default)]
struct Seen {
    usage: Option<Usage>,
    done: bool,
    finished_choice: bool,
}

impl Seen {
    fn event(&mut self, data: &[u8]) -> Result<(), PluginError> {
        if data == b"[DONE]" {
            self.done = true;
        } else if canonical::finishes_a_choice(data) {
            self.finished_choice = true;
        }
        if canonical::may_carry_usage(data)
            && let Ok(Some(seen)) = canonical::usage(data)
        {
            self.usage = Some(seen);
        }
        Ok(())
    }
}

impl StreamTranslator for UsageWatcher {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, PluginError> {
        let seen = &mut self.seen;
        self.decoder.push(chunk, |event| seen.event(event.data))?;
        Ok(if self.forward {
            chunk.to_vec()
        } else {
            Vec::new()
        })
    }

    fn finish(&mut self) -> Result<StreamEnd, PluginError> {
        let seen = &mut self.seen;
        self.decoder.finish(|event| seen.event(event.data))?;
        Ok(StreamEnd {
            tail: Vec::new(),
            used: self.seen.usage,
            complete: self.seen.done || self.seen.finished_choice,
        })
    }
}

sluice_sdk::export_translator!(OpenAi);

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hé\"}}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,",
        "\"total_tokens\":17,\"prompt_tokens_details\":{\"cached_tokens\":4},",
        "\"completion_tokens_details\":{\"reasoning_tokens\":2}}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn streams_pass_through_byte_for_byte_and_report_usage_at_any_split() {
        for piece in [1, 2, 3, 7, 64, STREAM.len()] {
            let mut stream = OpenAi.stream(Direction::ToCanonical);
            let mut out = Vec::new();
            for chunk in STREAM.as_bytes().chunks(piece) {
                out.extend(stream.push(chunk).unwrap());
            }
            let end = stream.finish().unwrap();
            out.extend(end.tail);
            assert_eq!(out, STREAM.as_bytes());
            let used = end.used.expect("usage");
            assert_eq!(
                (
                    used.prompt_tokens,
                    used.completion_tokens,
                    used.cached_tokens,
                    used.reasoning_tokens
                ),
                (12, 5, 4, 2)
            );
        }
    }

    #[test]
    fn observing_emits_nothing_but_still_reads_usage() {
        let mut stream = OpenAi.stream(Direction::Observe);
        assert!(stream.push(STREAM.as_bytes()).unwrap().is_empty());
        let end = stream.finish().unwrap();
        assert_eq!(end.used.unwrap().prompt_tokens, 12);
        assert!(end.complete);
    }

    #[test]
    fn a_cut_stream_is_not_complete() {
        let mut stream = OpenAi.stream(Direction::Observe);
        let cut = &STREAM[..STREAM.find("\"finish_reason\":\"stop").unwrap()];
        stream.push(cut.as_bytes()).unwrap();
        assert!(!stream.finish().unwrap().complete);
    }

    #[test]
    fn a_stream_without_usage_reports_none() {
        let mut stream = OpenAi.stream(Direction::FromCanonical);
        stream
            .push(b"data: {\"choices\":[],\"usage\":null}\n\ndata: [DONE]\n\n")
            .unwrap();
        assert!(stream.finish().unwrap().used.is_none());
    }

    #[test]
    fn upstream_request_names_the_upstream_model_and_keeps_other_fields() {
        let body = br#"{"model":"alias","messages":[{"role":"user","content":"hi"}],"x_custom":1}"#;
        let call = OpenAi
            .request_from_canonical(body.to_vec(), "gpt-4o-mini")
            .unwrap();
        assert_eq!(call.path, "/chat/completions");
        assert!(matches!(call.credential, CredentialPlacement::Bearer));
        assert_eq!(
            String::from_utf8(call.body).unwrap(),
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"x_custom":1}"#
        );
        let bad = OpenAi
            .request_from_canonical(b"not json".to_vec(), "m")
            .err()
            .unwrap();
        assert_eq!(bad.code, "invalid_request");
    }

    #[test]
    fn a_request_already_naming_the_upstream_model_goes_as_it_came() {
        let body = br#"{ "model" : "gpt-4o-mini", "messages":[] }"#;
        let call = OpenAi
            .request_from_canonical(body.to_vec(), "gpt-4o-mini")
            .unwrap();
        assert_eq!(call.body, body);
        let bad = OpenAi.request_from_canonical(br#"{"model":"m""#.to_vec(), "m");
        assert!(
            bad.is_err(),
            "an invalid body is refused even when nothing changes"
        );
    }

    #[test]
    fn reads_usage_from_a_response_body() {
        let body = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        let used = OpenAi.response_usage(body).unwrap().unwrap();
        assert_eq!(
            (
                used.prompt_tokens,
                used.completion_tokens,
                used.cached_tokens
            ),
            (3, 4, 0)
        );
        assert!(OpenAi.response_usage(br#"{"id":"x"}"#).unwrap().is_none());
    }
}
