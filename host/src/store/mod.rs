//! The database: accounts, channels, prices, the ledger and the call log.
//! SQLite by default (a file created on first start), PostgreSQL by URL;
//! one set of queries for both through sqlx's `Any` driver, with the
//! migrations embedded per dialect and applied at start.
//!
//! Conventions every query keeps: amounts are integer quota units, times
//! milliseconds since the Unix epoch, ratios millionths, lists JSON text;
//! parameters are written `$1`, which both dialects read.

pub mod accounts;
pub mod audit;
pub mod calls;
pub mod channels;
pub mod delegation;
pub mod ledger;
pub mod notices;
pub mod plugins;
pub mod prices;
mod seed;
pub mod writer;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// For connections outside the pool (change notices).
    url: std::sync::Arc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Maps a unique-key violation to `Conflict(what)`.
    fn conflict_on_duplicate(error: sqlx::Error, what: impl FnOnce() -> String) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what()),
            _ => StoreError::Database(error),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl Store {
    /// Opens the database `url` names (`sqlite://file`, a bare file path,
    /// or `postgres://…`), creating a SQLite file if it is missing, and
    /// applies the migrations it has not seen.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (url, backend) = normalize(url);
        if backend == Backend::Sqlite {
            create_parent(&url)?;
            enable_wal(&url).await?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL makes a commit an append; NORMAL syncs at checkpoints,
                        // which WAL keeps consistent across a crash of the process.
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(connection)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Store {
            pool,
            backend,
            url: url.into(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

fn normalize(url: &str) -> (String, Backend) {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return (url.to_string(), Backend::Postgres);
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let url = if path.contains("mode=") {
        format!("sqlite://{path}")
    } else if path.contains('?') {
        format!("sqlite://{path}&mode=rwc")
    } else {
        format!("sqlite://{path}?mode=rwc")
    };
    (url, Backend::Sqlite)
}

/// SQLite creates a missing file but not its folder.
fn create_parent(url: &str) -> Result<()> {
    let path = url.trim_start_matches("sqlite://");
    let path = std::path::Path::new(path.split('?').next().unwrap_or(path));
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Invalid(format!("cannot create {}: {e}", parent.display()))),
        _ => Ok(()),
    }
}

/// The journal mode is a property of the file; switching it needs the file
/// to itself, so it happens once, before the pool opens.
async fn enable_wal(url: &str) -> Result<()> {
    use sqlx::Connection;
    let mut connection = sqlx::AnyConnection::connect(url).await?;
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&mut connection)
        .await?;
    connection.close().await?;
    Ok(())
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A fresh identifier: `prefix_` and 16 random hex digits.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    format!("{prefix}_{}", hex::encode(bytes))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

fn from_json<T: serde::de::DeserializeOwned + Default>(text: &str) -> T {
    serde_json::from_str(text).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A fresh store on each backend the machine offers: a SQLite file, and
    /// a PostgreSQL schema of its own when `SLUICE_TEST_POSTGRES` (or the
    /// default `postgres://postgres@127.0.0.1:5432/test`) answers.
    pub async fn stores() -> Vec<(Store, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Store::open(dir.path().join("t.db").to_str().unwrap(), 4)
            .await
            .unwrap();
        let mut stores = vec![(sqlite, dir)];
        if let Some(postgres) = postgres_schema().await {
            stores.push((postgres, tempfile::tempdir().unwrap()));
        }
        stores
    }

    async fn postgres_schema() -> Option<Store> {
        use sqlx::Connection;
        let base = std::env::var("SLUICE_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        sqlx::any::install_default_drivers();
        let mut admin = match sqlx::AnyConnection::connect(&base).await {
            Ok(connection) => connection,
            Err(error) if std::env::var_os("SLUICE_REQUIRE_POSTGRES").is_some() => {
                panic!("PostgreSQL at {base} is required (SLUICE_REQUIRE_POSTGRES): {error}")
            }
            Err(_) => return None,
        };
        let schema = new_id("t");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-csearch_path%3D{schema}");
        Some(Store::open(&url, 4).await.unwrap())
    }
}
