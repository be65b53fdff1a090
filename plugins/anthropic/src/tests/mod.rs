//! Tests of the translator through its public face, the `Translator` trait.

mod edge_cases;
mod errors;
mod golden;
mod stream_splits;

use crate::Anthropic;
use sluice_sdk::{Config, Direction, StreamEnd, StreamTranslator, Translator, Usage};

fn translator() -> Anthropic {
    Anthropic::new(Config::default()).unwrap()
}

/// Feeds a stream in the given pieces; returns everything it wrote and how
/// it ended.
fn run_stream<'a>(
    direction: Direction,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<u8>, StreamEnd) {
    let mut stream = translator().stream(direction);
    let mut out = Vec::new();
    for piece in pieces {
        out.extend(stream.push(piece).unwrap());
    }
    let end = stream.finish().unwrap();
    out.extend_from_slice(&end.tail);
    (out, end)
}

fn counts(usage: &Usage) -> [u64; 5] {
    [
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
    ]
}
