//! The plugin chains' life in a running gateway: built from the built-in,
//! folder and uploaded bundles (the operator's chain, and one per tenant
//! with plugins of its own); a change checked before it serves; swapped in
//! whole; announced to the other replicas, and followed when they announce
//! theirs.

use super::{Gateway, serves_all};
use crate::plugins::{Bundle, Chain, Chains, Manifest};
use crate::store::delegation::PluginLimits;
use crate::store::plugins::{OPERATOR, StoredBundle, slot};
use crate::store::{Store, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PluginChangeError {
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The chain the change would make does not load or does not serve.
    #[error("{0}")]
    Refused(String),
}

/// A change to the active uploaded bundles: in `scope`, `slot` becomes
/// `bundle` (`None`: no uploaded bundle, the operator's serves).
pub struct Change<'a> {
    pub scope: &'a str,
    pub slot: &'a str,
    pub bundle: Option<Bundle>,
}

/// Active uploaded bundles: scope → slot → bundle.
type Uploaded = BTreeMap<String, BTreeMap<String, Bundle>>;

impl Gateway {
    /// Loads the plugin chains again (the plugin folder or the database
    /// changed) and swaps them in if the operator's loads and checks;
    /// otherwise the current chains keep serving and the reason is logged.
    pub async fn reload_plugins(&self) {
        let _changing = self.plugin_changes.lock().await;
        match self.build_chains(None).await {
            Ok(chains) => self.swap_chains(chains),
            Err(reason) => {
                tracing::error!(%reason, "plugin bundle refused; the previous chain keeps serving")
            }
        }
    }

    /// Largest component the operator may upload.
    pub fn max_bundle_bytes(&self) -> usize {
        usize::try_from(self.plugins.max_bundle_mib << 20).unwrap_or(usize::MAX)
    }

    /// Compiles `bundle` and checks it on its own (a valid component
    /// exporting the world its manifest declares, whose instances start and
    /// pass its self-tests), within `limits` for a tenant's.
    pub async fn check_bundle(
        &self,
        bundle: &Bundle,
        limits: Option<&PluginLimits>,
    ) -> Result<(), String> {
        let bundle = match limits {
            Some(limits) => within(bundle.clone(), limits),
            None => bundle.clone(),
        };
        self.runtime
            .load(&bundle)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Applies `change` once the chains it makes load and serve every
    /// channel; then swaps them in and tells the other replicas.
    pub async fn activate_plugin(
        &self,
        change: Change<'_>,
        actor: &str,
    ) -> Result<(), PluginChangeError> {
        let _changing = self.plugin_changes.lock().await;
        let (scope, slot) = (change.scope, change.slot);
        let named = change
            .bundle
            .as_ref()
            .map(|b| (b.manifest.name.clone(), b.manifest.version.clone()));
        let chains = self
            .build_chains(Some(change))
            .await
            .map_err(PluginChangeError::Refused)?;
        let named = named.as_ref().map(|(n, v)| (n.as_str(), v.as_str()));
        self.store
            .activate_bundle(scope, slot, named, actor)
            .await?;
        self.swap_chains(chains);
        if let Err(error) = self.store.announce_plugin_change().await {
            tracing::error!(%error, "the other replicas were not told of the plugin change; they pick it up at their next reload");
        }
        Ok(())
    }

    /// The chains of what is in the folder and the database now, with
    /// `change` applied, reusing the current chains' unchanged plugins. A
    /// tenant whose chain no longer loads keeps the one it had (or the
    /// operator's), with an error logged, unless `change` is that tenant's:
    /// then the change is refused.
    pub(super) async fn build_chains(&self, change: Option<Change<'_>>) -> Result<Chains, String> {
        let mut uploaded = uploaded_bundles(&self.store).await?;
        let changed_scope = change.as_ref().map(|c| c.scope.to_string());
        if let Some(change) = change {
            let slots = uploaded.entry(change.scope.to_string()).or_default();
            match change.bundle {
                Some(bundle) => slots.insert(change.slot.to_string(), bundle),
                None => slots.remove(change.slot),
            };
        }
        let previous = self.chains.load_full();
        let operator_bundles: Vec<_> = uploaded
            .remove(OPERATOR)
            .unwrap_or_default()
            .into_values()
            .collect();
        let operator = Chain::load(
            &self.runtime,
            &self.plugins,
            &operator_bundles,
            Some(&previous.operator),
        )
        .await?;
        let specs = self.store.channels().await.map_err(|e| e.to_string())?;
        serves_all(&operator, &specs)?;
        let mut tenants = HashMap::new();
        for (tenant, slots) in uploaded {
            if slots.is_empty() {
                continue;
            }
            match self
                .tenant_chain(&tenant, &operator, slots, previous.tenants.get(&tenant))
                .await
            {
                Ok(Some(chain)) => {
                    tenants.insert(tenant, Arc::new(chain));
                }
                Ok(None) => {}
                Err(reason) if changed_scope.as_deref() == Some(tenant.as_str()) => {
                    return Err(reason);
                }
                Err(reason) => {
                    tracing::error!(%tenant, %reason, "a tenant's plugins no longer load; it keeps the chain it had");
                    if let Some(kept) = previous.tenants.get(&tenant) {
                        tenants.insert(tenant, kept.clone());
                    }
                }
            }
        }
        Ok(Chains {
            operator: Arc::new(operator),
            tenants,
        })
    }

    /// The operator's chain with the tenant's plugins in place, within the
    /// tenant's limits; none when none of them may serve.
    async fn tenant_chain(
        &self,
        tenant: &str,
        operator: &Chain,
        slots: BTreeMap<String, Bundle>,
        previous: Option<&Arc<Chain>>,
    ) -> Result<Option<Chain>, String> {
        let limits = self
            .store
            .plugin_limits(tenant)
            .await
            .map_err(|e| e.to_string())?;
        // A kind the operator has since taken away stops serving with it.
        let bundles: Vec<_> = slots
            .into_values()
            .filter(|bundle| {
                limits
                    .kinds
                    .iter()
                    .any(|k| k == bundle.manifest.kind.as_str())
            })
            .map(|bundle| within(bundle, &limits))
            .collect();
        if bundles.is_empty() {
            // The operator's chain serves it, as for a tenant that uploaded
            // nothing.
            return Ok(None);
        }
        Chain::for_tenant(&self.runtime, operator, &bundles, previous.map(|c| &**c))
            .await
            .map(Some)
            .map_err(|reason| format!("tenant {tenant}: {reason}"))
    }

    fn swap_chains(&self, chains: Chains) {
        let previous = self.chains.load();
        let mut changed = chains.operator.changed_since(&previous.operator);
        for (tenant, chain) in &chains.tenants {
            let before = previous.tenants.get(tenant).unwrap_or(&previous.operator);
            changed.extend(
                chain
                    .changed_since(before)
                    .into_iter()
                    .map(|plugin| format!("{plugin} for tenant {tenant}")),
            );
        }
        let dropped: Vec<_> = previous
            .tenants
            .keys()
            .filter(|tenant| !chains.tenants.contains_key(*tenant))
            .map(|tenant| format!("tenant {tenant} back on the operator's chain"))
            .collect();
        changed.extend(dropped);
        if !changed.is_empty() {
            tracing::info!(?changed, "plugin chain swapped");
            self.chains.store(Arc::new(chains));
        }
    }
}

/// `bundle` held to a tenant's `limits`: its deadline and memory cap are
/// the tenant's, or lower if its manifest asks for less.
pub(super) fn within(mut bundle: Bundle, limits: &PluginLimits) -> Bundle {
    let cap = |asked: Option<u64>, limit: i64| {
        let limit = u64::try_from(limit).unwrap_or(1);
        Some(asked.map_or(limit, |asked| asked.min(limit)))
    };
    let manifest = &mut bundle.manifest;
    manifest.limits.deadline_ms = cap(manifest.limits.deadline_ms, limits.deadline_ms);
    manifest.limits.memory_mib = cap(manifest.limits.memory_mib, limits.memory_mib);
    bundle
}

/// The active uploaded bundles of every scope, by slot.
pub(super) async fn uploaded_bundles(store: &Store) -> Result<Uploaded, String> {
    let mut uploaded = Uploaded::new();
    let active = store
        .active_bundles()
        .await
        .map_err(|e| format!("reading the uploaded plugin bundles: {e}"))?;
    for (scope, stored) in active {
        let slot = slot(&scope, &stored.name, &stored.kind).to_string();
        let bundle = stored_bundle(stored)?;
        uploaded.entry(scope).or_default().insert(slot, bundle);
    }
    Ok(uploaded)
}

/// A bundle from the database, as loaded.
pub fn stored_bundle(stored: StoredBundle) -> Result<Bundle, String> {
    let manifest = Manifest::parse(&stored.manifest)
        .map_err(|e| format!("stored bundle {}@{}: {e}", stored.name, stored.version))?;
    Ok(Bundle::new(manifest, stored.component))
}

/// Follows the other replicas' plugin changes (PostgreSQL only) until the
/// gateway is gone: a notice, or a reconnection that may have missed
/// some, reloads the chains.
pub async fn follow_fleet(gateway: Weak<Gateway>) {
    let Some(store) = gateway.upgrade().map(|g| g.store.clone()) else {
        return;
    };
    let mut retry_in = Duration::from_millis(500);
    let mut notices = loop {
        match store.plugin_notices().await {
            Ok(Some(notices)) => break notices,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(%error, ?retry_in, "cannot listen for plugin changes; until it can, this replica follows only its own");
                tokio::time::sleep(retry_in).await;
                retry_in = (retry_in * 2).min(Duration::from_secs(30));
                if gateway.strong_count() == 0 {
                    return;
                }
            }
        }
    };
    if retry_in > Duration::from_millis(500) {
        // What the others changed while this one could not listen.
        let Some(gateway) = gateway.upgrade() else {
            return;
        };
        gateway.reload_plugins().await;
    }
    loop {
        notices.next().await;
        let Some(gateway) = gateway.upgrade() else {
            return;
        };
        gateway.reload_plugins().await;
    }
}
