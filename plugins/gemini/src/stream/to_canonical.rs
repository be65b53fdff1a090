//! Gemini's stream (`streamGenerateContent?alt=sse`) → canonical OpenAI SSE.
//!
//! Each Gemini chunk is a partial response whose text parts are deltas and
//! whose `functionCall` parts are whole calls. Each becomes a canonical
//! chunk: a call becomes one complete tool-call delta under a new `index`,
//! since parallel calls arrive one per chunk and a client keys calls by index.
//! Usage waits for the end, where the last `usageMetadata` is the real one.

use super::tally::Tally;
use crate::errors;
use crate::ids::IdMinter;
use crate::response::{FALLBACK_ID, Piece, piece};
use crate::wire::Response;
use crate::{finish, invalid_response, to_json};
use sluice_sdk::canonical::chat::{
    ChatChunk, ChunkChoice, Delta, FunctionDelta, ToolCallDelta, UsageJson,
};
use sluice_sdk::sse::{SseDecoder, write_event};
use sluice_sdk::{PluginError, StreamEnd, StreamTranslator};
use std::collections::BTreeMap;
use std::convert::Infallible;

#[derive(Default)]
pub struct ToCanonical {
    decoder: SseDecoder,
    translation: Translation,
}

impl StreamTranslator for ToCanonical {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, PluginError> {
        let translation = &mut self.translation;
        self.decoder
            .translate(chunk, |event, out| translation.chunk(event.data, out))
    }

    fn finish(&mut self) -> Result<StreamEnd, PluginError> {
        let translation = &mut self.translation;
        let Ok(mut out) = self.decoder.translate_rest(|event, out| {
            // An event never closed by a blank line was cut off, maybe
            // inside its JSON: one that does not read goes with the cut.
            let _ = translation.chunk(event.data, out);
            Ok::<(), Infallible>(())
        });
        translation.end(&mut out);
        Ok(translation.tally.end(out))
    }
}

#[derive(Default)]
struct Translation {
    tally: Tally,
    /// Fixed by the first chunk: every canonical chunk shares them.
    identity: Option<Identity>,
    /// By candidate index (the choice's index).
    choices: BTreeMap<u32, ChoiceState>,
}

struct Identity {
    id: String,
    model: String,
    minter: IdMinter,
}

#[derive(Default)]
struct ChoiceState {
    tool_calls: u32,
    finished: bool,
}

impl Translation {
    fn chunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), PluginError> {
        let chunk: Response = serde_json::from_slice(data)
            .map_err(|e| invalid_response(format!("Gemini stream chunk: {e}")))?;
        if let Some(error) = &chunk.error {
            write_event(
                out,
                None,
                &to_json(&errors::stream_error_to_canonical(error)),
            );
            return Ok(());
        }
        self.tally.record(&chunk);
        let identity = self.identity.get_or_insert_with(|| {
            let id = chunk
                .response_id
                .clone()
                .unwrap_or_else(|| FALLBACK_ID.into());
            Identity {
                minter: IdMinter::new(&id),
                id,
                model: chunk.model_version.clone().unwrap_or_default(),
            }
        });
        for (position, candidate) in chunk.candidates.iter().enumerate() {
            let index = candidate
                .index
                .unwrap_or(u32::try_from(position).unwrap_or(u32::MAX));
            let state = opened(&mut self.choices, index, identity, out);
            for part in candidate.parts() {
                let delta = match piece(part, &mut identity.minter) {
                    Some(Piece::Text(text)) => Delta {
                        content: Some(text.into()),
                        ..Delta::default()
                    },
                    Some(Piece::Thought(text)) => Delta {
                        reasoning_content: Some(text.into()),
                        ..Delta::default()
                    },
                    Some(Piece::Call(call)) => {
                        let delta = ToolCallDelta {
                            index: state.tool_calls,
                            id: Some(call.id),
                            kind: Some(call.kind),
                            function: Some(FunctionDelta {
                                name: Some(call.function.name),
                                arguments: Some(call.function.arguments),
                            }),
                        };
                        state.tool_calls += 1;
                        Delta {
                            tool_calls: Some(vec![delta]),
                            ..Delta::default()
                        }
                    }
                    None => continue,
                };
                identity.write(out, vec![choice(index, delta, None)], None);
            }
            if let Some(reason) = candidate.finish_reason.as_deref()
                && !state.finished
            {
                state.finished = true;
                let reason = finish::to_canonical(reason, state.tool_calls > 0);
                identity.write(
                    out,
                    vec![choice(index, Delta::default(), Some(reason))],
                    None,
                );
            }
        }
        if chunk.prompt_blocked() {
            let state = opened(&mut self.choices, 0, identity, out);
            if !state.finished {
                state.finished = true;
                let filtered = choice(0, Delta::default(), Some(finish::CONTENT_FILTER));
                identity.write(out, vec![filtered], None);
            }
        }
        Ok(())
    }

    /// A finished stream ends as OpenAI's does: the usage chunk, then
    /// `[DONE]`. A cut one just stops, as its upstream did.
    fn end(&self, out: &mut Vec<u8>) {
        if !self.tally.finished() {
            return;
        }
        if let (Some(identity), Some(used)) = (&self.identity, self.tally.used()) {
            identity.write(out, vec![], Some((&used).into()));
        }
        write_event(out, None, b"[DONE]");
    }
}

/// The state of choice `index`, announcing the choice (OpenAI's first delta
/// names the role) the first time it appears.
fn opened<'a>(
    choices: &'a mut BTreeMap<u32, ChoiceState>,
    index: u32,
    identity: &Identity,
    out: &mut Vec<u8>,
) -> &'a mut ChoiceState {
    choices.entry(index).or_insert_with(|| {
        let role = Delta {
            role: Some("assistant".into()),
            content: Some(String::new()),
            ..Delta::default()
        };
        identity.write(out, vec![choice(index, role, None)], None);
        ChoiceState::default()
    })
}

fn choice(index: u32, delta: Delta, finish_reason: Option<&str>) -> ChunkChoice {
    ChunkChoice {
        index,
        delta,
        finish_reason: finish_reason.map(Into::into),
    }
}

impl Identity {
    fn write(&self, out: &mut Vec<u8>, choices: Vec<ChunkChoice>, usage: Option<UsageJson>) {
        let chunk = ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: 0,
            model: self.model.clone(),
            choices,
            usage,
            extra: Default::default(),
        };
        write_event(out, None, &to_json(&chunk));
    }
}
