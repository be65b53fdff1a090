//! Sluice: an AI API gateway whose business logic (routing, risk, pricing,
//! protocol translation) runs as sandboxed WebAssembly plugins.

pub mod plugins;
pub mod telemetry;
