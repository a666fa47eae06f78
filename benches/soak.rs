//! Soak: the cutover example (`playbooks/dts-di-cutover.yaml` with its params
//! file) run many times through the CLI against the in-process simulator
//! under heavy faults (`throttle=0.3,error=0.1,drop=0.05,applied_drop=0.05`),
//! a different fault seed each time, with time compressed. From each run's
//! simulator call log (`--sim-log`) it checks that the run succeeded and that
//! no irreversible call (`TerminateDISyncInstance`) reached the service
//! twice for the same node, nor any mutating call again once it had taken
//! effect.
//!
//! Run: `cargo bench --bench soak` (50 runs); `SOAK_RUNS=200 cargo bench
//! --bench soak`, or `cargo bench --bench soak -- 200`. `SOAK_TIME_SCALE`
//! (default 50) and `SOAK_SEED` (first seed, default 1) change the rest.
//! Exits non-zero when any check fails.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use runbook::sim::CallRecord;

const FAULTS: &str = "throttle=0.3,error=0.1,drop=0.05,applied_drop=0.05";
const IRREVERSIBLE: &str = "TerminateDISyncInstance";
/// Mutating actions of the cutover and the parameter naming their resource.
const MUTATING: [(&str, &str); 2] = [("StopDtsJob", "DtsJobId"), (IRREVERSIBLE, "FileId")];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one run showed.
struct Checked {
    succeeded: bool,
    /// Nodes whose terminate reached the service more than once.
    duplicate_irreversible: usize,
    /// Mutating calls processed again after one had changed the resource.
    resent_after_effect: usize,
    calls: usize,
    faults: usize,
    detail: String,
}

fn run_once(seed: u64, scale: &str) -> Checked {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("sim.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("run")
        .arg(root.join("playbooks/dts-di-cutover.yaml"))
        .arg("--params")
        .arg(root.join("playbooks/params/dts-di-cutover.yaml"))
        .args(["--sim", "--yes", "--sim-faults", FAULTS])
        .args(["--sim-seed", &seed.to_string(), "--time-scale", scale])
        .arg("--sim-log")
        .arg(&log)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("runbook runs");
    let calls: Vec<CallRecord> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut terminates: BTreeMap<&str, usize> = BTreeMap::new();
    let mut changed: BTreeMap<(&str, &str), bool> = BTreeMap::new();
    let mut resent_after_effect = 0;
    for c in &calls {
        let Some(action) = c.action.as_deref() else {
            continue;
        };
        let Some((_, key)) = MUTATING.iter().find(|(a, _)| *a == action) else {
            continue;
        };
        if !c.processed() {
            continue;
        }
        let id = c.param(key).unwrap_or("");
        if action == IRREVERSIBLE {
            *terminates.entry(id).or_default() += 1;
        }
        let done = changed.entry((action, id)).or_default();
        if *done {
            resent_after_effect += 1;
        }
        *done |= c.changed;
    }
    let succeeded = out.status.success() && terminates.len() == 3;
    let detail = if succeeded {
        String::new()
    } else {
        format!(
            "exit {:?}, terminates {terminates:?}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout)
        )
    };
    Checked {
        succeeded,
        duplicate_irreversible: terminates.values().filter(|&&n| n > 1).count(),
        resent_after_effect,
        calls: calls.len(),
        faults: calls.iter().filter(|c| !c.faults.is_empty()).count(),
        detail,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a bare number is the run count.
    let runs: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or_else(|| env_or("SOAK_RUNS", 50));
    let scale: String = env_or("SOAK_TIME_SCALE", "50".to_owned());
    let first: u64 = env_or("SOAK_SEED", 1);
    let start = Instant::now();
    let (mut succeeded, mut duplicates, mut resent, mut calls, mut faults) = (0, 0, 0, 0, 0);
    for seed in first..first + runs {
        let c = run_once(seed, &scale);
        if c.succeeded {
            succeeded += 1;
        } else {
            eprintln!("seed {seed} failed: {}", c.detail);
        }
        if c.duplicate_irreversible > 0 || c.resent_after_effect > 0 {
            eprintln!(
                "seed {seed}: {} duplicate irreversible calls, {} mutating calls resent after taking effect",
                c.duplicate_irreversible, c.resent_after_effect
            );
        }
        duplicates += c.duplicate_irreversible;
        resent += c.resent_after_effect;
        calls += c.calls;
        faults += c.faults;
    }
    println!("soak: {runs} runs, {succeeded} succeeded, {duplicates} duplicate irreversible calls");
    println!(
        "soak: {resent} mutating calls resent after taking effect; {calls} calls, {faults} with a fault injected ({FAULTS}, seeds {first}..={}, --time-scale {scale}); {:.1}s",
        first + runs - 1,
        start.elapsed().as_secs_f64()
    );
    if succeeded != runs || duplicates > 0 || resent > 0 {
        std::process::exit(1);
    }
}
