//! Every way a plugin can misbehave fails only the call that hit it, with a
//! typed error and within its deadline; the plugin's next call works. The
//! faulty plugins are real components (test-plugins/).

mod common;

use common::{bundle, channel, envelope, load, request, runtime};
use sluice::plugins::bindings::Direction;
use sluice::plugins::{Failure, Router, Translator};
use std::time::{Duration, Instant};

/// The faulty plugins' manifests set a 50 ms deadline and a 16 MiB cap.
const DEADLINE: Duration = Duration::from_millis(50);
const MEMORY_CAP: usize = 16 << 20;
/// Generous bound on how long a faulting call may take: far above the
/// deadline, far below a hang.
const PROMPTLY: Duration = Duration::from_secs(5);

async fn faulty_router() -> Router {
    load(&runtime(), &bundle("faulty-router")).await
}

async fn calls_served(router: &Router) -> u64 {
    let error = router
        .route(&request(envelope("calls"), &[]))
        .await
        .unwrap_err();
    match error.failure {
        Failure::Refused { code, message } if code == "calls" => message.parse().unwrap(),
        other => panic!("unexpected {other:?}"),
    }
}

async fn assert_fault_then_recovery(model: &str, expected: Failure) {
    let router = faulty_router().await;
    let candidates = [channel("a", 0, 1), channel("b", 0, 1)];
    let started = Instant::now();
    let error = router
        .route(&request(envelope(model), &candidates))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < PROMPTLY,
        "{model} took {:?}",
        started.elapsed()
    );
    assert_eq!(error.failure, expected, "{model}: {error}");
    assert!(error.failure.is_fault());
    assert_eq!(error.plugin.to_string(), "faulty-router@0.1.0");
    let order = router
        .route(&request(envelope("gpt"), &candidates))
        .await
        .unwrap();
    assert_eq!(order, vec![0, 1], "the call after {model} must succeed");
    // The faulted instance was thrown away: the one serving now is new.
    assert_eq!(calls_served(&router).await, 2, "after {model}");
}

#[tokio::test]
async fn an_endless_loop_hits_the_deadline() {
    assert_fault_then_recovery("loop", Failure::Deadline(DEADLINE)).await;
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_cap() {
    assert_fault_then_recovery("allocate", Failure::OutOfMemory(MEMORY_CAP)).await;
}

#[tokio::test]
async fn a_panic_is_a_trap() {
    assert_fault_then_recovery("panic", Failure::Trap("panicked or aborted".into())).await;
}

/// Rust guests keep their frames on a shadow stack at the bottom of linear
/// memory, so overflowing it is an out-of-bounds access rather than a
/// native stack overflow.
#[tokio::test]
async fn a_stack_overflow_is_a_trap() {
    assert_fault_then_recovery(
        "recurse",
        Failure::Trap("out of bounds memory access".into()),
    )
    .await;
}

#[tokio::test]
async fn an_out_of_range_channel_is_bad_output() {
    assert_fault_then_recovery(
        "bad-index",
        Failure::BadOutput("channel index 2 is out of range (there are 2 candidates)".into()),
    )
    .await;
}

#[tokio::test]
async fn a_repeated_channel_is_bad_output() {
    assert_fault_then_recovery(
        "duplicate",
        Failure::BadOutput("channel index 0 appears twice".into()),
    )
    .await;
}

#[tokio::test]
async fn warm_instances_serve_call_after_call_and_a_refusal_keeps_them() {
    let router = faulty_router().await;
    assert_eq!(calls_served(&router).await, 1);
    let refused = router
        .route(&request(envelope("error"), &[]))
        .await
        .unwrap_err();
    assert!(matches!(&refused.failure, Failure::Refused { code, .. } if code == "refused"));
    assert!(!refused.failure.is_fault());
    assert_eq!(calls_served(&router).await, 3);
}

#[tokio::test]
async fn fresh_plugins_get_a_new_instance_every_call() {
    let mut fresh = bundle("faulty-router");
    fresh.manifest.instances = sluice::plugins::Instances::Fresh;
    let router: Router = load(&runtime(), &fresh).await;
    for _ in 0..3 {
        assert_eq!(calls_served(&router).await, 1);
    }
}

/// On a single-threaded scheduler, calls to a healthy plugin complete while
/// another plugin call spins until its deadline: a looping plugin yields
/// at every epoch tick instead of holding the thread.
#[tokio::test(flavor = "current_thread")]
async fn a_looping_plugin_does_not_block_the_scheduler() {
    let runtime = runtime();
    let spinning: Router = load(&runtime, &bundle("faulty-router")).await;
    let healthy: Router = load(&runtime, &bundle("router")).await;
    let spin = tokio::spawn(async move {
        spinning
            .route(&request(envelope("loop"), &[]))
            .await
            .unwrap_err()
            .failure
    });
    tokio::task::yield_now().await;
    let mut served_while_spinning = 0;
    while !spin.is_finished() {
        healthy
            .route(&request(envelope("gpt"), &[channel("a", 0, 1)]))
            .await
            .unwrap();
        served_while_spinning += 1;
        tokio::task::yield_now().await;
    }
    assert_eq!(spin.await.unwrap(), Failure::Deadline(DEADLINE));
    assert!(
        served_while_spinning > 0,
        "no call completed while the loop ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_from_many_tasks_fail_and_succeed_independently() {
    let runtime = runtime();
    let router: Router = load(&runtime, &bundle("faulty-router")).await;
    let faults = ["loop", "allocate", "panic", "recurse", "bad-index"];
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let router = router.clone();
            let model = if i % 10 == 0 {
                faults[(i / 10) % faults.len()]
            } else {
                "gpt"
            };
            tokio::spawn(async move {
                let result = router
                    .route(&request(
                        envelope(model),
                        &[channel("a", 0, 1), channel("b", 0, 1)],
                    ))
                    .await;
                (model, result)
            })
        })
        .collect();
    let mut succeeded = 0;
    for task in tasks {
        match task.await.unwrap() {
            ("gpt", Ok(order)) => {
                assert_eq!(order, vec![0, 1]);
                succeeded += 1;
            }
            (model, Err(error)) if model != "gpt" => {
                assert!(error.failure.is_fault(), "{model}: {error}")
            }
            (model, other) => panic!("{model}: {other:?}"),
        }
    }
    assert_eq!(succeeded, 180);
}

async fn faulty_translator() -> Translator {
    load(&runtime(), &bundle("faulty-translator")).await
}

#[tokio::test]
async fn each_stream_keeps_its_own_state_in_its_own_store() {
    let translator = faulty_translator().await;
    let mut first = translator
        .open_stream(Direction::ToCanonical)
        .await
        .unwrap();
    let mut second = translator
        .open_stream(Direction::ToCanonical)
        .await
        .unwrap();
    assert_eq!(first.push(b"abc").await.unwrap(), b"abc");
    assert_eq!(second.push(b"hello world").await.unwrap(), b"hello world");
    assert_eq!(first.push(b"de").await.unwrap(), b"de");
    assert_eq!(
        first
            .finish()
            .await
            .unwrap()
            .used
            .unwrap()
            .completion_tokens,
        5
    );
    assert_eq!(
        second
            .finish()
            .await
            .unwrap()
            .used
            .unwrap()
            .completion_tokens,
        11
    );
}

#[tokio::test]
async fn a_fault_mid_stream_ends_only_that_stream() {
    let translator = faulty_translator().await;
    let mut broken = translator
        .open_stream(Direction::ToCanonical)
        .await
        .unwrap();
    let mut healthy = translator
        .open_stream(Direction::ToCanonical)
        .await
        .unwrap();
    broken.push(b"data: 1\n\n").await.unwrap();
    let started = Instant::now();
    let fault = broken.push(b"loop").await.unwrap_err();
    assert!(started.elapsed() < PROMPTLY);
    assert_eq!(fault.failure, Failure::Deadline(DEADLINE));
    // A broken stream stays broken: it never resumes on a spent instance.
    assert_eq!(broken.push(b"more").await.unwrap_err(), fault);
    assert_eq!(broken.finish().await.unwrap_err(), fault);

    assert_eq!(healthy.push(b"still fine").await.unwrap(), b"still fine");
    let panicked = healthy.push(b"panic").await.unwrap_err();
    assert_eq!(
        panicked.failure,
        Failure::Trap("panicked or aborted".into())
    );

    let mut next = translator
        .open_stream(Direction::ToCanonical)
        .await
        .unwrap();
    assert_eq!(next.push(b"ok").await.unwrap(), b"ok");
    assert_eq!(
        next.finish().await.unwrap().used.unwrap().completion_tokens,
        2
    );
}

#[tokio::test]
async fn non_stream_translation_faults_are_contained_too() {
    let translator = faulty_translator().await;
    let fault = translator
        .response_to_canonical(b"allocate")
        .await
        .unwrap_err();
    assert_eq!(fault.failure, Failure::OutOfMemory(MEMORY_CAP));
    assert_eq!(
        translator.response_to_canonical(b"{}").await.unwrap(),
        b"{}"
    );
}
