//! What a plugin's store holds, and the host functions a plugin may call.

use super::bindings::{host, request_content, types};
use super::bundle::PluginId;
use super::request::PolicyRequest;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// Longest log line a plugin may write; the rest is cut, so a plugin cannot
/// flood the gateway's log with one call.
const MAX_LOG_LINE: usize = 2048;

/// The request's text, extracted by the host only if a risk plugin asks.
pub trait RequestText: Send + Sync {
    fn message_text(&self) -> String;
}

pub struct PluginState {
    pub(super) plugin: Arc<PluginId>,
    pub(super) config_json: Arc<str>,
    pub(super) memory: MemoryCap,
    /// Epoch ticks this call may still run for; see `Runtime::arm_deadline`.
    pub(super) ticks_left: u64,
    /// The request lent to the policy call in progress.
    pub(super) request: Option<Arc<PolicyRequest>>,
    pub(super) request_text: Option<Arc<dyn RequestText>>,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl PluginState {
    pub(super) fn new(plugin: Arc<PluginId>, config_json: Arc<str>, memory_limit: usize) -> Self {
        PluginState {
            plugin,
            config_json,
            memory: MemoryCap::new(memory_limit),
            ticks_left: 0,
            request: None,
            request_text: None,
            wasi: sandboxed_wasi(),
            table: ResourceTable::new(),
        }
    }
}

/// WASI with nothing granted: no files, environment, arguments, network or
/// standard streams, and clocks frozen at zero, so any time-dependent logic
/// must read the request's `received-at-ms` and stays replayable. The
/// guest's standard library still imports these interfaces, so they must
/// exist.
fn sandboxed_wasi() -> WasiCtx {
    WasiCtx::builder()
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    fn log(&mut self, level: host::LogLevel, message: String) {
        let message = truncate(&message, MAX_LOG_LINE);
        let plugin = &*self.plugin;
        match level {
            host::LogLevel::Trace => tracing::trace!(%plugin, "{message}"),
            host::LogLevel::Debug => tracing::debug!(%plugin, "{message}"),
            host::LogLevel::Info => tracing::info!(%plugin, "{message}"),
            host::LogLevel::Warn => tracing::warn!(%plugin, "{message}"),
            host::LogLevel::Error => tracing::error!(%plugin, "{message}"),
        }
    }

    fn config(&mut self) -> String {
        self.config_json.to_string()
    }
}

impl request_content::Host for PluginState {
    fn message_text(&mut self) -> String {
        self.request_text
            .as_ref()
            .map(|text| text.message_text())
            .unwrap_or_default()
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Caps a store's linear memory and remembers whether the cap was hit, so
/// the trap that follows a refused allocation is reported as out-of-memory.
pub(super) struct MemoryCap {
    limit: usize,
    pub(super) current: usize,
    pub(super) exceeded: bool,
}

impl MemoryCap {
    fn new(limit: usize) -> Self {
        MemoryCap {
            limit,
            current: 0,
            exceeded: false,
        }
    }
}

impl MemoryCap {
    pub(super) fn limit(&self) -> usize {
        self.limit
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Counts the store's memories together: a component may have several.
        let total = self.current - current.min(self.current) + desired;
        if total > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        self.current = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("short", 100), "short");
    }
}
