//! The gateway's configuration file (`sluice.toml`). Every section is
//! optional; `examples/sluice.toml` documents each key.

use crate::plugins::RuntimeConfig;
use crate::store::channels::ChannelSpec;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Largest request body accepted; larger ones get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// Channels seeded into the database at start.
    #[serde(default)]
    pub channels: Vec<ChannelSpec>,
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Price tables seeded into the database at start.
    #[serde(default)]
    pub prices: Vec<crate::store::prices::Price>,
    /// Group name → price multiplier, seeded at start (`default` is 1.0
    /// unless given).
    #[serde(default)]
    pub groups: BTreeMap<String, f64>,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub billing: BillingConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub plugins: PluginsConfig,
    #[serde(default)]
    pub demo: DemoConfig,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().expect("a valid address")
}

fn default_max_body_bytes() -> usize {
    32 << 20
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Time to open a connection to a channel, TLS handshake included.
    pub connect_timeout_ms: u64,
    /// Time from sending a request to the response's headers.
    pub first_byte_timeout_ms: u64,
    /// Longest silence between two pieces of a response body.
    pub idle_timeout_ms: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connect_timeout_ms: 5_000,
            first_byte_timeout_ms: 120_000,
            idle_timeout_ms: 120_000,
        }
    }
}

impl UpstreamConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn first_byte_timeout(&self) -> Duration {
        Duration::from_millis(self.first_byte_timeout_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The client's API key, as sent in `Authorization: Bearer …`.
    pub key: String,
    #[serde(default = "default_tenant")]
    pub tenant: String,
    pub user: String,
    #[serde(default = "default_group")]
    pub group: String,
    /// Models this key may use (exact or `prefix*`); empty allows all.
    #[serde(default)]
    pub models: Vec<String>,
    /// Tags added to every request made with this key.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The balance a user created by this seed starts with, in quota units.
    #[serde(default)]
    pub quota: i64,
    /// The most this key may spend, in quota units.
    #[serde(default)]
    pub quota_cap: Option<i64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path` (created on first start) or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://sluice.db".into(),
            max_connections: 8,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BillingConfig {
    /// Off, calls are neither held nor charged nor logged in the database.
    pub enabled: bool,
    /// This process's name in the ledger: a restart under the same name
    /// settles what the previous run left open. Defaults to the host name
    /// and listening port.
    pub instance: Option<String>,
    /// Output tokens held at admission for a request without its own cap.
    pub completion_reserve_tokens: u32,
    /// A hold older than this is settled as interrupted by whichever
    /// process finds it (a retired replica's calls): longer than any call.
    pub stale_hold_minutes: u64,
}

impl BillingConfig {
    pub fn stale_hold_after(&self) -> Duration {
        Duration::from_secs(self.stale_hold_minutes.saturating_mul(60))
    }
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            enabled: true,
            instance: None,
            completion_reserve_tokens: 1024,
            stale_hold_minutes: 360,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// The environment variable holding the admin API's bearer token. With
    /// none set, `/admin` answers 404.
    pub token_env: Option<String>,
}

fn default_tenant() -> String {
    "default".into()
}

fn default_group() -> String {
    "default".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// A folder of extra bundles (one sub-folder each), beside the built-ins.
    pub dir: Option<PathBuf>,
    pub risk: String,
    pub router: String,
    pub pricing: String,
    /// Inbound or channel protocol → the translator bundle for it. Entries
    /// replace or add to the built-in ones, which stay for the rest.
    #[serde(deserialize_with = "over_builtin_translators")]
    pub translators: BTreeMap<String, String>,
    /// Bundle name → configuration replacing the bundle's own `[config]`.
    pub config: BTreeMap<String, toml::Table>,
    /// Largest bundle (component) the admin API accepts, in MiB.
    pub max_bundle_mib: u64,
    pub runtime: RuntimeConfig,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: None,
            risk: "risk".into(),
            router: "router".into(),
            pricing: "pricing".into(),
            translators: builtin_translators(),
            config: BTreeMap::new(),
            max_bundle_mib: 16,
            runtime: RuntimeConfig::default(),
        }
    }
}

fn builtin_translators() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("openai-chat".into(), "openai".into()),
        ("anthropic-messages".into(), "anthropic".into()),
        ("gemini".into(), "gemini".into()),
    ])
}

fn over_builtin_translators<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let mut translators = builtin_translators();
    translators.extend(BTreeMap::<String, String>::deserialize(deserializer)?);
    Ok(translators)
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// Start the demo upstream in-process and serve its `demo*` models
    /// through a channel named `demo`, so the gateway answers offline.
    pub enabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The configuration `sluice serve` uses without `--config`: the built-in
/// plugins, the demo upstream, and one demo key.
pub const EMBEDDED_DEFAULT: &str = r#"
listen = "127.0.0.1:8080"

[demo]
enabled = true

[[keys]]
key = "sk-sluice-demo"
user = "demo"
quota = 100000000

[[prices]]
model = "*"
model_ratio = 1.0
completion_ratio = 2.0
cached_ratio = 0.1
cache_write_ratio = 1.25
"#;

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    pub fn embedded_default() -> Self {
        Config::parse(EMBEDDED_DEFAULT, "embedded default").expect("the default config is valid")
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_string(),
            message,
        };
        let config: Config = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for channel in &self.channels {
            if !names.insert(channel.name.as_str()) {
                return Err(format!("channel {:?} is declared twice", channel.name));
            }
            if channel.name == "demo" && self.demo.enabled {
                return Err("channel name \"demo\" is reserved for the demo upstream".into());
            }
            if channel.api_key.is_some() {
                return Err(format!(
                    "channel {:?}: a credential does not belong in the file; name its environment variable in api_key_env",
                    channel.name
                ));
            }
            channel.check().map_err(|e| e.to_string())?;
        }
        let mut keys = std::collections::HashSet::new();
        for key in &self.keys {
            if key.key.len() < 8 {
                return Err(format!(
                    "the key of user {:?} is shorter than 8 characters",
                    key.user
                ));
            }
            if !keys.insert(key.key.as_str()) {
                return Err(format!("user {:?} reuses another key", key.user));
            }
        }
        Ok(())
    }
}

/// Whether `model` matches `pattern`: equal, or `pattern` is `prefix*`.
pub fn model_matches(pattern: &str, model: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => model.starts_with(prefix),
        None => pattern == model,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_serves_the_demo() {
        let config = Config::embedded_default();
        assert!(config.demo.enabled);
        assert_eq!(config.keys.len(), 1);
        assert_eq!(config.plugins.translators["openai-chat"], "openai");
    }

    #[test]
    fn configured_translators_replace_or_add_to_the_built_in_ones() {
        let config = Config::parse(
            "[plugins.translators]\nopenai-chat = \"mine\"\nother = \"theirs\"\n",
            "t",
        )
        .unwrap();
        let translators = &config.plugins.translators;
        assert_eq!(translators["openai-chat"], "mine");
        assert_eq!(translators["other"], "theirs");
        assert_eq!(translators["anthropic-messages"], "anthropic");
    }

    #[test]
    fn the_annotated_example_parses() {
        let example = include_str!("../../../examples/sluice.toml");
        let config = Config::parse(example, "examples/sluice.toml").unwrap();
        assert!(!config.channels.is_empty());
    }

    #[test]
    fn refuses_inconsistent_files_with_the_reason() {
        let error = |text: &str| Config::parse(text, "t").unwrap_err().to_string();
        let channel = "[[channels]]\nname = \"a\"\nbase_url = \"http://x\"\nmodels = [\"m\"]\n";
        assert!(error(&format!("{channel}{channel}")).contains("declared twice"));
        assert!(
            error("[[channels]]\nname = \"a\"\nbase_url = \"ftp://x\"\nmodels = [\"m\"]")
                .contains("http://")
        );
        assert!(error("[[keys]]\nkey = \"short\"\nuser = \"u\"").contains("shorter than 8"));
        assert!(error(&format!("{channel}api_key = \"sk-live-secret\"\n")).contains("api_key_env"));
        assert!(error("lisen = \"1.2.3.4:5\"").contains("unknown field"));
    }

    #[test]
    fn model_patterns_are_exact_or_prefixes() {
        assert!(model_matches("gpt-4o", "gpt-4o"));
        assert!(!model_matches("gpt-4o", "gpt-4o-mini"));
        assert!(model_matches("demo*", "demo-fast"));
        assert!(model_matches("*", "anything"));
    }
}
