//! The statuses the journal stores, each defined once as an enum with its
//! text form (the words in the database, `runs`, `show` and JSON output).
//! Rows are parsed into these when they are read (`journal.rs`), so nothing
//! compares status strings.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Outcome;

/// Where a run stands: the journal's `runs.status`, `runbook runs`, `show`,
/// the run summary and the `run_finished` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// A process is carrying it out (or died without a word: see
    /// [`Interrupted`](RunStatus::Interrupted)).
    Running,
    /// Every step that had to run succeeded.
    Succeeded,
    /// A step failed, or the run timed out; `runbook resume` continues it.
    Failed,
    /// Stopped by Ctrl-C (or SIGTERM) before it finished; resumable.
    Cancelled,
    /// Stored as `running`, but no live process holds the run: the process
    /// died (killed, crashed, host rebooted). Never stored: observed when the
    /// journal is read ([`super::lock::observed_status`]); resumable.
    Interrupted,
    /// Stopped at an approval that is to be given from elsewhere
    /// (`runbook approve`); it goes on once approved.
    WaitingApproval,
    /// An approval was refused (`runbook reject`); nothing after it is sent.
    Rejected,
    /// The change window (the playbook's `window`, `--not-after`) closed
    /// before the run finished; resumable in the next opening.
    WindowClosed,
}

impl RunStatus {
    /// Every status, in declaration order.
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::Interrupted,
        RunStatus::WaitingApproval,
        RunStatus::Rejected,
        RunStatus::WindowClosed,
    ];

    /// The text form.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
            RunStatus::WaitingApproval => "waiting_approval",
            RunStatus::Rejected => "rejected",
            RunStatus::WindowClosed => "window_closed",
        }
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the run has ended (as stored): not running, not
    /// interrupted, not waiting for an approval. Only such runs are pruned.
    pub fn is_finished(self) -> bool {
        !matches!(
            self,
            RunStatus::Running | RunStatus::Interrupted | RunStatus::WaitingApproval
        )
    }
}

impl RunStatus {
    /// Whether the run is over for good as far as its resource locks go:
    /// succeeded, failed, cancelled or rejected. A run parked on purpose
    /// (window closed, waiting for an approval) keeps its locks; the
    /// journal's lock statements (`journal/locks.rs`) hold the same list.
    pub fn ends_run(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled | RunStatus::Rejected
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Where a step, or one unit (a step or a fan-out item), stands: the
/// journal's `steps.status` and `units.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Started and not yet ended.
    Running,
    /// Ended: done as asked.
    Succeeded,
    /// Ended: its `when` was false.
    Skipped,
    /// Ended: failed.
    Failed,
    /// Ended: cancelled before it finished.
    Cancelled,
    /// Not run because a step it needs did not succeed (steps only); a
    /// resume runs it once its inputs exist.
    Blocked,
}

impl StepStatus {
    /// Every status, in declaration order.
    pub const ALL: [StepStatus; 6] = [
        StepStatus::Running,
        StepStatus::Succeeded,
        StepStatus::Skipped,
        StepStatus::Failed,
        StepStatus::Cancelled,
        StepStatus::Blocked,
    ];

    /// The text form.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Blocked => "blocked",
        }
    }

    /// How it ended, when it ended by running (not `running`, not `blocked`).
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            StepStatus::Succeeded => Some(Outcome::Succeeded),
            StepStatus::Skipped => Some(Outcome::Skipped),
            StepStatus::Failed => Some(Outcome::Failed),
            StepStatus::Cancelled => Some(Outcome::Cancelled),
            StepStatus::Running | StepStatus::Blocked => None,
        }
    }
}

impl From<Outcome> for StepStatus {
    fn from(outcome: Outcome) -> StepStatus {
        match outcome {
            Outcome::Succeeded => StepStatus::Succeeded,
            Outcome::Skipped => StepStatus::Skipped,
            Outcome::Failed => StepStatus::Failed,
            Outcome::Cancelled => StepStatus::Cancelled,
        }
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What an attempt was for: the journal's `attempts.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptKind {
    /// The step's own call (the one that may change the cloud).
    Call,
    /// A status read of a `wait`.
    Poll,
    /// A status read that settles the unknown outcome of a mutating call.
    Reconcile,
    /// The status read just before a mutating call of a fan-out that a
    /// compensation undoes, or of a compensation (what the resource was
    /// before the call changed it).
    Precheck,
}

impl AttemptKind {
    /// Every kind, in declaration order.
    pub const ALL: [AttemptKind; 4] = [
        AttemptKind::Call,
        AttemptKind::Poll,
        AttemptKind::Reconcile,
        AttemptKind::Precheck,
    ];

    /// The text form.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptKind::Call => "call",
            AttemptKind::Poll => "poll",
            AttemptKind::Reconcile => "reconcile",
            AttemptKind::Precheck => "precheck",
        }
    }
}

impl fmt::Display for AttemptKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// How an attempt ended: the journal's `attempts.outcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Sent, no answer recorded (yet, or ever: the process died).
    Pending,
    /// Answered successfully.
    Ok,
    /// Answered with an error, or no answer came (see its error class).
    Error,
}

impl AttemptOutcome {
    /// Every outcome, in declaration order.
    pub const ALL: [AttemptOutcome; 3] = [
        AttemptOutcome::Pending,
        AttemptOutcome::Ok,
        AttemptOutcome::Error,
    ];

    /// The text form.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Pending => "pending",
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::Error => "error",
        }
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text forms are what serde writes, and parse back.
    #[test]
    fn text_forms_round_trip_and_match_serde() {
        fn check<T: Serialize + PartialEq + fmt::Debug>(v: T, text: &str) {
            assert_eq!(serde_json::to_value(&v).unwrap(), text, "{v:?}");
        }
        for s in RunStatus::ALL {
            check(s, s.as_str());
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
        }
        for s in StepStatus::ALL {
            check(s, s.as_str());
        }
        for k in AttemptKind::ALL {
            check(k, k.as_str());
        }
        for o in AttemptOutcome::ALL {
            check(o, o.as_str());
        }
        assert_eq!(RunStatus::parse("done"), None);
        for o in [
            Outcome::Succeeded,
            Outcome::Skipped,
            Outcome::Failed,
            Outcome::Cancelled,
        ] {
            assert_eq!(StepStatus::from(o).outcome(), Some(o));
            assert_eq!(StepStatus::from(o).as_str(), o.as_str());
        }
    }
}
