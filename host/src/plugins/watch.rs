//! Watches the plugin folder and reloads the chain when it changes. Events
//! are debounced: the chain is loaded only once the folder has been quiet
//! for `QUIET`, so a bundle being copied in is read when it is complete (and
//! a half-written one that slips through fails its checks and is refused,
//! leaving the previous chain serving until the write completes).

use crate::gateway::Gateway;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::path::Path;
use std::sync::Weak;
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(300);

/// Starts watching `dir` for `gateway`; watching stops when the returned
/// watcher is dropped or the gateway is gone.
pub fn watch(gateway: Weak<Gateway>, dir: &Path) -> Result<RecommendedWatcher, String> {
    let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| !event.kind.is_access()) {
            let _ = changed.send(());
        }
    })
    .map_err(|e| format!("watching the plugin folder {}: {e}", dir.display()))?;
    watcher
        .watch(dir, RecursiveMode::Recursive)
        .map_err(|e| format!("watching the plugin folder {}: {e}", dir.display()))?;
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            loop {
                match tokio::time::timeout(QUIET, changes.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_quiet) => break,
                }
            }
            let Some(gateway) = gateway.upgrade() else {
                return;
            };
            gateway.reload_plugins().await;
        }
    });
    Ok(watcher)
}
