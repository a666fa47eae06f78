//! Locks on resources, across "hosts" (processes with their own state dir,
//! HOME and `RUNBOOK_HOST`) sharing one journal and one simulator: two runs
//! of different playbooks that would change the same resource do not
//! overlap; a dead holder's locks go when its lease runs out; a parked run
//! keeps them; `runbook abandon` frees them. On both journal backends.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::Value;

use crate::journal_backend::TestJournal;
use crate::run::{ID, Rig, SECRET, text, wait_until};

/// Stops a DTS job, then holds it (sleeps) until killed or its window closes.
const HOLD: &str = r#"
name: hold-dts
params: { job: { type: string } }
defaults: { region: cn-hangzhou }
steps:
  - id: stop
    call: dts.StopDtsJob
    with: { DtsJobId: "{{params.job}}" }
  - id: hold
    needs: [stop]
    sleep: 1h
"#;

/// Another playbook that stops DTS jobs (one per item).
const STOP_JOBS: &str = r#"
name: stop-jobs
params: { jobs: { type: array, items: string } }
defaults: { region: cn-hangzhou }
steps:
  - id: stop
    for_each: "{{params.jobs}}"
    call: dts.StopDtsJob
    with: { DtsJobId: "{{item}}" }
"#;

/// Stops a DTS job it learns from a status read: known only at run time.
const FOUND_AT_RUN_TIME: &str = r#"
name: stop-found
params: { job: { type: string } }
defaults: { region: cn-hangzhou }
steps:
  - id: find
    call: dts.DescribeDtsJobDetail
    with: { DtsJobId: "{{params.job}}" }
  - id: stop
    needs: [find]
    call: dts.StopDtsJob
    with: { DtsJobId: "{{steps.find.output.DtsJobId}}" }
"#;

/// `runbook ARGS` on host `host` of `rig`: its own state dir, HOME, host
/// name and user (`op-HOST`), the rig's journal and simulator.
fn on(rig: &Rig, host: &str, args: &[&str]) -> Command {
    let dir = rig.dir.path().join(host);
    std::fs::create_dir_all(dir.join("home")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.args(args);
    if args.first() != Some(&"plan") {
        cmd.arg("--state-dir").arg(dir.join("state"));
    }
    cmd.env("HOME", dir.join("home"))
        .env_remove("XDG_STATE_HOME")
        .env("RUNBOOK_HOST", host)
        .env("USER", format!("op-{host}"))
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
        .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    match &rig.journal {
        // One database file all hosts open.
        TestJournal::Sqlite => {
            cmd.env(
                "RUNBOOK_JOURNAL",
                format!("sqlite:{}", rig.state().join("journal.db").display()),
            );
        }
        pg => pg.apply(&mut cmd),
    }
    cmd.args(rig.endpoint_flags(args));
    cmd
}

fn out(rig: &Rig, host: &str, args: &[&str]) -> Output {
    on(rig, host, args).output().unwrap()
}

fn stops(rig: &Rig, job: &str) -> usize {
    rig.processed("StopDtsJob", "DtsJobId")
        .get(job)
        .copied()
        .unwrap_or(0)
}

/// Starts `hold-dts` on `host` for `job` and waits until its stop is done.
fn hold(rig: &Rig, host: &str, job: &str, extra: &[&str]) -> Child {
    let pb = rig.playbook("hold.yaml", HOLD);
    let param = format!("job={job}");
    let mut args = vec!["run", &pb, "-p", &param, "--yes"];
    args.extend_from_slice(extra);
    let before = stops(rig, job);
    let mut child = on(rig, host, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(&mut child, "the holder's stop", || stops(rig, job) > before);
    child
}

fn runs(rig: &Rig, host: &str) -> Value {
    let o = out(rig, host, &["runs", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The id of the newest run of playbook `name`.
fn run_of(rig: &Rig, name: &str) -> String {
    runs(rig, "host-b")
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no run of {name}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn status_of(rig: &Rig, run_id: &str) -> Value {
    runs(rig, "host-b")
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == run_id)
        .unwrap()["status"]
        .clone()
}

/// Waits (up to 30 s) until `ready` holds.
fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop_jobs(rig: &Rig, host: &str, jobs: &[&str]) -> Output {
    let pb = rig.playbook("stop-jobs.yaml", STOP_JOBS);
    let param = format!("jobs={}", serde_json::to_string(jobs).unwrap());
    out(rig, host, &["run", &pb, "-p", &param, "--yes"])
}

/// While host A's run holds DTS job `dts-shared`, runs of another playbook
/// on host B are refused (exit 6, naming A's run, operator and host) when
/// their jobs include it, and send nothing; with disjoint jobs they run at
/// once (generated job sets). Once A is killed and its lease has run out,
/// the job is free.
#[test]
fn a_resource_held_by_a_live_run_on_another_host_refuses_other_runs_until_its_lease_runs_out() {
    let rig = Rig::new("", Duration::ZERO);
    let mut a = hold(&rig, "host-a", "dts-shared", &["--lease", "2s"]);
    let holder = run_of(&rig, "hold-dts");
    let jobs: Vec<&'static str> = vec!["dts-shared", "dts-x", "dts-y", "dts-z"];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 6,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let refused = std::cell::Cell::new(0);
    runner
        .run(&proptest::sample::subsequence(jobs, 1..=3), |set| {
            let before = rig.calls().len();
            let o = stop_jobs(&rig, "host-b", &set);
            if set.contains(&"dts-shared") {
                refused.set(refused.get() + 1);
                prop_assert_eq!(o.status.code(), Some(6), "{}", text(&o));
                let err = String::from_utf8_lossy(&o.stderr);
                for part in [
                    "dts job DtsJobId=dts-shared in cn-hangzhou",
                    &format!("is locked by run {holder}"),
                    "playbook hold-dts",
                    "operator op-host-a@",
                    "host host-a",
                    "this run sent nothing",
                    "runbook abandon",
                ] {
                    prop_assert!(err.contains(part), "{}: {}", part, text(&o));
                }
                // Not a single product call, not even a read.
                prop_assert_eq!(rig.calls().len(), before);
            } else {
                prop_assert_eq!(o.status.code(), Some(0), "{}", text(&o));
                for job in &set {
                    prop_assert!(stops(&rig, job) >= 1, "{}", job);
                }
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(stops(&rig, "dts-shared"), 1, "only the holder stopped it");
    // Each refused run ended before it started.
    let failed = runs(&rig, "host-b")
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == "stop-jobs" && r["status"] == "failed")
        .count();
    assert_eq!(failed, refused.get());
    assert_eq!(status_of(&rig, &holder), "running");
    // A live holder cannot be abandoned: cancel it instead.
    let o = out(&rig, "host-b", &["abandon", &holder, "--reason", "x"]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("runbook cancel"),
        "{}",
        text(&o)
    );
    a.kill().unwrap();
    let _ = a.wait();
    eventually("the killed holder is interrupted", || {
        status_of(&rig, &holder) == "interrupted"
    });
    let shown = out(&rig, "host-b", &["show", &holder]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains(
            "locks (lapsed with its lease; a resume takes them again):\n  dts job DtsJobId=dts-shared"
        ),
        "{}",
        text(&shown)
    );
    // Another host's run takes the job: the dead run's resume is refused,
    // and leaves it interrupted (not alive for another lease).
    let mut c = hold(&rig, "host-c", "dts-shared", &["--lease", "2s"]);
    let taker = run_of(&rig, "hold-dts");
    let o = out(&rig, "host-b", &["resume", &holder, "--yes"]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("is locked by run {taker}")),
        "{}",
        text(&o)
    );
    // Seen from a host with no plan lock of it: by its lease.
    let elsewhere = runs(&rig, "host-d");
    let row = elsewhere
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == holder)
        .unwrap();
    assert_eq!(row["status"], "interrupted", "{row}");
    c.kill().unwrap();
    let _ = c.wait();
    eventually("the second holder is interrupted", || {
        status_of(&rig, &taker) == "interrupted"
    });
    let o = stop_jobs(&rig, "host-b", &["dts-shared"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(stops(&rig, "dts-shared"), 3);
    // The run that took the job over has ended: the dead run's resume takes
    // its locks again and goes on.
    let o = out(
        &rig,
        "host-b",
        &[
            "resume",
            &holder,
            "--yes",
            "--lease",
            "2s",
            "--run-timeout",
            "1s",
        ],
    );
    assert_ne!(o.status.code(), Some(6), "{}", text(&o));
}

/// A run parked by its change window keeps its locks with no process, past
/// its lease; `runbook abandon` (from another host, with a reason) ends it
/// `cancelled`, releases them, journals who, when and why, and `runs`,
/// `show` say so; then the job is free. A resume of a run whose resource
/// another live run holds now is refused (exit 6).
#[test]
fn a_parked_run_keeps_its_locks_until_abandoned_and_a_resume_retakes_them() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("hold.yaml", HOLD);
    let close = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(3))
        .unwrap()
        .to_string();
    let o = out(
        &rig,
        "host-a",
        &[
            "run",
            &pb,
            "-p",
            "job=dts-p",
            "--yes",
            "--lease",
            "1s",
            "--not-after",
            &close,
        ],
    );
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let parked = run_of(&rig, "hold-dts");
    assert_eq!(status_of(&rig, &parked), "window_closed");
    // Well past its lease, the parked run still holds the job.
    std::thread::sleep(Duration::from_millis(1_500));
    let o = stop_jobs(&rig, "host-b", &["dts-p"]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("is locked by run {parked}")));
    let shown = out(&rig, "host-b", &["show", &parked]);
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.contains("locks:\n  dts job DtsJobId=dts-p in cn-hangzhou"),
        "{shown}"
    );
    // Abandon says why, or is refused.
    let o = out(&rig, "host-b", &["abandon", &parked, "--reason", "  "]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = out(
        &rig,
        "host-b",
        &["abandon", &parked, "--reason", "window missed; rescheduled"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains(&format!("abandoned run {parked} (it was window_closed)"))
            && said.contains("released 1 resource lock(s)")
            && said.contains("dts job DtsJobId=dts-p in cn-hangzhou"),
        "{said}"
    );
    let o = out(&rig, "host-a", &["show", &parked, "--json"]);
    let shown: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shown["status"], "cancelled");
    assert!(
        shown["abandoned"]["by"]
            .as_str()
            .unwrap()
            .starts_with("op-host-b@"),
        "{shown}"
    );
    assert_eq!(shown["abandoned"]["host"], "host-b");
    assert_eq!(shown["abandoned"]["reason"], "window missed; rescheduled");
    assert!(shown["abandoned"]["at"].is_string());
    assert!(shown.get("locks").is_none(), "{shown}");
    let o = out(&rig, "host-a", &["report", &parked, "--format", "json"]);
    let report: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(
        report["run"]["abandoned"]["reason"],
        "window missed; rescheduled"
    );
    assert_eq!(report["run"]["abandoned"]["host"], "host-b");
    let o = out(&rig, "host-a", &["report", &parked, "--format", "markdown"]);
    let md = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        md.contains("| Abandoned | by `op-host-b@") && md.contains("window missed; rescheduled"),
        "{md}"
    );
    let table = out(&rig, "host-a", &["runs"]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.contains("abandoned by op-host-b@"), "{table}");
    let events = rig.journal_texts("SELECT event_json FROM events WHERE run_id = ?1", &parked);
    assert!(
        events
            .iter()
            .any(|e| e.contains("\"event\":\"abandoned\"")
                && e.contains("window missed; rescheduled")),
        "{events:?}"
    );
    // An ended run cannot be abandoned again.
    let o = out(&rig, "host-b", &["abandon", &parked, "--reason", "again"]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    // The job is free now: another host's run holds it, alive.
    let mut c = hold(&rig, "host-c", "dts-p", &["--lease", "30s"]);
    let holder = run_of(&rig, "hold-dts");
    assert_ne!(holder, parked);
    // The abandoned run's resume takes its locks first: refused, nothing sent.
    let before = rig.calls().len();
    let o = out(&rig, "host-a", &["resume", &parked, "--yes"]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("is locked by run {holder}")),
        "{}",
        text(&o)
    );
    assert_eq!(rig.calls().len(), before);
    c.kill().unwrap();
    let _ = c.wait();
}

/// A resource known only from an earlier step's output is locked before
/// its first mutating call: held by a live run elsewhere, that step fails
/// (a resumable failure naming the holder) and nothing is sent to it;
/// resumed once the holder is gone, it goes on. `plan` says what it locks.
#[test]
fn a_resource_known_only_at_run_time_held_elsewhere_fails_the_step_resumably() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("found.yaml", FOUND_AT_RUN_TIME);
    let plan = out(&rig, "host-b", &["plan", &pb, "-p", "job=dts-o"]);
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(
        plan.contains("locks:      the job it changes, once its id is known at run time"),
        "{plan}"
    );
    let mut a = hold(&rig, "host-a", "dts-o", &["--lease", "2s"]);
    let holder = run_of(&rig, "hold-dts");
    let o = out(&rig, "host-b", &["run", &pb, "-p", "job=dts-o", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let all = text(&o);
    assert!(
        all.contains(&format!("is locked by run {holder}")) && all.contains("host host-a"),
        "{all}"
    );
    assert!(all.contains("runbook resume"), "{all}");
    assert_eq!(stops(&rig, "dts-o"), 1, "nothing sent to the held job");
    let found = run_of(&rig, "stop-found");
    assert_eq!(status_of(&rig, &found), "failed");
    a.kill().unwrap();
    let _ = a.wait();
    eventually("the killed holder is interrupted", || {
        status_of(&rig, &holder) == "interrupted"
    });
    let o = out(&rig, "host-b", &["resume", &found, "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(stops(&rig, "dts-o"), 2);
    assert_eq!(status_of(&rig, &found), "succeeded");
}

/// A holder killed moments ago is still alive for other hosts (its lease
/// has not run out): abandoning it there is refused. On its own host and
/// state dir, the plan's lock shows it gone at once: abandoned there, its
/// locks go, and the job is free.
#[test]
fn a_run_killed_moments_ago_is_abandoned_only_where_its_death_is_known() {
    let rig = Rig::new("", Duration::ZERO);
    let mut a = hold(&rig, "host-a", "dts-k", &["--lease", "60s"]);
    let holder = run_of(&rig, "hold-dts");
    a.kill().unwrap();
    let _ = a.wait();
    let o = out(&rig, "host-b", &["abandon", &holder, "--reason", "gone"]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is alive on host host-a"));
    let o = stop_jobs(&rig, "host-b", &["dts-k"]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    let o = out(
        &rig,
        "host-a",
        &["abandon", &holder, "--reason", "killed by mistake"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("(it was interrupted)"));
    let o = stop_jobs(&rig, "host-b", &["dts-k"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(stops(&rig, "dts-k"), 2);
}

/// Stops a DTS job, holds it a little, then suspends it.
const STOP_THEN_SUSPEND: &str = r#"
name: stop-then-suspend
params: { job: { type: string } }
defaults: { region: cn-hangzhou }
steps:
  - id: stop
    call: dts.StopDtsJob
    with: { DtsJobId: "{{params.job}}" }
  - id: hold
    needs: [stop]
    sleep: 3s
  - id: suspend
    needs: [hold]
    call: dts.SuspendDtsJob
    with: { DtsJobId: "{{params.job}}" }
"#;

/// A holder stopped (SIGSTOP) past its lease is abandoned from another
/// host, and another run changes the job; continued (SIGCONT), the
/// abandoned process sends nothing more: its locks and its lease went
/// together.
#[test]
fn an_abandoned_run_that_was_only_stopped_sends_nothing_when_continued() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("sts.yaml", STOP_THEN_SUSPEND);
    let mut a = on(
        &rig,
        "host-a",
        &["run", &pb, "-p", "job=dts-s", "--yes", "--lease", "1s"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_until(&mut a, "the stop", || stops(&rig, "dts-s") == 1);
    let pid = a.id().to_string();
    let signal = |sig: &str| {
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    let holder = run_of(&rig, "stop-then-suspend");
    eventually("the stopped holder is interrupted", || {
        status_of(&rig, &holder) == "interrupted"
    });
    let o = out(&rig, "host-b", &["abandon", &holder, "--reason", "hung"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = stop_jobs(&rig, "host-b", &["dts-s"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Past the hold: the stopped process would suspend now.
    std::thread::sleep(Duration::from_secs(4));
    signal("-CONT");
    let done = a.wait_with_output().unwrap();
    assert_ne!(done.status.code(), Some(0), "{}", text(&done));
    assert!(
        rig.processed("SuspendDtsJob", "DtsJobId").is_empty(),
        "the abandoned process suspended the job: {}",
        text(&done)
    );
    assert_eq!(status_of(&rig, &holder), "cancelled");
}
