//! Plugin bundles: a manifest (`plugin.toml`) beside a WebAssembly component.
//!
//! ```toml
//! name = "router"            # lowercase letters, digits and dashes
//! kind = "router"            # router | risk | pricing | translator
//! version = "0.1.0"
//! component = "router.wasm"  # optional; defaults to plugin.wasm
//! instances = "warm"         # optional; warm (default) or fresh
//!
//! [limits]                   # optional; defaults come from the runtime
//! deadline_ms = 50
//! memory_mib = 32
//!
//! [config]                   # optional; handed to the plugin as JSON
//!
//! [[tests]]                  # optional, any number; see `selftest`
//! ```

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Router,
    Risk,
    Pricing,
    Translator,
}

impl PluginKind {
    pub const ALL: [PluginKind; 4] = [
        PluginKind::Router,
        PluginKind::Risk,
        PluginKind::Pricing,
        PluginKind::Translator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Router => "router",
            PluginKind::Risk => "risk",
            PluginKind::Pricing => "pricing",
            PluginKind::Translator => "translator",
        }
    }

    /// The WIT interface a component of this kind exports.
    pub fn export_interface(self) -> String {
        format!("sluice:plugin/{}@0.4.0", self.as_str())
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a plugin's instances may serve more than one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Instances {
    /// Kept between calls, one call at a time (~1 µs a call).
    #[default]
    Warm,
    /// A new instance for every call (~30 µs), for plugins that must not
    /// carry anything from one call to the next.
    Fresh,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestLimits {
    pub deadline_ms: Option<u64>,
    pub memory_mib: Option<u64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub kind: PluginKind,
    pub version: String,
    #[serde(default = "default_component")]
    pub component: String,
    #[serde(default)]
    pub instances: Instances,
    #[serde(default)]
    pub limits: ManifestLimits,
    #[serde(default)]
    pub config: toml::Table,
    /// Calls and the answers expected; see `selftest`.
    #[serde(default)]
    pub tests: Vec<super::selftest::SelfTest>,
}

fn default_component() -> String {
    "plugin.wasm".into()
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid manifest: {0}")]
    Manifest(String),
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Self, BundleError> {
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| BundleError::Manifest(e.message().to_string()))?;
        let valid_name = !manifest.name.is_empty()
            && manifest.name.len() <= 64
            && manifest
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name {
            return Err(BundleError::Manifest(format!(
                "name {:?} must be 1 to 64 lowercase letters, digits or dashes",
                manifest.name
            )));
        }
        if manifest.version.is_empty() || manifest.version.len() > 64 {
            return Err(BundleError::Manifest(
                "version must be 1 to 64 characters".into(),
            ));
        }
        let bare_file_name = Path::new(&manifest.component)
            .file_name()
            .is_some_and(|f| f == manifest.component.as_str());
        if !bare_file_name {
            return Err(BundleError::Manifest(format!(
                "component {:?} must be a file name inside the bundle",
                manifest.component
            )));
        }
        Ok(manifest)
    }
}

/// Who a plugin is, for logs, metrics and errors: `name@version (kind)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PluginId {
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    /// SHA-256 of the component, hex.
    pub content_hash: String,
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// A manifest with its component's bytes.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub manifest: Manifest,
    pub component: Arc<[u8]>,
}

impl Bundle {
    pub fn new(manifest: Manifest, component: impl Into<Arc<[u8]>>) -> Self {
        Bundle {
            manifest,
            component: component.into(),
        }
    }

    /// Reads a bundle directory: `plugin.toml` and the component it names.
    pub fn read_dir(dir: &Path) -> Result<Self, BundleError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| BundleError::Read {
                path: path.display().to_string(),
                source,
            })
        };
        let text = read(&dir.join("plugin.toml"))?;
        let text = String::from_utf8(text)
            .map_err(|_| BundleError::Manifest("plugin.toml is not UTF-8".into()))?;
        let manifest = Manifest::parse(&text)?;
        let component = read(&dir.join(&manifest.component))?;
        Ok(Bundle::new(manifest, component))
    }

    pub fn id(&self) -> PluginId {
        PluginId {
            name: self.manifest.name.clone(),
            version: self.manifest.version.clone(),
            kind: self.manifest.kind,
            content_hash: hex::encode(Sha256::digest(&self.component)),
        }
    }

    /// The `config` table as the JSON the plugin reads.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.manifest.config).expect("a TOML table is valid JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_manifest() {
        let manifest = Manifest::parse(
            r#"
            name = "deny-list"
            kind = "risk"
            version = "1.2.0"
            component = "deny.wasm"
            instances = "fresh"
            [limits]
            deadline_ms = 20
            [config]
            users = ["mallory"]
            "#,
        )
        .unwrap();
        assert_eq!(manifest.kind, PluginKind::Risk);
        assert_eq!(manifest.instances, Instances::Fresh);
        assert_eq!(manifest.limits.deadline_ms, Some(20));
        let bundle = Bundle::new(manifest, vec![1, 2, 3]);
        assert_eq!(bundle.config_json(), r#"{"users":["mallory"]}"#);
        assert_eq!(bundle.id().to_string(), "deny-list@1.2.0");
        assert_eq!(bundle.id().content_hash.len(), 64);
    }

    #[test]
    fn refuses_bad_manifests_with_the_reason() {
        let error = |text: &str| Manifest::parse(text).unwrap_err().to_string();
        assert!(error("name = \"x\"\nkind = \"router\"").contains("missing field `version`"));
        assert!(
            error("name = \"x\"\nkind = \"cache\"\nversion = \"1\"").contains("unknown variant")
        );
        assert!(
            error("name = \"Bad Name\"\nkind = \"risk\"\nversion = \"1\"").contains("lowercase")
        );
        assert!(
            error(
                "name = \"x\"\nkind = \"risk\"\nversion = \"1\"\ncomponent = \"../../etc/passwd\""
            )
            .contains("inside the bundle")
        );
        assert!(
            error("name = \"x\"\nkind = \"risk\"\nversion = \"1\"\nextra = 1")
                .contains("unknown field")
        );
        let self_test = |case: &str| {
            error(&format!(
                "name = \"x\"\nkind = \"pricing\"\nversion = \"1\"\n[[tests]]\n{case}"
            ))
        };
        assert!(self_test("name = \"t\"").contains("missing field `expect`"));
        assert!(
            self_test("name = \"t\"\nexpect = { charge = 1 }\nusage = { tokens = 1 }")
                .contains("unknown field `tokens`")
        );
        assert!(
            self_test("name = \"t\"\nexpect = {}\nprices = { model_ratio = -1 }")
                .contains("ratio must be")
        );
    }
}
