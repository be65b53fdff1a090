//! Sluice: an AI API gateway whose business logic (routing, risk, pricing,
//! protocol translation) runs as sandboxed WebAssembly plugins.

pub mod admin;
pub mod auth;
pub mod authoring;
pub mod billing;
pub mod config;
pub mod demo;
pub mod gateway;
pub mod joined;
pub mod plugins;
pub mod protocol;
pub mod routing;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod upstream;
