//! What the router and pricing were given for a call, recorded with it so
//! a new version can be replayed over the same inputs (a dry run). The
//! envelope carries the request's seed and admission time, the only inputs
//! a plugin may draw randomness or time from, so a replay is deterministic.

use crate::plugins::bindings::{Caller, ChannelCandidate, Envelope, PriceTable};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replay {
    pub envelope: Envelope,
    pub caller: Caller,
    pub prices: PriceTable,
    pub candidates: Vec<ChannelCandidate>,
    /// The channel names in the order the router chose.
    pub route: Vec<String>,
}
