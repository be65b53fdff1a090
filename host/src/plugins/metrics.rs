//! What each plugin version did: calls, failures by kind, and how long its
//! calls took, in fixed buckets (so percentiles cost nothing to keep). Read
//! by the admin API and the Prometheus endpoint.
//!
//! Each thread counts on cache lines of its own, summed when read: counters
//! every worker bumps on every call would bounce between cores.

use super::bundle::PluginId;
use super::fault::Failure;
use crossbeam_utils::CachePadded;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use thread_local::ThreadLocal;
use utoipa::ToSchema;

/// Upper bounds of the duration buckets, in microseconds; one more bucket
/// holds what is slower.
pub const BUCKETS_US: [u64; 14] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

/// Failure codes, in the order of the counters.
pub const FAILURES: [&str; 6] = [
    "plugin_deadline",
    "plugin_out_of_memory",
    "plugin_trap",
    "plugin_bad_output",
    "plugin_refused",
    "plugin_unavailable",
];

#[derive(Default)]
pub struct PluginMetrics {
    threads: ThreadLocal<CachePadded<Counters>>,
}

/// One thread's counts.
#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    failures: [AtomicU64; FAILURES.len()],
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    total_us: AtomicU64,
}

/// Adds to a counter only its own thread writes: a plain load and store,
/// not a locked read-modify-write.
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl PluginMetrics {
    /// One call that ran for `elapsed`.
    pub fn call(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_US.partition_point(|bound| *bound < us);
        let counters = self.threads.get_or_default();
        bump(&counters.calls, 1);
        bump(&counters.buckets[bucket], 1);
        bump(&counters.total_us, us);
    }

    pub fn failure(&self, failure: &Failure) {
        let index = FAILURES
            .iter()
            .position(|code| *code == failure.code())
            .expect("every failure has a counter");
        bump(&self.threads.get_or_default().failures[index], 1);
    }

    /// One counter summed over every thread.
    fn total(&self, counter: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.threads
            .iter()
            .map(|counters| counter(counters).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    pub fn snapshot(&self, id: &PluginId) -> PluginReport {
        let buckets: Vec<u64> = (0..=BUCKETS_US.len())
            .map(|index| self.total(|counters| &counters.buckets[index]))
            .collect();
        PluginReport {
            plugin: id.name.clone(),
            version: id.version.clone(),
            kind: id.kind.as_str().to_string(),
            content_hash: id.content_hash.clone(),
            calls: self.total(|counters| &counters.calls),
            failures: FAILURES
                .iter()
                .enumerate()
                .map(|(index, code)| {
                    let count = self.total(|counters| &counters.failures[index]);
                    (code.to_string(), count)
                })
                .collect(),
            p50_ms: percentile(&buckets, 0.5),
            p99_ms: percentile(&buckets, 0.99),
            total_ms: self.total(|counters| &counters.total_us) as f64 / 1000.0,
            buckets,
        }
    }
}

/// A plugin version's figures.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PluginReport {
    pub plugin: String,
    pub version: String,
    pub kind: String,
    pub content_hash: String,
    pub calls: u64,
    /// Failure code → count.
    pub failures: BTreeMap<String, u64>,
    /// Upper bound of the bucket holding the median call, in ms (none
    /// before the first call, or past the last bound).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub total_ms: f64,
    /// Calls per duration bucket (`BUCKETS_US`, then slower).
    #[serde(skip)]
    pub buckets: Vec<u64>,
}

/// `text` as a Prometheus label value: names and versions come from
/// uploaded manifests, so a quote or a line break must not end the label.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The upper bound (ms) of the bucket where quantile `q` of the calls falls.
fn percentile(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (index, count) in buckets.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return BUCKETS_US.get(index).map(|us| *us as f64 / 1000.0);
        }
    }
    None
}

/// Every plugin version loaded since start, with its figures.
#[derive(Default)]
pub struct MetricsRegistry {
    plugins: std::sync::Mutex<Vec<(Arc<PluginId>, Arc<PluginMetrics>)>>,
}

impl MetricsRegistry {
    /// The figures of `id`, kept across its loads: a version checked,
    /// replayed or swapped back in adds to the same series.
    pub fn register(&self, id: Arc<PluginId>) -> Arc<PluginMetrics> {
        let mut plugins = self.plugins.lock().expect("metrics lock");
        if let Some((_, metrics)) = plugins.iter().find(|(known, _)| **known == *id) {
            return metrics.clone();
        }
        let metrics = Arc::new(PluginMetrics::default());
        plugins.push((id, metrics.clone()));
        metrics
    }

    pub fn reports(&self) -> Vec<PluginReport> {
        self.plugins
            .lock()
            .expect("metrics lock")
            .iter()
            .map(|(id, metrics)| metrics.snapshot(id))
            .collect()
    }

    /// The figures in Prometheus' text format.
    pub fn prometheus(&self) -> String {
        use std::fmt::Write;
        let reports = self.reports();
        let mut out = String::new();
        let labels = |r: &PluginReport| {
            format!(
                "plugin=\"{}\",version=\"{}\",kind=\"{}\",hash=\"{}\"",
                label_value(&r.plugin),
                label_value(&r.version),
                r.kind,
                &r.content_hash[..12.min(r.content_hash.len())]
            )
        };
        out.push_str("# HELP sluice_plugin_calls_total Calls into a plugin version.\n");
        out.push_str("# TYPE sluice_plugin_calls_total counter\n");
        for r in &reports {
            let _ = writeln!(
                out,
                "sluice_plugin_calls_total{{{}}} {}",
                labels(r),
                r.calls
            );
        }
        out.push_str(
            "# HELP sluice_plugin_failures_total Failed calls of a plugin version, by failure.\n",
        );
        out.push_str("# TYPE sluice_plugin_failures_total counter\n");
        for r in &reports {
            for (code, count) in &r.failures {
                let _ = writeln!(
                    out,
                    "sluice_plugin_failures_total{{{},failure=\"{code}\"}} {count}",
                    labels(r)
                );
            }
        }
        out.push_str("# HELP sluice_plugin_call_duration_seconds How long calls into a plugin version took.\n");
        out.push_str("# TYPE sluice_plugin_call_duration_seconds histogram\n");
        for r in &reports {
            let mut cumulative = 0;
            for (index, count) in r.buckets.iter().enumerate() {
                cumulative += count;
                let le = BUCKETS_US
                    .get(index)
                    .map_or("+Inf".to_string(), |us| (*us as f64 / 1e6).to_string());
                let _ = writeln!(
                    out,
                    "sluice_plugin_call_duration_seconds_bucket{{{},le=\"{le}\"}} {cumulative}",
                    labels(r)
                );
            }
            let _ = writeln!(
                out,
                "sluice_plugin_call_duration_seconds_sum{{{}}} {}",
                labels(r),
                r.total_ms / 1000.0
            );
            let _ = writeln!(
                out,
                "sluice_plugin_call_duration_seconds_count{{{}}} {}",
                labels(r),
                r.calls
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin_id() -> PluginId {
        PluginId {
            name: "p".into(),
            version: "1".into(),
            kind: super::super::bundle::PluginKind::Router,
            content_hash: "abc".into(),
        }
    }

    #[test]
    fn percentiles_come_from_the_buckets() {
        let metrics = PluginMetrics::default();
        for _ in 0..98 {
            metrics.call(Duration::from_micros(40));
        }
        metrics.call(Duration::from_millis(3));
        metrics.call(Duration::from_secs(2));
        metrics.failure(&Failure::Deadline(Duration::from_millis(50)));
        let report = metrics.snapshot(&plugin_id());
        assert_eq!(report.calls, 100);
        assert_eq!(report.p50_ms, Some(0.05));
        assert_eq!(report.p99_ms, Some(5.0));
        assert_eq!(report.failures["plugin_deadline"], 1);
        assert_eq!(report.buckets.last(), Some(&1));
    }

    #[test]
    fn every_thread_counts_into_one_report() {
        let metrics = PluginMetrics::default();
        std::thread::scope(|threads| {
            for _ in 0..3 {
                threads.spawn(|| {
                    for _ in 0..1000 {
                        metrics.call(Duration::from_micros(20));
                    }
                    metrics.failure(&Failure::Trap("t".into()));
                });
            }
        });
        metrics.call(Duration::from_micros(20));
        let report = metrics.snapshot(&plugin_id());
        assert_eq!(report.calls, 3001);
        assert_eq!(report.buckets[1], 3001);
        assert_eq!(report.failures["plugin_trap"], 3);
        assert!((report.total_ms - 60.02).abs() < 1e-9);
    }

    #[test]
    fn a_version_loaded_again_keeps_one_series_and_labels_stay_closed() {
        let registry = MetricsRegistry::default();
        let id = |version: &str| {
            Arc::new(PluginId {
                name: "p".into(),
                version: version.into(),
                kind: super::super::bundle::PluginKind::Pricing,
                content_hash: "0123456789abcdef".into(),
            })
        };
        registry.register(id("1")).call(Duration::from_micros(5));
        registry.register(id("1")).call(Duration::from_micros(5));
        registry.register(id("2\"} 1\nforged 9"));
        let reports = registry.reports();
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0].calls, 2);
        let text = registry.prometheus();
        assert!(
            !text.lines().any(|line| line.starts_with("forged")),
            "{text}"
        );
        assert!(text.contains(r#"version="2\"} 1\nforged 9""#), "{text}");
    }
}
