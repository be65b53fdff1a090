//! The plugin author's workflow beside the gateway: a new plugin crate
//! scaffolded against the SDK, and a finished bundle pushed to a gateway's
//! admin API.

pub mod push;
pub mod scaffold;
