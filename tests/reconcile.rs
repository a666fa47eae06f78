//! Status reads under faults: the reads that settle an unknown outcome
//! (reconcile), wait polls and `plan --refresh` are retried until the step's
//! deadline, not a number of times; only a permanent error or that deadline
//! ends a status check, and a resumed check continues its settle window.
//! Rehearsals with `--sim --time-scale` keep these tests fast; the call logs
//! (`--sim-log`, or the rig's simulator) say what reached the service.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use runbook::sim::{CallRecord, DtsJobFixture};
use serde_json::Value;

use crate::run::{Rig, repo, text, wait_until};

const HEAVY: &str = "throttle=0.3,error=0.1,drop=0.05,applied_drop=0.05";
const CUTOVER_NODES: [&str; 3] = ["100101", "100102", "100103"];

/// `runbook ARGS` on the cutover example against the in-process simulator,
/// its call log in `log`, the journal in `state`.
fn cutover(args: &[&str], state: &Path, log: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.args(args)
        .args(["--sim", "--sim-log"])
        .arg(log)
        .arg("--state-dir")
        .arg(state)
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

fn run_cutover(extra: &[&str], state: &Path, log: &Path) -> Command {
    let (playbook, params) = (
        repo("playbooks/dts-di-cutover.yaml"),
        repo("playbooks/params/dts-di-cutover.yaml"),
    );
    let mut args = vec!["run", &playbook, "--params", &params, "--yes"];
    args.extend_from_slice(extra);
    cutover(&args, state, log)
}

fn log_of(path: &Path) -> Vec<CallRecord> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn is(c: &CallRecord, action: &str) -> bool {
    c.action.as_deref() == Some(action)
}

/// How many times `action` reached the service for each value of `key`.
fn processed(calls: &[CallRecord], action: &str, key: &str) -> Vec<(String, usize)> {
    let mut by = std::collections::BTreeMap::<String, usize>::new();
    for c in calls.iter().filter(|c| is(c, action) && c.processed()) {
        *by.entry(c.param(key).unwrap_or("").to_owned()).or_default() += 1;
    }
    by.into_iter().collect()
}

/// The soak's check, on a few seeds: the cutover example succeeds under heavy
/// faults, every node is terminated exactly once, and no mutating call
/// reaches the service again after it took effect.
#[test]
fn the_cutover_succeeds_under_heavy_faults_on_every_seed_without_repeating_an_applied_call() {
    for seed in 1..=5u64 {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sim.jsonl");
        let seed = seed.to_string();
        let out = run_cutover(
            &[
                "--sim-faults",
                HEAVY,
                "--sim-seed",
                &seed,
                "--time-scale",
                "50",
            ],
            &dir.path().join("state"),
            &log,
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(0), "seed {seed}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("(time compressed 50x: --time-scale 50)"),
            "{stdout}"
        );
        let calls = log_of(&log);
        assert!(
            calls.iter().filter(|c| !c.faults.is_empty()).count() > 3,
            "seed {seed}: the faults were injected"
        );
        let terminates = processed(&calls, "TerminateDISyncInstance", "FileId");
        assert_eq!(
            terminates,
            CUTOVER_NODES.map(|n| (n.to_owned(), 1)).to_vec(),
            "seed {seed}: every node terminated exactly once"
        );
        for (action, key) in [
            ("StopDtsJob", "DtsJobId"),
            ("TerminateDISyncInstance", "FileId"),
        ] {
            let mut changed = std::collections::BTreeSet::new();
            for c in calls.iter().filter(|c| is(c, action) && c.processed()) {
                let id = c.param(key).unwrap_or("").to_owned();
                assert!(
                    !changed.contains(&id),
                    "seed {seed}: {action} {id} reached the service again after it took effect"
                );
                if c.changed {
                    changed.insert(id);
                }
            }
        }
    }
}

/// Kills the run (SIGKILL) each time `more` further status reads of the
/// stop's check have reached the simulator.
fn kill_after_reads(mut child: std::process::Child, log: &Path, more: usize) {
    let reads = |calls: &[CallRecord]| {
        calls
            .iter()
            .filter(|c| is(c, "DescribeDtsJobDetail"))
            .count()
    };
    let before = reads(&log_of(log));
    wait_until(&mut child, "the status check's reads", || {
        reads(&log_of(log)) >= before + more
    });
    child.kill().unwrap();
    let _ = child.wait();
}

/// A stop whose effect shows late (`StopDtsJob`: "not done" must hold for
/// 20 s before it proves the call was not applied) is dropped unanswered and
/// the run is killed during its status check, three times in a row. The
/// check is not started over on each resume: once its window has passed,
/// the next resume decides with its first read, and the stop is sent once
/// more while every terminate still reaches the service once.
#[test]
fn killed_again_and_again_during_a_late_effect_check_the_settle_window_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (state, log) = (dir.path().join("state"), dir.path().join("sim.jsonl"));
    // 20 s of settle window in 4 s; reads every 200 ms.
    let child = run_cutover(
        &["--sim-faults", "drop@StopDtsJob=1#1", "--time-scale", "5"],
        &state,
        &log,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    kill_after_reads(child, &log, 2);
    let runs = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["runs", "--json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    let run_id = runs[0]["id"].as_str().unwrap().to_owned();
    // Resumed without --time-scale: the journaled scale holds.
    for _ in 0..2 {
        let child = cutover(&["resume", &run_id, "--yes"], &state, &log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        kill_after_reads(child, &log, 2);
    }
    let calls = log_of(&log);
    let first_read = calls
        .iter()
        .find(|c| is(c, "DescribeDtsJobDetail"))
        .unwrap()
        .time;
    let window = Duration::from_secs(20 / 5);
    let since = Duration::try_from(jiff::Timestamp::now().duration_since(first_read)).unwrap();
    std::thread::sleep(window.saturating_sub(since) + Duration::from_millis(100));
    let before = calls.len();
    let out: Output = cutover(&["resume", &run_id, "--yes"], &state, &log)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("--time-scale 5"),
        "{}",
        text(&out)
    );
    let calls = log_of(&log);
    let last = &calls[before..];
    let resend = last.iter().position(|c| is(c, "StopDtsJob")).unwrap();
    let reads = last[..resend]
        .iter()
        .filter(|c| is(c, "DescribeDtsJobDetail"))
        .count();
    assert_eq!(
        reads, 1,
        "the resumed check went on with the window of the first: one read decided it"
    );
    // Not decided before the window had run its course, across the kills.
    let decided = Duration::try_from(last[resend].time.duration_since(first_read)).unwrap();
    assert!(decided >= window, "decided after {decided:?}");
    assert_eq!(
        processed(&calls, "StopDtsJob", "DtsJobId"),
        vec![("l3m1213ye7l".to_owned(), 1)],
        "the dropped stop was never applied; the one resend was"
    );
    assert_eq!(
        processed(&calls, "TerminateDISyncInstance", "FileId"),
        CUTOVER_NODES.map(|n| (n.to_owned(), 1)).to_vec()
    );
}

const TERMINATE_ONE: &str = r#"
name: terminate-one
defaults:
  region: cn-shanghai
  retry: { attempts: 2, delay: 5ms, max_delay: 20ms }
steps:
  - id: terminate
    call: dataworks.TerminateDISyncInstance
    with: { ProjectId: 1, FileId: 61, TaskType: DI_REALTIME }
"#;

#[test]
fn a_status_check_throttled_many_times_in_a_row_still_settles() {
    // The terminate is applied and its answer lost; the next 15 status
    // reads are throttled, far more than the 2 attempts of the retry policy.
    let rig = Rig::new(
        "applied_drop@TerminateDISyncInstance=1#1,throttle@GetDISyncInstanceInfo=1#15",
        Duration::ZERO,
    );
    let pb = rig.playbook("t.yaml", TERMINATE_ONE);
    let out = rig.run(&["run", &pb, "--yes", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let calls = rig.calls();
    let throttled = calls
        .iter()
        .filter(|c| is(c, "GetDISyncInstanceInfo") && !c.faults.is_empty())
        .count();
    assert_eq!(throttled, 15);
    assert_eq!(
        rig.processed("TerminateDISyncInstance", "FileId")
            .into_iter()
            .collect::<Vec<_>>(),
        vec![("61".to_owned(), 1)]
    );
    let reconciled: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "reconciled")
        .collect();
    assert_eq!(reconciled.len(), 1, "{}", text(&out));
    assert_eq!(reconciled[0]["took_effect"], true);
}

#[test]
fn a_permanent_error_ends_a_status_check_and_says_so() {
    let rig = Rig::new(
        "applied_drop@TerminateDISyncInstance=1#1,deny@GetDISyncInstanceInfo=1",
        Duration::ZERO,
    );
    let pb = rig.playbook("t.yaml", TERMINATE_ONE);
    let out = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("TerminateDISyncInstance may have been applied and its status could not be read (GetDISyncInstanceInfo answered with a permanent error: Forbidden.RAM: "),
        "{}",
        text(&out)
    );
    assert!(stdout.contains("(HTTP 403, RequestId "), "{stdout}");
    assert!(stdout.contains("not sending it again"), "{stdout}");
    // One read: a permanent error is not retried.
    let reads = rig
        .calls()
        .iter()
        .filter(|c| is(c, "GetDISyncInstanceInfo"))
        .count();
    assert_eq!(reads, 1);
    assert_eq!(
        rig.processed("TerminateDISyncInstance", "FileId")
            .into_iter()
            .collect::<Vec<_>>(),
        vec![("61".to_owned(), 1)]
    );
}

#[test]
fn the_step_deadline_ends_a_status_check_and_says_so() {
    // Every status read is throttled: only the step's 1 s timeout ends it.
    let rig = Rig::new(
        "applied_drop@TerminateDISyncInstance=1#1,throttle@GetDISyncInstanceInfo=1",
        Duration::ZERO,
    );
    let pb = rig.playbook(
        "t.yaml",
        &TERMINATE_ONE.replace(
            "    call: dataworks.TerminateDISyncInstance",
            "    timeout: 1s\n    call: dataworks.TerminateDISyncInstance",
        ),
    );
    let out = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("step timed out after 1s: TerminateDISyncInstance may have been applied and its status could not be read (the step's timeout of 1s passed; the last read failed: Throttling.User: "),
        "{}",
        text(&out)
    );
    assert!(stdout.contains("RequestId "), "{stdout}");
    let reads = rig
        .calls()
        .iter()
        .filter(|c| is(c, "GetDISyncInstanceInfo"))
        .count();
    assert!(reads > 5, "read until the deadline: {reads}");
    assert_eq!(
        rig.processed("TerminateDISyncInstance", "FileId")
            .into_iter()
            .collect::<Vec<_>>(),
        vec![("61".to_owned(), 1)]
    );
}

/// Stop a DTS task, then wait until it has finished; the retry policy
/// allows two attempts.
const DTS_WAIT: &str = r#"
name: dts-wait
defaults:
  region: cn-hangzhou
  retry: { attempts: 2, delay: 5ms, max_delay: 20ms }
steps:
  - id: stop
    call: dts.StopDtsJob
    with: { DtsJobId: job-1 }
  - id: stopped
    needs: [stop]
    wait:
      call: dts.DescribeDtsJobDetail
      with: { DtsJobId: job-1 }
      until: { select: Status, in: [Finished] }
      every: 5ms
      timeout: 20s
"#;

#[test]
fn a_wait_rides_out_throttled_polls_and_fails_at_once_on_a_permanent_error() {
    let wait = |faults: &str| {
        let rig = Rig::with(faults, Duration::ZERO, |c| {
            c.fixtures.dts_jobs.push(DtsJobFixture::running("job-1"));
        });
        let pb = rig.playbook("dts.yaml", DTS_WAIT);
        let out = rig.run(&["run", &pb, "--yes"]);
        let polls = rig
            .calls()
            .iter()
            .filter(|c| is(c, "DescribeDtsJobDetail"))
            .count();
        (out, polls)
    };
    // Ten throttled polls in a row, against a retry policy of 2 attempts.
    let (out, polls) = wait("throttle@DescribeDtsJobDetail=1#10");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(polls > 10, "{polls}");
    let (out, polls) = wait("deny@DescribeDtsJobDetail=1");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("status call DescribeDtsJobDetail failed: Forbidden.RAM"),
        "{}",
        text(&out)
    );
    assert_eq!(polls, 1);
}

#[test]
fn plan_refresh_rides_out_throttled_reads() {
    let rig = Rig::new("throttle@GetDISyncInstanceInfo=1#8", Duration::ZERO);
    let pb = rig.playbook("t.yaml", TERMINATE_ONE);
    let url = rig.sim().base_url();
    let out = rig.run(&[
        "plan",
        &pb,
        "--refresh",
        "--endpoint",
        &format!("dataworks={url}"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Data.Status = \"RUN\"  -> would change it"),
        "{stdout}"
    );
    assert_eq!(rig.calls().len(), 9, "8 throttled reads, then one answered");
}

#[test]
fn time_scale_needs_the_simulator_and_a_number_of_at_least_one() {
    let dir = tempfile::tempdir().unwrap();
    let pb = repo("playbooks/dts-di-cutover.yaml");
    let params = repo("playbooks/params/dts-di-cutover.yaml");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(["run", &pb, "--params", &params, "--yes", "--state-dir"])
            .arg(dir.path())
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&["--time-scale", "10"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--sim"),
        "{}",
        text(&out)
    );
    for bad in ["0.5", "0", "fast"] {
        let out = run(&["--sim", "--time-scale", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("at least 1"),
            "{}",
            text(&out)
        );
    }
}
