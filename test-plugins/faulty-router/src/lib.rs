//! A router that misbehaves when the request's model names a fault, so the
//! host's containment can be tested with a real component. The fault is the
//! model's last `/`-separated segment (`fault/loop` loops, so end-to-end
//! tests can reach it through a gateway channel serving `fault/*`). Faults:
//! `loop`, `allocate`, `recurse`, `panic` (see `test_faults`);
//! `bad-index` and `duplicate` (malformed output); `error` (a deliberate
//! plugin error); `calls` (reports how many calls this instance served, as
//! an error whose message is the count); `config` (returns its configuration
//! the same way); `probe` (reports what of the outside world it can reach:
//! environment variables, files, the clock, the network); `request` (reports
//! every field of the request it was lent). Any other model gets the
//! candidates in their given order.

use sluice_sdk::{Config, PluginError, Request, Router};
use std::cell::Cell;

struct FaultyRouter {
    config: Config,
    calls: Cell<u64>,
}

impl Router for FaultyRouter {
    fn new(config: Config) -> Result<Self, PluginError> {
        Ok(FaultyRouter {
            config,
            calls: Cell::new(0),
        })
    }

    fn route(&self, request: &Request) -> Result<Vec<u32>, PluginError> {
        self.calls.set(self.calls.get() + 1);
        let fault = request.model().rsplit('/').next().unwrap_or_default();
        test_faults::commit(fault);
        let count = request.candidates().len() as u32;
        match fault {
            "bad-index" => Ok(vec![count]),
            "duplicate" => Ok(vec![0, 0]),
            "error" => Err(PluginError::new("refused", "asked to refuse")),
            "calls" => Err(PluginError::new("calls", self.calls.get().to_string())),
            "config" => Err(PluginError::new("config", self.config.json())),
            "probe" => Err(PluginError::new("probe", probe())),
            "request" => Err(PluginError::new("request", fields(request))),
            "log" => {
                sluice_sdk::log::warn("a line from the faulty router");
                Ok((0..count).collect())
            }
            _ => Ok((0..count).collect()),
        }
    }
}

sluice_sdk::export_router!(FaultyRouter);

fn probe() -> String {
    let env = std::env::vars().count();
    let files = std::fs::read_dir("/").is_ok();
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let network = std::net::TcpStream::connect("127.0.0.1:5432").is_ok();
    format!("env={env} files={files} clock={clock} network={network}")
}

fn fields(request: &Request) -> String {
    let caller = request.caller();
    let channels: Vec<String> = (0..request.candidates().len() + 1)
        .map(|i| match request.channel(i) {
            Some(c) => format!("{}/{}/{}", c.name, c.protocol, c.tags.join("+")),
            None => "none".into(),
        })
        .collect();
    let figures: Vec<String> = request
        .candidates()
        .iter()
        .map(|c| format!("{}/{}/{:?}", c.weight, c.priority, c.latency_ms))
        .collect();
    format!(
        "model={} stream={} max={:?} prompt={} protocol={} tags={} at={} seed={} caller={}/{}/{}/{} candidates={} channels={}",
        request.model(),
        request.stream(),
        request.max_output_tokens(),
        request.estimated_prompt_tokens(),
        request.inbound_protocol(),
        request.tags().join("+"),
        request.received_at_ms(),
        request.seed(),
        caller.tenant,
        caller.user,
        caller.group,
        caller.key_id,
        figures.join(","),
        channels.join(","),
    )
}
