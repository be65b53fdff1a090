//! A stream's bytes may arrive split anywhere (inside an event, a `\r\n`, a
//! UTF-8 character): the output and the end report must not depend on where.

use super::*;

/// Random splittings tried per transcript and direction.
const RANDOM_SPLITTINGS: usize = 300;

/// SplitMix64: a small deterministic generator, so a failure replays.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Pieces of 1 to 7 bytes covering `input`.
    fn pieces<'a>(&mut self, input: &'a [u8]) -> Vec<&'a [u8]> {
        let mut pieces = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let size = (1 + self.next() % 7) as usize;
            let (piece, tail) = rest.split_at(size.min(rest.len()));
            pieces.push(piece);
            rest = tail;
        }
        pieces
    }
}

fn check_every_split(direction_name: &str, direction: Direction) {
    let mut random = SplitMix(0x5EED_6E41_1A1B_0001);
    for case in cases(direction_name) {
        let input = case.input.as_slice();
        let whole = run_stream(direction, [input]);
        for at in 0..=input.len() {
            let (head, tail) = input.split_at(at);
            assert!(
                run_stream(direction, [head, tail]) == whole,
                "{}: split at byte {at}",
                case.name
            );
        }
        for attempt in 0..RANDOM_SPLITTINGS {
            let pieces = random.pieces(input);
            assert!(
                run_stream(direction, pieces.iter().copied()) == whole,
                "{}: random splitting {attempt}: {:?}",
                case.name,
                pieces.iter().map(|p| p.len()).collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn gemini_streams_translate_the_same_at_every_split() {
    check_every_split("stream_to_canonical", Direction::ToCanonical);
}

#[test]
fn gemini_streams_observe_the_same_at_every_split() {
    check_every_split("stream_to_canonical", Direction::Observe);
}

#[test]
fn canonical_streams_translate_the_same_at_every_split() {
    check_every_split("stream_from_canonical", Direction::FromCanonical);
}
