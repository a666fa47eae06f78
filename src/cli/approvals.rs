//! What approvals need before anything is sent: every `approve` step a run
//! may still reach must be answerable (a terminal to ask on, or
//! `--approve STEP`), and the plan's approval prompt names what each
//! irreversible call acts on (ids, items, region, account).

use std::collections::BTreeSet;

use crate::error::{Error, ExitCode};
use crate::plan::{Plan, PlannedStep, StepKind};
use crate::run::label;

/// Why `approve` steps cannot be asked on this run's terminal, if they cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Asking {
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
pub(crate) fn check_answerable(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(yaml: &str) -> Plan {
        crate::plan::plan_of_yaml(yaml)
    }

    const GATES: &str = r#"
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
