//! Streams arrive split anywhere, even inside a UTF-8 character: every
//! split of every recorded transcript must translate exactly as the whole.

use super::golden::cases;
use super::{counts, run_stream};
use sluice_sdk::{Direction, StreamEnd};

/// A small deterministic generator (xorshift64*): the same splits on every
/// run, without a dependency.
struct Splitter(u64);

impl Splitter {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `input` cut into pieces of 1 to 7 bytes.
    fn pieces<'a>(&mut self, mut input: &'a [u8]) -> Vec<&'a [u8]> {
        let mut pieces = Vec::new();
        while !input.is_empty() {
            let size = (1 + self.next() % 7) as usize;
            let (piece, rest) = input.split_at(size.min(input.len()));
            pieces.push(piece);
            input = rest;
        }
        pieces
    }
}

type Outcome = (Vec<u8>, Option<[u64; 5]>, bool);

fn outcome((output, end): (Vec<u8>, StreamEnd)) -> Outcome {
    (output, end.used.as_ref().map(counts), end.complete)
}

fn transcripts() -> Vec<(Direction, String, Vec<u8>)> {
    let mut all = Vec::new();
    for (name, input) in cases("stream_to_canonical", "sse") {
        all.push((Direction::ToCanonical, name.clone(), input.clone()));
        all.push((Direction::Observe, name, input));
    }
    for (name, input) in cases("stream_from_canonical", "sse") {
        all.push((Direction::FromCanonical, name, input));
    }
    all
}

#[test]
fn every_split_in_two_translates_as_the_whole() {
    for (direction, name, input) in transcripts() {
        let whole = outcome(run_stream(direction, [input.as_slice()]));
        for at in 0..=input.len() {
            let (head, tail) = input.split_at(at);
            let split = outcome(run_stream(direction, [head, tail]));
            assert!(split == whole, "{name} ({direction:?}) split at byte {at}");
        }
    }
}

#[test]
fn random_small_pieces_translate_as_the_whole() {
    let mut splitter = Splitter(0x5eed_5eed_5eed_5eed);
    for (direction, name, input) in transcripts() {
        let whole = outcome(run_stream(direction, [input.as_slice()]));
        for round in 0..200 {
            let pieces = splitter.pieces(&input);
            let split = outcome(run_stream(direction, pieces));
            assert!(split == whole, "{name} ({direction:?}) round {round}");
        }
    }
}
