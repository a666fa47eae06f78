//! Benchmark: how many signed requests a second the simulator serves.
//!
//! Starts the simulator in-process (auto-create, zero delays, no log file),
//! pre-signs `REQUESTS` requests per round (a mix of DataWorks and DTS reads
//! and stops, each with its own nonce), then fires them from `TASKS`
//! concurrent tasks over keep-alive connections and prints requests/s for
//! each round and the median. Every request goes through the full gateway:
//! form decoding, timestamp check, HMAC-SHA1 recomputation, nonce replay
//! cache, state machine, call record. Client and server share the machine, so
//! the figure is a lower bound of the server alone.
//!
//! Run: `cargo bench --bench sim`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use runbook::cloud::actions::{DATAWORKS_VERSION, DTS_VERSION};
use runbook::cloud::signer::{self, CommonParams};
use runbook::sim::{self, Delays, SimConfig};

const REQUESTS: usize = 20_000;
const TASKS: usize = 32;
const ROUNDS: usize = 5;

fn signed_url(base: &str, i: usize, id: &str, secret: &str) -> String {
    let (action, version, params): (&str, &str, Vec<(&str, String)>) = match i % 10 {
        0..=4 => (
            "GetDISyncInstanceInfo",
            DATAWORKS_VERSION,
            vec![
                ("ProjectId", "10000".to_owned()),
                ("FileId", (i % 100).to_string()),
                ("TaskType", "DI_REALTIME".to_owned()),
            ],
        ),
        5..=8 => (
            "DescribeDtsJobDetail",
            DTS_VERSION,
            vec![("DtsJobId", format!("job{}", i % 100))],
        ),
        _ => (
            "StopDtsJob",
            DTS_VERSION,
            vec![("DtsJobId", format!("job{}", i % 100))],
        ),
    };
    let mut query: BTreeMap<String, String> =
        params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let nonce = uuid::Uuid::new_v4().to_string();
    CommonParams {
        action,
        version,
        access_key_id: id,
        security_token: None,
        nonce: &nonce,
        timestamp: jiff::Timestamp::now(),
    }
    .apply(&mut query);
    let signature = signer::sign("POST", &query, secret);
    query.insert("Signature".to_owned(), signature);
    format!("{base}/?{}", signer::canonicalized_query(&query))
}

async fn round(base: &str, id: &str, secret: &str, client: &reqwest::Client) -> (f64, usize) {
    let urls: Arc<Vec<String>> = Arc::new(
        (0..REQUESTS)
            .map(|i| signed_url(base, i, id, secret))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        let (urls, next, failures, client) =
            (urls.clone(), next.clone(), failures.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(url) = urls.get(i) else { break };
                let ok = match client.post(url).send().await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        ok && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    (REQUESTS as f64 / elapsed, failures.load(Ordering::Relaxed))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let (mut config, (id, secret)) = SimConfig::with_generated_credentials();
        config.fixtures.delays = Delays::uniform(Duration::ZERO);
        let handle = sim::spawn(config).await.expect("the simulator starts");
        let base = handle.base_url();
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(TASKS)
            .build()
            .expect("an HTTP client");
        // Warm up: connections, auto-created resources.
        let _ = round(&base, &id, &secret, &client).await;
        let mut rates = Vec::with_capacity(ROUNDS);
        for n in 1..=ROUNDS {
            let (rate, failures) = round(&base, &id, &secret, &client).await;
            println!(
                "sim round {n}: {REQUESTS} signed requests, {TASKS} concurrent: {rate:.0} requests/s ({failures} failed)"
            );
            assert_eq!(failures, 0, "every request must succeed");
            rates.push(rate);
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "sim: median {:.0} requests/s with signature checks ({} cores)",
            rates[ROUNDS / 2],
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let _ = handle.shutdown().await;
    });
}
