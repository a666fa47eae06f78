//! Integration tests of `runbook run` / `resume` / `runs` / `show`: the binary
//! runs as a separate process against the simulator over real HTTP with real
//! signatures, and every test asserts on the simulator's call log and final
//! resource states (not only on what runbook says about itself).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use runbook::cloud::signer::SignatureVersion;
use runbook::sim::{
    self, CallRecord, Delays, DiNodeFixture, DtsJobFixture, FaultSpec, ResourceKind, SimConfig,
    SimHandle,
};
use serde_json::Value;

use crate::journal_backend::TestJournal;

/// The signature the suite runs with: `RUNBOOK_SIGNATURE` (which the binary
/// under test reads as the default of `--signature`), else V1. `.ci/run`
/// runs the integration tests once with each.
pub(crate) fn suite_signature() -> SignatureVersion {
    match std::env::var("RUNBOOK_SIGNATURE") {
        Ok(v) if !v.trim().is_empty() => v.parse().expect("RUNBOOK_SIGNATURE is v1 or v3"),
        _ => SignatureVersion::V1,
    }
}

pub(crate) const ID: &str = "LTAItestRUNid";
pub(crate) const SECRET: &str = "run-secret-0123456789abcdef";

/// A simulator in this process and a state dir; runbook runs as a child.
pub(crate) struct Rig {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) sim: Option<SimHandle>,
    pub(crate) dir: tempfile::TempDir,
    /// The journal (see [`crate::journal_backend`]).
    pub(crate) journal: TestJournal,
    /// The signature every call the simulator receives must carry (checked
    /// when the rig is dropped): [`suite_signature`], unless a test signs
    /// otherwise on purpose (`None`: not checked).
    pub(crate) signature: Option<SignatureVersion>,
}

impl Rig {
    pub(crate) fn new(faults: &str, delay: Duration) -> Rig {
        Rig::with(faults, delay, |_| {})
    }

    pub(crate) fn with(faults: &str, delay: Duration, tweak: impl FnOnce(&mut SimConfig)) -> Rig {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut config = SimConfig {
            credentials: vec![(ID.to_owned(), SECRET.to_owned())],
            auto_create: true,
            seed: 7,
            faults: if faults.is_empty() {
                FaultSpec::default()
            } else {
                faults.parse().unwrap()
            },
            ..SimConfig::default()
        };
        config.fixtures.delays = Delays::uniform(delay);
        tweak(&mut config);
        let sim = rt.block_on(sim::spawn(config)).unwrap();
        Rig {
            rt,
            sim: Some(sim),
            dir: tempfile::tempdir().unwrap(),
            journal: TestJournal::new(),
            signature: Some(suite_signature()),
        }
    }

    pub(crate) fn sim(&self) -> &SimHandle {
        self.sim.as_ref().unwrap()
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `runbook ARGS` with credentials, the state dir and, for `run`, the
    /// endpoints of the products the playbook (or plan) calls pointed at the
    /// simulator (`--endpoint` refuses a product no step calls). A `resume`
    /// goes where the journal says, unless the args say otherwise.
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
        cmd.args(args);
        if matches!(
            args.first(),
            Some(&"run" | &"resume" | &"runs" | &"show" | &"report")
        ) {
            cmd.arg("--state-dir").arg(self.state());
        }
        self.journal.apply(&mut cmd);
        cmd.env("ALIBABA_CLOUD_ACCESS_KEY_ID", ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
            .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd.args(self.endpoint_flags(args));
        cmd
    }

    /// For `runbook run TARGET ...` without `--sim`: `--endpoint PRODUCT=SIM`
    /// for the products the playbook or plan file TARGET calls.
    pub(crate) fn endpoint_flags(&self, args: &[&str]) -> Vec<String> {
        if args.first() != Some(&"run") || args.contains(&"--sim") {
            return Vec::new();
        }
        let url = self.sim().base_url();
        let called = args
            .get(1)
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let mut flags = Vec::new();
        for product in ["dataworks", "dts"] {
            if called.contains(&format!("{product}."))
                || called.contains(&format!("\"product\": \"{product}\""))
            {
                flags.extend(["--endpoint".to_owned(), format!("{product}={url}")]);
            }
        }
        flags
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `runbook ARGS --state-dir STATE` signed with `key`, with no endpoint
    /// flags: it goes where the args (or the journal, for a resume) say.
    pub(crate) fn bare(&self, args: &[&str], key: (&str, &str)) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
        cmd.args(args)
            .arg("--state-dir")
            .arg(self.state())
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", key.0)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", key.1)
            .stdin(Stdio::null());
        self.journal.apply(&mut cmd);
        cmd.output().unwrap()
    }

    /// The first column of each row of `sql` on this rig's journal (one
    /// text parameter `?1` bound to `arg`), as text.
    pub(crate) fn journal_texts(&self, sql: &str, arg: &str) -> Vec<String> {
        self.journal.texts(&self.state(), sql, arg)
    }

    pub(crate) fn playbook(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// The calls to the products. A run first asks STS who it is
    /// (`GetCallerIdentity`, a read): those are left out, so "nothing was
    /// sent" means no product call.
    pub(crate) fn calls(&self) -> Vec<CallRecord> {
        self.sim()
            .calls()
            .into_iter()
            .filter(|c| c.version.as_deref() != Some(runbook::cloud::sts::VERSION))
            .collect()
    }

    /// Calls of `action` that reached the service, by the value of `key`.
    pub(crate) fn processed(&self, action: &str, key: &str) -> BTreeMap<String, usize> {
        let mut by = BTreeMap::new();
        for c in self.calls() {
            if c.action.as_deref() == Some(action) && c.processed() {
                *by.entry(c.param(key).unwrap_or("").to_owned()).or_default() += 1;
            }
        }
        by
    }

    /// Every node of [`FAN_OUT`] ended undeployed.
    pub(crate) fn assert_all_undeployed(&self) {
        for id in FILE_IDS {
            assert_eq!(
                self.status(ResourceKind::DiNode, id).as_deref(),
                Some("NORUN"),
                "node {id}"
            );
        }
    }

    pub(crate) fn status(&self, kind: ResourceKind, id: &str) -> Option<String> {
        self.sim().resource_status(kind, id)
    }

    pub(crate) fn last_run_id(&self) -> String {
        let out = self.run(&["runs", "--json"]);
        let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
        runs[0]["id"].as_str().unwrap().to_owned()
    }

    pub(crate) fn show(&self, run_id: &str) -> Value {
        let out = self.run(&["show", run_id, "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            // Every end-to-end test runs with the suite's signature: a call
            // signed otherwise means the run did not sign as asked.
            if let Some(want) = self.signature
                && !std::thread::panicking()
            {
                let other: Vec<(u64, SignatureVersion)> = sim
                    .calls()
                    .iter()
                    // STS takes AssumeRoleWithOIDC unsigned, and the metadata
                    // service is plain HTTP: neither carries a signature.
                    .filter(|c| {
                        c.action.as_deref() != Some("AssumeRoleWithOIDC")
                            && c.product.as_deref() != Some("host")
                    })
                    .filter(|c| c.signature != want)
                    .map(|c| (c.seq, c.signature))
                    .collect();
                assert!(other.is_empty(), "calls not signed {want}: {other:?}");
            }
            let _ = self.rt.block_on(sim.shutdown());
        }
    }
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub(crate) fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .to_string_lossy()
        .into_owned()
}

/// Stop, wait until stopped, terminate, wait until gone: the fan-out shape.
pub(crate) const FAN_OUT: &str = r#"
name: fan-out
params:
  project_id: { type: integer, default: 10000 }
  file_ids: { type: array, items: integer, default: [11, 12, 13, 14, 15, 16] }
defaults:
  region: cn-shanghai
  retry: { attempts: 12, backoff: exponential, delay: 20ms, max_delay: 200ms, jitter: true }
concurrency: 4
steps:
  - id: stop
    for_each: "{{params.file_ids}}"
    call: dataworks.StopDISyncInstance
    with: { ProjectId: "{{params.project_id}}", FileId: "{{item}}", TaskType: DI_REALTIME }
  - id: stopped
    needs: [stop]
    for_each: "{{params.file_ids}}"
    wait:
      call: dataworks.GetDISyncInstanceInfo
      with: { ProjectId: "{{params.project_id}}", FileId: "{{item}}", TaskType: DI_REALTIME }
      until: { select: Data.Status, in: [PAUSE] }
      every: 20ms
      timeout: 20s
  - id: terminate
    needs: [stopped]
    for_each: "{{params.file_ids}}"
    call: dataworks.TerminateDISyncInstance
    with: { ProjectId: "{{params.project_id}}", FileId: "{{item}}", TaskType: DI_REALTIME }
  - id: gone
    needs: [terminate]
    for_each: "{{params.file_ids}}"
    wait:
      call: dataworks.GetDISyncInstanceInfo
      with: { ProjectId: "{{params.project_id}}", FileId: "{{item}}", TaskType: DI_REALTIME }
      until: { select: Data.Status, in: [NORUN] }
      every: 20ms
      timeout: 20s
"#;

pub(crate) const FILE_IDS: [&str; 6] = ["11", "12", "13", "14", "15", "16"];

#[test]
fn readme_main_command_completes_against_the_built_in_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args([
            "run",
            &repo("playbooks/dts-di-cutover.yaml"),
            "--params",
            &repo("playbooks/params/dts-di-cutover.yaml"),
        ])
        .args(["--sim", "--yes", "--state-dir"])
        .arg(dir.path())
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(": succeeded"), "{all}");
    for step in [
        "stop-dts-forward",
        "dts-stopped",
        "terminate-di",
        "di-terminated",
        "report",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(step))
            .unwrap_or_else(|| panic!("{step} missing: {all}"));
        assert!(line.contains("succeeded"), "{line}");
    }
}

#[test]
fn fan_out_completes_with_the_right_final_states_and_one_call_per_node() {
    let rig = Rig::new("", Duration::from_millis(50));
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let out = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    rig.assert_all_undeployed();
    let stops = rig.processed("StopDISyncInstance", "FileId");
    let terms = rig.processed("TerminateDISyncInstance", "FileId");
    assert_eq!(stops.len(), FILE_IDS.len());
    assert!(
        stops.values().chain(terms.values()).all(|&n| n == 1),
        "stops {stops:?} terminates {terms:?}"
    );
    // The journal has the whole story.
    let run = rig.show(&rig.last_run_id());
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["approvals"][0]["method"], "--yes");
    let polls = run["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "poll")
        .count();
    assert!(polls >= 2 * FILE_IDS.len(), "waits polled: {polls}");
}

#[test]
fn under_faults_it_completes_and_never_resends_a_mutating_call_that_took_effect() {
    for seed in [7, 8, 9] {
        under_faults(seed);
    }
}

fn under_faults(seed: u64) {
    let rig = Rig::with(
        "throttle=0.3,error=0.1,drop=0.05,applied_drop=0.05",
        Duration::from_millis(30),
        |c| c.seed = seed,
    );
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let out = rig.run(&["run", &pb, "--yes", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    rig.assert_all_undeployed();
    let calls = rig.calls();
    let faults: usize = calls.iter().filter(|c| !c.faults.is_empty()).count();
    assert!(faults > 5, "the faults were injected: {faults}");
    for action in ["StopDISyncInstance", "TerminateDISyncInstance"] {
        let by = rig.processed(action, "FileId");
        assert_eq!(by.len(), FILE_IDS.len(), "{action}: {by:?}");
        assert!(
            by.values().all(|&n| n == 1),
            "{action} reached the service more than once for a node: {by:?}"
        );
    }
    // The events say what happened: failed attempts with codes, polls, the end.
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.iter().any(|e| {
        e["event"] == "attempt_failed"
            && e["code"]
                .as_str()
                .is_some_and(|c| c.starts_with("Throttling"))
    }));
    assert!(events.iter().any(|e| e["event"] == "polled"));
    assert_eq!(events.last().unwrap()["event"], "run_finished");
}

#[test]
fn an_applied_then_dropped_terminate_is_reconciled_not_resent() {
    let rig = Rig::new("applied_drop@TerminateDISyncInstance=1#2", Duration::ZERO);
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let out = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dropped = rig
        .calls()
        .iter()
        .filter(|c| c.outcome == sim::Outcome::AppliedThenDropped)
        .count();
    assert_eq!(dropped, 2);
    let terms = rig.processed("TerminateDISyncInstance", "FileId");
    assert!(terms.values().all(|&n| n == 1), "{terms:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("it took effect, not sending it again"),
        "{stderr}"
    );
}

pub(crate) const DTS_WAIT: &str = r#"
name: dts-wait
defaults: { region: cn-hangzhou }
params:
  job: { type: string, default: job-1 }
steps:
  - id: stop
    call: dts.StopDtsJob
    with: { DtsJobId: "{{params.job}}" }
    retry: 2
  - id: stopped
    needs: [stop]
    wait:
      call: dts.DescribeDtsJobDetail
      with: { DtsJobId: "{{params.job}}" }
      until: { select: Status, in: [Finished] }
      fail_if: { select: Status, in: [Failed] }
      every: 20ms
      timeout: 600ms
"#;

#[test]
fn fail_if_fails_the_run_at_once_with_a_clear_message() {
    let rig = Rig::with("", Duration::from_secs(30), |c| {
        c.fixtures.dts_jobs.push(DtsJobFixture::running("job-1"));
    });
    let pb = rig.playbook("dts.yaml", DTS_WAIT);
    let start = Instant::now();
    let child = rig
        .cmd(&["run", &pb, "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The task fails while the run waits for it to finish.
    while !rig
        .calls()
        .iter()
        .any(|c| c.action.as_deref() == Some("DescribeDtsJobDetail"))
    {
        assert!(start.elapsed() < Duration::from_secs(20), "no poll arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    rig.sim()
        .set_status(ResourceKind::DtsJob, "job-1", "Failed")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("fail_if held: `Status` is \"Failed\""),
        "{}",
        text(&out)
    );
    assert!(stdout.contains("runbook resume"), "{stdout}");
}

#[test]
fn a_wait_that_times_out_fails_the_run_with_the_last_value() {
    let rig = Rig::new("", Duration::from_secs(60));
    let pb = rig.playbook("dts.yaml", DTS_WAIT);
    let out = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("timed out after 600ms waiting for `Status` to be one of [\"Finished\"]; last value: \"Synchronizing\""), "{}", text(&out));
}

#[test]
fn compensation_steps_run_when_a_step_fails() {
    let rig = Rig::with("", Duration::ZERO, |c| {
        // Every terminate is refused as forbidden (a permanent error).
        c.faults = "error@TerminateDISyncInstance=1".parse().unwrap();
    });
    let pb = rig.playbook(
        "comp.yaml",
        r#"
name: compensate
defaults: { region: cn-shanghai }
steps:
  - id: stop
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 1, FileId: 21, TaskType: DI_REALTIME }
  - id: terminate
    needs: [stop]
    call: dataworks.TerminateDISyncInstance
    with: { ProjectId: 1, FileId: 21, TaskType: DI_REALTIME }
    retry: { attempts: 2, delay: 10ms }
    on_failure: { run: [check-after-failure] }
  - id: never
    needs: [terminate]
    call: dataworks.GetDISyncInstanceInfo
    with: { ProjectId: 1, FileId: 21, TaskType: DI_REALTIME }
  - id: check-after-failure
    compensation: true
    call: dataworks.GetDISyncInstanceInfo
    with: { ProjectId: 1, FileId: 21, TaskType: DI_REALTIME }
"#,
    );
    let out = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = |id: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(id))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert!(line("terminate").contains("failed"), "{stdout}");
    assert!(
        line("check-after-failure").contains("succeeded"),
        "{stdout}"
    );
    assert!(!line("never").contains("succeeded"), "{stdout}");
    // The compensation's status call reached the simulator after the failed terminate.
    let calls = rig.calls();
    let last_term = calls
        .iter()
        .rposition(|c| c.action.as_deref() == Some("TerminateDISyncInstance"))
        .unwrap();
    assert!(
        calls[last_term..]
            .iter()
            .any(|c| c.action.as_deref() == Some("GetDISyncInstanceInfo"))
    );
}

/// Kills `runbook run` with SIGKILL once `ready` holds on the call log, then
/// resumes the run until it finishes.
pub(crate) fn kill_and_resume(faults: &str, ready: impl Fn(&[CallRecord]) -> bool) -> Value {
    let rig = Rig::new(faults, Duration::from_millis(40));
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let mut child = rig
        .cmd(&["run", &pb, "--yes", "--output", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(&mut child, "the kill point", || ready(&rig.calls()));
    child.kill().unwrap();
    let _ = child.wait();
    let run_id = rig.last_run_id();
    assert_every_change_received_was_journaled(&rig, &run_id);
    let shown = rig.show(&run_id);
    assert_eq!(
        shown["status"], "interrupted",
        "no process holds the killed run"
    );
    let out = rig.run(&["resume", &run_id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    rig.assert_all_undeployed();
    let terms = rig.processed("TerminateDISyncInstance", "FileId");
    assert_eq!(terms.len(), FILE_IDS.len(), "{terms:?}");
    assert!(
        terms.values().all(|&n| n == 1),
        "an irreversible call reached the service twice: {terms:?}"
    );
    let stops = rig.processed("StopDISyncInstance", "FileId");
    assert!(
        stops.values().all(|&n| n == 1),
        "a stop was sent again after it took effect: {stops:?}"
    );
    let shown = rig.show(&run_id);
    assert_eq!(shown["status"], "succeeded");
    shown
}

/// The write-ahead rule, checked after a kill: every mutating call the
/// service received (applied or not) has its intent in the journal, however
/// the journal grouped its commits. Counted per action and node: a node may
/// have more intents than calls received (killed between the commit and the
/// send), never fewer.
pub(crate) fn assert_every_change_received_was_journaled(rig: &Rig, run_id: &str) {
    let node = |json: &Value| {
        ["query", "body"]
            .iter()
            .find_map(|part| json[part]["FileId"].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let mut journaled: BTreeMap<(String, String), usize> = BTreeMap::new();
    for row in rig.journal_texts(
        "SELECT action || ' ' || request_json FROM attempts WHERE run_id = ?1 AND kind = 'call' AND risk <> 'read'",
        run_id,
    ) {
        let (action, request) = row.split_once(' ').unwrap();
        let request: Value = serde_json::from_str(request).unwrap();
        *journaled
            .entry((action.to_owned(), node(&request)))
            .or_default() += 1;
    }
    let mut received: BTreeMap<(String, String), usize> = BTreeMap::new();
    for c in rig.calls() {
        let action = c.action.clone().unwrap_or_default();
        if action.starts_with("Stop") || action.starts_with("Terminate") {
            let id = c.param("FileId").unwrap_or("").to_owned();
            *received.entry((action, id)).or_default() += 1;
        }
    }
    assert!(!received.is_empty(), "no change reached the service");
    for (call, n) in &received {
        let intents = journaled.get(call).copied().unwrap_or(0);
        assert!(
            intents >= *n,
            "{call:?} reached the service {n} times with {intents} intents journaled"
        );
    }
}

/// Waits until `ready` holds while `child` keeps running: fails if it takes
/// over 30 s or the child ends first (it never reached the point `what`).
pub(crate) fn wait_until(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never reached: {what}"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before: {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub(crate) fn count(calls: &[CallRecord], action: &str) -> usize {
    calls
        .iter()
        .filter(|c| c.action.as_deref() == Some(action) && c.processed())
        .count()
}

/// The mutating calls (stops and terminates) the service received.
fn changes(calls: &[CallRecord]) -> usize {
    calls
        .iter()
        .filter(|c| {
            matches!(
                c.action.as_deref(),
                Some("StopDISyncInstance" | "TerminateDISyncInstance")
            )
        })
        .count()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 6,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Killed after any number of changes reached the service (the
    /// journal's commits are grouped across calls, so a kill lands in the
    /// middle of a batch): every change received was journaled first, and
    /// the resume sends none twice that took effect.
    #[test]
    fn killed_after_any_number_of_changes_every_intent_was_journaled_and_none_repeats(
        k in 1..=2 * FILE_IDS.len()
    ) {
        let _ = kill_and_resume("slow@TerminateDISyncInstance=0.5:60ms", |calls| changes(calls) >= k);
    }
}

#[test]
fn killed_during_the_stops_then_resumed_finishes_without_repeats() {
    let _ = kill_and_resume("slow@StopDISyncInstance=1:150ms", |calls| {
        count(calls, "StopDISyncInstance") >= 2
    });
}

#[test]
fn killed_during_the_wait_then_resumed_finishes_without_repeats() {
    let _ = kill_and_resume("", |calls| count(calls, "GetDISyncInstanceInfo") >= 3);
}

#[test]
fn killed_with_terminates_in_flight_then_resumed_never_terminates_twice() {
    // Terminates take 300 ms to answer, so the kill lands while some are in
    // flight: applied on the service, unanswered on the client.
    let run = kill_and_resume("slow@TerminateDISyncInstance=1:300ms", |calls| {
        calls
            .iter()
            .filter(|c| c.action.as_deref() == Some("TerminateDISyncInstance"))
            .count()
            >= 3
    });
    // The in-flight terminates were settled through the status call on resume.
    let checks = run["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "reconcile")
        .count();
    assert!(
        checks >= 1,
        "resume re-checked the in-flight terminates: {checks}"
    );
}

#[test]
fn approvals_are_required_bound_to_the_plan_and_journaled() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    // No terminal, no --yes: refused before anything is sent.
    let out = rig.run(&["run", &pb]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--yes"),
        "{}",
        text(&out)
    );
    assert!(rig.calls().is_empty());

    // An approve step needs --approve STEP without a terminal (refused
    // before anything is sent: tests/runview.rs); on a terminal, a `no`
    // at the gate fails the run there.
    let gated = rig.playbook("gate.yaml", &gated(31));
    let out = rig.run(&["run", &gated, "--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--approve go-no-go"),
        "{}",
        text(&out)
    );
    let out = on_terminal(&rig, &["run", &gated], "yes\nno");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("step `go-no-go` was not approved"),
        "{}",
        text(&out)
    );
    assert_eq!(count(&rig.calls(), "TerminateDISyncInstance"), 0);
    let out = rig.run(&["run", &gated, "--yes", "--approve", "go-no-go"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Starting over instead of resuming is allowed, but pointed out.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("of this same plan failed; `runbook resume"),
        "{stderr}"
    );
    let run = rig.show(&rig.last_run_id());
    let approvals = run["approvals"].as_array().unwrap();
    assert!(
        approvals
            .iter()
            .any(|a| a["step"] == "go-no-go" && a["method"] == "--approve"),
        "{approvals:?}"
    );
    assert!(approvals.iter().all(|a| a["digest"] == run["digest"]));
}

#[test]
fn a_second_run_of_the_same_plan_is_refused_while_one_is_running() {
    let rig = Rig::new("slow@StopDISyncInstance=1:500ms", Duration::ZERO);
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let mut first = rig
        .cmd(&["run", &pb, "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while count(&rig.calls(), "StopDISyncInstance") == 0 && rig.calls().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(second.status.code(), Some(6), "{}", text(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr)
            .contains("another run of this playbook with these params is in progress")
    );
    assert!(first.wait().unwrap().success());
}

#[test]
fn a_saved_plan_runs_as_reviewed_and_is_refused_once_its_playbook_changed() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let plan = rig.dir.path().join("plan.json");
    let out = rig.run(&["plan", &pb, "-o", plan.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = rig.run(&["run", plan.to_str().unwrap(), "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::write(&pb, FAN_OUT.replace("concurrency: 4", "concurrency: 5")).unwrap();
    let out = rig.run(&["run", plan.to_str().unwrap(), "--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
}

#[test]
fn no_secret_token_or_signature_appears_in_output_logs_plans_or_the_journal() {
    const TOKEN: &str = "CAIS+sts/Token==secret-token-value";
    let log = tempfile::NamedTempFile::new().unwrap();
    let rig = Rig::with(
        "throttle=0.2,applied_drop=0.1",
        Duration::from_millis(20),
        |c| c.log_path = Some(log.path().to_owned()),
    );
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let mut outputs = Vec::new();
    for args in [
        vec!["plan", &pb],
        vec!["plan", &pb, "--format", "json"],
        vec!["run", &pb, "--yes", "--output", "json"],
    ] {
        let out = rig
            .cmd(&args)
            .env("ALIBABA_CLOUD_SECURITY_TOKEN", TOKEN)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        outputs.push(out);
    }
    let run_id = rig.last_run_id();
    let show = rig.run(&["show", &run_id, "--json", "--attempts"]);
    outputs.push(show);
    let mut haystack: Vec<u8> = Vec::new();
    for o in &outputs {
        haystack.extend(&o.stdout);
        haystack.extend(&o.stderr);
    }
    for entry in std::fs::read_dir(rig.state()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            haystack.extend(std::fs::read(path).unwrap());
        }
    }
    haystack.extend(std::fs::read(log.path()).unwrap());
    let hay = String::from_utf8_lossy(&haystack);
    let encoded = |s: &str| runbook::cloud::signer::percent_encode(s);
    for needle in [SECRET, TOKEN, &encoded(TOKEN), ID] {
        assert!(!hay.contains(needle), "found `{needle}`");
    }
    // Recompute every signature that was sent and look for each one.
    let calls = rig.calls();
    assert!(calls.len() > 10);
    let host = rig.sim().addr().to_string();
    let mut replayed = Vec::new();
    for c in &calls {
        assert_eq!(c.signature, suite_signature(), "call {}", c.seq);
        let sig = match c.signature {
            SignatureVersion::V1 => {
                let mut params = c.params.clone();
                params.remove("Signature");
                params.insert("AccessKeyId".into(), ID.into());
                params.insert("SecurityToken".into(), TOKEN.into());
                runbook::cloud::signer::sign(&c.method, &params, SECRET)
            }
            SignatureVersion::V3 => {
                let wire = V3Wire::of(c, &host, TOKEN);
                let sig = wire.signature(SECRET);
                replayed.push(wire);
                sig
            }
        };
        assert!(
            !hay.contains(&sig) && !hay.contains(&encoded(&sig)),
            "signature of call {} found",
            c.seq
        );
    }
    // V3: the requests rebuilt from the call log are the ones sent (a
    // fresh simulator accepts each signature), so the signatures looked
    // for above are the very ones that went on the wire.
    if !replayed.is_empty() {
        let fresh = rig
            .rt
            .block_on(sim::spawn(SimConfig {
                credentials: vec![(ID.to_owned(), SECRET.to_owned())],
                auto_create: true,
                ..SimConfig::default()
            }))
            .unwrap();
        for wire in &replayed {
            let status = rig.rt.block_on(wire.send(&fresh.base_url(), SECRET));
            let call = fresh.calls().pop().unwrap();
            assert!(
                call.processed(),
                "rebuilt request refused ({status}): {:?} {:?}",
                call.code,
                call.message
            );
        }
        let _ = rig.rt.block_on(fresh.shutdown());
    }
}

/// A V3 request as the client sent it, rebuilt from the simulator's call
/// log (its `x-acs-*` headers, the API parameters, where the action
/// catalogue puts each) and the credentials.
struct V3Wire {
    method: String,
    query: BTreeMap<String, String>,
    headers: Vec<(String, String)>,
    body: String,
}

impl V3Wire {
    fn of(c: &CallRecord, host: &str, token: &str) -> V3Wire {
        use runbook::cloud::actions::{self, ParamLocation};
        use runbook::cloud::signer::{self, v3};
        let spec = actions::lookup_rpc(c.product.as_deref().unwrap(), c.action.as_deref().unwrap())
            .expect("a typed action");
        let (mut query, mut body) = (BTreeMap::new(), BTreeMap::new());
        for (k, v) in &c.params {
            match spec.param(k).map(|p| p.location) {
                Some(ParamLocation::Body) => body.insert(k.clone(), v.clone()),
                _ => query.insert(k.clone(), v.clone()),
            };
        }
        let body = signer::canonicalized_query(&body);
        assert_eq!(
            c.headers[v3::CONTENT_SHA256],
            v3::hashed_payload(body.as_bytes()),
            "call {}: the body is rebuilt as sent",
            c.seq
        );
        let mut headers: Vec<(String, String)> = vec![
            ("accept".into(), "application/json".into()),
            ("host".into(), host.to_owned()),
        ];
        if !body.is_empty() {
            headers.push((
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
        }
        for (k, v) in &c.headers {
            let v = if k == v3::SECURITY_TOKEN { token } else { v };
            headers.push((k.clone(), v.to_owned()));
        }
        V3Wire {
            method: c.method.clone(),
            query,
            headers,
            body,
        }
    }

    fn signature(&self, secret: &str) -> String {
        use runbook::cloud::signer::v3;
        let pairs: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        v3::sign(
            &v3::Request {
                method: &self.method,
                path: "/",
                query: &self.query,
                headers: &pairs,
                body: self.body.as_bytes(),
            },
            secret,
        )
        .signature
    }

    /// Sends it to `base` (its `host` header kept), signed with `secret`.
    async fn send(&self, base: &str, secret: &str) -> u16 {
        use runbook::cloud::signer::{self, v3};
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        let auth = v3::authorization(ID, &sorted.join(";"), &self.signature(secret));
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(format!(
                "{base}/?{}",
                signer::canonicalized_query(&self.query)
            ))
            .header("authorization", auth)
            .body(self.body.clone());
        for (k, v) in &self.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        builder.send().await.unwrap().status().as_u16()
    }
}

#[test]
fn every_example_playbook_completes_against_the_simulator_with_the_right_final_states() {
    // Immediate transitions: the examples poll every few seconds, as they would in the cloud.
    let rig = Rig::with("", Duration::ZERO, |c| {
        c.fixtures
            .dts_jobs
            .push(DtsJobFixture::running("l3m1213ye7l"));
    });
    let run_example = |name: &str, extra: &[&str]| {
        let pb = repo(&format!("playbooks/{name}.yaml"));
        let params = repo(&format!("playbooks/params/{name}.yaml"));
        let mut args = vec!["run", pb.as_str(), "--params", params.as_str(), "--yes"];
        args.extend_from_slice(extra);
        let out = rig.run(&args);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
    };
    let examples = super::validate::yaml_stems("playbooks");
    assert_eq!(
        examples,
        [
            "di-realtime-maintenance-stop",
            "di-status-report",
            "dts-di-cutover",
            "stop-di-job",
            "weekly-di-restart"
        ]
    );

    // A read-only report first: it changes nothing.
    run_example("di-status-report", &[]);
    assert!(
        rig.calls().iter().all(|c| !c.changed),
        "the report changed something"
    );

    run_example("dts-di-cutover", &[]);
    assert_eq!(
        rig.status(ResourceKind::DtsJob, "l3m1213ye7l").as_deref(),
        Some("Finished")
    );
    for id in ["100101", "100102", "100103"] {
        assert_eq!(
            rig.status(ResourceKind::DiNode, id).as_deref(),
            Some("NORUN"),
            "node {id}"
        );
    }

    run_example("di-realtime-maintenance-stop", &["--approve", "go-ahead"]);
    for id in ["200101", "200102", "200103", "200104", "200105"] {
        assert_eq!(
            rig.status(ResourceKind::DiNode, id).as_deref(),
            Some("PAUSE"),
            "node {id}"
        );
    }

    // The scheduled example keeps to its change window: inside it, it
    // restarts the nodes the maintenance paused; outside, it is refused
    // before anything is sent (exit 6) and says when the window opens.
    let name = "weekly-di-restart";
    let plan = runbook::plan::load_and_build(
        std::path::Path::new(&repo(&format!("playbooks/{name}.yaml"))),
        &[],
        Some(std::path::Path::new(&repo(&format!(
            "playbooks/params/{name}.yaml"
        )))),
    )
    .unwrap();
    let window = runbook::run::RunWindow::new(&plan, runbook::window::Bounds::default());
    let sent = rig.calls().len();
    if window.admit(jiff::Timestamp::now()).is_ok() {
        run_example(name, &[]);
        for id in ["200101", "200102", "200103"] {
            assert_eq!(
                rig.status(ResourceKind::DiNode, id).as_deref(),
                Some("RUN"),
                "node {id}"
            );
        }
    } else {
        let pb = repo(&format!("playbooks/{name}.yaml"));
        let params = repo(&format!("playbooks/params/{name}.yaml"));
        let out = rig.run(&["run", pb.as_str(), "--params", params.as_str(), "--yes"]);
        assert_eq!(out.status.code(), Some(6), "{}", text(&out));
        assert!(
            text(&out).contains(
                "outside the change window (Sat 02:00-05:00 (Asia/Shanghai); blackout 2026-12-31)"
            ),
            "{}",
            text(&out)
        );
        assert!(text(&out).contains("it next opens Sat "), "{}", text(&out));
        assert_eq!(rig.calls().len(), sent, "nothing was sent");
    }

    run_example("stop-di-job", &[]);
    assert_eq!(
        rig.status(ResourceKind::DiJob, "11668").as_deref(),
        Some("Stopped")
    );
    // Run again: the job is already stopped, so `when` skips the stop.
    let before = count(&rig.calls(), "StopDIJob");
    run_example("stop-di-job", &[]);
    assert_eq!(
        count(&rig.calls(), "StopDIJob"),
        before,
        "an already stopped job is not stopped again"
    );
}

#[test]
fn plan_refresh_reads_current_states_and_sends_nothing_that_mutates() {
    // Nodes 11 and 12 were undeployed already.
    let rig = Rig::with("", Duration::ZERO, |c| {
        for file_id in [11, 12] {
            c.fixtures.di_nodes.push(DiNodeFixture {
                status: "NORUN".into(),
                ..DiNodeFixture::running(10000, file_id)
            });
        }
    });
    let pb = rig.playbook("fan.yaml", FAN_OUT);
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
    assert!(stdout.contains("terminate[11]  dataworks.TerminateDISyncInstance  Data.Status = \"NORUN\"  -> no-op: already done"), "{stdout}");
    assert!(stdout.contains("terminate[13]  dataworks.TerminateDISyncInstance  Data.Status = \"RUN\"  -> would change it"), "{stdout}");
    let calls = rig.calls();
    assert_eq!(
        calls.len(),
        12,
        "one status read per mutating call: 6 stops + 6 terminates"
    );
    assert!(
        calls
            .iter()
            .all(|c| c.action.as_deref() == Some("GetDISyncInstanceInfo") && !c.changed)
    );
}

#[test]
fn ctrl_c_cancels_gracefully_and_the_run_resumes_to_the_end() {
    let rig = Rig::new("slow@StopDISyncInstance=1:300ms", Duration::from_millis(20));
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let child = rig
        .cmd(&["run", &pb, "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while count(&rig.calls(), "StopDISyncInstance") < 1 {
        assert!(start.elapsed() < Duration::from_secs(20), "no stop arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cancelling"),
        "{}",
        text(&out)
    );
    assert_eq!(
        count(&rig.calls(), "TerminateDISyncInstance"),
        0,
        "nothing new started after Ctrl-C"
    );
    let run_id = rig.last_run_id();
    assert_eq!(rig.show(&run_id)["status"], "cancelled");
    let out = rig.run(&["resume", &run_id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stops = rig.processed("StopDISyncInstance", "FileId");
    assert!(stops.values().all(|&n| n == 1), "{stops:?}");
    rig.assert_all_undeployed();
}

#[test]
fn an_applied_terminate_seen_mid_transition_is_waited_out_not_resent() {
    // Running nodes are terminated directly (as in the cutover), and the
    // transition takes 300 ms: the status check after the dropped answer sees
    // KILLING, which a stop passes through too, and must wait for NORUN.
    let rig = Rig::new(
        "applied_drop@TerminateDISyncInstance=1#2",
        Duration::from_millis(300),
    );
    let pb = rig.playbook(
        "terminate.yaml",
        r#"
name: terminate-running
defaults:
  region: cn-shanghai
  retry: { attempts: 5, delay: 10ms, max_delay: 50ms }
steps:
  - id: terminate
    for_each: [51, 52, 53]
    call: dataworks.TerminateDISyncInstance
    with: { ProjectId: 1, FileId: "{{item}}", TaskType: DI_REALTIME }
  - id: gone
    needs: [terminate]
    for_each: [51, 52, 53]
    wait:
      call: dataworks.GetDISyncInstanceInfo
      with: { ProjectId: 1, FileId: "{{item}}", TaskType: DI_REALTIME }
      until: { select: Data.Status, in: [NORUN] }
      every: 50ms
      timeout: 10s
"#,
    );
    let out = rig.run(&["run", &pb, "--yes", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let terms = rig.processed("TerminateDISyncInstance", "FileId");
    assert_eq!(terms.len(), 3, "{terms:?}");
    assert!(
        terms.values().all(|&n| n == 1),
        "an applied terminate was sent again: {terms:?}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reconciled: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "reconciled")
        .collect();
    assert_eq!(reconciled.len(), 2, "{stdout}");
    assert!(
        reconciled
            .iter()
            .all(|e| e["observed"] == "NORUN" && e["took_effect"] == true),
        "{reconciled:?}"
    );
    // The checks did see the node in transition first.
    let killing = rig
        .calls()
        .iter()
        .filter(|c| c.action.as_deref() == Some("GetDISyncInstanceInfo"))
        .count();
    assert!(
        killing > 2,
        "the status checks polled through KILLING: {killing}"
    );
}

#[test]
fn resume_runs_the_dependents_of_a_step_that_failed_with_on_failure_continue() {
    let rig = Rig::new("", Duration::from_millis(700));
    let pb = rig.playbook(
        "continue.yaml",
        r#"
name: continue
defaults: { region: cn-hangzhou }
steps:
  - id: stop
    call: dts.StopDtsJob
    with: { DtsJobId: job-9 }
  - id: stopped
    needs: [stop]
    wait:
      call: dts.DescribeDtsJobDetail
      with: { DtsJobId: job-9 }
      until: { select: Status, in: [Finished] }
      every: 50ms
      timeout: 200ms
    on_failure: continue
  - id: after
    needs: [stopped]
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 1, FileId: 41, TaskType: DI_REALTIME }
"#,
    );
    let out = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(count(&rig.calls(), "StopDISyncInstance"), 0);
    let run_id = rig.last_run_id();
    let steps = &rig.show(&run_id)["steps"];
    let after = steps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "after")
        .unwrap();
    assert_eq!(after["status"], "blocked", "{steps}");
    std::thread::sleep(Duration::from_millis(700));
    let out = rig.run(&["resume", &run_id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        count(&rig.calls(), "StopDISyncInstance"),
        1,
        "the blocked step ran on resume"
    );
    assert_eq!(
        count(&rig.calls(), "StopDtsJob"),
        1,
        "the stop that succeeded was not repeated"
    );
    let node = rig.status(ResourceKind::DiNode, "41");
    assert!(
        matches!(node.as_deref(), Some("KILLING" | "PAUSE")),
        "the node was stopped: {node:?}"
    );
}

#[test]
fn a_rehearsal_resumes_only_against_a_simulator_and_a_new_target_needs_a_new_approval() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("dts.yaml", DTS_WAIT);
    // A rehearsal that fails: the built-in simulator's DTS stop takes 2 s,
    // the wait gives up after 600 ms.
    let out = rig.bare(&["run", &pb, "--yes", "--sim"], (ID, SECRET));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run_id = rig.last_run_id();
    // The task the rehearsal stopped, as a running `runbook sim` would hold it.
    rig.sim()
        .set_status(ResourceKind::DtsJob, "job-1", "Finished")
        .unwrap();
    let url = rig.sim().base_url();
    // Half of it pointed at the cloud: refused before anything is sent.
    let resume = |extra: &[&str]| {
        rig.bare(
            &[&["resume", run_id.as_str()], extra].concat(),
            (ID, SECRET),
        )
    };
    let out = resume(&["--endpoint", "dts=https://dts.cn-hangzhou.aliyuncs.com"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("it may go on only against a simulator, but dts would go to the cloud"),
        "{}",
        text(&out)
    );
    // A running simulator is fine, but it is another target: approve anew.
    let local = format!("dts={url}");
    let out = resume(&["--endpoint", &local]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs a new approval"),
        "{}",
        text(&out)
    );
    assert!(
        rig.calls().is_empty(),
        "nothing was sent before the approval"
    );
    let out = resume(&["--endpoint", &local, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        count(&rig.calls(), "StopDtsJob"),
        0,
        "the stop done in the rehearsal is not repeated"
    );
    assert!(count(&rig.calls(), "DescribeDtsJobDetail") >= 1);
}

/// A playbook whose terminate of node `file_id` waits for an `approve` step.
pub(crate) fn gated(file_id: u32) -> String {
    format!(
        r#"
name: gated
defaults: {{ region: cn-shanghai }}
steps:
  - id: go-no-go
    approve: "Terminate node {file_id}?"
  - id: terminate
    needs: [go-no-go]
    call: dataworks.TerminateDISyncInstance
    with: {{ ProjectId: 1, FileId: {file_id}, TaskType: DI_REALTIME }}
"#
    )
}

/// Runs `runbook ARGS` on a pseudo-terminal (util-linux `script`), typing `answer`.
pub(crate) fn on_terminal(rig: &Rig, args: &[&str], answer: &str) -> Output {
    use std::io::Write as _;
    let mut line = vec![env!("CARGO_BIN_EXE_runbook").to_owned()];
    line.extend(args.iter().map(|a| (*a).to_owned()));
    line.extend([
        "--state-dir".to_owned(),
        rig.state().to_string_lossy().into_owned(),
    ]);
    line.extend(rig.endpoint_flags(args));
    let mut script = Command::new("script");
    rig.journal.apply(&mut script);
    let mut child = script
        .args(["-qec", &line.join(" "), "/dev/null"])
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{answer}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn on_a_terminal_the_plan_is_shown_and_approved_by_typing_yes() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let out = on_terminal(&rig, &["run", &pb], "no");
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        screen.contains("[IRREVERSIBLE] terminate x6  dataworks.TerminateDISyncInstance"),
        "{screen}"
    );
    assert!(
        screen.contains("not approved; nothing was sent"),
        "{screen}"
    );
    assert!(rig.calls().is_empty());
    let out = on_terminal(&rig, &["run", &pb], "yes");
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        screen.contains("run") && screen.contains("succeeded"),
        "{screen}"
    );
    rig.assert_all_undeployed();
    let run = rig.show(&rig.last_run_id());
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["approvals"][0]["method"], "terminal", "{run}");
}

#[test]
fn on_a_terminal_an_approve_step_asks_its_own_question() {
    let rig = Rig::new("", Duration::ZERO);
    let gated = rig.playbook("gate.yaml", &gated(61));
    let out = on_terminal(&rig, &["run", &gated], "yes\nyes");
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        screen.contains("approve step `go-no-go`: Terminate node 61?"),
        "{screen}"
    );
    let run = rig.show(&rig.last_run_id());
    assert_eq!(run["status"], "succeeded", "{screen}");
    let methods: Vec<_> = run["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["step"].clone(), a["method"].clone()))
        .collect();
    assert_eq!(
        methods,
        [
            (Value::Null, "terminal".into()),
            ("go-no-go".into(), "terminal".into())
        ]
    );
    assert_eq!(
        rig.status(ResourceKind::DiNode, "61").as_deref(),
        Some("NORUN")
    );
}

#[test]
fn resume_after_a_compensation_redoes_the_step_and_its_generic_undo() {
    // Node 71 exists in another workspace, so stopping it fails for good.
    let rig = Rig::with("", Duration::ZERO, |c| {
        c.auto_create = false;
        c.fixtures.di_nodes.push(DiNodeFixture::running(1, 70));
        c.fixtures.di_nodes.push(DiNodeFixture::running(2, 71));
    });
    let pb = rig.playbook(
        "undo.yaml",
        r#"
name: undo
defaults: { region: cn-shanghai, retry: { attempts: 2, delay: 10ms } }
steps:
  - id: stop-nodes
    for_each: [70, 71]
    for_each_concurrency: 1
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 1, FileId: "{{item}}", TaskType: DI_REALTIME }
    on_failure: { run: [restart-nodes] }
  - id: restart-nodes
    compensation: true
    for_each: [70]
    call: api
    with: { product: dataworks, version: "2020-05-18", action: StartDISyncInstance, risk: mutating,
            params: { ProjectId: 1, FileId: "{{item}}", TaskType: DI_REALTIME } }
"#,
    );
    let out = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let started = |rig: &Rig| count(&rig.calls(), "StartDISyncInstance");
    assert_eq!(started(&rig), 1, "the compensation restarted node 70");
    let out = rig.run(&["resume", &rig.last_run_id()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // The resume stopped node 70 again (the compensation had undone it) and,
    // when node 71 failed again, restarted it again: not refused as "may
    // have been applied" because of the first attempt's answers.
    assert_eq!(
        count(&rig.calls(), "StopDISyncInstance") - 2,
        2,
        "both items were tried again"
    );
    assert_eq!(started(&rig), 2, "{}", text(&out));
    let node = rig.status(ResourceKind::DiNode, "70");
    assert!(
        matches!(node.as_deref(), Some("WAIT" | "RUN")),
        "node 70 is running again: {node:?}"
    );
}

#[test]
fn a_refused_resume_to_another_target_leaves_the_run_on_its_approved_target() {
    let rig = Rig::new("", Duration::from_millis(700));
    let pb = rig.playbook("dts.yaml", DTS_WAIT);
    let out = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run_id = rig.last_run_id();
    let resume = |extra: &[&str]| {
        rig.bare(
            &[&["resume", run_id.as_str()], extra].concat(),
            (ID, SECRET),
        )
    };
    let out = resume(&["--endpoint", "dts=http://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(700));
    // No flags: the journaled, approved target (this simulator), not the refused one.
    let out = resume(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(count(&rig.calls(), "DescribeDtsJobDetail") >= 2);
}

#[test]
fn a_rehearsal_stays_a_rehearsal_across_resumes_and_reaches_no_cloud_endpoint() {
    let rig = Rig::new("", Duration::from_secs(60));
    let pb = rig.playbook("dts.yaml", DTS_WAIT);
    let runbook = |args: &[&str]| rig.bare(args, (ID, SECRET));
    let out = runbook(&["run", &pb, "--yes", "--sim"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run_id = rig.last_run_id();
    // First hop: to a running simulator (the task never finishes there).
    let local = format!("dts={}", rig.sim().base_url());
    let out = runbook(&["resume", &run_id, "--endpoint", &local, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // Second hop: still a rehearsal, so the cloud is refused.
    let out = runbook(&[
        "resume",
        &run_id,
        "--endpoint",
        "dts=https://dts.cn-hangzhou.aliyuncs.com",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rehearsal"),
        "{}",
        text(&out)
    );
}

#[test]
fn under_sim_a_generic_call_to_another_product_reaches_the_simulator_not_the_cloud() {
    let dir = tempfile::tempdir().unwrap();
    let pb = dir.path().join("ecs.yaml");
    std::fs::write(
        &pb,
        r#"
name: ecs
defaults: { region: cn-beijing, retry: 1 }
steps:
  - id: stop-ecs
    call: api
    with: { product: ecs, version: "2014-05-26", action: StopInstance, params: { InstanceId: i-123 } }
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args([
            "run",
            pb.to_str().unwrap(),
            "--sim",
            "--yes",
            "--output",
            "json",
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("\"code\":\"InvalidAction.NotFound\""),
        "{}",
        text(&out)
    );
    assert!(!stdout.contains("aliyuncs.com"), "{}", text(&out));
}

#[test]
fn a_real_run_cannot_be_finished_in_the_simulator_and_another_account_needs_a_new_approval() {
    // The stop takes effect after 2 s: well past the wait's 600 ms timeout,
    // even on a loaded machine, so the first run fails at the wait.
    let rig = Rig::with("", Duration::from_secs(2), |c| {
        c.fixtures.identities.users.push(runbook::sim::UserFixture {
            access_key_id: "LTAIotheraccount".to_owned(),
            access_key_secret: "other-secret".to_owned(),
            arn: "acs:ram::4444444444444444:user/other".to_owned(),
        });
    });
    let pb = rig.playbook("dts.yaml", DTS_WAIT);
    let out = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run_id = rig.last_run_id();
    let resume = |id: &str, secret: &str, extra: &[&str]| {
        rig.bare(
            &[&["resume", run_id.as_str()], extra].concat(),
            (id, secret),
        )
    };
    let out = resume(ID, SECRET, &["--sim", "--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a real run"),
        "{}",
        text(&out)
    );
    std::thread::sleep(Duration::from_secs(2));
    let polls = count(&rig.calls(), "DescribeDtsJobDetail");
    let out = resume("LTAIotheraccount", "other-secret", &[]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "another account: {}",
        text(&out)
    );
    assert_eq!(
        count(&rig.calls(), "DescribeDtsJobDetail"),
        polls,
        "nothing sent before the approval"
    );
    let out = resume("LTAIotheraccount", "other-secret", &["--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// `--signature` picks how a run signs, whatever `RUNBOOK_SIGNATURE` says;
/// the choice is journaled with the run's plan, so `resume` signs the same
/// way (the environment does not change it) and refuses another signature.
#[test]
fn a_run_signs_as_asked_and_resume_keeps_the_runs_signature() {
    for (asked, other) in [
        (SignatureVersion::V3, SignatureVersion::V1),
        (SignatureVersion::V1, SignatureVersion::V3),
    ] {
        // The first terminate is refused (403, permanent): the run fails.
        let mut rig = Rig::new("deny@TerminateDISyncInstance=1#1", Duration::ZERO);
        rig.signature = Some(asked);
        let pb = rig.playbook("fan.yaml", FAN_OUT);
        let out = rig
            .cmd(&["run", &pb, "--yes", "--signature", asked.as_str()])
            .env("RUNBOOK_SIGNATURE", other.as_str())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let sent = rig.calls().len();
        assert!(sent > 6);
        let id = rig.last_run_id();
        assert_eq!(rig.show(&id)["status"], "failed");

        let out = rig.run(&["resume", &id, "--signature", other.as_str()]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "run {id} signs with {asked}, which is part of its plan"
            )),
            "{err}"
        );
        assert_eq!(rig.calls().len(), sent, "the refused resume sent nothing");

        let out = rig
            .cmd(&["resume", &id])
            .env("RUNBOOK_SIGNATURE", other.as_str())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let calls = rig.calls();
        assert!(calls.len() > sent, "the resume sent the rest");
        assert!(
            calls.iter().all(|c| c.signature == asked),
            "every call signed {asked}"
        );
        rig.assert_all_undeployed();
    }
}
