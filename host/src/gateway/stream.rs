//! A streamed answer on its way to the client. The upstream body is read
//! only when the client is ready for more (hyper polls this stream as it
//! writes), so a slow client slows the upstream instead of filling memory;
//! a client that leaves drops the stream, which drops the upstream
//! connection and cancels the call.

use crate::protocol::relay::{CanonicalRelay, Ending};
use crate::telemetry::AccessLog;
use crate::upstream::{UpstreamBody, UpstreamError};
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use std::convert::Infallible;

pub struct RelayStream {
    upstream: UpstreamBody,
    relay: CanonicalRelay,
    ended: bool,
    log: Option<AccessLog>,
}

enum Pulled {
    Output,
    End(Ending),
    Failed(UpstreamError),
}

pub enum FirstOutput {
    Ready(Bytes),
    /// The upstream failed before the client saw anything: another channel
    /// may still answer.
    Failed(UpstreamError),
}

impl RelayStream {
    pub fn new(upstream: UpstreamBody, client_wants_usage: bool) -> Self {
        RelayStream {
            upstream,
            relay: CanonicalRelay::new(client_wants_usage),
            ended: false,
            log: None,
        }
    }

    /// Waits for the first bytes for the client. Until then nothing is
    /// committed: a stream that dies here is a failed attempt, not a broken
    /// answer.
    pub async fn first_output(&mut self) -> FirstOutput {
        let mut out = Vec::new();
        match self.pull(&mut out).await {
            Pulled::Output => FirstOutput::Ready(out.into()),
            Pulled::End(Ending::Truncated) => FirstOutput::Failed(UpstreamError::Broken(
                "the upstream closed the stream without an answer".into(),
            )),
            Pulled::End(Ending::Done | Ending::Finished) => {
                self.ended = true;
                FirstOutput::Ready(out.into())
            }
            Pulled::Failed(error) => FirstOutput::Failed(error),
        }
    }

    /// Reads the upstream until the relay has output for the client, or
    /// the upstream ends or fails.
    async fn pull(&mut self, out: &mut Vec<u8>) -> Pulled {
        loop {
            match self.upstream.next().await {
                Ok(Some(chunk)) => {
                    self.relay.push(&chunk, out);
                    if !out.is_empty() {
                        return Pulled::Output;
                    }
                }
                Ok(None) => return Pulled::End(self.relay.finish(out)),
                Err(error) => return Pulled::Failed(error),
            }
        }
    }

    /// The client's response: `first`, then the rest as it arrives.
    pub fn into_response(mut self, first: Bytes, log: AccessLog) -> Response {
        self.log = Some(log);
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
            Pulled::End(Ending::Truncated) => {
                let reason = "the upstream ended the stream before the answer finished";
                error_event(&mut out, "upstream_disconnected", reason);
                self.close("upstream_error", Some(reason.into()));
            }
            Pulled::Failed(error) => {
                self.relay.finish(&mut out);
                let (code, outcome) = match error {
                    UpstreamError::Timeout(_) => ("upstream_timeout", "timeout"),
                    _ => ("upstream_disconnected", "upstream_error"),
                };
                error_event(&mut out, code, &error.to_string());
                self.close(outcome, Some(error.to_string()));
            }
        }
        (!out.is_empty()).then(|| out.into())
    }

    fn close(&mut self, outcome: &'static str, error: Option<String>) {
        self.ended = true;
        if let Some(mut log) = self.log.take() {
            log.outcome = outcome;
            log.error = error;
            log.usage = self.relay.usage();
            log.emit();
        }
    }
}

impl Drop for RelayStream {
    fn drop(&mut self) {
        if !self.ended {
            self.close("client_gone", None);
        }
    }
}

/// An error inside the stream, in the shape OpenAI's SDKs raise from.
fn error_event(out: &mut Vec<u8>, code: &str, message: &str) {
    let error = serde_json::json!({
        "error": { "message": message, "type": "server_error", "param": null, "code": code }
    });
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(error.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}
