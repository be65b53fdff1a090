//! A fake OpenAI-compatible provider, so Sluice answers offline and tests
//! and benchmarks have an upstream that misbehaves on demand.
//!
//! Answers are deterministic: the reply quotes the last user message, one
//! token per word, in text with multi-byte characters. With `tools` in the
//! request it calls the first tool, its arguments streamed in fragments.
//! The model name selects faults, as `/`-separated directives after the
//! name, e.g. `demo/slow-200/chunk-3`:
//!
//! | directive | effect |
//! |---|---|
//! | `status-N` | answer with HTTP status N and an OpenAI error body (429 adds `retry-after: 1`) |
//! | `slow-MS` | wait MS before answering |
//! | `stall-MS` | wait MS between stream pieces |
//! | `drop-N` | cut the connection after N stream pieces, without `[DONE]` |
//! | `chunk-N` | write the stream in N-byte pieces, splitting events and characters |
//! | `words-N` | reply with N words |
//! | `no-usage` | never report usage |
//! | `usage-on-finish` | put the usage on the finish chunk instead of a chunk of its own |

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Streams the demo started, finished, and lost to a departed client, and
/// how many requests carried a credential.
#[derive(Default)]
pub struct DemoStats {
    with_credentials: AtomicU64,
    started: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
}

pub fn router() -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/demo/stats", get(stats))
        .with_state(Arc::new(DemoStats::default()))
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

/// The channel through which a gateway serves the demo upstream at `addr`.
pub fn channel(addr: std::net::SocketAddr) -> crate::config::ChannelConfig {
    crate::config::ChannelConfig {
        name: "demo".into(),
        protocol: crate::protocol::CANONICAL.into(),
        base_url: format!("http://{addr}/v1"),
        api_key_env: None,
        models: vec!["demo".into(), "demo-tools".into(), "demo/*".into()],
        model_map: Default::default(),
        weight: 1,
        priority: 0,
        tags: vec![],
    }
}

async fn models() -> Response {
    let data: Vec<_> = MODELS
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "sluice-demo"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn stats(State(stats): State<Arc<DemoStats>>) -> Response {
    axum::Json(json!({
        "streams_started": stats.started.load(Ordering::SeqCst),
        "streams_completed": stats.completed.load(Ordering::SeqCst),
        "streams_cancelled": stats.cancelled.load(Ordering::SeqCst),
        "requests_with_credentials": stats.with_credentials.load(Ordering::SeqCst),
    }))
    .into_response()
}

#[derive(Default, Debug, PartialEq)]
struct Faults {
    status: Option<u16>,
    slow: Option<Duration>,
    stall: Option<Duration>,
    drop_after: Option<usize>,
    chunk: Option<usize>,
    words: Option<usize>,
    no_usage: bool,
    usage_on_finish: bool,
}

impl Faults {
    fn from_model(model: &str) -> Self {
        let mut faults = Faults::default();
        for directive in model.split('/').skip(1) {
            let (name, value) = directive.rsplit_once('-').unwrap_or((directive, ""));
            let number = value.parse::<u64>().ok();
            match (name, number) {
                ("status", Some(n)) => faults.status = u16::try_from(n).ok(),
                ("slow", Some(ms)) => faults.slow = Some(Duration::from_millis(ms)),
                ("stall", Some(ms)) => faults.stall = Some(Duration::from_millis(ms)),
                ("drop", Some(n)) => faults.drop_after = Some(n as usize),
                ("chunk", Some(n)) if n > 0 => faults.chunk = Some(n as usize),
                ("words", Some(n)) => faults.words = Some(n as usize),
                _ if directive == "no-usage" => faults.no_usage = true,
                _ if directive == "usage-on-finish" => faults.usage_on_finish = true,
                _ => {}
            }
        }
        faults
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let kind = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    (status, axum::Json(body)).into_response()
}

async fn chat(
    State(stats): State<Arc<DemoStats>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        stats.with_credentials.fetch_add(1, Ordering::SeqCst);
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "The body is not JSON.",
        );
    };
    let model = request["model"].as_str().unwrap_or_default().to_string();
    let faults = Faults::from_model(&model);
    if let Some(delay) = faults.slow {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = faults.status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = error(
            status,
            "demo_fault",
            &format!("The demo upstream was asked to fail with {status}."),
        );
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        return response;
    }
    let answer = Answer::for_request(&request, &faults);
    let stream = request["stream"].as_bool().unwrap_or(false);
    if !stream {
        return axum::Json(answer.completion(&model)).into_response();
    }
    let include_usage = request["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false)
        && !faults.no_usage;
    stats.started.fetch_add(1, Ordering::SeqCst);
    let delivery = Delivery {
        plan: StreamPlan {
            answer,
            model,
            include_usage,
            usage_on_finish: faults.usage_on_finish,
        },
        position: 0,
        pending: Vec::new(),
        chunk: faults.chunk,
        sent: 0,
        stall: faults.stall,
        drop_after: faults.drop_after,
        stats,
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

/// One stream's pieces on their way out, counting how it ends.
struct Delivery {
    plan: StreamPlan,
    position: usize,
    /// Bytes of events not yet sent, when re-chunking.
    pending: Vec<u8>,
    chunk: Option<usize>,
    sent: usize,
    stall: Option<Duration>,
    drop_after: Option<usize>,
    stats: Arc<DemoStats>,
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
        self.stats.completed.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.finished {
            self.stats.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// What the demo answers: words of text, or one tool call.
struct Answer {
    words: Vec<String>,
    tool_call: Option<(String, Vec<String>)>,
    finish_reason: &'static str,
    prompt_tokens: u64,
}

impl Answer {
    fn for_request(request: &Value, faults: &Faults) -> Self {
        let messages = request["messages"].as_array().cloned().unwrap_or_default();
        let text_of = |message: &Value| match &message["content"] {
            Value::String(text) => text.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        };
        let prompt_chars: usize = messages.iter().map(|m| text_of(m).chars().count()).sum();
        let prompt_tokens = (prompt_chars.div_ceil(4) + 3 * messages.len()) as u64;
        let last_user = messages
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .map(text_of)
            .unwrap_or_default();
        let tool = request["tools"][0]["function"]["name"].as_str();
        if let Some(name) = tool.filter(|_| request["tool_choice"] != "none") {
            let arguments =
                json!({"location": "Paris", "unit": "celsius", "note": "café ☕ 😀"}).to_string();
            let chars: Vec<char> = arguments.chars().collect();
            let fragments = chars.chunks(7).map(|c| c.iter().collect()).collect();
            return Answer {
                words: Vec::new(),
                tool_call: Some((name.to_string(), fragments)),
                finish_reason: "tool_calls",
                prompt_tokens,
            };
        }
        let quoted: String = last_user.chars().take(120).collect();
        let text = format!(
            "Hello from the Sluice demo upstream! You said: «{quoted}». Café ☕ naïve résumé 😀 — streaming works."
        );
        let mut words: Vec<String> = text.split(' ').map(|w| format!("{w} ")).collect();
        if let Some(count) = faults.words {
            let base = words.clone();
            words = (0..count).map(|i| base[i % base.len()].clone()).collect();
        }
        let cap = request["max_completion_tokens"]
            .as_u64()
            .or(request["max_tokens"].as_u64());
        let finish_reason = match cap {
            Some(cap) if (cap as usize) < words.len() => {
                words.truncate(cap as usize);
                "length"
            }
            _ => "stop",
        };
        Answer {
            words,
            tool_call: None,
            finish_reason,
            prompt_tokens,
        }
    }

    fn completion_tokens(&self) -> u64 {
        match &self.tool_call {
            Some((_, fragments)) => fragments.len() as u64,
            None => self.words.len() as u64,
        }
    }

    fn usage(&self) -> Value {
        let completion = self.completion_tokens();
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        })
    }

    fn completion(&self, model: &str) -> Value {
        let message = match &self.tool_call {
            Some((name, fragments)) => json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{"id": "call_demo_1", "type": "function",
                    "function": {"name": name, "arguments": fragments.concat()}}],
            }),
            None => json!({"role": "assistant", "content": self.words.concat(), "refusal": null}),
        };
        json!({
            "id": "chatcmpl-demo",
            "object": "chat.completion",
            "created": 1_764_000_000,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason, "logprobs": null}],
            "usage": self.usage(),
        })
    }
}

/// A streamed answer, produced event by event as the client reads, so a
/// stream of any length costs the demo no memory.
struct StreamPlan {
    answer: Answer,
    model: String,
    include_usage: bool,
    usage_on_finish: bool,
}

impl StreamPlan {
    fn deltas(&self) -> usize {
        match &self.answer.tool_call {
            Some((_, fragments)) => fragments.len(),
            None => self.answer.words.len(),
        }
    }

    fn separate_usage_chunk(&self) -> bool {
        self.include_usage && !self.usage_on_finish
    }

    /// The stream's `position`-th event as SSE bytes, `[DONE]` last.
    fn event(&self, position: usize) -> Option<Bytes> {
        let deltas = self.deltas();
        let finish = deltas + 1;
        let usage = finish + usize::from(self.separate_usage_chunk());
        let value = match position {
            0 => self.chunk(self.opening_delta(), None, Value::Null),
            p if p < finish => self.chunk(self.delta(p - 1), None, Value::Null),
            p if p == finish => {
                let usage = if self.usage_on_finish && self.include_usage {
                    self.answer.usage()
                } else {
                    Value::Null
                };
                self.chunk(json!({}), Some(self.answer.finish_reason), usage)
            }
            p if p == usage => {
                let mut last = self.chunk(json!({}), None, self.answer.usage());
                last["choices"] = json!([]);
                last
            }
            p if p == usage + 1 => return Some(Bytes::from_static(b"data: [DONE]\n\n")),
            _ => return None,
        };
        Some(Bytes::from(format!("data: {value}\n\n")))
    }

    fn opening_delta(&self) -> Value {
        match &self.answer.tool_call {
            Some((name, _)) => {
                json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
                "id": "call_demo_1", "type": "function", "function": {"name": name, "arguments": ""}}]})
            }
            None => json!({"role": "assistant", "content": ""}),
        }
    }

    fn delta(&self, index: usize) -> Value {
        match &self.answer.tool_call {
            Some((_, fragments)) => {
                json!({"tool_calls": [{"index": 0, "function": {"arguments": fragments[index]}}]})
            }
            None => json!({"content": self.answer.words[index]}),
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, usage: Value) -> Value {
        let mut chunk = json!({
            "id": "chatcmpl-demo",
            "object": "chat.completion.chunk",
            "created": 1_764_000_000,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
        });
        if self.include_usage {
            chunk["usage"] = usage;
        }
        chunk
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
    }

    #[test]
    fn answers_deterministically_and_respects_the_token_cap() {
        let request = json!({"model": "demo", "max_tokens": 3,
            "messages": [{"role": "user", "content": "ping"}]});
        let answer = Answer::for_request(&request, &Faults::default());
        assert_eq!(answer.words.concat(), "Hello from the ");
        assert_eq!(answer.finish_reason, "length");
        assert_eq!(answer.completion_tokens(), 3);
        let plan = StreamPlan {
            answer,
            model: "demo".into(),
            include_usage: true,
            usage_on_finish: false,
        };
        let events: Vec<Bytes> = (0..).map_while(|p| plan.event(p)).collect();
        // Opening, three words, finish, usage, [DONE].
        assert_eq!(events.len(), 7);
        let usage: Value = serde_json::from_slice(&events[5][6..]).unwrap();
        assert_eq!(usage["usage"]["completion_tokens"], 3);
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(&events[6][..], b"data: [DONE]\n\n");
    }

    #[test]
    fn calls_the_first_tool_with_json_arguments() {
        let request = json!({"model": "demo", "messages": [{"role": "user", "content": "weather?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]});
        let answer = Answer::for_request(&request, &Faults::default());
        let (name, fragments) = answer.tool_call.as_ref().unwrap();
        assert_eq!(name, "get_weather");
        let arguments: Value = serde_json::from_str(&fragments.concat()).unwrap();
        assert_eq!(arguments["location"], "Paris");
        assert_eq!(
            answer.completion("demo")["choices"][0]["finish_reason"],
            "tool_calls"
        );
    }
}
