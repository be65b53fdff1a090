//! The plugins built into the binary: the default chain that serves with no
//! plugin folder at all.

use super::bundle::{Bundle, Manifest};

macro_rules! embedded {
    ($name:literal) => {
        (
            include_str!(concat!(
                env!("SLUICE_BUNDLES_DIR"),
                "/",
                $name,
                "/plugin.toml"
            )),
            include_bytes!(concat!(
                env!("SLUICE_BUNDLES_DIR"),
                "/",
                $name,
                "/plugin.wasm"
            ))
            .as_slice(),
        )
    };
}

const EMBEDDED: [(&str, &[u8]); 6] = [
    embedded!("router"),
    embedded!("risk"),
    embedded!("pricing"),
    embedded!("openai"),
    embedded!("anthropic"),
    embedded!("gemini"),
];

/// The built-in bundles: `router`, `risk`, `pricing` and the translators
/// `openai`, `anthropic` and `gemini`.
pub fn bundles() -> Vec<Bundle> {
    EMBEDDED
        .iter()
        .map(|(manifest, component)| {
            let manifest = Manifest::parse(manifest).expect("built-in manifests are valid");
            Bundle::new(manifest, *component)
        })
        .collect()
}

/// The built-in bundle called `name`.
pub fn named(name: &str) -> Option<Bundle> {
    bundles()
        .into_iter()
        .find(|bundle| bundle.manifest.name == name)
}
