//! Token usage between Anthropic's shape and Sluice's.
//!
//! Anthropic's `input_tokens` excludes cached tokens while OpenAI's
//! `prompt_tokens` includes them: the prompt is the sum of input, cache
//! reads and cache writes, and going back the cache reads are subtracted.

use serde::{Deserialize, Serialize};
use sluice_sdk::Usage;
use sluice_sdk::canonical::chat::{CompletionDetails, PromptDetails, UsageJson};

/// The usage of an answer that reported none.
pub const NO_USAGE: Usage = Usage {
    prompt_tokens: 0,
    completion_tokens: 0,
    cached_tokens: 0,
    cache_write_tokens: 0,
    reasoning_tokens: 0,
};

/// An Anthropic `usage` object. Every field may be absent or `null`: a
/// stream's `message_delta` sends only what changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnthropicUsage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_details: Option<OutputTokensDetails>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    #[serde(default)]
    pub thinking_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// The usage of an answer to a canonical one: Anthropic clients expect
    /// all four counters, and Sluice's canonical form knows no cache writes.
    pub fn from_canonical(usage: &Usage) -> Self {
        AnthropicUsage {
            input_tokens: Some(usage.prompt_tokens.saturating_sub(usage.cached_tokens)),
            cache_creation_input_tokens: Some(0),
            cache_read_input_tokens: Some(usage.cached_tokens),
            output_tokens: Some(usage.completion_tokens),
            output_tokens_details: None,
        }
    }

    /// Applies a later report: its counts are cumulative totals, so each one
    /// it carries replaces the earlier value and none is added.
    pub fn update(&mut self, later: &AnthropicUsage) {
        fn replace<T: Clone>(field: &mut Option<T>, later: &Option<T>) {
            if later.is_some() {
                field.clone_from(later);
            }
        }
        replace(&mut self.input_tokens, &later.input_tokens);
        replace(
            &mut self.cache_creation_input_tokens,
            &later.cache_creation_input_tokens,
        );
        replace(
            &mut self.cache_read_input_tokens,
            &later.cache_read_input_tokens,
        );
        replace(&mut self.output_tokens, &later.output_tokens);
        replace(
            &mut self.output_tokens_details,
            &later.output_tokens_details,
        );
    }

    pub fn to_usage(&self) -> Usage {
        let cache_read = self.cache_read_input_tokens.unwrap_or(0);
        let cache_write = self.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(cache_read)
                .saturating_add(cache_write),
            completion_tokens: self.output_tokens.unwrap_or(0),
            cached_tokens: cache_read,
            cache_write_tokens: cache_write,
            reasoning_tokens: self
                .output_tokens_details
                .as_ref()
                .and_then(|d| d.thinking_tokens)
                .unwrap_or(0),
        }
    }
}

/// The canonical `usage` object for a usage. Built here rather than with the
/// SDK's `From`, whose total can overflow on absurd upstream numbers.
pub fn canonical_usage(usage: &Usage) -> UsageJson {
    UsageJson {
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        total_tokens: usage.prompt_tokens.saturating_add(usage.completion_tokens),
        prompt_tokens_details: Some(PromptDetails {
            cached_tokens: Some(usage.cached_tokens),
        }),
        completion_tokens_details: Some(CompletionDetails {
            reasoning_tokens: Some(usage.reasoning_tokens),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anthropic(json: &str) -> AnthropicUsage {
        serde_json::from_str(json).unwrap()
    }

    fn counts(u: &Usage) -> [u64; 5] {
        [
            u.prompt_tokens,
            u.completion_tokens,
            u.cached_tokens,
            u.cache_write_tokens,
            u.reasoning_tokens,
        ]
    }

    #[test]
    fn cache_reads_and_writes_join_the_prompt() {
        let u = anthropic(
            r#"{"input_tokens":50,"cache_creation_input_tokens":200,"cache_read_input_tokens":1800,"output_tokens":120}"#,
        )
        .to_usage();
        assert_eq!(counts(&u), [2050, 120, 1800, 200, 0]);
    }

    #[test]
    fn null_and_absent_fields_count_zero() {
        let u = anthropic(r#"{"input_tokens":7,"cache_creation_input_tokens":null}"#).to_usage();
        assert_eq!(counts(&u), [7, 0, 0, 0, 0]);
    }

    #[test]
    fn thinking_tokens_are_reasoning_inside_the_output() {
        let u = anthropic(r#"{"input_tokens":1,"output_tokens":90,"output_tokens_details":{"thinking_tokens":60}}"#)
            .to_usage();
        assert_eq!(counts(&u), [1, 90, 0, 0, 60]);
    }

    #[test]
    fn canonical_usage_loses_cache_reads_from_the_input_count() {
        let canonical = Usage {
            prompt_tokens: 2050,
            completion_tokens: 120,
            cached_tokens: 1800,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
        };
        assert_eq!(
            AnthropicUsage::from_canonical(&canonical),
            anthropic(
                r#"{"input_tokens":250,"cache_creation_input_tokens":0,"cache_read_input_tokens":1800,"output_tokens":120}"#
            )
        );
        let inconsistent = Usage {
            cached_tokens: 3000,
            ..canonical
        };
        assert_eq!(
            AnthropicUsage::from_canonical(&inconsistent).input_tokens,
            Some(0)
        );
    }

    #[test]
    fn later_reports_replace_and_never_add() {
        let mut seen = anthropic(
            r#"{"input_tokens":10,"cache_read_input_tokens":5,"cache_creation_input_tokens":0,"output_tokens":1}"#,
        );
        seen.update(&anthropic(r#"{"output_tokens":30}"#));
        seen.update(&anthropic(
            r#"{"output_tokens":57,"input_tokens":null,"cache_read_input_tokens":8}"#,
        ));
        assert_eq!(counts(&seen.to_usage()), [18, 57, 8, 0, 0]);
    }

    #[test]
    fn absurd_numbers_saturate() {
        let u = anthropic(&format!(
            r#"{{"input_tokens":{max},"cache_read_input_tokens":{max},"output_tokens":{max}}}"#,
            max = u64::MAX
        ))
        .to_usage();
        assert_eq!(u.prompt_tokens, u64::MAX);
        assert_eq!(canonical_usage(&u).total_tokens, u64::MAX);
    }
}
