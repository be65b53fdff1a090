//! The gateway's overhead:
//! `cargo bench -p sluice --bench gateway --profile production`.
//!
//! In one run it starts the demo upstream, nginx as a plain reverse proxy in
//! front of it (skipped with a message when nginx is not installed) and
//! Sluice with its full plugin chain (billing off: its cost is measured in
//! the last part), then loads each at concurrency 64,
//! non-stream and stream, and prints requests/s, latency percentiles, time
//! to first byte, the ratios to the direct baseline, and Sluice's resident
//! memory idle and at peak. Everything shares the machine, load generator
//! included, so compare the ratios, not the absolute figures; each target's
//! own CPU time per request (from the scheduler's counters) moves less with
//! the neighbours' load than requests/s do.
//!
//! Then it streams through Sluice for each pair of client and channel
//! protocol, relative to the OpenAI passthrough, and loads Sluice with
//! billing off, on SQLite and on PostgreSQL (a fresh schema of the `test`
//! database at 127.0.0.1:5432, skipped with a message when unreachable).
//!
//! Last, it swaps plugin versions under load: p99 with router, pricing and
//! translator versions swapped every second, relative to steady state, and
//! the time from an upload (activated at once) to the first request the new
//! version serves.
//!
//! Saturated at concurrency 64, a hop's added latency is mostly queueing
//! behind its own CPU use, so the same targets are also timed at a fixed,
//! low request rate (`SLUICE_BENCH_RATE`, default 1000 per second), where
//! the added p99 is the hop's own.
//!
//! `SLUICE_BENCH_SECONDS` sets the measured time per case (default 5);
//! `SLUICE_BENCH_ROUNDS` how often the saturated cases run, every target
//! once per round, their ratios taken within a round (default 3);
//! `SLUICE_BENCH_MODE=stream` (or `non-stream`, `latency`, `cross`,
//! `billing`, `swaps`) runs one part only.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONCURRENCY: usize = 64;
const KEY: &str = "sk-bench-0123456789";
const ADMIN_TOKEN: &str = "bench-admin-token";
const BODY: &str = r#"{"model":"demo","messages":[{"role":"user","content":"Benchmark me"}]}"#;
const STREAM_BODY: &str =
    r#"{"model":"demo","stream":true,"messages":[{"role":"user","content":"Benchmark me"}]}"#;

/// Streams through Sluice by client protocol and channel protocol: path,
/// body. The first is the passthrough the others are compared with.
const CROSS: [(&str, &str, &str); 5] = [
    (
        "openai → openai",
        "/v1/chat/completions",
        r#"{"model":"demo","stream":true,"messages":[{"role":"user","content":"Benchmark me"}]}"#,
    ),
    (
        "openai → anthropic",
        "/v1/chat/completions",
        r#"{"model":"claude-demo","stream":true,"messages":[{"role":"user","content":"Benchmark me"}]}"#,
    ),
    (
        "openai → gemini",
        "/v1/chat/completions",
        r#"{"model":"gemini-demo","stream":true,"messages":[{"role":"user","content":"Benchmark me"}]}"#,
    ),
    (
        "anthropic → anthropic",
        "/v1/messages",
        r#"{"model":"claude-demo","stream":true,"max_tokens":1024,"messages":[{"role":"user","content":"Benchmark me"}]}"#,
    ),
    (
        "anthropic → openai",
        "/v1/messages",
        r#"{"model":"demo","stream":true,"max_tokens":1024,"messages":[{"role":"user","content":"Benchmark me"}]}"#,
    ),
];

/// A child process that announced `listening on http://ADDR`, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(command: &mut Command) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting a server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                line.split_once("listening on ")
                    .map(|(_, url)| url.trim().to_string())
            })
            .expect("the server announced its address");
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server { child, url }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx with `proxy_pass` to `upstream`, keep-alive to the upstream, no
/// buffering: the plain reverse proxy Sluice is measured against.
fn start_nginx(upstream: &str, dir: &Path) -> Option<(Child, String)> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let upstream = upstream.trim_start_matches("http://");
    let d = dir.display();
    let conf = format!(
        "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         upstream demo {{ server {upstream}; keepalive 256; }}\n\
         server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://demo;\n\
         proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n    }}\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::File::create(&path)
        .ok()?
        .write_all(conf.as_bytes())
        .ok()?;
    let child = Command::new(nginx)
        .args(["-c", path.to_str()?, "-p", dir.to_str()?])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let url = format!("http://127.0.0.1:{port}");
    let ready = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    ready.then_some((child, url))
}

/// Sluice's configuration: the demo's channels, a key with ample quota, a
/// price for every model, and `store` (database and billing sections).
fn sluice_config(upstream: &str, store: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n\n[[channels]]\nname = \"demo\"\nbase_url = \"{upstream}/v1\"\nmodels = [\"demo\", \"demo/*\"]\n\n\
         [[channels]]\nname = \"claude\"\nprotocol = \"anthropic-messages\"\nbase_url = \"{upstream}/v1\"\nmodels = [\"claude-demo\"]\n\n\
         [[channels]]\nname = \"gemini\"\nprotocol = \"gemini\"\nbase_url = \"{upstream}/v1beta\"\nmodels = [\"gemini-demo\"]\n\n\
         [[keys]]\nkey = \"{KEY}\"\nuser = \"bench\"\nquota = 1000000000000\n\n\
         [[prices]]\nmodel = \"*\"\nmodel_ratio = 1.0\ncompletion_ratio = 2.0\n\n{store}"
    )
}

/// Database sections for the billing comparison, by name; PostgreSQL only
/// when it answers.
fn stores(dir: &Path) -> Vec<(&'static str, String)> {
    let sqlite = |name: &str| {
        format!(
            "[database]\nurl = \"sqlite://{}/{name}.db\"\n",
            dir.display()
        )
    };
    let mut stores = vec![
        (
            "off",
            format!("{}[billing]\nenabled = false\n", sqlite("off")),
        ),
        ("sqlite", sqlite("billed")),
    ];
    let postgres = "postgres://postgres@127.0.0.1:5432/test";
    let schema = format!("bench_{}", std::process::id());
    let created = Command::new("psql")
        .args([
            postgres,
            "-qc",
            &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if created {
        stores.push((
            "postgres",
            format!("[database]\nurl = \"{postgres}?options=-csearch_path%3D{schema}\"\nmax_connections = 16\n"),
        ));
    } else {
        println!("PostgreSQL at {postgres} did not answer (psql): its billing case is skipped.");
    }
    stores
}

/// Resident memory of `pid` now and at its peak, in MiB (from /proc).
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time `pid` has used, every thread of it and of its child processes
/// (nginx's workers), from the scheduler's per-task counters.
fn cpu_time(pid: u32) -> Duration {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    let own: u64 = tasks
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .map(cpu_time)
        .fold(Duration::from_nanos(own), |total, child| total + child)
}

struct Outcome {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    /// CPU time the measured process spent meanwhile.
    cpu: Duration,
    latencies: Vec<Duration>,
    first_bytes: Vec<Duration>,
}

type Sample = Result<(Duration, Duration), String>;

impl Outcome {
    /// The figures of `samples` (total and first-byte times, or an error),
    /// gathered over `elapsed`.
    fn of(samples: impl IntoIterator<Item = Sample>, elapsed: Duration, cpu: Duration) -> Outcome {
        let mut outcome = Outcome {
            requests: 0,
            errors: 0,
            elapsed,
            cpu,
            latencies: Vec::new(),
            first_bytes: Vec::new(),
        };
        for sample in samples {
            match sample {
                Ok((total, first)) => {
                    outcome.requests += 1;
                    outcome.latencies.push(total);
                    outcome.first_bytes.push(first);
                }
                Err(_) => outcome.errors += 1,
            }
        }
        outcome.latencies.sort();
        outcome.first_bytes.sort();
        outcome
    }

    /// Both runs' figures as one.
    fn merge(mut self, other: Outcome) -> Outcome {
        self.requests += other.requests;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.cpu += other.cpu;
        self.latencies.extend(other.latencies);
        self.first_bytes.extend(other.first_bytes);
        self.latencies.sort();
        self.first_bytes.sort();
        self
    }

    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU microseconds the measured process spent per request answered.
    fn cpu_per_request(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One request: its total time and time to the first body byte.
async fn one(client: &HttpClient, url: &str, body: &'static str) -> Sample {
    let started = Instant::now();
    let request = Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let mut body = response.into_body();
    let mut first_byte = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if first_byte.is_none() && frame.data_ref().is_some_and(|d| !d.is_empty()) {
            first_byte = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    Ok((total, first_byte.unwrap_or(total)))
}

/// Loads `url` at concurrency 64 for `seconds`, after a warm-up, timing
/// the CPU process `hop` spends over the measured part.
async fn load(
    client: Arc<HttpClient>,
    url: String,
    body: &'static str,
    seconds: f64,
    hop: u32,
) -> Outcome {
    // Warm the connection pools of every hop first.
    let warm_until = Instant::now() + Duration::from_millis(700);
    let warmers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                while Instant::now() < warm_until {
                    let _ = one(&client, &url, body).await;
                }
            })
        })
        .collect();
    for warmer in warmers {
        warmer.await.unwrap();
    }
    let (started, cpu_before) = (Instant::now(), cpu_time(hop));
    let until = started + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < until {
                    samples.push(one(&client, &url, body).await);
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for worker in workers {
        samples.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    Outcome::of(samples, elapsed, cpu_time(hop).saturating_sub(cpu_before))
}

/// Requests sent at a fixed `rate` for `seconds`, each on its own (an open
/// loop: a slow answer delays no later request, so no wait is hidden). Far
/// below every target's capacity, this measures the latency a hop adds, not
/// how it behaves saturated.
async fn paced(
    client: Arc<HttpClient>,
    url: String,
    body: &'static str,
    rate: f64,
    seconds: f64,
) -> Outcome {
    let started = Instant::now();
    let count = (rate * seconds) as u32;
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut requests = Vec::with_capacity(count as usize);
    for _ in 0..count {
        every.tick().await;
        let (client, url) = (client.clone(), url.clone());
        requests.push(tokio::spawn(async move { one(&client, &url, body).await }));
    }
    let mut samples = Vec::with_capacity(requests.len());
    for request in requests {
        samples.push(request.await.unwrap());
    }
    Outcome::of(samples, started.elapsed(), Duration::ZERO)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters nothing here.
    let seconds: f64 = std::env::var("SLUICE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_sluice"));
    let dir = tempfile::tempdir().unwrap();

    let upstream =
        Server::start(Command::new(&binary).args(["demo-upstream", "--listen", "127.0.0.1:0"]));
    let nginx = start_nginx(&upstream.url, dir.path());
    if nginx.is_none() {
        println!("nginx is not installed (Debian package `nginx`): the nginx baseline is skipped.");
    }
    let config = dir.path().join("sluice.toml");
    // The proxy comparison measures the request path; what the ledger adds
    // is measured on its own, in the last part.
    let main_store = format!(
        "[database]\nurl = \"sqlite://{}/main.db\"\n[billing]\nenabled = false\n",
        dir.path().display()
    );
    std::fs::write(&config, sluice_config(&upstream.url, &main_store)).unwrap();
    let sluice = Server::start(
        Command::new(&binary)
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn"),
    );
    // Idle means after start-up's garbage is returned: jemalloc purges
    // freed memory on a 10 s decay.
    std::thread::sleep(Duration::from_secs(11));
    let (idle_rss, _) = memory_mib(sluice.pid());

    let mut targets = vec![("direct", upstream.url.clone(), upstream.pid())];
    if let Some((nginx, url)) = &nginx {
        targets.push(("nginx", url.clone(), nginx.id()));
    }
    targets.push(("sluice", sluice.url.clone(), sluice.pid()));

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Arc::new(
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(connector),
    );

    let only = std::env::var("SLUICE_BENCH_MODE").ok();
    let modes = [("non-stream", BODY), ("stream", STREAM_BODY)];
    let saturated: Vec<_> = modes
        .into_iter()
        .filter(|(m, _)| only.as_deref().is_none_or(|o| o == *m))
        .collect();
    let rounds: usize = std::env::var("SLUICE_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    if !saturated.is_empty() {
        println!(
            "\nconcurrency {CONCURRENCY}, {rounds} rounds of every target for {seconds} s each; \
             latency and TTFB in ms\n\n\
             {:<12} {:<7} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>11}",
            "mode",
            "target",
            "req/s",
            "p50",
            "p99",
            "ttfb p50",
            "ttfb p99",
            "× direct",
            "× nginx",
            "+p99 ms",
            "errors",
            "cpu µs/req"
        );
        println!(
            "(× direct and × nginx: the median over rounds of the ratio within a round; \
             cpu: the target's own CPU per request, all its threads and workers, for direct \
             the upstream's)"
        );
    }
    for (mode, body) in saturated {
        // Round by round, so every target meets the machine's neighbours at
        // about the same times; ratios are taken within a round.
        let mut rates = vec![Vec::new(); targets.len()];
        let mut pooled: Vec<Option<Outcome>> = targets.iter().map(|_| None).collect();
        for _ in 0..rounds {
            for (index, (_, base, pid)) in targets.iter().enumerate() {
                let url = format!("{base}/v1/chat/completions");
                let outcome = tokio.block_on(load(client.clone(), url, body, seconds, *pid));
                rates[index].push(outcome.rate());
                pooled[index] = Some(match pooled[index].take() {
                    Some(earlier) => earlier.merge(outcome),
                    None => outcome,
                });
            }
        }
        let nginx_index = targets.iter().position(|(name, _, _)| *name == "nginx");
        let round_ratios = |index: usize, base: usize| -> Vec<f64> {
            rates[index]
                .iter()
                .zip(&rates[base])
                .map(|(rate, base)| rate / base)
                .collect()
        };
        let ratio_to = |index: usize, base: Option<usize>| match base {
            Some(base) => format!("{:.2}", median(round_ratios(index, base))),
            None => "-".into(),
        };
        let direct_p99 = pooled[0]
            .as_ref()
            .map(|d| percentile(&d.latencies, 0.99).as_secs_f64());
        for (index, (name, _, _)) in targets.iter().enumerate() {
            let outcome = pooled[index].as_ref().expect("every target ran");
            let p99 = percentile(&outcome.latencies, 0.99);
            let added = match (index, direct_p99) {
                (0, _) | (_, None) => "-".into(),
                (_, Some(direct)) => format!("{:+.2}", (p99.as_secs_f64() - direct) * 1000.0),
            };
            println!(
                "{:<12} {:<7} {:>9.0} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>11.1}",
                mode,
                name,
                outcome.rate(),
                ms(percentile(&outcome.latencies, 0.5)),
                ms(p99),
                ms(percentile(&outcome.first_bytes, 0.5)),
                ms(percentile(&outcome.first_bytes, 0.99)),
                ratio_to(index, Some(0)),
                ratio_to(index, nginx_index),
                added,
                outcome.errors,
                outcome.cpu_per_request(),
            );
        }
        println!(
            "per round, sluice × nginx: {}",
            match nginx_index {
                Some(nginx) => round_ratios(targets.len() - 1, nginx)
                    .iter()
                    .map(|ratio| format!("{ratio:.2}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                None => "-".into(),
            }
        );
    }
    if only.as_deref().is_none_or(|o| o == "latency") {
        let rate: f64 = std::env::var("SLUICE_BENCH_RATE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1000.0);
        println!(
            "\nlatency at a fixed {rate} req/s (open loop, below every target's capacity)\n\n\
             {:<12} {:<7} {:>8} {:>8} {:>9} {:>9} {:>10} {:>7}",
            "mode", "target", "p50", "p99", "ttfb p50", "ttfb p99", "+p99 ms", "errors"
        );
        for (mode, body) in modes {
            let mut direct_p99 = None;
            for (name, base, _) in &targets {
                let url = format!("{base}/v1/chat/completions");
                // Warm every hop's connections at the same rate first.
                tokio.block_on(paced(client.clone(), url.clone(), body, rate, 0.5));
                let outcome = tokio.block_on(paced(client.clone(), url, body, rate, seconds));
                let p99 = percentile(&outcome.latencies, 0.99);
                let added = match direct_p99 {
                    Some(direct) => format!("{:+.2}", (p99.as_secs_f64() - direct) * 1000.0),
                    None => "-".into(),
                };
                direct_p99.get_or_insert(p99.as_secs_f64());
                println!(
                    "{:<12} {:<7} {:>8} {:>8} {:>9} {:>9} {:>10} {:>7}",
                    mode,
                    name,
                    ms(percentile(&outcome.latencies, 0.5)),
                    ms(p99),
                    ms(percentile(&outcome.first_bytes, 0.5)),
                    ms(percentile(&outcome.first_bytes, 0.99)),
                    added,
                    outcome.errors,
                );
            }
        }
    }
    if only.as_deref().is_none_or(|o| o == "cross") {
        println!(
            "\nstreams through sluice by client → channel protocol\n\n{:<22} {:>9} {:>8} {:>8} {:>14} {:>12}",
            "protocols", "req/s", "p50", "p99", "× passthrough", "cpu µs/req"
        );
        let mut passthrough: Option<f64> = None;
        for (name, path, body) in CROSS {
            let url = format!("{}{path}", sluice.url);
            let outcome = tokio.block_on(load(client.clone(), url, body, seconds, sluice.pid()));
            let base = *passthrough.get_or_insert(outcome.rate());
            println!(
                "{:<22} {:>9.0} {:>8} {:>8} {:>14.2} {:>12.1}{}",
                name,
                outcome.rate(),
                ms(percentile(&outcome.latencies, 0.5)),
                ms(percentile(&outcome.latencies, 0.99)),
                outcome.rate() / base,
                outcome.cpu_per_request(),
                if outcome.errors > 0 {
                    format!("  ({} errors)", outcome.errors)
                } else {
                    String::new()
                },
            );
        }
    }
    let (_, peak_rss) = memory_mib(sluice.pid());
    println!("\nsluice resident memory: {idle_rss:.1} MiB idle, {peak_rss:.1} MiB at peak");
    drop(sluice);
    if only.as_deref().is_none_or(|o| o == "billing") {
        println!(
            "\nbilling: sluice with billing off and on\n\n{:<10} {:<11} {:>9} {:>8} {:>8} {:>10}",
            "billing", "mode", "req/s", "p50", "p99", "× off"
        );
        let mut off = std::collections::HashMap::new();
        for (name, store) in stores(dir.path()) {
            let config = dir.path().join(format!("sluice-{name}.toml"));
            std::fs::write(&config, sluice_config(&upstream.url, &store)).unwrap();
            let billed = Server::start(
                Command::new(&binary)
                    .args(["serve", "--config", config.to_str().unwrap()])
                    .env("RUST_LOG", "warn"),
            );
            for (mode, body) in modes {
                let url = format!("{}/v1/chat/completions", billed.url);
                let outcome =
                    tokio.block_on(load(client.clone(), url, body, seconds, billed.pid()));
                let base = *off.entry(mode).or_insert(outcome.rate());
                println!(
                    "{:<10} {:<11} {:>9.0} {:>8} {:>8} {:>10.2}{}",
                    name,
                    mode,
                    outcome.rate(),
                    ms(percentile(&outcome.latencies, 0.5)),
                    ms(percentile(&outcome.latencies, 0.99)),
                    outcome.rate() / base,
                    if outcome.errors > 0 {
                        format!("  ({} errors)", outcome.errors)
                    } else {
                        String::new()
                    },
                );
            }
        }
    }
    if only.as_deref().is_none_or(|o| o == "swaps") {
        swaps(&tokio, &client, &binary, &upstream.url, dir.path(), seconds);
    }
    if let Some((mut child, _)) = nginx {
        // SIGTERM: nginx's master stops its workers; SIGKILL would leave
        // them running, orphaned, after every run.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
}

/// A bundle built with this binary, as the admin API's upload body, under
/// `name` and `version`, with `config` (TOML) for its own.
fn upload_body(bundle: &str, name: &str, version: &str, config: &str, activate: bool) -> String {
    use base64::Engine;
    let dir = Path::new(env!("SLUICE_BUNDLES_DIR")).join(bundle);
    let manifest = std::fs::read_to_string(dir.join("plugin.toml")).unwrap();
    let kind = manifest
        .lines()
        .find(|l| l.starts_with("kind"))
        .unwrap()
        .to_string();
    let manifest = format!("name = \"{name}\"\nversion = \"{version}\"\n{kind}\n{config}");
    let component = std::fs::read(dir.join("plugin.wasm")).unwrap();
    serde_json::json!({
        "manifest": manifest,
        "component": base64::engine::general_purpose::STANDARD.encode(component),
        "activate": activate,
    })
    .to_string()
}

async fn admin_post(client: &HttpClient, url: String, body: String) -> hyper::StatusCode {
    let request = Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = client
        .request(request)
        .await
        .expect("the admin API answers");
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

/// p99 while router, pricing and translator versions are swapped every
/// second, against steady state, on one gateway with billing on; then the
/// time from an upload to the first request its version serves.
fn swaps(
    tokio: &tokio::runtime::Runtime,
    client: &Arc<HttpClient>,
    binary: &Path,
    upstream: &str,
    dir: &Path,
    seconds: f64,
) {
    let store = format!(
        "[database]\nurl = \"sqlite://{}/swaps.db\"\n[admin]\ntoken_env = \"SLUICE_BENCH_ADMIN\"\n",
        dir.display()
    );
    let config = dir.join("sluice-swaps.toml");
    std::fs::write(&config, sluice_config(upstream, &store)).unwrap();
    let sluice = Server::start(
        Command::new(binary)
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .env("SLUICE_BENCH_ADMIN", ADMIN_TOKEN),
    );
    let admin = format!("{}/admin/plugins", sluice.url);
    let pricing = |discount: u32| {
        format!("[config]\nstart_hour = 0\nend_hour = 24\ndiscount_percent = {discount}\n")
    };
    let uploads = [
        upload_body("router", "router", "a", "", true),
        upload_body("router", "router", "b", "", false),
        upload_body("openai", "openai", "a", "", true),
        upload_body("openai", "openai", "b", "", false),
        upload_body("offpeak-pricing", "pricing", "a", &pricing(0), true),
        upload_body("offpeak-pricing", "pricing", "b", &pricing(50), false),
    ];
    tokio.block_on(async {
        for body in uploads {
            let status = admin_post(client, admin.clone(), body).await;
            assert!(status.is_success(), "upload refused: {status}");
        }
    });
    let url = format!("{}/v1/chat/completions", sluice.url);
    let steady = tokio.block_on(load(
        client.clone(),
        url.clone(),
        BODY,
        seconds,
        sluice.pid(),
    ));
    let swapper = {
        let (client, admin) = (client.clone(), admin.clone());
        let until = Instant::now() + Duration::from_secs_f64(seconds + 0.7);
        tokio.spawn(async move {
            let mut swaps = 0;
            let mut every = tokio::time::interval(Duration::from_secs(1));
            while Instant::now() < until {
                every.tick().await;
                let version = if swaps % 2 == 0 { "b" } else { "a" };
                for name in ["router", "openai", "pricing"] {
                    let body = format!("{{\"version\":\"{version}\"}}");
                    let status =
                        admin_post(&client, format!("{admin}/{name}/activate"), body).await;
                    assert!(status.is_success(), "activation refused: {status}");
                }
                swaps += 1;
            }
            swaps * 3
        })
    };
    let swapping = tokio.block_on(load(
        client.clone(),
        url.clone(),
        BODY,
        seconds,
        sluice.pid(),
    ));
    let swaps = tokio.block_on(swapper).unwrap();
    let p99 = |o: &Outcome| percentile(&o.latencies, 0.99);
    println!(
        "\nplugin swaps under load (billing on, SQLite), non-stream\n\n{:<16} {:>9} {:>8} {:>8} {:>7} {:>7}",
        "phase", "req/s", "p50", "p99", "errors", "swaps"
    );
    for (phase, outcome, swaps) in [("steady", &steady, 0), ("swap every 1 s", &swapping, swaps)] {
        println!(
            "{:<16} {:>9.0} {:>8} {:>8} {:>7} {:>7}",
            phase,
            outcome.rate(),
            ms(percentile(&outcome.latencies, 0.5)),
            ms(p99(outcome)),
            outcome.errors,
            swaps
        );
    }
    println!(
        "p99 during swaps: {:.2}× steady (target ≤ 1.2×)",
        p99(&swapping).as_secs_f64() / p99(&steady).as_secs_f64()
    );
    // The faulty router refuses `*/bad-index`, which the built-in router
    // routes: the first refusal is the first request it served.
    let probe = |client: Arc<HttpClient>, url: String| async move {
        let request = Request::post(url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {KEY}"))
            .body(Full::new(Bytes::from_static(
                br#"{"model":"demo/bad-index","messages":[{"role":"user","content":"hi"}]}"#,
            )))
            .unwrap();
        let response = client.request(request).await.unwrap();
        let served_by_new = response.status() == hyper::StatusCode::INTERNAL_SERVER_ERROR;
        let _ = response.into_body().collect().await;
        served_by_new
    };
    let (uploaded, served) = tokio.block_on(async {
        let started = Instant::now();
        let body = upload_body("faulty-router", "router", "faulty", "", true);
        let status = admin_post(client, admin.clone(), body).await;
        assert!(status.is_success(), "upload refused: {status}");
        let uploaded = started.elapsed();
        while !probe(client.clone(), url.clone()).await {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the new router never served"
            );
        }
        (uploaded, started.elapsed())
    });
    println!(
        "upload → activated: {} ms; upload → first request served by it: {} ms",
        ms(uploaded),
        ms(served)
    );
}
