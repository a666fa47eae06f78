//! The change window closing during a run, driven by a clock the test sets
//! (never the system's): the window closes while a chosen call is in
//! flight, and the test holds that call's answer until the engine has seen
//! the close, so what happens next is decided, not raced.

use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use super::*;
use crate::run::window::{Clock, ClockSleep, RunWindow};
use crate::window::Bounds;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// Opened before the run; the window (`--not-after`) closes at `CLOSE`.
const OPEN: &str = "2026-12-05T02:00:00Z";
const CLOSE: &str = "2026-12-05T05:00:00Z";

/// A clock only the test moves.
struct TestClock {
    now: watch::Sender<Timestamp>,
}

impl TestClock {
    fn at(t: &str) -> Arc<TestClock> {
        Arc::new(TestClock {
            now: watch::Sender::new(ts(t)),
        })
    }

    fn set(&self, t: Timestamp) {
        self.now.send_replace(t);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, t: Timestamp) -> ClockSleep<'_> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|now| *now >= t).await;
        })
    }
}

/// Records events; says when the window-closed event has been emitted.
struct Events {
    seen: Mutex<Vec<RunEvent>>,
    closed: watch::Sender<bool>,
}

impl EventSink for Events {
    fn emit(&self, event: &RunEvent) {
        if matches!(event, RunEvent::WindowClosed { .. }) {
            self.closed.send_replace(true);
        }
        self.seen.lock().unwrap().push(event.clone());
    }
}

/// The fake cloud, except that the `nth` call of `action` (1-based)
/// closes the window while it is in flight: the clock passes the close,
/// and the call is answered only once the engine has said the window closed.
struct ClosingCloud {
    inner: Arc<Fake>,
    clock: Arc<TestClock>,
    closed: watch::Receiver<bool>,
    trigger: Mutex<Option<(String, usize)>>,
}

impl CloudApi for ClosingCloud {
    fn call<'a>(&'a self, req: &'a ActionRequest) -> CallFuture<'a> {
        Box::pin(async move {
            let hit = {
                let mut t = self.trigger.lock().unwrap();
                match t.as_mut() {
                    Some((action, n)) if *action == req.action => {
                        *n -= 1;
                        if *n == 0 {
                            *t = None;
                            true
                        } else {
                            false
                        }
                    }
                    _ => false,
                }
            };
            if hit {
                self.clock.set(ts(CLOSE));
                let mut closed = self.closed.clone();
                tokio::time::timeout(Duration::from_secs(30), closed.wait_for(|c| *c))
                    .await
                    .expect("the engine saw the window close")
                    .unwrap();
            }
            self.inner.call(req).await
        })
    }
}

struct Rig {
    api: Arc<Fake>,
    clock: Arc<TestClock>,
    events: Arc<Events>,
    dir: tempfile::TempDir,
}

impl Rig {
    fn new(nodes: &[&str]) -> Rig {
        Rig {
            api: Fake::with_nodes(nodes),
            clock: TestClock::at(OPEN),
            events: Arc::new(Events {
                seen: Mutex::new(Vec::new()),
                closed: watch::Sender::new(false),
            }),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `plan` (a resume from `prior` when given) in the window that
    /// closes at `CLOSE`; the `nth` call of `action` closes it.
    async fn run(
        &self,
        plan: &Plan,
        close_on: Option<(&str, usize)>,
        prior: Option<Prior>,
    ) -> RunSummary {
        let resumed = prior.is_some();
        let journal = Journal::open(self.dir.path()).unwrap();
        let run_id = "run-w".to_owned();
        if journal.load_run(&run_id).is_err() {
            journal
                .create_run(&run_id, "test", "test.yaml", "d", "{}".into(), "{}".into())
                .await
                .unwrap();
        }
        let cloud = Arc::new(ClosingCloud {
            inner: Arc::clone(&self.api),
            clock: Arc::clone(&self.clock),
            closed: self.events.closed.subscribe(),
            trigger: Mutex::new(close_on.map(|(a, n)| (a.to_owned(), n))),
        });
        let window = RunWindow {
            window: None,
            bounds: Bounds {
                not_before: None,
                not_after: Some(ts(CLOSE)),
            },
        };
        Runner::new(
            Arc::new(plan.clone()),
            cloud,
            journal,
            Arc::clone(&self.events) as Arc<dyn EventSink>,
            Arc::new(RateLimits::default()),
            Arc::new(FlagApprover {
                steps: BTreeSet::new(),
                by: "tester".into(),
                identity: None,
            }),
            CancellationToken::new(),
            RunOptions {
                run_id,
                concurrency: 4,
                run_timeout: None,
                seed: Some(1),
                allow_drift: false,
                time_scale: crate::run::TimeScale::REAL,
            },
            prior.unwrap_or_default(),
        )
        .with_window(window, Arc::clone(&self.clock) as Arc<dyn Clock>)
        .execute(resumed)
        .await
        .unwrap()
    }

    fn record(&self) -> journal::RunRecord {
        Journal::open(self.dir.path())
            .unwrap()
            .load_run("run-w")
            .unwrap()
    }

    fn calls(&self, action: &str) -> Vec<String> {
        self.api
            .state
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, q)| q.get("FileId").cloned().unwrap_or_default())
            .collect()
    }
}

/// A stop fanned out over nodes 1..3 one at a time, then a terminate of each.
fn stop_then_terminate() -> Plan {
    let mut steps = stop_wait_terminate();
    steps.remove(1);
    steps[1].needs = vec![StepId("stop".into())];
    for s in &mut steps {
        if let Some(fe) = &mut s.for_each {
            fe.concurrency = Some(1);
        }
    }
    plan(steps)
}

#[tokio::test]
async fn a_call_in_flight_at_the_close_finishes_and_is_journaled_and_nothing_mutating_starts_after()
{
    let rig = Rig::new(&["1", "2", "3"]);
    let p = stop_then_terminate();
    // The window closes while the stop of node 2 is in flight.
    let summary = rig.run(&p, Some(("StopDISyncInstance", 2)), None).await;
    assert_eq!(summary.outcome, RunStatus::WindowClosed, "{summary:?}");
    assert_eq!(
        summary.stopped_because.as_deref(),
        Some("the change window closed at 2026-12-05T05:00:00Z")
    );
    // Node 2's stop, in flight, finished; node 3's never started; nothing
    // was terminated.
    assert_eq!(rig.calls("StopDISyncInstance"), ["1", "2"]);
    assert!(rig.calls("TerminateDISyncInstance").is_empty());
    assert_eq!(
        (
            rig.api.status("1"),
            rig.api.status("2"),
            rig.api.status("3")
        ),
        ("PAUSE".into(), "PAUSE".into(), "RUN".into())
    );
    // Its answer is journaled: the record says so, and a resume does not
    // send it again.
    let record = rig.record();
    assert_eq!(record.run.status, RunStatus::WindowClosed);
    let answered: Vec<i64> = record
        .attempts
        .iter()
        .filter(|a| a.action == "StopDISyncInstance" && a.outcome == AttemptOutcome::Ok)
        .map(|a| a.item)
        .collect();
    assert_eq!(answered, [0, 1]);
    let seen = rig.events.seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(
            |e| matches!(e, RunEvent::WindowClosed { at, next_opens: None, .. } if at == CLOSE)
        ),
        "{seen:#?}"
    );

    // The next opening: the resume sends only what is left.
    rig.clock.set(ts("2026-12-05T04:00:00Z"));
    let prior = Prior::from_record(&record, &p);
    let summary = rig.run(&p, None, Some(prior)).await;
    assert_eq!(summary.outcome, RunStatus::Succeeded, "{summary:?}");
    assert_eq!(rig.calls("StopDISyncInstance"), ["1", "2", "3"]);
    assert_eq!(rig.calls("TerminateDISyncInstance"), ["1", "2", "3"]);
}

#[tokio::test]
async fn no_retry_of_a_mutating_call_is_sent_after_the_close() {
    let rig = Rig::new(&["1", "2", "3"]);
    // The first stop fails (not applied) with a retryable error, while the
    // window closes: the retry is not sent.
    rig.api.fail(
        "StopDISyncInstance",
        ApiError::new("Throttling.User", "slow down", Some(429)),
        false,
    );
    let p = stop_then_terminate();
    let summary = rig.run(&p, Some(("StopDISyncInstance", 1)), None).await;
    assert_eq!(summary.outcome, RunStatus::WindowClosed, "{summary:?}");
    assert_eq!(rig.calls("StopDISyncInstance"), ["1"]);
    assert_eq!(rig.api.status("1"), "RUN");
    assert_eq!(summary.steps[0].outcome, Some(Outcome::Cancelled));
}

#[tokio::test]
async fn an_unknown_outcome_at_the_close_is_read_but_not_resent() {
    let rig = Rig::new(&["1", "2", "3"]);
    // A 500 on a stop is an unknown outcome: the status is read (a read may
    // run after the close) and shows it was not applied; the resend, a
    // change, waits for the next opening.
    rig.api.fail(
        "StopDISyncInstance",
        ApiError::new("InternalError.System", "boom", Some(500)),
        false,
    );
    let p = stop_then_terminate();
    let summary = rig.run(&p, Some(("StopDISyncInstance", 1)), None).await;
    assert_eq!(summary.outcome, RunStatus::WindowClosed, "{summary:?}");
    assert_eq!(rig.calls("StopDISyncInstance"), ["1"]);
    assert_eq!(rig.calls("GetDISyncInstanceInfo"), ["1"]);
    // On resume the unit is settled first, then sent once.
    rig.clock.set(ts("2026-12-05T04:00:00Z"));
    let prior = Prior::from_record(&rig.record(), &p);
    assert!(prior.maybe_applied.contains(&("stop".to_owned(), 0)));
    let summary = rig.run(&p, None, Some(prior)).await;
    assert_eq!(summary.outcome, RunStatus::Succeeded, "{summary:?}");
    assert_eq!(rig.calls("StopDISyncInstance"), ["1", "1", "2", "3"]);
}

#[tokio::test]
async fn a_wait_running_at_the_close_finishes_a_sleep_stops_and_the_next_change_does_not_start() {
    let rig = Rig::new(&["1"]);
    let stop = step(
        "stop",
        &[],
        StepKind::Call {
            call: call_plan(
                "dataworks.StopDISyncInstance",
                json!({"ProjectId": 1, "FileId": 1, "TaskType": "DI_REALTIME"}),
            ),
            assert: None,
        },
    );
    let mut steps = vec![stop];
    let mut wait = stop_wait_terminate().remove(1);
    wait.for_each = None;
    if let StepKind::Wait(w) = &mut wait.kind {
        w.call = call_plan(
            "dataworks.GetDISyncInstanceInfo",
            json!({"ProjectId": 1, "FileId": 1, "TaskType": "DI_REALTIME"}),
        );
    }
    steps.push(wait);
    steps.push(step("hold", &[], StepKind::Sleep { millis: 3_600_000 }));
    steps.push(step(
        "terminate",
        &["stopped"],
        StepKind::Call {
            call: call_plan(
                "dataworks.TerminateDISyncInstance",
                json!({"ProjectId": 1, "FileId": 1, "TaskType": "DI_REALTIME"}),
            ),
            assert: None,
        },
    ));
    // The wait's first poll is throttled, and the window closes during it:
    // the wait polls again after the close, sees PAUSE and succeeds.
    rig.api.fail(
        "GetDISyncInstanceInfo",
        ApiError::new("Throttling.User", "slow down", Some(429)),
        false,
    );
    let summary = rig
        .run(&plan(steps), Some(("GetDISyncInstanceInfo", 1)), None)
        .await;
    assert_eq!(summary.outcome, RunStatus::WindowClosed, "{summary:?}");
    let outcome = |id: &str| summary.steps.iter().find(|s| s.id == id).unwrap().outcome;
    assert_eq!(outcome("stopped"), Some(Outcome::Succeeded));
    assert_eq!(outcome("hold"), Some(Outcome::Cancelled));
    let hold = summary.steps.iter().find(|s| s.id == "hold").unwrap();
    assert_eq!(
        hold.detail.as_deref(),
        Some("stopped: the change window closed")
    );
    assert_eq!(outcome("terminate"), None);
    assert_eq!(rig.calls("GetDISyncInstanceInfo").len(), 2);
    assert!(rig.calls("TerminateDISyncInstance").is_empty());
}

#[tokio::test]
async fn a_failure_after_the_close_starts_no_compensation_that_changes_things() {
    let rig = Rig::new(&["1", "2", "3"]);
    let mut p = stop_then_terminate();
    // Node 1's terminate is refused while the window closes; its
    // compensation (a start) would be a change after the close.
    rig.api.fail(
        "TerminateDISyncInstance",
        ApiError::new("Forbidden.Access", "no", Some(403)),
        false,
    );
    p.steps[1].on_failure = OnFailure::Compensate(vec![StepId("restart".into())]);
    let mut restart = step(
        "restart",
        &[],
        StepKind::Call {
            call: call_plan(
                "dataworks.StartDISyncInstance",
                json!({"ProjectId": 1, "FileId": 1, "TaskType": "DI_REALTIME"}),
            ),
            assert: None,
        },
    );
    restart.compensation = true;
    p.steps.push(restart);
    let summary = rig
        .run(&p, Some(("TerminateDISyncInstance", 1)), None)
        .await;
    assert_eq!(summary.outcome, RunStatus::Failed, "{summary:?}");
    assert_eq!(
        summary.stopped_because.as_deref(),
        Some(
            "step `terminate` failed after the change window closed; its compensation `restart` was not started (it changes things); resume in the next opening"
        )
    );
    assert!(rig.calls("StartDISyncInstance").is_empty());
    assert_eq!(rig.calls("TerminateDISyncInstance"), ["1"]);
}

#[tokio::test]
async fn a_window_closed_before_the_first_step_sends_nothing() {
    // The run was admitted, then (say) an approval on a terminal took past
    // the close: not one call goes out.
    let rig = Rig::new(&["1", "2", "3"]);
    rig.clock.set(ts(CLOSE));
    let summary = rig.run(&stop_then_terminate(), None, None).await;
    assert_eq!(summary.outcome, RunStatus::WindowClosed, "{summary:?}");
    assert!(rig.api.state.lock().unwrap().calls.is_empty());
    assert_eq!(rig.record().run.status, RunStatus::WindowClosed);
}
