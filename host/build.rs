//! Builds the plugin crates of the workspace for `wasm32-wasip2` and lays
//! each out as a bundle directory (`plugin.toml` + `plugin.wasm`) in
//! `OUT_DIR/bundles`, so a plain `cargo build -p sluice` produces a binary
//! with its built-in plugins embedded and the test suite finds the example
//! and test plugins as real components.
//!
//! The guests are compiled by a nested `cargo build` into a target directory
//! of their own (`<target>/plugin-build`): a different target triple and
//! profile from the host, and a separate directory so the nested build never
//! waits on the lock the outer build holds.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (crate directory, package name). The directory's last segment names the
/// bundle.
const PLUGINS: [(&str, &str); 10] = [
    ("plugins/router", "sluice-plugin-router"),
    ("plugins/risk", "sluice-plugin-risk"),
    ("plugins/pricing", "sluice-plugin-pricing"),
    ("plugins/openai", "sluice-plugin-openai"),
    ("plugins/anthropic", "sluice-plugin-anthropic"),
    ("plugins/gemini", "sluice-plugin-gemini"),
    ("examples/plugins/batch-router", "example-batch-router"),
    (
        "examples/plugins/offpeak-pricing",
        "example-offpeak-pricing",
    ),
    ("test-plugins/faulty-router", "test-faulty-router"),
    ("test-plugins/faulty-translator", "test-faulty-translator"),
];

/// Variables the outer build sets for the host that must not leak into the
/// guests' build (flags for another target, clippy's driver, the outer
/// target directory).
const OUTER_BUILD_VARIABLES: [&str; 6] = [
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_RUSTFLAGS",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    for watched in [
        "wit",
        "sdk",
        "plugins",
        "examples/plugins",
        "test-plugins",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    let guest_target = target_dir(&out_dir, &workspace).join("plugin-build");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&workspace)
        .args([
            "build",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&guest_target);
    for (_, package) in PLUGINS {
        build.args(["-p", package]);
    }
    for variable in OUTER_BUILD_VARIABLES {
        build.env_remove(variable);
    }
    let output = build.output().expect("running cargo for the plugins");
    if !output.status.success() {
        panic!(
            "building the plugins for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let built = guest_target.join("wasm32-wasip2").join("plugin");
    let bundles = out_dir.join("bundles");
    for (dir, package) in PLUGINS {
        let name = Path::new(dir).file_name().unwrap();
        let bundle = bundles.join(name);
        std::fs::create_dir_all(&bundle).unwrap();
        copy(
            &workspace.join(dir).join("plugin.toml"),
            &bundle.join("plugin.toml"),
        );
        copy(
            &built.join(format!("{}.wasm", package.replace('-', "_"))),
            &bundle.join("plugin.wasm"),
        );
    }
    println!("cargo:rustc-env=SLUICE_BUNDLES_DIR={}", bundles.display());
}

/// The outer build's target directory: the nearest ancestor of `OUT_DIR`
/// that cargo marked with `CACHEDIR.TAG`.
fn target_dir(out_dir: &Path, workspace: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace.join("target"))
}

fn copy(from: &Path, to: &Path) {
    // Rewrite only on change, so the embedding crate is not rebuilt for nothing.
    let bytes = std::fs::read(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
    if std::fs::read(to).ok().as_deref() != Some(bytes.as_slice()) {
        std::fs::write(to, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", to.display()));
    }
}
