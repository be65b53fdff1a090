//! Gemini's `finishReason` ⇄ OpenAI's `finish_reason`.

pub const CONTENT_FILTER: &str = "content_filter";

/// Gemini has no reason for "stopped to call tools": such an answer ends in
/// `STOP`, so whether the choice called any tools decides.
pub fn to_canonical(reason: &str, called_tools: bool) -> &'static str {
    match reason {
        "STOP" if called_tools => "tool_calls",
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            CONTENT_FILTER
        }
        _ => "stop",
    }
}

pub fn from_canonical(reason: &str) -> &'static str {
    match reason {
        "stop" | "tool_calls" | "function_call" => "STOP",
        "length" => "MAX_TOKENS",
        "content_filter" => "SAFETY",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_documented_reason() {
        let cases = [
            ("STOP", false, "stop"),
            ("STOP", true, "tool_calls"),
            ("MAX_TOKENS", true, "length"),
            ("SAFETY", false, "content_filter"),
            ("RECITATION", false, "content_filter"),
            ("BLOCKLIST", false, "content_filter"),
            ("PROHIBITED_CONTENT", false, "content_filter"),
            ("SPII", false, "content_filter"),
            ("IMAGE_SAFETY", false, "content_filter"),
            ("LANGUAGE", false, "stop"),
            ("OTHER", false, "stop"),
            ("MALFORMED_FUNCTION_CALL", true, "stop"),
            ("FINISH_REASON_UNSPECIFIED", false, "stop"),
        ];
        for (gemini, called, openai) in cases {
            assert_eq!(to_canonical(gemini, called), openai, "{gemini}");
        }
        for (openai, gemini) in [
            ("stop", "STOP"),
            ("tool_calls", "STOP"),
            ("length", "MAX_TOKENS"),
            ("content_filter", "SAFETY"),
            ("something_new", "OTHER"),
        ] {
            assert_eq!(from_canonical(openai), gemini);
        }
    }
}
