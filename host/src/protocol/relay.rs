//! Relays a canonical (OpenAI) SSE stream to the client, event by event as
//! bytes arrive, while metering it: it captures the usage, removes the usage
//! chunk the client did not ask for, passes exactly one `[DONE]`, and knows
//! whether the stream ended properly.

use crate::plugins::bindings::Usage;
use serde::de::IgnoredAny;
use sluice_sdk::canonical;
use sluice_sdk::json::Object;
use sluice_sdk::sse::{SseDecoder, SseEvent};

pub struct CanonicalRelay {
    decoder: SseDecoder,
    meter: Meter,
}

/// What the relay learns from the events it passes.
struct Meter {
    client_wants_usage: bool,
    usage: Option<Usage>,
    done: bool,
    finished_choice: bool,
    /// The upstream sent an error event.
    failed: bool,
    /// The answer text passed to the client, when asked to keep it.
    delivered: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// `[DONE]` arrived.
    Done,
    /// The upstream closed without `[DONE]` after a choice finished: a
    /// lenient OpenAI-compatible server. The relay adds the `[DONE]`.
    Finished,
    /// Cut off before the answer finished.
    Truncated,
    /// Ended by the upstream's own error event, passed to the client.
    Failed,
}

impl CanonicalRelay {
    /// `keep_text`: remember the answer text passed on (see `delivered`).
    pub fn new(client_wants_usage: bool, keep_text: bool) -> Self {
        CanonicalRelay {
            decoder: SseDecoder::new(),
            meter: Meter {
                client_wants_usage,
                usage: None,
                done: false,
                finished_choice: false,
                failed: false,
                delivered: keep_text.then(String::new),
            },
        }
    }

    /// Appends to `out` the client bytes for every event `chunk` completes.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        // What passes is about what came in: one allocation, not one
        // growth per event.
        out.reserve(chunk.len());
        let meter = &mut self.meter;
        let relayed: Result<(), Never> = self.decoder.push(chunk, |event| {
            meter.relay(event, out);
            Ok(())
        });
        let Ok(()) = relayed;
    }

    /// Ends the input; appends what is left and says how the stream ended.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Ending {
        let meter = &mut self.meter;
        let relayed: Result<(), Never> = self.decoder.finish(|event| {
            meter.relay(event, out);
            Ok(())
        });
        let Ok(()) = relayed;
        if self.meter.done {
            Ending::Done
        } else if self.meter.failed {
            Ending::Failed
        } else if self.meter.finished_choice {
            out.extend_from_slice(b"data: [DONE]\n\n");
            self.meter.done = true;
            Ending::Finished
        } else {
            Ending::Truncated
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.meter.usage
    }

    /// Whether `[DONE]` has been passed on: the client has the whole answer.
    pub fn is_done(&self) -> bool {
        self.meter.done
    }

    /// The answer text (content, reasoning, tool calls) passed on so far,
    /// if the relay was asked to keep it.
    pub fn take_delivered(&mut self) -> Option<String> {
        self.meter.delivered.take()
    }
}

enum Never {}

impl Meter {
    fn relay(&mut self, event: SseEvent<'_>, out: &mut Vec<u8>) {
        let data = event.data;
        if data == b"[DONE]" {
            if !self.done {
                self.done = true;
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            return;
        }
        if self.done {
            return;
        }
        if let Some(delivered) = &mut self.delivered {
            crate::tokens::chunk_text(data, delivered);
        }
        if canonical::finishes_a_choice(data) {
            self.finished_choice = true;
        } else if data.starts_with(b"{\"error\"") {
            self.failed = true;
        }
        if canonical::may_carry_usage(data)
            && let Ok(Some(usage)) = canonical::usage(data)
        {
            self.usage = Some(usage.into());
            if !self.client_wants_usage {
                if let Some(rest) = without_usage(data) {
                    emit(out, &rest);
                }
                return;
            }
        }
        emit(out, data);
    }
}

fn emit(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

/// The chunk minus its usage, or nothing if the chunk was only the usage
/// (no choices): what the client would have seen without `include_usage`.
fn without_usage(data: &[u8]) -> Option<Vec<u8>> {
    // The usual usage chunk, `"choices":[]`, known by a scan, not a parse.
    if canonical::has_no_choices(data) {
        return None;
    }
    let mut chunk = Object::parse(data).ok()?;
    let choices: Vec<IgnoredAny> = serde_json::from_str(chunk.get("choices")?.get()).ok()?;
    if choices.is_empty() {
        return None;
    }
    chunk.remove("usage");
    Some(chunk.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"caf\u{e9} \u{1F600}\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
        "data: [DONE]\n\n",
    );

    fn relay_in_pieces(
        input: &str,
        piece: usize,
        wants_usage: bool,
    ) -> (String, Ending, Option<Usage>) {
        let mut relay = CanonicalRelay::new(wants_usage, true);
        let mut out = Vec::new();
        for chunk in input.as_bytes().chunks(piece) {
            relay.push(chunk, &mut out);
        }
        let ending = relay.finish(&mut out);
        (String::from_utf8(out).unwrap(), ending, relay.usage())
    }

    #[test]
    fn relays_byte_for_byte_when_the_client_asked_for_usage() {
        for piece in 1..=STREAM.len() {
            let (out, ending, usage) = relay_in_pieces(STREAM, piece, true);
            assert_eq!(out, STREAM, "piece {piece}");
            assert_eq!(ending, Ending::Done);
            assert_eq!(usage.unwrap().prompt_tokens, 9);
        }
    }

    #[test]
    fn removes_the_usage_chunk_the_client_did_not_ask_for_but_meters_it() {
        let (out, ending, usage) = relay_in_pieces(STREAM, 7, false);
        assert!(!out.contains("prompt_tokens"));
        assert!(out.ends_with("\"finish_reason\":\"stop\"}],\"usage\":null}\n\ndata: [DONE]\n\n"));
        assert_eq!(ending, Ending::Done);
        assert_eq!(usage.unwrap().completion_tokens, 2);
    }

    #[test]
    fn strips_usage_attached_to_a_finish_chunk_and_keeps_the_choice() {
        let input = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
        let (out, _, usage) = relay_in_pieces(input, 5, false);
        assert_eq!(
            out,
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"
        );
        assert!(usage.is_some());
    }

    #[test]
    fn keeps_the_delivered_text_when_asked() {
        let mut relay = CanonicalRelay::new(false, true);
        let cut = &STREAM[..STREAM.find("finish_reason\":\"stop").unwrap()];
        relay.push(cut.as_bytes(), &mut Vec::new());
        assert_eq!(relay.take_delivered().unwrap(), "caf\u{e9} \u{1F600}");
        assert!(CanonicalRelay::new(false, false).take_delivered().is_none());
    }

    #[test]
    fn passes_exactly_one_done_and_nothing_after_it() {
        let input =
            "data: {\"choices\":[]}\n\ndata: [DONE]\n\ndata: [DONE]\n\ndata: {\"late\":1}\n\n";
        let (out, ..) = relay_in_pieces(input, 3, true);
        assert_eq!(out, "data: {\"choices\":[]}\n\ndata: [DONE]\n\n");
    }

    #[test]
    fn tells_a_cut_stream_from_a_lenient_ending() {
        let cut = &STREAM[..STREAM.find("finish_reason\":\"stop").unwrap()];
        assert_eq!(relay_in_pieces(cut, 4, true).1, Ending::Truncated);
        let no_done = &STREAM[..STREAM.find("data: [DONE]").unwrap()];
        let (out, ending, _) = relay_in_pieces(no_done, 4, true);
        assert_eq!(ending, Ending::Finished);
        assert!(out.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn an_upstream_error_event_is_passed_on_and_ends_the_stream_as_failed() {
        let input = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"boom\"}}\n\n";
        let (out, ending, _) = relay_in_pieces(input, 5, true);
        assert_eq!(ending, Ending::Failed);
        assert!(out.ends_with("data: {\"error\":{\"message\":\"boom\"}}\n\n"));
    }

    #[test]
    fn normalizes_framing_and_comments() {
        let input = ": ping\r\n\r\ndata: {\"choices\":[]}\r\n\r\ndata: [DONE]\r\n\r\n";
        let (out, ..) = relay_in_pieces(input, 2, true);
        assert_eq!(out, "data: {\"choices\":[]}\n\ndata: [DONE]\n\n");
    }
}
