//! What the plugin runtime costs: `cargo bench -p sluice --bench plugins`.
//!
//! Prints, for real compiled components: the compile time of each built-in
//! plugin, the cached start of all of them, one policy call on a warm and on
//! a fresh instance (store + instantiate + call + drop), and one stream
//! chunk through the OpenAI translator.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sluice::plugins::bindings::{Caller, ChannelCandidate, Direction, Envelope};
use sluice::plugins::{Bundle, Instances, Router, Runtime, RuntimeConfig, Translator, builtin};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime as Tokio;

fn test_bundle(name: &str) -> Bundle {
    Bundle::read_dir(&Path::new(env!("SLUICE_BUNDLES_DIR")).join(name)).unwrap()
}

fn envelope() -> Envelope {
    Envelope {
        model: "gpt-4o-mini".into(),
        stream: true,
        max_output_tokens: Some(512),
        estimated_prompt_tokens: 120,
        inbound_protocol: "openai-chat".into(),
        tags: vec!["interactive".into()],
        received_at_ms: 1_764_000_000_000,
        seed: 42,
    }
}

fn caller() -> Caller {
    Caller {
        tenant: "acme".into(),
        user: "alice".into(),
        group: "default".into(),
        key_id: "key-1".into(),
    }
}

fn candidates() -> Vec<ChannelCandidate> {
    ["primary", "secondary"]
        .iter()
        .map(|name| ChannelCandidate {
            name: name.to_string(),
            protocol: "openai-chat".into(),
            weight: 1,
            priority: 0,
            tags: vec![],
            latency_ms: Some(120),
        })
        .collect()
}

fn loading(c: &mut Criterion) {
    let tokio = Tokio::new().unwrap();
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    let uncached = Runtime::new(RuntimeConfig::default()).unwrap();
    for bundle in builtin::bundles() {
        group.bench_function(BenchmarkId::new("compile", &bundle.manifest.name), |b| {
            b.to_async(&tokio)
                .iter(|| async { uncached.load(&bundle).await.unwrap() })
        });
    }
    let cache = tempfile::tempdir().unwrap();
    let cached = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let bundles = builtin::bundles();
    tokio.block_on(async {
        for bundle in &bundles {
            cached.load(bundle).await.unwrap();
        }
    });
    group.bench_function("cached start of all built-ins", |b| {
        b.to_async(&tokio).iter(|| async {
            for bundle in &bundles {
                cached.load(bundle).await.unwrap();
            }
        })
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
    let (envelope, caller, candidates) = (envelope(), caller(), candidates());

    let mut group = c.benchmark_group("policy call");
    group.measurement_time(Duration::from_secs(3));
    for (name, router) in [
        ("no-op router, warm instance", &warm),
        ("no-op router, fresh instance", &fresh),
        ("built-in router, warm instance", &builtin_router),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&tokio)
                .iter(|| async { router.route(&envelope, &caller, &candidates).await.unwrap() })
        });
    }
    group.finish();
}

fn stream_chunks(c: &mut Criterion) {
    let tokio = Tokio::new().unwrap();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let openai: Translator = tokio
        .block_on(runtime.load(&builtin::named("openai").unwrap()))
        .unwrap()
        .plugin
        .try_into()
        .unwrap();
    let chunk = concat!(
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1764000000,",
        "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" the quick brown\"},",
        "\"finish_reason\":null}],\"usage\":null}\n\n"
    )
    .as_bytes();
    assert_eq!(chunk.len(), 200);
    let mut stream = tokio
        .block_on(openai.open_stream(Direction::ToCanonical))
        .unwrap();
    let mut group = c.benchmark_group("stream");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("openai translator, one 200-byte SSE chunk", |b| {
        b.iter_custom(|iterations| {
            tokio.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    stream.push(chunk).await.unwrap();
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, loading, policy_calls, stream_chunks);
criterion_main!(benches);
