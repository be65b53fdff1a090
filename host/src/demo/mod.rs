//! A fake provider that speaks OpenAI Chat Completions, Anthropic Messages
//! and Gemini generateContent, so Sluice answers offline and tests and
//! benchmarks have upstreams that misbehave on demand.
//!
//! Answers are deterministic (see `answer`). The model name selects faults,
//! as directives after the name separated by `/` (or `.`, for Gemini, whose
//! model names go into the URL path), e.g. `demo/slow-200/chunk-3`:
//!
//! | directive | effect |
//! |---|---|
//! | `status-N` | answer with HTTP status N and an error body in the protocol's shape (429 adds `retry-after: 1`) |
//! | `slow-MS` | wait MS before answering |
//! | `stall-MS` | wait MS between stream pieces |
//! | `drop-N` | cut the connection after N stream pieces, before the stream's end |
//! | `chunk-N` | write the stream in N-byte pieces, splitting events and characters |
//! | `words-N` | reply with N words |
//! | `cached-N` | report N prompt tokens read from the cache |
//! | `cache-write-N` | report N prompt tokens written to the cache (Anthropic) |
//! | `reasoning-N` | report N reasoning tokens (OpenAI, Gemini) |
//! | `no-usage` | never report usage (OpenAI, Gemini) |
//! | `usage-on-finish` | put the usage on the finish chunk instead of a chunk of its own (OpenAI) |
//!
//! `GET /demo/usage/{request-id}` tells what usage the demo reported for a
//! request (by its `x-request-id`), for tests that check metering.

mod answer;
mod anthropic;
mod gemini;
mod openai;

use crate::store::channels::ChannelSpec;
use answer::{Answer, Tokens};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Streams the demo started, finished, and lost to a departed client, how
/// many requests carried a credential, and the usage it reported lately.
#[derive(Default)]
pub struct Demo {
    with_credentials: AtomicU64,
    started: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    reported: Mutex<Reported>,
}

/// The usage reported for the most recent requests, by request id.
#[derive(Default)]
struct Reported {
    by_id: HashMap<String, Tokens>,
    order: VecDeque<String>,
}

const REPORTED_KEPT: usize = 4096;

impl Demo {
    fn report(&self, headers: &HeaderMap, tokens: Tokens) {
        let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) else {
            return;
        };
        let mut reported = self
            .reported
            .lock()
            .expect("the demo never panics holding it");
        if reported.by_id.insert(id.to_string(), tokens).is_none() {
            reported.order.push_back(id.to_string());
        }
        if reported.order.len() > REPORTED_KEPT
            && let Some(oldest) = reported.order.pop_front()
        {
            reported.by_id.remove(&oldest);
        }
    }
}

pub fn router() -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1beta/models/{*target}", post(gemini::generate))
        .route("/v1/models", get(models))
        .route("/demo/stats", get(stats))
        .route("/demo/usage/{id}", get(usage))
        .with_state(Arc::new(Demo::default()))
}

/// Serves the demo upstream on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    // Small SSE writes must leave at once, not wait for delayed ACKs.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router()).await
}

pub const MODELS: [&str; 2] = ["demo", "demo-tools"];

/// The channels through which a gateway serves the demo upstream at
/// `addr`: `demo` models as OpenAI, `claude-demo` as Anthropic and
/// `gemini-demo` as Gemini, each also with fault directives.
pub fn channels(addr: std::net::SocketAddr) -> Vec<ChannelSpec> {
    let channel = |name: &str, protocol: &str, path: &str, models: &[&str]| ChannelSpec {
        name: name.into(),
        protocol: protocol.into(),
        base_url: format!("http://{addr}{path}"),
        api_key: None,
        api_key_env: None,
        models: models.iter().map(|m| m.to_string()).collect(),
        model_map: Default::default(),
        weight: 1,
        priority: 0,
        tags: vec![],
        status: crate::store::accounts::ACTIVE.into(),
    };
    vec![
        channel(
            "demo",
            crate::protocol::CANONICAL,
            "/v1",
            &["demo", "demo-tools", "demo/*"],
        ),
        channel(
            "demo-anthropic",
            "anthropic-messages",
            "/v1",
            &["claude-demo", "claude-demo/*"],
        ),
        channel(
            "demo-gemini",
            "gemini",
            "/v1beta",
            &["gemini-demo", "gemini-demo.*"],
        ),
    ]
}

async fn models() -> Response {
    let data: Vec<_> = MODELS
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "sluice-demo"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn stats(State(demo): State<Arc<Demo>>) -> Response {
    axum::Json(json!({
        "streams_started": demo.started.load(Ordering::SeqCst),
        "streams_completed": demo.completed.load(Ordering::SeqCst),
        "streams_cancelled": demo.cancelled.load(Ordering::SeqCst),
        "requests_with_credentials": demo.with_credentials.load(Ordering::SeqCst),
    }))
    .into_response()
}

async fn usage(State(demo): State<Arc<Demo>>, Path(id): Path<String>) -> Response {
    let reported = demo
        .reported
        .lock()
        .expect("the demo never panics holding it");
    match reported.by_id.get(&id) {
        Some(tokens) => axum::Json(tokens).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[derive(Default, Debug, PartialEq)]
pub struct Faults {
    status: Option<u16>,
    slow: Option<Duration>,
    stall: Option<Duration>,
    drop_after: Option<usize>,
    chunk: Option<usize>,
    words: Option<usize>,
    cached: u64,
    cache_write: u64,
    reasoning: u64,
    no_usage: bool,
    usage_on_finish: bool,
}

impl Faults {
    fn from_model(model: &str) -> Self {
        let mut faults = Faults::default();
        for directive in model.split(['/', '.']).skip(1) {
            let (name, value) = directive.rsplit_once('-').unwrap_or((directive, ""));
            let number = value.parse::<u64>().ok();
            match (name, number) {
                ("status", Some(n)) => faults.status = u16::try_from(n).ok(),
                ("slow", Some(ms)) => faults.slow = Some(Duration::from_millis(ms)),
                ("stall", Some(ms)) => faults.stall = Some(Duration::from_millis(ms)),
                ("drop", Some(n)) => faults.drop_after = Some(n as usize),
                ("chunk", Some(n)) if n > 0 => faults.chunk = Some(n as usize),
                ("words", Some(n)) => faults.words = Some(n as usize),
                ("cached", Some(n)) => faults.cached = n,
                ("cache-write", Some(n)) => faults.cache_write = n,
                ("reasoning", Some(n)) => faults.reasoning = n,
                _ if directive == "no-usage" => faults.no_usage = true,
                _ if directive == "usage-on-finish" => faults.usage_on_finish = true,
                _ => {}
            }
        }
        faults
    }
}

/// A protocol the demo speaks.
trait Speaker {
    /// The protocol's error body for `status`.
    fn error(status: StatusCode, message: &str) -> Value;
    /// The whole answer, for a non-stream request.
    fn completion(answer: &Answer, model: &str, faults: &Faults) -> Value;
    /// The answer as a stream of events.
    fn stream(answer: Answer, model: String, faults: &Faults, request: &Value) -> Box<dyn Plan>;
    /// The usage as this protocol can report it, or `None` if it reports
    /// none for this request.
    fn reported(tokens: Tokens, faults: &Faults, stream: bool, request: &Value) -> Option<Tokens>;
}

/// A stream's events, produced one by one as the client reads, so a
/// stream of any length costs the demo no memory.
trait Plan: Send {
    /// The `position`-th event as bytes, `None` past the end.
    fn event(&self, position: usize) -> Option<Bytes>;
}

/// Answers `request` for `model` in protocol `S`, honouring the faults its
/// name asks for.
async fn answer<S: Speaker>(
    demo: Arc<Demo>,
    headers: &HeaderMap,
    model: String,
    request: Value,
    prompt: answer::Prompt,
    stream: bool,
) -> Response {
    let credentials = ["authorization", "x-api-key", "x-goog-api-key"];
    if credentials.iter().any(|name| headers.contains_key(*name)) {
        demo.with_credentials.fetch_add(1, Ordering::SeqCst);
    }
    let faults = Faults::from_model(&model);
    if let Some(delay) = faults.slow {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = faults.status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = format!(
            "The demo upstream was asked to fail with {}.",
            status.as_u16()
        );
        let mut response = (status, axum::Json(S::error(status, &message))).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        return response;
    }
    let answer = Answer::new(&prompt, &faults);
    if let Some(tokens) = S::reported(answer.tokens, &faults, stream, &request) {
        demo.report(headers, tokens);
    }
    if !stream {
        return axum::Json(S::completion(&answer, &model, &faults)).into_response();
    }
    demo.started.fetch_add(1, Ordering::SeqCst);
    let delivery = Delivery {
        plan: S::stream(answer, model, &faults, &request),
        position: 0,
        pending: Vec::new(),
        chunk: faults.chunk,
        sent: 0,
        stall: faults.stall,
        drop_after: faults.drop_after,
        demo,
        finished: false,
    };
    let body = futures_util::stream::unfold(delivery, |mut delivery| async move {
        delivery.next().await.map(|piece| (piece, delivery))
    });
    let mut response = Response::new(Body::from_stream(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// A request body that is not JSON.
fn not_json<S: Speaker>() -> Response {
    let status = StatusCode::BAD_REQUEST;
    (
        status,
        axum::Json(S::error(status, "The body is not JSON.")),
    )
        .into_response()
}

/// One stream's pieces on their way out, counting how it ends.
struct Delivery {
    plan: Box<dyn Plan>,
    position: usize,
    /// Bytes of events not yet sent, when re-chunking.
    pending: Vec<u8>,
    chunk: Option<usize>,
    sent: usize,
    stall: Option<Duration>,
    drop_after: Option<usize>,
    demo: Arc<Demo>,
    finished: bool,
}

impl Delivery {
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.finished {
            return None;
        }
        if self.drop_after == Some(self.sent) {
            // Pausing first lets hyper flush what was sent (it writes when
            // the body is pending); the error then aborts the connection
            // mid-response.
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.finish();
            return Some(Err(std::io::Error::other(
                "the demo upstream was asked to drop the stream",
            )));
        }
        if self.sent > 0
            && let Some(stall) = self.stall
        {
            tokio::time::sleep(stall).await;
        }
        match self.next_piece() {
            Some(piece) => {
                self.sent += 1;
                Some(Ok(piece))
            }
            None => {
                self.finish();
                None
            }
        }
    }

    /// The next whole event, or the next `chunk` bytes of the event stream.
    fn next_piece(&mut self) -> Option<Bytes> {
        let Some(size) = self.chunk else {
            let event = self.plan.event(self.position)?;
            self.position += 1;
            return Some(event);
        };
        while self.pending.len() < size {
            match self.plan.event(self.position) {
                Some(event) => {
                    self.position += 1;
                    self.pending.extend_from_slice(&event);
                }
                None => break,
            }
        }
        if self.pending.is_empty() {
            return None;
        }
        let take = size.min(self.pending.len());
        Some(Bytes::from(self.pending.drain(..take).collect::<Vec<u8>>()))
    }

    fn finish(&mut self) {
        self.finished = true;
        self.demo.completed.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.finished {
            self.demo.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The text of a message's `content`: a string, or the `text` of its parts.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fault_directives_from_the_model_name() {
        let faults = Faults::from_model("demo/status-429/slow-20/chunk-3/drop-4/no-usage/words-9");
        assert_eq!(faults.status, Some(429));
        assert_eq!(faults.slow, Some(Duration::from_millis(20)));
        assert_eq!(
            (faults.chunk, faults.drop_after, faults.words),
            (Some(3), Some(4), Some(9))
        );
        assert!(faults.no_usage && !faults.usage_on_finish);
        assert_eq!(Faults::from_model("demo"), Faults::default());
        let gemini = Faults::from_model("gemini-demo.cached-5.cache-write-2.reasoning-3");
        assert_eq!(
            (gemini.cached, gemini.cache_write, gemini.reasoning),
            (5, 2, 3)
        );
    }
}
