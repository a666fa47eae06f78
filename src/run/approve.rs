//! The approval gates of a run, decided before anything is sent: whether
//! the plan needs an approval and how it is given (`--yes`, a terminal, or
//! a refusal), whether every `approve` step the run may reach can be
//! answered, and who approves (`user@host`). Asking on a terminal is the
//! CLI's; the decisions are here.

use std::collections::BTreeSet;

use super::ApprovalDecision;
use crate::error::{Error, ExitCode};
use crate::plan::{Plan, PlannedStep, StepKind};

/// Why `approve` steps cannot be asked on this run's terminal, if they cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asking {
    /// A terminal asks them when the run gets there.
    Terminal,
    /// stdin or stderr is not a terminal.
    NoTerminal,
    /// `--output json` asks nothing (its stdout is for machines).
    Json,
}

/// Checks, before the run starts, that every `approve` step which has not
/// run yet (`done` says which have) can be answered: by `--approve STEP`
/// (`approved`), or on a terminal. Refuses (exit 6) naming the steps and
/// how to approve them, so a run never stops at a gate half-way through a
/// change it cannot finish. (`--approve` names are checked with the other
/// flags, in `checks.rs`.)
pub fn check_answerable(
    plan: &Plan,
    approved: &BTreeSet<String>,
    asking: Asking,
    done: impl Fn(&str) -> bool,
) -> Result<(), Error> {
    let gates: Vec<(&PlannedStep, &str)> = plan
        .steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::Approve { message } => Some((s, message.as_str())),
            _ => None,
        })
        .collect();
    let why = match asking {
        Asking::Terminal => return Ok(()),
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
    /// Given already (`--yes`).
    Approved(ApprovalDecision),
    /// Ask on the terminal.
    Ask,
}

/// Decides the plan's approval: needed when it changes anything; given by
/// `--yes` (`yes`), or asked on a terminal (`terminal`), else refused (exit
/// 6). `gates` checks the run's `approve` steps (see [`check_answerable`]):
/// after a refusal for want of a terminal, which comes first, and before
/// anyone is asked.
pub fn gate_plan(
    plan: &Plan,
    yes: bool,
    terminal: bool,
    gates: impl FnOnce() -> Result<(), Error>,
) -> Result<PlanGate, Error> {
    if !plan.steps.iter().any(|s| s.risk.mutates()) {
        gates()?;
        return Ok(PlanGate::NotNeeded);
    }
    if yes {
        gates()?;
        return Ok(PlanGate::Approved(ApprovalDecision::Approved {
            by: who(),
            method: "--yes".to_owned(),
        }));
    }
    if !terminal {
        return Err(Error::new(
            ExitCode::Refused,
            format!(
                "plan {} of `{}` changes cloud resources and needs an approval, but there is no terminal to ask on",
                short_digest(plan),
                plan.name
            ),
        )
        .with_hint("review it with `runbook plan`, then pass --yes to approve it non-interactively"));
    }
    gates()?;
    Ok(PlanGate::Ask)
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
        assert!(check_answerable(&p, &set(&[]), Asking::Terminal, none).is_ok());
        let e = check_answerable(&p, &set(&[]), Asking::NoTerminal, none).unwrap_err();
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
        let e = check_answerable(&p, &set(&["first"]), Asking::Json, none).unwrap_err();
        assert!(
            e.message.contains("--output json") && !e.message.contains("`first`"),
            "{}",
            e.message
        );
        assert!(
            check_answerable(&p, &set(&["first", "undo-gate"]), Asking::NoTerminal, none).is_ok()
        );
        // On resume, a gate that already ran needs nothing.
        assert!(
            check_answerable(&p, &set(&["undo-gate"]), Asking::NoTerminal, |s| s
                == "first")
            .is_ok()
        );
    }

    #[test]
    fn the_plan_approval_is_needed_only_for_a_change_and_refused_without_a_way_to_give_it() {
        let p = plan(GATES);
        let ok = || Ok(());
        let refused = || Err(Error::new(ExitCode::Refused, "gate"));
        assert!(matches!(
            gate_plan(&p, true, false, ok),
            Ok(PlanGate::Approved(ApprovalDecision::Approved { method, .. })) if method == "--yes"
        ));
        assert_eq!(gate_plan(&p, false, true, ok).unwrap(), PlanGate::Ask);
        // No terminal: refused before the gates are checked.
        let e = gate_plan(&p, false, false, refused).unwrap_err();
        assert!(e.message.contains("no terminal to ask on"), "{}", e.message);
        // With a way to approve, an unanswerable gate refuses.
        assert_eq!(
            gate_plan(&p, true, false, refused).unwrap_err().message,
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
            gate_plan(&read_only, false, false, ok).unwrap(),
            PlanGate::NotNeeded
        );
    }
}
