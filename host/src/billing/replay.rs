//! What the router and pricing were given for a call, recorded with it so
//! a new version can be replayed over the same inputs (a dry run). The
//! envelope carries the request's seed and admission time, the only inputs
//! a plugin may draw randomness or time from, so a replay is deterministic.

use crate::plugins::bindings::{Caller, PriceTable};
use crate::plugins::{Candidate, Envelope, PolicyRequest};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replay {
    pub envelope: Envelope,
    pub caller: Caller,
    pub prices: PriceTable,
    pub candidates: Vec<Candidate>,
    /// The channel names in the order the router chose.
    pub route: Vec<String>,
}

impl Replay {
    /// The request as the router was shown it.
    pub fn routed(&self) -> Arc<PolicyRequest> {
        Arc::new(
            PolicyRequest::new(self.envelope.clone(), Arc::new(self.caller.clone()))
                .with_candidates(self.candidates.clone()),
        )
    }

    /// The request as pricing was shown it.
    pub fn priced(&self) -> Arc<PolicyRequest> {
        Arc::new(PolicyRequest::new(
            self.envelope.clone(),
            Arc::new(self.caller.clone()),
        ))
    }
}
