//! Identifiers that cross between the protocols.

use std::borrow::Cow;

/// A tool-call id Anthropic accepts (`^[a-zA-Z0-9_-]+$`): other providers
/// write ids such as `functions.search:3`, and Anthropic rejects a history
/// holding one. Every other character becomes `_`, so the `tool_use` and
/// the `tool_result` answering it get the same id.
pub fn tool_id(id: &str) -> Cow<'_, str> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if id.is_empty() {
        Cow::Borrowed("_")
    } else if id.chars().all(allowed) {
        Cow::Borrowed(id)
    } else {
        Cow::Owned(
            id.chars()
                .map(|c| if allowed(c) { c } else { '_' })
                .collect(),
        )
    }
}

/// An Anthropic message id (`msg_…`) for a canonical answer's id.
pub fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_string()
    } else {
        format!("msg_{id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_ids_keep_allowed_characters_and_replace_the_rest() {
        assert_eq!(tool_id("toolu_01A-b"), "toolu_01A-b");
        assert_eq!(tool_id("functions.search:3"), "functions_search_3");
        assert_eq!(tool_id("call é"), "call__");
        assert_eq!(tool_id(""), "_");
    }

    #[test]
    fn message_ids_get_one_prefix() {
        assert_eq!(message_id("chatcmpl-1"), "msg_chatcmpl-1");
        assert_eq!(message_id("msg_01"), "msg_01");
    }
}
