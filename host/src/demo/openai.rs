//! The demo speaking OpenAI Chat Completions.

use super::answer::{Answer, Finish, Prompt, Tokens};
use super::{Demo, Faults, Plan, Speaker, content_text};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

pub async fn chat(State(demo): State<Arc<Demo>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return super::not_json::<OpenAi>();
    };
    let model = request["model"].as_str().unwrap_or_default().to_string();
    let stream = request["stream"].as_bool().unwrap_or(false);
    let prompt = prompt(&request);
    super::answer::<OpenAi>(demo, &headers, model, request, prompt, stream).await
}

fn prompt(request: &Value) -> Prompt {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let texts: Vec<String> = messages
        .iter()
        .map(|m| content_text(&m["content"]))
        .collect();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| content_text(&m["content"]))
        .unwrap_or_default();
    Prompt {
        texts,
        last_user,
        tool: request["tools"][0]["function"]["name"]
            .as_str()
            .filter(|_| request["tool_choice"] != "none")
            .map(String::from),
        max_tokens: request["max_completion_tokens"]
            .as_u64()
            .or(request["max_tokens"].as_u64()),
    }
}

pub struct OpenAi;

impl Speaker for OpenAi {
    fn error(status: StatusCode, message: &str) -> Value {
        let kind = if status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        json!({"error": {"message": message, "type": kind, "param": null, "code": "demo_fault"}})
    }

    fn completion(answer: &Answer, model: &str, faults: &Faults) -> Value {
        let message = match &answer.tool_call {
            Some((name, _)) => json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{"id": "call_demo_1", "type": "function",
                    "function": {"name": name, "arguments": answer.arguments()}}],
            }),
            None => json!({"role": "assistant", "content": answer.text(), "refusal": null}),
        };
        let mut completion = json!({
            "id": "chatcmpl-demo",
            "object": "chat.completion",
            "created": 1_764_000_000,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish(answer.finish), "logprobs": null}],
        });
        if !faults.no_usage {
            completion["usage"] = usage(answer.tokens);
        }
        completion
    }

    fn stream(answer: Answer, model: String, faults: &Faults, request: &Value) -> Box<dyn Plan> {
        Box::new(StreamPlan {
            answer,
            model,
            include_usage: include_usage(request, faults),
            usage_on_finish: faults.usage_on_finish,
        })
    }

    fn reported(tokens: Tokens, faults: &Faults, stream: bool, request: &Value) -> Option<Tokens> {
        let reports = if stream {
            include_usage(request, faults)
        } else {
            !faults.no_usage
        };
        reports.then_some(Tokens {
            cache_write_tokens: 0,
            ..tokens
        })
    }
}

fn include_usage(request: &Value, faults: &Faults) -> bool {
    request["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false)
        && !faults.no_usage
}

fn finish(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::ToolUse => "tool_calls",
    }
}

fn usage(tokens: Tokens) -> Value {
    json!({
        "prompt_tokens": tokens.prompt_tokens,
        "completion_tokens": tokens.completion_tokens,
        "total_tokens": tokens.prompt_tokens + tokens.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": tokens.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": tokens.reasoning_tokens},
    })
}

struct StreamPlan {
    answer: Answer,
    model: String,
    include_usage: bool,
    usage_on_finish: bool,
}

impl Plan for StreamPlan {
    /// Opening, one event per delta, finish, usage, `[DONE]`.
    fn event(&self, position: usize) -> Option<Bytes> {
        let finish_at = self.answer.deltas() + 1;
        let separate_usage = self.include_usage && !self.usage_on_finish;
        let usage_at = finish_at + usize::from(separate_usage);
        let value = match position {
            0 => self.chunk(self.opening_delta(), None, Value::Null),
            p if p < finish_at => self.chunk(self.delta(p - 1), None, Value::Null),
            p if p == finish_at => {
                let usage = if self.usage_on_finish && self.include_usage {
                    usage(self.answer.tokens)
                } else {
                    Value::Null
                };
                self.chunk(json!({}), Some(finish(self.answer.finish)), usage)
            }
            p if p == usage_at => {
                let mut last = self.chunk(json!({}), None, usage(self.answer.tokens));
                last["choices"] = json!([]);
                last
            }
            p if p == usage_at + 1 => return Some(Bytes::from_static(b"data: [DONE]\n\n")),
            _ => return None,
        };
        Some(Bytes::from(format!("data: {value}\n\n")))
    }
}

impl StreamPlan {
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
    fn answers_deterministically_and_respects_the_token_cap() {
        let request = json!({"model": "demo", "max_tokens": 3, "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "ping"}]});
        let answer = Answer::new(&prompt(&request), &Faults::default());
        assert_eq!(answer.text(), "Hello from the ");
        assert_eq!(answer.finish, Finish::Length);
        assert_eq!(answer.tokens.completion_tokens, 3);
        let plan = OpenAi::stream(answer, "demo".into(), &Faults::default(), &request);
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
        let answer = Answer::new(&prompt(&request), &Faults::default());
        let (name, _) = answer.tool_call.as_ref().unwrap();
        assert_eq!(name, "get_weather");
        let arguments: Value = serde_json::from_str(&answer.arguments().unwrap()).unwrap();
        assert_eq!(arguments["location"], "Paris");
        assert_eq!(
            OpenAi::completion(&answer, "demo", &Faults::default())["choices"][0]["finish_reason"],
            "tool_calls"
        );
    }
}
