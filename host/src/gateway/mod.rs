//! The gateway: everything a request needs, built once from the
//! configuration, and the request phases (see `call`).

mod book;
mod call;
mod count_tokens;
mod inbound;
mod stream;

pub use call::serve_call;
pub use count_tokens::count_tokens;
pub use inbound::Inbound;

use crate::auth::KeyStore;
use crate::billing::Billing;
use crate::config::Config;
use crate::plugins::{Chain, Runtime};
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
    pub chain: Chain,
    pub upstream: UpstreamClient,
    /// `None` when billing is off.
    pub billing: Option<Arc<Billing>>,
    pub admin_token: Option<Secret>,
    pub max_body_bytes: usize,
    /// Keeps the plugin runtime (and its epoch thread) alive.
    _runtime: Arc<Runtime>,
}

impl Gateway {
    /// Opens the database, writes what the configuration seeds (with
    /// `channels`: the file's and the demo's), settles what an earlier run
    /// of this instance left open, and loads the plugin chain.
    pub async fn new(config: &Config, instance: String) -> Result<Self, String> {
        let runtime = Runtime::new(config.plugins.runtime.clone()).map_err(|e| e.to_string())?;
        let chain = Chain::load(&runtime, &config.plugins).await?;
        let store = Store::open(&config.database.url, config.database.max_connections)
            .await
            .map_err(|e| format!("database {}: {e}", redacted_url(&config.database.url)))?;
        store
            .seed(config, &config.channels)
            .await
            .map_err(|e| format!("seeding the database from the configuration: {e}"))?;
        let channels = load_channels(&store, &chain).await?;
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
        for inbound in [Inbound::OpenAiChat, Inbound::AnthropicMessages] {
            if chain.translator(inbound.protocol()).is_none() {
                return Err(format!(
                    "[plugins.translators] must name a translator for {:?}",
                    inbound.protocol()
                ));
            }
        }
        Ok(Gateway {
            keys: KeyStore::new(store.clone()),
            store,
            channels: ArcSwap::from_pointee(channels),
            chain,
            upstream: UpstreamClient::new(config.upstream.clone()),
            billing,
            admin_token,
            max_body_bytes: config.max_body_bytes,
            _runtime: runtime,
        })
    }

    /// Re-reads the channels from the database (after the admin API
    /// changed them); requests in flight keep the table they started with.
    pub async fn reload_channels(&self) -> Result<(), String> {
        self.channels
            .store(Arc::new(load_channels(&self.store, &self.chain).await?));
        Ok(())
    }

    /// Checks a channel can be served before it is stored.
    pub fn check_channel(&self, spec: &ChannelSpec) -> Result<(), String> {
        translatable(&self.chain, spec)?;
        ChannelTable::new(std::slice::from_ref(spec)).map(|_| ())
    }
}

async fn load_channels(store: &Store, chain: &Chain) -> Result<ChannelTable, String> {
    let specs = store.channels().await.map_err(|e| e.to_string())?;
    for spec in &specs {
        translatable(chain, spec)?;
    }
    ChannelTable::new(&specs)
}

fn translatable(chain: &Chain, spec: &ChannelSpec) -> Result<(), String> {
    match chain.translator(&spec.protocol) {
        Some(_) => Ok(()),
        None => Err(format!(
            "channel {:?} speaks {:?}, which no translator in [plugins.translators] handles",
            spec.name, spec.protocol
        )),
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
