//! Who may approve, with verified identities: against the simulator's STS
//! (real HTTP, real signatures), with the simulator's own key (the RAM user
//! `sim`, who starts runs) and two more fixture identities (`alice`, `bob`,
//! other access keys). On both journal backends (`.ci/run`'s PostgreSQL
//! pass lists this module).

use std::process::Output;
use std::time::Duration;

use runbook::sim::Fixtures;

use crate::run::{Rig, count, text};

pub(crate) const ALICE: (&str, &str) = ("alice-key-id", "alice-key-secret");
pub(crate) const BOB: (&str, &str) = ("bob-key-id", "bob-key-secret");
/// The account of the simulator's own key (`runbook::sim::SIM_ACCOUNT`).
pub(crate) const ACCOUNT: &str = "1000000000000001";

/// alice and bob (RAM users of the simulator's account), and a role both
/// may assume.
pub(crate) fn identities() -> String {
    format!(
        "identities:
  users:
    - {{ access_key_id: {}, access_key_secret: {}, arn: 'acs:ram::{ACCOUNT}:user/alice' }}
    - {{ access_key_id: {}, access_key_secret: {}, arn: 'acs:ram::{ACCOUNT}:user/bob' }}
  roles:
    - arn: 'acs:ram::{ACCOUNT}:role/approvers'
      trusted: ['acs:ram::{ACCOUNT}:user/alice', 'acs:ram::{ACCOUNT}:user/bob']
",
        ALICE.0, ALICE.1, BOB.0, BOB.1
    )
}

/// A rig whose simulator knows alice and bob.
pub(crate) fn rig() -> Rig {
    let fixtures = Fixtures::from_yaml(&identities()).unwrap();
    Rig::with("", Duration::ZERO, |c| {
        c.fixtures.identities = fixtures.identities;
    })
}

/// `runbook ARGS` as the rig runs it (the simulator's own key: user
/// `sim`), with STS pointed at the simulator (as it is anyway when every
/// endpoint is a loopback one: said here so that no test depends on it).
pub(crate) fn as_starter(rig: &Rig, args: &[&str]) -> Output {
    rig.cmd(args)
        .env("RUNBOOK_STS_ENDPOINT", rig.sim().base_url())
        .output()
        .unwrap()
}

/// A cutover that stops one DI node, with `head` added at the top level.
pub(crate) fn stop_node(head: &str) -> String {
    format!(
        r"name: stop-node
{head}
defaults: {{ region: cn-shanghai }}
steps:
  - id: stop
    call: dataworks.StopDISyncInstance
    with: {{ ProjectId: 10000, FileId: 101, TaskType: DI_REALTIME }}
"
    )
}

/// The RequestIds of the simulator's answers to `GetCallerIdentity`.
fn identity_calls(rig: &Rig) -> Vec<String> {
    rig.sim()
        .calls()
        .iter()
        .filter(|c| c.action.as_deref() == Some("GetCallerIdentity"))
        .map(|c| c.request_id.clone())
        .collect()
}

#[test]
fn a_run_journals_its_starter_and_plan_approval_with_the_identity_sts_verified() {
    let rig = rig();
    let pb = rig.playbook("stop.yaml", &stop_node(""));
    let out = as_starter(&rig, &["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run_id = rig.last_run_id();
    let asked = identity_calls(&rig);
    assert!(!asked.is_empty(), "the starter is verified through STS");
    let arn = format!("acs:ram::{ACCOUNT}:user/sim");
    // The approval row: who (ARN, account, the identity call's RequestId), how.
    let row = |col: &str| {
        rig.journal_texts(
            &format!("SELECT {col} FROM approvals WHERE run_id = ?1"),
            &run_id,
        )
    };
    assert_eq!(row("arn"), [arn.as_str()]);
    assert_eq!(row("account_id"), [ACCOUNT.to_owned()]);
    assert_eq!(row("channel"), ["flag"]);
    assert_eq!(row("method"), ["--yes"]);
    let request_id = row("identity_request_id").remove(0);
    assert!(
        asked.contains(&request_id),
        "{request_id} is a GetCallerIdentity answer: {asked:?}"
    );
    let started = rig.journal_texts(
        "SELECT arn FROM run_identities WHERE run_id = ?1 AND role = 'started'",
        &run_id,
    );
    assert_eq!(started, [arn.as_str()]);
    // The report names the verified identity of the operator and approver.
    let md = rig.run(&["report", &run_id, "--format", "markdown"]);
    let md = String::from_utf8(md.stdout).unwrap();
    assert!(
        md.contains(&format!(
            "| Started by (verified) | `{arn}` (account `{ACCOUNT}`"
        )),
        "{md}"
    );
    assert!(
        md.contains(&format!(
            "| the plan | approved | `{arn}` (account `{ACCOUNT}`, RequestId `{request_id}`)"
        )),
        "{md}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&rig.run(&["report", &run_id, "--format", "json"]).stdout).unwrap();
    assert_eq!(json["target"]["operator"]["arn"], arn.as_str());
    assert_eq!(
        json["approvals"][0]["identity"]["request_id"],
        request_id.as_str()
    );
    assert_eq!(json["approvals"][0]["channel"], "flag");
}

#[test]
fn the_starter_may_not_approve_a_plan_that_names_its_approvers() {
    let rig = rig();
    for (head, why) in [
        (
            "approvers: [alice, bob]",
            "is not one of the approvers (alice, bob)",
        ),
        (
            "approvers: [sim, bob]",
            "started the run and may not approve it",
        ),
        (
            "approvers: [sim, bob]\nmin_approvals: 2\nallow_self_approval: true",
            "needs 2 distinct approvers among sim, bob",
        ),
    ] {
        let pb = rig.playbook("stop.yaml", &stop_node(head));
        // The starter's --yes does not count: the run waits for the
        // approvers (here left parked, --detach: exit 7), saying why.
        let out = as_starter(&rig, &["run", &pb, "--yes", "--detach"]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(7), "{head}: {said}");
        assert!(said.contains(why), "{head}: {said}");
        assert!(said.contains("nothing was sent"), "{head}: {said}");
        assert!(said.contains("runbook approve"), "{head}: {said}");
        // Parked, it holds the node: abandoned, it lets go of it.
        let state = rig.state().to_string_lossy().into_owned();
        let parked = rig.last_run_id();
        let out = rig
            .cmd(&[
                "abandon",
                &parked,
                "--reason",
                "next case",
                "--state-dir",
                &state,
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        // Unattended (no --yes, no terminal): refused, pointing at pre-approval.
        let out = as_starter(&rig, &["run", &pb]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(6), "{head}: {said}");
        assert!(said.contains("nothing was sent"), "{head}: {said}");
        assert!(
            said.contains("runbook approve --plan PLAN.json --expires 7d"),
            "{head}: {said}"
        );
    }
    assert_eq!(count(&rig.calls(), "StopDISyncInstance"), 0);
    // With self-approval allowed and one approval needed, the starter's --yes does it.
    let pb = rig.playbook(
        "stop.yaml",
        &stop_node("approvers: [sim, bob]\nallow_self_approval: true"),
    );
    let out = as_starter(&rig, &["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(count(&rig.calls(), "StopDISyncInstance"), 1);
}

#[test]
fn a_plan_that_says_who_approves_does_not_start_unverified() {
    let rig = rig();
    let pb = rig.playbook("stop.yaml", &stop_node("min_approvals: 1"));
    // STS unreachable: who runs cannot be verified.
    let out = rig
        .cmd(&["run", &pb, "--yes"])
        .env("RUNBOOK_STS_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(6), "{said}");
    assert!(said.contains("could not be verified"), "{said}");
    assert_eq!(count(&rig.calls(), "StopDISyncInstance"), 0);
    // Without a policy, today's behaviour: a warning, and the run goes on.
    let pb = rig.playbook("plain.yaml", &stop_node(""));
    let out = rig
        .cmd(&["run", &pb, "--yes"])
        .env("RUNBOOK_STS_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run_id = rig.last_run_id();
    assert_eq!(
        rig.journal_texts(
            "SELECT method FROM approvals WHERE run_id = ?1 AND arn IS NULL",
            &run_id
        ),
        ["--yes"]
    );
}

#[test]
fn a_step_whose_approvers_exclude_the_runner_is_refused_unattended_and_waited_for_attended() {
    let rig = rig();
    let pb = rig.playbook(
        "gated.yaml",
        r#"name: gated
defaults: { region: cn-shanghai }
steps:
  - id: go
    approve: { message: "Stop node 101?", approvers: [alice], timeout: 30m }
  - id: stop
    needs: [go]
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 10000, FileId: 101, TaskType: DI_REALTIME }
"#,
    );
    // Unattended (no --approve for it, no terminal): refused up front.
    let out = as_starter(&rig, &["run", &pb, "--yes"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(6), "{said}");
    assert!(
        said.contains("approve step `go` needs 1 approver among alice"),
        "{said}"
    );
    assert_eq!(count(&rig.calls(), "StopDISyncInstance"), 0);
    // The runner's own --approve does not count: the run parks at the step
    // for alice (--detach: exit 7), nothing sent after it.
    let out = as_starter(&rig, &["run", &pb, "--yes", "--approve", "go", "--detach"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert_eq!(count(&rig.calls(), "StopDISyncInstance"), 0);
}

#[test]
fn the_plan_shows_who_must_approve_and_its_json_carries_the_policy_only_when_set() {
    use crate::validate::{run_cli, transcript};
    let path = "tests/fixtures/approvers-plan.yaml";
    // Signed with V1 whatever the suite's signature (the requests are shown).
    insta::assert_snapshot!(
        "plan-approvers-text",
        transcript(&["plan", path, "--signature", "v1"])
    );
    insta::assert_snapshot!(
        "plan-approvers-markdown",
        transcript(&["plan", path, "--signature", "v1", "--format", "markdown"])
    );
    let (code, json, err) = run_cli(&["plan", path, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        plan["approval"],
        serde_json::json!({
            "approvers": ["alice", "bob", "acs:ram::1000000000000001:role/approvers"],
            "min_approvals": 2
        })
    );
    let gate = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "go-no-go")
        .unwrap();
    assert_eq!(
        gate["kind"]["policy"],
        serde_json::json!({"approvers": ["acs:ram::1000000000000001:role/dba"], "min_approvals": 1})
    );
    assert_eq!(gate["timeout_secs"], 7200);
    // A playbook without the keys: no trace of them in its plan (digests
    // of plans reviewed before stay as they were).
    let (_, json, _) = run_cli(&[
        "plan",
        "playbooks/stop-di-job.yaml",
        "-p",
        "di_job_id=1",
        "--format",
        "json",
    ]);
    assert!(
        !json.contains("\"approval\"") && !json.contains("\"policy\""),
        "{json}"
    );
}
