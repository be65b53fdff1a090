//! The channels a request may go to.

use crate::config::model_matches;
use crate::plugins::Candidate;
use crate::store::channels::ChannelSpec;
use crate::upstream::Endpoint;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// A credential. It prints as `<redacted>`, so no log line or error can
/// carry it by accident.
#[derive(Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug)]
pub struct Channel {
    pub name: String,
    pub protocol: String,
    pub endpoint: Endpoint,
    pub credential: Option<Secret>,
    models: Vec<String>,
    model_map: BTreeMap<String, String>,
    pub weight: u32,
    pub priority: i32,
    pub tags: Vec<String>,
}

impl Channel {
    pub fn serves(&self, model: &str) -> bool {
        self.models
            .iter()
            .any(|pattern| model_matches(pattern, model))
    }

    /// The upstream's name for the client's `model`.
    pub fn upstream_model<'m>(&'m self, model: &'m str) -> &'m str {
        self.model_map.get(model).map_or(model, String::as_str)
    }

    pub fn candidate(&self) -> Candidate {
        Candidate {
            name: self.name.clone(),
            protocol: self.protocol.clone(),
            weight: self.weight,
            priority: self.priority,
            tags: self.tags.clone(),
            latency_ms: None,
        }
    }
}

pub struct ChannelTable {
    channels: Vec<Arc<Channel>>,
}

impl ChannelTable {
    /// Builds the table of the active channels, each with its stored
    /// credential or the one in the environment variable it names.
    pub fn new(specs: &[ChannelSpec]) -> Result<Self, String> {
        let channels = specs
            .iter()
            .filter(|c| c.status == crate::store::accounts::ACTIVE)
            .map(|c| {
                let credential = match (&c.api_key, &c.api_key_env) {
                    (Some(secret), _) => Some(secret.clone()),
                    (None, Some(variable)) => {
                        Some(Secret::new(std::env::var(variable).map_err(|_| {
                            format!(
                                "channel {:?}: environment variable {variable} is not set",
                                c.name
                            )
                        })?))
                    }
                    (None, None) => None,
                };
                Ok(Arc::new(Channel {
                    name: c.name.clone(),
                    protocol: c.protocol.clone(),
                    endpoint: Endpoint::parse(&c.base_url)
                        .map_err(|e| format!("channel {:?}: base_url {e}", c.name))?,
                    credential,
                    models: c.models.clone(),
                    model_map: c.model_map.clone(),
                    weight: c.weight,
                    priority: c.priority,
                    tags: c.tags.clone(),
                }))
            })
            .collect::<Result<_, String>>()?;
        Ok(ChannelTable { channels })
    }

    pub fn candidates(&self, model: &str) -> Vec<Arc<Channel>> {
        self.channels
            .iter()
            .filter(|c| c.serves(model))
            .cloned()
            .collect()
    }

    /// Every model named exactly by some channel (prefix patterns cannot be
    /// listed).
    pub fn listed_models(&self) -> BTreeSet<&str> {
        self.channels
            .iter()
            .flat_map(|c| c.models.iter())
            .filter(|m| !m.ends_with('*'))
            .map(String::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, models: &[&str]) -> ChannelSpec {
        ChannelSpec {
            name: name.into(),
            protocol: "openai-chat".into(),
            base_url: "http://127.0.0.1:9/v1/".into(),
            api_key: None,
            api_key_env: None,
            status: "active".into(),
            models: models.iter().map(|m| m.to_string()).collect(),
            model_map: BTreeMap::from([("fast".to_string(), "fast-2024".to_string())]),
            weight: 1,
            priority: 0,
            tags: vec![],
        }
    }

    #[test]
    fn finds_the_channels_serving_a_model() {
        let table = ChannelTable::new(&[config("a", &["fast", "llama-*"]), config("b", &["fast"])])
            .unwrap();
        assert_eq!(table.candidates("fast").len(), 2);
        assert_eq!(table.candidates("llama-3").len(), 1);
        assert!(table.candidates("other").is_empty());
        let mut off = config("c", &["other"]);
        off.status = "disabled".into();
        assert!(
            ChannelTable::new(&[off])
                .unwrap()
                .candidates("other")
                .is_empty()
        );
        assert_eq!(
            table.listed_models().into_iter().collect::<Vec<_>>(),
            vec!["fast"]
        );
        let a = &table.candidates("llama-3")[0];
        assert_eq!(a.endpoint.base_path(), "/v1");
        assert_eq!(a.upstream_model("fast"), "fast-2024");
        assert_eq!(a.upstream_model("llama-3"), "llama-3");
    }

    #[test]
    fn a_missing_credential_is_named_but_never_shown() {
        let mut c = config("a", &["m"]);
        c.api_key_env = Some("SLUICE_TEST_UNSET_VARIABLE".into());
        let error = ChannelTable::new(&[c]).err().unwrap();
        assert!(error.contains("SLUICE_TEST_UNSET_VARIABLE is not set"));
        assert_eq!(format!("{:?}", Secret::new("sk-live".into())), "<redacted>");
    }
}
