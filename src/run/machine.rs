//! The run's step-state machine: which step may start, which is blocked by a
//! step it needs, when a compensation runs, when the run stops starting work,
//! and how the run ends.
//!
//! It is pure: plain data in ([`Event`]), plain data out ([`Command`]); no
//! tokio, no journal, no clock. The scheduler (`scheduler.rs`) drives it: it
//! feeds each event (a step finished, the run was cancelled or timed out),
//! then carries out the commands in the order given (start a step, journal a
//! blocked one, run a compensation, end the run). Steps are named by their
//! index in the plan, which is a topological order.
//!
//! The rules, each tested below without I/O:
//! - A step starts once all its needs succeeded (or were skipped by their own
//!   `when`), at most once, never while the run is stopping, and never more
//!   than `concurrency` at a time (compensations run apart from that limit,
//!   one after another, while the scheduler waits for them).
//! - A step one of whose needs failed, was cancelled or was blocked is blocked
//!   (journaled as `blocked`; a resume runs it once its inputs exist).
//! - A failed step's `on_failure` decides: `continue` goes on, `abort` stops
//!   starting new work, `run: [...]` starts each listed compensation that has
//!   not run yet (each at most once in a run), then stops like `abort`.
//! - Stopping (`abort`, Ctrl-C, the run's time limit, a change window that
//!   closed) starts nothing new; steps in flight finish and report, and then
//!   the run ends exactly once.
//! - Once the change window has closed, a failed step's compensations that
//!   change something are not started (no change outside the window); the
//!   run ends `failed` and says so. One that only reads still runs.
//! - A run whose window closed ends `window_closed` (resumable in the next
//!   opening) unless a step failed (`failed`) or every step got done anyway
//!   by the steps already in flight (`succeeded`).
//! - Steps done in an earlier attempt at the run (resume) are never started.
//!
//! Where later work plugs in: a new reason to stop starting work while the
//! steps in flight finish (a lost lease, a run
//! parked at an approval given from elsewhere, `waiting_approval`) is a
//! [`Stop::End`] with its status and reason, fed like the run's time limit.

use std::collections::HashMap;

use super::{Outcome, RunStatus};
use crate::plan::{OnFailure, Plan};

/// What the machine knows of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StepSpec {
    /// Its id (for the reasons the run gives).
    pub(crate) id: String,
    /// The steps it needs, by index.
    pub(crate) needs: Vec<usize>,
    /// What its failure does to the run.
    pub(crate) on_failure: FailurePolicy,
    /// Runs only when a failed step's `on_failure` names it.
    pub(crate) compensation: bool,
    /// Whether it sends a mutating call (such a compensation does not start
    /// once the change window has closed).
    pub(crate) mutates: bool,
}

/// A step's `on_failure`, with compensations named by index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FailurePolicy {
    /// The run goes on; dependents are blocked.
    Continue,
    /// No new steps start.
    Abort,
    /// These compensations run (in order), then no new steps start.
    Compensate(Vec<usize>),
}

impl StepSpec {
    /// The specs of a plan's steps, in plan order. Names that are not steps
    /// of the plan (a validated plan has none) are left out.
    pub(crate) fn from_plan(plan: &Plan) -> Vec<StepSpec> {
        let index: HashMap<&str, usize> = plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let indices = |ids: &[crate::plan::StepId]| -> Vec<usize> {
            ids.iter()
                .filter_map(|id| index.get(id.as_str()).copied())
                .collect()
        };
        plan.steps
            .iter()
            .map(|step| StepSpec {
                id: step.id.0.clone(),
                needs: indices(&step.needs),
                on_failure: match &step.on_failure {
                    OnFailure::Continue => FailurePolicy::Continue,
                    OnFailure::Abort => FailurePolicy::Abort,
                    OnFailure::Compensate(ids) => FailurePolicy::Compensate(indices(ids)),
                },
                compensation: step.compensation,
                mutates: step.risk.mutates(),
            })
            .collect()
    }
}

/// Where a step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StepState {
    /// Not started (yet, or ever if the run stops first).
    Pending,
    /// Started; its end has not been fed back.
    Running,
    /// Ended (in this run, or in an earlier attempt at it).
    Done(Outcome),
    /// Not run because a step it needs failed, was cancelled or was blocked.
    Blocked,
}

/// A reason to stop starting new work; the steps in flight finish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Ctrl-C or SIGTERM: the run ends `cancelled` (or `failed` when a step
    /// failed), and says so unless a failure already said why it stopped.
    Cancelled,
    /// The change window closed: the run ends `window_closed` with this
    /// reason, unless a step failed or every step got done anyway.
    Window {
        /// Why it stopped (when the window closed).
        reason: String,
    },
    /// The run ends with this status and reason whatever its steps did: the
    /// run's time limit (`failed`). The first `End` fed stands.
    End {
        /// How the run ends.
        status: RunStatus,
        /// Why it stopped.
        reason: String,
    },
}

/// What happened, fed to [`Machine::on`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The run begins (or resumes).
    Begin,
    /// A started step (or compensation) ended.
    Finished {
        /// Its index.
        step: usize,
        /// How it ended.
        outcome: Outcome,
    },
    /// Stop starting new work.
    Stop(Stop),
}

/// What the driver is to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Start step `0` (spawn it; it reports back with [`Event::Finished`]).
    Start(usize),
    /// Step `step` will not run because `blocker`, which it needs, did not
    /// succeed: journal it as blocked.
    Block {
        /// The blocked step.
        step: usize,
        /// The need that failed, was cancelled or was blocked.
        blocker: usize,
    },
    /// Run compensation `step` for the failed step `failed`, and feed its end
    /// back before anything else.
    Compensate {
        /// The compensation.
        step: usize,
        /// The step whose failure it compensates.
        failed: usize,
    },
    /// The run is over: nothing is running and nothing more will start.
    Finish(RunEnd),
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunEnd {
    /// Its status.
    pub(crate) status: RunStatus,
    /// Why it stopped early, if it did.
    pub(crate) reason: Option<String>,
}

/// The state of every step of one run, and the rules that move it.
#[derive(Clone, Debug)]
pub(crate) struct Machine {
    specs: Vec<StepSpec>,
    state: Vec<StepState>,
    concurrency: usize,
    /// Steps started and not ended (compensations not counted).
    running: usize,
    /// Compensations handed out and not ended.
    compensating: usize,
    /// Why no new step starts, when a failure decided it.
    halted: Option<String>,
    /// A stop fed from outside.
    stop: Option<Stop>,
    /// A (non-compensation) step failed in this run.
    failed: bool,
    /// The run has ended ([`Command::Finish`] was given).
    ended: bool,
}

impl Machine {
    /// A machine for `specs` (in plan order), running at most `concurrency`
    /// steps at once; `prior[i]` is how step `i` ended in an earlier attempt
    /// at this run, if it is done (it is not started again).
    pub(crate) fn new(
        specs: Vec<StepSpec>,
        concurrency: usize,
        prior: &[Option<Outcome>],
    ) -> Machine {
        let state = (0..specs.len())
            .map(|i| match prior.get(i).copied().flatten() {
                Some(outcome) => StepState::Done(outcome),
                None => StepState::Pending,
            })
            .collect();
        Machine {
            specs,
            state,
            concurrency: concurrency.max(1),
            running: 0,
            compensating: 0,
            halted: None,
            stop: None,
            failed: false,
            ended: false,
        }
    }

    /// Where step `step` stands.
    #[cfg(test)]
    pub(crate) fn state(&self, step: usize) -> StepState {
        self.state[step]
    }

    /// Feeds `event`; returns what to do now, in order. After
    /// [`Command::Finish`] it returns nothing more. An end fed for a step
    /// that is not running is ignored.
    pub(crate) fn on(&mut self, event: Event) -> Vec<Command> {
        if self.ended {
            return Vec::new();
        }
        let mut commands = Vec::new();
        match event {
            Event::Begin => {}
            Event::Stop(stop) => self.stop_with(stop),
            Event::Finished { step, outcome } => {
                if self.state.get(step) != Some(&StepState::Running) {
                    return Vec::new();
                }
                self.state[step] = StepState::Done(outcome);
                if self.specs[step].compensation {
                    self.compensating -= 1;
                } else {
                    self.running -= 1;
                    if outcome == Outcome::Failed {
                        self.failed(step, &mut commands);
                    }
                }
            }
        }
        self.advance(&mut commands);
        commands
    }

    /// The first stop stands, except that an `End` replaces a `Cancelled`
    /// or a `Window`.
    fn stop_with(&mut self, stop: Stop) {
        match (&self.stop, &stop) {
            (None, _) | (Some(Stop::Cancelled | Stop::Window { .. }), Stop::End { .. }) => {
                self.stop = Some(stop);
            }
            (Some(_), _) => {}
        }
    }

    /// Whether the change window has closed on the run.
    fn window_closed(&self) -> bool {
        matches!(self.stop, Some(Stop::Window { .. }))
    }

    /// A step failed: its `on_failure` decides.
    fn failed(&mut self, step: usize, commands: &mut Vec<Command>) {
        self.failed = true;
        let id = &self.specs[step].id;
        match &self.specs[step].on_failure {
            FailurePolicy::Continue => {}
            FailurePolicy::Abort => {
                self.halted
                    .get_or_insert_with(|| format!("step `{id}` failed (on_failure: abort)"));
            }
            FailurePolicy::Compensate(ids) => {
                let mut held: Vec<&str> = Vec::new();
                for &j in ids {
                    if self.window_closed()
                        && self.specs.get(j).is_some_and(|s| s.mutates)
                        && self.state.get(j) == Some(&StepState::Pending)
                        && !held.contains(&self.specs[j].id.as_str())
                    {
                        held.push(self.specs[j].id.as_str());
                    }
                }
                let why = if held.is_empty() {
                    format!("step `{id}` failed; ran its compensation")
                } else {
                    format!(
                        "step `{id}` failed after the change window closed; its compensation `{}` was not started (it changes things); resume in the next opening",
                        held.join("`, `")
                    )
                };
                self.halted.get_or_insert(why);
                let window_closed = self.window_closed();
                for &j in ids {
                    if window_closed && self.specs[j].mutates {
                        continue;
                    }
                    if self.state.get(j) == Some(&StepState::Pending) {
                        self.state[j] = StepState::Running;
                        self.compensating += 1;
                        commands.push(Command::Compensate {
                            step: j,
                            failed: step,
                        });
                    }
                }
            }
        }
    }

    /// Blocks and starts what it can, in plan order; ends the run when
    /// nothing is in flight and nothing more can start.
    fn advance(&mut self, commands: &mut Vec<Command>) {
        if self.halted.is_none() && self.stop.is_none() {
            for i in 0..self.specs.len() {
                if self.state[i] != StepState::Pending || self.specs[i].compensation {
                    continue;
                }
                let needs = &self.specs[i].needs;
                let blocker = needs.iter().copied().find(|&j| {
                    matches!(
                        self.state[j],
                        StepState::Blocked | StepState::Done(Outcome::Failed | Outcome::Cancelled)
                    )
                });
                if let Some(blocker) = blocker {
                    self.state[i] = StepState::Blocked;
                    commands.push(Command::Block { step: i, blocker });
                    continue;
                }
                if !needs.iter().all(|&j| succeeded(self.state[j])) {
                    continue;
                }
                if self.running >= self.concurrency {
                    break;
                }
                self.state[i] = StepState::Running;
                self.running += 1;
                commands.push(Command::Start(i));
            }
        }
        if self.running == 0 && self.compensating == 0 {
            self.ended = true;
            commands.push(Command::Finish(self.end()));
        }
    }

    /// How the run ends, from what its steps did and why it stopped.
    fn end(&self) -> RunEnd {
        if let Some(Stop::End { status, reason }) = &self.stop {
            return RunEnd {
                status: *status,
                reason: Some(reason.clone()),
            };
        }
        let all_done = self
            .specs
            .iter()
            .zip(&self.state)
            .all(|(spec, s)| spec.compensation || succeeded(*s));
        if let Some(Stop::Window { reason }) = &self.stop {
            return if self.failed {
                RunEnd {
                    status: RunStatus::Failed,
                    reason: Some(self.halted.clone().unwrap_or_else(|| reason.clone())),
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
        let cancelled = self.stop == Some(Stop::Cancelled);
        let reason = match (&self.halted, cancelled) {
            (Some(why), _) => Some(why.clone()),
            (None, true) => Some("cancelled (Ctrl-C or SIGTERM)".to_owned()),
            (None, false) => None,
        };
        let any_cancelled = self.state.contains(&StepState::Done(Outcome::Cancelled));
        let status = if self.failed {
            RunStatus::Failed
        } else if cancelled || any_cancelled {
            RunStatus::Cancelled
        } else if all_done {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        RunEnd { status, reason }
    }
}

/// Whether a step is done in a way its dependents can build on.
fn succeeded(state: StepState) -> bool {
    matches!(
        state,
        StepState::Done(Outcome::Succeeded | Outcome::Skipped)
    )
}

#[cfg(test)]
mod tests;
