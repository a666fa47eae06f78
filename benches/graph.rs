//! Benchmark: the release binary on a 200,000-step chain and a 200,000-step
//! dependency loop, through `validate`, `plan` and `graph`.
//!
//! Every graph walk is iterative, so neither shape may overflow the stack:
//! the chain must be valid (exit 0) and the loop refused with the cycle
//! error (exit 3), its message short enough to read. Each command runs as
//! its own process (the binary `cargo bench` builds, in release mode); the
//! bench prints its wall time and peak resident set size (`VmHWM` of the
//! child, sampled every 2 ms while it runs), and fails if an exit code or
//! the message is wrong.
//!
//!   cargo bench --bench graph

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: usize = 200_000;

/// `s0 .. s{n-1}`, each needing the one before; with `closed`, `s0` needs
/// the last.
fn chain(n: usize, closed: bool) -> String {
    let mut text = String::with_capacity(n * 48);
    text.push_str("name: chain\nsteps:\n");
    for i in 0..n {
        let needs = match (i, closed) {
            (0, false) => String::new(),
            (0, true) => format!("s{}", n - 1),
            _ => format!("s{}", i - 1),
        };
        let _ = write!(text, "  - id: s{i}\n    needs: [{needs}]\n    sleep: 1s\n");
    }
    text
}

/// The peak RSS so far of a running process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `runbook ARGS`; returns its exit code, the first line of its
/// stderr, its wall time and its sampled peak RSS (KiB).
fn run(args: &[&str]) -> (Option<i32>, String, Duration, u64) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the runbook binary runs");
    let stderr = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut { stderr }, &mut text);
        text
    });
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_rss_kib(child.id()) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("the child can be waited on") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = started.elapsed();
    let stderr = reader.join().expect("stderr was read");
    let first = stderr.lines().next().unwrap_or_default().to_owned();
    (status.code(), first, elapsed, peak)
}

fn main() {
    let dir = std::env::temp_dir().join(format!("runbook-graph-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let chain_path = dir.join("chain.yaml");
    let cycle_path = dir.join("cycle.yaml");
    std::fs::write(&chain_path, chain(STEPS, false)).expect("the chain is written");
    std::fs::write(&cycle_path, chain(STEPS, true)).expect("the loop is written");
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len() / 1024);
    println!(
        "graph bench: {STEPS} steps; chain {} KiB, loop {} KiB of YAML",
        size(&chain_path),
        size(&cycle_path)
    );
    let (chain_s, cycle_s) = (
        chain_path.to_string_lossy().into_owned(),
        cycle_path.to_string_lossy().into_owned(),
    );
    let cases: [(&str, Vec<&str>, i32); 6] = [
        ("validate chain", vec!["validate", &chain_s], 0),
        ("validate loop", vec!["validate", &cycle_s], 3),
        ("plan chain", vec!["plan", &chain_s], 0),
        ("plan loop", vec!["plan", &cycle_s], 3),
        ("graph chain (dot)", vec!["graph", &chain_s], 0),
        (
            "graph loop (mermaid)",
            vec!["graph", &cycle_s, "--format", "mermaid"],
            3,
        ),
    ];
    let mut wrong = Vec::new();
    for (name, args, expected) in &cases {
        let (code, first, elapsed, peak) = run(args);
        println!(
            "  {name:<22} exit {}  {:>8.1} ms  peak RSS {:>6.1} MB",
            code.map_or("signal".to_owned(), |c| c.to_string()),
            elapsed.as_secs_f64() * 1000.0,
            peak as f64 / 1024.0
        );
        if *expected == 3 {
            println!("    {first}");
        }
        let message_ok = *expected != 3
            || (first.starts_with("error: dependency cycle: s0 -> ")
                && first.ends_with(&format!("({STEPS} steps)"))
                && first.len() < 200);
        if code != Some(*expected) || !message_ok {
            wrong.push(*name);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if !wrong.is_empty() {
        eprintln!("graph bench: wrong exit code or message: {wrong:?}");
        std::process::exit(1);
    }
}
