//! What each step of a plan locks (see `run/resources.rs` for the locks
//! themselves): the resource of every typed mutating call, known from
//! params or only at run time; nothing for reads, and nothing for generic
//! `api` calls, whose resource the engine cannot tell.

use serde_json::Value;

use super::{Plan, PlannedStep, StepKind, render};
use crate::cloud::ActionRequest;
use crate::cloud::actions::{self, Locks};

/// What one step locks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepLocks {
    /// It changes nothing.
    Nothing,
    /// A generic `api` call that changes something: it locks nothing.
    Generic,
    /// These resources (`kind id`), known from params, in item order.
    Known(Vec<String>),
    /// A resource of this kind, known only at run time (from an earlier
    /// step's output, or fan-out items that are).
    AtRunTime(&'static str),
}

impl StepLocks {
    /// How the plan shows it (`None`: nothing to say).
    pub fn describe(&self) -> Option<String> {
        match self {
            StepLocks::Nothing => None,
            StepLocks::Generic => Some(
                "nothing: a generic `api` call locks no resource; another run may change the same one at once"
                    .to_owned(),
            ),
            StepLocks::Known(ids) if ids.len() > 4 => Some(format!(
                "{} resources: {}; ... {}",
                ids.len(),
                ids[..2].join("; "),
                ids[ids.len() - 1]
            )),
            StepLocks::Known(ids) => Some(ids.join("; ")),
            StepLocks::AtRunTime(kind) => Some(format!(
                "the {kind} it changes, once its id is known at run time (before its first call)"
            )),
        }
    }
}

/// The requests of a typed mutating call step, one per item, rendered as
/// far as params allow: `None` when they depend on earlier steps' outputs
/// (or the items do); empty for a step that is not a call.
pub fn requests_known(plan: &Plan, step: &PlannedStep) -> Option<Vec<ActionRequest>> {
    let StepKind::Call { call, .. } = &step.kind else {
        return Some(Vec::new());
    };
    let params = serde_json::to_value(&plan.params).unwrap_or_default();
    let scope = render::Scope {
        params: Some(&params),
        ..render::Scope::default()
    };
    let items: Vec<Option<&Value>> = match &step.for_each {
        None => vec![None],
        Some(fe) => fe.items.as_ref()?.iter().map(Some).collect(),
    };
    items
        .into_iter()
        .map(|item| {
            let scope = item.map_or(scope, |v| scope.with_item(v));
            let rendered = render::render_params_in(&call.with, scope).ok()?;
            let mut req = super::request_for(call, &step.region, rendered);
            req.role_arn.clone_from(&step.role_arn);
            Some(req)
        })
        .collect()
}

/// What `step` of `plan` locks.
pub fn step_locks(plan: &Plan, step: &PlannedStep) -> StepLocks {
    let StepKind::Call { call, .. } = &step.kind else {
        return StepLocks::Nothing;
    };
    if !call.risk.mutates() {
        return StepLocks::Nothing;
    }
    let Some(spec) = actions::lookup(&call.action) else {
        return StepLocks::Generic;
    };
    let Locks::Resource { kind, .. } = spec.locks else {
        return StepLocks::Nothing;
    };
    match requests_known(plan, step) {
        Some(reqs) => {
            let mut ids: Vec<String> = reqs
                .iter()
                .filter_map(ActionRequest::resource)
                .map(|(kind, id)| format!("{} {kind} {id}", spec.product))
                .collect();
            ids.dedup();
            StepLocks::Known(ids)
        }
        None => StepLocks::AtRunTime(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_of_resources_is_cut_short() {
        let ids: Vec<String> = (0..1000)
            .map(|i| format!("dataworks di-node FileId={i}"))
            .collect();
        let text = StepLocks::Known(ids).describe().unwrap();
        assert_eq!(
            text,
            "1000 resources: dataworks di-node FileId=0; dataworks di-node FileId=1; ... dataworks di-node FileId=999"
        );
        assert_eq!(StepLocks::Nothing.describe(), None);
        assert!(
            StepLocks::Generic
                .describe()
                .unwrap()
                .contains("locks no resource")
        );
    }
}
