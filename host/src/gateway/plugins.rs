//! The plugin chain's life in a running gateway: built from the built-in,
//! folder and uploaded bundles; a change checked before it serves; swapped
//! in whole; announced to the other replicas, and followed when they
//! announce theirs.

use super::{Gateway, serves_all};
use crate::plugins::{Bundle, Chain, Manifest};
use crate::store::plugins::{OPERATOR, StoredBundle};
use crate::store::{Store, StoreError};
use std::sync::{Arc, Weak};

#[derive(Debug, thiserror::Error)]
pub enum PluginChangeError {
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The chain the change would make does not load or does not serve.
    #[error("{0}")]
    Refused(String),
}

/// What to change in the uploaded bundles before building a chain: the
/// bundle called `.0` becomes `.1` (`None`: no uploaded bundle of that name).
type Change<'a> = (&'a str, Option<Bundle>);

impl Gateway {
    /// Loads the plugin chain again (the plugin folder or the database
    /// changed) and swaps it in if every bundle loads and checks; otherwise
    /// the current chain keeps serving and the reason is logged.
    pub async fn reload_plugins(&self) {
        let _changing = self.plugin_changes.lock().await;
        match self.build_chain(None).await {
            Ok(chain) => self.swap_chain(chain),
            Err(reason) => {
                tracing::error!(%reason, "plugin bundle refused; the previous chain keeps serving")
            }
        }
    }

    /// Largest component the admin API accepts.
    pub fn max_bundle_bytes(&self) -> usize {
        usize::try_from(self.plugins.max_bundle_mib << 20).unwrap_or(usize::MAX)
    }

    /// Compiles and checks `bundle` on its own: a valid component exporting
    /// the world its manifest declares, whose instances start.
    pub async fn check_bundle(&self, bundle: &Bundle) -> Result<(), String> {
        self.runtime
            .load(bundle)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Makes `version` of the uploaded bundle `name` active operator-wide
    /// (`None`: the built-in or folder bundle of that name serves again),
    /// once the chain it makes loads and serves every channel; then swaps
    /// that chain in and tells the other replicas.
    pub async fn activate_plugin(
        &self,
        name: &str,
        version: Option<&str>,
        actor: &str,
    ) -> Result<(), PluginChangeError> {
        let _changing = self.plugin_changes.lock().await;
        let bundle = match version {
            Some(version) => Some(
                stored_bundle(self.store.bundle(OPERATOR, name, version).await?)
                    .map_err(PluginChangeError::Refused)?,
            ),
            None => None,
        };
        let chain = self
            .build_chain(Some((name, bundle)))
            .await
            .map_err(PluginChangeError::Refused)?;
        self.store
            .activate_bundle(OPERATOR, name, version, actor)
            .await?;
        self.swap_chain(chain);
        if let Err(error) = self.store.announce_plugin_change().await {
            tracing::error!(%error, "the other replicas were not told of the plugin change; they pick it up at their next reload");
        }
        Ok(())
    }

    /// The version active before the current one: what a rollback
    /// activates.
    pub async fn previous_plugin_version(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.store.previous_activation(OPERATOR, name).await
    }

    /// The chain of what is in the folder and the database now, with
    /// `change` applied, reusing the current chain's unchanged plugins.
    async fn build_chain(&self, change: Option<Change<'_>>) -> Result<Chain, String> {
        let mut uploaded = uploaded_bundles(&self.store).await?;
        if let Some((name, bundle)) = change {
            uploaded.retain(|b| b.manifest.name != name);
            uploaded.extend(bundle);
        }
        let previous = self.chain.load_full();
        let chain = Chain::load(&self.runtime, &self.plugins, &uploaded, Some(&previous)).await?;
        let specs = self.store.channels().await.map_err(|e| e.to_string())?;
        serves_all(&chain, &specs)?;
        Ok(chain)
    }

    fn swap_chain(&self, chain: Chain) {
        let changed = chain.changed_since(&self.chain.load());
        if !changed.is_empty() {
            tracing::info!(?changed, "plugin chain swapped");
            self.chain.store(Arc::new(chain));
        }
    }
}

/// The uploaded bundles active operator-wide.
pub(super) async fn uploaded_bundles(store: &Store) -> Result<Vec<Bundle>, String> {
    store
        .active_bundles()
        .await
        .map_err(|e| format!("reading the uploaded plugin bundles: {e}"))?
        .into_iter()
        .filter(|(scope, _)| scope == OPERATOR)
        .map(|(_, stored)| stored_bundle(stored))
        .collect()
}

/// A bundle from the database, as loaded.
fn stored_bundle(stored: StoredBundle) -> Result<Bundle, String> {
    let manifest = Manifest::parse(&stored.manifest)
        .map_err(|e| format!("stored bundle {}@{}: {e}", stored.name, stored.version))?;
    Ok(Bundle::new(manifest, stored.component))
}

/// Follows the other replicas' plugin changes (PostgreSQL only) until the
/// gateway is gone: a notice, or a reconnection that may have missed
/// some, reloads the chain.
pub async fn follow_fleet(gateway: Weak<Gateway>) {
    let Some(store) = gateway.upgrade().map(|g| g.store.clone()) else {
        return;
    };
    let mut notices = match store.plugin_notices().await {
        Ok(Some(notices)) => notices,
        Ok(None) => return,
        Err(error) => {
            tracing::error!(%error, "cannot listen for plugin changes; this replica follows only its own");
            return;
        }
    };
    loop {
        notices.next().await;
        let Some(gateway) = gateway.upgrade() else {
            return;
        };
        gateway.reload_plugins().await;
    }
}
