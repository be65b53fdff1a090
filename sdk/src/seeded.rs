//! Reproducible randomness from the host's per-request seed
//! (`Request::seed`), so a recorded call replays to the same answer.

/// SplitMix64: tiny, fast, and good enough for spreading traffic.
#[derive(Clone, Debug)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        SeededRng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `0..bound`; `bound` must be positive.
    pub fn below(&mut self, bound: u64) -> u64 {
        // Widening multiply: unbiased enough for weights far below 2^64.
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// Orders `items` by weighted random choice without replacement: the first
/// element is picked with probability proportional to its weight, the next
/// among the rest, and so on. Zero-weight items follow the others in their
/// original order, as last resorts.
pub fn weighted_order<T>(items: &mut [T], weight: impl Fn(&T) -> u32, rng: &mut SeededRng) {
    let mut total: u64 = items.iter().map(|i| u64::from(weight(i))).sum();
    for start in 0..items.len() {
        if total == 0 {
            break;
        }
        let mut ticket = rng.below(total);
        let chosen = (start..items.len())
            .find(|&i| {
                let w = u64::from(weight(&items[i]));
                if ticket < w {
                    true
                } else {
                    ticket -= w;
                    false
                }
            })
            .expect("the tickets cover the remaining weight");
        total -= u64::from(weight(&items[chosen]));
        items[start..=chosen].rotate_right(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_order() {
        let order = |seed| {
            let mut items = vec![(0, 5), (1, 1), (2, 3), (3, 0), (4, 2)];
            weighted_order(&mut items, |i| i.1, &mut SeededRng::new(seed));
            items.iter().map(|i| i.0).collect::<Vec<_>>()
        };
        assert_eq!(order(42), order(42));
        let seeds_with_other_orders = (0..50).filter(|&s| order(s) != order(42)).count();
        assert!(seeds_with_other_orders > 0);
    }

    #[test]
    fn first_choice_follows_the_weights() {
        let mut firsts = [0u32; 3];
        for seed in 0..30_000 {
            let mut items = [(0, 1u32), (1, 2), (2, 7)];
            weighted_order(&mut items, |i| i.1, &mut SeededRng::new(seed));
            firsts[items[0].0] += 1;
        }
        // Expected 3,000 / 6,000 / 21,000; allow 5% of the total either way.
        for (got, want) in firsts.iter().zip([3_000, 6_000, 21_000]) {
            assert!(got.abs_diff(want) < 1_500, "{firsts:?}");
        }
    }

    #[test]
    fn zero_weights_come_last_in_original_order() {
        let mut items = [(0, 0u32), (1, 4), (2, 0), (3, 1)];
        weighted_order(&mut items, |i| i.1, &mut SeededRng::new(7));
        let tail: Vec<_> = items[2..].iter().map(|i| i.0).collect();
        assert_eq!(tail, vec![0, 2]);
    }
}
