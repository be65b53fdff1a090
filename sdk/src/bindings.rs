//! Generated bindings, one module per plugin world.
//!
//! The shared `types` and `host` interfaces are generated once, in `common`,
//! and every world reuses them, so a plugin author sees one `Envelope` type
//! whatever kind of plugin they write. Each world carries its own
//! component-type section, linked in only by the export macro of that kind,
//! so a component describes exactly the world it implements.

pub mod common {
    wit_bindgen::generate!({
        inline: "
            package sluice:sdk;
            world common {
                import sluice:plugin/types@0.4.0;
                import sluice:plugin/host@0.4.0;
            }
        ",
        path: "../wit",
        runtime_path: "::sluice_sdk::__private::rt",
        generate_all,
    });
}

pub use common::sluice::plugin::{host, types};

/// One module per plugin world, all sharing `types` and `host`.
macro_rules! world_bindings {
    ($module:ident, $world:literal, $export_macro:literal, $bindings_path:literal) => {
        pub mod $module {
            wit_bindgen::generate!({
                path: "../wit",
                world: $world,
                runtime_path: "::sluice_sdk::__private::rt",
                pub_export_macro: true,
                export_macro_name: $export_macro,
                default_bindings_module: $bindings_path,
                with: {
                    "sluice:plugin/types@0.4.0": crate::bindings::types,
                    "sluice:plugin/host@0.4.0": crate::bindings::host,
                },
            });
        }
    };
}

world_bindings!(
    router,
    "router-plugin",
    "export_router_world",
    "::sluice_sdk::bindings::router"
);
world_bindings!(
    risk,
    "risk-plugin",
    "export_risk_world",
    "::sluice_sdk::bindings::risk"
);
world_bindings!(
    pricing,
    "pricing-plugin",
    "export_pricing_world",
    "::sluice_sdk::bindings::pricing"
);
world_bindings!(
    translator,
    "translator-plugin",
    "export_translator_world",
    "::sluice_sdk::bindings::translator"
);
