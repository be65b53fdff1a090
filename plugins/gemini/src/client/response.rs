//! Canonical (OpenAI Chat) response → Gemini response.

use crate::request::function_call_part;
use crate::wire::{Candidate, Content, Part, Response};
use crate::{finish, read_response, to_json, usage};
use sluice_sdk::canonical::chat::{ChatCompletion, Choice};
use sluice_sdk::{PluginError, Usage};

pub fn from_canonical(body: &[u8]) -> Result<Vec<u8>, PluginError> {
    let completion: ChatCompletion = read_response(body)?;
    let response = Response {
        candidates: completion.choices.into_iter().map(candidate).collect(),
        usage_metadata: completion
            .usage
            .as_ref()
            .map(|reported| usage::to_metadata(&Usage::from(reported))),
        model_version: (!completion.model.is_empty()).then_some(completion.model),
        response_id: (!completion.id.is_empty()).then_some(completion.id),
        ..Response::default()
    };
    Ok(to_json(&response))
}

fn candidate(choice: Choice) -> Candidate {
    let message = choice.message;
    let text = message
        .content
        .map(|content| content.text())
        .or(message.refusal)
        .unwrap_or_default();
    let mut parts = text_parts(message.reasoning_content, Some(text));
    parts.extend(
        message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .map(|call| function_call_part(&call.id, call.function.name, &call.function.arguments)),
    );
    Candidate {
        content: Some(Content::model(parts)),
        finish_reason: choice
            .finish_reason
            .as_deref()
            .map(|reason| finish::from_canonical(reason).into()),
        index: Some(choice.index),
    }
}

/// Reasoning as a thought part, then the text; empty ones are left out.
pub fn text_parts(reasoning: Option<String>, text: Option<String>) -> Vec<Part> {
    [reasoning.map(Part::thought), text.map(Part::text)]
        .into_iter()
        .flatten()
        .filter(|part| part.text.as_deref().is_some_and(|text| !text.is_empty()))
        .collect()
}
