//! The gateway: everything a request needs, built once from the
//! configuration, and the request phases (see `call`).

mod call;
mod count_tokens;
mod inbound;
mod stream;

pub use call::serve_call;
pub use count_tokens::count_tokens;
pub use inbound::Inbound;

use crate::auth::KeyStore;
use crate::config::Config;
use crate::plugins::{Chain, Runtime};
use crate::routing::ChannelTable;
use crate::upstream::UpstreamClient;
use std::sync::Arc;

pub struct Gateway {
    pub keys: KeyStore,
    pub channels: ChannelTable,
    pub chain: Chain,
    pub upstream: UpstreamClient,
    pub max_body_bytes: usize,
    /// Keeps the plugin runtime (and its epoch thread) alive.
    _runtime: Arc<Runtime>,
}

impl Gateway {
    pub async fn new(config: &Config) -> Result<Self, String> {
        let runtime = Runtime::new(config.plugins.runtime.clone()).map_err(|e| e.to_string())?;
        let chain = Chain::load(&runtime, &config.plugins).await?;
        let channels = ChannelTable::new(&config.channels)?;
        for channel in &config.channels {
            if chain.translator(&channel.protocol).is_none() {
                return Err(format!(
                    "channel {:?} speaks {:?}, which no translator in [plugins.translators] handles",
                    channel.name, channel.protocol
                ));
            }
        }
        for inbound in [Inbound::OpenAiChat, Inbound::AnthropicMessages] {
            if chain.translator(inbound.protocol()).is_none() {
                return Err(format!(
                    "[plugins.translators] must name a translator for {:?}",
                    inbound.protocol()
                ));
            }
        }
        Ok(Gateway {
            keys: KeyStore::new(&config.keys),
            channels,
            chain,
            upstream: UpstreamClient::new(config.upstream.clone()),
            max_body_bytes: config.max_body_bytes,
            _runtime: runtime,
        })
    }
}
