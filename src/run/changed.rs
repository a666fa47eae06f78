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
use crate::plan::{OnFailure, PlannedStep, StepKind};

/// Whether the step's templates read `failed.changed_items` (so it is
/// worth reading the journal for it).
pub(crate) fn reads_changed_items(step: &PlannedStep) -> bool {
    let text = serde_json::to_string(&(&step.kind, &step.when, &step.for_each)).unwrap_or_default();
    text.contains(crate::playbook::template::CHANGED_ITEMS)
}

/// The values of the items of `step` that this run changed, in input order.
pub(crate) fn changed_items(record: &RunRecord, step: &PlannedStep) -> Vec<Value> {
    let StepKind::Call { call, .. } = &step.kind else {
        return Vec::new();
    };
    if !call.risk.mutates() {
        return Vec::new();
    }
    let effect = actions::lookup(&call.action).and_then(|s| s.effect.as_ref());
    let since = undone_until(record, step);
    let current = |at: Option<&str>| match (since, at.and_then(time)) {
        (Some(since), Some(at)) => at >= since,
        (Some(_), None) => false,
        (None, _) => true,
    };
    let id = step.id.as_str();
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

/// When the step's compensation last started, if it then succeeded: what
/// the step had done before is undone and no longer counts.
fn undone_until(record: &RunRecord, step: &PlannedStep) -> Option<jiff::Timestamp> {
    let OnFailure::Compensate(ids) = &step.on_failure else {
        return None;
    };
    let rows: Vec<_> = ids
        .iter()
        .map(|id| record.steps.iter().find(|r| r.step_id == id.as_str()))
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
