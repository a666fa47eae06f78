//! Benchmark of the executor against the in-process simulator over real
//! loopback HTTP with real signatures and a real SQLite journal.
//!
//! 1. Throughput: a 1,000-node fan-out (stop, wait until paused, terminate)
//!    with zero transition delays at concurrency 64: calls per second and
//!    the process's peak RSS (simulator included, so an upper bound).
//! 2. Engine overhead: the same shape over 200 nodes at concurrency 1, where
//!    nothing overlaps: (wall time - time spent inside API calls) / units is
//!    the engine's own time per step beyond the simulator's answer
//!    (rendering, journal commits, events, scheduling).
//!
//! Both on each journal backend: SQLite (a file on the real disk) and
//! PostgreSQL (a fresh database on `RUNBOOK_TEST_PG`, default the local
//! server's `test`; fsync and synchronous_commit as the server has them,
//! printed). CPU per call is the process's user + system time
//! (getrusage) over the run divided by its calls: the simulator runs in
//! the same process, so it is an upper bound of the engine's; PostgreSQL's
//! own CPU is in its server processes and not counted.
//!
//! Run: `cargo bench --bench engine` (`RUNBOOK_BENCH_JOURNALS=sqlite` or
//! `postgres` for one backend, `RUNBOOK_BENCH_ROUNDS=N`, default 3).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use runbook::cloud::client::{ClientOptions, RpcClient};
use runbook::cloud::credentials::Credentials;
use runbook::cloud::{ActionRequest, CallFuture, CloudApi, Endpoints};
use runbook::run::{FlagApprover, Journal, NoSink, Prior, RateLimits, RunOptions, Runner};
use runbook::sim::{self, Delays, SimConfig};
use tokio_util::sync::CancellationToken;

/// Wraps the client and adds up the time spent inside calls.
struct Timed {
    inner: RpcClient,
    nanos: AtomicU64,
    calls: AtomicU64,
}

impl CloudApi for Timed {
    fn call<'a>(&'a self, req: &'a ActionRequest) -> CallFuture<'a> {
        Box::pin(async move {
            let start = Instant::now();
            let out = self.inner.call(req).await;
            self.nanos.fetch_add(
                u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            self.calls.fetch_add(1, Ordering::Relaxed);
            out
        })
    }
}

fn playbook(nodes: usize, concurrency: usize) -> String {
    let ids: Vec<String> = (1..=nodes).map(|i| (100_000 + i).to_string()).collect();
    format!(
        r#"
name: bench-fan-out
params:
  file_ids: {{ type: array, items: integer, default: [{ids}] }}
defaults:
  region: cn-shanghai
  retry: {{ attempts: 5, backoff: exponential, delay: 10ms, max_delay: 100ms, jitter: true }}
  for_each_concurrency: {concurrency}
concurrency: {concurrency}
steps:
  - id: stop
    for_each: "{{{{params.file_ids}}}}"
    call: dataworks.StopDISyncInstance
    with: {{ ProjectId: 10000, FileId: "{{{{item}}}}", TaskType: DI_REALTIME }}
  - id: paused
    needs: [stop]
    for_each: "{{{{params.file_ids}}}}"
    wait:
      call: dataworks.GetDISyncInstanceInfo
      with: {{ ProjectId: 10000, FileId: "{{{{item}}}}", TaskType: DI_REALTIME }}
      until: {{ select: Data.Status, in: [PAUSE] }}
      every: 10ms
      timeout: 1m
  - id: terminate
    needs: [paused]
    for_each: "{{{{params.file_ids}}}}"
    call: dataworks.TerminateDISyncInstance
    with: {{ ProjectId: 10000, FileId: "{{{{item}}}}", TaskType: DI_REALTIME }}
"#,
        ids = ids.join(", ")
    )
}

/// Where a round journals.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

fn admin_url() -> String {
    std::env::var("RUNBOOK_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Runs `sql` on the PostgreSQL server (off the async runtime).
fn admin(sql: String) -> Vec<String> {
    std::thread::spawn(move || {
        let url = admin_url();
        let mut c = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("the PostgreSQL bench cannot reach {url}: {e}"));
        c.simple_query(&sql)
            .expect("admin statement")
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .collect()
    })
    .join()
    .expect("admin thread")
}

/// User + system CPU time of this process so far.
fn cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    tv(u.user_time()) + tv(u.system_time())
}

struct Round {
    cpu: Duration,
    wall: Duration,
    calls: u64,
    in_calls: Duration,
    units: u64,
}

fn round(
    rt: &tokio::runtime::Runtime,
    nodes: usize,
    concurrency: usize,
    backend: Backend,
) -> Round {
    // The journal on the real disk (not a tmpfs), so its fsyncs are counted.
    let dir =
        tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).expect("tempdir");
    let path = dir.path().join("bench.yaml");
    std::fs::write(&path, playbook(nodes, concurrency)).expect("write playbook");
    rt.block_on(async {
        let (mut config, (id, secret)) = SimConfig::with_generated_credentials();
        config.fixtures.delays = Delays::uniform(Duration::ZERO);
        let sim = sim::spawn(config).await.expect("simulator");
        let mut endpoints = Endpoints::new();
        endpoints.set_override("dataworks", &sim.base_url());
        let plan = runbook::plan::load_and_build(&path, &[], None).expect("plan");
        let client = RpcClient::new(
            Credentials::new(id, secret, None),
            endpoints,
            ClientOptions::default(),
        )
        .expect("client");
        let api = Arc::new(Timed {
            inner: client,
            nanos: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        });
        let db = format!("runbook_bench_{}", std::process::id());
        let journal = match backend {
            Backend::Sqlite => Journal::open(&dir.path().join("state")).expect("journal"),
            Backend::Postgres => {
                admin(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
                admin(format!("CREATE DATABASE {db}"));
                let base = admin_url();
                let server = base.rsplit_once('/').map_or(base.as_str(), |(s, _)| s);
                let url: runbook::run::JournalUrl = format!("{server}/{db}?sslmode=disable")
                    .parse()
                    .expect("journal URL");
                Journal::open_url(&url).expect("journal")
            }
        };
        journal
            .create_run(
                "bench",
                "bench",
                "bench.yaml",
                &plan.digest,
                "{}".into(),
                "{}".into(),
            )
            .await
            .expect("run row");
        let runner = Runner::new(
            Arc::new(plan),
            api.clone(),
            journal,
            Arc::new(NoSink),
            Arc::new(RateLimits::default()),
            Arc::new(FlagApprover {
                steps: Default::default(),
                by: "bench".into(),
                identity: None,
            }),
            CancellationToken::new(),
            RunOptions {
                run_id: "bench".into(),
                concurrency,
                run_timeout: None,
                seed: Some(1),
                allow_drift: false,
                time_scale: runbook::run::TimeScale::REAL,
            },
            Prior::default(),
        );
        let (start, cpu0) = (Instant::now(), cpu());
        let summary = runner.execute(false).await.expect("run");
        let (wall, cpu) = (start.elapsed(), cpu().saturating_sub(cpu0));
        assert_eq!(
            summary.outcome,
            runbook::run::RunStatus::Succeeded,
            "{summary:?}"
        );
        let _ = sim.shutdown().await;
        if backend == Backend::Postgres {
            admin(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        }
        Round {
            cpu,
            wall,
            calls: api.calls.load(Ordering::Relaxed),
            in_calls: Duration::from_nanos(api.nanos.load(Ordering::Relaxed)),
            units: 3 * nodes as u64,
        }
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rounds: usize = std::env::var("RUNBOOK_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let backends: Vec<Backend> = std::env::var("RUNBOOK_BENCH_JOURNALS")
        .unwrap_or_else(|_| "sqlite,postgres".to_owned())
        .split(',')
        .map(|b| match b.trim() {
            "sqlite" => Backend::Sqlite,
            "postgres" => Backend::Postgres,
            other => panic!("RUNBOOK_BENCH_JOURNALS: unknown backend `{other}`"),
        })
        .collect();
    if backends.contains(&Backend::Postgres) {
        println!(
            "PostgreSQL: fsync {}, synchronous_commit {}",
            admin("SHOW fsync".into()).join(""),
            admin("SHOW synchronous_commit".into()).join("")
        );
    }
    for backend in backends {
        let mut rates = Vec::new();
        let mut walls = Vec::new();
        let mut cpus = Vec::new();
        for _ in 0..rounds {
            let r = round(&rt, 1_000, 64, backend);
            rates.push(r.calls as f64 / r.wall.as_secs_f64());
            walls.push(r.wall.as_secs_f64());
            cpus.push(r.cpu.as_secs_f64() * 1e6 / r.calls as f64);
        }
        println!(
            "[{backend:?}] fan-out 1000 nodes x (stop, wait, terminate), concurrency 64: median {:.0} calls/s (rounds: {}), median wall {:.2} s, median CPU {:.0} us/call (process: runner + simulator)",
            median(rates.clone()),
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            median(walls),
            median(cpus)
        );
        println!(
            "[{backend:?}] peak RSS of the process so far (runner + simulator + journal): {:.1} MB",
            peak_rss_mb()
        );
        let mut overheads = Vec::new();
        for _ in 0..rounds {
            let r = round(&rt, 200, 1, backend);
            let engine = r.wall.saturating_sub(r.in_calls);
            overheads.push(engine.as_secs_f64() * 1e3 / r.units as f64);
        }
        println!(
            "[{backend:?}] engine time per step beyond the simulator's answer (200 nodes x 3 steps, concurrency 1): median {:.3} ms (rounds: {})",
            median(overheads.clone()),
            overheads
                .iter()
                .map(|o| format!("{o:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
