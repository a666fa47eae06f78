//! `runbook approve RUN_ID [STEP]` and `runbook reject RUN_ID [STEP]
//! --reason TEXT`: answer, from any host that reaches the journal, a run
//! that waits for an approval given from elsewhere (`waiting_approval`,
//! see [`crate::run::waiting`]). Both show what is approved (the plan's
//! digest, its mutating and irreversible steps, its blast radius, and the
//! step's question) before asking on a terminal; the answer is an
//! append-only row of the journal, which the waiting run (or its resume)
//! reads. Which answers are accepted is decided in [`crate::run::waiting`].

use std::io::IsTerminal;

use super::approvals::{ask_yes, plan_review};
use super::run::StateArgs;
use super::runs::lookup_error;
use crate::error::{Error, ExitCode};
use crate::plan::StepKind;
use crate::run::approve::who;
use crate::run::waiting::{self, Answer, Gate};
use crate::run::{exit, resume};

/// Approve a run that waits for an approval (of its plan, or of an
/// `approve` step) given from elsewhere.
#[derive(Debug, clap::Args)]
#[command(after_long_help = APPROVE_EXAMPLES)]
pub(crate) struct ApproveArgs {
    /// The run id (or a unique prefix), as the `approval_needed`
    /// notification, `runbook runs` or `runbook show` name it.
    #[arg(
        value_parser = super::runs::run_id_arg,
        required_unless_present = "plan",
        conflicts_with = "plan"
    )]
    run_id: Option<String>,
    /// The `approve` step the run waits at (none: the plan's approval).
    #[arg(value_name = "STEP")]
    step: Option<String>,
    /// Refuse (exit 6) unless the run's plan has this digest (the SHA-256
    /// you reviewed, e.g. from the change ticket).
    #[arg(long, value_name = "SHA256")]
    expect_digest: Option<String>,
    /// Pre-approve a saved plan (`runbook plan ... -o PLAN.json`) ahead of
    /// the unattended run that will carry it out (`runbook run PLAN.json`,
    /// with no --yes): the plan is rebuilt from its playbook (refused on any
    /// difference) and shown, and your approval of its digest is journaled,
    /// with who you are (verified through STS), until --expires. A run of
    /// that digest uses the unexpired pre-approvals that satisfy the
    /// playbook's `approvers`/`min_approvals` (never its own starter's).
    #[arg(long, value_name = "PLAN.json", requires = "expires")]
    plan: Option<std::path::PathBuf>,
    /// With --plan: how long the pre-approval may be used (`7d`, `12h`; at
    /// most 90 days).
    #[arg(long, value_name = "DURATION", requires = "plan")]
    expires: Option<String>,
    /// Approve without asking (no terminal needed). Without it, the plan is
    /// shown and `yes` is asked for on a terminal.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    who: WhoArgs,
    #[command(flatten)]
    state: StateArgs,
}

/// Who answers: verified through STS `GetCallerIdentity` with the
/// answerer's own credentials.
#[derive(Debug, clap::Args)]
struct WhoArgs {
    /// Profile of ~/.aliyun/config.json to verify who you are with
    /// (default: the environment's credentials, else the file's current
    /// profile, as `run` finds them). Your approval is recorded as the ARN
    /// STS names for these credentials, with the RequestId of that call.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
}

const APPROVE_EXAMPLES: &str = "\
Examples:
  runbook runs --status waiting_approval               # which runs wait, at which gate, since when
  runbook approve --plan plans/weekly.json --expires 30d   # pre-approve a saved plan for scheduled runs
  runbook approve 20261205T020000Z-3f9a1c              # the plan's approval (shows it, asks `yes`)
  runbook approve 20261205T020000Z-3f9a1c go-ahead     # the `approve` step go-ahead
  runbook approve RUN_ID --journal postgres://runbook@db.internal:5432/runbook --yes

The run goes on by itself if a process waits for it (--wait-approval); a run left parked
(--detach) goes on with `runbook resume RUN_ID`. Approval rows are append-only.";

/// Reject a run that waits for an approval: it ends `rejected` (exit 6),
/// sending nothing after the gate.
#[derive(Debug, clap::Args)]
#[command(after_long_help = REJECT_EXAMPLES)]
pub(crate) struct RejectArgs {
    /// The run id (or a unique prefix).
    #[arg(value_parser = super::runs::run_id_arg)]
    run_id: String,
    /// The `approve` step the run waits at (none: the plan's approval).
    #[arg(value_name = "STEP")]
    step: Option<String>,
    /// Why (journaled, shown by `show` and the report, told to the
    /// waiting run's operator).
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    who: WhoArgs,
    #[command(flatten)]
    state: StateArgs,
}

const REJECT_EXAMPLES: &str = "\
Examples:
  runbook reject 20261205T020000Z-3f9a1c --reason \"ticket CHG-1234 was withdrawn\"
  runbook reject RUN_ID go-ahead --reason \"replication lag is 40 min, not < 1 min\"

A rejection is final: the run ends `rejected` (a waiting process exits 6; a parked run is ended
when it is resumed) and cannot be resumed. A rejected `approve` step fails, so a compensation
its `on_failure` names still runs.";

impl ApproveArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        if let (Some(plan), Some(expires)) = (&self.plan, &self.expires) {
            if self.step.is_some() || self.expect_digest.is_some() {
                return Err(Error::usage(
                    "--plan approves a whole saved plan: no STEP and no --expect-digest (its digest is the file's)",
                ));
            }
            return super::preapprove::pre_approve(&super::preapprove::PreApproval {
                plan,
                expires,
                yes: self.yes,
                profile: self.who.profile.as_deref(),
                state: &self.state,
            });
        }
        let run_id = self.run_id.as_deref().unwrap_or_default();
        let answer = Answer::Approve;
        decide(
            &self.state,
            &self.who,
            run_id,
            self.step.as_deref(),
            &answer,
            Asked {
                yes: self.yes,
                expect_digest: self.expect_digest.as_deref(),
            },
        )
    }
}

impl RejectArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        let reason = self.reason.trim();
        if reason.is_empty() {
            return Err(Error::usage(
                "--reason is empty: say why the run is rejected",
            ));
        }
        let answer = Answer::Reject {
            reason: reason.to_owned(),
        };
        // A rejection sends nothing: it is not asked again.
        decide(
            &self.state,
            &self.who,
            &self.run_id,
            self.step.as_deref(),
            &answer,
            Asked {
                yes: true,
                expect_digest: None,
            },
        )
    }
}

/// How the answer was asked for.
struct Asked<'a> {
    yes: bool,
    expect_digest: Option<&'a str>,
}

/// Checks that run `run_id` waits at the gate named by `step`, shows what
/// is decided, asks (unless `--yes`), and journals `answer`.
fn decide(
    state: &StateArgs,
    who_args: &WhoArgs,
    run_id: &str,
    step: Option<&str>,
    answer: &Answer,
    asked: Asked<'_>,
) -> Result<ExitCode, Error> {
    let rt = super::runtime()?;
    rt.block_on(async move {
        let journal = state.journal()?;
        let record = journal.load_run(run_id).map_err(lookup_error)?;
        let plan = resume::journaled_plan(&record)?;
        let gate = step.map_or(Gate::Plan, |s| Gate::Step(s.to_owned()));
        if let Some(expected) = asked.expect_digest
            && !expected.trim().eq_ignore_ascii_case(&plan.digest)
        {
            return Err(Error::new(
                ExitCode::Refused,
                format!(
                    "run {} runs plan {}, not the {} you expect; nothing was recorded",
                    record.run.id,
                    plan.digest,
                    expected.trim()
                ),
            )
            .with_hint("review the run's plan (`runbook show RUN_ID`) before approving it"));
        }
        let refused = |r: waiting::Refusal| Error::new(ExitCode::Refused, r.message).with_hint(r.hint);
        waiting::check_answerable(&record, &plan, &gate, jiff::Timestamp::now()).map_err(refused)?;
        let identity = verify(who_args, plan.signature).await?;
        if matches!(answer, Answer::Approve) {
            waiting::may_approve(&record, &plan, &gate, &identity.principal).map_err(refused)?;
        }
        if matches!(answer, Answer::Approve) && !asked.yes {
            let mut lines = vec![format!("run {} of `{}`", record.run.id, plan.name)];
            let account = crate::run::launch::StoredOptions::from_json(&record.options_json).account;
            lines.extend(plan_review(&plan, account.as_deref()));
            if let Some(policy) = waiting::policy_of(&plan, &gate) {
                lines.push(format!("{} needs {}", gate.describe(), policy.describe()));
            }
            lines.push(format!("plan digest: {}", plan.digest));
            if let Some(s) = gate.step()
                && let Some(StepKind::Approve { message, .. }) = plan.step(s).map(|p| &p.kind)
            {
                lines.push(format!("step `{s}` asks: {message}"));
            }
            if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
                return Err(Error::new(
                    ExitCode::Refused,
                    format!(
                        "approving {} of run {} needs a `yes` on a terminal, and there is none; nothing was recorded",
                        gate.describe(),
                        record.run.id
                    ),
                )
                .with_hint("review it (`runbook show RUN_ID`), then pass --yes"));
            }
            if !ask_yes(&lines, &format!("Approve {}? Type `yes`:", gate.describe())) {
                return Err(Error::new(
                    ExitCode::Refused,
                    "not approved; nothing was recorded",
                ));
            }
        }
        let by = who();
        waiting::record_answer(&journal, &record.run.id, &gate, &plan.digest, (&by, &identity), answer)
            .await
            .map_err(exit::journal_error)?;
        let run_id = &record.run.id;
        let next = if record.run.holder.holder_alive(crate::run::journal::now_ms()) {
            format!(
                "the process waiting on host {} goes on by itself",
                record.run.holder.host.as_deref().unwrap_or("?")
            )
        } else {
            match answer {
                Answer::Approve => format!("continue it with `runbook resume {run_id}`"),
                Answer::Reject { .. } => format!(
                    "it ends `rejected` when it is resumed (`runbook resume {run_id}`)"
                ),
            }
        };
        let verb = match answer {
            Answer::Approve => "approved",
            Answer::Reject { .. } => "rejected",
        };
        super::out(&format!(
            "{verb} {} of run {run_id} (plan {}) as {} ({by}, GetCallerIdentity RequestId {}); {next}\n",
            gate.describe(),
            plan.digest,
            identity.arn,
            identity.request_id.as_deref().unwrap_or("-"),
        ));
        Ok(ExitCode::Ok)
    })
}

/// Who runs this command, verified through STS with their own credentials
/// (signed as the run's plan signs).
async fn verify(
    who: &WhoArgs,
    signature: crate::cloud::signer::SignatureVersion,
) -> Result<crate::run::identity::VerifiedIdentity, Error> {
    verify_as(who.profile.as_deref(), signature).await
}

/// Who the credentials of `profile` (or the environment's, as `run` finds
/// them) are, verified through STS, signed with `signature`.
pub(crate) async fn verify_as(
    profile: Option<&str>,
    signature: crate::cloud::signer::SignatureVersion,
) -> Result<crate::run::identity::VerifiedIdentity, Error> {
    let (client, _) = super::target::connect(
        false,
        profile,
        crate::cloud::Endpoints::new(),
        crate::cloud::client::ClientOptions::default(),
        |_| {},
    )
    .await?;
    crate::run::identity::verify(&client.signing_with(signature)).await
}
