//! The ratio pricing model that operators of one-api and new-api know,
//! in exact integer arithmetic.
//!
//! Multipliers are fixed-point millionths (`1_000_000` = 1.0). A prompt token
//! costs `model_ratio` millionths of a unit; a completion token that times
//! `completion_ratio`; a cached prompt token that times `cached_ratio`; a
//! prompt token written to the cache that times `cache_write_ratio`; the
//! sum is scaled by `group_ratio` and rounded up to a whole unit, so a call
//! that used anything never costs zero and the rounding never exceeds one
//! unit. A table with `per_call` set charges that many units (times
//! `group_ratio`) whatever the tokens.

use crate::{PluginError, PriceTable, Usage};

pub const ONE: u64 = 1_000_000;

/// The charge for `usage` under `prices`, in whole units.
pub fn charge(usage: &Usage, prices: &PriceTable) -> Result<u64, PluginError> {
    let one = u128::from(ONE);
    if let Some(per_call) = prices.per_call {
        return scale(u128::from(per_call) * one, prices.group_ratio, one);
    }
    let Some(plain) = usage
        .prompt_tokens
        .checked_sub(usage.cached_tokens)
        .and_then(|rest| rest.checked_sub(usage.cache_write_tokens))
    else {
        return Err(PluginError::new(
            "bad_usage",
            format!(
                "cached ({}) and cache-write ({}) tokens exceed prompt tokens ({})",
                usage.cached_tokens, usage.cache_write_tokens, usage.prompt_tokens
            ),
        ));
    };
    let uncached = u128::from(plain) * one;
    let cached = u128::from(usage.cached_tokens) * u128::from(prices.cached_ratio);
    let written = u128::from(usage.cache_write_tokens) * u128::from(prices.cache_write_ratio);
    let completion = u128::from(usage.completion_tokens) * u128::from(prices.completion_ratio);
    // Token weights are in millionths, and so are both ratios applied below.
    let weighted = uncached
        .checked_add(cached)
        .and_then(|sum| sum.checked_add(written))
        .and_then(|sum| sum.checked_add(completion))
        .ok_or_else(overflow)?;
    let by_model = weighted
        .checked_mul(u128::from(prices.model_ratio))
        .ok_or_else(overflow)?;
    scale(by_model, prices.group_ratio, one * one)
}

/// `ceil(amount * group_ratio / denominator)` as a `u64`.
fn scale(amount: u128, group_ratio: u64, denominator: u128) -> Result<u64, PluginError> {
    let scaled = amount
        .checked_mul(u128::from(group_ratio))
        .ok_or_else(overflow)?
        .div_ceil(denominator * u128::from(ONE));
    u64::try_from(scaled).map_err(|_| overflow())
}

fn overflow() -> PluginError {
    PluginError::new("price_overflow", "the charge does not fit in 64 bits")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(model: u64, completion: u64, cached: u64, group: u64) -> PriceTable {
        PriceTable {
            model_ratio: model,
            completion_ratio: completion,
            cached_ratio: cached,
            cache_write_ratio: 1_250_000,
            group_ratio: group,
            per_call: None,
        }
    }

    fn usage(prompt: u64, completion: u64, cached: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: cached,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
        }
    }

    #[test]
    fn ratio_one_costs_one_unit_per_prompt_token() {
        assert_eq!(
            charge(&usage(1000, 0, 0), &table(ONE, ONE, ONE, ONE)).unwrap(),
            1000
        );
    }

    #[test]
    fn applies_completion_cached_and_group_ratios() {
        // model 2.5, completion 4.0, cached 0.1, group 0.8:
        // (900 + 100*0.1 + 50*4) * 2.5 * 0.8 = (900 + 10 + 200) * 2 = 2220.
        let prices = table(2_500_000, 4_000_000, 100_000, 800_000);
        assert_eq!(charge(&usage(1000, 50, 100), &prices).unwrap(), 2220);
    }

    #[test]
    fn cache_writes_cost_their_own_ratio() {
        // 1000 prompt tokens of which 200 read from and 400 written to the
        // cache, cached 0.1, writes 1.25: 400 + 20 + 500 = 920.
        let mut used = usage(1000, 0, 200);
        used.cache_write_tokens = 400;
        assert_eq!(charge(&used, &table(ONE, ONE, 100_000, ONE)).unwrap(), 920);
        used.cache_write_tokens = 801;
        assert_eq!(
            charge(&used, &table(ONE, ONE, 100_000, ONE))
                .unwrap_err()
                .code,
            "bad_usage"
        );
    }

    #[test]
    fn rounds_up_to_a_whole_unit() {
        // 3 tokens at 0.1 = 0.3 units → 1.
        assert_eq!(
            charge(&usage(3, 0, 0), &table(100_000, ONE, ONE, ONE)).unwrap(),
            1
        );
        assert_eq!(
            charge(&usage(0, 0, 0), &table(100_000, ONE, ONE, ONE)).unwrap(),
            0
        );
    }

    #[test]
    fn per_call_price_ignores_tokens_but_not_the_group() {
        let mut prices = table(ONE, ONE, ONE, 1_500_000);
        prices.per_call = Some(400);
        assert_eq!(charge(&usage(1_000_000, 5, 0), &prices).unwrap(), 600);
    }

    #[test]
    fn refuses_impossible_usage_and_overflow() {
        assert_eq!(
            charge(&usage(1, 0, 2), &table(ONE, ONE, ONE, ONE))
                .unwrap_err()
                .code,
            "bad_usage"
        );
        let huge = table(u64::MAX, u64::MAX, ONE, u64::MAX);
        assert_eq!(
            charge(&usage(u64::MAX, u64::MAX, 0), &huge)
                .unwrap_err()
                .code,
            "price_overflow"
        );
    }
}
