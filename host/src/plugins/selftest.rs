//! Self-tests a bundle's manifest carries: each one call of the plugin's
//! kind and the answer expected. A bundle loads only when all of them pass,
//! so a version that does not do what its author said never serves.
//!
//! ```toml
//! [[tests]]
//! name = "a batch call is half price"
//! request = { model = "gpt-4o", tags = ["batch"] }     # envelope fields
//! usage = { prompt_tokens = 1000, completion_tokens = 100 }
//! prices = { model_ratio = 1.0, completion_ratio = 2.0 }
//! expect = { charge = 600 }
//! ```
//!
//! By kind: a router test gives `candidates` and expects the channel names
//! in `order`; a risk test may give the request `text` and expects `allow`
//! (the tags added) or `deny` (the code); a pricing test gives `usage` and
//! `prices` and expects `charge`; a translator test names the `call`
//! (`request-to-canonical`, `request-from-canonical` with `model`,
//! `response-to-canonical`, `response-from-canonical`), gives the `body`
//! and expects `body` (compared as JSON) and, for upstream requests,
//! `path`. Any test may expect `error`, the code the plugin refuses with.

use super::bindings::{Caller, PriceTable, Usage, Verdict};
use super::fault::{CallError, Failure};
use super::kinds::LoadedPlugin;
use super::request::{Candidate, Envelope, PolicyRequest};
use super::state::RequestText;
use crate::store::prices::ratio;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfTest {
    pub name: String,
    #[serde(default)]
    request: RequestInput,
    #[serde(default)]
    caller: CallerInput,
    #[serde(default)]
    candidates: Vec<CandidateInput>,
    #[serde(default)]
    text: String,
    usage: Option<UsageInput>,
    prices: Option<PricesInput>,
    call: Option<TranslatorCall>,
    body: Option<String>,
    model: Option<String>,
    expect: Expect,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RequestInput {
    model: String,
    stream: bool,
    max_output_tokens: Option<u32>,
    estimated_prompt_tokens: u32,
    inbound_protocol: String,
    tags: Vec<String>,
    received_at_ms: u64,
    seed: u64,
}

impl Default for RequestInput {
    fn default() -> Self {
        RequestInput {
            model: "test-model".into(),
            stream: false,
            max_output_tokens: None,
            estimated_prompt_tokens: 0,
            inbound_protocol: "openai-chat".into(),
            tags: Vec::new(),
            received_at_ms: 0,
            seed: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CallerInput {
    tenant: String,
    user: String,
    group: String,
    key_id: String,
}

impl Default for CallerInput {
    fn default() -> Self {
        CallerInput {
            tenant: "test-tenant".into(),
            user: "test-user".into(),
            group: "default".into(),
            key_id: "test-key".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidateInput {
    name: String,
    #[serde(default = "openai_chat")]
    protocol: String,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    tags: Vec<String>,
    latency_ms: Option<u32>,
}

fn openai_chat() -> String {
    "openai-chat".into()
}
fn one() -> u32 {
    1
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct UsageInput {
    prompt_tokens: u64,
    completion_tokens: u64,
    cached_tokens: u64,
    cache_write_tokens: u64,
    reasoning_tokens: u64,
}

/// Ratios as decimals, as operators write them in `[[prices]]`; 1.0 when
/// not given.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct PricesInput {
    #[serde(default = "ratio::one", deserialize_with = "ratio::deserialize")]
    model_ratio: i64,
    #[serde(default = "ratio::one", deserialize_with = "ratio::deserialize")]
    completion_ratio: i64,
    #[serde(default = "ratio::one", deserialize_with = "ratio::deserialize")]
    cached_ratio: i64,
    #[serde(default = "ratio::one", deserialize_with = "ratio::deserialize")]
    cache_write_ratio: i64,
    #[serde(default = "ratio::one", deserialize_with = "ratio::deserialize")]
    group_ratio: i64,
    per_call: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[expect(clippy::enum_variant_names, reason = "named after the WIT functions")]
enum TranslatorCall {
    RequestToCanonical,
    RequestFromCanonical,
    ResponseToCanonical,
    ResponseFromCanonical,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    order: Option<Vec<String>>,
    allow: Option<Vec<String>>,
    deny: Option<String>,
    charge: Option<u64>,
    body: Option<String>,
    path: Option<String>,
    error: Option<String>,
}

/// How one self-test went: `None` when it passed, else why not.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub failure: Option<String>,
}

/// Runs every test against `plugin`.
pub async fn run(plugin: &LoadedPlugin, tests: &[SelfTest]) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(tests.len());
    for test in tests {
        let failure = match test.run(plugin).await {
            Ok(Answer::Refused(code)) => match &test.expect.error {
                Some(expected) if *expected == code => None,
                _ => Some(format!("the plugin refused with {code:?}")),
            },
            Ok(_) if test.expect.error.is_some() => Some(format!(
                "expected a refusal with {:?}; the plugin answered",
                test.expect.error.as_deref().unwrap_or_default()
            )),
            Ok(answer) => test.compare(answer).err(),
            Err(reason) => Some(reason),
        };
        outcomes.push(Outcome {
            name: test.name.clone(),
            failure,
        });
    }
    outcomes
}

/// What the plugin answered, per kind.
enum Answer {
    Order(Vec<String>),
    Verdict(Verdict),
    Charge(u64),
    Body { body: Vec<u8>, path: Option<String> },
    Refused(String),
}

impl SelfTest {
    async fn run(&self, plugin: &LoadedPlugin) -> Result<Answer, String> {
        let request = || PolicyRequest::new(self.envelope(), self.caller());
        let answer = match plugin {
            LoadedPlugin::Router(router) => {
                if self.candidates.is_empty() {
                    return Err("a router test needs `candidates`".into());
                }
                let request =
                    request().with_candidates(self.candidates.iter().map(candidate).collect());
                router.route(&Arc::new(request)).await.map(|order| {
                    Answer::Order(
                        order
                            .into_iter()
                            .map(|i| self.candidates[i].name.clone())
                            .collect(),
                    )
                })
            }
            LoadedPlugin::Risk(risk) => {
                let text = Arc::new(FixedText(self.text.clone()));
                risk.check(&Arc::new(request()), text)
                    .await
                    .map(Answer::Verdict)
            }
            LoadedPlugin::Pricing(pricing) => {
                let (Some(usage), Some(prices)) = (&self.usage, &self.prices) else {
                    return Err("a pricing test needs `usage` and `prices`".into());
                };
                pricing
                    .price(&Arc::new(request()), usage_of(usage), price_table(prices))
                    .await
                    .map(Answer::Charge)
            }
            LoadedPlugin::Translator(translator) => {
                let (Some(call), Some(body)) = (self.call, &self.body) else {
                    return Err("a translator test needs `call` and `body`".into());
                };
                let body = body.as_bytes();
                let plain = |body: Vec<u8>| Answer::Body { body, path: None };
                match call {
                    TranslatorCall::RequestToCanonical => {
                        translator.request_to_canonical(body).await.map(plain)
                    }
                    TranslatorCall::ResponseToCanonical => {
                        translator.response_to_canonical(body).await.map(plain)
                    }
                    TranslatorCall::ResponseFromCanonical => {
                        translator.response_from_canonical(body).await.map(plain)
                    }
                    TranslatorCall::RequestFromCanonical => {
                        let model = self.model.as_deref().unwrap_or(&self.request.model);
                        translator
                            .request_from_canonical(body, model)
                            .await
                            .map(|request| Answer::Body {
                                body: request.body,
                                path: Some(request.path),
                            })
                    }
                }
            }
        };
        match answer {
            Ok(answer) => Ok(answer),
            Err(CallError {
                failure: Failure::Refused { code, .. },
                ..
            }) => Ok(Answer::Refused(code)),
            Err(error) => Err(error.failure.to_string()),
        }
    }

    fn compare(&self, answer: Answer) -> Result<(), String> {
        let expect = &self.expect;
        let mismatch = |what: &str, expected: &dyn std::fmt::Debug, got: &dyn std::fmt::Debug| {
            Err(format!("{what}: expected {expected:?}, got {got:?}"))
        };
        match answer {
            Answer::Order(order) => match &expect.order {
                Some(expected) if *expected == order => Ok(()),
                Some(expected) => mismatch("order", expected, &order),
                None => Err("a router test expects `order`".into()),
            },
            Answer::Verdict(Verdict::Allow(tags)) => match (&expect.allow, &expect.deny) {
                (Some(expected), _) if *expected == tags => Ok(()),
                (Some(expected), _) => mismatch("tags", expected, &tags),
                (None, Some(code)) => mismatch("verdict", &format!("deny {code}"), &"allow"),
                (None, None) => Err("a risk test expects `allow` or `deny`".into()),
            },
            Answer::Verdict(Verdict::Deny(denial)) => match &expect.deny {
                Some(code) if *code == denial.code => Ok(()),
                Some(code) => mismatch("denial code", code, &denial.code),
                None => mismatch("verdict", &"allow", &format!("deny {}", denial.code)),
            },
            Answer::Charge(charge) => match expect.charge {
                Some(expected) if expected == charge => Ok(()),
                Some(expected) => mismatch("charge", &expected, &charge),
                None => Err("a pricing test expects `charge`".into()),
            },
            Answer::Body { body, path } => {
                if let Some(expected) = &expect.path
                    && path.as_ref() != Some(expected)
                {
                    return mismatch("path", expected, &path);
                }
                let Some(expected) = &expect.body else {
                    return Err("a translator test expects `body`".into());
                };
                if same_json(expected.as_bytes(), &body) {
                    Ok(())
                } else {
                    mismatch("body", expected, &String::from_utf8_lossy(&body))
                }
            }
            Answer::Refused(_) => unreachable!("refusals are compared in `run`"),
        }
    }

    fn envelope(&self) -> Envelope {
        let r = &self.request;
        Envelope {
            model: r.model.clone(),
            stream: r.stream,
            max_output_tokens: r.max_output_tokens,
            estimated_prompt_tokens: r.estimated_prompt_tokens,
            inbound_protocol: r.inbound_protocol.clone(),
            tags: r.tags.clone(),
            received_at_ms: r.received_at_ms,
            seed: r.seed,
        }
    }

    fn caller(&self) -> Arc<Caller> {
        let c = &self.caller;
        Arc::new(Caller {
            tenant: c.tenant.clone(),
            user: c.user.clone(),
            group: c.group.clone(),
            key_id: c.key_id.clone(),
        })
    }
}

/// Bodies equal as JSON values (key order and spacing aside), or as bytes
/// when either is not JSON.
fn same_json(expected: &[u8], got: &[u8]) -> bool {
    match (
        serde_json::from_slice::<serde_json::Value>(expected),
        serde_json::from_slice::<serde_json::Value>(got),
    ) {
        (Ok(expected), Ok(got)) => expected == got,
        _ => expected == got,
    }
}

fn candidate(input: &CandidateInput) -> Candidate {
    Candidate {
        name: input.name.clone(),
        protocol: input.protocol.clone(),
        weight: input.weight,
        priority: input.priority,
        tags: input.tags.clone(),
        latency_ms: input.latency_ms,
    }
}

fn usage_of(input: &UsageInput) -> Usage {
    Usage {
        prompt_tokens: input.prompt_tokens,
        completion_tokens: input.completion_tokens,
        cached_tokens: input.cached_tokens,
        cache_write_tokens: input.cache_write_tokens,
        reasoning_tokens: input.reasoning_tokens,
    }
}

fn price_table(input: &PricesInput) -> PriceTable {
    // The ratio parser keeps them within 0..=1e18.
    let unsigned = |millionths: i64| millionths.unsigned_abs();
    PriceTable {
        model_ratio: unsigned(input.model_ratio),
        completion_ratio: unsigned(input.completion_ratio),
        cached_ratio: unsigned(input.cached_ratio),
        cache_write_ratio: unsigned(input.cache_write_ratio),
        group_ratio: unsigned(input.group_ratio),
        per_call: input.per_call,
    }
}

struct FixedText(String);

impl RequestText for FixedText {
    fn message_text(&self) -> String {
        self.0.clone()
    }
}
