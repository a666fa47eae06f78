//! A run parked at an approval given from elsewhere (`waiting_approval`).
//!
//! A gate (the plan's approval, or an `approve` step) that this process
//! cannot answer (no `--yes`/`--approve` for it, no terminal asked) is left
//! to someone else when the run was started with `--detach` or
//! `--wait-approval`. The run is then *parked*: the journal says it waits at that gate
//! (`waiting_approval`, the gate, since when, until when), the
//! `approval_needed` notification goes out with the exact `runbook approve`
//! command, and either this process waits, reading the journal every
//! [`POLL_EVERY`] until the gate is decided or its time is up, or (with
//! `--detach`) it lets go of the run and exits 7, and `runbook resume`
//! goes on once it is approved.
//!
//! A gate is decided by the journal's approval rows, which are append-only:
//! a rejection of the gate (bound to the run's plan digest) ends the run
//! `rejected`; otherwise an approval of the gate with that digest lets it go
//! on. A wait that times out fails the run (resumable: a resume parks it
//! again, with a new deadline). Ctrl-C while waiting cancels the run, as
//! anywhere else.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::approval_policy;
use super::identity::VerifiedIdentity;
use super::journal::{
    ApprovalChannel, ApprovalRow, IdentityRecord, Journal, JournalError, NewApproval, RunRecord,
    Verdict as RowVerdict, Waiting,
};
use super::{RunEvent, RunStatus};
use crate::cloud::principal::Principal;
use crate::error::{Error, ExitCode};
use crate::notify::{Notification, Notifier};
use crate::plan::{ApprovalPolicy, NotifyEvent, Plan, StepKind};

/// How long a gate is waited for when nothing says otherwise: the plan's
/// approval (`--approval-timeout`), or an `approve` step without `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// How often a waiting process reads the journal.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// Which approval a run waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// The plan's approval, before anything is sent.
    Plan,
    /// An `approve` step.
    Step(String),
}

impl Gate {
    /// As the journal's `runs.waiting_gate` holds it: `plan`, or
    /// `step:ID` (a step may be called `plan`).
    pub fn journaled(&self) -> String {
        match self {
            Gate::Plan => "plan".to_owned(),
            Gate::Step(s) => format!("step:{s}"),
        }
    }

    /// Reads [`Gate::journaled`] back.
    pub fn from_journal(s: &str) -> Gate {
        match s.strip_prefix("step:") {
            Some(step) => Gate::Step(step.to_owned()),
            None => Gate::Plan,
        }
    }

    /// The `approve` step, if it is one.
    pub fn step(&self) -> Option<&str> {
        match self {
            Gate::Plan => None,
            Gate::Step(s) => Some(s),
        }
    }

    /// `the plan` or ``step `ID` ``, for messages.
    pub fn describe(&self) -> String {
        match self {
            Gate::Plan => "the plan".to_owned(),
            Gate::Step(s) => format!("step `{s}`"),
        }
    }
}

/// How a run goes about the gates this process cannot answer.
#[derive(Clone, Default)]
pub struct Elsewhere {
    /// They are left to someone else (`--detach`, `--wait-approval`);
    /// otherwise such a gate is refused before the run starts, as without
    /// this.
    pub asked: bool,
    /// Park the run and exit at once (`--detach`) instead of waiting.
    pub detach: bool,
    /// How long the plan's approval is waited for (and an `approve` step
    /// without its own `timeout`).
    pub timeout: Option<Duration>,
    /// The journal as the approve command names it (without a password).
    pub journal: String,
    /// Where `approval_needed` goes.
    pub notifier: Option<Arc<Notifier>>,
}

impl std::fmt::Debug for Elsewhere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elsewhere")
            .field("asked", &self.asked)
            .field("detach", &self.detach)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What the journal's approval rows say of a gate.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Approved: the rows that approve it.
    Approved(Vec<ApprovalRow>),
    /// Rejected (a rejection stands whatever else was given).
    Rejected {
        /// Who rejected it.
        by: String,
        /// Why.
        reason: String,
    },
    /// Neither yet.
    Pending,
}

/// Whether `row` is about `gate` of the plan `digest`.
fn about(row: &ApprovalRow, gate: &Gate, digest: &str) -> bool {
    row.digest == digest && row.step_id.as_deref() == gate.step()
}

/// Who must approve `gate` of `plan` (`None`: anyone, once).
pub fn policy_of<'p>(plan: &'p Plan, gate: &Gate) -> Option<&'p ApprovalPolicy> {
    match gate {
        Gate::Plan => plan.approval.as_ref(),
        Gate::Step(s) => match plan.step(s).map(|p| &p.kind) {
            Some(StepKind::Approve { policy, .. }) => policy.as_ref(),
            _ => None,
        },
    }
}

/// Who started the run `record`, verified (`None` when STS could not tell).
pub fn starter(record: &RunRecord) -> Option<Principal> {
    record.starter().and_then(IdentityRecord::principal)
}

/// What the rows `approvals` (of one run, started by `starter`) say of
/// `gate` of `plan`: rejected when a rejection of it exists; approved when
/// its approvals meet its policy (distinct verified principals, the
/// starter's own only when allowed; without a policy, any one approval);
/// else pending. Rows of another digest never count.
pub fn verdict(
    approvals: &[ApprovalRow],
    plan: &Plan,
    gate: &Gate,
    starter: Option<&Principal>,
) -> Verdict {
    let rows: Vec<&ApprovalRow> = approvals
        .iter()
        .filter(|a| about(a, gate, &plan.digest))
        .collect();
    if let Some(r) = rows.iter().find(|r| r.verdict == RowVerdict::Rejected) {
        return Verdict::Rejected {
            by: who_of(r),
            reason: r.reason.clone().unwrap_or_default(),
        };
    }
    let approved: Vec<&ApprovalRow> = rows
        .into_iter()
        .filter(|r| r.verdict == RowVerdict::Approved)
        .collect();
    let met = match policy_of(plan, gate) {
        None => !approved.is_empty(),
        Some(policy) => {
            let given: Vec<Principal> = approved
                .iter()
                .filter_map(|r| r.identity.as_ref().and_then(IdentityRecord::principal))
                .collect();
            approval_policy::tally(Some(policy), starter, &given).is_met()
        }
    };
    if met {
        Verdict::Approved(approved.into_iter().cloned().collect())
    } else {
        Verdict::Pending
    }
}

/// Who gave `row`: the verified ARN and `user@host`, or `user@host`.
pub fn who_of(row: &ApprovalRow) -> String {
    match &row.identity {
        Some(i) => format!("{} ({})", i.arn, row.approved_by),
        None => row.approved_by.clone(),
    }
}

/// One approval or rejection as `show` and the run's summary print it:
/// `approved: step `go` by ARN (user@host) via approve (command) at T
/// (digest D)`, with a rejection's reason.
pub fn approval_line(a: &ApprovalRow) -> String {
    let what = a
        .step_id
        .as_deref()
        .map_or_else(|| "the plan".to_owned(), |s| format!("step `{s}`"));
    let verb = match a.verdict {
        RowVerdict::Approved => "approved",
        RowVerdict::Rejected => "rejected",
    };
    let reason = a
        .reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    let request = a
        .identity
        .as_ref()
        .and_then(|i| i.request_id.as_deref())
        .map(|r| format!(", GetCallerIdentity RequestId {r}"))
        .unwrap_or_default();
    format!(
        "{verb}: {what} by {} via {} ({}) at {} (digest {}{request}){reason}",
        who_of(a),
        a.method,
        a.channel.as_str(),
        a.at,
        &a.digest[..a.digest.len().min(12)]
    )
}

/// The first rejection among `approvals` of the plan `digest`: which
/// gate, by whom, why.
pub fn first_rejection(approvals: &[ApprovalRow], digest: &str) -> Option<(Gate, String, String)> {
    approvals
        .iter()
        .filter(|a| a.digest == digest && a.verdict == RowVerdict::Rejected)
        .map(|a| {
            let gate = a.step_id.clone().map_or(Gate::Plan, Gate::Step);
            (gate, who_of(a), a.reason.clone().unwrap_or_default())
        })
        .next()
}

/// `runbook approve RUN_ID [STEP] --journal URL`: what approves `gate` of
/// run `run_id` from any host that reaches the journal.
pub fn command(run_id: &str, gate: &Gate, journal: &str) -> String {
    let step = gate.step().map(|s| format!(" {s}")).unwrap_or_default();
    format!("runbook approve {run_id}{step} --journal {journal}")
}

/// `waiting for an approval of step `go` since T (until U): runbook approve
/// ...`: what `runs` and `show` say of a run that waits (`None` for a run
/// that does not); `journal` is the journal as the command names it.
pub fn waiting_line(run: &super::journal::RunRow, journal: &str) -> Option<String> {
    let w = run
        .waiting
        .as_ref()
        .filter(|_| run.status == RunStatus::WaitingApproval)?;
    let gate = Gate::from_journal(&w.gate);
    let until = w
        .until
        .as_ref()
        .map(|u| format!(" (until {u})"))
        .unwrap_or_default();
    let process = if run.holder.holder_alive(super::journal::now_ms()) {
        format!(
            "a process waits on host {}",
            run.holder.host.as_deref().unwrap_or("?")
        )
    } else {
        format!(
            "parked, no process waits: `runbook resume {}` once approved",
            run.id
        )
    };
    Some(format!(
        "waiting for an approval of {} since {}{until}; {process}; approve with: {}",
        gate.describe(),
        w.since,
        command(&run.id, &gate, journal)
    ))
}

/// The waiting of a run as JSON (`runs --json`, `show --json`): gate, step,
/// since, until; `null` for a run that does not wait.
pub fn waiting_json(run: &super::journal::RunRow) -> serde_json::Value {
    match run
        .waiting
        .as_ref()
        .filter(|_| run.status == RunStatus::WaitingApproval)
    {
        Some(w) => {
            let gate = Gate::from_journal(&w.gate);
            serde_json::json!({
                "gate": if gate == Gate::Plan { "plan" } else { "step" },
                "step": gate.step(),
                "since": w.since,
                "until": w.until,
            })
        }
        None => serde_json::Value::Null,
    }
}

/// An answer given with `runbook approve` or `runbook reject`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Approve the gate.
    Approve,
    /// Reject it: the run ends `rejected`.
    Reject {
        /// Why.
        reason: String,
    },
}

/// Why a gate of a run cannot be answered now, and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub hint: String,
}

/// Whether `gate` of the run `record` (of plan `plan`) can be answered at
/// `now`: the run waits at that very gate, its wait has not timed out, and
/// the gate is not decided yet.
pub fn check_answerable(
    record: &RunRecord,
    plan: &Plan,
    gate: &Gate,
    now: jiff::Timestamp,
) -> Result<(), Refusal> {
    let run_id = &record.run.id;
    let refuse = |message: String, hint: String| Err(Refusal { message, hint });
    if let Gate::Step(s) = gate
        && !matches!(
            plan.step(s).map(|p| &p.kind),
            Some(crate::plan::StepKind::Approve { .. })
        )
    {
        let gates: Vec<&str> = plan
            .steps
            .iter()
            .filter(|p| matches!(p.kind, crate::plan::StepKind::Approve { .. }))
            .map(|p| p.id.as_str())
            .collect();
        return refuse(
            format!("the plan of run {run_id} has no `approve` step `{s}`; nothing was recorded"),
            if gates.is_empty() {
                "leave STEP out to answer the plan's approval".to_owned()
            } else {
                format!(
                    "its `approve` steps: {}; leave STEP out for the plan's approval",
                    gates.join(", ")
                )
            },
        );
    }
    let waits_at = record
        .run
        .waiting
        .as_ref()
        .filter(|_| record.run.status == RunStatus::WaitingApproval);
    let Some(waits_at) = waits_at else {
        return refuse(
            format!(
                "run {run_id} is not waiting for an approval (it is {}); nothing was recorded",
                record.run.status
            ),
            "an approval from elsewhere is given while the run waits at its gate (`runbook runs --status waiting_approval`)".to_owned(),
        );
    };
    let waiting_gate = Gate::from_journal(&waits_at.gate);
    if &waiting_gate != gate {
        let step = waiting_gate
            .step()
            .map(|s| format!(" {s}"))
            .unwrap_or_default();
        return refuse(
            format!(
                "run {run_id} waits for an approval of {}, not of {}; nothing was recorded",
                waiting_gate.describe(),
                gate.describe()
            ),
            format!("runbook approve {run_id}{step}"),
        );
    }
    if let Some(until) = waits_at
        .until
        .as_deref()
        .and_then(|u| u.parse::<jiff::Timestamp>().ok())
        && now > until
    {
        return refuse(
            format!(
                "the wait of run {run_id} for an approval of {} timed out at {until}; nothing was recorded",
                gate.describe()
            ),
            format!(
                "`runbook resume {run_id}` waits for it again (a new deadline); approve it then"
            ),
        );
    }
    match verdict(&record.approvals, plan, gate, starter(record).as_ref()) {
        Verdict::Rejected { by, reason } => refuse(
            format!(
                "{} of run {run_id} was rejected already by {by} ({reason}); nothing was recorded",
                gate.describe()
            ),
            "a rejection is final".to_owned(),
        ),
        Verdict::Approved(rows) => refuse(
            format!(
                "{} of run {run_id} is approved already (by {}); nothing was recorded",
                gate.describe(),
                rows.iter().map(who_of).collect::<Vec<_>>().join(", ")
            ),
            format!(
                "the run goes on by itself if a process waits for it; else `runbook resume {run_id}`"
            ),
        ),
        Verdict::Pending => Ok(()),
    }
}

/// Whether `approver` may approve `gate` of the run `record` (of `plan`):
/// the gate's policy (`approvers`, self-approval, one approval per
/// principal) against the approvals given so far. Anyone verified may
/// reject.
pub fn may_approve(
    record: &RunRecord,
    plan: &Plan,
    gate: &Gate,
    approver: &Principal,
) -> Result<(), Refusal> {
    let given: Vec<Principal> = record
        .approvals
        .iter()
        .filter(|a| about(a, gate, &plan.digest) && a.verdict == RowVerdict::Approved)
        .filter_map(|a| a.identity.as_ref().and_then(IdentityRecord::principal))
        .collect();
    let policy = policy_of(plan, gate);
    approval_policy::may_approve(policy, starter(record).as_ref(), approver, &given).map_err(|r| {
        Refusal {
            message: format!(
                "{approver} may not approve {} of run {}: {r}; nothing was recorded",
                gate.describe(),
                record.run.id
            ),
            hint: policy.map_or_else(
                || "another person approves it".to_owned(),
                |p| format!("it needs {}", p.describe()),
            ),
        }
    })
}

/// Journals `answer` to `gate` of run `run_id` (plan `digest`) by `by`,
/// verified as `identity`: an append-only row (channel `command`). A
/// rejection of a run no live process holds also ends it `rejected` at
/// once.
pub async fn record_answer(
    journal: &Journal,
    run_id: &str,
    gate: &Gate,
    digest: &str,
    (by, identity): (&str, &VerifiedIdentity),
    answer: &Answer,
) -> Result<(), JournalError> {
    let (method, verdict, reason) = match answer {
        Answer::Approve => ("approve", RowVerdict::Approved, None),
        Answer::Reject { reason } => ("reject", RowVerdict::Rejected, Some(reason.clone())),
    };
    journal
        .record_approval(
            run_id,
            &NewApproval {
                step_id: gate.step().map(str::to_owned),
                by: by.to_owned(),
                method: method.to_owned(),
                channel: ApprovalChannel::Command,
                digest: digest.to_owned(),
                identity: Some(identity.clone()),
                verdict,
                reason,
            },
        )
        .await?;
    match answer {
        Answer::Approve => Ok(()),
        Answer::Reject { .. } => {
            let record = journal.load_run(run_id)?;
            if !record.run.holder.holder_alive(super::journal::now_ms())
                && record.run.status == RunStatus::WaitingApproval
            {
                journal
                    .set_run_status(run_id, RunStatus::Rejected, true)
                    .await?;
            }
            Ok(())
        }
    }
}

/// How a wait at a gate ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Waited {
    /// Approved: the rows that approve it.
    Approved(Vec<ApprovalRow>),
    /// Rejected.
    Rejected {
        /// Who.
        by: String,
        /// Why.
        reason: String,
    },
    /// Its time was up: the message says since when.
    TimedOut(String),
    /// Left parked (`--detach`).
    Detached,
    /// Ctrl-C, SIGTERM, `runbook cancel`, or the change window closed.
    Cancelled,
}

/// One park: which run, which gate, and how it waits.
pub struct Park<'a> {
    /// The journal.
    pub journal: &'a Journal,
    /// The run.
    pub run_id: &'a str,
    /// Its plan.
    pub plan: &'a Plan,
    /// The gate.
    pub gate: Gate,
    /// How it is answered.
    pub elsewhere: &'a Elsewhere,
    /// How long it waits (the step's `timeout`, else the plan's).
    pub timeout: Duration,
    /// Where events go (the journal, the live view).
    pub emit: &'a (dyn Fn(&RunEvent) + Send + Sync),
}

impl Park<'_> {
    /// Parks the run at the gate (keeping the deadline of `before`, the
    /// wait it was left in, when that was at this same gate), announces it
    /// (event, `approval_needed`), then waits for a decision unless
    /// detached.
    pub async fn wait(
        &self,
        before: Option<&Waiting>,
        cancel: &CancellationToken,
    ) -> Result<Waited, JournalError> {
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| jiff::Timestamp::now());
        let kept = before
            .filter(|w| Gate::from_journal(&w.gate) == self.gate)
            .and_then(|w| Some((w.since.clone(), w.until.as_ref()?.parse().ok()?)));
        let (since, until) = kept.unwrap_or_else(|| {
            let span = jiff::SignedDuration::try_from(self.timeout)
                .unwrap_or(jiff::SignedDuration::from_hours(24 * 365));
            (
                now.to_string(),
                now.checked_add(span).unwrap_or(jiff::Timestamp::MAX),
            )
        });
        // Decided already (approved while parked, or rejected)?
        if let Some(done) = self.decided()? {
            return Ok(done);
        }
        self.journal
            .set_waiting(
                self.run_id,
                &self.gate.journaled(),
                &since,
                Some(&until.to_string()),
            )
            .await?;
        let command = command(self.run_id, &self.gate, &self.elsewhere.journal);
        (self.emit)(&RunEvent::WaitingApproval {
            step: self.gate.step().map(str::to_owned),
            since: since.clone(),
            until: Some(until.to_string()),
            command: command.clone(),
            detached: self.elsewhere.detach,
        });
        self.announce(command).await;
        if self.elsewhere.detach {
            return Ok(Waited::Detached);
        }
        loop {
            if let Some(done) = self.decided()? {
                return Ok(done);
            }
            if jiff::Timestamp::now() >= until {
                return Ok(Waited::TimedOut(format!(
                    "no approval of {} came between {since} and {until}",
                    self.gate.describe()
                )));
            }
            tokio::select! {
                () = tokio::time::sleep(POLL_EVERY) => {}
                () = cancel.cancelled() => return Ok(Waited::Cancelled),
            }
        }
    }

    /// The gate's decision in the journal, if there is one.
    fn decided(&self) -> Result<Option<Waited>, JournalError> {
        let record = self.journal.load_run(self.run_id)?;
        let starter = starter(&record);
        Ok(
            match verdict(&record.approvals, self.plan, &self.gate, starter.as_ref()) {
                Verdict::Approved(rows) => Some(Waited::Approved(rows)),
                Verdict::Rejected { by, reason } => Some(Waited::Rejected { by, reason }),
                Verdict::Pending => None,
            },
        )
    }

    /// Sends `approval_needed` (with `command`) to whoever wants it; each
    /// delivery is an event (journaled and shown). Never fails the run.
    async fn announce(&self, command: String) {
        let Some(notifier) = &self.elsewhere.notifier else {
            return;
        };
        if !notifier.wants(NotifyEvent::ApprovalNeeded) {
            return;
        }
        let n = Notification::approval_needed(
            self.run_id,
            &self.plan.name,
            &self.plan.digest,
            self.gate.step(),
            command,
        );
        for d in notifier.send(&n).await {
            (self.emit)(&RunEvent::from(d));
        }
    }
}

/// Ends a run whose plan approval was waited for and not given (see
/// [`Park::wait`]): journals how it ends and returns the exit (`Ok` for the
/// run to go on, once approved).
pub async fn end_plan_wait(
    journal: &Journal,
    run_id: &str,
    holder: &str,
    waited: Waited,
) -> Result<Option<Error>, JournalError> {
    let (status, error) = match waited {
        Waited::Approved(_) => return Ok(None),
        Waited::Detached => {
            journal.release_run(run_id, holder).await?;
            return Ok(Some(detached(run_id, &Gate::Plan)));
        }
        Waited::Rejected { by, reason } => (
            RunStatus::Rejected,
            rejected(run_id, &Gate::Plan, &by, &reason),
        ),
        Waited::TimedOut(why) => (
            RunStatus::Failed,
            Error::new(
                ExitCode::StepFailed,
                format!("run {run_id} failed: {why}; nothing was sent"),
            )
            .with_hint(format!(
                "`runbook resume {run_id}` waits for it again (a new deadline)"
            )),
        ),
        Waited::Cancelled => (
            RunStatus::Cancelled,
            Error::new(
                ExitCode::Cancelled,
                format!(
                    "run {run_id} was cancelled while it waited for the plan's approval; nothing was sent"
                ),
            )
            .with_hint(format!("`runbook resume {run_id}` waits for it again")),
        ),
    };
    journal.set_run_status(run_id, status, true).await?;
    journal.flush().await?;
    Ok(Some(error))
}

/// The exit of a run left parked at `gate` (`--detach`): 7.
pub fn detached(run_id: &str, gate: &Gate) -> Error {
    Error::new(
        ExitCode::WaitingApproval,
        format!(
            "run {run_id} waits for an approval of {} from elsewhere (parked in the journal)",
            gate.describe()
        ),
    )
    .with_hint(format!(
        "once it is approved (`runbook approve {run_id}{}`), `runbook resume {run_id}` continues it; `runbook reject {run_id}{} --reason TEXT` ends it",
        gate.step().map(|s| format!(" {s}")).unwrap_or_default(),
        gate.step().map(|s| format!(" {s}")).unwrap_or_default(),
    ))
}

/// The exit of a run whose approval of `gate` `by` rejected: 6.
pub fn rejected(run_id: &str, gate: &Gate, by: &str, reason: &str) -> Error {
    Error::new(
        ExitCode::Refused,
        format!(
            "run {run_id} was rejected: {by} rejected {} ({reason}); nothing after it was sent",
            gate.describe()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plan's approval without a policy; step `go` needs two of
    /// alice, bob and dave (the starter, alice, does not count).
    const GATED: &str = r#"
name: t
defaults: { region: cn-shanghai }
steps:
  - id: go
    approve: { message: "Go?", approvers: [alice, bob, dave], min_approvals: 2 }
  - id: stop
    needs: [go]
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 1, TaskType: DI_REALTIME, FileId: 7 }
"#;

    fn arn(name: &str) -> String {
        format!("acs:ram::1000000000000001:user/{name}")
    }

    fn row(step: Option<&str>, name: &str, rejected: bool, digest: &str) -> ApprovalRow {
        ApprovalRow {
            step_id: step.map(str::to_owned),
            approved_by: format!("{name}@host"),
            method: if rejected { "reject" } else { "approve" }.to_owned(),
            digest: digest.to_owned(),
            at: "2026-01-01T00:00:00Z".to_owned(),
            channel: ApprovalChannel::Command,
            identity: Some(IdentityRecord {
                arn: arn(name),
                account_id: "1000000000000001".to_owned(),
                request_id: None,
            }),
            verdict: if rejected {
                RowVerdict::Rejected
            } else {
                RowVerdict::Approved
            },
            reason: rejected.then(|| "no".to_owned()),
        }
    }

    #[test]
    fn a_gate_reads_back_as_journaled_even_a_step_called_plan() {
        for gate in [
            Gate::Plan,
            Gate::Step("plan".to_owned()),
            Gate::Step("go-ahead".to_owned()),
        ] {
            assert_eq!(Gate::from_journal(&gate.journaled()), gate);
        }
        assert_eq!(
            command("r1", &Gate::Step("go".to_owned()), "sqlite:/j.db"),
            "runbook approve r1 go --journal sqlite:/j.db"
        );
        assert_eq!(
            command("r1", &Gate::Plan, "postgres://u@h:5432/d"),
            "runbook approve r1 --journal postgres://u@h:5432/d"
        );
    }

    proptest! {
        /// Whatever rows a run has: a gate is rejected iff a rejection of
        /// it with the run's digest exists; otherwise approved iff its
        /// approvals meet its policy (the plan: any one; `go`: two
        /// distinct approvers other than the starter); rows of other
        /// gates or digests never count, nor a principal twice.
        #[test]
        fn only_rows_of_the_gate_and_digest_decide_by_its_policy_and_a_rejection_wins(
            rows in proptest::collection::vec(
                (proptest::option::of(prop_oneof![Just("go"), Just("plan"), Just("stop")]),
                 prop_oneof![Just("alice"), Just("bob"), Just("carol"), Just("dave")],
                 proptest::bool::weighted(0.1),
                 prop_oneof![Just(true), Just(false)]),
                0..10),
            gate in prop_oneof![Just(Gate::Plan), Just(Gate::Step("go".to_owned()))],
        ) {
            let plan = crate::plan::plan_of_yaml(GATED);
            let rows: Vec<ApprovalRow> = rows
                .iter()
                .map(|(s, who, rejected, same)| {
                    row(*s, who, *rejected, if *same { plan.digest.as_str() } else { "other" })
                })
                .collect();
            let alice = Principal::of_arn(&arn("alice")).unwrap();
            let mine: Vec<&ApprovalRow> = rows
                .iter()
                .filter(|r| r.digest == plan.digest && r.step_id.as_deref() == gate.step())
                .collect();
            let rejected = mine.iter().any(|r| r.verdict == RowVerdict::Rejected);
            let approvers: std::collections::BTreeSet<&str> = mine
                .iter()
                .filter(|r| r.verdict == RowVerdict::Approved)
                .map(|r| r.approved_by.as_str())
                .collect();
            let met = match gate {
                Gate::Plan => !approvers.is_empty(),
                Gate::Step(_) => approvers
                    .iter()
                    .filter(|a| ["bob@host", "dave@host"].contains(a))
                    .count() >= 2,
            };
            match verdict(&rows, &plan, &gate, Some(&alice)) {
                Verdict::Rejected { reason, .. } => {
                    prop_assert!(rejected);
                    prop_assert_eq!(reason, "no");
                }
                Verdict::Approved(got) => {
                    prop_assert!(!rejected && met);
                    prop_assert!(got.iter().all(|r| r.digest == plan.digest && r.step_id.as_deref() == gate.step()));
                }
                Verdict::Pending => prop_assert!(!rejected && !met),
            }
        }
    }
}
