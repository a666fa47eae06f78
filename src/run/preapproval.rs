//! Pre-approval: approving a saved plan ahead of the unattended run that
//! will carry it out (`runbook approve --plan PLAN.json --expires 7d`). The
//! approval is bound to the plan's digest and to the approver's verified
//! identity, and expires; [`super::approve::gate_plan`] counts the
//! unexpired ones of the run's very digest against the plan's policy when
//! the run starts (the self rule then, against the run's verified starter).
//!
//! Decided here: how long a pre-approval may last, and who may give one
//! (a listed approver, when the plan lists them; anyone otherwise).

use std::time::Duration;

use super::approval_policy::{self, Refusal};
use super::identity::VerifiedIdentity;
use crate::error::{Error, ExitCode};
use crate::plan::Plan;

/// The longest a pre-approval may last: a reviewed plan is approved for a
/// few scheduled firings, not for good.
pub const MAX_EXPIRY: Duration = Duration::from_secs(90 * 24 * 3600);

/// When a pre-approval given at `now` for `expires` (`7d`, `12h`) runs out.
///
/// # Errors
///
/// A usage error (exit 2): not a duration, zero, or longer than
/// [`MAX_EXPIRY`].
pub fn expiry(expires: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp, Error> {
    let d = crate::duration::parse_days(expires).map_err(|e| {
        Error::usage(format!("invalid --expires: {}", e.message)).with_hint(e.hint())
    })?;
    if d.is_zero() || d > MAX_EXPIRY {
        return Err(Error::usage(format!(
            "--expires must be more than 0 and at most {} (it is {})",
            crate::duration::format(MAX_EXPIRY),
            crate::duration::format(d)
        ))
        .with_hint(
            "approve again when it runs out: each pre-approval is a new row of the journal",
        ));
    }
    let span =
        jiff::SignedDuration::try_from(d).map_err(|_| Error::usage("--expires is too long"))?;
    // To the second: it is shown, and compared with the clock, not finer.
    now.checked_add(span)
        .and_then(|t| t.round(jiff::Unit::Second))
        .map_err(|_| Error::usage("--expires is too long"))
}

/// Whether `who` may pre-approve `plan`: it must change something, and,
/// when the plan lists its approvers, `who` must be one of them. (Whether
/// `who` started the run cannot be known yet: that rule is applied when
/// the run starts.)
///
/// # Errors
///
/// Exit 6, nothing recorded, saying why.
pub fn check(plan: &Plan, who: &VerifiedIdentity) -> Result<(), Error> {
    if !plan.steps.iter().any(|s| s.risk.mutates()) {
        return Err(Error::new(
            ExitCode::Refused,
            format!(
                "plan {} of `{}` changes nothing and needs no approval; nothing was recorded",
                super::approve::short_digest(plan),
                plan.name
            ),
        ));
    }
    match approval_policy::may_approve(plan.approval.as_ref(), None, &who.principal, &[]) {
        Ok(()) => Ok(()),
        Err(r @ Refusal::NotAnApprover { .. }) => Err(Error::new(
            ExitCode::Refused,
            format!("{r}; nothing was recorded"),
        )
        .with_hint("a pre-approval counts only from one of the plan's approvers: ask one of them to run this with their own credentials")),
        // No other refusal without a starter or earlier approvals.
        Err(r) => Err(Error::new(ExitCode::Refused, r.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_pre_approval_lasts_what_it_says_up_to_ninety_days() {
        let now = at("2026-11-29T07:00:00Z");
        assert_eq!(expiry("7d", now).unwrap(), at("2026-12-06T07:00:00Z"));
        assert_eq!(expiry("90d", now).unwrap(), at("2027-02-27T07:00:00Z"));
        for bad in ["0s", "91d", "soon", "", "-1d"] {
            let e = expiry(bad, now).unwrap_err();
            assert_eq!(e.exit, ExitCode::Usage, "{bad}: {}", e.message);
        }
    }

    #[test]
    fn only_a_listed_approver_pre_approves_a_plan_that_lists_them() {
        let gated = crate::plan::plan_of_yaml(&format!(
            "approvers: [alice]\n{}",
            super::super::approve::tests::GATES
        ));
        let who = |arn: &str| VerifiedIdentity::recorded(arn, "1", None).unwrap();
        assert!(check(&gated, &who("acs:ram::1:user/alice")).is_ok());
        let e = check(&gated, &who("acs:ram::1:user/bob")).unwrap_err();
        assert_eq!(e.exit, ExitCode::Refused);
        assert!(
            e.message.contains("not one of the approvers (alice)"),
            "{}",
            e.message
        );
        let open = crate::plan::plan_of_yaml(super::super::approve::tests::GATES);
        assert!(check(&open, &who("acs:ram::1:user/bob")).is_ok());
        let read_only = crate::plan::plan_of_yaml(
            "name: r\ndefaults: { region: cn-shanghai }\nsteps:\n  - id: look\n    call: dataworks.GetDISyncInstanceInfo\n    with: { ProjectId: 1, FileId: 1, TaskType: DI_REALTIME }\n",
        );
        assert!(
            check(&read_only, &who("acs:ram::1:user/bob"))
                .unwrap_err()
                .message
                .contains("changes nothing")
        );
    }
}
