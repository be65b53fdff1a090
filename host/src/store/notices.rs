//! Change notices between replicas sharing one PostgreSQL database, through
//! `LISTEN/NOTIFY`: the database every replica already holds a connection
//! to, so a fleet needs nothing more to stay in step, and a notice is sent
//! only once the change it announces is committed. A replica on SQLite is
//! alone and neither sends nor listens.

use super::{Backend, Result, Store};
use sqlx::postgres::PgListener;

const PLUGINS_CHANNEL: &str = "sluice_plugins";

/// Notices that the plugin bundles changed.
pub struct PluginNotices {
    listener: PgListener,
}

impl PluginNotices {
    /// Waits for the next notice. `false` means notices may have been
    /// missed (the connection dropped and was made again): the caller
    /// should re-read what it follows.
    pub async fn next(&mut self) -> bool {
        match self.listener.try_recv().await {
            Ok(notice) => notice.is_some(),
            Err(error) => {
                tracing::warn!(%error, "plugin change notices: cannot reach the database; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                false
            }
        }
    }
}

impl Store {
    /// Tells every replica listening that the plugin bundles changed.
    pub async fn announce_plugin_change(&self) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(PLUGINS_CHANNEL)
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }

    /// Starts listening for plugin change notices; `None` on SQLite.
    pub async fn plugin_notices(&self) -> Result<Option<PluginNotices>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = PgListener::connect(&self.url).await?;
        listener.listen(PLUGINS_CHANNEL).await?;
        Ok(Some(PluginNotices { listener }))
    }
}
