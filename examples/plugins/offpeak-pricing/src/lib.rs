//! Example pricing: the ratio model, discounted during an off-peak window of
//! the operator's local day. Plugins have no clock: the time is the
//! request's admission time, so a replay prices the same.
//!
//! ```json
//! { "start_hour": 22, "end_hour": 6, "utc_offset_minutes": 480, "discount_percent": 40 }
//! ```
//!
//! The window may wrap past midnight (22 → 6 covers 22:00–05:59).

use serde::Deserialize;
use sluice_sdk::{Config, PluginError, PriceTable, Pricing, Request, Usage};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffPeakPricing {
    start_hour: u8,
    end_hour: u8,
    #[serde(default)]
    utc_offset_minutes: i32,
    discount_percent: u8,
}

impl OffPeakPricing {
    fn is_off_peak(&self, received_at_ms: u64) -> bool {
        let local_minutes = (received_at_ms / 60_000) as i64 + i64::from(self.utc_offset_minutes);
        let hour = local_minutes.rem_euclid(24 * 60) / 60;
        let (start, end) = (i64::from(self.start_hour), i64::from(self.end_hour));
        if start <= end {
            (start..end).contains(&hour)
        } else {
            hour >= start || hour < end
        }
    }
}

impl Pricing for OffPeakPricing {
    fn new(config: Config) -> Result<Self, PluginError> {
        let plugin: OffPeakPricing = config.parse()?;
        if plugin.start_hour > 23 || plugin.end_hour > 24 || plugin.discount_percent > 100 {
            return Err(PluginError::new(
                "bad_config",
                "hours must be within a day and the discount at most 100 percent",
            ));
        }
        Ok(plugin)
    }

    fn price(
        &self,
        request: &Request,
        usage: &Usage,
        prices: &PriceTable,
    ) -> Result<u64, PluginError> {
        let full = sluice_sdk::ratio::charge(usage, prices)?;
        if !self.is_off_peak(request.received_at_ms()) {
            return Ok(full);
        }
        let kept = u128::from(100 - self.discount_percent);
        Ok((u128::from(full) * kept).div_ceil(100) as u64)
    }
}

sluice_sdk::export_pricing!(OffPeakPricing);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::ratio::ONE;
    use sluice_sdk::{Caller, Envelope};

    const HOUR_MS: u64 = 3_600_000;

    fn price_at(plugin: &OffPeakPricing, utc_hour: u64) -> u64 {
        let envelope = Envelope {
            model: "m".into(),
            stream: false,
            max_output_tokens: None,
            estimated_prompt_tokens: 1,
            inbound_protocol: "openai-chat".into(),
            tags: vec![],
            received_at_ms: 20_000 * 24 * HOUR_MS + utc_hour * HOUR_MS,
            seed: 0,
        };
        let caller = Caller {
            tenant: "t".into(),
            user: "u".into(),
            group: "g".into(),
            key_id: "k".into(),
        };
        let usage = Usage {
            prompt_tokens: 1000,
            completion_tokens: 0,
            cached_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
        };
        let prices = PriceTable {
            model_ratio: ONE,
            completion_ratio: ONE,
            cached_ratio: ONE,
            cache_write_ratio: ONE,
            group_ratio: ONE,
            per_call: None,
        };
        plugin
            .price(&Request::given(envelope, caller), &usage, &prices)
            .unwrap()
    }

    fn plugin(config: &str) -> OffPeakPricing {
        OffPeakPricing::new(Config::from_json(config)).unwrap()
    }

    #[test]
    fn discounts_inside_a_window_that_wraps_midnight() {
        let p = plugin(r#"{"start_hour": 22, "end_hour": 6, "discount_percent": 40}"#);
        assert_eq!(price_at(&p, 23), 600);
        assert_eq!(price_at(&p, 5), 600);
        assert_eq!(price_at(&p, 6), 1000);
        assert_eq!(price_at(&p, 12), 1000);
    }

    #[test]
    fn uses_the_operators_local_time() {
        // 16:00 UTC is midnight at UTC+8.
        let p = plugin(
            r#"{"start_hour": 0, "end_hour": 6, "utc_offset_minutes": 480, "discount_percent": 50}"#,
        );
        assert_eq!(price_at(&p, 16), 500);
        assert_eq!(price_at(&p, 0), 1000);
    }

    #[test]
    fn refuses_impossible_configuration() {
        let bad = OffPeakPricing::new(Config::from_json(
            r#"{"start_hour": 25, "end_hour": 6, "discount_percent": 10}"#,
        ));
        assert_eq!(bad.err().unwrap().code, "bad_config");
    }
}
