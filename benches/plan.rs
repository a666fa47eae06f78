//! Benchmark: load + validate + plan a generated 10,000-step playbook.
//!
//! The playbook is built in memory: 1,000 chains of 10 steps (a describe
//! call, a stop whose parameters read the describe's output, a wait on the
//! status call, then calls and sleeps), where the head of each chain also
//! needs the tails of up to three earlier chains (fan-in). Every call has
//! templates over params and earlier outputs, so template checks, ancestor
//! checks, rendering and request previews all run at full size.
//!
//! Prints the median, min and max wall time of `Playbook::from_str` +
//! `Plan::build` over several iterations, the time of each phase, and the
//! peak resident set size (`VmHWM` from `/proc/self/status`).
//!
//! Targets: median <= 200 ms, peak RSS <= 100 MB.
//!
//!   cargo bench --bench plan

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use runbook::plan::Plan;
use runbook::playbook::Playbook;

const STEPS: usize = 10_000;
const CHAIN: usize = 10;
const ITERATIONS: usize = 15;

fn generate() -> String {
    let mut y = String::with_capacity(STEPS * 200);
    y.push_str("name: generated\n");
    y.push_str("description: generated benchmark playbook\n");
    y.push_str("params:\n");
    y.push_str("  region: { type: string, default: cn-hangzhou }\n");
    y.push_str("  project_id: { type: integer, default: 10000 }\n");
    y.push_str("  file_ids: { type: array, items: integer, default: [1, 2, 3] }\n");
    y.push_str("defaults:\n  region: \"{{params.region}}\"\n  retry: { attempts: 3, delay: 1s, max_delay: 10s }\n  timeout: 1m\n");
    y.push_str("concurrency: 16\n");
    y.push_str("steps:\n");
    for i in 0..STEPS {
        let chain = i / CHAIN;
        let pos = i % CHAIN;
        let _ = writeln!(y, "  - id: s{i}");
        if pos == 0 {
            let tails: Vec<String> = (1..=3)
                .filter(|k| chain >= *k)
                .map(|k| format!("s{}", (chain - k) * CHAIN + CHAIN - 1))
                .collect();
            if !tails.is_empty() {
                let _ = writeln!(y, "    needs: [{}]", tails.join(", "));
            }
        } else {
            let _ = writeln!(y, "    needs: [s{}]", i - 1);
        }
        match pos {
            0 | 5 => {
                let _ = writeln!(y, "    call: dts.DescribeDtsJobDetail");
                let _ = writeln!(
                    y,
                    "    with: {{ DtsJobId: \"job-{i}-{{{{params.project_id}}}}\" }}"
                );
            }
            1 | 6 => {
                let _ = writeln!(y, "    call: dts.StopDtsJob");
                let _ = writeln!(
                    y,
                    "    with: {{ DtsJobId: \"{{{{steps.s{}.output.DtsJobId}}}}\", SynchronizationDirection: Forward }}",
                    i - 1
                );
            }
            2 | 7 => {
                let _ = writeln!(y, "    wait:");
                let _ = writeln!(y, "      call: dts.DescribeDtsJobDetail");
                let _ = writeln!(
                    y,
                    "      with: {{ DtsJobId: \"{{{{steps.s{}.output.DtsJobId}}}}\" }}",
                    i - 2
                );
                let _ = writeln!(y, "      until: {{ select: Status, in: [Finished] }}");
                let _ = writeln!(y, "      fail_if: {{ select: Status, in: [Failed] }}");
                let _ = writeln!(y, "      every: 1s");
                let _ = writeln!(y, "      timeout: 2m");
            }
            3 => {
                let _ = writeln!(y, "    for_each: \"{{{{params.file_ids}}}}\"");
                let _ = writeln!(y, "    call: dataworks.GetDISyncInstanceInfo");
                let _ = writeln!(
                    y,
                    "    with: {{ ProjectId: \"{{{{params.project_id}}}}\", TaskType: DI_REALTIME, FileId: \"{{{{item}}}}\" }}"
                );
                let _ = writeln!(y, "    assert: {{ select: Data.Status, in: [RUN, PAUSE] }}");
            }
            8 => {
                let _ = writeln!(
                    y,
                    "    when: {{ value: \"{{{{steps.s{}.output.Status}}}}\", in: [Finished] }}",
                    i - 3
                );
                let _ = writeln!(y, "    call: dataworks.StopDISyncInstance");
                let _ = writeln!(
                    y,
                    "    with: {{ ProjectId: \"{{{{params.project_id}}}}\", TaskType: DI_REALTIME, FileId: {i} }}"
                );
            }
            _ => {
                let _ = writeln!(y, "    sleep: 1s");
            }
        }
    }
    y
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let text = generate();
    let params: BTreeMap<String, serde_json::Value> = BTreeMap::from([
        ("region".to_owned(), serde_json::json!("cn-hangzhou")),
        ("project_id".to_owned(), serde_json::json!(10000)),
        ("file_ids".to_owned(), serde_json::json!([1, 2, 3])),
    ]);

    if std::env::var_os("PLAN_BENCH_PHASES").is_some() {
        let mut parse = Vec::new();
        for _ in 0..ITERATIONS {
            let t = Instant::now();
            std::hint::black_box(runbook::playbook::parse_params_file(&text).ok());
            parse.push(t.elapsed());
        }
        parse.sort();
        println!(
            "  yaml -> json value:  median {:.1} ms",
            ms(parse[parse.len() / 2])
        );
    }
    let mut total = Vec::with_capacity(ITERATIONS);
    let mut load = Vec::with_capacity(ITERATIONS);
    let mut build = Vec::with_capacity(ITERATIONS);
    let mut steps = 0;
    for _ in 0..ITERATIONS {
        let t0 = Instant::now();
        let pb = match Playbook::from_str("generated.yaml", &text) {
            Ok(pb) => pb,
            Err(d) => {
                eprintln!("{}", d.render());
                std::process::exit(1);
            }
        };
        let t1 = Instant::now();
        let plan = match Plan::build(&pb, &params) {
            Ok(p) => p,
            Err(d) => {
                eprintln!("{}", d.render());
                std::process::exit(1);
            }
        };
        let t2 = Instant::now();
        steps = plan.steps.len();
        std::hint::black_box(&plan);
        load.push(t1 - t0);
        build.push(t2 - t1);
        total.push(t2 - t0);
    }
    for v in [&mut total, &mut load, &mut build] {
        v.sort();
    }
    let median = |v: &[Duration]| v[v.len() / 2];
    println!(
        "plan bench: {steps} steps, {} KiB of YAML, {ITERATIONS} iterations",
        text.len() / 1024
    );
    println!(
        "  load+validate+build: median {:.1} ms (min {:.1}, max {:.1}); target <= 200 ms",
        ms(median(&total)),
        ms(total[0]),
        ms(total[total.len() - 1])
    );
    println!("    load+validate:    median {:.1} ms", ms(median(&load)));
    println!("    build:            median {:.1} ms", ms(median(&build)));
    match peak_rss_kib() {
        Some(kib) => println!(
            "  peak RSS (VmHWM):   {:.1} MB; target <= 100 MB",
            kib as f64 / 1024.0
        ),
        None => println!("  peak RSS (VmHWM):   unavailable (no /proc/self/status)"),
    }
}
