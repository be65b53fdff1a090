//! The plugin chain a request runs through: the risk check, the router,
//! pricing, and a translator per protocol, chosen by name among the
//! built-in bundles, those in the configured folder and those uploaded; and
//! a tenant's chain, the operator's with the tenant's own router or pricing
//! in place.

use super::builtin;
use super::bundle::Bundle;
use super::kinds::{LoadedPlugin, Pricing, Risk, Router, Translator};
use super::runtime::Runtime;
use crate::config::PluginsConfig;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One version of the chain. Requests take the current one once, when they
/// start, and keep it to the end, so a swap never changes a request in
/// flight.
pub struct Chain {
    pub risk: Risk,
    pub router: Router,
    /// What the caller's user is charged.
    pub pricing: Pricing,
    /// What the operator charges the tenant, when the tenant prices its
    /// users with a plugin of its own.
    pub operator_pricing: Option<Pricing>,
    /// Protocol → translator: a handful, so a scan (every call looks one
    /// up) is cheaper than hashing the name.
    translators: Vec<(String, Translator)>,
    /// Bundle name → (what was loaded, the plugin), so the next version of
    /// the chain reuses every plugin whose bundle did not change.
    loaded: HashMap<String, (String, LoadedPlugin)>,
}

impl Chain {
    pub fn translator(&self, protocol: &str) -> Option<&Translator> {
        self.translators
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, translator)| translator)
    }

    /// Loads the chain `config` names. A bundle in the folder replaces a
    /// built-in of the same name, and an `uploaded` one replaces both.
    /// Plugins of `previous` whose bundle and configuration are unchanged
    /// are reused, not loaded again.
    pub async fn load(
        runtime: &Arc<Runtime>,
        config: &PluginsConfig,
        uploaded: &[Bundle],
        previous: Option<&Chain>,
    ) -> Result<Self, String> {
        let mut bundles: BTreeMap<String, Bundle> = builtin::bundles()
            .into_iter()
            .map(|b| (b.manifest.name.clone(), b))
            .collect();
        if let Some(dir) = &config.dir {
            for bundle in read_folder(dir)? {
                bundles.insert(bundle.manifest.name.clone(), bundle);
            }
        }
        for bundle in uploaded {
            bundles.insert(bundle.manifest.name.clone(), bundle.clone());
        }
        let mut loader = Loader {
            runtime,
            bundles: &bundles,
            config,
            previous: previous.map(|chain| &chain.loaded),
            loaded: HashMap::new(),
        };
        let risk = kind(loader.load(&config.risk).await?, "risk")?;
        let router = kind(loader.load(&config.router).await?, "router")?;
        let pricing = kind(loader.load(&config.pricing).await?, "pricing")?;
        let mut translators = Vec::with_capacity(config.translators.len());
        for (protocol, name) in &config.translators {
            translators.push((
                protocol.clone(),
                kind(loader.load(name).await?, "translator")?,
            ));
        }
        Ok(Chain {
            risk,
            router,
            pricing,
            operator_pricing: None,
            translators,
            loaded: loader.loaded,
        })
    }

    /// `operator`'s chain with a tenant's own router and pricing `bundles`
    /// in place, reusing the plugins of the tenant's `previous` chain whose
    /// bundles did not change.
    pub async fn for_tenant(
        runtime: &Arc<Runtime>,
        operator: &Chain,
        bundles: &[Bundle],
        previous: Option<&Chain>,
    ) -> Result<Self, String> {
        let bundles: BTreeMap<String, Bundle> = bundles
            .iter()
            .map(|b| (b.manifest.name.clone(), b.clone()))
            .collect();
        let no_overrides = PluginsConfig::default();
        let mut loader = Loader {
            runtime,
            bundles: &bundles,
            config: &no_overrides,
            previous: previous.map(|chain| &chain.loaded),
            loaded: HashMap::new(),
        };
        let mut chain = Chain {
            risk: operator.risk.clone(),
            router: operator.router.clone(),
            pricing: operator.pricing.clone(),
            operator_pricing: None,
            translators: operator.translators.clone(),
            loaded: HashMap::new(),
        };
        for name in bundles.keys() {
            match loader.load(name).await? {
                LoadedPlugin::Router(router) => chain.router = router,
                LoadedPlugin::Pricing(pricing) => {
                    chain.operator_pricing = Some(std::mem::replace(&mut chain.pricing, pricing));
                }
                other => {
                    return Err(format!(
                        "{other:?}: a tenant may bring only router and pricing plugins"
                    ));
                }
            }
        }
        chain.loaded = loader.loaded;
        Ok(chain)
    }

    /// The bundles of this chain that `previous` did not have as they are.
    /// A tenant's chain names only the tenant's own.
    pub fn changed_since(&self, previous: &Chain) -> Vec<String> {
        let mut changed: Vec<String> = self
            .loaded
            .iter()
            .filter(|(name, (fingerprint, _))| {
                previous
                    .loaded
                    .get(*name)
                    .is_none_or(|(before, _)| before != fingerprint)
            })
            .map(|(_, (_, plugin))| plugin.id().to_string())
            .collect();
        changed.sort();
        changed
    }
}

struct Loader<'a> {
    runtime: &'a Arc<Runtime>,
    bundles: &'a BTreeMap<String, Bundle>,
    config: &'a PluginsConfig,
    previous: Option<&'a HashMap<String, (String, LoadedPlugin)>>,
    loaded: HashMap<String, (String, LoadedPlugin)>,
}

impl Loader<'_> {
    /// The bundle called `name`, with the configuration `config` gives it:
    /// the plugin loaded before if nothing about it changed.
    async fn load(&mut self, name: &str) -> Result<LoadedPlugin, String> {
        let authored = self
            .bundles
            .get(name)
            .ok_or_else(|| format!("no plugin bundle is named {name:?}"))?;
        let mut bundle = authored.clone();
        let reconfigured = self.config.config.get(name);
        if let Some(table) = reconfigured {
            bundle.manifest.config = table.clone();
        }
        // The component's digest and every manifest setting (limits,
        // configuration) make the plugin what it is.
        let fingerprint = format!("{}{:?}", bundle.id().content_hash, bundle.manifest);
        let unchanged = self
            .loaded
            .get(name)
            .or_else(|| self.previous.and_then(|previous| previous.get(name)))
            .filter(|(before, _)| *before == fingerprint)
            .map(|(_, plugin)| plugin.clone());
        let plugin = match unchanged {
            Some(plugin) => plugin,
            // Self-tests hold for the configuration their author wrote: an
            // operator's own configuration may mean other answers.
            None if reconfigured.is_some() => {
                self.runtime
                    .load(authored)
                    .await
                    .map_err(|e| e.to_string())?;
                self.runtime
                    .compile(&bundle)
                    .await
                    .map(|loaded| loaded.plugin)
                    .map_err(|e| e.to_string())?
            }
            None => self
                .runtime
                .load(&bundle)
                .await
                .map(|loaded| loaded.plugin)
                .map_err(|e| e.to_string())?,
        };
        self.loaded
            .insert(name.to_string(), (fingerprint, plugin.clone()));
        Ok(plugin)
    }
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

/// Every chain serving now: the operator's, and one per tenant that has
/// plugins of its own.
pub struct Chains {
    pub operator: Arc<Chain>,
    pub tenants: HashMap<String, Arc<Chain>>,
}

impl Chains {
    pub fn new(operator: Chain) -> Self {
        Chains {
            operator: Arc::new(operator),
            tenants: HashMap::new(),
        }
    }

    /// The chain serving `tenant`'s calls.
    pub fn for_tenant(&self, tenant: &str) -> &Arc<Chain> {
        self.tenants.get(tenant).unwrap_or(&self.operator)
    }
}
