//! The built-in pricing plugin: the ratio model (see `sluice_sdk::ratio`).

use sluice_sdk::{Config, PluginError, PriceTable, Pricing, Request, Usage};

struct RatioPricing;

impl Pricing for RatioPricing {
    fn new(_config: Config) -> Result<Self, PluginError> {
        Ok(RatioPricing)
    }

    fn price(
        &self,
        _request: &Request,
        usage: &Usage,
        prices: &PriceTable,
    ) -> Result<u64, PluginError> {
        sluice_sdk::ratio::charge(usage, prices)
    }
}

sluice_sdk::export_pricing!(RatioPricing);
