//! The plugin runtime with real compiled components: built-in plugins of
//! every kind, bundle checks, the artifact cache and the sandbox.

mod common;

use common::{bundle, channel, envelope, load, request, runtime};
use sluice::plugins::bindings::{Direction, ErrorResponse, PriceTable, Usage, Verdict};
use sluice::plugins::{
    Bundle, Failure, LoadError, Manifest, Origin, Pricing, RequestText, Risk, Router, Runtime,
    RuntimeConfig, Translator,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[tokio::test]
async fn builtin_router_orders_every_candidate_by_tier() {
    let runtime = runtime();
    let router: Router = load(&runtime, &bundle("router")).await;
    let candidates = [
        channel("backup", 0, 5),
        channel("main-a", 10, 1),
        channel("main-b", 10, 1),
    ];
    let order = router
        .route(&request(envelope("gpt"), &candidates))
        .await
        .unwrap();
    assert_eq!(order.len(), 3);
    assert_eq!(order[2], 0, "the lower tier comes last: {order:?}");
    let again = router
        .route(&request(envelope("gpt"), &candidates))
        .await
        .unwrap();
    assert_eq!(order, again, "the same seed gives the same order");
}

struct CountingText {
    text: &'static str,
    asked: AtomicUsize,
}

impl RequestText for CountingText {
    fn message_text(&self) -> String {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.text.to_string()
    }
}

fn with_config(mut bundle: Bundle, config: &str) -> Bundle {
    bundle.manifest.config = toml::from_str(config).unwrap();
    bundle
}

#[tokio::test]
async fn builtin_risk_reads_the_request_text_only_when_it_needs_it() {
    let runtime = runtime();
    let text = Arc::new(CountingText {
        text: "please reveal the Launch Codes",
        asked: AtomicUsize::new(0),
    });

    let allow_all: Risk = load(&runtime, &bundle("risk")).await;
    let verdict = allow_all
        .check(&request(envelope("gpt"), &[]), text.clone())
        .await
        .unwrap();
    assert!(matches!(verdict, Verdict::Allow(_)));
    assert_eq!(text.asked.load(Ordering::SeqCst), 0);

    let by_terms: Risk = load(
        &runtime,
        &with_config(
            bundle("risk"),
            r#"terms = ["launch codes"]
status = 451"#,
        ),
    )
    .await;
    let Verdict::Deny(denial) = by_terms
        .check(&request(envelope("gpt"), &[]), text.clone())
        .await
        .unwrap()
    else {
        panic!("a listed term must be refused");
    };
    assert_eq!(
        (denial.status, denial.code.as_str()),
        (451, "content_policy_violation")
    );
    assert_eq!(text.asked.load(Ordering::SeqCst), 1);

    let by_user: Risk = load(
        &runtime,
        &with_config(bundle("risk"), r#"users = ["alice"]"#),
    )
    .await;
    let verdict = by_user
        .check(&request(envelope("gpt"), &[]), text.clone())
        .await
        .unwrap();
    assert!(matches!(verdict, Verdict::Deny(d) if d.status == 403 && d.code == "access_denied"));
}

#[tokio::test]
async fn a_bad_plugin_configuration_is_the_plugins_refusal_not_a_fault() {
    let runtime = runtime();
    let risk: Risk = load(&runtime, &with_config(bundle("risk"), "status = 200")).await;
    let text = Arc::new(CountingText {
        text: "",
        asked: AtomicUsize::new(0),
    });
    let error = risk
        .check(&request(envelope("gpt"), &[]), text)
        .await
        .unwrap_err();
    assert!(
        matches!(&error.failure, Failure::Refused { code, .. } if code == "bad_config"),
        "{error}"
    );
    assert!(!error.failure.is_fault());
}

#[tokio::test]
async fn builtin_pricing_charges_integer_units() {
    let runtime = runtime();
    let pricing: Pricing = load(&runtime, &bundle("pricing")).await;
    let usage = Usage {
        prompt_tokens: 1000,
        completion_tokens: 50,
        cached_tokens: 100,
        cache_write_tokens: 0,
        reasoning_tokens: 10,
    };
    let prices = PriceTable {
        model_ratio: 2_500_000,
        completion_ratio: 4_000_000,
        cached_ratio: 100_000,
        cache_write_ratio: 1_000_000,
        group_ratio: 800_000,
        per_call: None,
    };
    assert_eq!(
        pricing
            .price(&request(envelope("gpt"), &[]), usage, prices)
            .await
            .unwrap(),
        2220
    );
}

#[tokio::test]
async fn example_offpeak_pricing_discounts_by_the_admission_time() {
    let runtime = runtime();
    let pricing: Pricing = load(&runtime, &bundle("offpeak-pricing")).await;
    let usage = Usage {
        prompt_tokens: 1000,
        completion_tokens: 0,
        cached_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
    };
    let prices = PriceTable {
        model_ratio: 1_000_000,
        completion_ratio: 1_000_000,
        cached_ratio: 1_000_000,
        cache_write_ratio: 1_000_000,
        group_ratio: 1_000_000,
        per_call: None,
    };
    let day = 20_000 * 86_400_000;
    let at = |utc_hour: u64| {
        let mut e = envelope("gpt");
        e.received_at_ms = day + utc_hour * 3_600_000;
        e
    };
    // The bundle's window is 22:00–06:00 at UTC+8: 15:00 UTC is 23:00 there.
    assert_eq!(
        pricing
            .price(&request(at(15), &[]), usage, prices)
            .await
            .unwrap(),
        600
    );
    assert_eq!(
        pricing
            .price(&request(at(4), &[]), usage, prices)
            .await
            .unwrap(),
        1000
    );
}

#[tokio::test]
async fn example_batch_router_sends_batch_traffic_to_the_cheapest_channel() {
    let runtime = runtime();
    let router: Router = load(&runtime, &bundle("batch-router")).await;
    let candidates = [
        channel("fast-provider", 10, 1),
        channel("cheap-provider", 0, 1),
    ];
    let mut batch = envelope("gpt");
    batch.tags.push("batch".into());
    assert_eq!(
        router.route(&request(batch, &candidates)).await.unwrap(),
        vec![1, 0]
    );
    assert_eq!(
        router
            .route(&request(envelope("gpt"), &candidates))
            .await
            .unwrap(),
        vec![0, 1]
    );
}

#[tokio::test]
async fn builtin_openai_translator_streams_bytes_through_and_reports_usage() {
    let runtime = runtime();
    let openai: Translator = load(&runtime, &bundle("openai")).await;
    let transcript = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"caf\u{e9} \u{1F600}\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}\n\n",
        "data: [DONE]\n\n"
    )
    .as_bytes();
    for piece in [1, 5, 17, transcript.len()] {
        let mut stream = openai.open_stream(Direction::ToCanonical).await.unwrap();
        let mut out = Vec::new();
        for chunk in transcript.chunks(piece) {
            out.extend(stream.push(chunk).await.unwrap());
        }
        let end = stream.finish().await.unwrap();
        out.extend(end.tail);
        assert_eq!(out, transcript, "piece size {piece}");
        let used = end.used.unwrap();
        assert_eq!((used.prompt_tokens, used.completion_tokens), (9, 3));
    }

    let call = openai
        .request_from_canonical(br#"{"model":"alias","messages":[]}"#, "gpt-4o-mini")
        .await
        .unwrap();
    assert_eq!(call.path, "/chat/completions");
    assert_eq!(call.body, br#"{"model":"gpt-4o-mini","messages":[]}"#);
    let refused = openai.request_from_canonical(b"{", "m").await.unwrap_err();
    assert!(matches!(&refused.failure, Failure::Refused { code, .. } if code == "invalid_request"));
}

#[tokio::test]
async fn every_translator_function_of_the_contract_is_wired() {
    let runtime = runtime();
    let openai: Translator = load(&runtime, &bundle("openai")).await;
    let response = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
    assert_eq!(openai.request_to_canonical(b"{}").await.unwrap(), b"{}");
    assert_eq!(
        openai.response_to_canonical(response).await.unwrap(),
        response
    );
    assert_eq!(
        openai.response_from_canonical(response).await.unwrap(),
        response
    );
    let used = openai.response_usage(response).await.unwrap().unwrap();
    assert_eq!((used.prompt_tokens, used.completion_tokens), (3, 4));
    let error = ErrorResponse {
        status: 429,
        body: b"{}".to_vec(),
    };
    assert_eq!(openai.error_to_canonical(&error).await.unwrap().status, 429);
    assert_eq!(
        openai.error_from_canonical(&error).await.unwrap().body,
        b"{}"
    );

    let mut observing = openai.open_stream(Direction::Observe).await.unwrap();
    let usage_event =
        b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n";
    assert!(observing.push(usage_event).await.unwrap().is_empty());
    assert_eq!(
        observing
            .finish()
            .await
            .unwrap()
            .used
            .unwrap()
            .completion_tokens,
        2
    );
}

#[tokio::test]
async fn a_manifest_must_declare_the_kind_its_component_is() {
    let runtime = runtime();
    let mut mislabeled = bundle("router");
    mislabeled.manifest.kind = sluice::plugins::PluginKind::Pricing;
    let error = runtime.load(&mislabeled).await.unwrap_err().to_string();
    assert!(
        error.contains("router@0.1.0")
            && error.contains("declares a pricing plugin but the component is a router plugin"),
        "{error}"
    );
}

#[tokio::test]
async fn a_bundle_that_is_not_a_component_is_refused_clearly() {
    let runtime = runtime();
    let manifest = Manifest::parse("name = \"junk\"\nkind = \"router\"\nversion = \"1\"").unwrap();
    let error = runtime
        .load(&Bundle::new(manifest, b"\0asm garbage".to_vec()))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LoadError::Invalid { plugin, reason } if plugin == "junk@1" && reason.contains("not a valid WebAssembly component")),
        "{error}"
    );
}

#[tokio::test]
async fn manifest_limits_beyond_the_runtime_ceiling_are_refused() {
    let runtime = runtime();
    let mut greedy = bundle("router");
    greedy.manifest.limits.memory_mib = Some(100_000);
    let error = runtime.load(&greedy).await.unwrap_err().to_string();
    assert!(
        error.contains("memory_mib 100000 must be between 1 and 512"),
        "{error}"
    );
}

#[tokio::test]
async fn compiled_plugins_are_cached_on_disk_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(dir.path().join("cache")),
        ..RuntimeConfig::default()
    };
    let first = Runtime::new(config.clone()).unwrap();
    assert_eq!(
        first.load(&bundle("router")).await.unwrap().origin,
        Origin::Compiled
    );
    assert_eq!(
        first.load(&bundle("router")).await.unwrap().origin,
        Origin::Cached
    );

    let restarted = Runtime::new(config).unwrap();
    let loaded = restarted.load(&bundle("router")).await.unwrap();
    assert_eq!(loaded.origin, Origin::Cached);
    let router = Router::try_from(loaded.plugin).unwrap();
    let order = router
        .route(&request(envelope("gpt"), &[channel("a", 0, 1)]))
        .await
        .unwrap();
    assert_eq!(order, vec![0]);

    // A damaged entry is recompiled, not trusted.
    for entry in std::fs::read_dir(dir.path().join("cache")).unwrap() {
        std::fs::write(entry.unwrap().path(), b"corrupted").unwrap();
    }
    let config = RuntimeConfig {
        cache_dir: Some(dir.path().join("cache")),
        ..RuntimeConfig::default()
    };
    assert_eq!(
        Runtime::new(config)
            .unwrap()
            .load(&bundle("router"))
            .await
            .unwrap()
            .origin,
        Origin::Compiled
    );
}

#[tokio::test]
async fn a_bundle_whose_self_tests_fail_does_not_load() {
    let mut router = bundle("router");
    let passing = router.manifest.tests.len();
    assert!(passing > 0, "the built-in router carries self-tests");
    let runtime = runtime();
    runtime.load(&router).await.unwrap();
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("SLUICE_BUNDLES_DIR")).join("router/plugin.toml"),
    )
    .unwrap()
    .replace(
        r#"expect = { order = ["main", "backup"] }"#,
        r#"expect = { order = ["backup", "main"] }"#,
    );
    router.manifest = sluice::plugins::Manifest::parse(&text).unwrap();
    let error = runtime.load(&router).await.unwrap_err().to_string();
    assert!(
        error.contains(r#"self-tests failed: "the higher priority tier comes first, whatever the weights": order: expected ["backup", "main"], got ["main", "backup"]"#),
        "{error}"
    );
}

#[tokio::test]
async fn plugins_see_no_environment_files_clock_or_network() {
    // SAFETY: set before any other thread of this test reads the environment.
    unsafe { std::env::set_var("SLUICE_TEST_SECRET", "hunter2") };
    let runtime = runtime();
    let router: Router = load(&runtime, &bundle("faulty-router")).await;
    let error = router
        .route(&request(envelope("probe"), &[]))
        .await
        .unwrap_err();
    let Failure::Refused { message, .. } = &error.failure else {
        panic!("{error}")
    };
    assert_eq!(message, "env=0 files=false clock=0 network=false");
}

#[tokio::test]
async fn a_plugin_reads_its_own_configuration_as_json() {
    let runtime = runtime();
    let router: Router = load(&runtime, &bundle("faulty-router")).await;
    let error = router
        .route(&request(envelope("config"), &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(&error.failure, Failure::Refused { code, message } if code == "config" && message == r#"{"greeting":"hello"}"#),
        "{error}"
    );
}

#[tokio::test]
async fn a_plugin_reads_every_field_of_the_request_it_is_lent() {
    let runtime = runtime();
    let router: Router = load(&runtime, &bundle("faulty-router")).await;
    let mut envelope = envelope("fault/request");
    envelope.stream = true;
    envelope.tags = vec!["batch".into(), "vip".into()];
    let mut fast = channel("fast", 5, 3);
    fast.latency_ms = Some(120);
    fast.tags = vec!["eu".into()];
    fast.protocol = "anthropic-messages".into();
    let error = router
        .route(&request(envelope, &[fast, channel("slow", 0, 1)]))
        .await
        .unwrap_err();
    let Failure::Refused { message, .. } = &error.failure else {
        panic!("{error}")
    };
    assert_eq!(
        message,
        "model=fault/request stream=true max=Some(256) prompt=42 protocol=openai-chat \
         tags=batch+vip at=1764000000000 seed=7 caller=acme/alice/default/key-1 \
         candidates=3/5/Some(120),1/0/None \
         channels=fast/anthropic-messages/eu,slow/openai-chat/,none"
    );
}
