//! Canonical OpenAI SSE → Gemini's stream, for a Gemini client.
//!
//! Text and reasoning go out as they come. Tool calls arrive as argument
//! fragments but Gemini sends each call whole, so fragments are gathered and
//! the calls go out complete with their choice's finish reason. OpenAI
//! reports usage in a chunk after the finish while Gemini puts it on the
//! last chunk, so the finishing chunk is held back until the usage (or the
//! end) comes. There is no `[DONE]`: a Gemini stream ends when it closes.

use crate::client::response::text_parts;
use crate::errors;
use crate::request::function_call_part;
use crate::wire::{Candidate, Content, Part, Response};
use crate::{finish, invalid_response, to_json, usage};
use serde_json::Value;
use sluice_sdk::canonical::chat::{ChatChunk, ErrorDetail, ToolCallDelta};
use sluice_sdk::sse::{SseDecoder, write_event};
use sluice_sdk::{PluginError, StreamEnd, StreamTranslator, Usage};
use std::collections::BTreeMap;
use std::convert::Infallible;

#[derive(Default)]
pub struct FromCanonical {
    decoder: SseDecoder,
    translation: Translation,
}

impl StreamTranslator for FromCanonical {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, PluginError> {
        let translation = &mut self.translation;
        self.decoder
            .translate(chunk, |event, out| translation.event(event.data, out))
    }

    fn finish(&mut self) -> Result<StreamEnd, PluginError> {
        let translation = &mut self.translation;
        let Ok(mut out) = self.decoder.translate_rest(|event, out| {
            // An event never closed by a blank line was cut off, maybe
            // inside its JSON: one that does not read goes with the cut.
            let _ = translation.event(event.data, out);
            Ok::<(), Infallible>(())
        });
        translation.flush(&mut out);
        Ok(StreamEnd {
            tail: out,
            used: translation.used,
            complete: translation.complete,
        })
    }
}

#[derive(Default)]
struct Translation {
    /// The canonical stream's id and model, from its first chunk.
    id: String,
    model: String,
    /// Tool calls being gathered, by choice and call index.
    calls: BTreeMap<(u32, u32), GatheredCall>,
    /// The chunk that finished a choice, waiting for the usage.
    held: Option<Response>,
    /// Usage not yet written to any chunk.
    unsent_usage: Option<Usage>,
    used: Option<Usage>,
    /// `[DONE]` or a finished choice was seen.
    complete: bool,
}

#[derive(Default)]
struct GatheredCall {
    id: String,
    name: String,
    arguments: String,
}

impl Translation {
    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), PluginError> {
        if data == b"[DONE]" {
            self.complete = true;
            self.flush(out);
            return Ok(());
        }
        let event: Value = serde_json::from_slice(data)
            .map_err(|e| invalid_response(format!("canonical stream chunk: {e}")))?;
        if let Some(error) = event.get("error") {
            self.flush(out);
            let detail =
                serde_json::from_value::<ErrorDetail>(error.clone()).unwrap_or_else(|_| {
                    ErrorDetail {
                        message: error.as_str().unwrap_or("upstream error").into(),
                        ..ErrorDetail::default()
                    }
                });
            write_event(out, None, &to_json(&errors::gemini_error_for(&detail)));
            return Ok(());
        }
        let chunk: ChatChunk = serde_json::from_value(event)
            .map_err(|e| invalid_response(format!("canonical stream chunk: {e}")))?;
        if self.id.is_empty() {
            self.id = chunk.id;
            self.model = chunk.model;
        }
        let mut candidates = Vec::new();
        for choice in chunk.choices {
            let delta = choice.delta;
            let mut parts = text_parts(delta.reasoning_content, delta.content);
            for fragment in delta.tool_calls.unwrap_or_default() {
                self.gather(choice.index, fragment);
            }
            let finish_reason = choice.finish_reason.as_deref().map(finish::from_canonical);
            if finish_reason.is_some() {
                self.complete = true;
                parts.extend(self.take_calls(choice.index));
                if parts.is_empty() {
                    // As Gemini's own last chunk: clients read `parts[0]`.
                    parts.push(Part::text(""));
                }
            }
            if !parts.is_empty() {
                candidates.push(Candidate {
                    content: Some(Content::model(parts)),
                    finish_reason: finish_reason.map(Into::into),
                    index: Some(choice.index),
                });
            }
        }
        if !candidates.is_empty() {
            self.release(out);
            let finishing = candidates.iter().any(|c| c.finish_reason.is_some());
            let response = self.response(candidates);
            if finishing {
                self.held = Some(response);
            } else {
                write_event(out, None, &to_json(&response));
            }
        }
        if let Some(reported) = &chunk.usage {
            let used = Usage::from(reported);
            self.used = Some(used);
            self.unsent_usage = Some(used);
            if self.held.is_some() {
                self.release(out);
            }
        }
        Ok(())
    }

    fn gather(&mut self, choice: u32, fragment: ToolCallDelta) {
        let call = self.calls.entry((choice, fragment.index)).or_default();
        if let Some(id) = fragment.id.filter(|id| !id.is_empty()) {
            call.id = id;
        }
        if let Some(function) = fragment.function {
            // Some servers repeat the whole name on every fragment.
            if let Some(name) = function.name.filter(|name| !name.is_empty()) {
                call.name = name;
            }
            if let Some(arguments) = function.arguments {
                call.arguments.push_str(&arguments);
            }
        }
    }

    fn take_calls(&mut self, choice: u32) -> Vec<Part> {
        let (done, open): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.calls)
            .into_iter()
            .partition(|((of_choice, _), _)| *of_choice == choice);
        self.calls = open;
        done.into_values()
            .map(|call| function_call_part(&call.id, call.name, &call.arguments))
            .collect()
    }

    fn response(&self, candidates: Vec<Candidate>) -> Response {
        Response {
            candidates,
            model_version: (!self.model.is_empty()).then(|| self.model.clone()),
            response_id: (!self.id.is_empty()).then(|| self.id.clone()),
            ..Response::default()
        }
    }

    /// Writes the held finishing chunk, with the usage if it has come.
    fn release(&mut self, out: &mut Vec<u8>) {
        if let Some(mut held) = self.held.take() {
            held.usage_metadata = self.unsent_usage.take().as_ref().map(usage::to_metadata);
            write_event(out, None, &to_json(&held));
        }
    }

    /// Writes whatever is waiting: the held chunk, and usage no chunk took.
    /// Calls never finished are dropped: their arguments may be cut short.
    fn flush(&mut self, out: &mut Vec<u8>) {
        self.release(out);
        if let Some(used) = self.unsent_usage.take() {
            let mut last = self.response(vec![]);
            last.usage_metadata = Some(usage::to_metadata(&used));
            write_event(out, None, &to_json(&last));
        }
    }
}
