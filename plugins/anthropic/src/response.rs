//! Non-stream answers: an Anthropic message ⇄ a canonical chat completion.

use crate::usage::{AnthropicUsage, NO_USAGE, canonical_usage};
use crate::wire::{Block, Message};
use crate::{ids, invalid_response, stop_reason, tool_calls};
use serde_json::Value;
use sluice_sdk::canonical::chat::{ChatCompletion, Choice, Content, Message as ChatMessage};
use sluice_sdk::{PluginError, Usage};

/// Reads an Anthropic answer body.
pub fn read(body: &[u8]) -> Result<Message, PluginError> {
    let message: Message = serde_json::from_slice(body)
        .map_err(|e| invalid_response(format!("Anthropic response: {e}")))?;
    if message.kind != "message" {
        return Err(invalid_response(format!(
            "Anthropic response: expected a message, got `{}`",
            message.kind
        )));
    }
    Ok(message)
}

pub fn to_canonical(message: Message) -> ChatCompletion {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in message.content {
        match block {
            Block::Text { text: piece } => text.push_str(&piece),
            Block::Thinking { thinking } => reasoning.push_str(&thinking),
            Block::ToolUse { id, name, input } => calls.push(tool_calls::to_call(id, name, &input)),
            _ => {}
        }
    }
    let mut answer = ChatMessage {
        role: "assistant".into(),
        reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
        ..ChatMessage::default()
    };
    if text.is_empty() && !calls.is_empty() {
        // The SDK's type leaves out a `None` content; OpenAI writes `null`.
        answer.extra.insert("content".into(), Value::Null);
    } else {
        answer.content = Some(Content::Text(text));
    }
    answer.tool_calls = (!calls.is_empty()).then_some(calls);
    ChatCompletion {
        id: message.id,
        object: "chat.completion".into(),
        created: 0,
        model: message.model,
        choices: vec![Choice {
            index: 0,
            message: answer,
            finish_reason: message
                .stop_reason
                .as_deref()
                .map(|reason| stop_reason::to_finish_reason(reason).into()),
            logprobs: None,
        }],
        usage: message
            .usage
            .as_ref()
            .map(|usage| canonical_usage(&usage.to_usage())),
        ..ChatCompletion::default()
    }
}

pub fn from_canonical(completion: ChatCompletion) -> Result<Message, PluginError> {
    let Some(choice) = completion.choices.into_iter().next() else {
        return Err(invalid_response("canonical response: no choices"));
    };
    let answer = choice.message;
    let text = answer
        .content
        .map(|content| content.text())
        .filter(|text| !text.is_empty())
        .or(answer.refusal)
        .filter(|text| !text.is_empty());
    let calls = answer
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(tool_calls::to_block);
    let content = text
        .map(|text| Block::Text { text })
        .into_iter()
        .chain(calls)
        .collect();
    let usage = completion.usage.as_ref().map_or(NO_USAGE, Usage::from);
    Ok(Message {
        id: ids::message_id(&completion.id),
        kind: "message".into(),
        role: "assistant".into(),
        model: completion.model,
        content,
        stop_reason: Some(
            stop_reason::from_finish_reason(choice.finish_reason.as_deref().unwrap_or("stop"))
                .into(),
        ),
        stop_sequence: None,
        usage: Some(AnthropicUsage::from_canonical(&usage)),
    })
}
