//! The canonical request → a Messages request for an Anthropic upstream.

use crate::wire::{
    Block, MessagesRequest, Metadata, Source, SystemPrompt, Thinking, ToolChoice, ToolDef, Turn,
    TurnContent,
};
use crate::{ids, invalid_request, tool_calls};
use serde_json::{Value, json};
use sluice_sdk::PluginError;
use sluice_sdk::canonical::chat::{self, ChatRequest, Content, Message, Part};

/// What a history needs in front when it opens with the assistant, since
/// Anthropic's must open with the user.
const OPENING_USER_TEXT: &str = "(continued)";

pub fn translate(
    request: ChatRequest,
    model: &str,
    default_max_tokens: u32,
) -> Result<MessagesRequest, PluginError> {
    if request.n.is_some_and(|n| n > 1) {
        return Err(invalid_request(
            "n: Anthropic channels return one choice; n must be 1",
        ));
    }
    if let Some(format) = &request.response_format {
        let kind = format.get("type").and_then(Value::as_str).unwrap_or("?");
        if kind != "text" {
            return Err(invalid_request(format!(
                "response_format: Anthropic channels do not support `{kind}`"
            )));
        }
    }
    let cap = request.output_cap();
    let budget = request
        .reasoning_effort
        .as_deref()
        .map(thinking_budget)
        .transpose()?
        .flatten();
    let tools = request
        .tools
        .map(tools)
        .transpose()?
        .filter(|t| !t.is_empty());
    // Anthropic refuses a tool choice without tools.
    let tool_choice = match tools {
        Some(_) => tool_choice(request.tool_choice, request.parallel_tool_calls)?,
        None => None,
    };
    // Anthropic refuses thinking while a tool is forced: the forced tool,
    // which the caller's code depends on, wins.
    let forced = matches!(
        tool_choice,
        Some(ToolChoice::Any { .. } | ToolChoice::Tool { .. })
    );
    let budget = budget.filter(|_| !forced);

    let mut max_tokens = cap.unwrap_or(default_max_tokens);
    if let Some(budget) = budget
        && max_tokens <= budget
    {
        // OpenAI's cap counts reasoning too, but Anthropic needs room for an
        // answer beyond the budget: the caller's cap is kept for the answer.
        max_tokens = budget.saturating_add(max_tokens);
    }

    let mut system = Vec::new();
    let mut turns = Turns::default();
    for (position, message) in request.messages.into_iter().enumerate() {
        let at = |e: String| invalid_request(format!("messages.{position}: {e}"));
        match message.role.as_str() {
            "system" | "developer" => {
                if let Some(text) = message.content.map(|c| c.text()).filter(|t| !t.is_empty()) {
                    system.push(text);
                }
            }
            "user" => turns.add("user", user_blocks(message.content).map_err(at)?),
            "assistant" => turns.add("assistant", assistant_blocks(message).map_err(at)?),
            "tool" => turns.add_tool_result(tool_result(message).map_err(at)?),
            other => return Err(at(format!("role `{other}` is not supported"))),
        }
    }
    let messages = turns.finish()?;

    let user_id = request.user.or_else(|| {
        request
            .extra
            .get("safety_identifier")
            .and_then(Value::as_str)
            .map(String::from)
    });
    Ok(MessagesRequest {
        model: Some(model.into()),
        max_tokens: Some(max_tokens),
        system: (!system.is_empty()).then(|| SystemPrompt::Text(system.join("\n\n"))),
        messages: Some(messages),
        metadata: user_id.map(|user_id| Metadata {
            user_id: Some(user_id),
        }),
        stop_sequences: request
            .stop
            .map(chat::Stop::into_vec)
            .filter(|stops| !stops.is_empty()),
        stream: request.stream.filter(|stream| *stream),
        // Anthropic refuses most temperature and top_p values with thinking.
        temperature: request
            .temperature
            .filter(|_| budget.is_none())
            .map(|t| t.clamp(0.0, 1.0)),
        top_p: request.top_p.filter(|_| budget.is_none()),
        tools,
        tool_choice,
        thinking: budget.map(|budget_tokens| Thinking::Enabled { budget_tokens }),
    })
}

/// Alternating turns, built message by message.
#[derive(Default)]
struct Turns {
    turns: Vec<PendingTurn>,
}

struct PendingTurn {
    role: &'static str,
    /// Anthropic wants a user turn's tool results before anything else.
    tool_results: Vec<Block>,
    blocks: Vec<Block>,
}

impl Turns {
    /// Adds a message's blocks, merged into the last turn when it has the
    /// same role. A message with no blocks adds nothing, as Anthropic
    /// refuses empty turns.
    fn add(&mut self, role: &'static str, blocks: Vec<Block>) {
        if !blocks.is_empty() {
            self.turn(role).blocks.extend(blocks);
        }
    }

    fn add_tool_result(&mut self, result: Block) {
        self.turn("user").tool_results.push(result);
    }

    fn turn(&mut self, role: &'static str) -> &mut PendingTurn {
        if self.turns.last().is_none_or(|turn| turn.role != role) {
            self.turns.push(PendingTurn {
                role,
                tool_results: Vec::new(),
                blocks: Vec::new(),
            });
        }
        let last = self.turns.len() - 1;
        &mut self.turns[last]
    }

    fn finish(self) -> Result<Vec<Turn>, PluginError> {
        let mut turns = self.turns.into_iter().peekable();
        let mut out = Vec::new();
        match turns.peek() {
            None => {
                return Err(invalid_request(
                    "messages: at least one user or assistant message is required",
                ));
            }
            Some(first) if first.role == "assistant" => out.push(Turn {
                role: "user".into(),
                content: TurnContent::Blocks(vec![Block::Text {
                    text: OPENING_USER_TEXT.into(),
                }]),
            }),
            Some(_) => {}
        }
        out.extend(turns.map(|mut turn| {
            turn.tool_results.append(&mut turn.blocks);
            Turn {
                role: turn.role.into(),
                content: TurnContent::Blocks(turn.tool_results),
            }
        }));
        Ok(out)
    }
}

fn user_blocks(content: Option<Content>) -> Result<Vec<Block>, String> {
    content
        .map(Content::into_parts)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|part| user_block(part).transpose())
        .collect()
}

/// A user content part as a block; empty text gives none, as Anthropic
/// refuses empty text blocks.
fn user_block(part: Part) -> Result<Option<Block>, String> {
    match part.kind.as_str() {
        "text" => Ok(text_block(part.text.unwrap_or_default())),
        "image_url" => {
            let url = part.image_url.map(|image| image.url).unwrap_or_default();
            image_block(&url).map(Some)
        }
        "file" => file_block(&part.extra).map(Some),
        "input_audio" => Err("audio input is not supported by Anthropic channels".into()),
        other => Err(format!(
            "content parts of type `{other}` are not supported by Anthropic channels"
        )),
    }
}

fn text_block(text: String) -> Option<Block> {
    (!text.is_empty()).then_some(Block::Text { text })
}

fn image_block(url: &str) -> Result<Block, String> {
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(Block::Image {
            source: Source::Url { url: url.into() },
        });
    }
    match base64_data_url(url) {
        Some((media_type, data)) => Ok(Block::Image {
            source: Source::Base64 {
                media_type: media_type.into(),
                data: data.into(),
            },
        }),
        None => Err("image_url: only http(s) URLs and base64 data URLs are supported".into()),
    }
}

/// A PDF given inline. Anthropic cannot read OpenAI's uploaded files.
fn file_block(extra: &chat::Extra) -> Result<Block, String> {
    let file_data = extra
        .get("file")
        .and_then(|file| file.get("file_data"))
        .and_then(Value::as_str);
    match file_data.and_then(base64_data_url) {
        Some((media_type @ "application/pdf", data)) => Ok(Block::Document {
            source: Source::Base64 {
                media_type: media_type.into(),
                data: data.into(),
            },
        }),
        _ => Err("file: only PDF files given inline as base64 data URLs are supported".into()),
    }
}

/// `data:<media type>;base64,<data>` split into its two halves.
fn base64_data_url(url: &str) -> Option<(&str, &str)> {
    let (header, data) = url.strip_prefix("data:")?.split_once(',')?;
    let media_type = header.strip_suffix(";base64")?;
    Some((media_type, data))
}

/// An assistant message: its text (or refusal), then its tool calls.
/// Reasoning text is dropped: Anthropic accepts earlier thinking only with
/// its signature.
fn assistant_blocks(message: Message) -> Result<Vec<Block>, String> {
    let text = match message.content {
        None => String::new(),
        Some(Content::Text(text)) => text,
        Some(Content::Parts(parts)) => parts
            .into_iter()
            .map(|part| match part.kind.as_str() {
                "text" => Ok(part.text.unwrap_or_default()),
                "refusal" => Ok(part
                    .extra
                    .get("refusal")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()),
                other => Err(format!(
                    "assistant content parts of type `{other}` are not supported"
                )),
            })
            .collect::<Result<String, String>>()?,
    };
    let text = match message.refusal {
        Some(refusal) if text.is_empty() => refusal,
        _ => text,
    };
    let calls = message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(tool_calls::to_block);
    Ok(text_block(text).into_iter().chain(calls).collect())
}

fn tool_result(message: Message) -> Result<Block, String> {
    let content = match message.content {
        None => None,
        Some(Content::Text(text)) => (!text.is_empty()).then_some(TurnContent::Text(text)),
        Some(Content::Parts(parts)) => {
            let blocks = parts
                .into_iter()
                .filter_map(|part| user_block(part).transpose())
                .collect::<Result<Vec<_>, _>>()?;
            (!blocks.is_empty()).then_some(TurnContent::Blocks(blocks))
        }
    };
    Ok(Block::ToolResult {
        tool_use_id: ids::tool_id(message.tool_call_id.as_deref().unwrap_or_default()).into_owned(),
        content,
    })
}

/// A function tool as Anthropic's custom tool; one without parameters takes
/// an empty object, as Anthropic requires a schema.
fn tools(tools: Vec<chat::Tool>) -> Result<Vec<ToolDef>, PluginError> {
    tools
        .into_iter()
        .map(|tool| match (tool.kind.as_str(), tool.function) {
            ("function", Some(function)) => Ok(ToolDef {
                kind: None,
                name: function.name,
                description: function.description,
                input_schema: Some(
                    function
                        .parameters
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                ),
            }),
            (kind, _) => Err(invalid_request(format!(
                "tools: tools of type `{kind}` are not supported by Anthropic channels"
            ))),
        })
        .collect()
}

fn tool_choice(
    choice: Option<chat::ToolChoice>,
    parallel_tool_calls: Option<bool>,
) -> Result<Option<ToolChoice>, PluginError> {
    let disable_parallel_tool_use = (parallel_tool_calls == Some(false)).then_some(true);
    let choice = match choice {
        None if disable_parallel_tool_use.is_none() => return Ok(None),
        None => ToolChoice::Auto {
            disable_parallel_tool_use,
        },
        Some(chat::ToolChoice::Named(named)) => ToolChoice::Tool {
            name: named.function.name,
            disable_parallel_tool_use,
        },
        Some(chat::ToolChoice::Mode(mode)) => match mode.as_str() {
            "auto" => ToolChoice::Auto {
                disable_parallel_tool_use,
            },
            "required" => ToolChoice::Any {
                disable_parallel_tool_use,
            },
            "none" => ToolChoice::None {},
            other => {
                return Err(invalid_request(format!(
                    "tool_choice: `{other}` is not one of none, auto, required"
                )));
            }
        },
    };
    Ok(Some(choice))
}

/// A thinking budget for an OpenAI effort; none for the efforts that ask
/// for no reasoning.
fn thinking_budget(effort: &str) -> Result<Option<u32>, PluginError> {
    match effort {
        "none" | "minimal" => Ok(None),
        "low" => Ok(Some(1024)),
        "medium" => Ok(Some(4096)),
        "high" => Ok(Some(16384)),
        other => Err(invalid_request(format!(
            "reasoning_effort: `{other}` is not one of none, minimal, low, medium, high"
        ))),
    }
}
