//! The executor: runs a [`Plan`](crate::plan::Plan) against a
//! [`CloudApi`](crate::cloud::CloudApi), journaling every step.
//!
//! ```text
//!   machine (pure: which step starts, is blocked, is compensated; how the run ends)
//!       ^ events      | commands
//!   scheduler ──spawns──> step task ──per item──> unit: call (retry, reconcile) | wait (poll) | sleep | approve
//!       ^                     |                        |
//!       └── StepDone ─────────┘                        └── journal (intent before a mutating call, result before dependents)
//!   events ──> EventSink (live view, JSON lines, journal)
//! ```
//!
//! Safety rules, in order of importance:
//! 1. A mutating call whose outcome is unknown (internal error, timeout,
//!    dropped connection, or a run killed while it was in flight) is never
//!    sent again blindly: the action's status call is read first, and the call
//!    is resent only if the status shows it did not take effect.
//! 2. The intent of a mutating call is committed to the journal before the
//!    request leaves, and a unit's result is committed before any step that
//!    needs it starts.
//! 3. Cancellation (Ctrl-C, run timeout) starts nothing new and lets calls in
//!    flight finish, so their outcome is known and journaled.
//! 4. Once the change window has closed, no mutating call is sent: no new
//!    step starts, no retry and no compensation that changes something;
//!    calls in flight finish and are journaled, reads and waits already
//!    running may finish, sleeps and approval gates stop. The run ends
//!    `window_closed`, resumable in the next opening (see [`window`]).
//!
//! Around the runner, the policy of starting and resuming a run: `launch`
//! (the change window's gate, run id, options recorded, first journal rows), `resume` (which target a
//! resume goes to, whether the approval carries over), `approve` (the plan's
//! approval and the answerability of `approve` steps), `world` (a
//! rehearsal's simulated world), `exit` (exit codes and failure messages).

pub mod abandon;
pub mod approval_policy;
pub mod approve;
mod changed;
mod drift;
pub mod event;
pub mod exit;
pub mod identity;
pub mod journal;
pub mod label;
pub mod launch;
pub mod ledger;
pub mod lock;
mod machine;
pub mod preapproval;
pub(crate) mod private;
pub mod ratelimit;
pub mod report;
pub mod resources;
pub mod resume;
pub mod retry;
pub mod run_report;
mod scheduler;
pub mod status;
pub mod time_scale;
mod unit;
pub mod waiting;
pub mod window;
pub mod world;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cloud::CloudApi;
use crate::plan::Plan;

pub use event::{EventSink, ItemRef, NoSink, Outcome, RunEvent};
pub use journal::{
    Heartbeat, Journal, JournalError, JournalUrl, PreApprovalRow, RunClaim, RunHolder, Unreachable,
    Waiting,
};
pub use ratelimit::RateLimits;
pub use scheduler::Runner;
pub use status::{AttemptKind, AttemptOutcome, RunStatus, StepStatus};
pub use time_scale::TimeScale;
pub use window::{Clock, ClockSleep, RunWindow, SystemClock, WindowRefusal};

/// How a run is carried out (beyond the plan itself).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunOptions {
    /// Run id (journal key).
    pub run_id: String,
    /// Steps in flight at once (the plan's `concurrency` unless overridden).
    pub concurrency: usize,
    /// Fail the run when it takes longer than this.
    pub run_timeout: Option<Duration>,
    /// Seed for retry jitter (`None`: random).
    pub seed: Option<u64>,
    /// Go on when a refreshed plan's resources drifted (journaled).
    #[serde(default)]
    pub allow_drift: bool,
    /// Compressed time (rehearsals against the in-process simulator only).
    #[serde(default)]
    pub time_scale: TimeScale,
}

/// The decision on an `approve` step (or on the whole plan).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalDecision {
    /// Go ahead.
    Approved {
        /// Who, as a label (`user@host`).
        by: String,
        /// What exactly was used: `terminal`, `--yes`, `--approve`.
        method: String,
        /// How it was given.
        channel: journal::ApprovalChannel,
        /// Who, verified through STS `GetCallerIdentity` (`None` when no
        /// identity could be had and the policy needs none).
        identity: Option<identity::VerifiedIdentity>,
    },
    /// Stop here.
    Refused {
        /// Why, and what to do.
        reason: String,
    },
}

impl ApprovalDecision {
    /// The journal row of an approval of `step` (`None`: the plan) bound to
    /// `digest`; `None` for a refusal (nothing is recorded for it).
    pub fn to_row(&self, step: Option<&str>, digest: &str) -> Option<journal::NewApproval> {
        match self {
            ApprovalDecision::Approved {
                by,
                method,
                channel,
                identity,
            } => Some(journal::NewApproval {
                step_id: step.map(str::to_owned),
                by: by.clone(),
                method: method.clone(),
                channel: *channel,
                digest: digest.to_owned(),
                identity: identity.clone(),
                verdict: journal::Verdict::Approved,
                reason: None,
            }),
            ApprovalDecision::Refused { .. } => None,
        }
    }
}

/// The future an [`Approver`] returns.
pub type ApprovalFuture<'a> = Pin<Box<dyn Future<Output = ApprovalDecision> + Send + 'a>>;

/// Decides `approve` steps: on a terminal it asks; otherwise `--approve STEP`.
pub trait Approver: Send + Sync {
    /// Asks for approval of `step`, showing `message`; bound to `digest`.
    fn approve<'a>(
        &'a self,
        step: &'a str,
        message: &'a str,
        digest: &'a str,
    ) -> ApprovalFuture<'a>;

    /// Whether this process can answer `step` (a flag, a terminal): when it
    /// cannot and the run leaves such gates to others (`--detach`,
    /// `--wait-approval`), the run waits for an approval from elsewhere
    /// instead of asking (see [`waiting`]).
    fn can_answer(&self, _step: &str) -> bool {
        true
    }
}

/// Approves only the steps named on the command line (`--approve STEP`).
pub struct FlagApprover {
    /// Approved step ids.
    pub steps: BTreeSet<String>,
    /// Who is running (user@host).
    pub by: String,
    /// Who is running, verified through STS (when known).
    pub identity: Option<identity::VerifiedIdentity>,
}

impl Approver for FlagApprover {
    fn approve<'a>(
        &'a self,
        step: &'a str,
        _message: &'a str,
        _digest: &'a str,
    ) -> ApprovalFuture<'a> {
        Box::pin(async move {
            if self.steps.contains(step) {
                ApprovalDecision::Approved {
                    by: self.by.clone(),
                    method: "--approve".to_owned(),
                    channel: journal::ApprovalChannel::Flag,
                    identity: self.identity.clone(),
                }
            } else {
                ApprovalDecision::Refused {
                    reason: format!(
                        "step `{step}` needs an approval: run on a terminal to answer, or pass --approve {step}"
                    ),
                }
            }
        })
    }

    fn can_answer(&self, step: &str) -> bool {
        self.steps.contains(step)
    }
}

/// What is known from an earlier attempt at this run (for `resume`).
#[derive(Clone, Debug, Default)]
pub struct Prior {
    /// Steps already finished as succeeded or skipped (not run again).
    pub done_steps: HashMap<String, (Outcome, Option<Value>)>,
    /// Units (step, item) already succeeded, with their outputs.
    pub done_units: HashMap<(String, usize), Value>,
    /// Units whose mutating call may have been applied (sent without a
    /// recorded answer, or answered with an unknown outcome): reconciled
    /// through the status call before anything is sent again.
    pub maybe_applied: BTreeSet<(String, usize)>,
    /// Units whose mutating call was answered `ok` but which never finished
    /// (the process died in between, or the `assert` failed): the journaled
    /// answer stands for the call, which is not sent again.
    pub answered: HashMap<(String, usize), Value>,
    /// Units of `maybe_applied` whose status check had begun: when its first
    /// read was sent. A resumed check goes on with the same settle window
    /// instead of starting a new one.
    pub checking_since: HashMap<(String, usize), jiff::Timestamp>,
    /// The gate the run was parked at (status `waiting_approval`): a
    /// resumed wait there keeps its deadline.
    pub waiting: Option<journal::Waiting>,
}

impl Prior {
    /// Rebuilds what a run achieved from its journal record.
    pub fn from_record(record: &journal::RunRecord, plan: &Plan) -> Prior {
        // A compensation that ran to success has undone what the step it
        // compensates had done before it started, unless that step succeeded
        // afterwards. Work the step did after the compensation still counts,
        // and so does everything when a compensation failed or never ran.
        let time = |t: Option<&str>| t.and_then(|t| t.parse::<jiff::Timestamp>().ok());
        let step_row: BTreeMap<&str, &journal::StepRow> = record
            .steps
            .iter()
            .map(|s| (s.step_id.as_str(), s))
            .collect();
        // Compensated step -> when its (successful) compensation started.
        let mut undone_before: BTreeMap<&str, jiff::Timestamp> = BTreeMap::new();
        // Compensation steps that ran: their work is spent, they run afresh.
        let mut spent: BTreeSet<&str> = BTreeSet::new();
        for step in &plan.steps {
            let crate::plan::OnFailure::Compensate(ids) = &step.on_failure else {
                continue;
            };
            let rows: Vec<&journal::StepRow> = ids
                .iter()
                .filter_map(|id| step_row.get(id.as_str()).copied())
                .collect();
            if rows.is_empty() {
                continue;
            }
            spent.extend(ids.iter().map(crate::plan::StepId::as_str));
            let all_succeeded =
                rows.len() == ids.len() && rows.iter().all(|r| r.status == StepStatus::Succeeded);
            let step_succeeded = step_row
                .get(step.id.as_str())
                .is_some_and(|r| r.status == StepStatus::Succeeded);
            if all_succeeded
                && !step_succeeded
                && let Some(started) = rows
                    .iter()
                    .filter_map(|r| time(r.started_at.as_deref()))
                    .min()
            {
                undone_before.insert(step.id.as_str(), started);
            }
        }
        let undone = |step: &str, at: Option<&str>| {
            spent.contains(step)
                || undone_before
                    .get(step)
                    .is_some_and(|&undo| time(at).is_none_or(|t| t < undo))
        };
        let mut prior = Prior {
            waiting: record
                .run
                .waiting
                .clone()
                .filter(|_| record.run.status == RunStatus::WaitingApproval),
            ..Prior::default()
        };
        for unit in &record.units {
            if unit.status == StepStatus::Succeeded
                && !undone(&unit.step_id, unit.finished_at.as_deref())
            {
                let output = unit
                    .output_json
                    .as_deref()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or(Value::Null);
                let item = usize::try_from(unit.item).unwrap_or(usize::MAX);
                prior
                    .done_units
                    .insert((unit.step_id.clone(), item), output);
            }
        }
        for step in &record.steps {
            // Only steps that succeeded, or were skipped by their own `when`,
            // are done; a step skipped because one it needs failed is
            // journaled as `blocked` and runs on resume.
            let Some(outcome) = step.status.outcome() else {
                continue;
            };
            // A step whose compensation undid it is not done, nor is a
            // spent compensation (it runs afresh if needed again).
            if !matches!(outcome, Outcome::Succeeded | Outcome::Skipped)
                || spent.contains(step.step_id.as_str())
                || undone_before.contains_key(step.step_id.as_str())
            {
                continue;
            }
            let output = plan.step(&step.step_id).and_then(|planned| {
                if outcome == Outcome::Skipped {
                    return None;
                }
                let outputs: BTreeMap<usize, Value> = prior
                    .done_units
                    .iter()
                    .filter(|((s, _), _)| *s == step.step_id)
                    .map(|((_, i), v)| (*i, v.clone()))
                    .collect();
                if planned.for_each.is_some() {
                    Some(Value::Array(outputs.into_values().collect()))
                } else {
                    outputs.into_values().next()
                }
            });
            prior
                .done_steps
                .insert(step.step_id.clone(), (outcome, output));
        }
        for a in &record.attempts {
            if a.kind != AttemptKind::Call || !a.risk.mutates() {
                continue;
            }
            let item = usize::try_from(a.item).unwrap_or(usize::MAX);
            let key = (a.step_id.clone(), item);
            if prior.done_units.contains_key(&key) {
                continue;
            }
            // An answer the compensation has since undone no longer stands,
            // except for an irreversible call, which nothing undoes.
            let answer_undone =
                a.risk != crate::cloud::Risk::Irreversible && undone(&a.step_id, Some(&a.sent_at));
            if a.outcome == AttemptOutcome::Ok && !answer_undone {
                // Answered: it took effect; its answer stands for it.
                let answer = a
                    .response_json
                    .as_deref()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or(Value::Null);
                prior.maybe_applied.remove(&key);
                prior.answered.insert(key, answer);
            } else if (a.outcome == AttemptOutcome::Pending
                || a.error_class == Some(crate::cloud::ErrorClass::UnknownOutcome))
                && !prior.answered.contains_key(&key)
            {
                // Sent without a recorded answer, or with an unknown outcome:
                // re-checked through the status call before anything is sent.
                prior.maybe_applied.insert(key);
            }
        }
        // The status check of a call began with the first read after the
        // call's last attempt (attempts are in the order they were sent).
        for a in &record.attempts {
            let item = usize::try_from(a.item).unwrap_or(usize::MAX);
            let key = (a.step_id.clone(), item);
            if !prior.maybe_applied.contains(&key) {
                continue;
            }
            match a.kind {
                AttemptKind::Call => {
                    prior.checking_since.remove(&key);
                }
                AttemptKind::Reconcile => {
                    if let Some(at) = time(Some(&a.sent_at)) {
                        prior.checking_since.entry(key).or_insert(at);
                    }
                }
                AttemptKind::Poll | AttemptKind::Precheck => {}
            }
        }
        prior
    }
}

/// How each step ended.
#[derive(Clone, Debug, Serialize)]
pub struct StepSummary {
    /// Step id.
    pub id: String,
    /// Outcome (`None`: never started because the run stopped first).
    pub outcome: Option<Outcome>,
    /// Error text or skip reason.
    pub detail: Option<String>,
    /// Fan-out size.
    pub items: Option<usize>,
    /// Wall time.
    pub elapsed_ms: u64,
    /// Whether it was done in an earlier attempt at this run.
    pub from_journal: bool,
}

/// The result of a run.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// Run id.
    pub run_id: String,
    /// How the run ended.
    pub outcome: RunStatus,
    /// Per step, in plan order.
    pub steps: Vec<StepSummary>,
    /// Wall time.
    pub elapsed_ms: u64,
    /// Why the run stopped early, if it did.
    pub stopped_because: Option<String>,
    /// Set when the run stopped because credentials could not be had (a
    /// refresh failed): why. Nothing was half-sent; the run is resumable.
    pub credentials_failure: Option<String>,
    /// How much the rehearsal compressed time (1: real time).
    pub time_scale: TimeScale,
}

/// Everything the step tasks share.
pub(crate) struct Shared {
    pub(crate) plan: Arc<Plan>,
    pub(crate) api: Arc<dyn CloudApi>,
    pub(crate) journal: Journal,
    pub(crate) sink: Arc<dyn EventSink>,
    pub(crate) limits: Arc<RateLimits>,
    pub(crate) approver: Arc<dyn Approver>,
    pub(crate) cancel: CancellationToken,
    pub(crate) options: RunOptions,
    pub(crate) prior: Prior,
    pub(crate) drift: drift::DriftGuard,
    /// Cancelled when the change window closes: no mutating call is sent
    /// after it (see [`window`]).
    pub(crate) window_closed: CancellationToken,
    /// Why the run stops once the window closed (when, and when it reopens).
    pub(crate) window_reason: std::sync::OnceLock<String>,
    /// Why credentials could not be had, once that stopped the run.
    pub(crate) credentials_failure: std::sync::Mutex<Option<String>>,
    /// The run's resource locks (see [`resources`]), when it takes any.
    pub(crate) resource_locks: std::sync::OnceLock<resources::ResourceLocks>,
    /// How gates this process cannot answer are answered (see [`waiting`]).
    pub(crate) elsewhere: waiting::Elsewhere,
    /// How the run ends whatever its steps do, once a gate decided it
    /// (rejected, or left parked with `--detach`).
    pub(crate) gate_end: std::sync::OnceLock<(RunStatus, String)>,
}

impl Shared {
    /// Stops the run because no credentials can be had for its calls: no
    /// new call starts, calls in flight finish.
    pub(crate) fn stop_for_credentials(&self, why: String) {
        self.credentials_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(why);
        self.cancel.cancel();
    }

    /// Ends the run with `status` once the steps in flight finish (a gate
    /// rejected, or left parked); `stop` also stops those steps (as Ctrl-C
    /// does: calls in flight finish).
    pub(crate) fn end_at_gate(&self, status: RunStatus, why: String, stop: bool) {
        let _ = self.gate_end.set((status, why));
        if stop {
            self.cancel.cancel();
        }
    }

    pub(crate) fn emit(&self, event: RunEvent) {
        self.journal.event(&self.options.run_id, &event);
        self.sink.emit(&event);
    }
}

#[cfg(test)]
mod tests;
