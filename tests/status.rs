//! What `runs` and `show` say about a run: its status (one enum, with
//! `interrupted` for a run whose process died), the journal's schema version,
//! and the in-process simulator's world kept with a rehearsal so that
//! `resume --sim` goes on in the same world.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::run::{FAN_OUT, Rig, count, text};

/// `runs --json`, parsed.
fn runs(rig: &Rig) -> Value {
    let out = rig.run(&["runs", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `runs` and `show` (text): the line or field that carries the status.
fn text_statuses(rig: &Rig, run_id: &str) -> (String, String) {
    let out = rig.run(&["runs"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with(run_id))
        .unwrap_or_else(|| panic!("{run_id} not listed: {table}"));
    let out = rig.run(&["show", run_id]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    let status = shown
        .lines()
        .find_map(|l| l.strip_prefix("status: "))
        .unwrap_or_else(|| panic!("no status line: {shown}"));
    (
        row.split_whitespace().nth(1).unwrap().to_owned(),
        status.split_whitespace().next().unwrap().to_owned(),
    )
}

#[test]
fn a_killed_run_shows_interrupted_while_a_live_one_shows_running() {
    let rig = Rig::new("", Duration::from_secs(3600));
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let mut child = rig
        .cmd(&["run", &pb, "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The nodes never reach PAUSE: the run waits until it is killed.
    let start = Instant::now();
    while count(&rig.calls(), "GetDISyncInstanceInfo") < 3 {
        assert!(start.elapsed() < Duration::from_secs(30), "no poll arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    let run_id = rig.last_run_id();
    assert_eq!(runs(&rig)[0]["status"], "running");
    assert_eq!(rig.show(&run_id)["status"], "running");
    assert_eq!(
        text_statuses(&rig, &run_id),
        ("running".to_owned(), "running".to_owned())
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run is still going"
    );

    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(runs(&rig)[0]["status"], "interrupted");
    assert_eq!(rig.show(&run_id)["status"], "interrupted");
    assert_eq!(
        text_statuses(&rig, &run_id),
        ("interrupted".to_owned(), "interrupted".to_owned())
    );
    // Only what is seen changes: the journal still says `running` (a
    // resume takes the run over, see `run::kill_and_resume`).
    let stored = rig.journal_texts("SELECT status FROM runs WHERE id = ?1", &run_id);
    assert_eq!(stored, ["running"]);
}

#[test]
fn a_journal_from_a_newer_runbook_is_refused_with_exit_10_and_nothing_is_sent() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let out = rig.run(&["runs"]);
    assert!(out.status.success(), "{}", text(&out));
    let version: i64 = rig.journal_texts("SELECT version FROM schema_version", "")[0]
        .parse()
        .unwrap();
    rig.journal.execute(
        &rig.state(),
        &format!("UPDATE schema_version SET version = {}", version + 1),
    );
    for args in [
        vec!["runs"],
        vec!["show", "any"],
        vec!["run", &pb, "--yes"],
        vec!["resume", "any"],
    ] {
        let out = rig.run(&args);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(10), "{args:?}: {all}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "has schema version {}, newer than this runbook knows (up to {version})",
                version + 1
            )),
            "{all}"
        );
        assert!(
            stderr.contains("hint: a newer runbook wrote this journal"),
            "{all}"
        );
    }
    assert!(rig.calls().is_empty(), "nothing was sent");
}

/// A cutover in small: stop a DTS task, wait until it is finished,
/// terminate three nodes (irreversible), wait until they are gone. The
/// in-process simulator takes 2 s to finish the task and 1 s to undeploy a
/// node; the waits give up after 20 s.
const CUTOVER: &str = r#"
name: sim-world
defaults: { region: cn-hangzhou }
params:
  job: { type: string, default: job-w }
  file_ids: { type: array, items: integer, default: [31, 32, 33] }
steps:
  - id: stop-dts
    call: dts.StopDtsJob
    with: { DtsJobId: "{{params.job}}", SynchronizationDirection: Forward }
  - id: dts-stopped
    needs: [stop-dts]
    wait:
      call: dts.DescribeDtsJobDetail
      with: { DtsJobId: "{{params.job}}" }
      until: { select: Status, in: [Finished] }
      every: 50ms
      timeout: 20s
  - id: terminate
    needs: [dts-stopped]
    for_each: "{{params.file_ids}}"
    call: dataworks.TerminateDISyncInstance
    with: { ProjectId: 10000, TaskType: DI_REALTIME, FileId: "{{item}}" }
  - id: gone
    needs: [terminate]
    for_each: "{{params.file_ids}}"
    wait:
      call: dataworks.GetDISyncInstanceInfo
      with: { ProjectId: 10000, TaskType: DI_REALTIME, FileId: "{{item}}" }
      until: { select: Data.Status, in: [NORUN] }
      every: 50ms
      timeout: 20s
"#;

/// `runbook ARGS --state-dir STATE` with no credentials and no endpoints.
fn sim_cmd(rig: &Rig, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.args(args)
        .arg("--state-dir")
        .arg(rig.state())
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .stdin(Stdio::null());
    rig.journal.apply(&mut cmd);
    cmd
}

/// Kills a `--sim` run once step `started` has started (so every call
/// before it was answered and journaled), then resumes it with `--sim`.
fn kill_then_resume_in_the_same_world(started: &str) {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("cutover.yaml", CUTOVER);
    let mut child = sim_cmd(&rig, &["run", &pb, "--sim", "--yes", "--output", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let run_id = loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{started} never started"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        let listed = runs(&rig);
        if let Some(id) = listed[0]["id"].as_str()
            && rig.show(id)["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["id"] == started)
        {
            break id.to_owned();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(rig.show(&run_id)["status"], "interrupted");

    // In a fresh world the task would be running and the nodes deployed
    // again: the waits would time out, as the calls that stopped and
    // undeployed them were answered and are not sent again.
    let out = sim_cmd(&rig, &["resume", &run_id, "--sim"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{started}: {}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("no simulated world"),
        "{}",
        text(&out)
    );
    let shown = rig.show(&run_id);
    assert_eq!(shown["status"], "succeeded", "{shown:#}");
    for step in shown["steps"].as_array().unwrap() {
        assert_eq!(step["status"], "succeeded", "{step}");
    }
    let calls = |action: &str| -> Vec<String> {
        shown["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "call" && a["action"] == action)
            .map(|a| a["request"].to_string())
            .collect()
    };
    assert_eq!(
        calls("StopDtsJob").len(),
        1,
        "{started}: the stop was sent once"
    );
    let mut terminates = calls("TerminateDISyncInstance");
    terminates.sort();
    terminates.dedup();
    assert_eq!(
        (calls("TerminateDISyncInstance").len(), terminates.len()),
        (3, 3),
        "{started}: one terminate per node, none repeated"
    );
}

#[test]
fn a_rehearsal_killed_after_the_stop_resumes_in_the_world_where_the_stop_happened() {
    kill_then_resume_in_the_same_world("dts-stopped");
}

#[test]
fn a_rehearsal_killed_after_the_terminates_resumes_in_the_world_where_the_nodes_are_gone() {
    kill_then_resume_in_the_same_world("gone");
}

#[test]
fn a_rehearsal_resumed_in_another_simulator_drops_the_saved_world() {
    let rig = Rig::new("", Duration::ZERO);
    // Fails at once, in any world: the node never reaches that status.
    let pb = rig.playbook(
        "never.yaml",
        r#"
name: never
defaults: { region: cn-hangzhou }
steps:
  - id: stop
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 1, FileId: 41, TaskType: DI_REALTIME }
  - id: never
    needs: [stop]
    wait:
      call: dataworks.GetDISyncInstanceInfo
      with: { ProjectId: 1, FileId: 41, TaskType: DI_REALTIME }
      until: { select: Data.Status, in: [NORUN] }
      every: 20ms
      timeout: 100ms
"#,
    );
    let out = sim_cmd(&rig, &["run", &pb, "--sim", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run_id = rig.last_run_id();
    let saved = || -> Option<Value> {
        rig.journal_texts("SELECT world_json FROM worlds WHERE run_id = ?1", &run_id)
            .first()
            .map(|w| serde_json::from_str(w).unwrap())
    };
    let world = saved().expect("the world was saved with the run");
    assert!(
        ["KILLING", "PAUSE"].contains(&world["nodes"]["41"]["machine"]["status"].as_str().unwrap()),
        "the stop is in the saved world: {world}"
    );
    let url = rig.sim().base_url();
    let out = sim_cmd(
        &rig,
        &[
            "resume",
            &run_id,
            "--yes",
            "--endpoint",
            &format!("dataworks={url}"),
        ],
    )
    .env("ALIBABA_CLOUD_ACCESS_KEY_ID", crate::run::ID)
    .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", crate::run::SECRET)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        count(&rig.calls(), "GetDISyncInstanceInfo") > 0,
        "it went on in the other simulator"
    );
    assert_eq!(saved(), None, "that world is no longer where the run is");
}

/// Stop two nodes one after the other, wait until they are stopped, check one.
const SNAP: &str = r#"
name: snap
defaults:
  region: cn-shanghai
  retry: { attempts: 2, delay: 10ms }
params:
  file_ids: { type: array, items: integer, default: [51, 52] }
concurrency: 1
steps:
  - id: stop
    for_each: "{{params.file_ids}}"
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 10000, FileId: "{{item}}", TaskType: DI_REALTIME }
  - id: stopped
    needs: [stop]
    for_each: "{{params.file_ids}}"
    wait:
      call: dataworks.GetDISyncInstanceInfo
      with: { ProjectId: 10000, FileId: "{{item}}", TaskType: DI_REALTIME }
      until: { select: Data.Status, in: [PAUSE] }
      every: 20ms
      timeout: 5s
  - id: report
    needs: [stopped]
    call: dataworks.GetDISyncInstanceInfo
    with: { ProjectId: 10000, FileId: 51, TaskType: DI_REALTIME }
    assert: { select: Data.Status, in: [PAUSE] }
"#;

/// Snapshot settings that redact what changes from one run to the next:
/// ids, times, digests, the temporary directory, who approved.
pub(crate) fn stable(rig: &Rig) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(&rig.dir.path().to_string_lossy()), "[dir]");
    for (pattern, by) in [
        (r"\d{8}T\d{6}Z-[0-9a-f]{6}", "[run-id]"),
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[time]"),
        (
            r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}",
            "[request-id]",
        ),
        (r"[0-9a-f]{64}", "[digest]"),
        (r"digest [0-9a-f]{12}", "digest [digest]"),
        (r"\b\d+\.\ds\b", "[secs]"),
        (r"by [^ @]+@\S+", "by [who]"),
        (r"\([^ @()]+@[^)\s]+\)", "([who])"),
        (r"operator: \S+", "operator: [who]"),
        (r"host: \S+", "host: [host]"),
        (r#""(operator|host)": "[^"]*""#, r#""$1": "[$1]""#),
        (r#""by": "[^"]*""#, r#""by": "[who]""#),
    ] {
        settings.add_filter(pattern, by);
    }
    settings
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// `show` as text, with `--attempts`, and as JSON, and the run's summary,
/// for a run that succeeded and one that failed.
#[test]
fn show_and_the_run_summary_look_like_this() {
    for (name, fixtures) in [("succeeded", vec![]), ("failed", vec![52])] {
        let rig = Rig::with("", Duration::ZERO, |c| {
            for id in fixtures {
                let mut node = runbook::sim::DiNodeFixture::running(10000, id);
                node.status = "NORUN".to_owned();
                c.fixtures.di_nodes.push(node);
            }
        });
        let pb = rig.playbook("snap.yaml", SNAP);
        let run = rig.run(&["run", &pb, "--yes"]);
        assert_eq!(
            run.status.code(),
            Some(if name == "failed" { 1 } else { 0 }),
            "{}",
            text(&run)
        );
        let run_id = rig.last_run_id();
        let show = |args: &[&str]| {
            let mut all = vec!["show", run_id.as_str()];
            all.extend(args);
            let out = rig.run(&all);
            assert!(out.status.success(), "{}", text(&out));
            String::from_utf8(out.stdout).unwrap()
        };
        stable(&rig).bind(|| {
            insta::assert_snapshot!(
                format!("summary-{name}"),
                String::from_utf8_lossy(&run.stdout)
            );
            insta::assert_snapshot!(format!("show-{name}-text"), show(&[]));
            insta::assert_snapshot!(format!("show-{name}-attempts"), show(&["--attempts"]));
            insta::assert_snapshot!(format!("show-{name}-json"), show(&["--json"]));
        });
    }
}
