//! What a Gemini stream says about itself: its usage and whether it ended
//! properly. Gemini streams have no end marker (no `[DONE]`): the connection
//! just closes, so only a finish reason tells a whole answer from a cut one.

use crate::usage;
use crate::wire::Response;
use sluice_sdk::sse::SseDecoder;
use sluice_sdk::{PluginError, StreamEnd, StreamTranslator, Usage};

#[derive(Default)]
pub struct Tally {
    used: Option<Usage>,
    finished: bool,
}

impl Tally {
    /// `usageMetadata` comes on many chunks with running totals: the last one
    /// holds the answer's usage, and summing them would overcount.
    pub fn record(&mut self, chunk: &Response) {
        if let Some(metadata) = &chunk.usage_metadata {
            self.used = Some(usage::to_usage(metadata));
        }
        if chunk.prompt_blocked()
            || chunk
                .candidates
                .iter()
                .any(|candidate| candidate.finish_reason.is_some())
        {
            self.finished = true;
        }
    }

    pub fn used(&self) -> Option<Usage> {
        self.used
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn end(&self, tail: Vec<u8>) -> StreamEnd {
        StreamEnd {
            tail,
            used: self.used,
            complete: self.finished,
        }
    }
}

/// Gemini's stream in, nothing out: the host relays the original bytes.
#[derive(Default)]
pub struct Observer {
    decoder: SseDecoder,
    tally: Tally,
}

impl StreamTranslator for Observer {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, PluginError> {
        let tally = &mut self.tally;
        self.decoder
            .push(chunk, |event| observe(tally, event.data))?;
        Ok(Vec::new())
    }

    fn finish(&mut self) -> Result<StreamEnd, PluginError> {
        let tally = &mut self.tally;
        self.decoder.finish(|event| observe(tally, event.data))?;
        Ok(self.tally.end(Vec::new()))
    }
}

/// A chunk that does not read is the client's to judge, since it gets the
/// bytes unchanged: observing never fails a stream.
fn observe(tally: &mut Tally, data: &[u8]) -> Result<(), PluginError> {
    if let Ok(chunk) = serde_json::from_slice::<Response>(data) {
        tally.record(&chunk);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(json: &str) -> Response {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_last_usage_wins_never_a_sum_or_a_maximum() {
        let mut tally = Tally::default();
        tally.record(&chunk(r#"{"usageMetadata":{"promptTokenCount":50,"candidatesTokenCount":9,"thoughtsTokenCount":40}}"#));
        tally.record(&chunk(
            r#"{"candidates":[{"content":{"parts":[{"text":"x"}]}}]}"#,
        ));
        assert!(!tally.finished());
        tally.record(&chunk(r#"{"candidates":[{"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":50,"candidatesTokenCount":7}}"#));
        let used = tally.used().unwrap();
        assert_eq!(
            (
                used.prompt_tokens,
                used.completion_tokens,
                used.reasoning_tokens
            ),
            (50, 7, 0)
        );
        assert!(tally.finished());
    }
}
