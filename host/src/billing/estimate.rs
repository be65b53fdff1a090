//! Sluice's own count of a call, for when the upstream reports none, and
//! the built-in ratio model, for when the pricing plugin fails.

use crate::plugins::Translator;
use crate::plugins::bindings::{Direction, PriceTable, Usage};
use sluice_sdk::canonical::chat::ChatRequest;
use sluice_sdk::sse::SseDecoder;

pub use crate::tokens::answer_text as completion_text;

/// The usage of a call to `model` whose canonical request was `request`
/// and whose answer (so far) is `answer`.
pub fn usage(model: &str, request: &[u8], answer: &str) -> Usage {
    let prompt_tokens = serde_json::from_slice::<ChatRequest>(request)
        .map_or(0, |request| crate::tokens::prompt_tokens(&request));
    Usage {
        prompt_tokens,
        completion_tokens: crate::tokens::answer_tokens(model, answer),
        cached_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
    }
}

/// The answer text of a stream in `channel`'s protocol, read through the
/// channel's translator; whatever it cannot read counts as no text.
pub async fn stream_text(channel: &Translator, bytes: &[u8]) -> String {
    let Ok(mut stream) = channel.open_stream(Direction::ToCanonical).await else {
        return String::new();
    };
    let mut canonical = stream.push(bytes).await.unwrap_or_default();
    if let Ok(end) = stream.finish().await {
        canonical.extend(end.tail);
    }
    let mut text = String::new();
    let mut decoder = SseDecoder::new();
    let mut collect = |event: sluice_sdk::sse::SseEvent<'_>| {
        crate::tokens::chunk_text(event.data, &mut text);
        Ok::<(), std::convert::Infallible>(())
    };
    let _ = decoder.push(&canonical, &mut collect);
    let _ = decoder.finish(&mut collect);
    text
}

/// The ratio model's charge (`sluice_sdk::ratio`), or 0 for usage it
/// refuses (cached tokens above the prompt: nothing sound to bill).
pub fn ratio_charge(usage: Usage, prices: PriceTable) -> u64 {
    let usage = sluice_sdk::Usage {
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        cached_tokens: usage.cached_tokens,
        cache_write_tokens: usage.cache_write_tokens,
        reasoning_tokens: usage.reasoning_tokens,
    };
    let prices = sluice_sdk::PriceTable {
        model_ratio: prices.model_ratio,
        completion_ratio: prices.completion_ratio,
        cached_ratio: prices.cached_ratio,
        cache_write_ratio: prices.cache_write_ratio,
        group_ratio: prices.group_ratio,
        per_call: prices.per_call,
    };
    sluice_sdk::ratio::charge(&usage, &prices).unwrap_or(0)
}
