//! Sluice's canonical form, the OpenAI Chat Completions shape: typed
//! documents for translators ([`chat`]) and fast usage reading for the
//! host's relay.

pub mod chat;
mod scan;

use crate::Usage;
use memchr::memmem::Finder;
use serde::Deserialize;
use std::sync::LazyLock;

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<chat::UsageJson>,
}

/// The `usage` of a canonical response or stream chunk, if it has one.
/// Detail objects are optional, as OpenAI-compatible servers often omit
/// them or send `null`.
pub fn usage(json: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    let usage = match scan::usage(json) {
        Some(usage) => usage,
        None => serde_json::from_slice::<WithUsage>(json)?.usage,
    };
    Ok(usage.as_ref().map(Usage::from))
}

/// Whether a stream event's JSON may carry a usage value: every chunk of a
/// stream with `include_usage` has `"usage":null`, and only the last one a
/// value, so most events can skip parsing.
pub fn may_carry_usage(data: &[u8]) -> bool {
    static KEY: Needle = Needle::new(|| Finder::new(b"\"usage\""));
    static NULL: Needle = Needle::new(|| Finder::new(b"\"usage\":null"));
    // Where OpenAI puts it, last: no search through the chunk needed.
    !data.ends_with(b"\"usage\":null}") && KEY.find(data).is_some() && NULL.find(data).is_none()
}

/// Whether a stream chunk is sure to hold no choice (`"choices":[]`), as
/// the usage chunk of a stream with `include_usage` does; `false` when in
/// doubt (not a valid JSON object, or of a shape left to serde).
pub fn has_no_choices(data: &[u8]) -> bool {
    scan::no_choices(data)
}

/// Whether a stream event finishes a choice (`"finish_reason":"…"`).
pub fn finishes_a_choice(data: &[u8]) -> bool {
    static FINISH: Needle = Needle::new(|| Finder::new(b"\"finish_reason\":\""));
    FINISH.find(data).is_some()
}

/// A substring searcher built once: building one costs more than a search
/// of a typical event, and these run on every event of every stream.
type Needle = LazyLock<Finder<'static>>;

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
    fn spots_finished_choices() {
        assert!(finishes_a_choice(
            br#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#
        ));
        assert!(!finishes_a_choice(
            br#"{"choices":[{"delta":{},"finish_reason":null}]}"#
        ));
    }

    #[test]
    fn spots_events_that_may_carry_usage() {
        assert!(may_carry_usage(
            br#"{"choices":[],"usage":{"prompt_tokens":1}}"#
        ));
        assert!(!may_carry_usage(br#"{"choices":[],"usage":null}"#));
        assert!(!may_carry_usage(br#"{"usage":null,"choices":[]}"#));
        assert!(!may_carry_usage(br#"{"choices":[]}"#));
    }
}
