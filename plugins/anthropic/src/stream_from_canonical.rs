//! Canonical chunks → an Anthropic Messages stream, for Anthropic clients.
//!
//! Anthropic's stream is a sequence of blocks, each opened, filled and
//! closed before the next, numbered 0, 1, 2…; SDKs look blocks up by that
//! number. OpenAI's has one choice whose text and tool calls arrive as
//! fragments, with usage in a chunk of its own after the finish.

use crate::errors::anthropic_error;
use crate::usage::{AnthropicUsage, NO_USAGE};
use crate::{ids, json_bytes, stop_reason};
use serde::Serialize;
use serde_json::{Value, json};
use sluice_sdk::canonical::chat::{ChatChunk, ErrorBody, ErrorDetail, ToolCallDelta};
use sluice_sdk::sse::{SseDecoder, SseEvent, write_event};
use sluice_sdk::{PluginError, StreamEnd, StreamTranslator, Usage};
use std::collections::HashSet;
use std::convert::Infallible;

#[derive(Default)]
pub struct FromCanonical {
    decoder: SseDecoder,
    state: State,
}

impl FromCanonical {
    pub fn new() -> Self {
        FromCanonical::default()
    }
}

#[derive(Default)]
struct State {
    started: bool,
    next_block: u32,
    open: Option<OpenBlock>,
    /// Tool calls (by OpenAI index) whose block has opened.
    calls: HashSet<u32>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    done: bool,
    ended: bool,
    failed: bool,
}

#[derive(Clone, Copy)]
enum OpenBlock {
    Text { block: u32 },
    ToolCall { block: u32, call: u32 },
}

impl OpenBlock {
    fn block(self) -> u32 {
        match self {
            OpenBlock::Text { block } | OpenBlock::ToolCall { block, .. } => block,
        }
    }
}

impl State {
    fn event(&mut self, event: SseEvent<'_>, out: &mut Vec<u8>) -> Result<(), Infallible> {
        if self.ended || self.failed {
            return Ok(());
        }
        if event.data == b"[DONE]" {
            self.done = true;
            self.end(out);
            return Ok(());
        }
        // A chunk this cannot read is skipped rather than failing the answer.
        let Ok(chunk) = serde_json::from_slice::<ChatChunk>(event.data) else {
            return Ok(());
        };
        if let Some(error) = chunk.extra.get("error").filter(|e| !e.is_null()) {
            self.fail(error_detail(error), out);
            return Ok(());
        }
        self.start(&chunk.id, &chunk.model, out);
        if let Some(usage) = &chunk.usage {
            self.usage = Some(Usage::from(usage));
        }
        // Anthropic answers have one choice; Sluice asks for no more.
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            let delta = choice.delta;
            for text in [delta.content, delta.refusal].into_iter().flatten() {
                self.text(text, out);
            }
            for call in delta.tool_calls.into_iter().flatten() {
                self.tool_call(call, out);
            }
            if let Some(reason) = choice.finish_reason {
                self.close_block(out);
                self.finish_reason = Some(reason);
            }
        }
        Ok(())
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        emit(
            out,
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": ids::message_id(id),
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
            }),
        );
    }

    fn text(&mut self, text: String, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        let block = match self.open {
            Some(OpenBlock::Text { block }) => block,
            _ => self.open_block(
                |block| OpenBlock::Text { block },
                json!({"type": "text", "text": ""}),
                out,
            ),
        };
        emit_delta(out, block, json!({"type": "text_delta", "text": text}));
    }

    /// A tool-call fragment. A fragment of a call whose block already closed
    /// cannot be sent, since Anthropic blocks do not interleave; OpenAI
    /// sends each call's fragments together.
    fn tool_call(&mut self, call: ToolCallDelta, out: &mut Vec<u8>) {
        let index = call.index;
        let (name, arguments) = call
            .function
            .map(|f| (f.name, f.arguments))
            .unwrap_or_default();
        let block = match self.open {
            Some(OpenBlock::ToolCall { block, call }) if call == index => block,
            _ if self.calls.contains(&index) => return,
            _ => {
                self.calls.insert(index);
                let id = call.id.unwrap_or_default();
                self.open_block(
                    |block| OpenBlock::ToolCall { block, call: index },
                    json!({
                        "type": "tool_use",
                        "id": ids::tool_id(&id),
                        "name": name.unwrap_or_default(),
                        "input": {},
                    }),
                    out,
                )
            }
        };
        if let Some(partial_json) = arguments.filter(|a| !a.is_empty()) {
            emit_delta(
                out,
                block,
                json!({"type": "input_json_delta", "partial_json": partial_json}),
            );
        }
    }

    fn open_block(
        &mut self,
        open: impl FnOnce(u32) -> OpenBlock,
        content_block: Value,
        out: &mut Vec<u8>,
    ) -> u32 {
        self.close_block(out);
        let block = self.next_block;
        self.next_block += 1;
        self.open = Some(open(block));
        emit(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": block, "content_block": content_block}),
        );
        block
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some(open) = self.open.take() {
            emit(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": open.block()}),
            );
        }
    }

    /// The answer's last events, once its usage is known: OpenAI sends the
    /// usage after the finish, so the finish alone does not end it.
    fn end(&mut self, out: &mut Vec<u8>) {
        self.start("", "", out);
        self.close_block(out);
        self.ended = true;
        let stop_reason =
            stop_reason::from_finish_reason(self.finish_reason.as_deref().unwrap_or("stop"));
        let usage = AnthropicUsage::from_canonical(self.usage.as_ref().unwrap_or(&NO_USAGE));
        emit(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": usage,
            }),
        );
        emit(out, "message_stop", &json!({"type": "message_stop"}));
    }

    /// An error ends the answer; Anthropic clients raise it as they read it.
    fn fail(&mut self, detail: ErrorDetail, out: &mut Vec<u8>) {
        self.failed = true;
        let (_, body) = anthropic_error(None, &detail);
        emit(out, "error", &body);
    }

    fn complete(&self) -> bool {
        (self.done || self.finish_reason.is_some()) && !self.failed
    }
}

/// A mid-stream error's detail: OpenAI's object, or whatever stands there.
fn error_detail(error: &Value) -> ErrorDetail {
    serde_json::from_value::<ErrorBody>(json!({ "error": error }))
        .map(|body| body.error)
        .unwrap_or_else(|_| ErrorDetail {
            message: match error {
                Value::String(message) => message.clone(),
                other => other.to_string(),
            },
            ..ErrorDetail::default()
        })
}

fn emit(out: &mut Vec<u8>, event: &str, data: &impl Serialize) {
    write_event(out, Some(event), &json_bytes(data));
}

fn emit_delta(out: &mut Vec<u8>, block: u32, delta: Value) {
    emit(
        out,
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": block, "delta": delta}),
    );
}

impl StreamTranslator for FromCanonical {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, PluginError> {
        let state = &mut self.state;
        let Ok(out) = self
            .decoder
            .translate(chunk, |event, out| state.event(event, out));
        Ok(out)
    }

    fn finish(&mut self) -> Result<StreamEnd, PluginError> {
        let state = &mut self.state;
        let Ok(mut tail) = self
            .decoder
            .translate_rest(|event, out| state.event(event, out));
        if !state.ended && !state.failed {
            if state.finish_reason.is_some() {
                // A lenient server closed without `[DONE]` after finishing.
                state.end(&mut tail);
            } else {
                // Cut off: ending the message normally would pass a partial
                // answer off as whole.
                let detail = ErrorDetail {
                    message: "the upstream stream ended before the answer was complete".into(),
                    kind: "server_error".into(),
                    ..ErrorDetail::default()
                };
                state.fail(detail, &mut tail);
            }
        }
        Ok(StreamEnd {
            tail,
            used: self.state.usage,
            complete: self.state.complete(),
        })
    }
}
