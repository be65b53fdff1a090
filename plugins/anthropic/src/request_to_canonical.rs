//! An Anthropic client's Messages request → the canonical request.

use crate::wire::{
    Block, MessagesRequest, Source, SystemPrompt, Thinking, ToolChoice, ToolDef, TurnContent,
};
use crate::{invalid_request, tool_calls};
use serde_json::{Value, json};
use sluice_sdk::PluginError;
use sluice_sdk::canonical::chat::{
    self, ChatRequest, Content, FunctionDef, Message, NamedTool, Part, StreamOptions, Tool,
    ToolName,
};

pub fn translate(body: &[u8]) -> Result<ChatRequest, PluginError> {
    let request: MessagesRequest =
        serde_json::from_slice(body).map_err(|e| invalid_request(format!("request body: {e}")))?;
    let model = request.model.ok_or_else(|| missing("model"))?;
    let max_tokens = request.max_tokens.ok_or_else(|| missing("max_tokens"))?;
    let turns = request.messages.ok_or_else(|| missing("messages"))?;
    if turns.is_empty() {
        return Err(invalid_request(
            "messages: at least one message is required",
        ));
    }

    let mut messages = Vec::new();
    if let Some(system) = request.system.map(system_text).transpose()?
        && !system.is_empty()
    {
        messages.push(text_message("system", system));
    }
    for (position, turn) in turns.into_iter().enumerate() {
        let at = |e: String| invalid_request(format!("messages.{position}: {e}"));
        match turn.role.as_str() {
            "user" => user_turn(turn.content, &mut messages).map_err(at)?,
            "assistant" => messages.extend(assistant_turn(turn.content).map_err(at)?),
            other => return Err(at(format!("unexpected role `{other}`"))),
        }
    }

    let stream = request.stream == Some(true);
    let tools = request.tools.map(tools).transpose()?;
    let (tool_choice, parallel_tool_calls) =
        request.tool_choice.map(tool_choice).unwrap_or_default();
    Ok(ChatRequest {
        model,
        messages,
        stream: request.stream,
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            ..StreamOptions::default()
        }),
        max_tokens: Some(max_tokens),
        temperature: request.temperature,
        top_p: request.top_p,
        stop: request
            .stop_sequences
            .filter(|stops| !stops.is_empty())
            .map(chat::Stop::Many),
        tools,
        tool_choice,
        parallel_tool_calls,
        user: request.metadata.and_then(|m| m.user_id),
        reasoning_effort: request.thinking.and_then(reasoning_effort),
        ..ChatRequest::default()
    })
}

/// Anthropic's wording for a missing required field.
fn missing(field: &str) -> PluginError {
    invalid_request(format!("{field}: Field required"))
}

fn system_text(system: SystemPrompt) -> Result<String, PluginError> {
    match system {
        SystemPrompt::Text(text) => Ok(text),
        SystemPrompt::Blocks(blocks) => {
            let texts = blocks
                .into_iter()
                .map(|block| match block {
                    Block::Text { text } => Ok(text),
                    other => Err(invalid_request(format!(
                        "system: `{}` blocks are not supported, only text",
                        other.kind()
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(texts.join("\n\n"))
        }
    }
}

fn text_message(role: &str, text: String) -> Message {
    Message {
        role: role.into(),
        content: Some(Content::Text(text)),
        ..Message::default()
    }
}

/// A user turn: its tool results first, one `tool` message each, as OpenAI
/// wants them right after the assistant's calls; then the rest of the turn.
/// Tool results can hold images, which a `tool` message cannot: they move
/// into that following user message.
fn user_turn(content: TurnContent, messages: &mut Vec<Message>) -> Result<(), String> {
    let blocks = match content {
        TurnContent::Text(text) => {
            messages.push(text_message("user", text));
            return Ok(());
        }
        TurnContent::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    let mut result_images = Vec::new();
    for block in blocks {
        match block {
            Block::ToolResult {
                tool_use_id,
                content,
            } => {
                let mut text = Vec::new();
                for block in content.map(TurnContent::into_blocks).unwrap_or_default() {
                    match block {
                        Block::Text { text: piece } => text.push(piece),
                        Block::Image { source } => result_images.push(image_part(source)?),
                        other => return Err(unsupported("tool_result content", &other)),
                    }
                }
                messages.push(Message {
                    role: "tool".into(),
                    content: Some(Content::Text(text.join("\n"))),
                    tool_call_id: Some(tool_use_id),
                    ..Message::default()
                });
            }
            Block::Text { text } => parts.push(Part::text(text)),
            Block::Image { source } => parts.push(image_part(source)?),
            Block::Document { source } => parts.push(document_part(source)?),
            other => return Err(unsupported("user messages", &other)),
        }
    }
    let rest: Vec<Part> = result_images.into_iter().chain(parts).collect();
    if !rest.is_empty() {
        messages.push(Message {
            role: "user".into(),
            content: Some(Content::Parts(rest)),
            ..Message::default()
        });
    }
    Ok(())
}

/// An assistant turn: text and tool calls. Thinking is dropped, since its
/// signature only verifies at Anthropic. A turn left empty is skipped.
fn assistant_turn(content: TurnContent) -> Result<Option<Message>, String> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in content.into_blocks() {
        match block {
            Block::Text { text: piece } => text.push_str(&piece),
            Block::ToolUse { id, name, input } => calls.push(tool_calls::to_call(id, name, &input)),
            Block::Thinking { .. } | Block::RedactedThinking {} => {}
            other => return Err(unsupported("assistant messages", &other)),
        }
    }
    if text.is_empty() && calls.is_empty() {
        return Ok(None);
    }
    Ok(Some(Message {
        role: "assistant".into(),
        content: (!text.is_empty()).then_some(Content::Text(text)),
        tool_calls: (!calls.is_empty()).then_some(calls),
        ..Message::default()
    }))
}

fn unsupported(place: &str, block: &Block) -> String {
    format!("`{}` blocks are not supported in {place}", block.kind())
}

fn image_part(source: Source) -> Result<Part, String> {
    match source {
        Source::Base64 { media_type, data } => {
            Ok(Part::image(format!("data:{media_type};base64,{data}")))
        }
        Source::Url { url } => Ok(Part::image(url)),
        other => Err(unsupported_source("image", &other)),
    }
}

/// A document: a base64 PDF becomes OpenAI's file part, plain text a text
/// part. OpenAI wants a file name, which Anthropic documents lack.
fn document_part(source: Source) -> Result<Part, String> {
    match source {
        Source::Base64 { media_type, data } if media_type == "application/pdf" => {
            let file = json!({
                "filename": "document.pdf",
                "file_data": format!("data:{media_type};base64,{data}"),
            });
            Ok(Part {
                kind: "file".into(),
                extra: [("file".to_string(), file)].into_iter().collect(),
                ..Part::default()
            })
        }
        Source::Text { data } => Ok(Part::text(data)),
        other => Err(unsupported_source("document", &other)),
    }
}

fn unsupported_source(block: &str, source: &Source) -> String {
    let kind = match source {
        Source::Base64 { media_type, .. } => format!("base64 `{media_type}`"),
        Source::Url { .. } => "url".into(),
        Source::Text { .. } => "text".into(),
        Source::Other(value) => format!(
            "`{}`",
            value.get("type").and_then(Value::as_str).unwrap_or("?")
        ),
    };
    format!("{block} sources of type {kind} are not supported")
}

/// Custom tools become functions. Server tools run inside Anthropic's API,
/// which no canonical upstream can do.
fn tools(tools: Vec<ToolDef>) -> Result<Vec<Tool>, PluginError> {
    let server_tools: Vec<_> = tools
        .iter()
        .filter_map(|tool| tool.kind.as_deref().filter(|kind| *kind != "custom"))
        .collect();
    if !server_tools.is_empty() {
        return Err(invalid_request(format!(
            "tools: server tools are not supported on this route: {}",
            server_tools.join(", ")
        )));
    }
    Ok(tools
        .into_iter()
        .map(|tool| Tool {
            kind: "function".into(),
            function: Some(FunctionDef {
                name: tool.name,
                description: tool.description,
                parameters: tool.input_schema,
                strict: None,
            }),
            ..Tool::default()
        })
        .collect())
}

fn tool_choice(choice: ToolChoice) -> (Option<chat::ToolChoice>, Option<bool>) {
    let (choice, disable_parallel) = match choice {
        ToolChoice::Auto {
            disable_parallel_tool_use,
        } => (mode("auto"), disable_parallel_tool_use),
        ToolChoice::Any {
            disable_parallel_tool_use,
        } => (mode("required"), disable_parallel_tool_use),
        ToolChoice::Tool {
            name,
            disable_parallel_tool_use,
        } => (
            chat::ToolChoice::Named(NamedTool {
                kind: "function".into(),
                function: ToolName { name },
            }),
            disable_parallel_tool_use,
        ),
        ToolChoice::None {} => (mode("none"), None),
    };
    (
        Some(choice),
        (disable_parallel == Some(true)).then_some(false),
    )
}

fn mode(mode: &str) -> chat::ToolChoice {
    chat::ToolChoice::Mode(mode.into())
}

/// A thinking budget as the nearest OpenAI effort.
fn reasoning_effort(thinking: Thinking) -> Option<String> {
    let Thinking::Enabled { budget_tokens } = thinking else {
        return None;
    };
    let effort = match budget_tokens {
        0..=2048 => "low",
        2049..=8192 => "medium",
        _ => "high",
    };
    Some(effort.into())
}
