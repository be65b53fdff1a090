use crate::PluginError;
use serde::de::DeserializeOwned;

/// A plugin's own configuration: the `config` table of its bundle manifest,
/// as JSON.
#[derive(Clone, Debug)]
pub struct Config {
    json: String,
}

impl Config {
    /// Configuration given directly, e.g. by a native unit test.
    pub fn from_json(json: impl Into<String>) -> Self {
        Config { json: json.into() }
    }

    pub(crate) fn from_host() -> Self {
        Config::from_json(crate::exports::host_config())
    }

    pub fn json(&self) -> &str {
        &self.json
    }

    /// Deserializes the configuration; a mismatch becomes a `bad_config`
    /// plugin error naming the problem.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_str(&self.json)
            .map_err(|e| PluginError::new("bad_config", format!("plugin configuration: {e}")))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::from_json("{}")
    }
}
