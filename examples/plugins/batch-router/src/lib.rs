//! Example router: traffic tagged `batch` goes to the cheapest channel
//! first (then the next cheapest); everything else is ordered by priority,
//! then by observed latency. Costs come from the plugin's configuration:
//!
//! ```json
//! { "costs": { "cheap-provider": 2, "fast-provider": 9 } }
//! ```
//!
//! A channel without a configured cost counts as the most expensive.

use serde::Deserialize;
use sluice_sdk::{Config, PluginError, Request, Router};
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRouter {
    costs: BTreeMap<String, u64>,
}

impl Router for BatchRouter {
    fn new(config: Config) -> Result<Self, PluginError> {
        config.parse()
    }

    fn route(&self, request: &Request) -> Result<Vec<u32>, PluginError> {
        let candidates = request.candidates();
        let mut order: Vec<u32> = (0..candidates.len() as u32).collect();
        if request.has_tag("batch") {
            // Names are read only here: other traffic needs just the figures.
            let cost = |i: u32| {
                request
                    .channel(i as usize)
                    .and_then(|c| self.costs.get(&c.name).copied())
                    .unwrap_or(u64::MAX)
            };
            order.sort_by_cached_key(|&i| cost(i));
        } else {
            order.sort_by_key(|i| {
                let c = &candidates[*i as usize];
                (
                    std::cmp::Reverse(c.priority),
                    c.latency_ms.unwrap_or(u32::MAX),
                )
            });
        }
        Ok(order)
    }
}

sluice_sdk::export_router!(BatchRouter);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::{Caller, Candidate, Envelope};

    fn channel(name: &str, priority: i32, latency_ms: Option<u32>) -> Candidate {
        Candidate {
            name: name.into(),
            protocol: "openai-chat".into(),
            weight: 1,
            priority,
            tags: vec![],
            latency_ms,
        }
    }

    fn request(tags: &[&str]) -> Request<'static> {
        let envelope = Envelope {
            model: "m".into(),
            stream: false,
            max_output_tokens: None,
            estimated_prompt_tokens: 1,
            inbound_protocol: "openai-chat".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            received_at_ms: 0,
            seed: 0,
        };
        let caller = Caller {
            tenant: "t".into(),
            user: "u".into(),
            group: "g".into(),
            key_id: "k".into(),
        };
        Request::given(envelope, caller).with_candidates(candidates())
    }

    fn router() -> BatchRouter {
        BatchRouter::new(Config::from_json(
            r#"{"costs": {"fast": 9, "cheap": 2, "mid": 5}}"#,
        ))
        .unwrap()
    }

    fn candidates() -> Vec<Candidate> {
        vec![
            channel("fast", 10, Some(80)),
            channel("unpriced", 10, Some(20)),
            channel("cheap", 0, Some(900)),
            channel("mid", 5, None),
        ]
    }

    #[test]
    fn batch_traffic_goes_cheapest_first() {
        let order = router().route(&request(&["batch"])).unwrap();
        assert_eq!(order, vec![2, 3, 0, 1]);
    }

    #[test]
    fn other_traffic_follows_priority_then_latency() {
        let order = router().route(&request(&["interactive"])).unwrap();
        assert_eq!(order, vec![1, 0, 3, 2]);
    }

    #[test]
    fn refuses_configuration_without_costs() {
        assert_eq!(
            BatchRouter::new(Config::default()).err().unwrap().code,
            "bad_config"
        );
    }
}
