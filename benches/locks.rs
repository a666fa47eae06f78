//! Resource locks: what taking them costs a run. A run of a 1,000-node
//! fan-out takes its 1,000 locks (known from params) in one transaction
//! before its first call; a run whose resources are known only at run time
//! takes one lock per unit. Measured on both journal backends (PostgreSQL:
//! the local server, a database of its own, dropped at the end).
//!
//! Run: `cargo bench --bench locks` (`RUNBOOK_BENCH_JOURNALS=sqlite` or
//! `postgres` for one backend, `RUNBOOK_BENCH_ROUNDS=N`, default 5).

use std::time::{Duration, Instant};

use runbook::run::journal::{Journal, now_ms};
use runbook::run::resources::ResourceKey;

fn admin_url() -> String {
    std::env::var("RUNBOOK_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn admin(sql: String) {
    std::thread::spawn(move || {
        let url = admin_url();
        let mut c = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("the PostgreSQL bench cannot reach {url}: {e}"));
        c.batch_execute(&sql).expect("admin statement");
    })
    .join()
    .expect("admin thread");
}

fn keys(round: usize, n: usize) -> Vec<ResourceKey> {
    (0..n)
        .map(|i| ResourceKey {
            account: "0123456789abcdef".to_owned(),
            region: "cn-hangzhou".to_owned(),
            product: "dataworks".to_owned(),
            kind: "di-node".to_owned(),
            id: format!("ProjectId=10000,FileId={}", 100_000 + round * n + i),
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn bench(name: &str, journal: &Journal, rounds: usize) {
    const N: usize = 1_000;
    let mut all_at_once = Vec::new();
    let mut one_by_one = Vec::new();
    for round in 0..rounds {
        let run = format!("bench-{round}");
        let t = Instant::now();
        let refused = journal
            .take_locks(&run, None, &keys(round, N), now_ms())
            .expect("take");
        all_at_once.push(t.elapsed());
        assert!(refused.is_none());
        journal.release_locks(&run).expect("release");
        let t = Instant::now();
        for key in keys(round, N) {
            let refused = journal
                .take_locks(&run, Some("stop"), &[key], now_ms())
                .expect("take");
            assert!(refused.is_none());
        }
        one_by_one.push(t.elapsed());
        journal.release_locks(&run).expect("release");
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name}: {N} locks in one transaction: median {:.1} ms; one transaction per lock: median {:.1} ms ({:.0} µs per lock); {rounds} rounds",
        ms(median(all_at_once)),
        ms(median(one_by_one.clone())),
        median(one_by_one).as_secs_f64() * 1e6 / N as f64,
    );
}

fn main() {
    let rounds: usize = std::env::var("RUNBOOK_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let backends =
        std::env::var("RUNBOOK_BENCH_JOURNALS").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    for backend in backends.split(',') {
        match backend.trim() {
            "sqlite" => {
                let dir = tempfile::tempdir().expect("temp dir");
                let journal = Journal::open(dir.path()).expect("journal");
                bench("SQLite", &journal, rounds);
            }
            "postgres" => {
                let name = format!("runbook_bench_locks_{}", std::process::id());
                admin(format!("CREATE DATABASE {name}"));
                let base = admin_url();
                let server = base.rsplit_once('/').map_or(base.as_str(), |(s, _)| s);
                let url = format!("{server}/{name}?sslmode=disable")
                    .parse()
                    .expect("journal URL");
                let journal = Journal::open_url(&url).expect("journal");
                bench("PostgreSQL", &journal, rounds);
                drop(journal);
                admin(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
            other => panic!("RUNBOOK_BENCH_JOURNALS: unknown backend `{other}`"),
        }
    }
}
