//! Client wire protocols: what the host itself must understand of each — the
//! envelope fields policy needs, and the canonical stream it relays.

pub mod openai;
pub mod relay;

/// The canonical protocol: OpenAI Chat Completions. Every translator
/// converts to and from it.
pub const CANONICAL: &str = "openai-chat";

impl From<sluice_sdk::Usage> for crate::plugins::bindings::Usage {
    fn from(u: sluice_sdk::Usage) -> Self {
        crate::plugins::bindings::Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_tokens: u.cached_tokens,
            cache_write_tokens: u.cache_write_tokens,
            reasoning_tokens: u.reasoning_tokens,
        }
    }
}
