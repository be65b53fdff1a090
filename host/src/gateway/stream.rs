//! A streamed answer on its way to the client. The upstream body is read
//! only when the client is ready for more (hyper polls this stream as it
//! writes), so a slow client slows the upstream instead of filling memory;
//! a client that leaves drops the stream, which drops the upstream
//! connection and cancels the call.
//!
//! Bytes take one of two roads. A channel that speaks the client's own
//! (non-canonical) protocol passes its bytes through unchanged while its
//! translator watches them for usage and a proper end. Otherwise the bytes
//! are brought to canonical form (unless the channel speaks it), metered by
//! the canonical relay, and put into the client's protocol (unless the
//! client speaks canonical).

use super::book::CallBook;
use crate::billing::Delivered;
use crate::plugins::bindings::{Direction, Usage};
use crate::plugins::{CallError, Translator, TranslatorStream};
use crate::protocol::relay::{CanonicalRelay, Ending};
use crate::upstream::{UpstreamBody, UpstreamError};
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use std::convert::Infallible;

pub struct RelayStream {
    upstream: UpstreamBody,
    road: Road,
    /// The client protocol's translator, when the client does not speak
    /// canonical: renders a failure as an error event of its protocol.
    client: Option<Translator>,
    ended: bool,
    book: Option<CallBook>,
}

pub enum Road {
    Passthrough {
        observer: Option<TranslatorStream>,
        used: Option<Usage>,
        /// What went to the client, kept (up to `KEPT_BYTES`) to count the
        /// answer should the call end without the upstream's usage.
        kept: Option<Kept>,
    },
    Canonical(Box<CanonicalRoad>),
}

/// Most bytes of a passthrough stream kept for counting its answer: past
/// it, the answer is counted as far as it was kept (under, never over).
const KEPT_BYTES: usize = 4 << 20;

pub struct Kept {
    channel: Translator,
    bytes: Vec<u8>,
}

pub struct CanonicalRoad {
    /// Channel protocol → canonical, unless the channel speaks it.
    decoder: Option<TranslatorStream>,
    relay: CanonicalRelay,
    /// Canonical → client protocol, unless the client speaks it.
    encoder: Option<TranslatorStream>,
    /// The usage the decoder saw the upstream report, in full detail.
    reported: Option<Usage>,
}

impl Road {
    /// `keep_text`: as for `canonical`.
    pub async fn passthrough(channel: &Translator, keep_text: bool) -> Result<Road, CallError> {
        Ok(Road::Passthrough {
            observer: Some(channel.open_stream(Direction::Observe).await?),
            used: None,
            kept: keep_text.then(|| Kept {
                channel: channel.clone(),
                bytes: Vec::new(),
            }),
        })
    }

    /// `channel` is `None` for a canonical channel, `client` for a
    /// canonical client. `keep_text`: remember the answer text delivered,
    /// to charge for it should the call end without the upstream's usage.
    pub async fn canonical(
        channel: Option<&Translator>,
        client: Option<&Translator>,
        client_wants_usage: bool,
        keep_text: bool,
    ) -> Result<Road, CallError> {
        let decoder = match channel {
            Some(translator) => Some(translator.open_stream(Direction::ToCanonical).await?),
            None => None,
        };
        let encoder = match client {
            Some(translator) => Some(translator.open_stream(Direction::FromCanonical).await?),
            None => None,
        };
        Ok(Road::Canonical(Box::new(CanonicalRoad {
            decoder,
            // A client translator needs the usage chunk to report usage.
            relay: CanonicalRelay::new(client_wants_usage || encoder.is_some(), keep_text),
            encoder,
            reported: None,
        })))
    }

    /// Takes the next upstream bytes; appends what the client should get.
    async fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CallError> {
        match self {
            Road::Passthrough { observer, kept, .. } => {
                if let Some(observer) = observer {
                    observer.push(chunk).await?;
                }
                if let Some(kept) = kept {
                    let room = KEPT_BYTES.saturating_sub(kept.bytes.len());
                    kept.bytes
                        .extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                out.extend_from_slice(chunk);
            }
            Road::Canonical(road) => {
                let CanonicalRoad {
                    decoder,
                    relay,
                    encoder,
                    ..
                } = &mut **road;
                let decoded;
                let canonical = match decoder {
                    Some(decoder) => {
                        decoded = decoder.push(chunk).await?;
                        &decoded[..]
                    }
                    None => chunk,
                };
                encode(relay, encoder, canonical, out).await?;
            }
        }
        Ok(())
    }

    /// The upstream ended: appends what is left and says how it ended.
    async fn finish(&mut self, out: &mut Vec<u8>) -> Result<Ending, CallError> {
        match self {
            Road::Passthrough { observer, used, .. } => {
                let Some(observer) = observer.take() else {
                    return Ok(Ending::Truncated);
                };
                let end = observer.finish().await?;
                out.extend_from_slice(&end.tail);
                *used = end.used;
                Ok(if end.complete {
                    Ending::Done
                } else {
                    Ending::Truncated
                })
            }
            Road::Canonical(road) => {
                let CanonicalRoad {
                    decoder,
                    relay,
                    encoder,
                    reported,
                } = &mut **road;
                if let Some(decoder) = decoder.take() {
                    let end = decoder.finish().await?;
                    *reported = end.used;
                    encode(relay, encoder, &end.tail, out).await?;
                }
                let mut canonical = Vec::new();
                let ending = relay.finish(&mut canonical);
                match encoder {
                    Some(encoder) => out.extend(encoder.push(&canonical).await?),
                    None => out.extend_from_slice(&canonical),
                }
                if ending != Ending::Truncated
                    && let Some(encoder) = encoder.take()
                {
                    out.extend(encoder.finish().await?.tail);
                }
                Ok(ending)
            }
        }
    }

    /// What reached the client. A passthrough road kept the bytes; their
    /// text is read only if the charge needs it.
    fn delivered(&mut self) -> Delivered {
        match self {
            Road::Passthrough { kept, .. } => match kept.take() {
                Some(Kept { channel, bytes }) => Delivered::Encoded { channel, bytes },
                None => Delivered::Text(String::new()),
            },
            Road::Canonical(road) => {
                Delivered::Text(road.relay.take_delivered().unwrap_or_default())
            }
        }
    }

    /// Whether the client has been sent the whole answer (`[DONE]` passed
    /// the relay). A passthrough stream's end is its protocol's, which only
    /// its translator reads, so it tells only when the upstream closes.
    fn answered(&self) -> bool {
        match self {
            Road::Passthrough { .. } => false,
            Road::Canonical(road) => road.relay.is_done(),
        }
    }

    /// The usage to meter: what the upstream reported, in the most detail
    /// any stage saw.
    fn usage(&self) -> Option<Usage> {
        match self {
            Road::Passthrough { used, .. } => *used,
            Road::Canonical(road) => road.reported.or_else(|| road.relay.usage()),
        }
    }
}

/// Runs canonical bytes through the relay and, if the client speaks
/// another protocol, its encoder.
async fn encode(
    relay: &mut CanonicalRelay,
    encoder: &mut Option<TranslatorStream>,
    canonical: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CallError> {
    match encoder {
        None => relay.push(canonical, out),
        Some(encoder) => {
            let mut relayed = Vec::new();
            relay.push(canonical, &mut relayed);
            if !relayed.is_empty() {
                out.extend(encoder.push(&relayed).await?);
            }
        }
    }
    Ok(())
}

enum Pulled {
    Output,
    End(Ending),
    Failed(UpstreamError),
    Fault(CallError),
}

pub enum FirstOutput {
    Ready(Bytes),
    /// The upstream failed before the client saw anything: another channel
    /// may still answer.
    Failed(UpstreamError),
    /// A translator failed: the request fails, whatever the channel.
    Fault(CallError),
}

impl RelayStream {
    pub fn new(upstream: UpstreamBody, road: Road, client: Option<Translator>) -> Self {
        RelayStream {
            upstream,
            road,
            client,
            ended: false,
            book: None,
        }
    }

    /// Waits for the first bytes for the client. Until then nothing is
    /// committed: a stream that dies here is a failed attempt, not a broken
    /// answer.
    pub async fn first_output(&mut self) -> FirstOutput {
        let mut out = Vec::new();
        match self.pull(&mut out).await {
            Pulled::Output => FirstOutput::Ready(out.into()),
            Pulled::End(Ending::Truncated | Ending::Failed) => FirstOutput::Failed(
                UpstreamError::Broken("the upstream closed the stream without an answer".into()),
            ),
            Pulled::End(Ending::Done | Ending::Finished) => {
                self.ended = true;
                FirstOutput::Ready(out.into())
            }
            Pulled::Failed(error) => FirstOutput::Failed(error),
            Pulled::Fault(fault) => FirstOutput::Fault(fault),
        }
    }

    /// Reads the upstream until there is output for the client, or the
    /// upstream ends or fails.
    async fn pull(&mut self, out: &mut Vec<u8>) -> Pulled {
        loop {
            let pulled = match self.upstream.next().await {
                Ok(Some(chunk)) => {
                    // What goes out is about what came in: grown to it by
                    // doubling, it would be copied several times over.
                    out.reserve(chunk.len());
                    self.road.feed(&chunk, out).await.map(|()| None)
                }
                Ok(None) => self.road.finish(out).await.map(|e| Some(Pulled::End(e))),
                Err(error) => return Pulled::Failed(error),
            };
            match pulled {
                Ok(Some(end)) => return end,
                Ok(None) if !out.is_empty() => return Pulled::Output,
                Ok(None) => {}
                Err(fault) => return Pulled::Fault(fault),
            }
        }
    }

    /// The client's response: `first`, then the rest as it arrives.
    pub fn into_response(mut self, first: Bytes, book: CallBook) -> Response {
        self.book = Some(book);
        if self.ended {
            self.close("complete", None);
        }
        let rest = futures_util::stream::unfold(self, |mut stream| async move {
            stream
                .next()
                .await
                .map(|bytes| (Ok::<_, Infallible>(bytes), stream))
        });
        let first = futures_util::stream::once(async move { Ok::<_, Infallible>(first) });
        let mut response = Response::new(Body::from_stream(futures_util::StreamExt::chain(
            first, rest,
        )));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Tells reverse proxies in front of Sluice not to buffer the stream.
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }

    async fn next(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        let mut out = Vec::new();
        match self.pull(&mut out).await {
            Pulled::Output => {}
            Pulled::End(Ending::Done | Ending::Finished) => self.close("complete", None),
            // The upstream's own error event already told the client.
            Pulled::End(Ending::Failed) => self.close(
                "upstream_error",
                Some("the upstream reported an error mid-stream".into()),
            ),
            Pulled::End(Ending::Truncated) => {
                let reason = "the upstream ended the stream before the answer finished";
                self.fail("upstream_disconnected", reason, &mut out).await;
                self.close("upstream_error", Some(reason.into()));
            }
            Pulled::Failed(error) => {
                // What the relay held back is lost with the broken stream.
                let _ = self.road.finish(&mut Vec::new()).await;
                let (code, outcome) = match error {
                    UpstreamError::Timeout(_) => ("upstream_timeout", "timeout"),
                    _ => ("upstream_disconnected", "upstream_error"),
                };
                self.fail(code, &error.to_string(), &mut out).await;
                self.close(outcome, Some(error.to_string()));
            }
            Pulled::Fault(fault) => {
                let code = format!("{}:{}", fault.failure.code(), fault.plugin.name);
                self.fail(&code, &fault.to_string(), &mut out).await;
                self.close("plugin_fault", Some(fault.to_string()));
            }
        }
        (!out.is_empty()).then(|| out.into())
    }

    /// Ends the client's stream with an error event of its protocol.
    async fn fail(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        let event = error_event(code, message);
        let open = match &mut self.road {
            Road::Canonical(road) => road.encoder.take(),
            Road::Passthrough { .. } => None,
        };
        let encoder = match (open, &self.client) {
            (Some(encoder), _) => Some(encoder),
            (None, Some(client)) => client.open_stream(Direction::FromCanonical).await.ok(),
            (None, None) => None,
        };
        let Some(mut encoder) = encoder else {
            out.extend_from_slice(&event);
            return;
        };
        match encoder.push(&event).await {
            Ok(rendered) => {
                out.extend(rendered);
                if let Ok(end) = encoder.finish().await {
                    out.extend(end.tail);
                }
            }
            // The client's translator is what failed: canonical is all
            // that is left to say it with.
            Err(_) => out.extend_from_slice(&event),
        }
    }

    fn close(&mut self, outcome: &'static str, error: Option<String>) {
        self.ended = true;
        if let Some(mut book) = self.book.take() {
            book.log.outcome = outcome;
            book.log.error = error;
            book.log.usage = self.road.usage();
            book.close(self.road.delivered());
        }
    }
}

impl Drop for RelayStream {
    /// A client that hangs up once it has the whole answer (SDKs stop at
    /// `[DONE]`) completed its call; only one that left earlier is gone.
    fn drop(&mut self) {
        if !self.ended {
            let outcome = if self.road.answered() {
                "complete"
            } else {
                "client_gone"
            };
            self.close(outcome, None);
        }
    }
}

/// A canonical error event, in the shape OpenAI's SDKs raise from.
fn error_event(code: &str, message: &str) -> Vec<u8> {
    let error = serde_json::json!({
        "error": { "message": message, "type": "server_error", "param": null, "code": code }
    });
    let mut out = Vec::new();
    sluice_sdk::sse::write_event(&mut out, None, error.to_string().as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::{Runtime, RuntimeConfig, builtin};

    fn recorded(path: &str) -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../").to_owned() + path).unwrap()
    }

    /// The client's bytes and the metered usage, for `input` fed in
    /// pieces of the given sizes (repeated), through real components.
    async fn relay(
        channel: Option<&Translator>,
        client: Option<&Translator>,
        passthrough: bool,
        input: &[u8],
        sizes: &[usize],
    ) -> (Vec<u8>, Option<Usage>, Ending) {
        let mut road = if passthrough {
            Road::passthrough(channel.unwrap(), false).await
        } else {
            Road::canonical(channel, client, false, false).await
        }
        .unwrap();
        let mut out = Vec::new();
        let mut rest = input;
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at((*size).min(rest.len()));
            road.feed(piece, &mut out).await.unwrap();
            rest = after;
        }
        let ending = road.finish(&mut out).await.unwrap();
        (out, road.usage(), ending)
    }

    /// Any chunking of a recorded upstream stream gives the client the same
    /// bytes and meters the same usage, on every road the gateway takes.
    #[tokio::test]
    async fn any_chunking_of_a_recorded_stream_gives_identical_client_output() {
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let mut translators = std::collections::HashMap::new();
        for name in ["anthropic", "gemini"] {
            let bundle = builtin::named(name).unwrap();
            let loaded: Translator = runtime
                .load(&bundle)
                .await
                .unwrap()
                .plugin
                .try_into()
                .unwrap();
            translators.insert(name, loaded);
        }
        let cases: [(&str, Option<&str>, Option<&str>, bool); 7] = [
            (
                "plugins/anthropic/fixtures/stream_to_canonical/parallel_tools.input.sse",
                Some("anthropic"),
                None,
                false,
            ),
            (
                "plugins/anthropic/fixtures/stream_to_canonical/thinking.input.sse",
                Some("anthropic"),
                None,
                false,
            ),
            (
                "plugins/anthropic/fixtures/stream_to_canonical/text.input.sse",
                Some("anthropic"),
                Some("anthropic"),
                true,
            ),
            (
                "plugins/gemini/fixtures/stream_to_canonical/parallel_function_calls.input.sse",
                Some("gemini"),
                Some("anthropic"),
                false,
            ),
            (
                "plugins/gemini/fixtures/stream_to_canonical/text_running_usage.input.sse",
                Some("gemini"),
                None,
                false,
            ),
            (
                "plugins/anthropic/fixtures/stream_from_canonical/parallel_tool_calls.input.sse",
                None,
                Some("anthropic"),
                false,
            ),
            (
                "plugins/anthropic/fixtures/stream_from_canonical/text_with_usage.input.sse",
                None,
                None,
                false,
            ),
        ];
        for (path, channel, client, passthrough) in cases {
            let channel = channel.map(|name| &translators[name]);
            let client = client.map(|name| &translators[name]);
            let input = recorded(path);
            let whole = relay(channel, client, passthrough, &input, &[input.len()]).await;
            assert!(!whole.0.is_empty(), "{path}");
            assert!(whole.1.is_some(), "{path}: usage metered");
            let mut rng = fastrand::Rng::with_seed(7);
            for round in 0..12 {
                let sizes: Vec<usize> = (0..64).map(|_| rng.usize(1..=9)).collect();
                let split = relay(channel, client, passthrough, &input, &sizes).await;
                assert_eq!(
                    String::from_utf8_lossy(&split.0),
                    String::from_utf8_lossy(&whole.0),
                    "{path}, round {round}"
                );
                assert_eq!(
                    format!("{:?}", split.1),
                    format!("{:?}", whole.1),
                    "{path}, round {round}"
                );
                assert_eq!(split.2, whole.2, "{path}, round {round}");
            }
        }
    }
}
