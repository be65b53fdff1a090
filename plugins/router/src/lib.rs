//! The built-in router: channels in tiers by priority (highest first);
//! within a tier, a weighted random order drawn from the request's seed.
//! Every candidate is returned, so the host can fall back down the list.

use sluice_sdk::seeded::{SeededRng, weighted_order};
use sluice_sdk::{ChannelCandidate, Config, PluginError, Request, Router};

struct PriorityWeighted;

impl Router for PriorityWeighted {
    fn new(_config: Config) -> Result<Self, PluginError> {
        Ok(PriorityWeighted)
    }

    fn route(&self, request: &Request) -> Result<Vec<u32>, PluginError> {
        Ok(order(request.seed(), request.candidates()))
    }
}

fn order(seed: u64, candidates: &[ChannelCandidate]) -> Vec<u32> {
    let mut indices: Vec<u32> = (0..candidates.len() as u32).collect();
    let priority = |i: &u32| candidates[*i as usize].priority;
    indices.sort_by_key(|i| std::cmp::Reverse(priority(i)));
    let mut rng = SeededRng::new(seed);
    for tier in indices.chunk_by_mut(|a, b| priority(a) == priority(b)) {
        weighted_order(tier, |i| candidates[*i as usize].weight, &mut rng);
    }
    indices
}

sluice_sdk::export_router!(PriorityWeighted);

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(priority: i32, weight: u32) -> ChannelCandidate {
        ChannelCandidate {
            weight,
            priority,
            latency_ms: None,
        }
    }

    #[test]
    fn higher_tiers_always_come_first() {
        let candidates = [channel(0, 100), channel(10, 1), channel(10, 1)];
        for seed in 0..100 {
            let order = order(seed, &candidates);
            assert_eq!(order.len(), 3);
            assert_eq!(order[2], 0, "seed {seed}: {order:?}");
        }
    }

    #[test]
    fn weights_share_traffic_within_a_tier() {
        let candidates = [channel(0, 1), channel(0, 3)];
        let firsts_b = (0..10_000)
            .filter(|&s| order(s, &candidates)[0] == 1)
            .count();
        assert!((7_000..8_000).contains(&firsts_b), "{firsts_b}");
    }
}
