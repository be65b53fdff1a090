//! The typed face of each plugin kind: what the gateway calls, with every
//! answer checked against the contract before it is believed.

use super::bindings::{
    CredentialPlacement, Direction, ErrorResponse, PriceTable, PricingPlugin, RiskPlugin,
    RouterPlugin, StreamEnd, TranslatorPlugin, UpstreamRequest, Usage, Verdict,
};
use super::bundle::PluginId;
use super::fault::CallError;
use super::pool::{Instance, Pool, World};
use super::request::{PolicyRequest, lent};
use super::state::RequestText;
use std::sync::Arc;
use wasmtime::component::ResourceAny;

/// A loaded plugin version of some kind.
#[derive(Clone)]
pub enum LoadedPlugin {
    Router(Plugin<RouterPlugin>),
    Risk(Plugin<RiskPlugin>),
    Pricing(Plugin<PricingPlugin>),
    Translator(Plugin<TranslatorPlugin>),
}

impl LoadedPlugin {
    pub fn id(&self) -> &Arc<PluginId> {
        match self {
            LoadedPlugin::Router(p) => p.id(),
            LoadedPlugin::Risk(p) => p.id(),
            LoadedPlugin::Pricing(p) => p.id(),
            LoadedPlugin::Translator(p) => p.id(),
        }
    }

    pub(super) async fn check_start(&self) -> Result<(), CallError> {
        match self {
            LoadedPlugin::Router(p) => p.pool.check_start().await,
            LoadedPlugin::Risk(p) => p.pool.check_start().await,
            LoadedPlugin::Pricing(p) => p.pool.check_start().await,
            LoadedPlugin::Translator(p) => p.pool.check_start().await,
        }
    }

    pub(super) fn forget_idle_here(&self) {
        match self {
            LoadedPlugin::Router(p) => p.pool.forget_idle_here(),
            LoadedPlugin::Risk(p) => p.pool.forget_idle_here(),
            LoadedPlugin::Pricing(p) => p.pool.forget_idle_here(),
            LoadedPlugin::Translator(p) => p.pool.forget_idle_here(),
        }
    }
}

pub type Router = Plugin<RouterPlugin>;
pub type Risk = Plugin<RiskPlugin>;
pub type Pricing = Plugin<PricingPlugin>;
pub type Translator = Plugin<TranslatorPlugin>;

macro_rules! from_loaded {
    ($variant:ident) => {
        impl TryFrom<LoadedPlugin> for $variant {
            type Error = LoadedPlugin;
            fn try_from(loaded: LoadedPlugin) -> Result<Self, LoadedPlugin> {
                match loaded {
                    LoadedPlugin::$variant(plugin) => Ok(plugin),
                    other => Err(other),
                }
            }
        }
    };
}

from_loaded!(Router);
from_loaded!(Risk);
from_loaded!(Pricing);
from_loaded!(Translator);

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} plugin {}", self.id().kind, self.id())
    }
}

pub struct Plugin<W: World> {
    pool: Arc<Pool<W>>,
}

impl<W: World> Clone for Plugin<W> {
    fn clone(&self) -> Self {
        Plugin {
            pool: self.pool.clone(),
        }
    }
}

impl<W: World> Plugin<W> {
    pub(super) fn new(pool: Pool<W>) -> Self {
        Plugin {
            pool: Arc::new(pool),
        }
    }

    pub fn id(&self) -> &Arc<PluginId> {
        self.pool.id()
    }
}

/// Longest tag or error text a plugin may hand back.
const MAX_TEXT: usize = 1024;
const MAX_TAGS: usize = 32;

impl Plugin<RouterPlugin> {
    /// The indices of `request.candidates` in the order to try them.
    pub async fn route(&self, request: &Arc<PolicyRequest>) -> Result<Vec<usize>, CallError> {
        let mut lease = self.pool.lease().await?;
        let instance = lease.armed();
        instance.store.data_mut().request = Some(request.clone());
        let result = instance
            .bindings
            .sluice_plugin_router()
            .call_route(&mut instance.store, lent())
            .await;
        let candidates = request.candidates.len();
        lease.settle(result, |order| check_order(order, candidates))
    }
}

fn check_order(order: Vec<u32>, candidates: usize) -> Result<Vec<usize>, String> {
    let mut seen = vec![false; candidates];
    order
        .into_iter()
        .map(|index| {
            let index = index as usize;
            if index >= candidates {
                Err(format!(
                    "channel index {index} is out of range (there are {candidates} candidates)"
                ))
            } else if std::mem::replace(&mut seen[index], true) {
                Err(format!("channel index {index} appears twice"))
            } else {
                Ok(index)
            }
        })
        .collect()
}

impl Plugin<RiskPlugin> {
    /// Admits or refuses a request; `text` is extracted only if asked for.
    pub async fn check(
        &self,
        request: &Arc<PolicyRequest>,
        text: Arc<dyn RequestText>,
    ) -> Result<Verdict, CallError> {
        let mut lease = self.pool.lease().await?;
        let instance = lease.armed();
        let state = instance.store.data_mut();
        state.request = Some(request.clone());
        state.request_text = Some(text);
        let result = instance
            .bindings
            .sluice_plugin_risk()
            .call_check(&mut instance.store, lent())
            .await;
        lease.settle(result, check_verdict)
    }
}

fn check_verdict(verdict: Verdict) -> Result<Verdict, String> {
    match &verdict {
        Verdict::Allow(tags) => {
            if tags.len() > MAX_TAGS {
                return Err(format!("{} tags, at most {MAX_TAGS} allowed", tags.len()));
            }
            if let Some(tag) = tags.iter().find(|t| t.is_empty() || t.len() > MAX_TEXT) {
                return Err(format!("tag of {} bytes", tag.len()));
            }
        }
        Verdict::Deny(denial) => {
            if !(400..=599).contains(&denial.status) {
                return Err(format!(
                    "denial status {} is not an HTTP error status",
                    denial.status
                ));
            }
            let valid_code = !denial.code.is_empty()
                && denial.code.len() <= 64
                && denial
                    .code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
            if !valid_code {
                return Err(format!(
                    "denial code {:?} is not a short identifier",
                    denial.code
                ));
            }
            if denial.message.len() > MAX_TEXT {
                return Err(format!("denial message of {} bytes", denial.message.len()));
            }
        }
    }
    Ok(verdict)
}

impl Plugin<PricingPlugin> {
    /// The charge for `usage`, in integer quota units.
    pub async fn price(
        &self,
        request: &Arc<PolicyRequest>,
        usage: Usage,
        prices: PriceTable,
    ) -> Result<u64, CallError> {
        let mut lease = self.pool.lease().await?;
        let instance = lease.armed();
        instance.store.data_mut().request = Some(request.clone());
        let result = instance
            .bindings
            .sluice_plugin_pricing()
            .call_price(&mut instance.store, lent(), usage, prices)
            .await;
        lease.settle(result, Ok)
    }
}

/// Runs one non-stream translator function on a leased instance.
macro_rules! translate {
    ($plugin:expr, $call:ident($($arg:expr),*), $check:expr) => {{
        let mut lease = $plugin.pool.lease().await?;
        let instance = lease.armed();
        let result = instance
            .bindings
            .sluice_plugin_translator()
            .$call(&mut instance.store, $($arg),*)
            .await;
        lease.settle(result, $check)
    }};
}

impl Plugin<TranslatorPlugin> {
    pub async fn request_to_canonical(&self, body: &[u8]) -> Result<Vec<u8>, CallError> {
        translate!(self, call_request_to_canonical(body), Ok)
    }

    pub async fn request_from_canonical(
        &self,
        body: &[u8],
        model: &str,
    ) -> Result<UpstreamRequest, CallError> {
        translate!(
            self,
            call_request_from_canonical(body, model),
            check_upstream_request
        )
    }

    pub async fn request_passthrough(
        &self,
        body: &[u8],
        model: &str,
        headers: &[(String, String)],
    ) -> Result<UpstreamRequest, CallError> {
        translate!(
            self,
            call_request_passthrough(body, model, headers),
            check_upstream_request
        )
    }

    pub async fn response_to_canonical(&self, body: &[u8]) -> Result<Vec<u8>, CallError> {
        translate!(self, call_response_to_canonical(body), Ok)
    }

    pub async fn response_from_canonical(&self, body: &[u8]) -> Result<Vec<u8>, CallError> {
        translate!(self, call_response_from_canonical(body), Ok)
    }

    pub async fn response_usage(&self, body: &[u8]) -> Result<Option<Usage>, CallError> {
        translate!(self, call_response_usage(body), Ok)
    }

    pub async fn error_to_canonical(
        &self,
        error: &ErrorResponse,
    ) -> Result<ErrorResponse, CallError> {
        translate!(self, call_error_to_canonical(error), check_error_response)
    }

    pub async fn error_from_canonical(
        &self,
        error: &ErrorResponse,
    ) -> Result<ErrorResponse, CallError> {
        translate!(self, call_error_from_canonical(error), check_error_response)
    }

    /// Starts translating one stream, in an instance it holds until the
    /// stream ends: a warm one when one is idle (instantiating and then
    /// freeing a store per stream cost more than the whole translation).
    pub async fn open_stream(&self, direction: Direction) -> Result<TranslatorStream, CallError> {
        let mut instance = self.pool.take().await?;
        self.pool.arm(&mut instance);
        let result = instance
            .bindings
            .sluice_plugin_translator()
            .stream_translator()
            .call_constructor(&mut instance.store, direction)
            .await
            .map(Ok);
        let handle = self.pool.outcome(&instance, result)??;
        Ok(TranslatorStream {
            pool: self.pool.clone(),
            instance: Ok(instance),
            handle,
        })
    }
}

fn check_error_response(error: ErrorResponse) -> Result<ErrorResponse, String> {
    if (400..=599).contains(&error.status) {
        Ok(error)
    } else {
        Err(format!(
            "error status {} is not an HTTP error status",
            error.status
        ))
    }
}

/// Headers only the host may set: framing, routing and credentials.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "authorization",
    "x-api-key",
    "x-goog-api-key",
];

fn check_upstream_request(request: UpstreamRequest) -> Result<UpstreamRequest, String> {
    let printable = |s: &str| s.bytes().all(|b| (0x21..0x7f).contains(&b));
    if !request.path.starts_with('/') || !printable(&request.path) {
        return Err(format!(
            "upstream path {:?} is not an absolute path",
            request.path
        ));
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let credential_name = match &request.credential {
        CredentialPlacement::Bearer => None,
        CredentialPlacement::Header(name) | CredentialPlacement::Query(name) => Some(name),
    };
    if let Some(name) = credential_name
        && !token(name)
    {
        return Err(format!("credential name {name:?} is not a valid name"));
    }
    for (name, value) in &request.headers {
        if !token(name) {
            return Err(format!("header name {name:?} is not valid"));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str())
            || credential_name.is_some_and(|c| c.eq_ignore_ascii_case(name))
        {
            return Err(format!("header {name:?} is set by the host only"));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!("header {name:?} has a line break in its value"));
        }
    }
    Ok(request)
}

/// One stream being translated, in its own store. After a fault every
/// further call reports that fault again: a stream never resumes on a
/// broken instance.
pub struct TranslatorStream {
    pool: Arc<Pool<TranslatorPlugin>>,
    instance: Result<Box<Instance<TranslatorPlugin>>, CallError>,
    handle: ResourceAny,
}

impl TranslatorStream {
    /// Feeds the next bytes; returns the translated bytes complete so far.
    pub async fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, CallError> {
        let instance = self.instance.as_mut().map_err(|fault| fault.clone())?;
        self.pool.arm(instance);
        let result = instance
            .bindings
            .sluice_plugin_translator()
            .stream_translator()
            .call_push(&mut instance.store, self.handle, chunk)
            .await;
        self.outcome(result)
    }

    /// Ends the input: what is left to send, and the usage the stream saw.
    /// A stream that ended cleanly drops its resource and gives the
    /// instance back for the next one; any other ending discards it (a
    /// stream dropped half-way has state the next one must not see).
    pub async fn finish(mut self) -> Result<StreamEnd, CallError> {
        let instance = self.instance.as_mut().map_err(|fault| fault.clone())?;
        self.pool.arm(instance);
        let result = instance
            .bindings
            .sluice_plugin_translator()
            .stream_translator()
            .call_finish(&mut instance.store, self.handle)
            .await;
        let end = self.outcome(result)?;
        let closed = self.closed();
        if let Ok(mut instance) = std::mem::replace(&mut self.instance, Err(closed)) {
            self.pool.arm(&mut instance);
            if self
                .handle
                .resource_drop_async(&mut instance.store)
                .await
                .is_ok()
            {
                self.pool.release(instance);
            }
        }
        Ok(end)
    }

    fn closed(&self) -> CallError {
        self.pool
            .error(super::Failure::Unavailable("the stream has ended".into()))
    }

    fn outcome<R>(
        &mut self,
        result: wasmtime::Result<Result<R, super::bindings::PluginError>>,
    ) -> Result<R, CallError> {
        let instance = self.instance.as_ref().map_err(|fault| fault.clone())?;
        match self.pool.outcome(instance, result) {
            Ok(answer) => answer,
            Err(fault) => {
                self.instance = Err(fault.clone());
                Err(fault)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::builtin;
    use super::super::runtime::{Runtime, RuntimeConfig};
    use super::super::selftest;
    use super::*;
    use crate::plugins::Failure;

    /// A load's self-tests make warm calls on the loading thread, which
    /// keep their instances there; the load drops them.
    #[tokio::test]
    async fn a_load_leaves_no_instance_idle_on_its_thread() {
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let bundle = builtin::bundles()
            .into_iter()
            .find(|bundle| bundle.manifest.name == "router")
            .unwrap();
        assert!(!bundle.manifest.tests.is_empty());
        let plugin = runtime.load(&bundle).await.unwrap().plugin;
        let LoadedPlugin::Router(router) = &plugin else {
            panic!("the router bundle loads a router");
        };
        assert_eq!(router.pool.idle_here(), 0);
        let outcomes = selftest::run(&plugin, &bundle.manifest.tests).await;
        assert!(outcomes.iter().all(|outcome| outcome.failure.is_none()));
        assert!(router.pool.idle_here() > 0);
        plugin.forget_idle_here();
        assert_eq!(router.pool.idle_here(), 0);
    }

    #[test]
    fn route_order_must_be_in_range_and_unique() {
        assert_eq!(check_order(vec![2, 0], 3), Ok(vec![2, 0]));
        assert!(
            check_order(vec![3], 3)
                .unwrap_err()
                .contains("out of range")
        );
        assert!(check_order(vec![1, 1], 3).unwrap_err().contains("twice"));
    }

    #[test]
    fn upstream_requests_cannot_set_host_headers_or_split_lines() {
        let request = |path: &str, headers: Vec<(&str, &str)>| UpstreamRequest {
            path: path.into(),
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
            credential: CredentialPlacement::Header("x-secret".into()),
            body: vec![],
        };
        assert!(
            check_upstream_request(request(
                "/v1/messages",
                vec![("anthropic-version", "2023-06-01")]
            ))
            .is_ok()
        );
        assert!(check_upstream_request(request("v1", vec![])).is_err());
        assert!(check_upstream_request(request("/a b", vec![])).is_err());
        assert!(check_upstream_request(request("/", vec![("Authorization", "x")])).is_err());
        assert!(check_upstream_request(request("/", vec![("X-Secret", "x")])).is_err());
        assert!(check_upstream_request(request("/", vec![("x-a", "1\r\nx-b: 2")])).is_err());
        assert!(check_upstream_request(request("/", vec![("bad name", "1")])).is_err());
    }

    #[test]
    fn denials_need_an_error_status_and_a_short_code() {
        use super::super::bindings::Denial;
        let deny = |status, code: &str| {
            check_verdict(Verdict::Deny(Denial {
                status,
                code: code.into(),
                message: "no".into(),
            }))
        };
        assert!(deny(403, "access_denied").is_ok());
        assert!(deny(200, "ok").is_err());
        assert!(deny(403, "has space").is_err());
        assert!(check_verdict(Verdict::Allow(vec![String::new()])).is_err());
    }

    #[test]
    fn failures_say_whether_the_instance_is_spent() {
        assert!(Failure::Trap("x".into()).is_fault());
        assert!(
            !Failure::Refused {
                code: "a".into(),
                message: "b".into()
            }
            .is_fault()
        );
    }
}
