//! Gemini response → canonical (OpenAI Chat) response.

use crate::ids::IdMinter;
use crate::wire::{Candidate, FunctionCall, Part, Response};
use crate::{finish, read_response, to_json, usage};
use sluice_sdk::canonical::chat::{
    ChatCompletion, Choice, Content, FunctionCall as CallText, Message, ToolCall,
};
use sluice_sdk::{PluginError, Usage};

/// The id of an answer when Gemini sent no `responseId`.
pub const FALLBACK_ID: &str = "gemini-response";

pub fn to_canonical(body: &[u8]) -> Result<Vec<u8>, PluginError> {
    let response: Response = read_response(body)?;
    let id = response
        .response_id
        .clone()
        .unwrap_or_else(|| FALLBACK_ID.into());
    let mut minter = IdMinter::new(&id);
    let mut choices: Vec<Choice> = response
        .candidates
        .iter()
        .enumerate()
        .map(|(position, candidate)| choice(candidate, position, &mut minter))
        .collect();
    if response.prompt_blocked() {
        choices.push(blocked_prompt());
    }
    let completion = ChatCompletion {
        id,
        object: "chat.completion".into(),
        // Plugins have no clock; the host may stamp the time.
        created: 0,
        model: response.model_version.unwrap_or_default(),
        choices,
        usage: response
            .usage_metadata
            .as_ref()
            .map(|metadata| (&usage::to_usage(metadata)).into()),
        extra: Default::default(),
    };
    Ok(to_json(&completion))
}

pub fn usage(body: &[u8]) -> Result<Option<Usage>, PluginError> {
    let response: Response = read_response(body)?;
    Ok(response.usage_metadata.as_ref().map(usage::to_usage))
}

/// What a part of a candidate means in canonical terms. Parts with no
/// canonical counterpart (generated images, executed code) are skipped.
pub enum Piece<'a> {
    Text(&'a str),
    Thought(&'a str),
    Call(ToolCall),
}

pub fn piece<'a>(part: &'a Part, minter: &mut IdMinter) -> Option<Piece<'a>> {
    if let Some(call) = &part.function_call {
        return Some(Piece::Call(tool_call(
            call,
            part.thought_signature.as_deref(),
            minter,
        )));
    }
    // Gemini ends some answers with an empty text part that only carries a
    // signature.
    let text = part.text.as_deref().filter(|text| !text.is_empty())?;
    Some(if part.is_thought() {
        Piece::Thought(text)
    } else {
        Piece::Text(text)
    })
}

/// A `functionCall` as a canonical tool call: arguments as compact JSON, the
/// id minted to carry Gemini's id and the part's signature.
pub fn tool_call(call: &FunctionCall, signature: Option<&str>, minter: &mut IdMinter) -> ToolCall {
    ToolCall {
        id: minter.next_id(call, signature),
        kind: "function".into(),
        function: CallText {
            name: call.name.clone(),
            arguments: match &call.args {
                Some(args) if !args.is_null() => args.to_string(),
                _ => "{}".into(),
            },
        },
    }
}

fn choice(candidate: &Candidate, position: usize, minter: &mut IdMinter) -> Choice {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for part in candidate.parts() {
        match piece(part, minter) {
            Some(Piece::Text(piece)) => text.push_str(piece),
            Some(Piece::Thought(piece)) => reasoning.push_str(piece),
            Some(Piece::Call(call)) => tool_calls.push(call),
            None => {}
        }
    }
    let finish_reason = candidate
        .finish_reason
        .as_deref()
        .map(|reason| finish::to_canonical(reason, !tool_calls.is_empty()).into());
    Choice {
        index: candidate
            .index
            .unwrap_or(u32::try_from(position).unwrap_or(u32::MAX)),
        message: Message {
            role: "assistant".into(),
            // OpenAI leaves content out (null) beside tool calls, "" otherwise.
            content: (!text.is_empty() || tool_calls.is_empty()).then_some(Content::Text(text)),
            reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
            tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
            ..Message::default()
        },
        finish_reason,
        logprobs: None,
    }
}

/// Gemini answers a blocked prompt with no candidate at all; OpenAI clients
/// expect a choice, so they get an empty one, filtered.
fn blocked_prompt() -> Choice {
    Choice {
        index: 0,
        message: Message {
            role: "assistant".into(),
            content: Some(Content::Text(String::new())),
            ..Message::default()
        },
        finish_reason: Some(finish::CONTENT_FILTER.into()),
        logprobs: None,
    }
}
