//! What the plugin runtime costs: `cargo bench -p sluice --bench plugins`.
//!
//! Prints, for real compiled components: the compile time of each built-in
//! plugin, the cached start of all of them, one policy call on a warm and on
//! a fresh instance (store + instantiate + call + drop), and for each
//! translator one stream chunk and one non-stream answer, each way.

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use sluice::plugins::bindings::{Caller, Direction};
use sluice::plugins::{
    Bundle, Candidate, Envelope, Instances, PolicyRequest, RequestText, Risk, Router, Runtime,
    RuntimeConfig, Translator, builtin,
};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime as Tokio;

fn test_bundle(name: &str) -> Bundle {
    Bundle::read_dir(&Path::new(env!("SLUICE_BUNDLES_DIR")).join(name)).unwrap()
}

/// A request routed between two channels.
fn request() -> Arc<PolicyRequest> {
    let envelope = Envelope {
        model: "gpt-4o-mini".into(),
        stream: true,
        max_output_tokens: Some(512),
        estimated_prompt_tokens: 120,
        inbound_protocol: "openai-chat".into(),
        tags: vec!["interactive".into()],
        received_at_ms: 1_764_000_000_000,
        seed: 42,
    };
    let caller = Caller {
        tenant: "acme".into(),
        user: "alice".into(),
        group: "default".into(),
        key_id: "key-1".into(),
    };
    let candidates = ["primary", "secondary"]
        .iter()
        .map(|name| Candidate {
            name: name.to_string(),
            protocol: "openai-chat".into(),
            weight: 1,
            priority: 0,
            tags: vec![],
            latency_ms: Some(120),
        })
        .collect();
    Arc::new(PolicyRequest::new(envelope, Arc::new(caller)).with_candidates(candidates))
}

fn loading(c: &mut Criterion) {
    let tokio = Tokio::new().unwrap();
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    // A runtime keeps what it compiled in memory, so each iteration starts
    // a new one: the first load compiles (or, with a cache folder, reads
    // the compiled artifact from disk).
    for bundle in builtin::bundles() {
        group.bench_function(BenchmarkId::new("compile", &bundle.manifest.name), |b| {
            b.to_async(&tokio).iter_batched(
                || Runtime::new(RuntimeConfig::default()).unwrap(),
                |runtime| async {
                    runtime.load(&bundle).await.unwrap();
                    runtime
                },
                BatchSize::PerIteration,
            )
        });
    }
    let cache = tempfile::tempdir().unwrap();
    let cached = || {
        Runtime::new(RuntimeConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            ..RuntimeConfig::default()
        })
        .unwrap()
    };
    let bundles = builtin::bundles();
    tokio.block_on(async {
        let runtime = cached();
        for bundle in &bundles {
            runtime.load(bundle).await.unwrap();
        }
    });
    group.bench_function("cached start of all built-ins", |b| {
        b.to_async(&tokio).iter_batched(
            cached,
            |runtime| async {
                for bundle in &bundles {
                    runtime.load(bundle).await.unwrap();
                }
                runtime
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn policy_calls(c: &mut Criterion) {
    let tokio = Tokio::new().unwrap();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    // The faulty router orders candidates as given for any ordinary model:
    // a no-op router, so the figures are the runtime's cost alone.
    let noop = test_bundle("faulty-router");
    let mut fresh_noop = noop.clone();
    fresh_noop.manifest.instances = Instances::Fresh;
    let load = |bundle: &Bundle| -> Router {
        tokio
            .block_on(runtime.load(bundle))
            .unwrap()
            .plugin
            .try_into()
            .unwrap()
    };
    let (warm, fresh) = (load(&noop), load(&fresh_noop));
    let builtin_router = load(&builtin::named("router").unwrap());
    let request = request();

    let mut group = c.benchmark_group("policy call");
    group.measurement_time(Duration::from_secs(3));
    for (name, router) in [
        ("no-op router, warm instance", &warm),
        ("no-op router, fresh instance", &fresh),
        ("built-in router, warm instance", &builtin_router),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&tokio)
                .iter(|| async { router.route(&request).await.unwrap() })
        });
    }
    let risk: Risk = tokio
        .block_on(runtime.load(&builtin::named("risk").unwrap()))
        .unwrap()
        .plugin
        .try_into()
        .unwrap();
    group.bench_function("built-in risk check, warm instance", |b| {
        b.to_async(&tokio)
            .iter(|| async { risk.check(&request, Arc::new(NoText)).await.unwrap() })
    });
    group.finish();
}

/// The request text, for a risk check that never asks for it.
struct NoText;

impl RequestText for NoText {
    fn message_text(&self) -> String {
        String::new()
    }
}

/// A typical text delta in each protocol's stream, and a typical
/// non-stream answer.
const OPENAI_CHUNK: &str = concat!(
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1764000000,",
    "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" the quick brown\"},",
    "\"finish_reason\":null}],\"usage\":null}\n\n"
);
const ANTHROPIC_CHUNK: &str = concat!(
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,",
    "\"delta\":{\"type\":\"text_delta\",\"text\":\" the quick brown\"}}\n\n"
);
const GEMINI_CHUNK: &str = concat!(
    "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\" the quick brown\"}]},",
    "\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":3,",
    "\"totalTokenCount\":15},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r1\"}\n\n"
);
const OPENAI_REQUEST: &str = r#"{"model":"demo","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Benchmark me"}],"max_tokens":256}"#;
const OPENAI_RESPONSE: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1764000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"The quick brown fox jumps over the lazy dog, twice, to make a typical short answer of a few dozen tokens.","refusal":null},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":42,"completion_tokens":25,"total_tokens":67,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#;
const ANTHROPIC_RESPONSE: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"The quick brown fox jumps over the lazy dog, twice, to make a typical short answer of a few dozen tokens."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":42,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":25}}"#;
const GEMINI_RESPONSE: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"The quick brown fox jumps over the lazy dog, twice, to make a typical short answer of a few dozen tokens."}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":42,"candidatesTokenCount":25,"totalTokenCount":67},"modelVersion":"gemini-2.5-flash","responseId":"r1"}"#;

/// Per translator: one stream chunk each way, and one non-stream answer
/// each way, through the real components.
fn translators(c: &mut Criterion) {
    let tokio = Tokio::new().unwrap();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let load = |name: &str| -> Translator {
        tokio
            .block_on(runtime.load(&builtin::named(name).unwrap()))
            .unwrap()
            .plugin
            .try_into()
            .unwrap()
    };
    let cases = [
        ("openai", OPENAI_CHUNK, OPENAI_RESPONSE),
        ("anthropic", ANTHROPIC_CHUNK, ANTHROPIC_RESPONSE),
        ("gemini", GEMINI_CHUNK, GEMINI_RESPONSE),
    ];
    let mut group = c.benchmark_group("translator");
    group.measurement_time(Duration::from_secs(3));
    for (name, chunk, response) in cases {
        let translator = load(name);
        for (direction, input, label) in [
            (Direction::ToCanonical, chunk, "stream chunk to canonical"),
            (
                Direction::FromCanonical,
                OPENAI_CHUNK,
                "stream chunk from canonical",
            ),
        ] {
            let mut stream = tokio.block_on(translator.open_stream(direction)).unwrap();
            // A stream's first event opens it (e.g. Anthropic's message_start):
            // measure the steady state after it.
            tokio.block_on(stream.push(input.as_bytes())).unwrap();
            group.bench_function(BenchmarkId::new(label, name), |b| {
                b.iter_custom(|iterations| {
                    tokio.block_on(async {
                        let started = Instant::now();
                        for _ in 0..iterations {
                            stream.push(input.as_bytes()).await.unwrap();
                        }
                        started.elapsed()
                    })
                })
            });
        }
        group.bench_function(BenchmarkId::new("request from canonical", name), |b| {
            b.to_async(&tokio).iter(|| async {
                translator
                    .request_from_canonical(OPENAI_REQUEST.as_bytes(), "gpt-4o-mini")
                    .await
                    .unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("answer to canonical", name), |b| {
            b.to_async(&tokio).iter(|| async {
                translator
                    .response_to_canonical(response.as_bytes())
                    .await
                    .unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("answer from canonical", name), |b| {
            b.to_async(&tokio).iter(|| async {
                translator
                    .response_from_canonical(OPENAI_RESPONSE.as_bytes())
                    .await
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, loading, policy_calls, translators);
criterion_main!(benches);
