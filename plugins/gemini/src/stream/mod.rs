//! Streams, in the three directions the host asks for.

mod from_canonical;
mod tally;
mod to_canonical;

use sluice_sdk::{Direction, PluginError, StreamEnd, StreamTranslator};

pub enum GeminiStream {
    ToCanonical(to_canonical::ToCanonical),
    FromCanonical(Box<from_canonical::FromCanonical>),
    Observe(tally::Observer),
}

impl GeminiStream {
    pub fn new(direction: Direction) -> Self {
        match direction {
            Direction::ToCanonical => GeminiStream::ToCanonical(Default::default()),
            Direction::FromCanonical => GeminiStream::FromCanonical(Default::default()),
            Direction::Observe => GeminiStream::Observe(Default::default()),
        }
    }
}

impl StreamTranslator for GeminiStream {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, PluginError> {
        match self {
            GeminiStream::ToCanonical(stream) => stream.push(chunk),
            GeminiStream::FromCanonical(stream) => stream.push(chunk),
            GeminiStream::Observe(stream) => stream.push(chunk),
        }
    }

    fn finish(&mut self) -> Result<StreamEnd, PluginError> {
        match self {
            GeminiStream::ToCanonical(stream) => stream.finish(),
            GeminiStream::FromCanonical(stream) => stream.finish(),
            GeminiStream::Observe(stream) => stream.finish(),
        }
    }
}
