//! The machine without I/O: hand-written cases for each rule, then generated
//! runs over random DAGs, outcomes, concurrency limits, prior states and
//! stops, checked against the invariants the scheduler relies on.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;

use super::*;

fn spec(id: &str, needs: &[usize]) -> StepSpec {
    StepSpec {
        id: id.to_owned(),
        needs: needs.to_vec(),
        on_failure: FailurePolicy::Abort,
        compensation: false,
        mutates: true,
    }
}

fn with(mut s: StepSpec, on_failure: FailurePolicy) -> StepSpec {
    s.on_failure = on_failure;
    s
}

fn compensation(id: &str) -> StepSpec {
    StepSpec {
        compensation: true,
        ..spec(id, &[])
    }
}

fn finished(step: usize, outcome: Outcome) -> Event {
    Event::Finished { step, outcome }
}

fn end(status: RunStatus, reason: Option<&str>) -> Command {
    Command::Finish(RunEnd {
        status,
        reason: reason.map(str::to_owned),
    })
}

#[test]
fn a_chain_runs_in_order_and_succeeds() {
    let mut m = Machine::new(
        vec![spec("a", &[]), spec("b", &[0]), spec("c", &[1])],
        4,
        &[],
    );
    assert_eq!(m.on(Event::Begin), [Command::Start(0)]);
    assert_eq!(m.on(finished(0, Outcome::Succeeded)), [Command::Start(1)]);
    assert_eq!(m.on(finished(1, Outcome::Skipped)), [Command::Start(2)]);
    assert_eq!(
        m.on(finished(2, Outcome::Succeeded)),
        [end(RunStatus::Succeeded, None)]
    );
    assert_eq!(m.on(Event::Begin), []);
}

#[test]
fn independent_steps_start_together_up_to_the_concurrency() {
    let specs = vec![
        spec("a", &[]),
        spec("b", &[]),
        spec("c", &[]),
        spec("d", &[0, 1]),
    ];
    let mut m = Machine::new(specs, 2, &[]);
    assert_eq!(m.on(Event::Begin), [Command::Start(0), Command::Start(1)]);
    assert_eq!(m.on(finished(1, Outcome::Succeeded)), [Command::Start(2)]);
    // `d` waits for `a`; `c` holds the free slot.
    assert_eq!(m.state(3), StepState::Pending);
    assert_eq!(m.on(finished(0, Outcome::Succeeded)), [Command::Start(3)]);
    assert_eq!(m.on(finished(2, Outcome::Succeeded)), []);
    assert_eq!(
        m.on(finished(3, Outcome::Succeeded)),
        [end(RunStatus::Succeeded, None)]
    );
}

#[test]
fn a_concurrency_of_zero_still_runs_one_step() {
    let mut m = Machine::new(vec![spec("a", &[]), spec("b", &[])], 0, &[]);
    assert_eq!(m.on(Event::Begin), [Command::Start(0)]);
}

#[test]
fn abort_stops_new_work_lets_steps_in_flight_finish_and_fails() {
    let specs = vec![
        spec("a", &[]),
        spec("b", &[]),
        spec("c", &[0]),
        spec("d", &[]),
    ];
    let mut m = Machine::new(specs, 2, &[]);
    assert_eq!(m.on(Event::Begin), [Command::Start(0), Command::Start(1)]);
    // `c` is not blocked: the run stopped before it was looked at.
    assert_eq!(m.on(finished(0, Outcome::Failed)), []);
    assert_eq!(
        m.on(finished(1, Outcome::Succeeded)),
        [end(
            RunStatus::Failed,
            Some("step `a` failed (on_failure: abort)")
        )]
    );
    assert_eq!(m.state(2), StepState::Pending);
    assert_eq!(m.state(3), StepState::Pending);
}

#[test]
fn continue_blocks_the_dependents_transitively_and_runs_the_rest() {
    let specs = vec![
        with(spec("a", &[]), FailurePolicy::Continue),
        spec("b", &[0]),
        spec("c", &[1]),
        spec("d", &[]),
    ];
    let mut m = Machine::new(specs, 1, &[]);
    assert_eq!(m.on(Event::Begin), [Command::Start(0)]);
    assert_eq!(
        m.on(finished(0, Outcome::Failed)),
        [
            Command::Block {
                step: 1,
                blocker: 0
            },
            Command::Block {
                step: 2,
                blocker: 1
            },
            Command::Start(3),
        ]
    );
    assert_eq!(
        m.on(finished(3, Outcome::Succeeded)),
        [end(RunStatus::Failed, None)]
    );
}

#[test]
fn the_blocker_named_is_the_need_that_did_not_succeed() {
    // `c` needs `a` (still running) and `b` (failed): `b` is why.
    let specs = vec![
        spec("a", &[]),
        with(spec("b", &[]), FailurePolicy::Continue),
        spec("c", &[0, 1]),
    ];
    let mut m = Machine::new(specs, 2, &[]);
    assert_eq!(m.on(Event::Begin), [Command::Start(0), Command::Start(1)]);
    assert_eq!(
        m.on(finished(1, Outcome::Failed)),
        [Command::Block {
            step: 2,
            blocker: 1
        }]
    );
}

#[test]
fn a_cancelled_step_blocks_its_dependents_and_the_run_ends_cancelled() {
    let mut m = Machine::new(vec![spec("a", &[]), spec("b", &[0])], 1, &[]);
    m.on(Event::Begin);
    assert_eq!(
        m.on(finished(0, Outcome::Cancelled)),
        [
            Command::Block {
                step: 1,
                blocker: 0
            },
            end(RunStatus::Cancelled, None)
        ]
    );
}

#[test]
fn compensations_run_in_order_once_then_the_run_fails() {
    let specs = vec![
        with(spec("a", &[]), FailurePolicy::Compensate(vec![3, 4])),
        with(spec("b", &[]), FailurePolicy::Compensate(vec![4, 3])),
        spec("c", &[]),
        compensation("undo-1"),
        compensation("undo-2"),
    ];
    let mut m = Machine::new(specs, 2, &[]);
    assert_eq!(m.on(Event::Begin), [Command::Start(0), Command::Start(1)]);
    assert_eq!(
        m.on(finished(0, Outcome::Failed)),
        [
            Command::Compensate { step: 3, failed: 0 },
            Command::Compensate { step: 4, failed: 0 },
        ]
    );
    // The driver runs them one after the other, feeding each end back.
    assert_eq!(m.on(finished(3, Outcome::Succeeded)), []);
    assert_eq!(m.on(finished(4, Outcome::Failed)), []);
    // A second failure with the same compensations does not run them again.
    assert_eq!(
        m.on(finished(1, Outcome::Failed)),
        [end(
            RunStatus::Failed,
            Some("step `a` failed; ran its compensation")
        )]
    );
    assert_eq!(m.state(2), StepState::Pending);
}

#[test]
fn the_run_does_not_end_while_a_compensation_runs() {
    let specs = vec![
        with(spec("a", &[]), FailurePolicy::Compensate(vec![1])),
        compensation("undo"),
    ];
    let mut m = Machine::new(specs, 1, &[]);
    m.on(Event::Begin);
    assert_eq!(
        m.on(finished(0, Outcome::Failed)),
        [Command::Compensate { step: 1, failed: 0 }]
    );
    assert_eq!(
        m.on(finished(1, Outcome::Succeeded)),
        [end(
            RunStatus::Failed,
            Some("step `a` failed; ran its compensation")
        )]
    );
}

#[test]
fn a_compensation_that_is_never_needed_does_not_run_and_does_not_fail_the_run() {
    let specs = vec![
        with(spec("a", &[]), FailurePolicy::Compensate(vec![1])),
        compensation("undo"),
    ];
    let mut m = Machine::new(specs, 1, &[]);
    m.on(Event::Begin);
    assert_eq!(
        m.on(finished(0, Outcome::Succeeded)),
        [end(RunStatus::Succeeded, None)]
    );
    assert_eq!(m.state(1), StepState::Pending);
}

#[test]
fn cancel_starts_nothing_new_and_ends_cancelled_once_in_flight_steps_finish() {
    let mut m = Machine::new(vec![spec("a", &[]), spec("b", &[])], 1, &[]);
    assert_eq!(m.on(Event::Begin), [Command::Start(0)]);
    assert_eq!(m.on(Event::Stop(Stop::Cancelled)), []);
    assert_eq!(
        m.on(finished(0, Outcome::Succeeded)),
        [end(
            RunStatus::Cancelled,
            Some("cancelled (Ctrl-C or SIGTERM)")
        )]
    );
}

#[test]
fn cancel_before_the_run_begins_ends_it_at_once() {
    let mut m = Machine::new(vec![spec("a", &[])], 1, &[]);
    assert_eq!(
        m.on(Event::Stop(Stop::Cancelled)),
        [end(
            RunStatus::Cancelled,
            Some("cancelled (Ctrl-C or SIGTERM)")
        )]
    );
    assert_eq!(m.on(Event::Begin), []);
    assert_eq!(m.state(0), StepState::Pending);
}

#[test]
fn a_failure_gives_the_reason_and_the_status_even_when_cancelled_too() {
    let mut m = Machine::new(vec![spec("a", &[]), spec("b", &[])], 2, &[]);
    m.on(Event::Begin);
    m.on(finished(0, Outcome::Failed));
    m.on(Event::Stop(Stop::Cancelled));
    assert_eq!(
        m.on(finished(1, Outcome::Cancelled)),
        [end(
            RunStatus::Failed,
            Some("step `a` failed (on_failure: abort)")
        )]
    );
}

#[test]
fn an_end_stop_sets_the_status_and_reason_whatever_else_happened() {
    let timed_out = || Stop::End {
        status: RunStatus::Failed,
        reason: "the run timed out after 1s".to_owned(),
    };
    let mut m = Machine::new(vec![spec("a", &[]), spec("b", &[0])], 1, &[]);
    m.on(Event::Begin);
    m.on(Event::Stop(Stop::Cancelled));
    m.on(Event::Stop(timed_out()));
    // A later stop does not replace the first end.
    m.on(Event::Stop(Stop::End {
        status: RunStatus::Cancelled,
        reason: "later".to_owned(),
    }));
    m.on(Event::Stop(Stop::Cancelled));
    assert_eq!(
        m.on(finished(0, Outcome::Succeeded)),
        [end(RunStatus::Failed, Some("the run timed out after 1s"))]
    );
    assert_eq!(m.state(1), StepState::Pending);
}

fn window(reason: &str) -> Event {
    Event::Stop(Stop::Window {
        reason: reason.to_owned(),
    })
}

#[test]
fn a_closed_window_starts_nothing_new_and_ends_window_closed() {
    let mut m = Machine::new(
        vec![spec("a", &[]), spec("b", &[]), spec("c", &[0])],
        1,
        &[],
    );
    assert_eq!(m.on(Event::Begin), [Command::Start(0)]);
    assert_eq!(m.on(window("the change window closed at 05:00")), []);
    assert_eq!(
        m.on(finished(0, Outcome::Succeeded)),
        [end(
            RunStatus::WindowClosed,
            Some("the change window closed at 05:00")
        )]
    );
    assert_eq!(
        (m.state(1), m.state(2)),
        (StepState::Pending, StepState::Pending)
    );
    // A Ctrl-C after the close does not change how the run ends; the run's
    // time limit does.
    let mut m = Machine::new(vec![spec("a", &[]), spec("b", &[])], 1, &[]);
    m.on(Event::Begin);
    m.on(window("closed"));
    m.on(Event::Stop(Stop::Cancelled));
    assert_eq!(
        m.on(finished(0, Outcome::Cancelled)),
        [end(RunStatus::WindowClosed, Some("closed"))]
    );
}

#[test]
fn a_run_the_steps_in_flight_finish_succeeds_even_after_its_window_closed() {
    let mut m = Machine::new(vec![spec("a", &[]), spec("b", &[0])], 1, &[]);
    m.on(Event::Begin);
    m.on(finished(0, Outcome::Succeeded));
    m.on(window("closed"));
    assert_eq!(
        m.on(finished(1, Outcome::Succeeded)),
        [end(RunStatus::Succeeded, None)]
    );
}

#[test]
fn after_the_window_closed_a_failure_starts_no_compensation_that_changes_things() {
    let read_only = StepSpec {
        mutates: false,
        ..compensation("look")
    };
    let specs = vec![
        with(spec("a", &[]), FailurePolicy::Compensate(vec![1, 2])),
        compensation("undo"),
        read_only,
    ];
    let mut m = Machine::new(specs, 1, &[]);
    m.on(Event::Begin);
    m.on(window("closed"));
    // Only the compensation that only reads runs.
    assert_eq!(
        m.on(finished(0, Outcome::Failed)),
        [Command::Compensate { step: 2, failed: 0 }]
    );
    assert_eq!(
        m.on(finished(2, Outcome::Succeeded)),
        [end(
            RunStatus::Failed,
            Some(
                "step `a` failed after the change window closed; its compensation `undo` was not started (it changes things); resume in the next opening"
            )
        )]
    );
    assert_eq!(m.state(1), StepState::Pending);
}

#[test]
fn resume_does_not_start_steps_done_before_and_builds_on_them() {
    let specs = vec![spec("a", &[]), spec("b", &[0]), spec("c", &[1])];
    let prior = [Some(Outcome::Succeeded), Some(Outcome::Skipped), None];
    let mut m = Machine::new(specs, 1, &prior);
    assert_eq!(m.on(Event::Begin), [Command::Start(2)]);
    assert_eq!(
        m.on(finished(2, Outcome::Succeeded)),
        [end(RunStatus::Succeeded, None)]
    );
}

#[test]
fn a_run_with_every_step_done_before_succeeds_without_starting_any() {
    let prior = [Some(Outcome::Succeeded)];
    let mut m = Machine::new(vec![spec("a", &[])], 1, &prior);
    assert_eq!(m.on(Event::Begin), [end(RunStatus::Succeeded, None)]);
}

#[test]
fn an_end_for_a_step_that_is_not_running_is_ignored() {
    let mut m = Machine::new(vec![spec("a", &[]), spec("b", &[0])], 1, &[]);
    m.on(Event::Begin);
    assert_eq!(m.on(finished(1, Outcome::Succeeded)), []);
    assert_eq!(m.on(finished(7, Outcome::Succeeded)), []);
    assert_eq!(m.state(1), StepState::Pending);
    assert_eq!(m.on(finished(0, Outcome::Succeeded)), [Command::Start(1)]);
    assert_eq!(m.on(finished(0, Outcome::Failed)), []);
    assert_eq!(m.state(0), StepState::Done(Outcome::Succeeded));
}

#[test]
fn specs_come_from_the_plan_by_index() {
    let plan = crate::plan::plan_of_yaml(
        r#"
name: t
defaults: { region: cn-shanghai }
steps:
  - id: stop
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 1, TaskType: DI_REALTIME, FileId: 1 }
    on_failure: { run: [restart] }
  - id: after
    needs: [stop]
    sleep: 1s
    on_failure: continue
  - id: restart
    compensation: true
    call: dataworks.StartDISyncInstance
    with: { ProjectId: 1, TaskType: DI_REALTIME, FileId: 1 }
"#,
    );
    let specs = StepSpec::from_plan(&plan);
    let ids: Vec<&str> = specs.iter().map(|s| s.id.as_str()).collect();
    let restart = ids.iter().position(|id| *id == "restart").unwrap();
    let stop = ids.iter().position(|id| *id == "stop").unwrap();
    let after = ids.iter().position(|id| *id == "after").unwrap();
    assert_eq!(
        specs[stop].on_failure,
        FailurePolicy::Compensate(vec![restart])
    );
    assert_eq!(specs[after].needs, [stop]);
    assert_eq!(specs[after].on_failure, FailurePolicy::Continue);
    assert!(specs[restart].compensation && !specs[stop].compensation);
}

// ---- generated runs ---------------------------------------------------------

/// A generated run: the steps, how each would end, and the driver's choices.
#[derive(Clone, Debug)]
struct Case {
    specs: Vec<StepSpec>,
    /// How each step ends when it runs.
    outcomes: Vec<Outcome>,
    concurrency: usize,
    prior: Vec<Option<Outcome>>,
    /// Feed this stop before the n-th step end (never, if past the last).
    stop: Option<(usize, Stop)>,
    /// Which running step ends next (an index into the running ones).
    picks: Vec<usize>,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => Just(Outcome::Succeeded),
        1 => Just(Outcome::Skipped),
        2 => Just(Outcome::Failed),
        1 => Just(Outcome::Cancelled),
    ]
}

fn stop() -> impl Strategy<Value = Stop> {
    prop_oneof![
        Just(Stop::Cancelled),
        Just(Stop::End {
            status: RunStatus::Failed,
            reason: "the run timed out after 1s".to_owned(),
        }),
        Just(Stop::End {
            status: RunStatus::WindowClosed,
            reason: "the window closed".to_owned(),
        }),
        Just(Stop::Window {
            reason: "the change window closed".to_owned(),
        }),
    ]
}

prop_compose! {
    fn case()(
        normal in 1usize..10,
        compensations in 0usize..4,
    )(
        needs in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..4), normal),
        policies in prop::collection::vec((0u8..3, prop::collection::vec(any::<prop::sample::Index>(), 1..4)), normal),
        outcomes in prop::collection::vec(outcome(), normal + compensations),
        concurrency in 1usize..5,
        prior in prop::collection::vec(prop::option::weighted(0.2, prop_oneof![Just(Outcome::Succeeded), Just(Outcome::Skipped)]), normal),
        stop in prop::option::of((0usize..12, stop())),
        picks in prop::collection::vec(0usize..8, 32),
        comp_mutates in prop::collection::vec(any::<bool>(), compensations),
        normal in Just(normal),
        compensations in Just(compensations),
    ) -> Case {
        // Normal steps first (needs point backwards: a DAG in plan order),
        // then the compensations, which need nothing.
        let mut specs: Vec<StepSpec> = (0..normal)
            .map(|i| {
                let mut n: Vec<usize> = if i == 0 {
                    Vec::new()
                } else {
                    needs[i].iter().map(|x| x.index(i)).collect::<BTreeSet<_>>().into_iter().collect()
                };
                n.sort_unstable();
                let (kind, comps) = &policies[i];
                let on_failure = match (kind, compensations) {
                    (0, _) => FailurePolicy::Continue,
                    (1, _) | (_, 0) => FailurePolicy::Abort,
                    _ => FailurePolicy::Compensate(
                        comps.iter().map(|x| normal + x.index(compensations)).collect(),
                    ),
                };
                StepSpec { id: format!("s{i}"), needs: n, on_failure, compensation: false, mutates: true }
            })
            .collect();
        specs.extend((0..compensations).map(|c| StepSpec {
            compensation: true,
            mutates: comp_mutates[c],
            ..spec(&format!("undo{c}"), &[])
        }));
        let mut prior = prior;
        prior.resize(normal + compensations, None);
        Case { specs, outcomes, concurrency, prior, stop, picks }
    }
}

/// What the driver saw, checked as it goes.
#[derive(Default)]
struct Seen {
    started: BTreeSet<usize>,
    /// Step -> how it ended (this run).
    ended: BTreeMap<usize, Outcome>,
    blocked: BTreeSet<usize>,
    compensated: BTreeSet<usize>,
    running: BTreeSet<usize>,
    max_running: usize,
    finishes: Vec<RunEnd>,
    stops: Vec<Stop>,
    /// Steps that failed after the change window closed.
    failed_after_window: BTreeSet<usize>,
    /// The first failed step whose policy stops the run.
    first_halt: Option<usize>,
}

impl Seen {
    fn succeeded(&self, case: &Case, step: usize) -> bool {
        let outcome = self.ended.get(&step).copied().or(case.prior[step]);
        matches!(outcome, Some(Outcome::Succeeded | Outcome::Skipped))
    }

    fn stopping(&self) -> bool {
        self.first_halt.is_some() || !self.stops.is_empty()
    }
}

/// Drives the machine as the scheduler does, checking every command.
fn drive(case: &Case) -> Result<Seen, TestCaseError> {
    let mut m = Machine::new(case.specs.clone(), case.concurrency, &case.prior);
    let mut seen = Seen::default();
    let mut queue: VecDeque<Command> = m.on(Event::Begin).into();
    let mut ends_fed = 0usize;
    let mut picks = case.picks.iter().cycle();
    loop {
        while let Some(command) = queue.pop_front() {
            prop_assert!(
                seen.finishes.is_empty(),
                "a command after the run ended: {command:?}"
            );
            match command {
                Command::Start(i) => {
                    prop_assert!(
                        !case.specs[i].compensation,
                        "compensation {i} started as a step"
                    );
                    prop_assert!(
                        case.prior[i].is_none(),
                        "step {i} was done before and started again"
                    );
                    prop_assert!(seen.started.insert(i), "step {i} started twice");
                    prop_assert!(!seen.blocked.contains(&i), "blocked step {i} started");
                    prop_assert!(
                        !seen.stopping(),
                        "step {i} started while the run was stopping"
                    );
                    for &n in &case.specs[i].needs {
                        prop_assert!(
                            seen.succeeded(case, n),
                            "step {i} started before its need {n} succeeded"
                        );
                    }
                    seen.running.insert(i);
                    seen.max_running = seen.max_running.max(seen.running.len());
                    prop_assert!(
                        seen.running.len() <= case.concurrency,
                        "over the concurrency"
                    );
                }
                Command::Block { step, blocker } => {
                    prop_assert!(case.specs[step].needs.contains(&blocker));
                    prop_assert!(
                        seen.blocked.contains(&blocker)
                            || matches!(
                                seen.ended.get(&blocker),
                                Some(Outcome::Failed | Outcome::Cancelled)
                            ),
                        "step {step} blocked by {blocker}, which did not fail"
                    );
                    prop_assert!(!seen.started.contains(&step) && case.prior[step].is_none());
                    prop_assert!(seen.blocked.insert(step), "step {step} blocked twice");
                }
                Command::Compensate { step, failed } => {
                    prop_assert!(case.specs[step].compensation);
                    prop_assert_eq!(seen.ended.get(&failed), Some(&Outcome::Failed));
                    let FailurePolicy::Compensate(ids) = &case.specs[failed].on_failure else {
                        return Err(TestCaseError::fail(format!("{failed} has no compensation")));
                    };
                    prop_assert!(ids.contains(&step));
                    prop_assert!(
                        !(case.specs[step].mutates && seen.failed_after_window.contains(&failed)),
                        "compensation {step} changes things and started after the window closed"
                    );
                    prop_assert!(
                        seen.compensated.insert(step),
                        "compensation {step} ran twice"
                    );
                    // Run inline, as the scheduler does, and feed its end back
                    // before the rest of the queue.
                    let outcome = case.outcomes[step];
                    seen.ended.insert(step, outcome);
                    let mut next = m.on(finished(step, outcome));
                    next.extend(queue.drain(..));
                    queue = next.into();
                }
                Command::Finish(end) => {
                    prop_assert!(
                        seen.running.is_empty(),
                        "the run ended with steps in flight"
                    );
                    seen.finishes.push(end);
                }
            }
        }
        if !seen.finishes.is_empty() {
            break;
        }
        prop_assert!(!seen.running.is_empty(), "the machine waits for nothing");
        if let Some((at, stop)) = &case.stop
            && *at == ends_fed
        {
            seen.stops.push(stop.clone());
            queue.extend(m.on(Event::Stop(stop.clone())));
        }
        let running: Vec<usize> = seen.running.iter().copied().collect();
        let step = running[picks.next().unwrap() % running.len()];
        seen.running.remove(&step);
        let outcome = case.outcomes[step];
        seen.ended.insert(step, outcome);
        if outcome == Outcome::Failed && seen.stops.iter().any(|s| matches!(s, Stop::Window { .. }))
        {
            seen.failed_after_window.insert(step);
        }
        if outcome == Outcome::Failed
            && seen.first_halt.is_none()
            && case.specs[step].on_failure != FailurePolicy::Continue
        {
            seen.first_halt = Some(step);
        }
        ends_fed += 1;
        queue.extend(m.on(finished(step, outcome)));
        if let Some(compensate) = queue.iter().find_map(|c| match c {
            Command::Compensate { failed, .. } => Some(*failed),
            _ => None,
        }) {
            prop_assert_eq!(compensate, step);
        }
    }
    // Nothing is stuck: a run that did not stop saw every step through.
    if !seen.stopping() {
        for (i, spec) in case.specs.iter().enumerate() {
            if !spec.compensation {
                prop_assert!(
                    case.prior[i].is_some()
                        || seen.started.contains(&i)
                        || seen.blocked.contains(&i),
                    "step {i} never started nor blocked"
                );
            }
        }
    }
    // A compensation runs only for a failed step that names it.
    for &c in &seen.compensated {
        prop_assert!(seen.ended.iter().any(|(s, o)| *o == Outcome::Failed
            && matches!(&case.specs[*s].on_failure, FailurePolicy::Compensate(ids) if ids.contains(&c))));
    }
    // ... and every one named by a failed step ran.
    for (s, o) in &seen.ended {
        if *o == Outcome::Failed
            && !case.specs[*s].compensation
            && let FailurePolicy::Compensate(ids) = &case.specs[*s].on_failure
        {
            for c in ids {
                prop_assert!(
                    seen.compensated.contains(c)
                        || case.prior[*c].is_some()
                        || (seen.failed_after_window.contains(s) && case.specs[*c].mutates)
                );
            }
        }
    }
    Ok(seen)
}

/// The status and reason a run's outcomes imply, worked out from what the
/// driver saw (not from the machine's state).
fn expected(case: &Case, seen: &Seen) -> RunEnd {
    if let Some(Stop::End { status, reason }) =
        seen.stops.iter().find(|s| matches!(s, Stop::End { .. }))
    {
        return RunEnd {
            status: *status,
            reason: Some(reason.clone()),
        };
    }
    let normal_failed = seen
        .ended
        .iter()
        .any(|(s, o)| *o == Outcome::Failed && !case.specs[*s].compensation);
    let all_done =
        (0..case.specs.len()).all(|i| case.specs[i].compensation || seen.succeeded(case, i));
    // The first of a window close and a cancellation stands.
    let first_soft = seen.stops.iter().find(|s| !matches!(s, Stop::End { .. }));
    let halt_reason = seen.first_halt.map(|s| match &case.specs[s].on_failure {
        FailurePolicy::Abort => format!("step `s{s}` failed (on_failure: abort)"),
        FailurePolicy::Compensate(ids)
            if seen.failed_after_window.contains(&s)
                && ids.iter().any(|&c| case.specs[c].mutates && !seen.compensated.contains(&c) && case.prior[c].is_none()) =>
        {
            let mut held: Vec<String> = Vec::new();
            for &c in ids {
                let id = &case.specs[c].id;
                if case.specs[c].mutates && !seen.compensated.contains(&c) && case.prior[c].is_none() && !held.contains(id) {
                    held.push(id.clone());
                }
            }
            format!(
                "step `s{s}` failed after the change window closed; its compensation `{}` was not started (it changes things); resume in the next opening",
                held.join("`, `")
            )
        }
        _ => format!("step `s{s}` failed; ran its compensation"),
    });
    if let Some(Stop::Window { reason }) = first_soft {
        return if normal_failed {
            RunEnd {
                status: RunStatus::Failed,
                reason: Some(halt_reason.unwrap_or_else(|| reason.clone())),
            }
        } else if all_done {
            RunEnd {
                status: RunStatus::Succeeded,
                reason: None,
            }
        } else {
            RunEnd {
                status: RunStatus::WindowClosed,
                reason: Some(reason.clone()),
            }
        };
    }
    let cancelled = seen.stops.contains(&Stop::Cancelled);
    let reason = match halt_reason {
        Some(why) => Some(why),
        None if cancelled => Some("cancelled (Ctrl-C or SIGTERM)".to_owned()),
        None => None,
    };
    let status = if normal_failed {
        RunStatus::Failed
    } else if cancelled || seen.ended.values().any(|o| *o == Outcome::Cancelled) {
        RunStatus::Cancelled
    } else if (0..case.specs.len()).all(|i| case.specs[i].compensation || seen.succeeded(case, i)) {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    };
    RunEnd { status, reason }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn generated_runs_keep_every_invariant(case in case()) {
        let seen = drive(&case)?;
        prop_assert_eq!(seen.finishes.len(), 1);
        prop_assert_eq!(&seen.finishes[0], &expected(&case, &seen));
        // Without a stop or a failure, everything runs or was done before.
        if seen.stops.is_empty() && case.outcomes.iter().all(|o| *o == Outcome::Succeeded) {
            prop_assert_eq!(seen.finishes[0].status, RunStatus::Succeeded);
            prop_assert!(seen.compensated.is_empty() && seen.blocked.is_empty());
        }
    }

    #[test]
    fn resuming_from_what_a_run_achieved_never_restarts_a_done_step(case in case()) {
        let seen = drive(&case)?;
        // What the first run achieved becomes the prior of the resume.
        let prior: Vec<Option<Outcome>> = (0..case.specs.len())
            .map(|i| {
                let outcome = seen.ended.get(&i).copied().or(case.prior[i]);
                outcome.filter(|o| matches!(o, Outcome::Succeeded | Outcome::Skipped) && !case.specs[i].compensation)
            })
            .collect();
        let resumed = Case { prior, stop: None, ..case.clone() };
        let again = drive(&resumed)?;
        for i in &again.started {
            prop_assert!(!seen.succeeded(&case, *i), "step {i} succeeded and was started again");
        }
    }
}
