//! Counting tokens locally, for when no upstream count is at hand. OpenAI's
//! `o200k_base` vocabulary is embedded in the binary (no download); other
//! providers' tokenizers are not public, so their counts are estimates.

use sluice_sdk::canonical::chat::{ChatRequest, Content, Message};
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
    let bpe = tiktoken_rs::o200k_base_singleton();
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
