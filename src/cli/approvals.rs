//! Approvals asked on the terminal: the plan's approval prompt, which names
//! what each irreversible call acts on (ids, items, region, account), and
//! the question of an `approve` step. What needs an approval, and whether
//! it can be given, is the engine's ([`crate::run::approve`]).

use std::io::Write;

use crate::error::{Error, ExitCode};
use crate::plan::{Plan, PlannedStep, StepKind};
use crate::run::approve::short_digest;
use crate::run::identity::VerifiedIdentity;
use crate::run::journal::ApprovalChannel;
use crate::run::{ApprovalDecision, ApprovalFuture, Approver, FlagApprover, label};

/// The most item labels the approval prompt lists for one step.
const MAX_LISTED: usize = 50;

/// Lines under an irreversible step in the plan's approval prompt: the ids
/// its call acts on, its items, and where (region, account fingerprint).
pub(crate) fn irreversible_details(s: &PlannedStep, account: Option<&str>) -> Vec<String> {
    let mut lines = Vec::new();
    if let StepKind::Call { call, .. } = &s.kind {
        let ids: Vec<String> = call
            .rendered
            .iter()
            .filter(|(k, _)| label::is_id_key(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !ids.is_empty() {
            lines.push(format!("ids:      {}", ids.join(", ")));
        }
    }
    if let Some(fe) = &s.for_each {
        let items = match &fe.items {
            Some(items) => {
                let mut shown: Vec<String> = items
                    .iter()
                    .take(MAX_LISTED)
                    .map(label::item_label)
                    .collect();
                if items.len() > MAX_LISTED {
                    shown.push(format!(
                        "… and {} more (`runbook plan` lists them all)",
                        items.len() - MAX_LISTED
                    ));
                }
                shown.join(", ")
            }
            None => format!("known only at run time ({})", fe.template),
        };
        lines.push(format!("items:    {items}"));
    }
    lines.push(format!(
        "where:    region {}, account {}",
        s.region,
        account.map_or_else(
            || "unknown".to_owned(),
            |a| format!("{a} (account fingerprint)")
        )
    ));
    lines
}

/// What an approver reviews: the plan's digest, each mutating step (what
/// irreversible calls act on, with the signing `account`) and the blast
/// radius, as lines.
pub(crate) fn plan_review(plan: &Plan, account: Option<&str>) -> Vec<String> {
    let mutating: Vec<&PlannedStep> = plan.steps.iter().filter(|s| s.risk.mutates()).collect();
    let short = short_digest(plan);
    let mut lines = vec![format!("plan {short} of `{}`:", plan.name)];
    for s in &mutating {
        let mark = if s.risk == crate::cloud::Risk::Irreversible {
            "IRREVERSIBLE"
        } else {
            "mutating"
        };
        let items = s
            .for_each
            .as_ref()
            .and_then(|f| f.items.as_ref())
            .map(|i| format!(" x{}", i.len()))
            .unwrap_or_default();
        let action = match &s.kind {
            StepKind::Call { call, .. } => call.action.clone(),
            _ => String::new(),
        };
        let only_on_failure = if s.compensation {
            "  (compensation: only if a step fails)"
        } else {
            ""
        };
        lines.push(format!(
            "  [{mark:>12}] {}{items}  {action}{only_on_failure}",
            s.id
        ));
        if s.risk == crate::cloud::Risk::Irreversible {
            for line in irreversible_details(s, account) {
                lines.push(format!("  {:>14} {line}", ""));
            }
        }
    }
    let b = &plan.blast_radius;
    lines.push(format!(
        "{} mutating and {} irreversible calls.",
        b.mutating, b.irreversible
    ));
    lines
}

/// Asks `question` on the terminal (stderr, after `lines`); whether the
/// answer was `yes`.
pub(crate) fn ask_yes(lines: &[String], question: &str) -> bool {
    let mut err = crate::safe_text::SafeWriter::new(std::io::stderr().lock());
    for line in lines {
        let _ = writeln!(err, "{line}");
    }
    let _ = write!(err, "{question} ");
    let _ = err.flush();
    drop(err);
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    answer.trim().eq_ignore_ascii_case("yes")
}

/// Asks on the terminal for the approval of `plan`, which changes cloud
/// resources: lists each mutating step (what irreversible calls act on,
/// with the signing `account`), then reads `yes`. The approval is
/// `identity`'s (`by`, `user@host`).
pub(crate) fn ask_plan(
    plan: &Plan,
    account: Option<&str>,
    by: &str,
    identity: Option<&VerifiedIdentity>,
) -> Result<ApprovalDecision, Error> {
    let mut lines = plan_review(plan, account);
    let last = lines.pop().unwrap_or_default();
    if ask_yes(&lines, &format!("{last} Type `yes` to run:")) {
        Ok(ApprovalDecision::Approved {
            by: by.to_owned(),
            method: "terminal".to_owned(),
            channel: ApprovalChannel::Terminal,
            identity: identity.cloned(),
        })
    } else {
        Err(Error::new(
            ExitCode::Refused,
            "not approved; nothing was sent",
        ))
    }
}

/// `approve` steps: `--approve STEP`, else a question on the terminal.
pub(crate) struct StepApprover {
    /// `--approve STEP` flags, and who runs.
    pub(crate) flags: FlagApprover,
    /// The live view, suspended while asking.
    pub(crate) multi: indicatif::MultiProgress,
    /// Whether a terminal can be asked.
    pub(crate) interactive: bool,
}

impl Approver for StepApprover {
    fn approve<'a>(
        &'a self,
        step: &'a str,
        message: &'a str,
        digest: &'a str,
    ) -> ApprovalFuture<'a> {
        Box::pin(async move {
            if self.flags.steps.contains(step) || !self.interactive {
                return self.flags.approve(step, message, digest).await;
            }
            let multi = self.multi.clone();
            let (step_s, message_s) = (step.to_owned(), message.to_owned());
            let by = self.flags.by.clone();
            let identity = self.flags.identity.clone();
            let answer = tokio::task::spawn_blocking(move || {
                multi.suspend(|| {
                    let mut err = crate::safe_text::SafeWriter::new(std::io::stderr().lock());
                    let _ = write!(
                        err,
                        "approve step `{step_s}`: {message_s}\nType `yes` to continue: "
                    );
                    let _ = err.flush();
                    let mut answer = String::new();
                    let _ = std::io::stdin().read_line(&mut answer);
                    answer
                })
            })
            .await
            .unwrap_or_default();
            if answer.trim().eq_ignore_ascii_case("yes") {
                ApprovalDecision::Approved {
                    by,
                    method: "terminal".to_owned(),
                    channel: ApprovalChannel::Terminal,
                    identity,
                }
            } else {
                ApprovalDecision::Refused {
                    reason: format!("step `{step}` was not approved"),
                }
            }
        })
    }
    fn can_answer(&self, step: &str) -> bool {
        self.interactive || self.flags.can_answer(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::approve::tests::GATES;

    fn plan(yaml: &str) -> Plan {
        crate::plan::plan_of_yaml(yaml)
    }

    #[test]
    fn irreversible_steps_name_their_ids_items_region_and_account() {
        let p = plan(GATES);
        let lines = irreversible_details(p.step("stop").unwrap(), Some("0123456789abcdef"));
        assert_eq!(
            lines,
            [
                "ids:      FileId=<item>, ProjectId=1",
                "items:    101, 102",
                "where:    region cn-shanghai, account 0123456789abcdef (account fingerprint)",
            ]
        );
    }
}
