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

/// `runbook ARGS` signed with `key` (another person's credentials), with
/// the rig's state dir and journal, STS pointed at the simulator.
pub(crate) fn as_user(rig: &Rig, key: (&str, &str), args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.args(args)
        .arg("--state-dir")
        .arg(rig.state())
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", key.0)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", key.1)
        .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
        .env_remove("RUST_LOG")
        .env("RUNBOOK_STS_ENDPOINT", rig.sim().base_url())
        .stdin(std::process::Stdio::null());
    rig.journal.apply(&mut cmd);
    cmd.output().unwrap()
}

/// `runbook plan PLAYBOOK -p file_id=ID -o DIR/NAME.json`: a saved plan.
fn saved_plan(rig: &Rig, playbook: &str, file_id: u32, name: &str) -> String {
    let out_path = rig.dir.path().join(name);
    let out_path = out_path.to_string_lossy().into_owned();
    let out = rig.run(&[
        "plan",
        playbook,
        "-p",
        &format!("file_id={file_id}"),
        "-o",
        &out_path,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    out_path
}

/// The stop of one node, chosen by a param, with a policy in `head`.
fn stop_param(head: &str) -> String {
    format!(
        r"name: scheduled-stop
{head}
params:
  file_id: {{ type: integer }}
defaults: {{ region: cn-shanghai }}
steps:
  - id: stop
    call: dataworks.StopDISyncInstance
    with: {{ ProjectId: 10000, FileId: '{{{{params.file_id}}}}', TaskType: DI_REALTIME }}
"
    )
}

#[test]
fn a_scheduled_run_goes_ahead_on_enough_unexpired_pre_approvals_of_its_digest() {
    let rig = rig();
    let pb = rig.playbook(
        "stop.yaml",
        &stop_param("approvers: [alice, bob]\nmin_approvals: 2"),
    );
    let plan = saved_plan(&rig, &pb, 101, "plan.json");
    let run = || as_starter(&rig, &["run", &plan]);
    let out = run();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(text(&out).contains("0 of 2 given"), "{}", text(&out));
    // alice approves ahead, with her own key.
    let out = as_user(
        &rig,
        ALICE,
        &["approve", "--plan", &plan, "--expires", "1d", "--yes"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains(&format!("as acs:ram::{ACCOUNT}:user/alice"))
            && said.contains("1 of 2 approvals given; 1 more approval of this plan is needed"),
        "{said}"
    );
    // Twice by alice is still one approver.
    let out = as_user(
        &rig,
        ALICE,
        &["approve", "--plan", &plan, "--expires", "1d", "--yes"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(6), "{said}");
    assert!(said.contains("1 of 2 given"), "{said}");
    let mut stable = crate::status::stable(&rig);
    stable.add_filter(
        r"\([^ @(),]+@[^ ,]+, GetCallerIdentity",
        "([who], GetCallerIdentity",
    );
    stable.add_filter(r"plan [0-9a-f]{12} ", "plan [digest] ");
    stable.bind(|| {
        insta::assert_snapshot!("preapproved-once-refused", said);
        insta::assert_snapshot!(
            "preapproval-by-bob",
            text(&as_user(
                &rig,
                BOB,
                &["approve", "--plan", &plan, "--expires", "1d", "--yes"]
            ))
        );
    });
    assert!(
        said.contains(&format!("approved ahead by acs:ram::{ACCOUNT}:user/alice")),
        "{said}"
    );
    assert_eq!(count(&rig.calls(), "StopDISyncInstance"), 0);
    // The run's own identity (sim) is no approver: refused, nothing recorded.
    let out = as_starter(
        &rig,
        &[
            "approve",
            "--plan",
            &plan,
            "--expires",
            "1d",
            "--yes",
            "--state-dir",
            &rig.state().to_string_lossy(),
        ],
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        text(&out).contains("is not one of the approvers (alice, bob); nothing was recorded"),
        "{}",
        text(&out)
    );
    // bob completed it (above); the unattended run goes ahead.
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(count(&rig.calls(), "StopDISyncInstance"), 1);
    let run_id = rig.last_run_id();
    // Journaled as the run's plan approval: who (verified), how, the identity call.
    let arns = rig.journal_texts(
        "SELECT arn FROM approvals WHERE run_id = ?1 AND channel = 'pre-approval' ORDER BY arn",
        &run_id,
    );
    assert_eq!(
        arns,
        [
            format!("acs:ram::{ACCOUNT}:user/alice"),
            format!("acs:ram::{ACCOUNT}:user/bob")
        ]
    );
    let asked = identity_calls(&rig);
    for id in rig.journal_texts(
        "SELECT identity_request_id FROM approvals WHERE run_id = ?1",
        &run_id,
    ) {
        assert!(asked.contains(&id), "{id} is a GetCallerIdentity answer");
    }
    let md = String::from_utf8(rig.run(&["report", &run_id]).stdout).unwrap();
    assert!(
        md.contains(&format!(
            "| the plan | approved | `acs:ram::{ACCOUNT}:user/bob`"
        )) && md.contains("pre-approval (`pre-approval`)"),
        "{md}"
    );
}

#[test]
fn expired_pre_approvals_and_those_of_another_digest_never_count_and_the_refusal_is_notified() {
    let rig = rig();
    let inbox = crate::notify::Inbox::default();
    let hook = crate::notify::receiver(&rig, &inbox);
    let pb = rig.playbook(
        "stop.yaml",
        &stop_param(&format!(
            "approvers: [alice, bob]\nnotify:\n  - kind: webhook\n    url: {hook}/hook\n    events: [approval_needed]"
        )),
    );
    let plan_101 = saved_plan(&rig, &pb, 101, "p101.json");
    let plan_102 = saved_plan(&rig, &pb, 102, "p102.json");
    // alice approves node 102's plan, and 101's for one second.
    for (plan, expires) in [(&plan_102, "1d"), (&plan_101, "1s")] {
        let out = as_user(
            &rig,
            ALICE,
            &["approve", "--plan", plan, "--expires", expires, "--yes"],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let out = as_starter(&rig, &["run", &plan_101]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(6), "{said}");
    assert!(said.contains("0 of 1 given"), "{said}");
    assert!(
        said.contains(&format!(
            "the pre-approval by acs:ram::{ACCOUNT}:user/alice expired at"
        )),
        "{said}"
    );
    assert_eq!(count(&rig.calls(), "StopDISyncInstance"), 0);
    // The playbook's webhook was told, with the command that approves.
    let got = inbox.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let body = &got[0].body;
    assert_eq!(body["event"], "approval_needed");
    assert_eq!(body["status"], "rejected");
    assert_eq!(
        body["command"],
        format!("runbook approve --plan {plan_101} --expires 7d").as_str()
    );
    assert!(
        body["error"].as_str().unwrap().contains("expired at"),
        "{body}"
    );
    assert!(said.contains("notified"), "{said}");
    // The plan of node 102 has its approval.
    let out = as_starter(&rig, &["run", &plan_102]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(count(&rig.calls(), "StopDISyncInstance"), 1);
}

#[test]
fn a_listed_starter_may_pre_approve_but_never_counts_for_its_own_run() {
    let rig = rig();
    let pb = rig.playbook("stop.yaml", &stop_param("approvers: [sim, alice]"));
    let plan = saved_plan(&rig, &pb, 101, "plan.json");
    let state = rig.state().to_string_lossy().into_owned();
    let out = as_starter(
        &rig,
        &[
            "approve",
            "--plan",
            &plan,
            "--expires",
            "1d",
            "--yes",
            "--state-dir",
            &state,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = as_starter(&rig, &["run", &plan]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(6), "{said}");
    assert!(
        said.contains(&format!(
            "the pre-approval by acs:ram::{ACCOUNT}:user/sim does not count"
        )) && said.contains("started the run and may not approve it"),
        "{said}"
    );
    assert_eq!(count(&rig.calls(), "StopDISyncInstance"), 0);
    // The same plan started by alice: sim's pre-approval counts.
    let mut args = vec!["run".to_owned(), plan.clone()];
    args.extend(rig.endpoint_flags(&["run", &plan]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = as_user(&rig, ALICE, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(count(&rig.calls(), "StopDISyncInstance"), 1);
    let run_id = rig.last_run_id();
    assert_eq!(
        rig.journal_texts(
            "SELECT arn FROM run_identities WHERE run_id = ?1 AND role = 'started'",
            &run_id
        ),
        [format!("acs:ram::{ACCOUNT}:user/alice")]
    );
}
