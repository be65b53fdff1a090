//! Host-side bindings to the plugin worlds in `wit/`. Every world shares
//! the `types` and `host` interfaces generated for the router world: the
//! `request` resource the host lends must be one type across worlds (the
//! linker registers it once), and one `Caller` serves every kind.

mod router {
    // Serializable: a call's caller and usage are recorded for dry runs.
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "router-plugin",
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

/// The other worlds, reusing the router world's `types` and `host`, with
/// extra derives where their types are recorded.
macro_rules! world_bindings {
    ($module:ident, $world:literal $(, $derive:path)*) => {
        mod $module {
            wasmtime::component::bindgen!({
                path: "../wit",
                world: $world,
                exports: { default: async },
                additional_derives: [$($derive),*],
                with: {
                    "sluice:plugin/types": super::router::sluice::plugin::types,
                    "sluice:plugin/host": super::router::sluice::plugin::host,
                },
            });
        }
    };
}

world_bindings!(risk, "risk-plugin");
world_bindings!(translator, "translator-plugin");
// Price tables are recorded with each call, for dry runs.
world_bindings!(
    pricing,
    "pricing-plugin",
    serde::Serialize,
    serde::Deserialize
);

pub use pricing::exports::sluice::plugin::pricing::PriceTable;
pub use pricing::{PricingPlugin, PricingPluginPre};
pub use risk::exports::sluice::plugin::risk::{Denial, Verdict};
pub use risk::sluice::plugin::request_content;
pub use risk::{RiskPlugin, RiskPluginPre};
pub use router::sluice::plugin::types::{
    Caller, Channel, ChannelCandidate, PluginError, Request, Usage,
};
pub use router::sluice::plugin::{host, types};
pub use router::{RouterPlugin, RouterPluginPre};
pub use translator::exports::sluice::plugin::translator::{
    CredentialPlacement, Direction, ErrorResponse, StreamEnd, UpstreamRequest,
};
pub use translator::{TranslatorPlugin, TranslatorPluginPre};
