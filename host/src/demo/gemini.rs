//! The demo speaking Gemini generateContent and streamGenerateContent
//! (`alt=sse`). Directives in the model name are separated by `.`: the
//! name is part of the URL path.

use super::answer::{Answer, Finish, Prompt, Tokens};
use super::{Demo, Faults, Plan, Speaker};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

pub async fn generate(
    State(demo): State<Arc<Demo>>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (model, stream) = match target.rsplit_once(':') {
        Some((model, "generateContent")) => (model, false),
        Some((model, "streamGenerateContent")) => (model, true),
        _ => {
            let status = StatusCode::NOT_FOUND;
            let message = format!("Unknown method in {target}.");
            return (status, axum::Json(Gemini::error(status, &message))).into_response();
        }
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return super::not_json::<Gemini>();
    };
    if let Some(bad) = request["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["role"] != "user" && c["role"] != "model")
    {
        let status = StatusCode::BAD_REQUEST;
        let message = format!(
            "Please use a valid role: user, model (got {}).",
            bad["role"]
        );
        return (status, axum::Json(Gemini::error(status, &message))).into_response();
    }
    let prompt = prompt(&request);
    super::answer::<Gemini>(demo, &headers, model.to_string(), request, prompt, stream).await
}

/// The text of `parts`; function results count towards the prompt but are
/// not quoted.
fn parts_text(parts: &Value, with_results: bool) -> String {
    parts
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            p["text"].as_str().map(String::from).or_else(|| {
                p.get("functionResponse")
                    .filter(|_| with_results)
                    .map(|r| r["response"].to_string())
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn prompt(request: &Value) -> Prompt {
    let contents = request["contents"].as_array().cloned().unwrap_or_default();
    let mut texts = vec![parts_text(&request["systemInstruction"]["parts"], true)];
    texts.extend(contents.iter().map(|c| parts_text(&c["parts"], true)));
    let last_user = contents
        .iter()
        .rev()
        .find(|c| c["role"] == "user")
        .map(|c| parts_text(&c["parts"], false))
        .unwrap_or_default();
    let mode = &request["toolConfig"]["functionCallingConfig"]["mode"];
    Prompt {
        texts,
        last_user,
        tool: request["tools"][0]["functionDeclarations"][0]["name"]
            .as_str()
            .filter(|_| mode != "NONE")
            .map(String::from),
        max_tokens: request["generationConfig"]["maxOutputTokens"].as_u64(),
    }
}

pub struct Gemini;

impl Speaker for Gemini {
    fn error(status: StatusCode, message: &str) -> Value {
        let name = match status.as_u16() {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            _ => "INTERNAL",
        };
        json!({"error": {"code": status.as_u16(), "message": message, "status": name}})
    }

    fn completion(answer: &Answer, model: &str, faults: &Faults) -> Value {
        let parts = match &answer.tool_call {
            Some(_) => vec![function_call(answer)],
            None => vec![json!({"text": answer.text()})],
        };
        response(model, parts, Some(answer.finish), answer.tokens, faults)
    }

    fn stream(answer: Answer, model: String, faults: &Faults, _request: &Value) -> Box<dyn Plan> {
        Box::new(StreamPlan {
            answer,
            model,
            no_usage: faults.no_usage,
        })
    }

    fn reported(
        tokens: Tokens,
        faults: &Faults,
        _stream: bool,
        _request: &Value,
    ) -> Option<Tokens> {
        (!faults.no_usage).then_some(Tokens {
            cache_write_tokens: 0,
            ..tokens
        })
    }
}

fn function_call(answer: &Answer) -> Value {
    let (name, _) = answer.tool_call.as_ref().expect("a tool answer");
    let args: Value =
        serde_json::from_str(&answer.arguments().unwrap_or_default()).unwrap_or_else(|_| json!({}));
    json!({"functionCall": {"name": name, "args": args}})
}

fn response(
    model: &str,
    parts: Vec<Value>,
    finish: Option<Finish>,
    tokens: Tokens,
    faults: &Faults,
) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(finish) = finish {
        candidate["finishReason"] = json!(match finish {
            Finish::Length => "MAX_TOKENS",
            Finish::Stop | Finish::ToolUse => "STOP",
        });
    }
    let mut response =
        json!({"candidates": [candidate], "modelVersion": model, "responseId": "demo-response"});
    if !faults.no_usage {
        response["usageMetadata"] = usage(tokens);
    }
    response
}

/// Thoughts are counted apart from the candidates; cached within prompt.
fn usage(tokens: Tokens) -> Value {
    let candidates = tokens.completion_tokens - tokens.reasoning_tokens;
    let mut usage = json!({
        "promptTokenCount": tokens.prompt_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": tokens.prompt_tokens + tokens.completion_tokens,
    });
    if tokens.cached_tokens > 0 {
        usage["cachedContentTokenCount"] = json!(tokens.cached_tokens);
    }
    if tokens.reasoning_tokens > 0 {
        usage["thoughtsTokenCount"] = json!(tokens.reasoning_tokens);
    }
    usage
}

struct StreamPlan {
    answer: Answer,
    model: String,
    no_usage: bool,
}

impl Plan for StreamPlan {
    /// One chunk per word with the running usage, the last one finishing;
    /// a tool call comes whole, in one finishing chunk. No `[DONE]`.
    fn event(&self, position: usize) -> Option<Bytes> {
        let faults = Faults {
            no_usage: self.no_usage,
            ..Faults::default()
        };
        let value = match &self.answer.tool_call {
            Some(_) if position == 0 => response(
                &self.model,
                vec![function_call(&self.answer)],
                Some(self.answer.finish),
                self.answer.tokens,
                &faults,
            ),
            Some(_) => return None,
            None => {
                let word = self.answer.words.get(position)?;
                let last = position + 1 == self.answer.words.len();
                let so_far = Tokens {
                    completion_tokens: if last {
                        self.answer.tokens.completion_tokens
                    } else {
                        position as u64 + 1
                    },
                    reasoning_tokens: if last {
                        self.answer.tokens.reasoning_tokens
                    } else {
                        0
                    },
                    ..self.answer.tokens
                };
                let finish = last.then_some(self.answer.finish);
                response(
                    &self.model,
                    vec![json!({"text": word})],
                    finish,
                    so_far,
                    &faults,
                )
            }
        };
        Some(Bytes::from(format!("data: {value}\n\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_running_usage_and_finishes_on_the_last_chunk() {
        let request = json!({"contents": [{"role": "user", "parts": [{"text": "ping"}]}],
            "generationConfig": {"maxOutputTokens": 3}});
        let faults = Faults::from_model("gemini-demo.reasoning-5");
        let answer = Answer::new(&prompt(&request), &faults);
        let plan = Gemini::stream(answer, "gemini-demo".into(), &faults, &request);
        let chunks: Vec<Value> = (0..)
            .map_while(|p| plan.event(p))
            .map(|b| serde_json::from_slice(&b[6..]).unwrap())
            .collect();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1]["usageMetadata"]["candidatesTokenCount"], 2);
        let last = &chunks[2];
        assert_eq!(last["candidates"][0]["finishReason"], "MAX_TOKENS");
        assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 3);
        assert_eq!(last["usageMetadata"]["thoughtsTokenCount"], 5);
    }
}
