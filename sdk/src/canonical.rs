//! Reading Sluice's canonical form, the OpenAI Chat Completions shape, for
//! translators (and the host) that need its usage.

use crate::Usage;
use serde::Deserialize;

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<UsageJson>,
}

#[derive(Deserialize)]
struct UsageJson {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

/// The `usage` of a canonical response or stream chunk, if it has one.
/// Detail objects are optional, as OpenAI-compatible servers often omit
/// them or send `null`.
pub fn usage(json: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    let body: WithUsage = serde_json::from_slice(json)?;
    Ok(body.usage.map(|u| Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        cached_tokens: u
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0),
        reasoning_tokens: u
            .completion_tokens_details
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0),
    }))
}

/// Whether a stream event's JSON may carry a usage value: every chunk of a
/// stream with `include_usage` has `"usage":null`, and only the last one a
/// value, so most events can skip parsing.
pub fn may_carry_usage(data: &[u8]) -> bool {
    contains(data, b"\"usage\"") && !contains(data, b"\"usage\":null")
}

/// Whether `needle` occurs in `haystack` (SIMD-accelerated where the
/// target has it: this runs on every stream event).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_full_and_partial_usage() {
        let full = br#"{"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,
            "prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}"#;
        let u = usage(full).unwrap().unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.cached_tokens,
                u.reasoning_tokens
            ),
            (12, 5, 4, 2)
        );
        let bare =
            br#"{"usage":{"prompt_tokens":3,"completion_tokens":4,"prompt_tokens_details":null}}"#;
        let u = usage(bare).unwrap().unwrap();
        assert_eq!((u.prompt_tokens, u.cached_tokens), (3, 0));
        assert!(usage(br#"{"usage":null}"#).unwrap().is_none());
        assert!(usage(br#"{"id":"x"}"#).unwrap().is_none());
        assert!(usage(b"[").is_err());
    }

    #[test]
    fn spots_events_that_may_carry_usage() {
        assert!(may_carry_usage(
            br#"{"choices":[],"usage":{"prompt_tokens":1}}"#
        ));
        assert!(!may_carry_usage(br#"{"choices":[],"usage":null}"#));
        assert!(!may_carry_usage(br#"{"choices":[]}"#));
    }
}
