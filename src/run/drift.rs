//! Drift checks during a run of a refreshed plan: just before a mutating
//! step's first call, the statuses its reviewed observations recorded are
//! read again (read-only calls); a step whose resources drifted fails
//! before it sends anything (resumable), unless `--allow-drift` was given,
//! and either way the drift is journaled as an event. A resource an earlier
//! step of the run has mutated (in this attempt or an earlier one) is not
//! re-checked: its change is the run's own doing.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::{Prior, RunEvent, Shared};
use crate::plan::{Plan, PlannedStep, StepKind, drift};

/// The resources the run has mutated so far.
pub(crate) struct DriftGuard {
    touched: Mutex<BTreeSet<String>>,
}

impl DriftGuard {
    /// A guard for `plan`; on resume, the resources of steps with any work
    /// journaled count as mutated.
    pub(crate) fn new(plan: &Plan, prior: &Prior) -> DriftGuard {
        let mut touched = BTreeSet::new();
        if plan.observations.is_some() {
            let worked: BTreeSet<&str> = prior
                .done_steps
                .keys()
                .map(String::as_str)
                .chain(prior.done_units.keys().map(|(s, _)| s.as_str()))
                .chain(prior.answered.keys().map(|(s, _)| s.as_str()))
                .chain(prior.maybe_applied.iter().map(|(s, _)| s.as_str()))
                .collect();
            for step in worked {
                touched.extend(drift::resources(plan, step));
            }
        }
        DriftGuard {
            touched: Mutex::new(touched),
        }
    }

    /// Checks `step` before its first call: `Some(reason)` when it must not
    /// start because its resources drifted.
    pub(crate) async fn gate(&self, shared: &Shared, step: &PlannedStep) -> Option<String> {
        let plan = &shared.plan;
        let mutating_call = matches!(step.kind, StepKind::Call { .. }) && step.risk.mutates();
        if plan.observations.is_none() || !mutating_call {
            return None;
        }
        let skip = {
            let mut touched = self
                .touched
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let before = touched.clone();
            touched.extend(drift::resources(plan, step.id.as_str()));
            before
        };
        let drifts = drift::check(plan, Some(step.id.as_str()), &skip, shared.api.as_ref()).await;
        let allowed = shared.options.allow_drift;
        for d in &drifts {
            shared.emit(RunEvent::Drift {
                step: d.step.clone(),
                item: d.item.clone(),
                resource: d.resource.clone(),
                reviewed: d.reviewed.clone(),
                current: d.current.clone(),
                allowed,
            });
        }
        let first = drifts.first().filter(|_| !allowed)?;
        let more = match drifts.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        Some(format!(
            "drift since the plan was reviewed: {first}{more}; nothing was sent. Plan again with --refresh, or resume with --allow-drift"
        ))
    }
}
