//! Counting tokens locally, for when no upstream count is at hand. OpenAI's
//! vocabularies are embedded in the binary (no download) and chosen by model
//! family: `cl100k_base` for GPT-4 and GPT-3.5, `o200k_base` for GPT-4o and
//! later. Other providers' tokenizers are not public: their models are
//! counted with `o200k_base`, an estimate.

use serde::Deserialize;
use sluice_sdk::canonical::chat::{ChatCompletion, ChatRequest, Content, Message};
use std::borrow::Cow;
use tiktoken_rs::CoreBPE;

/// What one image is taken to cost: OpenAI's count for a 1024×1024 image at
/// high detail. The real cost depends on the size, which the request does
/// not state for URLs.
const IMAGE_TOKENS: u64 = 765;

/// The prompt size of a canonical request, by OpenAI's published
/// convention: every message costs 3 tokens plus its role, content and
/// (plus one) name; tool definitions their JSON; and 3 more prime the reply.
/// Blocks the thread for long prompts: run it off the async workers.
pub fn prompt_tokens(request: &ChatRequest) -> u64 {
    let bpe = vocabulary(&request.model);
    let messages: u64 = request.messages.iter().map(|m| message(bpe, m)).sum();
    let tools: u64 = request
        .tools
        .iter()
        .flatten()
        .map(|tool| text(bpe, &serde_json::to_string(tool).unwrap_or_default()))
        .sum();
    messages + tools + 3
}

fn message(bpe: &CoreBPE, message: &Message) -> u64 {
    let mut tokens = 3 + text(bpe, &message.role);
    if let Some(name) = &message.name {
        tokens += 1 + text(bpe, name);
    }
    tokens += match &message.content {
        Some(Content::Text(content)) => text(bpe, content),
        Some(Content::Parts(parts)) => parts
            .iter()
            .map(|part| match (&part.text, &part.image_url) {
                (Some(content), _) => text(bpe, content),
                (None, Some(_)) => IMAGE_TOKENS,
                (None, None) => 0,
            })
            .sum(),
        None => 0,
    };
    for call in message.tool_calls.iter().flatten() {
        tokens += 1 + text(bpe, &call.function.name) + text(bpe, &call.function.arguments);
    }
    tokens
}

/// The size of an answer's text (see `answer_text`, `chunk_text`) from
/// `model`.
pub fn answer_tokens(model: &str, answer: &str) -> u64 {
    text(vocabulary(model), answer)
}

/// The vocabulary `model` counts with.
fn vocabulary(model: &str) -> &'static CoreBPE {
    use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};
    match get_tokenizer(model) {
        Some(Tokenizer::Cl100kBase) => tiktoken_rs::cl100k_base_singleton(),
        _ => tiktoken_rs::o200k_base_singleton(),
    }
}

/// The text of a canonical (non-stream) answer that output tokens pay for:
/// content, reasoning, refusals, tool names and arguments.
pub fn answer_text(answer: &[u8]) -> String {
    let mut out = String::new();
    if let Ok(completion) = serde_json::from_slice::<ChatCompletion>(answer) {
        for choice in &completion.choices {
            let message = &choice.message;
            if let Some(Content::Text(content)) = &message.content {
                out.push_str(content);
            }
            for piece in [&message.reasoning_content, &message.refusal]
                .into_iter()
                .flatten()
            {
                out.push_str(piece);
            }
            for call in message.tool_calls.iter().flatten() {
                out.push_str(&call.function.name);
                out.push_str(&call.function.arguments);
            }
        }
    }
    out
}

/// Appends the answer text a canonical stream chunk carries to `out`. Reads
/// only the fields that hold text, borrowing them where JSON allows.
pub fn chunk_text(chunk: &[u8], out: &mut String) {
    #[derive(Deserialize)]
    struct Chunk<'a> {
        #[serde(borrow, default)]
        choices: Vec<Choice<'a>>,
    }
    #[derive(Deserialize)]
    struct Choice<'a> {
        #[serde(borrow, default)]
        delta: Delta<'a>,
    }
    #[derive(Deserialize, Default)]
    struct Delta<'a> {
        #[serde(borrow, default)]
        content: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        reasoning_content: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        refusal: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        tool_calls: Vec<Call<'a>>,
    }
    #[derive(Deserialize)]
    struct Call<'a> {
        #[serde(borrow, default)]
        function: Option<Function<'a>>,
    }
    #[derive(Deserialize)]
    struct Function<'a> {
        #[serde(borrow, default)]
        name: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        arguments: Option<Cow<'a, str>>,
    }
    let Ok(chunk) = serde_json::from_slice::<Chunk<'_>>(chunk) else {
        return;
    };
    for choice in chunk.choices {
        let Delta {
            content,
            reasoning_content,
            refusal,
            tool_calls,
        } = choice.delta;
        let functions = tool_calls.into_iter().filter_map(|call| call.function);
        let texts = [content, reasoning_content, refusal]
            .into_iter()
            .chain(functions.flat_map(|f| [f.name, f.arguments]));
        for piece in texts.flatten() {
            out.push_str(&piece);
        }
    }
}

/// Special-token text in user content counts as ordinary text.
fn text(bpe: &CoreBPE, text: &str) -> u64 {
    bpe.count_ordinary(text) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_the_published_convention() {
        let request: ChatRequest = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Hello there <|endoftext|>"}]}"#,
        )
        .unwrap();
        let bpe = tiktoken_rs::o200k_base_singleton();
        let expected = (3 + text(bpe, "system") + text(bpe, "You are terse."))
            + (3 + text(bpe, "user") + text(bpe, "Hello there <|endoftext|>"))
            + 3;
        assert_eq!(prompt_tokens(&request), expected);
        assert!(
            text(bpe, "<|endoftext|>") > 1,
            "special tokens stay ordinary text"
        );
    }

    #[test]
    fn collects_the_text_output_tokens_pay_for() {
        let mut streamed = String::new();
        for chunk in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo \u00e9"}}],"usage":null}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"get","arguments":"{\"a\""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
            "not json",
        ] {
            chunk_text(chunk.as_bytes(), &mut streamed);
        }
        assert_eq!(streamed, "Hello \u{e9}get{\"a\"hmm");
        let answer = r#"{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"stop"}]}"#;
        assert_eq!(answer_text(answer.as_bytes()), "Hif{}");
        assert_eq!(answer_tokens("m", ""), 0);
        assert!(answer_tokens("m", "Hello there") >= 2);
    }

    #[test]
    fn counts_with_the_vocabulary_of_the_model_family() {
        // A string the two vocabularies split differently.
        let text = "Здравствуйте, как дела? 你好世界 schnell";
        let (cl100k, o200k) = (
            answer_tokens("gpt-4-0613", text),
            answer_tokens("gpt-4o-mini", text),
        );
        assert_ne!(cl100k, o200k);
        assert_eq!(answer_tokens("gpt-3.5-turbo", text), cl100k);
        assert_eq!(answer_tokens("claude-sonnet-4", text), o200k);
    }

    #[test]
    fn images_and_tools_count() {
        let plain: ChatRequest = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"Look"}]}]}"#,
        )
        .unwrap();
        let with_image: ChatRequest = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"Look"},{"type":"image_url","image_url":{"url":"https://x/a.png"}}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}"#,
        )
        .unwrap();
        assert!(prompt_tokens(&with_image) > prompt_tokens(&plain) + IMAGE_TOKENS);
    }
}
