//! Compiled components cached on disk, keyed by the component's content and
//! the engine's compatibility (wasmtime version, target, settings), so a
//! restart loads each plugin in well under a millisecond instead of
//! compiling it again; and the most recent ones kept in memory, so swapping
//! between versions (activate, roll back, dry runs) never compiles twice.

use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct ArtifactCache {
    dir: PathBuf,
}

/// How a component was obtained, for logs and the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Compiled,
    Cached,
}

impl ArtifactCache {
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        create_private_dir(&dir)?;
        Ok(ArtifactCache { dir })
    }

    /// Loads the compiled form of `wasm`, compiling and storing it on a miss.
    /// An unreadable or stale entry is replaced, never trusted.
    pub fn load(&self, engine: &Engine, wasm: &[u8]) -> wasmtime::Result<(Component, Origin)> {
        let path = self.dir.join(format!("{}.cwasm", key(engine, wasm)));
        // Read into memory rather than `deserialize_file`, which maps the
        // file: a cache entry truncated or rewritten in place under a running
        // gateway would then crash it with SIGBUS.
        if let Ok(artifact) = std::fs::read(&path) {
            // SAFETY: only this cache writes into its private directory, and
            // every file is written whole (temporary file, then rename) from
            // `Component::serialize` of the same engine configuration, which
            // the key includes; wasmtime checks the header on top.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(component) => return Ok((component, Origin::Cached)),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "discarding unusable cached plugin artifact")
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(error) = write_atomically(&path, &component.serialize()?) {
            tracing::warn!(path = %path.display(), %error, "cannot cache compiled plugin");
        }
        Ok((component, Origin::Compiled))
    }
}

/// The last `capacity` components compiled or loaded, by content hash.
pub struct RecentComponents {
    capacity: usize,
    components: HashMap<String, Component>,
    /// Content hashes, oldest first.
    order: VecDeque<String>,
}

impl RecentComponents {
    pub fn new(capacity: usize) -> Self {
        RecentComponents {
            capacity,
            components: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, content_hash: &str) -> Option<Component> {
        self.components.get(content_hash).cloned()
    }

    pub fn insert(&mut self, content_hash: String, component: Component) {
        if self
            .components
            .insert(content_hash.clone(), component)
            .is_none()
        {
            self.order.push_back(content_hash);
        }
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.components.remove(&oldest);
            }
        }
    }
}

fn key(engine: &Engine, wasm: &[u8]) -> String {
    let mut hasher = DigestHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.update(wasm);
    hex::encode(hasher.0.finalize())
}

/// Feeds `Hash` output into SHA-256, whose digest (unlike `DefaultHasher`)
/// is stable across processes and builds.
struct DigestHasher(Sha256);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        unreachable!("only the full digest is used")
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .expect("cache entries live in the cache directory");
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
