//! What a run shows and refuses before it starts: `approve` steps that
//! nothing could answer are refused before any call is sent; fan-out items
//! are named by their value in logs, JSON events, `show --attempts` and the
//! approval prompt. Through the CLI against the simulator.

use std::time::Duration;

use serde_json::Value;

use crate::run::{FAN_OUT, FILE_IDS, Rig, count, gated, on_terminal, text};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn runs(rig: &Rig) -> Vec<Value> {
    let out = rig.run(&["runs", "--json"]);
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn an_approve_step_nothing_can_answer_is_refused_before_any_call() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("gate.yaml", &gated(31));
    for output in ["text", "json"] {
        // No terminal (text), or JSON output, and no --approve for the gate:
        // refused up front, not after the first half of the change.
        let out = rig.run(&["run", &pb, "--yes", "--output", output]);
        assert_eq!(out.status.code(), Some(6), "{}", text(&out));
        let err = stderr(&out);
        assert!(
            err.contains("approve step `go-no-go` (\"Terminate node 31?\") is not answerable"),
            "{err}"
        );
        assert!(err.contains("nothing was sent"), "{err}");
        assert!(err.contains("--approve go-no-go"), "{err}");
        let why = if output == "json" {
            "--output json asks no questions"
        } else {
            "there is no terminal to ask on"
        };
        assert!(err.contains(why), "{err}");
        assert!(rig.calls().is_empty(), "{:?}", rig.calls());
        assert!(runs(&rig).is_empty(), "a refused run is not journaled");
    }
    // On a terminal with JSON output: refused before the plan is even
    // shown for approval, rather than after a `yes`.
    let out = on_terminal(&rig, &["run", &pb, "--output", "json"], "yes");
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("--output json asks no questions"),
        "{screen}"
    );
    assert!(!screen.contains("Type `yes` to run"), "{screen}");
    assert!(rig.calls().is_empty());

    let out = rig.run(&["run", &pb, "--yes", "--approve", "go-no-go"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(count(&rig.calls(), "TerminateDISyncInstance"), 1);
}

/// Stop node 41 (one attempt), then a gate, then terminate it.
const GATE_AFTER_STOP: &str = r#"
name: gate-after-stop
defaults: { region: cn-shanghai }
steps:
  - id: stop
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 1, FileId: 41, TaskType: DI_REALTIME }
    retry: { attempts: 1 }
  - id: go-no-go
    needs: [stop]
    approve: "Terminate node 41?"
  - id: terminate
    needs: [go-no-go]
    call: dataworks.TerminateDISyncInstance
    with: { ProjectId: 1, FileId: 41, TaskType: DI_REALTIME }
    retry: { attempts: 1 }
"#;

#[test]
fn a_resume_is_refused_up_front_while_a_gate_it_still_has_to_pass_is_unanswerable() {
    // The first stop is refused (403, permanent): the run fails before its gate.
    let rig = Rig::new("deny@StopDISyncInstance=1#1", Duration::ZERO);
    let pb = rig.playbook("gate.yaml", GATE_AFTER_STOP);
    let out = rig.run(&["run", &pb, "--yes", "--approve", "go-no-go"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let id = rig.last_run_id();
    let before = rig.calls().len();

    let out = rig.run(&["resume", &id]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(stderr(&out).contains("`go-no-go`"), "{}", text(&out));
    assert_eq!(rig.calls().len(), before, "the resume sent nothing");

    let out = rig.run(&["resume", &id, "--approve", "go-no-go"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(count(&rig.calls(), "TerminateDISyncInstance"), 1);
}

#[test]
fn a_gate_that_already_passed_needs_no_answer_on_resume() {
    // The terminate is refused once (403, permanent): the run fails after its gate.
    let rig = Rig::new("deny@TerminateDISyncInstance=1#1", Duration::ZERO);
    let pb = rig.playbook("gate.yaml", GATE_AFTER_STOP);
    let out = rig.run(&["run", &pb, "--yes", "--approve", "go-no-go"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = rig.run(&["resume", &rig.last_run_id()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // `count` counts calls the service processed (not the refused one).
    assert_eq!(count(&rig.calls(), "StopDISyncInstance"), 1);
    assert_eq!(count(&rig.calls(), "TerminateDISyncInstance"), 1);
}

/// Terminates nodes given as mappings: labelled by their id keys.
const BY_MAPPING: &str = r#"
name: by-mapping
defaults: { region: cn-shanghai }
steps:
  - id: terminate
    for_each:
      - { FileId: 81, Owner: ops }
      - { FileId: 82, Owner: "data team" }
    call: dataworks.TerminateDISyncInstance
    with: { ProjectId: 1, FileId: "{{item.FileId}}", TaskType: DI_REALTIME }
"#;

fn json_lines(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn json_events_name_fan_out_items_by_value_and_keep_their_index() {
    let rig = Rig::new("throttle@TerminateDISyncInstance=1#1", Duration::ZERO);
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let out = rig.run(&["run", &pb, "--yes", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events = json_lines(&out);
    let per_item: Vec<&Value> = events
        .iter()
        .filter(|e| {
            matches!(
                e["event"].as_str(),
                Some("call_sent" | "attempt_failed" | "polled" | "item_finished")
            )
        })
        .collect();
    assert!(per_item.len() >= 4 * FILE_IDS.len(), "{events:?}");
    for e in &per_item {
        let i = usize::try_from(e["item"].as_u64().unwrap()).unwrap();
        assert_eq!(e["item_label"], FILE_IDS[i], "{e}");
    }
    assert!(
        per_item.iter().any(|e| e["event"] == "attempt_failed"),
        "the throttled terminate is reported: {events:?}"
    );
    // A step without fan-out carries neither.
    let pb = rig.playbook("gate.yaml", &gated(32));
    let out = rig.run(&[
        "run",
        &pb,
        "--yes",
        "--approve",
        "go-no-go",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let sent: Vec<Value> = json_lines(&out)
        .into_iter()
        .filter(|e| e["event"] == "call_sent")
        .collect();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].get("item").is_none() && sent[0].get("item_label").is_none());
}

#[test]
fn logs_and_show_attempts_name_items_by_their_id_keys() {
    let rig = Rig::new("throttle@TerminateDISyncInstance=1#1", Duration::ZERO);
    let pb = rig.playbook("map.yaml", BY_MAPPING);
    let out = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The plain log line of the throttled attempt names its item.
    let log = stderr(&out);
    assert!(
        log.contains("terminate[FileId=81]: TerminateDISyncInstance attempt 1 failed: Throttling")
            || log.contains(
                "terminate[FileId=82]: TerminateDISyncInstance attempt 1 failed: Throttling"
            ),
        "{log}"
    );
    let id = rig.last_run_id();
    let out = rig.run(&["show", &id, "--attempts"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    for file in ["81", "82"] {
        assert!(
            shown.contains(&format!(
                "terminate[FileId={file}] #1 call TerminateDISyncInstance -> "
            )),
            "{shown}"
        );
    }
    assert!(
        shown.contains("terminate[FileId=8")
            && shown.contains(" #2 call TerminateDISyncInstance -> ok"),
        "{shown}"
    );

    // A step without fan-out is named by its id alone.
    let pb = rig.playbook("gate.yaml", &gated(33));
    let out = rig.run(&["run", &pb, "--yes", "--approve", "go-no-go"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = rig.run(&["show", &rig.last_run_id(), "--attempts"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(" terminate #1 call TerminateDISyncInstance -> ok"),
        "{shown}"
    );
}

#[test]
fn a_failed_item_is_named_by_value_in_the_log_the_summary_and_show() {
    // Node 91 lives in another workspace: stopping it fails for good.
    let rig = Rig::with("", Duration::ZERO, |c| {
        c.fixtures
            .di_nodes
            .push(runbook::sim::DiNodeFixture::running(2, 91));
        c.fixtures
            .di_nodes
            .push(runbook::sim::DiNodeFixture::running(1, 90));
        c.auto_create = false;
    });
    let pb = rig.playbook(
        "fail.yaml",
        r#"
name: one-fails
defaults: { region: cn-shanghai }
steps:
  - id: stop
    for_each: [90, 91]
    for_each_concurrency: 1
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 1, FileId: "{{item}}", TaskType: DI_REALTIME }
    on_failure: continue
"#,
    );
    let out = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let log = stderr(&out);
    assert!(
        log.contains("stop[91]: failed: StopDISyncInstance failed"),
        "{log}"
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("1 of 2 items failed; item 91: "),
        "{summary}"
    );
    let out = rig.run(&["show", &rig.last_run_id()]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("      item 91: StopDISyncInstance failed"),
        "{shown}"
    );
}

/// SHA-256 of the account id, first 16 hex digits: the journal's fingerprint.
fn fingerprint(id: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(id.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn the_plan_approval_prompt_lists_the_ids_region_and_account_of_irreversible_items() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let out = on_terminal(&rig, &["run", &pb], "no");
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        screen.contains("[IRREVERSIBLE] terminate x6  dataworks.TerminateDISyncInstance"),
        "{screen}"
    );
    assert!(
        screen.contains("ids:      FileId=<item>, ProjectId=10000"),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("items:    {}", FILE_IDS.join(", "))),
        "{screen}"
    );
    assert!(
        screen.contains(&format!(
            "where:    region cn-shanghai, account {} (account fingerprint)",
            fingerprint(runbook::sim::SIM_ACCOUNT)
        )),
        "{screen}"
    );
    // Only irreversible steps list them: the mutating stop does not.
    assert_eq!(screen.matches("items:").count(), 1, "{screen}");
    assert!(
        screen.contains("not approved; nothing was sent"),
        "{screen}"
    );
    assert!(rig.calls().is_empty());
}

/// A wait over nodes listed by an earlier step, then one over a param list.
const WAITS: &str = r#"
name: waits
params:
  file_ids: { type: array, items: integer, default: [1, 2, 3, 4, 5, 6, 7] }
defaults: { region: cn-shanghai }
concurrency: 2
steps:
  - id: list
    call: dataworks.GetDISyncInstanceInfo
    with: { ProjectId: 1, FileId: 1, TaskType: DI_REALTIME }
    timeout: 1m
  - id: listed-paused
    needs: [list]
    for_each: "{{steps.list.output.Data.FileIds}}"
    for_each_concurrency: 4
    wait:
      call: dataworks.GetDISyncInstanceInfo
      with: { ProjectId: 1, FileId: "{{item}}", TaskType: DI_REALTIME }
      until: { select: Data.Status, in: [PAUSE] }
      timeout: 5m
  - id: params-paused
    needs: [listed-paused]
    for_each: "{{params.file_ids}}"
    wait:
      call: dataworks.GetDISyncInstanceInfo
      with: { ProjectId: 1, FileId: "{{item}}", TaskType: DI_REALTIME }
      until: { select: Data.Status, in: [PAUSE] }
      timeout: 3m
"#;

#[test]
fn the_plan_counts_rounds_of_fan_out_waits_and_names_those_of_unknown_size() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("waits.yaml", WAITS);
    let out = rig.run(&["plan", &pb, "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    // 1m + one round of 5m (size unknown) + ceil(7/2) = 4 rounds of 3m.
    assert_eq!(plan["worst_case_secs"], 60 + 5 * 60 + 4 * 3 * 60, "{plan}");
    assert_eq!(
        plan["worst_case_open"],
        serde_json::json!(["listed-paused"])
    );
    let out = rig.run(&["plan", &pb]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("worst case:   18m along the critical path (one round of items counted for listed-paused: their number is known only at run time)"),
        "{shown}"
    );
    assert!(
        shown.contains(
            "worst case: 5m per round of 4 items; the number of items is known only at run time"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("worst case: 12m: 7 items, 2 at once, up to 3m each"),
        "{shown}"
    );
    // With more at once, fewer rounds: 1m + 5m + 3m.
    let pb = rig.playbook(
        "wide.yaml",
        &WAITS.replace("concurrency: 2", "concurrency: 7"),
    );
    let out = rig.run(&["plan", &pb, "--format", "json"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["worst_case_secs"], 9 * 60, "{plan}");
}
