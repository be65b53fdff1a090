//! The demo speaking Anthropic Messages. It checks what the real API
//! insists on (`anthropic-version`, `max_tokens`, only `user` and
//! `assistant` turns), so a translator that forgets one fails here too.

use super::answer::{Answer, Finish, Prompt, Tokens};
use super::{Demo, Faults, Plan, Speaker, content_text};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

pub async fn messages(State(demo): State<Arc<Demo>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return super::not_json::<Anthropic>();
    };
    if let Err(message) = check(&headers, &request) {
        let status = StatusCode::BAD_REQUEST;
        return (status, axum::Json(Anthropic::error(status, &message))).into_response();
    }
    let model = request["model"].as_str().unwrap_or_default().to_string();
    let stream = request["stream"].as_bool().unwrap_or(false);
    let prompt = prompt(&request);
    super::answer::<Anthropic>(demo, &headers, model, request, prompt, stream).await
}

fn check(headers: &HeaderMap, request: &Value) -> Result<(), String> {
    if !headers.contains_key("anthropic-version") {
        return Err("anthropic-version: header is required".into());
    }
    if !request["max_tokens"].is_u64() {
        return Err("max_tokens: Field required".into());
    }
    let messages = request["messages"]
        .as_array()
        .ok_or("messages: Field required")?;
    if let Some(bad) = messages
        .iter()
        .find(|m| m["role"] != "user" && m["role"] != "assistant")
    {
        return Err(format!("messages: Unexpected role {}", bad["role"]));
    }
    Ok(())
}

fn prompt(request: &Value) -> Prompt {
    // Tool results count towards the prompt but are not quoted.
    let block_text = |content: &Value, with_results: bool| match content {
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| match b["type"].as_str() {
                Some("tool_result") if with_results => Some(content_text(&b["content"])),
                Some("text") => b["text"].as_str().map(String::from),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => content_text(other),
    };
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let mut texts = vec![block_text(&request["system"], true)];
    texts.extend(messages.iter().map(|m| block_text(&m["content"], true)));
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| block_text(&m["content"], false))
        .unwrap_or_default();
    Prompt {
        texts,
        last_user,
        tool: request["tools"][0]["name"]
            .as_str()
            .filter(|_| request["tool_choice"]["type"] != "none")
            .map(String::from),
        max_tokens: request["max_tokens"].as_u64(),
    }
}

pub struct Anthropic;

impl Speaker for Anthropic {
    fn error(status: StatusCode, message: &str) -> Value {
        let kind = match status.as_u16() {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_demo"})
    }

    fn completion(answer: &Answer, model: &str, _faults: &Faults) -> Value {
        json!({
            "id": "msg_demo",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [block(answer, true)],
            "stop_reason": stop_reason(answer.finish),
            "stop_sequence": null,
            "usage": usage(answer.tokens, answer.tokens.completion_tokens),
        })
    }

    fn stream(answer: Answer, model: String, _faults: &Faults, _request: &Value) -> Box<dyn Plan> {
        Box::new(StreamPlan { answer, model })
    }

    fn reported(
        tokens: Tokens,
        _faults: &Faults,
        _stream: bool,
        _request: &Value,
    ) -> Option<Tokens> {
        // Thinking is part of the output; Anthropic does not count it apart.
        Some(Tokens {
            reasoning_tokens: 0,
            ..tokens
        })
    }
}

fn stop_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
        Finish::ToolUse => "tool_use",
    }
}

/// The one content block: text, or the tool call (`whole`: with its input).
fn block(answer: &Answer, whole: bool) -> Value {
    match &answer.tool_call {
        Some((name, _)) => {
            let input = match answer.arguments().filter(|_| whole) {
                Some(arguments) => serde_json::from_str(&arguments).unwrap_or_else(|_| json!({})),
                None => json!({}),
            };
            json!({"type": "tool_use", "id": "toolu_demo_1", "name": name, "input": input})
        }
        None => json!({"type": "text", "text": if whole { answer.text() } else { String::new() }}),
    }
}

/// `input_tokens` excludes what the cache served or stored.
fn usage(tokens: Tokens, output: u64) -> Value {
    json!({
        "input_tokens": tokens.prompt_tokens - tokens.cached_tokens - tokens.cache_write_tokens,
        "cache_creation_input_tokens": tokens.cache_write_tokens,
        "cache_read_input_tokens": tokens.cached_tokens,
        "output_tokens": output,
    })
}

struct StreamPlan {
    answer: Answer,
    model: String,
}

impl Plan for StreamPlan {
    /// message_start, ping, the block's start, deltas and stop,
    /// message_delta, message_stop.
    fn event(&self, position: usize) -> Option<Bytes> {
        let deltas = self.answer.deltas();
        let value = match position {
            0 => json!({"type": "message_start", "message": {
                "id": "msg_demo", "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": usage(self.answer.tokens, 1)}}),
            1 => json!({"type": "ping"}),
            2 => json!({"type": "content_block_start", "index": 0,
                "content_block": block(&self.answer, false)}),
            p if p < 3 + deltas => {
                let delta = match &self.answer.tool_call {
                    Some((_, fragments)) => {
                        json!({"type": "input_json_delta", "partial_json": fragments[p - 3]})
                    }
                    None => json!({"type": "text_delta", "text": self.answer.words[p - 3]}),
                };
                json!({"type": "content_block_delta", "index": 0, "delta": delta})
            }
            p if p == 3 + deltas => json!({"type": "content_block_stop", "index": 0}),
            p if p == 4 + deltas => json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(self.answer.finish), "stop_sequence": null},
                "usage": {"output_tokens": self.answer.tokens.completion_tokens}}),
            p if p == 5 + deltas => json!({"type": "message_stop"}),
            _ => return None,
        };
        let name = value["type"].as_str().unwrap_or_default();
        Some(Bytes::from(format!("event: {name}\ndata: {value}\n\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_every_event_type_with_usage_split_by_cache() {
        let request = json!({"model": "claude-demo", "max_tokens": 2,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "ping"}]}]});
        let faults = Faults::from_model("claude-demo/cached-4/cache-write-2");
        let answer = Answer::new(&prompt(&request), &faults);
        let plan = Anthropic::stream(answer, "claude-demo".into(), &faults, &request);
        let events: Vec<String> = (0..)
            .map_while(|p| plan.event(p))
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect();
        let names: Vec<&str> = events
            .iter()
            .map(|e| e.lines().next().unwrap().trim_start_matches("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let start: Value = serde_json::from_str(&events[0].lines().nth(1).unwrap()[6..]).unwrap();
        let usage = &start["message"]["usage"];
        assert_eq!(usage["cache_read_input_tokens"], 4);
        assert_eq!(usage["cache_creation_input_tokens"], 2);
        assert!(events[6].contains("\"stop_reason\":\"max_tokens\""));
    }
}
