//! `sluice plugin new <kind> <name>`: a plugin crate that builds for
//! `wasm32-wasip2` and passes its own unit tests and self-tests as
//! generated, ready to be changed into the plugin its author wants.

use std::path::{Path, PathBuf};

const CARGO_TOML: &str = include_str!("templates/Cargo.toml.tmpl");

/// The kinds with a template, and their source and manifest.
const TEMPLATES: [(&str, &str, &str); 3] = [
    (
        "router",
        include_str!("templates/router.rs.tmpl"),
        include_str!("templates/router.toml.tmpl"),
    ),
    (
        "risk",
        include_str!("templates/risk.rs.tmpl"),
        include_str!("templates/risk.toml.tmpl"),
    ),
    (
        "pricing",
        include_str!("templates/pricing.rs.tmpl"),
        include_str!("templates/pricing.toml.tmpl"),
    ),
];

/// The SDK this binary was built with, when its source is still where it
/// was built (a checkout of the Sluice repository).
pub fn default_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().ok())
        .flatten()
}

/// Writes a new plugin crate `name` of `kind` into `dir/name`, depending on
/// the SDK at `sdk`. Returns the crate's directory.
pub fn scaffold(kind: &str, name: &str, dir: &Path, sdk: &Path) -> Result<PathBuf, String> {
    let (_, source, manifest) = TEMPLATES
        .iter()
        .find(|(k, _, _)| *k == kind)
        .ok_or_else(|| {
            format!(
                "no template for {kind:?}: choose router, risk or pricing (a translator is best started from plugins/openai in the Sluice repository)"
            )
        })?;
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(format!(
            "name {name:?} must start with a letter and hold only lowercase letters, digits and dashes"
        ));
    }
    let sdk = sdk
        .canonicalize()
        .map_err(|e| format!("the SDK at {}: {e}", sdk.display()))?;
    if !sdk.join("Cargo.toml").is_file() {
        return Err(format!("{} holds no SDK crate (Cargo.toml)", sdk.display()));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(format!("{} already exists", root.display()));
    }
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    let write = |path: PathBuf, text: String| {
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    std::fs::create_dir_all(root.join("src"))
        .map_err(|e| format!("creating {}: {e}", root.display()))?;
    write(root.join("Cargo.toml"), fill(CARGO_TOML))?;
    write(root.join("src/lib.rs"), fill(source))?;
    write(root.join("plugin.toml"), fill(manifest))?;
    write(root.join(".gitignore"), "/target\n/plugin.wasm\n".into())?;
    Ok(root)
}

/// What to do next, for the command's output.
pub fn next_steps(root: &Path, name: &str) -> String {
    let artifact = name.replace('-', "_");
    format!(
        "created {root}\n\nnext:\n  cd {root}\n  cargo test\n  cargo build --release --target wasm32-wasip2\n  cp target/wasm32-wasip2/release/{artifact}.wasm plugin.wasm\n  sluice plugin test .\n  sluice plugin push . --url http://127.0.0.1:8080 --token $SLUICE_ADMIN_TOKEN",
        root = root.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_crate_per_kind_and_refuses_bad_names_and_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = default_sdk().expect("tests run in the repository");
        for kind in ["router", "risk", "pricing"] {
            let name = format!("my-{kind}");
            let root = scaffold(kind, &name, dir.path(), &sdk).unwrap();
            let manifest = std::fs::read_to_string(root.join("plugin.toml")).unwrap();
            let parsed = crate::plugins::Manifest::parse(&manifest).unwrap();
            assert_eq!(
                (parsed.name.as_str(), parsed.kind.as_str()),
                (name.as_str(), kind)
            );
            assert!(!parsed.tests.is_empty());
            let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
            assert!(cargo.contains(&format!("name = \"{name}\"")));
            assert!(cargo.contains(&sdk.display().to_string()));
            assert!(
                !std::fs::read_to_string(root.join("src/lib.rs"))
                    .unwrap()
                    .contains("{{")
            );
        }
        let again = scaffold("router", "my-router", dir.path(), &sdk).unwrap_err();
        assert!(again.contains("already exists"));
        assert!(
            scaffold("router", "Bad_Name", dir.path(), &sdk)
                .unwrap_err()
                .contains("lowercase")
        );
        assert!(
            scaffold("cache", "x", dir.path(), &sdk)
                .unwrap_err()
                .contains("no template")
        );
    }
}
