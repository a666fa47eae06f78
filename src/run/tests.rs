//! Scheduler tests against an in-memory fake `CloudApi` (the HTTP path is
//! covered by the integration tests against the simulator).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::cloud::{ActionRequest, ApiError, ApiResponse, CallFuture, CloudApi, Risk, actions};
use crate::plan::{
    Backoff, BlastRadius, CallPlan, Condition, ForEach, Matcher, OnFailure, PLAN_FORMAT, Plan,
    PlannedStep, RetryPolicy, StepId, StepKind, WaitPlan,
};

/// A fake cloud: DI nodes with a status; scripted failures per action.
#[derive(Default)]
struct Fake {
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    nodes: BTreeMap<String, String>,
    /// Action -> errors to return (front first); `apply` = apply before failing.
    script: BTreeMap<String, Vec<(ApiError, bool)>>,
    calls: Vec<(String, BTreeMap<String, String>)>,
}

impl Fake {
    fn with_nodes(ids: &[&str]) -> Arc<Fake> {
        let fake = Fake::default();
        fake.state.lock().unwrap().nodes = ids
            .iter()
            .map(|i| ((*i).to_owned(), "RUN".to_owned()))
            .collect();
        Arc::new(fake)
    }

    fn fail(&self, action: &str, err: ApiError, applied: bool) {
        self.state
            .lock()
            .unwrap()
            .script
            .entry(action.to_owned())
            .or_default()
            .push((err, applied));
    }

    fn count(&self, action: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|(a, _)| a == action)
            .count()
    }

    fn status(&self, id: &str) -> String {
        self.state.lock().unwrap().nodes[id].clone()
    }
}

impl CloudApi for Fake {
    fn call<'a>(&'a self, req: &'a ActionRequest) -> CallFuture<'a> {
        Box::pin(async move {
            let mut st = self.state.lock().unwrap();
            st.calls.push((req.action.clone(), req.query.clone()));
            let id = req.query.get("FileId").cloned().unwrap_or_default();
            let scripted = st
                .script
                .get_mut(&req.action)
                .and_then(|v| (!v.is_empty()).then(|| v.remove(0)));
            let apply = |st: &mut FakeState| match req.action.as_str() {
                "StopDISyncInstance" => {
                    st.nodes.insert(id.clone(), "PAUSE".into());
                }
                "TerminateDISyncInstance" => {
                    st.nodes.insert(id.clone(), "NORUN".into());
                }
                _ => {}
            };
            if let Some((err, applied)) = scripted {
                if applied {
                    apply(&mut st);
                }
                return Err(err);
            }
            apply(&mut st);
            let body = match req.action.as_str() {
                "GetDISyncInstanceInfo" => {
                    json!({"RequestId": "r", "Success": true, "Data": {"Status": st.nodes.get(&id).cloned().unwrap_or_default()}})
                }
                _ => json!({"RequestId": "r", "Success": true, "Data": {"Status": "success"}}),
            };
            Ok(ApiResponse {
                body,
                request_id: Some("r".into()),
                http_status: 200,
            })
        })
    }
}

fn call_plan(action: &str, with: Value) -> CallPlan {
    let spec = actions::lookup(action).unwrap();
    let with: BTreeMap<String, Value> = serde_json::from_value(with).unwrap();
    let req = ActionRequest::typed(spec, "cn-shanghai", BTreeMap::new());
    CallPlan {
        action: action.into(),
        product: spec.product.into(),
        version: spec.version.into(),
        rpc_action: spec.action.into(),
        risk: spec.risk,
        with,
        rendered: BTreeMap::new(),
        request: req.preview(crate::cloud::signer::SignatureVersion::V1),
    }
}

fn node_with() -> Value {
    json!({"ProjectId": "{{params.project}}", "FileId": "{{item}}", "TaskType": "DI_REALTIME"})
}

fn step(id: &str, needs: &[&str], kind: StepKind) -> PlannedStep {
    let risk = match &kind {
        StepKind::Call { call, .. } => call.risk,
        _ => Risk::Read,
    };
    PlannedStep {
        id: StepId(id.into()),
        description: None,
        needs: needs.iter().map(|n| StepId((*n).into())).collect(),
        when: None,
        for_each: None,
        kind,
        retry: RetryPolicy {
            attempts: 4,
            backoff: Backoff::Fixed,
            delay_millis: 10,
            max_delay_millis: 10,
            jitter: false,
        },
        timeout_secs: None,
        on_failure: OnFailure::Abort,
        compensation: false,
        risk,
        region: "cn-shanghai".into(),
        role_arn: None,
        report: Vec::new(),
        line: 1,
    }
}

fn fan_out(mut s: PlannedStep) -> PlannedStep {
    s.for_each = Some(ForEach {
        template: "{{params.ids}}".into(),
        items: None,
        concurrency: Some(2),
    });
    s
}

fn plan(steps: Vec<PlannedStep>) -> Plan {
    Plan {
        format: PLAN_FORMAT,
        name: "test".into(),
        description: None,
        source: "test.yaml".into(),
        playbook_sha256: "0".into(),
        params: [
            ("project".to_owned(), json!(10000)),
            ("ids".to_owned(), json!([1, 2, 3])),
        ]
        .into(),
        digest: "d".into(),
        concurrency: 4,
        window: None,
        signature: crate::cloud::signer::SignatureVersion::V1,
        default_region: None,
        levels: vec![],
        critical_path: vec![],
        worst_case_secs: 0,
        worst_case_open: vec![],
        blast_radius: BlastRadius::default(),
        notify: vec![],
        approval: None,
        steps,
        observations: None,
    }
}

fn stop_wait_terminate() -> Vec<PlannedStep> {
    let stop = fan_out(step(
        "stop",
        &[],
        StepKind::Call {
            call: call_plan("dataworks.StopDISyncInstance", node_with()),
            assert: None,
        },
    ));
    let wait = fan_out(step(
        "stopped",
        &["stop"],
        StepKind::Wait(WaitPlan {
            call: call_plan("dataworks.GetDISyncInstanceInfo", node_with()),
            until: Condition {
                select: "Data.Status".into(),
                matcher: Matcher::In(vec![json!("PAUSE")]),
            },
            fail_if: None,
            every_millis: 5,
            backoff: 1.0,
            max_every_millis: 5,
            timeout_millis: 1_000,
        }),
    ));
    let term = fan_out(step(
        "terminate",
        &["stopped"],
        StepKind::Call {
            call: call_plan("dataworks.TerminateDISyncInstance", node_with()),
            assert: None,
        },
    ));
    vec![stop, wait, term]
}

async fn run(plan: Plan, api: Arc<Fake>, dir: &std::path::Path, prior: Prior) -> RunSummary {
    let journal = Journal::open(dir).unwrap();
    let run_id = "run-1".to_owned();
    if journal.load_run(&run_id).is_err() {
        journal
            .create_run(&run_id, "test", "test.yaml", "d", "{}".into(), "{}".into())
            .await
            .unwrap();
    }
    let approver = Arc::new(FlagApprover {
        steps: BTreeSet::from(["gate".to_owned()]),
        by: "tester".into(),
        identity: None,
    });
    let runner = Runner::new(
        Arc::new(plan),
        api,
        journal,
        Arc::new(NoSink),
        Arc::new(RateLimits::default()),
        approver,
        CancellationToken::new(),
        RunOptions {
            run_id,
            concurrency: 4,
            run_timeout: None,
            seed: Some(1),
            allow_drift: false,
            time_scale: crate::run::TimeScale::REAL,
        },
        prior,
    );
    runner.execute(false).await.unwrap()
}

/// Runs the stop, wait, terminate fan-out over nodes 1..3 with a fresh journal.
async fn run_fan_out(api: &Arc<Fake>) -> RunSummary {
    let dir = tempfile::tempdir().unwrap();
    run(
        plan(stop_wait_terminate()),
        Arc::clone(api),
        dir.path(),
        Prior::default(),
    )
    .await
}

#[tokio::test]
async fn fan_out_stop_wait_terminate_completes() {
    let api = Fake::with_nodes(&["1", "2", "3"]);
    let summary = run_fan_out(&api).await;
    assert_eq!(summary.outcome, RunStatus::Succeeded, "{summary:?}");
    assert_eq!(api.count("StopDISyncInstance"), 3);
    assert_eq!(api.count("TerminateDISyncInstance"), 3);
    for id in ["1", "2", "3"] {
        assert_eq!(api.status(id), "NORUN");
    }
}

#[tokio::test]
async fn unknown_outcome_of_a_terminate_is_reconciled_not_resent() {
    let api = Fake::with_nodes(&["1", "2", "3"]);
    // The first terminate is applied, then the connection drops.
    api.fail(
        "TerminateDISyncInstance",
        ApiError::new("Transport.ConnectionDropped", "connection closed", None),
        true,
    );
    let summary = run_fan_out(&api).await;
    assert_eq!(summary.outcome, RunStatus::Succeeded, "{summary:?}");
    let calls: Vec<_> = api
        .state
        .lock()
        .unwrap()
        .calls
        .iter()
        .map(|(a, q)| format!("{a} {:?}", q.get("FileId")))
        .collect();
    assert_eq!(
        api.count("TerminateDISyncInstance"),
        3,
        "the applied terminate was not sent again: {calls:#?}"
    );
}

#[tokio::test]
async fn unknown_outcome_not_applied_is_resent_after_the_status_check() {
    let api = Fake::with_nodes(&["1", "2", "3"]);
    api.fail(
        "TerminateDISyncInstance",
        ApiError::new("InternalError.System", "boom", Some(500)),
        false,
    );
    let summary = run_fan_out(&api).await;
    assert_eq!(summary.outcome, RunStatus::Succeeded, "{summary:?}");
    assert_eq!(
        api.count("TerminateDISyncInstance"),
        4,
        "one failed before applying, so it was resent once"
    );
}

#[tokio::test]
async fn permanent_errors_fail_without_retry_and_skip_dependents() {
    let api = Fake::with_nodes(&["1", "2", "3"]);
    for _ in 0..3 {
        api.fail(
            "StopDISyncInstance",
            ApiError::new("Param.Invalid", "bad", Some(400)),
            false,
        );
    }
    let summary = run_fan_out(&api).await;
    assert_eq!(summary.outcome, RunStatus::Failed);
    assert!(api.count("StopDISyncInstance") <= 3);
    assert_eq!(api.count("TerminateDISyncInstance"), 0);
    let detail = summary.steps[0].detail.clone().unwrap();
    assert!(detail.contains("Param.Invalid"), "{detail}");
}

#[tokio::test]
async fn throttling_is_retried() {
    let api = Fake::with_nodes(&["1", "2", "3"]);
    api.fail(
        "StopDISyncInstance",
        ApiError::new("Throttling.User", "slow down", Some(429)),
        false,
    );
    api.fail(
        "StopDISyncInstance",
        ApiError::new("Throttling.User", "slow down", Some(400)),
        false,
    );
    let summary = run_fan_out(&api).await;
    assert_eq!(summary.outcome, RunStatus::Succeeded);
    assert_eq!(api.count("StopDISyncInstance"), 5);
}

#[tokio::test]
async fn wait_fail_if_and_timeout_fail_the_run_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let api = Fake::with_nodes(&["1", "2", "3"]);
    let mut steps = stop_wait_terminate();
    if let StepKind::Wait(w) = &mut steps[1].kind {
        w.fail_if = Some(Condition {
            select: "Data.Status".into(),
            matcher: Matcher::In(vec![json!("pause")]),
        });
    }
    let summary = run(plan(steps), Arc::clone(&api), dir.path(), Prior::default()).await;
    assert_eq!(summary.outcome, RunStatus::Failed);
    let detail = summary.steps[1].detail.clone().unwrap();
    assert!(
        detail.contains("fail_if held: `Data.Status` is \"PAUSE\""),
        "{detail}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut steps = stop_wait_terminate();
    if let StepKind::Wait(w) = &mut steps[1].kind {
        w.until = Condition {
            select: "Data.Status".into(),
            matcher: Matcher::In(vec![json!("NEVER")]),
        };
        w.timeout_millis = 60;
    }
    let summary = run(
        plan(steps),
        Fake::with_nodes(&["1", "2", "3"]),
        dir.path(),
        Prior::default(),
    )
    .await;
    let detail = summary.steps[1].detail.clone().unwrap();
    assert!(detail.contains("timed out after 60ms"), "{detail}");
    assert!(detail.contains("last value: \"PAUSE\""), "{detail}");
}

#[tokio::test]
async fn compensation_runs_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let api = Fake::with_nodes(&["1", "2", "3"]);
    for _ in 0..3 {
        api.fail(
            "TerminateDISyncInstance",
            ApiError::new("Forbidden.Access", "no", Some(403)),
            false,
        );
    }
    let mut steps = stop_wait_terminate();
    steps[2].on_failure = OnFailure::Compensate(vec![StepId("report".into())]);
    let mut report = step(
        "report",
        &[],
        StepKind::Call {
            call: call_plan(
                "dataworks.GetDISyncInstanceInfo",
                json!({"ProjectId": 1, "FileId": 1, "TaskType": "DI_REALTIME"}),
            ),
            assert: None,
        },
    );
    report.compensation = true;
    steps.push(report);
    let summary = run(plan(steps), Arc::clone(&api), dir.path(), Prior::default()).await;
    assert_eq!(summary.outcome, RunStatus::Failed);
    let report = summary.steps.iter().find(|s| s.id == "report").unwrap();
    assert_eq!(report.outcome, Some(Outcome::Succeeded));
}

#[tokio::test]
async fn resume_skips_done_units_and_reconciles_in_flight_ones() {
    let dir = tempfile::tempdir().unwrap();
    let api = Fake::with_nodes(&["1", "2", "3"]);
    // A previous attempt stopped everything and terminated item 0; item 1's
    // terminate was in flight (and applied) when the process died.
    for id in ["1", "2", "3"] {
        api.state
            .lock()
            .unwrap()
            .nodes
            .insert(id.into(), "PAUSE".into());
    }
    api.state
        .lock()
        .unwrap()
        .nodes
        .insert("1".into(), "NORUN".into());
    api.state
        .lock()
        .unwrap()
        .nodes
        .insert("2".into(), "NORUN".into());
    let mut prior = Prior::default();
    prior.done_steps.insert(
        "stop".into(),
        (Outcome::Succeeded, Some(json!([{}, {}, {}]))),
    );
    prior.done_steps.insert(
        "stopped".into(),
        (Outcome::Succeeded, Some(json!([{}, {}, {}]))),
    );
    prior
        .done_units
        .insert(("terminate".into(), 0), json!({"ok": true}));
    prior.maybe_applied.insert(("terminate".into(), 1));
    let summary = run(
        plan(stop_wait_terminate()),
        Arc::clone(&api),
        dir.path(),
        prior,
    )
    .await;
    assert_eq!(summary.outcome, RunStatus::Succeeded, "{summary:?}");
    assert_eq!(api.count("StopDISyncInstance"), 0);
    assert_eq!(
        api.count("TerminateDISyncInstance"),
        1,
        "only item 2 was sent"
    );
    assert_eq!(api.status("3"), "NORUN");
}

/// Journals what a killed or compensated run left behind and reads it back.
async fn record_of(plan: &Plan, write: impl AsyncFnOnce(&Journal)) -> Prior {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    journal
        .create_run("r", "test", "test.yaml", "d", "{}".into(), "{}".into())
        .await
        .unwrap();
    write(&journal).await;
    journal.flush().await.unwrap();
    Prior::from_record(&journal.load_run("r").unwrap(), plan)
}

/// Journals item 1 of `terminate` as sent and answered `ok`, its unit not finished.
async fn terminate_answered_ok(j: &Journal) {
    j.unit_started("r", "terminate", 1, Some(&json!(2)));
    j.attempt_intent(
        "k",
        "r",
        "terminate",
        1,
        1,
        AttemptKind::Call,
        "TerminateDISyncInstance",
        crate::cloud::Risk::Irreversible,
        "{}".into(),
        true,
    )
    .await
    .unwrap();
    j.attempt_ok("k", Some("req"), 200, &json!({"Success": true}));
}

#[tokio::test]
async fn a_call_answered_ok_whose_unit_never_finished_is_not_sent_again_on_resume() {
    let plan = plan(stop_wait_terminate());
    let prior = record_of(&plan, async |j: &Journal| {
        terminate_answered_ok(j).await;
        // Killed here: the answer was committed, the unit's result was not.
    })
    .await;
    let key = ("terminate".to_owned(), 1);
    assert_eq!(
        prior.answered.get(&key),
        Some(&json!({"Success": true})),
        "the answer stands for the call"
    );
    assert!(!prior.maybe_applied.contains(&key));
    assert!(!prior.done_units.contains_key(&key));
}

#[tokio::test]
async fn items_undone_by_a_compensation_are_not_trusted_on_resume() {
    let mut steps = stop_wait_terminate();
    steps[0].on_failure = OnFailure::Compensate(vec![StepId("restart".into())]);
    let mut restart = step(
        "restart",
        &[],
        StepKind::Call {
            call: call_plan("dataworks.GetDISyncInstanceInfo", node_with()),
            assert: None,
        },
    );
    restart.compensation = true;
    steps.push(restart);
    let plan = plan(steps);
    let prior = record_of(&plan, async |j: &Journal| {
        for item in [0, 1] {
            j.unit_started("r", "stop", item, Some(&json!(item + 1)));
            j.unit_finished(
                "r",
                "stop",
                item,
                Outcome::Succeeded,
                Some(&json!({})),
                None,
            )
            .await
            .unwrap();
        }
        j.step_finished("r", "stop", Outcome::Failed, Some("item 2 failed"))
            .await
            .unwrap();
        j.step_started("r", "restart", Some(3)).await.unwrap();
        j.step_finished("r", "restart", Outcome::Succeeded, None)
            .await
            .unwrap();
    })
    .await;
    assert!(prior.done_units.is_empty(), "{:?}", prior.done_units);
    assert!(!prior.done_steps.contains_key("restart"));

    // Once the compensated step has succeeded in a later attempt, its items
    // are done again, whatever the old compensation did.
    let prior = record_of(&plan, async |j: &Journal| {
        j.step_started("r", "restart", Some(3)).await.unwrap();
        j.step_finished("r", "restart", Outcome::Succeeded, None)
            .await
            .unwrap();
        for item in [0, 1, 2] {
            j.unit_started("r", "stop", item, Some(&json!(item + 1)));
            j.unit_finished(
                "r",
                "stop",
                item,
                Outcome::Succeeded,
                Some(&json!({})),
                None,
            )
            .await
            .unwrap();
        }
        j.step_finished("r", "stop", Outcome::Succeeded, None)
            .await
            .unwrap();
    })
    .await;
    assert_eq!(prior.done_units.len(), 3);
    assert!(prior.done_steps.contains_key("stop"));
}

#[tokio::test]
async fn a_step_blocked_by_a_failure_is_not_done_on_resume() {
    let plan = plan(stop_wait_terminate());
    let prior = record_of(&plan, async |j: &Journal| {
        j.step_finished("r", "stop", Outcome::Succeeded, None)
            .await
            .unwrap();
        j.step_finished("r", "stopped", Outcome::Failed, Some("timed out"))
            .await
            .unwrap();
        j.step_blocked("r", "terminate", "not run: `stopped` did not succeed")
            .await
            .unwrap();
    })
    .await;
    assert!(prior.done_steps.contains_key("stop"));
    assert!(!prior.done_steps.contains_key("terminate"));
}

#[tokio::test]
async fn work_done_after_a_compensation_or_under_a_failed_one_still_counts() {
    let mut steps = stop_wait_terminate();
    steps[2].on_failure = OnFailure::Compensate(vec![StepId("undo".into())]);
    let mut undo = step(
        "undo",
        &[],
        StepKind::Call {
            call: call_plan("dataworks.GetDISyncInstanceInfo", node_with()),
            assert: None,
        },
    );
    undo.compensation = true;
    steps.push(undo);
    let plan = plan(steps);
    // The compensation ran and succeeded; then a later attempt terminated item 0.
    let prior = record_of(&plan, async |j: &Journal| {
        j.step_finished("r", "terminate", Outcome::Failed, Some("item 0 failed"))
            .await
            .unwrap();
        j.step_started("r", "undo", None).await.unwrap();
        j.step_finished("r", "undo", Outcome::Succeeded, None)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        j.unit_started("r", "terminate", 0, Some(&json!(1)));
        j.unit_finished(
            "r",
            "terminate",
            0,
            Outcome::Succeeded,
            Some(&json!({})),
            None,
        )
        .await
        .unwrap();
    })
    .await;
    assert!(
        prior.done_units.contains_key(&("terminate".to_owned(), 0)),
        "done after the compensation"
    );

    // An irreversible call answered ok while the compensation failed: the
    // answer stands, the terminate is not sent again.
    let prior = record_of(&plan, async |j: &Journal| {
        terminate_answered_ok(j).await;
        j.unit_finished(
            "r",
            "terminate",
            1,
            Outcome::Failed,
            None,
            Some("assert failed"),
        )
        .await
        .unwrap();
        j.step_finished("r", "terminate", Outcome::Failed, None)
            .await
            .unwrap();
        j.step_started("r", "undo", None).await.unwrap();
        j.step_finished("r", "undo", Outcome::Failed, Some("404"))
            .await
            .unwrap();
    })
    .await;
    assert!(prior.answered.contains_key(&("terminate".to_owned(), 1)));
}

mod window;
