//! The approval gates of a run, decided before anything is sent: whether
//! the plan needs an approval and how it is given (`--yes`, a terminal, or
//! a refusal), whether every `approve` step the run may reach can be
//! answered, and who approves (`user@host`). Asking on a terminal is the
//! CLI's; the decisions are here.

use std::collections::BTreeSet;

use super::ApprovalDecision;
use super::approval_policy;
use super::identity::VerifiedIdentity;
use super::journal::{ApprovalChannel, PreApprovalRow};
use crate::cloud::principal::Principal;
use crate::error::{Error, ExitCode};
use crate::plan::{Plan, PlannedStep, StepKind};

/// Why `approve` steps cannot be asked on this run's terminal, if they cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asking {
    /// A terminal asks them when the run gets there.
    Terminal,
    /// They are left to others (`--detach`, `--wait-approval`): the run
    /// waits for an approval from elsewhere (see [`super::waiting`]).
    Elsewhere,
    /// stdin or stderr is not a terminal.
    NoTerminal,
    /// `--output json` asks nothing (its stdout is for machines).
    Json,
}

/// Checks, before the run starts, that every `approve` step which has not
/// run yet (`done` says which have) can be answered: by `--approve STEP`
/// (`approved`), or on a terminal, and, for a step that says who must
/// approve, by the person who runs it (`starter`, verified) alone.
/// Refuses (exit 6) naming the steps and how to approve them, so a run
/// never stops at a gate half-way through a change it cannot finish.
/// (`--approve` names are checked with the other flags, in `checks.rs`.)
pub fn check_answerable(
    plan: &Plan,
    approved: &BTreeSet<String>,
    asking: Asking,
    starter: Option<&Principal>,
    done: impl Fn(&str) -> bool,
) -> Result<(), Error> {
    let gates: Vec<(&PlannedStep, &str)> = plan
        .steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::Approve { message, .. } => Some((s, message.as_str())),
            _ => None,
        })
        .collect();
    if asking == Asking::Elsewhere {
        return Ok(());
    }
    for (s, _) in gates.iter().filter(|(s, _)| !done(s.id.as_str())) {
        // Asked here (a flag, a terminal), a step the starter cannot
        // approve alone waits for the others (see `super::waiting`).
        if approved.contains(s.id.as_str()) || asking == Asking::Terminal {
            continue;
        }
        let StepKind::Approve {
            policy: Some(policy),
            ..
        } = &s.kind
        else {
            continue;
        };
        let verdict = match starter {
            None => Err("who runs it could not be verified (STS GetCallerIdentity)".to_owned()),
            Some(me) => match approval_policy::may_approve(Some(policy), Some(me), me, &[]) {
                Err(r) => Err(r.to_string()),
                Ok(()) if approval_policy::needed(Some(policy)) > 1 => Err(format!(
                    "it needs {} and one person cannot give them all",
                    policy.describe()
                )),
                Ok(()) => Ok(()),
            },
        };
        if let Err(why) = verdict {
            return Err(Error::new(
                ExitCode::Refused,
                format!(
                    "approve step `{}` needs {}, which this run cannot get: {why}; nothing was sent",
                    s.id,
                    policy.describe()
                ),
            )
            .with_hint("run it with --detach (or --wait-approval) to have the step's approvers answer it with `runbook approve` when the run gets there, or run it as one of them"));
        }
    }
    let why = match asking {
        Asking::Terminal | Asking::Elsewhere => return Ok(()),
        Asking::NoTerminal => "there is no terminal to ask on",
        Asking::Json => "--output json asks no questions",
    };
    let open: Vec<&(&PlannedStep, &str)> = gates
        .iter()
        .filter(|(s, _)| !approved.contains(s.id.as_str()) && !done(s.id.as_str()))
        .collect();
    if open.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = open
        .iter()
        .map(|(s, question)| {
            let comp = if s.compensation {
                ", a compensation"
            } else {
                ""
            };
            format!("`{}` (\"{question}\"{comp})", s.id)
        })
        .collect();
    let (noun, verb) = if open.len() == 1 {
        ("step", "is")
    } else {
        ("steps", "are")
    };
    let flags: Vec<String> = open
        .iter()
        .map(|(s, _)| format!("--approve {}", s.id))
        .collect();
    Err(Error::new(
        ExitCode::Refused,
        format!(
            "approve {noun} {} {verb} not answerable: {why} and no --approve was given for {}; nothing was sent",
            named.join(", "),
            if open.len() == 1 { "it" } else { "them" }
        ),
    )
    .with_hint(format!(
        "once you agree with the question, approve ahead with {}; or run on a terminal (text output) to answer when the run gets there",
        flags.join(" ")
    )))
}

/// What the plan's approval needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanGate {
    /// Nothing: the plan changes nothing.
    NotNeeded,
    /// Given already: by pre-approvals (`runbook approve --plan`) and/or
    /// `--yes`; every decision is journaled as the run's plan approval.
    Approved(Vec<ApprovalDecision>),
    /// Ask on the terminal; `pre` (pre-approvals that count) are journaled
    /// with the answer.
    Ask {
        /// Pre-approvals that count toward the policy.
        pre: Vec<ApprovalDecision>,
    },
    /// Left to others: the run is parked and waits for the approvals still
    /// missing from elsewhere (see [`super::waiting`]); `given` (the
    /// pre-approvals that count, and the starter's own `--yes` when it may
    /// count) are journaled first.
    Elsewhere {
        /// Approvals given already that count toward the policy.
        given: Vec<ApprovalDecision>,
        /// Why the starter's own approval is not enough, when they gave
        /// one (`--yes`, a terminal).
        own: Option<String>,
    },
}

/// Who starts the run and how it may approve its own plan.
#[derive(Clone, Debug)]
pub struct Starter<'a> {
    /// `--yes`.
    pub yes: bool,
    /// A terminal to ask on.
    pub terminal: bool,
    /// `user@host`.
    pub by: &'a str,
    /// Who, verified through STS (`None`: STS could not tell, and no
    /// policy needs it).
    pub identity: Option<&'a VerifiedIdentity>,
    /// Approvals this process is not given are left to others
    /// (`--detach`, `--wait-approval`).
    pub elsewhere: bool,
}

/// Decides the plan's approval: needed when it changes anything. It is
/// given by unexpired pre-approvals of this very digest (`pre_approvals`,
/// `runbook approve --plan`) when they satisfy the plan's policy; else by
/// the starter (`--yes`, or a `yes` on a terminal) when their approval
/// completes it (without `approvers`, always: today's behaviour); else
/// refused (exit 6) saying what is missing and what expired. `gates`
/// checks the run's `approve` steps (see [`check_answerable`]): after a
/// refusal for want of a terminal, which comes first, and before anyone
/// is asked.
pub fn gate_plan(
    plan: &Plan,
    starter: &Starter<'_>,
    pre_approvals: &[PreApprovalRow],
    now: jiff::Timestamp,
    gates: impl FnOnce() -> Result<(), Error>,
) -> Result<PlanGate, Error> {
    if !plan.steps.iter().any(|s| s.risk.mutates()) {
        gates()?;
        return Ok(PlanGate::NotNeeded);
    }
    let policy = plan.approval.as_ref();
    let starter_principal = starter.identity.map(|i| &i.principal);
    if policy.is_some() && starter_principal.is_none() {
        return Err(Error::new(
            ExitCode::Refused,
            format!(
                "plan {} of `{}` says who must approve it, but who starts this run could not be verified (STS GetCallerIdentity); nothing was sent",
                short_digest(plan),
                plan.name
            ),
        )
        .with_hint("the run's warnings say why STS could not tell; approvals are bound to verified identities"));
    }
    // Pre-approvals of this digest that have not expired, in the order given.
    let (valid, expired): (Vec<&PreApprovalRow>, Vec<&PreApprovalRow>) = pre_approvals
        .iter()
        .filter(|p| p.digest == plan.digest)
        .partition(|p| p.valid_at(now));
    let pre: Vec<(Principal, &PreApprovalRow)> = valid
        .iter()
        .filter_map(|p| p.identity.principal().map(|who| (who, *p)))
        .collect();
    let principals: Vec<Principal> = pre.iter().map(|(who, _)| who.clone()).collect();
    let tally = approval_policy::tally(policy, starter_principal, &principals);
    let counted: Vec<ApprovalDecision> = tally
        .counted
        .iter()
        .filter_map(|who| pre.iter().find(|(p, _)| p == who))
        .map(|(_, row)| pre_approval_decision(row))
        .collect();
    if tally.is_met() {
        gates()?;
        return Ok(PlanGate::Approved(counted));
    }
    // The starter's own approval, when it would complete the policy.
    let own = starter_principal.map_or(
        // Unverified (no policy, checked above): today's rules.
        Ok(()),
        |me| match approval_policy::may_approve(policy, starter_principal, me, &tally.counted) {
            Ok(()) if tally.missing() == 1 => Ok(()),
            Ok(()) => Err(None),
            Err(r) => Err(Some(r)),
        },
    );
    // What cannot be had here is waited for: when asked (--detach,
    // --wait-approval), or when the starter tried to approve (--yes, a
    // terminal) and the policy needs others. An unattended run is refused.
    let wait_for_others = starter.elsewhere
        || (policy.is_some() && (starter.yes || starter.terminal) && own.is_err());
    if wait_for_others {
        gates()?;
        let mut given = counted;
        if starter.yes && matches!(own, Ok(()) | Err(None)) {
            given.push(starter_yes(starter));
        }
        let own = match &own {
            _ if !(starter.yes || starter.terminal) => None,
            Err(Some(r)) => Some(format!("your own approval of the plan does not count: {r}")),
            Err(None) => {
                policy.map(|p| format!("your approval counts, but the plan needs {}", p.describe()))
            }
            Ok(()) => None,
        };
        return Ok(PlanGate::Elsewhere { given, own });
    }
    match own {
        Ok(()) if starter.yes => {
            gates()?;
            let mut all = counted;
            all.push(starter_yes(starter));
            Ok(PlanGate::Approved(all))
        }
        Ok(()) if starter.terminal => {
            gates()?;
            Ok(PlanGate::Ask { pre: counted })
        }
        Ok(()) if policy.is_none() && valid.is_empty() && expired.is_empty() => Err(Error::new(
            ExitCode::Refused,
            format!(
                "plan {} of `{}` changes cloud resources and needs an approval, but there is no terminal to ask on",
                short_digest(plan),
                plan.name
            ),
        )
        .with_hint("review it with `runbook plan`, then pass --yes to approve it non-interactively, or have it approved ahead with `runbook approve --plan PLAN.json --expires 7d`")),
        own => Err(missing(plan, &tally, own.err().flatten(), &expired, starter)),
    }
}

/// The refusal of a plan whose approval is not (yet) complete: what the
/// policy needs, what counted, what did not and why, what expired.
fn missing(
    plan: &Plan,
    tally: &approval_policy::Tally,
    own: Option<approval_policy::Refusal>,
    expired: &[&PreApprovalRow],
    starter: &Starter<'_>,
) -> Error {
    let policy = plan.approval.as_ref();
    let needs = policy.map_or_else(
        || "1 approval".to_owned(),
        crate::plan::ApprovalPolicy::describe,
    );
    let mut why = vec![format!(
        "plan {} of `{}` needs {needs}; {} of {} given",
        short_digest(plan),
        plan.name,
        tally.counted.len(),
        tally.needed
    )];
    if !tally.counted.is_empty() {
        let who: Vec<String> = tally.counted.iter().map(ToString::to_string).collect();
        why.push(format!("approved ahead by {}", who.join(", ")));
    }
    // A second approval of one principal is no news: left out.
    for (who, r) in &tally.ignored {
        if !matches!(r, approval_policy::Refusal::AlreadyApproved { .. }) {
            why.push(format!("the pre-approval by {who} does not count: {r}"));
        }
    }
    for e in expired {
        why.push(format!(
            "the pre-approval by {} expired at {}",
            e.identity.arn, e.expires_at
        ));
    }
    match (&own, starter.yes || starter.terminal) {
        (Some(r), true) => why.push(format!("your own approval does not count: {r}")),
        (Some(r), false) => why.push(format!("the run's own identity cannot approve it: {r}")),
        (None, false) => why.push("there is no terminal to ask on and no --yes".to_owned()),
        _ => {}
    }
    let hint = match policy {
        Some(p) if !p.approvers.is_empty() => format!(
            "one of the approvers ({}) approves this plan ahead: `runbook approve --plan PLAN.json --expires 7d` (with their own credentials, against this journal)",
            p.approvers.join(", ")
        ),
        _ => "approve it ahead with `runbook approve --plan PLAN.json --expires 7d`, or pass --yes"
            .to_owned(),
    };
    Error::new(
        ExitCode::Refused,
        format!("{}; nothing was sent", why.join("; ")),
    )
    .with_hint(hint)
}

/// The starter's `--yes` as an approval of the plan.
fn starter_yes(starter: &Starter<'_>) -> ApprovalDecision {
    ApprovalDecision::Approved {
        by: starter.by.to_owned(),
        method: "--yes".to_owned(),
        channel: ApprovalChannel::Flag,
        identity: starter.identity.cloned(),
    }
}

/// A pre-approval as the run's plan approval (journaled with the run).
fn pre_approval_decision(row: &PreApprovalRow) -> ApprovalDecision {
    ApprovalDecision::Approved {
        by: row.approved_by.clone(),
        method: "pre-approval".to_owned(),
        channel: ApprovalChannel::PreApproval,
        identity: VerifiedIdentity::recorded(
            &row.identity.arn,
            &row.identity.account_id,
            row.identity.request_id.clone(),
        ),
    }
}

/// The first 12 hex digits of the plan's digest, as prompts show it.
pub fn short_digest(plan: &Plan) -> &str {
    &plan.digest[..plan.digest.len().min(12)]
}

/// `user@host`, for approvals.
pub fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{user}@{host}")
}

/// The login name of the current uid, from /proc and /etc/passwd (for
/// sessions without `USER`, such as cron or tmux started by a service).
fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut fields = l.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_owned())
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn plan(yaml: &str) -> Plan {
        crate::plan::plan_of_yaml(yaml)
    }

    /// A plan with an approve step before an irreversible fan-out and an
    /// approve step as its compensation (also used by `cli/approvals.rs`).
    pub(crate) const GATES: &str = r#"
name: gates
defaults: { region: cn-shanghai }
steps:
  - id: first
    approve: "Go?"
  - id: stop
    needs: [first]
    for_each: [101, 102]
    call: dataworks.TerminateDISyncInstance
    with: { ProjectId: 1, FileId: "{{item}}", TaskType: DI_REALTIME }
    on_failure: { run: [undo-gate] }
  - id: undo-gate
    compensation: true
    approve: "Undo?"
"#;

    #[test]
    fn every_approve_step_not_yet_run_must_be_answerable() {
        let p = plan(GATES);
        let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        let none = |_: &str| false;
        assert!(check_answerable(&p, &set(&[]), Asking::Terminal, None, none).is_ok());
        let e = check_answerable(&p, &set(&[]), Asking::NoTerminal, None, none).unwrap_err();
        assert_eq!(e.exit, ExitCode::Refused);
        assert!(e.message.contains("`first` (\"Go?\")"), "{}", e.message);
        assert!(
            e.message
                .contains("`undo-gate` (\"Undo?\", a compensation)"),
            "{}",
            e.message
        );
        assert!(e.message.contains("no terminal"), "{}", e.message);
        let hint = e.hint.unwrap();
        assert!(
            hint.contains("--approve first --approve undo-gate"),
            "{hint}"
        );
        let e = check_answerable(&p, &set(&["first"]), Asking::Json, None, none).unwrap_err();
        assert!(
            e.message.contains("--output json") && !e.message.contains("`first`"),
            "{}",
            e.message
        );
        assert!(
            check_answerable(
                &p,
                &set(&["first", "undo-gate"]),
                Asking::NoTerminal,
                None,
                none
            )
            .is_ok()
        );
        // On resume, a gate that already ran needs nothing.
        assert!(
            check_answerable(&p, &set(&["undo-gate"]), Asking::NoTerminal, None, |s| s
                == "first")
            .is_ok()
        );
    }

    fn starter(yes: bool, terminal: bool, identity: Option<&VerifiedIdentity>) -> Starter<'_> {
        Starter {
            yes,
            terminal,
            by: "me@host",
            identity,
            elsewhere: false,
        }
    }

    fn who(arn: &str) -> VerifiedIdentity {
        VerifiedIdentity::recorded(arn, arn.split(':').nth(3).unwrap(), Some("R".into())).unwrap()
    }

    fn now() -> jiff::Timestamp {
        "2026-11-29T07:00:00Z".parse().unwrap()
    }

    fn pre(p: &Plan, arn: &str, expires: &str) -> PreApprovalRow {
        let id = who(arn);
        PreApprovalRow {
            digest: p.digest.clone(),
            name: p.name.clone(),
            approved_by: "them@there".into(),
            identity: crate::run::journal::IdentityRecord {
                arn: id.arn,
                account_id: id.account_id,
                request_id: id.request_id,
            },
            at: "2026-11-28T07:00:00Z".into(),
            expires_at: expires.into(),
        }
    }

    #[test]
    fn the_plan_approval_is_needed_only_for_a_change_and_refused_without_a_way_to_give_it() {
        let p = plan(GATES);
        let ok = || Ok(());
        let refused = || Err(Error::new(ExitCode::Refused, "gate"));
        assert!(matches!(
            gate_plan(&p, &starter(true, false, None), &[], now(), ok),
            Ok(PlanGate::Approved(d)) if matches!(&d[..], [ApprovalDecision::Approved { method, channel: ApprovalChannel::Flag, .. }] if method == "--yes")
        ));
        assert_eq!(
            gate_plan(&p, &starter(false, true, None), &[], now(), ok).unwrap(),
            PlanGate::Ask { pre: vec![] }
        );
        // No terminal: refused before the gates are checked.
        let e = gate_plan(&p, &starter(false, false, None), &[], now(), refused).unwrap_err();
        assert!(e.message.contains("no terminal to ask on"), "{}", e.message);
        // With a way to approve, an unanswerable gate refuses.
        assert_eq!(
            gate_plan(&p, &starter(true, false, None), &[], now(), refused)
                .unwrap_err()
                .message,
            "gate"
        );
        let read_only = plan(
            r"
name: r
defaults: { region: cn-shanghai }
steps:
  - id: look
    call: dataworks.GetDISyncInstanceInfo
    with: { ProjectId: 1, FileId: 1, TaskType: DI_REALTIME }
",
        );
        assert_eq!(
            gate_plan(&read_only, &starter(false, false, None), &[], now(), ok).unwrap(),
            PlanGate::NotNeeded
        );
    }

    /// GATES with a plan policy: two of alice, bob and the ops role.
    fn two_of_three() -> Plan {
        plan(&format!(
            "approvers: [alice, bob, \"acs:ram::1:role/ops\"]\nmin_approvals: 2\n{GATES}"
        ))
    }

    #[test]
    fn pre_approvals_of_this_digest_that_have_not_expired_approve_an_unattended_run() {
        let p = two_of_three();
        let carol = who("acs:ram::1:user/carol");
        let me = starter(false, false, Some(&carol));
        let ok = || Ok(());
        let alice = pre(&p, "acs:ram::1:user/alice", "2026-12-01T00:00:00Z");
        let ops = pre(
            &p,
            "acs:ram::1:assumed-role/ops/dave",
            "2026-12-01T00:00:00Z",
        );
        let ops_again = pre(
            &p,
            "acs:ram::1:assumed-role/ops/erin",
            "2026-12-01T00:00:00Z",
        );
        let Ok(PlanGate::Approved(d)) =
            gate_plan(&p, &me, &[alice.clone(), ops.clone()], now(), ok)
        else {
            panic!("not approved")
        };
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|d| matches!(
            d,
            ApprovalDecision::Approved {
                channel: ApprovalChannel::PreApproval,
                identity: Some(_),
                ..
            }
        )));
        // One role is one approver whatever its sessions.
        let e = gate_plan(&p, &me, &[ops.clone(), ops_again], now(), ok).unwrap_err();
        assert_eq!(e.exit, ExitCode::Refused);
        assert!(e.message.contains("1 of 2 given"), "{}", e.message);
        assert!(
            e.message.contains("approved ahead by acs:ram::1:role/ops;"),
            "{}",
            e.message
        );
        // Expired, or of another digest: never counted.
        let old = pre(&p, "acs:ram::1:user/bob", "2026-11-29T06:59:59Z");
        let mut other = pre(&p, "acs:ram::1:user/bob", "2026-12-01T00:00:00Z");
        other.digest = "0".repeat(64);
        let e = gate_plan(&p, &me, &[alice.clone(), old, other], now(), ok).unwrap_err();
        assert!(
            e.message.contains("expired at 2026-11-29T06:59:59Z"),
            "{}",
            e.message
        );
        assert!(e.message.contains("nothing was sent"), "{}", e.message);
        assert!(e.hint.unwrap().contains("runbook approve --plan"));
    }

    #[test]
    fn the_starter_completes_a_policy_only_when_allowed() {
        let p = two_of_three();
        let ok = || Ok(());
        let alice = who("acs:ram::1:user/alice");
        let bob_pre = pre(&p, "acs:ram::1:user/bob", "2026-12-01T00:00:00Z");
        // alice started the run and may not approve it: her --yes does not
        // count; the run waits for the rest from elsewhere, bob's
        // pre-approval journaled first.
        let Ok(PlanGate::Elsewhere { given, own }) = gate_plan(
            &p,
            &starter(true, false, Some(&alice)),
            std::slice::from_ref(&bob_pre),
            now(),
            ok,
        ) else {
            panic!("not left to others")
        };
        assert!(
            own.as_deref()
                .is_some_and(|o| o.contains("started the run")),
            "{own:?}"
        );
        assert!(
            matches!(
                &given[..],
                [ApprovalDecision::Approved {
                    channel: ApprovalChannel::PreApproval,
                    ..
                }]
            ),
            "{given:?}"
        );
        // Unattended (no --yes, no terminal, no --detach): refused, saying why.
        let e = gate_plan(
            &p,
            &starter(false, false, Some(&alice)),
            std::slice::from_ref(&bob_pre),
            now(),
            ok,
        )
        .unwrap_err();
        assert!(e.message.contains("1 of 2 given"), "{}", e.message);
        // --detach / --wait-approval: left to others.
        let detached = Starter {
            elsewhere: true,
            ..starter(false, false, Some(&alice))
        };
        assert!(matches!(
            gate_plan(&p, &detached, &[], now(), ok),
            Ok(PlanGate::Elsewhere { given, .. }) if given.is_empty()
        ));
        // With allow_self_approval she completes it with --yes.
        let allowed = plan(&format!(
            "approvers: [alice, bob]\nmin_approvals: 2\nallow_self_approval: true\n{GATES}"
        ));
        let bob_pre = pre(&allowed, "acs:ram::1:user/bob", "2026-12-01T00:00:00Z");
        let Ok(PlanGate::Approved(d)) = gate_plan(
            &allowed,
            &starter(true, false, Some(&alice)),
            std::slice::from_ref(&bob_pre),
            now(),
            ok,
        ) else {
            panic!("not approved")
        };
        assert_eq!(d.len(), 2);
        // ... or on a terminal.
        assert!(matches!(
            gate_plan(&allowed, &starter(false, true, Some(&alice)), &[bob_pre], now(), ok),
            Ok(PlanGate::Ask { pre }) if pre.len() == 1
        ));
        // A stranger's --yes never counts: the approvers are waited for.
        let carol = who("acs:ram::1:user/carol");
        assert!(matches!(
            gate_plan(&allowed, &starter(true, false, Some(&carol)), &[], now(), ok),
            Ok(PlanGate::Elsewhere { given, .. }) if given.is_empty()
        ));
        // An approver's own --yes counts toward a policy it cannot meet alone.
        let bob = who("acs:ram::1:user/bob");
        assert!(matches!(
            gate_plan(&allowed, &starter(true, false, Some(&bob)), &[], now(), ok),
            Ok(PlanGate::Elsewhere { given, .. }) if given.len() == 1
        ));
        // A policy needs a verified starter.
        let e = gate_plan(&allowed, &starter(true, false, None), &[], now(), ok).unwrap_err();
        assert!(e.message.contains("could not be verified"), "{}", e.message);
    }

    #[test]
    fn a_step_policy_the_runner_cannot_meet_alone_is_refused_before_the_run() {
        let p = plan(
            r#"
name: s
defaults: { region: cn-shanghai }
steps:
  - id: gate
    approve: { message: "Go?", approvers: [alice, bob], min_approvals: 1 }
  - id: two
    needs: [gate]
    approve: { message: "Really?", min_approvals: 2 }
"#,
        );
        let set = BTreeSet::new();
        let alice = who("acs:ram::1:user/alice");
        let carol = who("acs:ram::1:user/carol");
        let e = check_answerable(&p, &set, Asking::NoTerminal, Some(&carol.principal), |_| {
            false
        })
        .unwrap_err();
        assert!(
            e.message.contains("`gate`") && e.message.contains("not one of the approvers"),
            "{}",
            e.message
        );
        assert!(e.hint.unwrap().contains("--detach"));
        let e = check_answerable(&p, &set, Asking::Json, Some(&alice.principal), |_| false)
            .unwrap_err();
        assert!(e.message.contains("started the run"), "{}", e.message);
        let e = check_answerable(&p, &set, Asking::NoTerminal, Some(&alice.principal), |s| {
            s == "gate"
        })
        .unwrap_err();
        assert!(
            e.message.contains("`two`") && e.message.contains("one person cannot"),
            "{}",
            e.message
        );
        assert!(check_answerable(&p, &set, Asking::NoTerminal, None, |_| true).is_ok());
        // Asked here (a terminal, --approve) or left to others: the rest is
        // waited for when the run gets there.
        for asking in [Asking::Terminal, Asking::Elsewhere] {
            assert!(check_answerable(&p, &set, asking, Some(&carol.principal), |_| false).is_ok());
        }
        let flagged: BTreeSet<String> = ["gate".to_owned(), "two".to_owned()].into();
        assert!(
            check_answerable(
                &p,
                &flagged,
                Asking::NoTerminal,
                Some(&carol.principal),
                |_| false
            )
            .is_ok()
        );
    }
}
