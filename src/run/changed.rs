//! What a failed step changed in this run: the items a compensation reads
//! as `{{failed.changed_items}}`.
//!
//! An item counts when its call took effect (answered, the unit succeeded,
//! or a status check settled it as applied) *and* the status read just
//! before the call (the journaled `precheck`) did not already show the
//! call's effect. An item whose status could not be read first counts when
//! its call took effect. Everything is derived from the journal, so a
//! resumed run computes the same set as the run it continues.

use serde_json::Value;

use super::journal::{AttemptRow, RunRecord};
use super::status::{AttemptKind, AttemptOutcome, StepStatus};
use crate::cloud::actions::{self, Effect};
use crate::plan::{OnFailure, Plan, PlannedStep, StepKind};

/// Whether the step's templates read `failed.changed_items` (so it is
/// worth reading the journal for it).
pub(crate) fn reads_changed_items(step: &PlannedStep) -> bool {
    let text = serde_json::to_string(&(&step.kind, &step.when, &step.for_each)).unwrap_or_default();
    text.contains(crate::playbook::template::CHANGED_ITEMS)
}

/// Whether the mutating calls of `step` are prechecked: it fans out and a
/// compensation of it reads what it changed. (Other steps skip the read.)
pub(crate) fn prechecked(plan: &Plan, step: &PlannedStep) -> bool {
    let OnFailure::Compensate(ids) = &step.on_failure else {
        return false;
    };
    step.for_each.is_some()
        && ids
            .iter()
            .filter_map(|id| plan.step(id.as_str()))
            .any(reads_changed_items)
}

/// The values of the items of `step` that this run changed, in input order.
pub(crate) fn changed_items(record: &RunRecord, step: &PlannedStep) -> Vec<Value> {
    let StepKind::Call { call, .. } = &step.kind else {
        return Vec::new();
    };
    if !call.risk.mutates() {
        return Vec::new();
    }
    let compensations: Vec<&str> = match &step.on_failure {
        OnFailure::Compensate(ids) => ids.iter().map(|id| id.as_str()).collect(),
        _ => Vec::new(),
    };
    changed(record, step.id.as_str(), &call.action, &compensations)
}

/// [`changed_items`] of step `id` calling `action` (a catalogue name),
/// compensated by the steps `compensations`.
fn changed(record: &RunRecord, id: &str, action: &str, compensations: &[&str]) -> Vec<Value> {
    let effect = actions::lookup(action).and_then(|s| s.effect.as_ref());
    let since = undone_until(record, compensations);
    let current = |at: Option<&str>| match (since, at.and_then(time)) {
        (Some(since), Some(at)) => at >= since,
        (Some(_), None) => false,
        (None, _) => true,
    };
    let mut out = Vec::new();
    for unit in record.units.iter().filter(|u| u.step_id == id) {
        let Some(item) = unit
            .item_json
            .as_deref()
            .and_then(|j| serde_json::from_str::<Value>(j).ok())
        else {
            continue;
        };
        let attempts: Vec<&AttemptRow> = record
            .attempts
            .iter()
            .filter(|a| a.step_id == id && a.item == unit.item && current(Some(&a.sent_at)))
            .collect();
        let last_precheck = attempts
            .iter()
            .rposition(|a| a.kind == AttemptKind::Precheck);
        let already = last_precheck.is_some_and(|p| {
            let a = attempts[p];
            a.outcome == AttemptOutcome::Ok && effect.is_some_and(|e| e.is_done(&observed(e, a)))
        });
        if already {
            continue;
        }
        let after = &attempts[last_precheck.map_or(0, |p| p + 1)..];
        let applied = after.iter().any(|a| {
            a.outcome == AttemptOutcome::Ok
                && (a.kind == AttemptKind::Call
                    || (a.kind == AttemptKind::Reconcile
                        && effect.is_some_and(|e| e.is_done(&observed(e, a)))))
        }) || (unit.status == StepStatus::Succeeded
            && current(unit.finished_at.as_deref()));
        if applied {
            out.push(item);
        }
    }
    out
}

/// The status an answered status read shows.
fn observed(effect: &Effect, a: &AttemptRow) -> Value {
    a.response_json
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .map_or(Value::Null, |body| effect.observed(&body))
}

fn time(at: &str) -> Option<jiff::Timestamp> {
    at.parse().ok()
}

/// When the step's compensations last started, if they all then succeeded:
/// what the step had done before is undone and no longer counts.
fn undone_until(record: &RunRecord, compensations: &[&str]) -> Option<jiff::Timestamp> {
    if compensations.is_empty() {
        return None;
    }
    let rows: Vec<_> = compensations
        .iter()
        .map(|id| record.steps.iter().find(|r| r.step_id == *id))
        .collect::<Option<_>>()?;
    rows.iter()
        .all(|r| r.status == StepStatus::Succeeded)
        .then(|| {
            rows.iter()
                .filter_map(|r| r.started_at.as_deref().and_then(time))
                .min()
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::cloud::Risk;
    use crate::run::journal::{RunRow, StepRow, UnitRow};
    use crate::run::status::RunStatus;

    const STOP: &str = "dataworks.StopDISyncInstance";

    /// What happened to one item of a fan-out of stops.
    #[derive(Clone, Copy, Debug)]
    enum Call {
        /// Answered.
        Ok,
        /// Refused for good (a `NORUN` node).
        Refused,
        /// Outcome unknown; the status check then showed `KILLING`: applied.
        SettledApplied,
        /// Outcome unknown; the status check then showed `RUN`: not applied.
        SettledNotApplied,
        /// Never sent (the fan-out stopped first).
        NotSent,
    }

    fn record(units: Vec<UnitRow>, attempts: Vec<AttemptRow>, steps: Vec<StepRow>) -> RunRecord {
        RunRecord {
            run: RunRow {
                id: "r".into(),
                name: "n".into(),
                source: "s".into(),
                digest: "d".into(),
                status: RunStatus::Failed,
                created_at: "2026-01-01T00:00:00Z".into(),
                updated_at: "2026-01-01T00:00:00Z".into(),
                finished_at: None,
                holder: crate::run::journal::RunHolder::default(),
                waiting: None,
            },
            plan_json: String::new(),
            options_json: String::new(),
            identities: Vec::new(),
            approvals: Vec::new(),
            steps,
            units,
            attempts,
        }
    }

    fn attempt(
        item: i64,
        second: u32,
        kind: AttemptKind,
        ok: bool,
        status: Option<&str>,
    ) -> AttemptRow {
        AttemptRow {
            step_id: "stop".into(),
            item,
            attempt: 1,
            kind,
            action: "StopDISyncInstance".into(),
            risk: if kind == AttemptKind::Call {
                Risk::Mutating
            } else {
                Risk::Read
            },
            outcome: if ok {
                AttemptOutcome::Ok
            } else {
                AttemptOutcome::Error
            },
            error_class: None,
            error_code: None,
            error_message: None,
            request_id: None,
            http_status: None,
            sent_at: format!("2026-01-01T00:{:02}:{:02}Z", second / 60, second % 60),
            finished_at: None,
            request_json: "{}".into(),
            response_json: status.map(|s| json!({ "Data": { "Status": s } }).to_string()),
        }
    }

    fn unit(item: i64, succeeded: bool, second: u32) -> UnitRow {
        UnitRow {
            step_id: "stop".into(),
            item,
            item_json: Some((100 + item).to_string()),
            status: if succeeded {
                StepStatus::Succeeded
            } else {
                StepStatus::Failed
            },
            output_json: None,
            error: None,
            finished_at: Some(format!(
                "2026-01-01T00:{:02}:{:02}Z",
                second / 60,
                second % 60
            )),
        }
    }

    /// The journal rows of one item: a precheck that saw `before` (`None`:
    /// it could not be read), then the call.
    fn journal(i: i64, before: Option<&str>, call: Call, at: u32) -> (UnitRow, Vec<AttemptRow>) {
        let mut rows = vec![attempt(
            i,
            at,
            AttemptKind::Precheck,
            before.is_some(),
            before,
        )];
        let t = at + 1;
        let applied = match call {
            Call::Ok => {
                rows.push(attempt(i, t, AttemptKind::Call, true, None));
                true
            }
            Call::Refused => {
                rows.push(attempt(i, t, AttemptKind::Call, false, None));
                false
            }
            Call::SettledApplied | Call::SettledNotApplied => {
                let applied = matches!(call, Call::SettledApplied);
                rows.push(attempt(i, t, AttemptKind::Call, false, None));
                let seen = if applied { "KILLING" } else { "RUN" };
                rows.push(attempt(i, t + 1, AttemptKind::Reconcile, true, Some(seen)));
                applied
            }
            Call::NotSent => {
                rows.clear();
                false
            }
        };
        (unit(i, applied, t + 2), rows)
    }

    fn call() -> impl Strategy<Value = Call> {
        prop_oneof![
            Just(Call::Ok),
            Just(Call::Refused),
            Just(Call::SettledApplied),
            Just(Call::SettledNotApplied),
            Just(Call::NotSent),
        ]
    }

    fn before() -> impl Strategy<Value = Option<&'static str>> {
        prop_oneof![
            Just(Some("RUN")),
            Just(Some("WAIT")),
            Just(Some("PAUSE")),
            Just(Some("KILLING")),
            Just(None),
        ]
    }

    proptest! {
        #[test]
        fn an_item_counts_when_its_call_took_effect_on_a_resource_not_already_in_its_target_state(
            items in prop::collection::vec((before(), call()), 0..12),
        ) {
            let mut units = Vec::new();
            let mut attempts = Vec::new();
            let mut expected = Vec::new();
            for (i, (before, call)) in items.iter().enumerate() {
                let i = i as i64;
                let (u, rows) = journal(i, *before, *call, 10);
                units.push(u);
                attempts.extend(rows);
                let applied = matches!(call, Call::Ok | Call::SettledApplied);
                let already = matches!(before, Some("PAUSE" | "KILLING"));
                if applied && !already {
                    expected.push(json!(100 + i));
                }
            }
            let rec = record(units, attempts, Vec::new());
            prop_assert_eq!(changed(&rec, "stop", STOP, &["undo"]), expected);
        }
    }

    #[test]
    fn what_a_successful_compensation_undid_no_longer_counts() {
        // Items 0 and 1 were stopped, then the compensation (started at
        // 00:00:30) undid them; the step ran again and stopped item 1 only.
        let (u0, mut rows) = journal(0, Some("RUN"), Call::Ok, 10);
        let (_, old1) = journal(1, Some("RUN"), Call::Ok, 10);
        let (u1, new1) = journal(1, Some("RUN"), Call::Ok, 40);
        rows.extend(old1);
        rows.extend(new1);
        let undo = |status| StepRow {
            step_id: "undo".into(),
            status,
            items: Some(2),
            detail: None,
            started_at: Some("2026-01-01T00:00:30Z".into()),
            finished_at: Some("2026-01-01T00:00:35Z".into()),
        };
        let rec = record(
            vec![u0.clone(), u1.clone()],
            rows.clone(),
            vec![undo(StepStatus::Succeeded)],
        );
        assert_eq!(changed(&rec, "stop", STOP, &["undo"]), [json!(101)]);
        // A compensation that failed undid nothing for sure: both count.
        let rec = record(vec![u0, u1], rows, vec![undo(StepStatus::Failed)]);
        assert_eq!(
            changed(&rec, "stop", STOP, &["undo"]),
            [json!(100), json!(101)]
        );
    }

    #[test]
    fn a_generic_call_without_a_status_call_counts_when_answered() {
        let (u0, mut rows) = journal(0, None, Call::Ok, 10);
        rows.retain(|a| a.kind == AttemptKind::Call);
        let (u1, more) = journal(1, None, Call::Refused, 10);
        rows.extend(more.into_iter().filter(|a| a.kind == AttemptKind::Call));
        let rec = record(vec![u0, u1], rows, Vec::new());
        assert_eq!(changed(&rec, "stop", "api", &[]), [json!(100)]);
    }
}
