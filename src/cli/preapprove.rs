//! `runbook approve --plan PLAN.json --expires 7d`: approve a saved plan
//! ahead of the unattended run that carries it out. The approver is
//! verified through STS with their own credentials; the plan is rebuilt
//! from its playbook (refused on any difference) and shown as `run` shows
//! it before asking; the approval of its digest is an append-only row of
//! the journal, until it expires. Who may give one and for how long is the
//! engine's ([`crate::run::preapproval`]); which ones a run uses is
//! [`crate::run::approve::gate_plan`]'s.

use std::io::IsTerminal;
use std::path::Path;

use super::approvals::{ask_yes, plan_review};
use super::run::StateArgs;
use crate::error::{Error, ExitCode};
use crate::plan::Plan;
use crate::run::approve::who;
use crate::run::{approval_policy, exit, preapproval};

/// What `runbook approve --plan` was given.
pub(crate) struct PreApproval<'a> {
    /// The saved plan.
    pub(crate) plan: &'a Path,
    /// `--expires`.
    pub(crate) expires: &'a str,
    /// `--yes`: no question on a terminal.
    pub(crate) yes: bool,
    /// `--profile` to verify who approves with.
    pub(crate) profile: Option<&'a str>,
    /// Where the journal is.
    pub(crate) state: &'a StateArgs,
}

/// Pre-approves a saved plan (see the module doc).
pub(crate) fn pre_approve(args: &PreApproval<'_>) -> Result<ExitCode, Error> {
    let rt = super::runtime()?;
    rt.block_on(async move {
        let now = jiff::Timestamp::now();
        let expires_at = preapproval::expiry(args.expires, now)?;
        let plan = Plan::load_verified(args.plan)?;
        let journal = args.state.journal()?;
        let identity = super::decide::verify_as(args.profile, plan.signature).await?;
        preapproval::check(&plan, &identity)?;
        if !args.yes {
            let mut lines = plan_review(&plan, None);
            if let Some(policy) = &plan.approval {
                lines.push(format!("the plan needs {}", policy.describe()));
            }
            lines.push(format!("plan digest: {}", plan.digest));
            lines.push(format!(
                "you are {} (account {}); the approval may be used until {expires_at}",
                identity.arn, identity.account_id
            ));
            if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
                return Err(Error::new(
                    ExitCode::Refused,
                    format!(
                        "pre-approving plan {} of `{}` needs a `yes` on a terminal, and there is none; nothing was recorded",
                        plan.digest, plan.name
                    ),
                )
                .with_hint("review it (`runbook plan PLAN.json`, or the plan's Markdown in the change ticket), then pass --yes"));
            }
            if !ask_yes(&lines, "Approve this plan ahead? Type `yes`:") {
                return Err(Error::new(
                    ExitCode::Refused,
                    "not approved; nothing was recorded",
                ));
            }
        }
        let by = who();
        journal
            .record_pre_approval(&plan.digest, &plan.name, &by, &identity, expires_at)
            .await
            .map_err(exit::journal_error)?;
        // Where the plan's policy stands now (the run's starter is not known
        // yet: its own approval never counts once approvers are listed).
        let valid: Vec<_> = journal
            .pre_approvals(&plan.digest)
            .map_err(exit::journal_error)?
            .into_iter()
            .filter(|p| p.valid_at(now))
            .filter_map(|p| p.identity.principal())
            .collect();
        let tally = approval_policy::tally(plan.approval.as_ref(), None, &valid);
        let standing = if tally.is_met() {
            "the plan's approval is complete: a run of it (`runbook run PLAN.json`) goes ahead unattended while the approvals last".to_owned()
        } else {
            format!(
                "{} more approval{} of this plan {} needed before a run of it goes ahead",
                tally.missing(),
                if tally.missing() == 1 { "" } else { "s" },
                if tally.missing() == 1 { "is" } else { "are" }
            )
        };
        super::out(&format!(
            "pre-approved plan {} of `{}` as {} ({by}, GetCallerIdentity RequestId {}) until {expires_at}; {} of {} approvals given; {standing}\n",
            plan.digest,
            plan.name,
            identity.arn,
            identity.request_id.as_deref().unwrap_or("-"),
            tally.counted.len(),
            tally.needed,
        ));
        Ok(ExitCode::Ok)
    })
}
