//! Gemini request → canonical (OpenAI Chat) request.

use crate::ids::IdMinter;
use crate::response::tool_call;
use crate::wire::{
    Blob, Content, FileData, FunctionCallingConfig, FunctionResponse, GenerationConfig, Part,
    Request, Tool,
};
use crate::{invalid_request, read_request, schema, to_json};
use serde_json::{Map, Value, json};
use sluice_sdk::PluginError;
use sluice_sdk::canonical::chat::{
    self, ChatRequest, FunctionDef, Message, NamedTool, Stop, ToolChoice, ToolName,
};

/// The scope of the ids given to the calls of a request's history.
const HISTORY_SCOPE: &str = "history";

/// The body does not name the model (Gemini puts it in the URL) nor whether
/// to stream (the method does): the host fills in both.
pub fn to_canonical(body: &[u8]) -> Result<Vec<u8>, PluginError> {
    let request: Request = read_request(body)?;
    let mut messages = Vec::new();
    if let Some(system) = request.system_instruction {
        let texts = system
            .parts
            .into_iter()
            .map(|part| part.text.ok_or("systemInstruction may hold only text"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid_request)?;
        if !texts.is_empty() {
            messages.push(message("system", Some(text_content(texts))));
        }
    }
    let mut history = History::new();
    for (i, content) in request.contents.into_iter().enumerate() {
        let at = format!("contents[{i}]");
        match content.role.as_deref().unwrap_or("user") {
            "user" => history.user_turn(content, &at, &mut messages),
            "model" => history
                .model_turn(content, &at)
                .map(|turn| messages.push(turn)),
            other => Err(format!("{at}: role `{other}` is neither user nor model")),
        }
        .map_err(invalid_request)?;
    }
    let config = request.generation_config.unwrap_or_default();
    let mut chat = ChatRequest {
        messages,
        max_completion_tokens: config.max_output_tokens,
        temperature: config.temperature,
        top_p: config.top_p,
        stop: config.stop_sequences.clone().map(Stop::Many),
        n: config.candidate_count,
        response_format: response_format(&config),
        reasoning_effort: config
            .thinking_config
            .as_ref()
            .and_then(|thinking| thinking.thinking_budget)
            .and_then(effort),
        tools: tools(request.tools)?,
        tool_choice: request
            .tool_config
            .and_then(|config| config.function_calling_config)
            .and_then(tool_choice),
        ..ChatRequest::default()
    };
    if let Some(seed) = config.seed {
        chat.extra.insert("seed".into(), seed.into());
    }
    Ok(to_json(&chat))
}

fn message(role: &str, content: Option<chat::Content>) -> Message {
    Message {
        role: role.into(),
        content,
        ..Message::default()
    }
}

fn text_content(mut texts: Vec<String>) -> chat::Content {
    if texts.len() == 1 {
        chat::Content::Text(texts.remove(0))
    } else {
        chat::Content::Parts(texts.into_iter().map(chat::Part::text).collect())
    }
}

/// The history's function calls, so each `functionResponse` can name the
/// tool-call id OpenAI needs. Gemini matches results to calls by their id
/// when Gemini 3 gave one, otherwise by name and order.
struct History {
    calls: Vec<OpenCall>,
    minter: IdMinter,
}

struct OpenCall {
    gemini_id: Option<String>,
    name: String,
    id: String,
    answered: bool,
}

impl History {
    fn new() -> Self {
        History {
            calls: Vec::new(),
            minter: IdMinter::new(HISTORY_SCOPE),
        }
    }

    fn model_turn(&mut self, content: Content, at: &str) -> Result<Message, String> {
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut tool_calls = Vec::new();
        for (j, part) in content.parts.into_iter().enumerate() {
            if let Some(call) = &part.function_call {
                let canonical =
                    tool_call(call, part.thought_signature.as_deref(), &mut self.minter);
                self.calls.push(OpenCall {
                    gemini_id: call.id.clone(),
                    name: call.name.clone(),
                    id: canonical.id.clone(),
                    answered: false,
                });
                tool_calls.push(canonical);
            } else if let Some(piece) = &part.text {
                if part.is_thought() {
                    reasoning.push_str(piece);
                } else {
                    text.push_str(piece);
                }
            } else {
                return Err(format!(
                    "{at}.parts[{j}]: a model turn may hold only text and function calls"
                ));
            }
        }
        Ok(Message {
            role: "assistant".into(),
            content: (!text.is_empty() || tool_calls.is_empty())
                .then_some(chat::Content::Text(text)),
            reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
            tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
            ..Message::default()
        })
    }

    /// A user turn: its function results become tool messages, which OpenAI
    /// wants right after the calls, then the rest one user message.
    fn user_turn(
        &mut self,
        content: Content,
        at: &str,
        messages: &mut Vec<Message>,
    ) -> Result<(), String> {
        let mut parts = Vec::new();
        for (j, part) in content.parts.into_iter().enumerate() {
            let at = format!("{at}.parts[{j}]");
            match part {
                Part {
                    function_response: Some(result),
                    ..
                } => {
                    messages.push(self.tool_message(result, &at)?);
                }
                Part {
                    text: Some(text), ..
                } => parts.push(chat::Part::text(text)),
                Part {
                    inline_data: Some(blob),
                    ..
                } => parts.push(inline_part(blob)),
                Part {
                    file_data: Some(file),
                    ..
                } => parts.push(file_part(file, &at)?),
                _ => {
                    return Err(format!(
                        "{at}: a user turn may hold text, media and function responses"
                    ));
                }
            }
        }
        if !parts.is_empty() {
            let content = match parts.as_slice() {
                [only] if only.kind == "text" => {
                    chat::Content::Text(only.text.clone().unwrap_or_default())
                }
                _ => chat::Content::Parts(parts),
            };
            messages.push(message("user", Some(content)));
        }
        Ok(())
    }

    fn tool_message(&mut self, result: FunctionResponse, at: &str) -> Result<Message, String> {
        let call = self
            .calls
            .iter_mut()
            .find(|call| {
                !call.answered
                    && match &result.id {
                        Some(id) => call.gemini_id.as_ref() == Some(id),
                        None => call.name == result.name,
                    }
            })
            .ok_or_else(|| {
                format!(
                    "{at}: functionResponse `{}` answers no earlier functionCall",
                    result.name
                )
            })?;
        call.answered = true;
        // The inverse of the wrapping on the way to Gemini.
        let text = match &result.response {
            Value::Object(object) if object.len() == 1 => match object.get("content") {
                Some(Value::String(text)) => text.clone(),
                _ => result.response.to_string(),
            },
            other => other.to_string(),
        };
        Ok(Message {
            role: "tool".into(),
            content: Some(chat::Content::Text(text)),
            tool_call_id: Some(call.id.clone()),
            ..Message::default()
        })
    }
}

fn inline_part(blob: Blob) -> chat::Part {
    let data_url = format!("data:{};base64,{}", blob.mime_type, blob.data);
    let audio_format = match blob.mime_type.as_str() {
        "audio/wav" | "audio/x-wav" => Some("wav"),
        "audio/mp3" | "audio/mpeg" => Some("mp3"),
        _ => None,
    };
    if let Some(format) = audio_format {
        return extra_part("input_audio", json!({"data": blob.data, "format": format}));
    }
    if blob.mime_type.starts_with("image/") {
        chat::Part::image(data_url)
    } else {
        extra_part("file", json!({ "file_data": data_url }))
    }
}

/// OpenAI takes files by URL only as images.
fn file_part(file: FileData, at: &str) -> Result<chat::Part, String> {
    if file.mime_type.is_empty() || file.mime_type.starts_with("image/") {
        Ok(chat::Part::image(file.file_uri))
    } else {
        Err(format!(
            "{at}: a `{}` file by URL has no OpenAI equivalent",
            file.mime_type
        ))
    }
}

fn extra_part(kind: &str, value: Value) -> chat::Part {
    let mut extra = Map::new();
    extra.insert(kind.into(), value);
    chat::Part {
        kind: kind.into(),
        extra,
        ..chat::Part::default()
    }
}

fn response_format(config: &GenerationConfig) -> Option<Value> {
    if config.response_mime_type.as_deref() != Some("application/json") {
        return None;
    }
    let schema = match (&config.response_json_schema, &config.response_schema) {
        (Some(json_schema), _) => Some(json_schema.clone()),
        (None, Some(gemini)) => Some(schema::to_json_schema(gemini.clone())),
        (None, None) => None,
    };
    Some(match schema {
        Some(schema) => {
            json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}})
        }
        None => json!({"type": "json_object"}),
    })
}

/// The effort whose budget (see the request translation) is nearest above.
/// No budget (0) and a model-chosen one (-1) have no OpenAI equivalent.
fn effort(budget: i32) -> Option<String> {
    let effort = match budget {
        ..=0 => return None,
        1..=1024 => "low",
        1025..=8192 => "medium",
        _ => "high",
    };
    Some(effort.into())
}

fn tools(tools: Vec<Tool>) -> Result<Option<Vec<chat::Tool>>, PluginError> {
    let mut converted = Vec::new();
    for tool in tools {
        if let Some(name) = tool.built_in.keys().next() {
            return Err(invalid_request(format!(
                "Gemini tool `{name}` has no OpenAI equivalent"
            )));
        }
        converted.extend(tool.function_declarations.into_iter().map(|declaration| {
            chat::Tool {
                kind: "function".into(),
                function: Some(FunctionDef {
                    name: declaration.name,
                    description: declaration.description,
                    parameters: declaration
                        .parameters_json_schema
                        .or(declaration.parameters.map(schema::to_json_schema)),
                    strict: None,
                }),
                extra: Map::new(),
            }
        }));
    }
    Ok((!converted.is_empty()).then_some(converted))
}

fn tool_choice(config: FunctionCallingConfig) -> Option<ToolChoice> {
    let mode = match config.mode.as_deref()? {
        "NONE" => "none",
        "ANY" => match config.allowed_function_names.as_deref() {
            Some([only]) => {
                return Some(ToolChoice::Named(NamedTool {
                    kind: "function".into(),
                    function: ToolName { name: only.clone() },
                }));
            }
            _ => "required",
        },
        _ => "auto",
    };
    Some(ToolChoice::Mode(mode.into()))
}
