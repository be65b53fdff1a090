//! Gemini's `usageMetadata` ⇄ Sluice's usage.
//!
//! Gemini's `promptTokenCount` already includes the cached tokens, as
//! OpenAI's `prompt_tokens` does, but its `candidatesTokenCount` leaves out
//! the thinking (`thoughtsTokenCount`), which is billed as output all the
//! same. Tool-use prompt tokens (the results of built-in tools) are input.

use crate::wire::UsageMetadata;
use sluice_sdk::Usage;

pub fn to_usage(metadata: &UsageMetadata) -> Usage {
    let count = |n: Option<u32>| u64::from(n.unwrap_or(0));
    let thoughts = count(metadata.thoughts_token_count);
    Usage {
        prompt_tokens: count(metadata.prompt_token_count)
            + count(metadata.tool_use_prompt_token_count),
        completion_tokens: count(metadata.candidates_token_count) + thoughts,
        cached_tokens: count(metadata.cached_content_token_count),
        cache_write_tokens: 0,
        reasoning_tokens: thoughts,
    }
}

/// Canonical usage as Gemini reports it. Counts past Gemini's `int32` range
/// are clamped; zero cached and thought counts are left out, as Gemini does.
pub fn to_metadata(usage: &Usage) -> UsageMetadata {
    let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    let nonzero = |n: u64| (n > 0).then(|| count(n));
    UsageMetadata {
        prompt_token_count: Some(count(usage.prompt_tokens)),
        cached_content_token_count: nonzero(usage.cached_tokens),
        candidates_token_count: Some(count(
            usage
                .completion_tokens
                .saturating_sub(usage.reasoning_tokens),
        )),
        thoughts_token_count: nonzero(usage.reasoning_tokens),
        tool_use_prompt_token_count: None,
        total_token_count: Some(count(
            usage.prompt_tokens.saturating_add(usage.completion_tokens),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(json: &str) -> UsageMetadata {
        serde_json::from_str(json).unwrap()
    }

    fn numbers(usage: &Usage) -> [u64; 5] {
        [
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens,
        ]
    }

    #[test]
    fn thoughts_are_output_and_cache_is_inside_the_prompt() {
        let used = to_usage(&metadata(
            r#"{"promptTokenCount":1200,"cachedContentTokenCount":1024,"candidatesTokenCount":80,
               "thoughtsTokenCount":190,"toolUsePromptTokenCount":30,"totalTokenCount":1500}"#,
        ));
        assert_eq!(numbers(&used), [1230, 270, 1024, 0, 190]);
        assert_eq!(
            used.prompt_tokens + used.completion_tokens,
            1500,
            "matches Gemini's own total"
        );
    }

    #[test]
    fn absent_counts_are_zero() {
        assert_eq!(numbers(&to_usage(&metadata("{}"))), [0; 5]);
        assert_eq!(
            numbers(&to_usage(&metadata(r#"{"promptTokenCount":7}"#))),
            [7, 0, 0, 0, 0]
        );
    }

    #[test]
    fn counts_outside_int32_are_unreadable_not_wrapped() {
        assert!(serde_json::from_str::<UsageMetadata>(r#"{"promptTokenCount":-1}"#).is_err());
        assert!(
            serde_json::from_str::<UsageMetadata>(r#"{"promptTokenCount":99999999999}"#).is_err()
        );
    }

    #[test]
    fn canonical_usage_goes_back_without_loss() {
        let used = Usage {
            prompt_tokens: 1200,
            completion_tokens: 270,
            cached_tokens: 1024,
            cache_write_tokens: 0,
            reasoning_tokens: 190,
        };
        let back = to_usage(&to_metadata(&used));
        assert_eq!(numbers(&back), numbers(&used));
        let huge = Usage {
            prompt_tokens: u64::MAX,
            completion_tokens: 1,
            cached_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 5,
        };
        let clamped = to_metadata(&huge);
        assert_eq!(clamped.prompt_token_count, Some(u32::MAX));
        assert_eq!(clamped.candidates_token_count, Some(0));
    }
}
