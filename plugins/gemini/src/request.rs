//! Canonical (OpenAI Chat) request → Gemini generateContent call.

use crate::wire::{
    Blob, Content, FileData, FunctionCall, FunctionCallingConfig, FunctionDeclaration,
    FunctionResponse, GenerationConfig, Part, Request, ThinkingConfig, Tool, ToolConfig,
};
use crate::{ids, invalid_request, read_request, schema, to_json};
use serde_json::{Map, Value, json};
use sluice_sdk::canonical::chat::{self, ChatRequest, Message, ToolChoice};
use sluice_sdk::{CredentialPlacement, PluginError, UpstreamRequest};
use std::collections::HashMap;

const API_KEY_HEADER: &str = "x-goog-api-key";

pub fn from_canonical(body: &[u8], model: &str) -> Result<UpstreamRequest, PluginError> {
    let mut chat: ChatRequest = read_request(body)?;
    let method = if chat.is_stream() {
        "streamGenerateContent?alt=sse"
    } else {
        "generateContent"
    };
    let path = model_path(model, method)?;
    let (system_instruction, contents) =
        turns(std::mem::take(&mut chat.messages)).map_err(invalid_request)?;
    let request = Request {
        system_instruction,
        contents,
        tools: chat
            .tools
            .take()
            .map(tools)
            .transpose()?
            .unwrap_or_default(),
        tool_config: chat.tool_choice.take().map(tool_config).transpose()?,
        generation_config: generation_config(chat)?,
    };
    Ok(call(path, to_json(&request)))
}

/// Sluice serves no Gemini endpoint yet, so the body is already Gemini's and
/// goes as it is. Headers are not forwarded: the only ones Gemini defines
/// beyond the key name the caller's own Google project and client library
/// (`x-goog-user-project`, `x-goog-api-client`), which describe the client's
/// account, not the channel's.
pub fn passthrough(body: Vec<u8>, model: &str) -> Result<UpstreamRequest, PluginError> {
    Ok(call(model_path(model, "generateContent")?, body))
}

fn call(path: String, body: Vec<u8>) -> UpstreamRequest {
    UpstreamRequest {
        path,
        headers: vec![],
        credential: CredentialPlacement::Header(API_KEY_HEADER.into()),
        body,
    }
}

/// The model goes into the URL path, so only plain names are let through.
fn model_path(model: &str, method: &str) -> Result<String, PluginError> {
    let plain = !model.is_empty()
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !plain {
        return Err(invalid_request(format!(
            "model name `{model}` has characters a Gemini model name cannot have"
        )));
    }
    Ok(format!("/models/{model}:{method}"))
}

/// The conversation: system messages into `systemInstruction`, the rest into
/// alternating `user` / `model` turns.
fn turns(messages: Vec<Message>) -> Result<(Option<Content>, Vec<Content>), String> {
    let mut system = Vec::new();
    let mut turns = Turns::default();
    for (i, message) in messages.into_iter().enumerate() {
        let at = format!("messages[{i}]");
        match message.role.as_str() {
            "system" | "developer" => system.extend(system_parts(message.content, &at)?),
            "user" => turns.push("user", user_parts(message.content, &at)?),
            "assistant" => {
                let parts = turns.assistant_parts(message, &at)?;
                turns.push("model", parts);
            }
            "tool" => {
                let part = turns.tool_result(message, &at)?;
                turns.push("user", vec![part]);
            }
            other => return Err(format!("{at}: role `{other}` is not supported by Gemini")),
        }
    }
    let system_instruction = (!system.is_empty()).then(|| Content {
        role: None,
        parts: system,
    });
    Ok((system_instruction, turns.contents))
}

#[derive(Default)]
struct Turns {
    contents: Vec<Content>,
    /// Tool-call id → function name, for the results that answer them:
    /// Gemini matches a result to its call by name, OpenAI only says the id.
    call_names: HashMap<String, String>,
}

impl Turns {
    /// Gemini wants turns to alternate: a turn of the same role as the last
    /// one (parallel tool results, say) joins it.
    fn push(&mut self, role: &str, parts: Vec<Part>) {
        if parts.is_empty() {
            return;
        }
        match self.contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => self.contents.push(Content {
                role: Some(role.into()),
                parts,
            }),
        }
    }

    fn assistant_parts(&mut self, message: Message, at: &str) -> Result<Vec<Part>, String> {
        let mut parts = Vec::new();
        for part in message
            .content
            .map(chat::Content::into_parts)
            .unwrap_or_default()
        {
            let text = match part.kind.as_str() {
                "text" => part.text,
                "refusal" => part
                    .extra
                    .get("refusal")
                    .and_then(Value::as_str)
                    .map(Into::into),
                other => {
                    return Err(format!(
                        "{at}: assistant content of type `{other}` is not supported by Gemini"
                    ));
                }
            };
            parts.extend(text.filter(|t| !t.is_empty()).map(Part::text));
        }
        for call in message.tool_calls.unwrap_or_default() {
            self.call_names
                .insert(call.id.clone(), call.function.name.clone());
            parts.push(function_call_part(
                &call.id,
                call.function.name,
                &call.function.arguments,
            ));
        }
        Ok(parts)
    }

    fn tool_result(&self, message: Message, at: &str) -> Result<Part, String> {
        let id = message
            .tool_call_id
            .ok_or_else(|| format!("{at}: a tool message needs a tool_call_id"))?;
        let name = self.call_names.get(&id).ok_or_else(|| {
            format!("{at}: tool_call_id `{id}` answers no earlier assistant tool call")
        })?;
        let text = message.content.map(|c| c.text()).unwrap_or_default();
        // Gemini takes an object: a result that is not one is wrapped.
        let response = match serde_json::from_str::<Value>(&text) {
            Ok(object @ Value::Object(_)) => object,
            _ => json!({ "content": text }),
        };
        Ok(Part {
            function_response: Some(FunctionResponse {
                name: name.clone(),
                response,
                id: ids::decode(&id).gemini_id,
            }),
            ..Part::default()
        })
    }
}

/// A canonical tool call as a Gemini `functionCall` part, with what its id
/// carries (Gemini's id, the thought signature) restored. Arguments that are
/// not a JSON object become `{}`: Gemini takes nothing else, and a model's
/// broken JSON must not fail the whole conversation.
pub fn function_call_part(id: &str, name: String, arguments: &str) -> Part {
    let origin = ids::decode(id);
    let args = match serde_json::from_str::<Value>(arguments) {
        Ok(object @ Value::Object(_)) => object,
        _ => Value::Object(Map::new()),
    };
    Part {
        function_call: Some(FunctionCall {
            name,
            args: Some(args),
            id: origin.gemini_id,
        }),
        thought_signature: origin.thought_signature,
        ..Part::default()
    }
}

fn system_parts(content: Option<chat::Content>, at: &str) -> Result<Vec<Part>, String> {
    content
        .map(chat::Content::into_parts)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|part| match (part.kind.as_str(), part.text) {
            ("text", Some(text)) if text.is_empty() => None,
            ("text", Some(text)) => Some(Ok(Part::text(text))),
            (kind, _) => Some(Err(format!(
                "{at}: system content of type `{kind}` is not supported by Gemini"
            ))),
        })
        .collect()
}

fn user_parts(content: Option<chat::Content>, at: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    for (j, part) in content
        .map(chat::Content::into_parts)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let at = format!("{at}.content[{j}]");
        match part.kind.as_str() {
            "text" => parts.extend(part.text.filter(|t| !t.is_empty()).map(Part::text)),
            "image_url" => {
                let url = part
                    .image_url
                    .map(|image| image.url)
                    .ok_or_else(|| format!("{at}: image_url part without a url"))?;
                parts.push(image_part(url, &at)?);
            }
            "input_audio" => parts.push(audio_part(part.extra.get("input_audio"), &at)?),
            "file" => parts.push(file_part(part.extra.get("file"), &at)?),
            other => {
                return Err(format!(
                    "{at}: content of type `{other}` is not supported by Gemini"
                ));
            }
        }
    }
    Ok(parts)
}

/// A data URL is sent inline; any other URL by reference, which Gemini
/// fetches itself (Cloud Storage and File API URIs, public https).
fn image_part(url: String, at: &str) -> Result<Part, String> {
    if url.starts_with("data:") {
        return inline_part(&url, at);
    }
    Ok(Part {
        file_data: Some(FileData {
            mime_type: image_type_of(&url).into(),
            file_uri: url,
        }),
        ..Part::default()
    })
}

fn image_type_of(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let extension = path
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => "image/jpeg",
    }
}

fn audio_part(audio: Option<&Value>, at: &str) -> Result<Part, String> {
    let data = audio.and_then(|a| a.get("data")).and_then(Value::as_str);
    let format = audio.and_then(|a| a.get("format")).and_then(Value::as_str);
    let mime_type = match format {
        Some("wav") => "audio/wav",
        Some("mp3") => "audio/mp3",
        _ => {
            return Err(format!(
                "{at}: input_audio needs a format of `wav` or `mp3`"
            ));
        }
    };
    let data = data.ok_or_else(|| format!("{at}: input_audio without data"))?;
    Ok(inline(mime_type.into(), data.into()))
}

/// Files travel as data URLs; an uploaded file's id means nothing to Gemini.
fn file_part(file: Option<&Value>, at: &str) -> Result<Part, String> {
    match file
        .and_then(|f| f.get("file_data"))
        .and_then(Value::as_str)
    {
        Some(data_url) => inline_part(data_url, at),
        None => Err(format!(
            "{at}: only files given inline as `file_data` can be sent to Gemini"
        )),
    }
}

/// `data:<mime type>;base64,<data>` as an `inlineData` part.
fn inline_part(data_url: &str, at: &str) -> Result<Part, String> {
    data_url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(','))
        .and_then(|(header, data)| {
            let mime_type = header.strip_suffix(";base64")?;
            (!mime_type.is_empty()).then(|| inline(mime_type.into(), data.into()))
        })
        .ok_or_else(|| format!("{at}: a data URL must read `data:<type>;base64,<data>`"))
}

fn inline(mime_type: String, data: String) -> Part {
    Part {
        inline_data: Some(Blob { mime_type, data }),
        ..Part::default()
    }
}

fn tools(tools: Vec<chat::Tool>) -> Result<Vec<Tool>, PluginError> {
    let declarations = tools
        .into_iter()
        .enumerate()
        .map(|(i, tool)| declaration(tool, &format!("tools[{i}]")))
        .collect::<Result<Vec<_>, String>>()
        .map_err(invalid_request)?;
    Ok(if declarations.is_empty() {
        vec![]
    } else {
        vec![Tool {
            function_declarations: declarations,
            ..Tool::default()
        }]
    })
}

fn declaration(tool: chat::Tool, at: &str) -> Result<FunctionDeclaration, String> {
    let function = match (tool.kind.as_str(), tool.function) {
        ("function", Some(function)) => function,
        (kind, _) => {
            return Err(format!(
                "{at}: only function tools can be sent to Gemini, not `{kind}`"
            ));
        }
    };
    let parameters = match &function.parameters {
        Some(parameters) => schema::parameters(parameters, &format!("{at}.function.parameters"))?,
        None => None,
    };
    Ok(FunctionDeclaration {
        name: function.name,
        description: function.description,
        parameters,
        parameters_json_schema: None,
    })
}

fn tool_config(choice: ToolChoice) -> Result<ToolConfig, PluginError> {
    let (mode, allowed) = match choice {
        ToolChoice::Mode(mode) => match mode.as_str() {
            "auto" => ("AUTO", None),
            "required" => ("ANY", None),
            "none" => ("NONE", None),
            other => {
                return Err(invalid_request(format!(
                    "tool_choice `{other}` is not one of auto, required, none"
                )));
            }
        },
        ToolChoice::Named(named) => ("ANY", Some(vec![named.function.name])),
    };
    Ok(ToolConfig {
        function_calling_config: Some(FunctionCallingConfig {
            mode: Some(mode.into()),
            allowed_function_names: allowed,
        }),
    })
}

fn generation_config(chat: ChatRequest) -> Result<Option<GenerationConfig>, PluginError> {
    let (response_mime_type, response_schema) = match &chat.response_format {
        Some(format) => response_format(format)?,
        None => (None, None),
    };
    let config = GenerationConfig {
        stop_sequences: chat
            .stop
            .map(chat::Stop::into_vec)
            .filter(|stops| !stops.is_empty()),
        candidate_count: chat.n,
        max_output_tokens: chat.max_completion_tokens.or(chat.max_tokens),
        temperature: chat.temperature,
        top_p: chat.top_p,
        seed: chat.extra.get("seed").and_then(Value::as_i64),
        response_mime_type,
        response_schema,
        response_json_schema: None,
        thinking_config: chat.reasoning_effort.as_deref().map(thinking).transpose()?,
    };
    Ok((config != GenerationConfig::default()).then_some(config))
}

type ResponseFormat = (Option<String>, Option<Value>);

fn response_format(format: &Value) -> Result<ResponseFormat, PluginError> {
    const JSON: &str = "application/json";
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok((None, None)),
        Some("json_object") => Ok((Some(JSON.into()), None)),
        Some("json_schema") => {
            let schema = format
                .pointer("/json_schema/schema")
                .map(|schema| schema::to_gemini(schema, "response_format.json_schema.schema"))
                .transpose()
                .map_err(invalid_request)?;
            Ok((Some(JSON.into()), schema))
        }
        _ => Err(invalid_request(
            "response_format.type must be text, json_object or json_schema",
        )),
    }
}

fn thinking(effort: &str) -> Result<ThinkingConfig, PluginError> {
    let budget = match effort {
        "low" => 1024,
        "medium" => 8192,
        "high" => 24576,
        other => {
            return Err(invalid_request(format!(
                "reasoning_effort `{other}` has no Gemini thinking budget; use low, medium or high"
            )));
        }
    };
    Ok(ThinkingConfig {
        thinking_budget: Some(budget),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(body: &str, model: &str) -> PluginError {
        from_canonical(body.as_bytes(), model).expect_err("refused")
    }

    #[test]
    fn the_call_names_its_path_and_credential() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let call = from_canonical(body, "gemini-2.5-flash").unwrap();
        assert_eq!(
            call.path,
            "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert!(
            matches!(&call.credential, CredentialPlacement::Header(h) if h == "x-goog-api-key")
        );
        assert!(call.headers.is_empty());
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(
            from_canonical(body, "gemini-2.0-flash-001").unwrap().path,
            "/models/gemini-2.0-flash-001:generateContent"
        );
    }

    #[test]
    fn refuses_model_names_that_would_change_the_path() {
        let body = r#"{"model":"m","messages":[]}"#;
        for model in [
            "",
            "models/x",
            "x:streamGenerateContent",
            "x?key=1",
            "../x",
            "x y",
            "é",
        ] {
            assert_eq!(
                refusal(body, model).code,
                "invalid_request_error",
                "{model}"
            );
        }
    }

    #[test]
    fn a_tool_result_takes_its_name_from_the_latest_call_with_its_id() {
        let body = r#"{"model":"m","messages":[
            {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"old","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"x"},
            {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"new","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"[1,2]"}]}"#;
        let call = from_canonical(body.as_bytes(), "m").unwrap();
        let request: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(
            request["contents"][3]["parts"][0]["functionResponse"],
            json!({"name": "new", "response": {"content": "[1,2]"}})
        );
        assert_eq!(
            request["contents"][1]["parts"][0]["functionResponse"]["name"],
            "old"
        );
    }

    #[test]
    fn refuses_a_tool_result_for_an_unknown_call() {
        let body = r#"{"model":"m","messages":[
            {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"c2","content":"x"}]}"#;
        let error = refusal(body, "m");
        assert_eq!(error.code, "invalid_request_error");
        assert!(error.message.contains("`c2`"), "{}", error.message);
        let later = r#"{"model":"m","messages":[
            {"role":"tool","tool_call_id":"c1","content":"x"},
            {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]}]}"#;
        assert_eq!(refusal(later, "m").code, "invalid_request_error");
    }

    #[test]
    fn refuses_what_gemini_cannot_take() {
        for body in [
            r#"{"model":"m","messages":[{"role":"function","name":"f","content":"x"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AA==","format":"flac"}}]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,abc"}}]}]}"#,
            r#"{"model":"m","messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"https://x/a.png"}}]}]}"#,
            r#"{"model":"m","messages":[],"tools":[{"type":"custom","custom":{"name":"x"}}]}"#,
            r#"{"model":"m","messages":[],"tool_choice":"sometimes"}"#,
            r#"{"model":"m","messages":[],"reasoning_effort":"minimal"}"#,
            r#"{"model":"m","messages":[],"response_format":{"type":"xml"}}"#,
            r##"{"model":"m","messages":[],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"$ref":"#/$defs/a"}}}}"##,
            r#"{"model":"m","messages":"hi"}"#,
            "not json",
        ] {
            assert_eq!(refusal(body, "m").code, "invalid_request_error", "{body}");
        }
    }

    #[test]
    fn passthrough_keeps_the_body_and_names_the_model() {
        let call = passthrough(b"{\"contents\":[]}".to_vec(), "gemini-2.5-pro").unwrap();
        assert_eq!(call.path, "/models/gemini-2.5-pro:generateContent");
        assert_eq!(call.body, b"{\"contents\":[]}");
        assert!(call.headers.is_empty());
        assert!(passthrough(vec![], "a/b").is_err());
    }
}
