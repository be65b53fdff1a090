//! The plugin chain a request runs through: the risk check, the router,
//! pricing, and a translator per protocol, chosen by name among the built-in bundles and
//! those in the configured folder.

use super::builtin;
use super::bundle::Bundle;
use super::kinds::{LoadedPlugin, Pricing, Risk, Router, Translator};
use super::runtime::Runtime;
use crate::config::PluginsConfig;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub struct Chain {
    pub risk: Risk,
    pub router: Router,
    pub pricing: Pricing,
    translators: HashMap<String, Translator>,
}

impl Chain {
    pub fn translator(&self, protocol: &str) -> Option<&Translator> {
        self.translators.get(protocol)
    }

    /// Loads the chain `config` names. A bundle in the folder replaces a
    /// built-in of the same name.
    pub async fn load(runtime: &Arc<Runtime>, config: &PluginsConfig) -> Result<Self, String> {
        let mut bundles: BTreeMap<String, Bundle> = builtin::bundles()
            .into_iter()
            .map(|b| (b.manifest.name.clone(), b))
            .collect();
        if let Some(dir) = &config.dir {
            for bundle in read_folder(dir)? {
                bundles.insert(bundle.manifest.name.clone(), bundle);
            }
        }
        let risk = kind(load(runtime, &bundles, config, &config.risk).await?, "risk")?;
        let router = kind(
            load(runtime, &bundles, config, &config.router).await?,
            "router",
        )?;
        let pricing = kind(
            load(runtime, &bundles, config, &config.pricing).await?,
            "pricing",
        )?;
        let mut translators = HashMap::new();
        for (protocol, name) in &config.translators {
            translators.insert(
                protocol.clone(),
                kind(load(runtime, &bundles, config, name).await?, "translator")?,
            );
        }
        Ok(Chain {
            risk,
            router,
            pricing,
            translators,
        })
    }
}

/// Loads the bundle called `name`, with the configuration `config` gives it.
async fn load(
    runtime: &Arc<Runtime>,
    bundles: &BTreeMap<String, Bundle>,
    config: &PluginsConfig,
    name: &str,
) -> Result<LoadedPlugin, String> {
    let mut bundle = bundles
        .get(name)
        .cloned()
        .ok_or_else(|| format!("no plugin bundle is named {name:?}"))?;
    if let Some(table) = config.config.get(name) {
        bundle.manifest.config = table.clone();
    }
    runtime
        .load(&bundle)
        .await
        .map(|loaded| loaded.plugin)
        .map_err(|e| e.to_string())
}

fn kind<P: TryFrom<LoadedPlugin, Error = LoadedPlugin>>(
    plugin: LoadedPlugin,
    wanted: &str,
) -> Result<P, String> {
    P::try_from(plugin).map_err(|other| format!("{other:?} cannot serve as the {wanted} plugin"))
}

fn read_folder(dir: &std::path::Path) -> Result<Vec<Bundle>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("plugin folder {}: {e}", dir.display()))?;
    let mut bundles = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.join("plugin.toml").is_file() {
            bundles.push(Bundle::read_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?);
        }
    }
    Ok(bundles)
}
