//! One structured line per request, written when the request is over (for
//! a stream: when the stream ends or the client leaves).

use crate::plugins::bindings::{Caller, Usage};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct AccessLog {
    pub request_id: String,
    /// The client's protocol.
    protocol: &'static str,
    started: Instant,
    pub caller: Option<Arc<Caller>>,
    pub model: Option<String>,
    pub channel: Option<String>,
    pub stream: bool,
    pub status: u16,
    pub usage: Option<Usage>,
    first_byte: Option<Duration>,
    /// How the call ended: complete, client_gone, upstream_error, timeout,
    /// refused.
    pub outcome: &'static str,
    pub error: Option<String>,
}

impl AccessLog {
    pub fn new(request_id: String, protocol: &'static str) -> Self {
        AccessLog {
            request_id,
            protocol,
            started: Instant::now(),
            caller: None,
            model: None,
            channel: None,
            stream: false,
            status: 200,
            usage: None,
            first_byte: None,
            outcome: "complete",
            error: None,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn time_to_first_byte(&self) -> Option<Duration> {
        self.first_byte
    }

    /// Marks the moment the first byte of the answer left for the client.
    pub fn first_byte(&mut self) {
        if self.first_byte.is_none() {
            self.first_byte = Some(self.started.elapsed());
        }
    }

    pub fn emit(&self) {
        let caller = self.caller.as_ref();
        let usage = self.usage.unwrap_or(Usage {
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
        });
        tracing::info!(
            target: "sluice::access",
            request_id = self.request_id.as_str(),
            protocol = self.protocol,
            tenant = caller.map_or("-", |c| c.tenant.as_str()),
            user = caller.map_or("-", |c| c.user.as_str()),
            key = caller.map_or("-", |c| c.key_id.as_str()),
            model = self.model.as_deref().unwrap_or("-"),
            channel = self.channel.as_deref().unwrap_or("-"),
            stream = self.stream,
            status = self.status,
            outcome = self.outcome,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            cached_tokens = usage.cached_tokens,
            cache_write_tokens = usage.cache_write_tokens,
            reasoning_tokens = usage.reasoning_tokens,
            usage_reported = self.usage.is_some(),
            latency_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            ttfb_ms = self.first_byte.map(|d| d.as_secs_f64() * 1000.0),
            error = self.error.as_deref(),
            "request"
        );
    }
}
