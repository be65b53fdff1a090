//! The gateway: everything a request needs, built once from the
//! configuration, and the request phases (see `call`).

mod book;
mod call;
mod count_tokens;
mod dry_run;
mod inbound;
mod plugins;
mod stream;

pub use call::serve_call;
pub use count_tokens::count_tokens;
pub use dry_run::{Difference, DryRunReport, PricingChanges, RoutingChanges};
pub use inbound::Inbound;
pub use plugins::{Change, PluginChangeError, follow_fleet, stored_bundle};

use crate::auth::KeyStore;
use crate::billing::Billing;
use crate::config::{Config, PluginsConfig};
use crate::plugins::{Chain, Chains, Runtime};
use crate::routing::{ChannelTable, Secret};
use crate::store::Store;
use crate::store::channels::ChannelSpec;
use crate::upstream::UpstreamClient;
use arc_swap::ArcSwap;
use std::sync::Arc;

pub struct Gateway {
    pub store: Store,
    pub keys: KeyStore,
    pub channels: ArcSwap<ChannelTable>,
    /// The plugin chains serving now; a request takes its tenant's once
    /// (see `Chain`).
    pub chains: ArcSwap<Chains>,
    plugins: PluginsConfig,
    /// Held while the chain is rebuilt, so changes apply one at a time.
    plugin_changes: tokio::sync::Mutex<()>,
    pub upstream: UpstreamClient,
    /// `None` when billing is off.
    pub billing: Option<Arc<Billing>>,
    pub admin_token: Option<Secret>,
    pub max_body_bytes: usize,
    runtime: Arc<Runtime>,
}

impl Gateway {
    /// Opens the database, writes what the configuration seeds (with
    /// `channels`: the file's and the demo's), settles what an earlier run
    /// of this instance left open, and loads the plugin chain (with the
    /// uploaded versions that were active when it last ran).
    pub async fn new(config: &Config, instance: String) -> Result<Self, String> {
        let runtime = Runtime::new(config.plugins.runtime.clone()).map_err(|e| e.to_string())?;
        let store = Store::open(&config.database.url, config.database.max_connections)
            .await
            .map_err(|e| format!("database {}: {e}", redacted_url(&config.database.url)))?;
        store
            .seed(config, &config.channels)
            .await
            .map_err(|e| format!("seeding the database from the configuration: {e}"))?;
        // Built-in and folder bundles first; the uploaded ones join below.
        let chain = Chain::load(&runtime, &config.plugins, &[], None).await?;
        let specs = store.channels().await.map_err(|e| e.to_string())?;
        serves_all(&chain, &specs)?;
        let channels = ChannelTable::new(&specs)?;
        let billing = if config.billing.enabled {
            let billing = Billing::new(
                store.clone(),
                instance.clone(),
                config.billing.completion_reserve_tokens,
                config.database.max_connections.div_ceil(2),
            )
            .await
            .map_err(|e| e.to_string())?;
            let reconciled = billing.reconcile().await.map_err(|e| e.to_string())?;
            if reconciled > 0 {
                tracing::warn!(reconciled, %instance, "refunded calls an earlier run left unsettled");
            }
            let billing = Arc::new(billing);
            billing.sweep_stale_holds(config.billing.stale_hold_after());
            Some(billing)
        } else {
            None
        };
        let admin_token = match &config.admin.token_env {
            Some(variable) => Some(Secret::new(std::env::var(variable).map_err(|_| {
                format!("[admin] token_env: environment variable {variable} is not set")
            })?)),
            None => None,
        };
        let gateway = Gateway {
            keys: KeyStore::new(store.clone()),
            store,
            channels: ArcSwap::from_pointee(channels),
            chains: ArcSwap::from_pointee(Chains::new(chain)),
            plugins: config.plugins.clone(),
            plugin_changes: tokio::sync::Mutex::new(()),
            upstream: UpstreamClient::new(config.upstream.clone()),
            billing,
            admin_token,
            max_body_bytes: config.max_body_bytes,
            runtime,
        };
        let chains = gateway.build_chains(None).await?;
        gateway.chains.store(Arc::new(chains));
        Ok(gateway)
    }

    /// Figures of every plugin version loaded since start.
    pub fn plugin_metrics(&self) -> &crate::plugins::metrics::MetricsRegistry {
        &self.runtime.metrics
    }

    /// Re-reads the channels from the database (after the admin API
    /// changed them); requests in flight keep the table they started with.
    pub async fn reload_channels(&self) -> Result<(), String> {
        let specs = self.store.channels().await.map_err(|e| e.to_string())?;
        serves_all(&self.chains.load().operator, &specs)?;
        self.channels.store(Arc::new(ChannelTable::new(&specs)?));
        Ok(())
    }

    /// Checks a channel can be served before it is stored.
    pub fn check_channel(&self, spec: &ChannelSpec) -> Result<(), String> {
        serves_all(&self.chains.load().operator, std::slice::from_ref(spec))?;
        ChannelTable::new(std::slice::from_ref(spec)).map(|_| ())
    }
}

/// Whether `chain` has a translator for every inbound protocol and for
/// every channel of `specs`.
fn serves_all(chain: &Chain, specs: &[ChannelSpec]) -> Result<(), String> {
    for inbound in [Inbound::OpenAiChat, Inbound::AnthropicMessages] {
        if chain.translator(inbound.protocol()).is_none() {
            return Err(format!(
                "[plugins.translators] must name a translator for {:?}",
                inbound.protocol()
            ));
        }
    }
    match specs
        .iter()
        .find(|spec| chain.translator(&spec.protocol).is_none())
    {
        Some(spec) => Err(format!(
            "channel {:?} speaks {:?}, which no translator in [plugins.translators] handles",
            spec.name, spec.protocol
        )),
        None => Ok(()),
    }
}

/// A database URL fit for logs: without its password.
fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:<redacted>{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
