//! An Anthropic Messages stream → canonical chunks, or (observing) only the
//! usage and completeness of one.

use crate::errors::{AnthropicErrorBody, canonical_error};
use crate::usage::{AnthropicUsage, canonical_usage};
use crate::wire::{Block, Message};
use crate::{json_bytes, stop_reason};
use serde::Deserialize;
use sluice_sdk::canonical::chat::{ChatChunk, ChunkChoice, Delta, FunctionDelta, ToolCallDelta};
use sluice_sdk::sse::{SseDecoder, SseEvent, write_event};
use sluice_sdk::{PluginError, StreamEnd, StreamTranslator};
use std::collections::HashMap;
use std::convert::Infallible;

pub struct ToCanonical {
    decoder: SseDecoder,
    state: State,
}

impl ToCanonical {
    pub fn new() -> Self {
        ToCanonical::with_output(true)
    }

    /// Reads usage and completeness only, writing nothing.
    pub fn observing() -> Self {
        ToCanonical::with_output(false)
    }

    fn with_output(writes: bool) -> Self {
        ToCanonical {
            decoder: SseDecoder::new(),
            state: State {
                writes,
                ..State::default()
            },
        }
    }
}

#[derive(Default)]
struct State {
    writes: bool,
    id: String,
    model: String,
    /// Anthropic block index → OpenAI tool-call index. OpenAI numbers the
    /// calls alone, Anthropic every block.
    tool_calls: HashMap<u32, u32>,
    usage: Option<AnthropicUsage>,
    finished: bool,
    stopped: bool,
    failed: bool,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: Message,
    },
    ContentBlockStart {
        index: u32,
        content_block: Block,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDelta,
        #[serde(default)]
        usage: Option<AnthropicUsage>,
    },
    MessageStop,
    Error {},
    /// `ping`, `content_block_stop` and any event type added later.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    /// `signature_delta`, `citations_delta`…
    #[serde(other)]
    Other,
}

#[derive(Default, Deserialize)]
struct MessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

impl State {
    fn event(&mut self, event: SseEvent<'_>, out: &mut Vec<u8>) -> Result<(), Infallible> {
        if self.stopped || self.failed {
            return Ok(());
        }
        // Anthropic may add event types and fields; an event this cannot
        // read is skipped rather than failing the whole answer, unless it
        // says it is an error.
        let parsed = match serde_json::from_slice::<Event>(event.data) {
            Ok(parsed) => parsed,
            Err(_) if event.event == "error" => Event::Error {},
            Err(_) => return Ok(()),
        };
        match parsed {
            Event::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.usage = message.usage;
                self.chunk(
                    out,
                    Delta {
                        role: Some("assistant".into()),
                        content: Some(String::new()),
                        ..Delta::default()
                    },
                    None,
                );
            }
            Event::ContentBlockStart {
                index,
                content_block,
            } => self.block_start(index, content_block, out),
            Event::ContentBlockDelta { index, delta } => self.block_delta(index, delta, out),
            Event::MessageDelta { delta, usage } => {
                if let Some(usage) = usage {
                    self.usage.get_or_insert_default().update(&usage);
                }
                // A choice finishes once; later message_delta events only
                // bring newer usage.
                if let Some(reason) = delta.stop_reason
                    && !self.finished
                {
                    self.finished = true;
                    let finish_reason = stop_reason::to_finish_reason(&reason);
                    self.chunk(out, Delta::default(), Some(finish_reason.into()));
                }
            }
            Event::MessageStop => {
                self.stopped = true;
                if self.writes {
                    if let Some(usage) = &self.usage {
                        let chunk = ChatChunk {
                            usage: Some(canonical_usage(&usage.to_usage())),
                            ..self.empty_chunk()
                        };
                        write_event(out, None, &json_bytes(&chunk));
                    }
                    write_event(out, None, b"[DONE]");
                }
            }
            Event::Error {} => self.fail(event.data, out),
            Event::Other => {}
        }
        Ok(())
    }

    fn block_start(&mut self, index: u32, block: Block, out: &mut Vec<u8>) {
        match block {
            Block::Text { text } => self.text(text, out),
            Block::Thinking { thinking } => self.thinking(thinking, out),
            Block::ToolUse { id, name, input } => {
                let call = self.tool_calls.len() as u32;
                self.tool_calls.insert(index, call);
                // Anthropic starts with `{}` and streams the input; some
                // compatible servers send it whole here instead.
                let arguments = match input.as_object() {
                    Some(object) if object.is_empty() => String::new(),
                    _ => input.to_string(),
                };
                self.tool_call(
                    out,
                    ToolCallDelta {
                        index: call,
                        id: Some(id),
                        kind: Some("function".into()),
                        function: Some(FunctionDelta {
                            name: Some(name),
                            arguments: Some(arguments),
                        }),
                    },
                );
            }
            _ => {}
        }
    }

    fn block_delta(&mut self, index: u32, delta: BlockDelta, out: &mut Vec<u8>) {
        match delta {
            BlockDelta::TextDelta { text } => self.text(text, out),
            BlockDelta::ThinkingDelta { thinking } => self.thinking(thinking, out),
            BlockDelta::InputJsonDelta { partial_json } => {
                // Server tools stream their input too, under blocks that are
                // not tool calls; Anthropic opens each input with "".
                if let Some(&call) = self.tool_calls.get(&index)
                    && !partial_json.is_empty()
                {
                    self.tool_call(
                        out,
                        ToolCallDelta {
                            index: call,
                            function: Some(FunctionDelta {
                                name: None,
                                arguments: Some(partial_json),
                            }),
                            ..ToolCallDelta::default()
                        },
                    );
                }
            }
            BlockDelta::Other => {}
        }
    }

    fn text(&self, text: String, out: &mut Vec<u8>) {
        if !text.is_empty() {
            let delta = Delta {
                content: Some(text),
                ..Delta::default()
            };
            self.chunk(out, delta, None);
        }
    }

    fn thinking(&self, thinking: String, out: &mut Vec<u8>) {
        if !thinking.is_empty() {
            let delta = Delta {
                reasoning_content: Some(thinking),
                ..Delta::default()
            };
            self.chunk(out, delta, None);
        }
    }

    fn tool_call(&self, out: &mut Vec<u8>, call: ToolCallDelta) {
        let delta = Delta {
            tool_calls: Some(vec![call]),
            ..Delta::default()
        };
        self.chunk(out, delta, None);
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: Delta, finish_reason: Option<String>) {
        if self.writes {
            let chunk = ChatChunk {
                choices: vec![ChunkChoice {
                    index: 0,
                    delta,
                    finish_reason,
                }],
                ..self.empty_chunk()
            };
            write_event(out, None, &json_bytes(&chunk));
        }
    }

    fn empty_chunk(&self) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: 0,
            model: self.model.clone(),
            ..ChatChunk::default()
        }
    }

    /// An error event ends the answer: it goes on as OpenAI's mid-stream
    /// error, and nothing after it counts.
    fn fail(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.failed = true;
        if self.writes {
            let (kind, message) = match serde_json::from_slice::<AnthropicErrorBody>(data) {
                Ok(body) => (Some(body.error.kind), body.error.message),
                Err(_) => (None, String::from_utf8_lossy(data).into_owned()),
            };
            let (_, body) = canonical_error(None, kind.as_deref(), message);
            write_event(out, None, &json_bytes(&body));
        }
    }
}

impl StreamTranslator for ToCanonical {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, PluginError> {
        let state = &mut self.state;
        let Ok(out) = self
            .decoder
            .translate(chunk, |event, out| state.event(event, out));
        Ok(out)
    }

    fn finish(&mut self) -> Result<StreamEnd, PluginError> {
        let state = &mut self.state;
        let Ok(tail) = self
            .decoder
            .translate_rest(|event, out| state.event(event, out));
        Ok(StreamEnd {
            tail,
            used: self.state.usage.as_ref().map(AnthropicUsage::to_usage),
            complete: self.state.stopped,
        })
    }
}
