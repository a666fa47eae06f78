//! Drift: whether the world still looks as it did when a refreshed plan
//! (`plan --refresh -o PLAN.json`) was reviewed.
//!
//! The plan's observations say, for each (step, resource) pair, what the
//! step would do: change the resource, nothing (already done), or unknown.
//! [`check`] reads the same statuses again through the same read-only
//! status calls and reports every pair whose verdict or status is now
//! different (a node reviewed as `RUN` is now `NORUN`; a DTS job reviewed as
//! `Synchronizing` is now `Failed`, which a stop would still "change"; a
//! status that could be read then cannot be now). Statuses compare
//! case-insensitively, as conditions do. `run` checks every pair before it starts and a step's
//! pairs again just before the step's first call, skipping resources an
//! earlier step of the run has mutated.

use std::collections::BTreeSet;

use serde_json::Value;

use super::Plan;
use super::refresh::{self, Observation};
use crate::cloud::CloudApi;

/// One (step, resource) pair whose verdict changed since the review.
#[derive(Clone, Debug, PartialEq)]
pub struct Drift {
    /// Step id.
    pub step: String,
    /// Fan-out item, when the step fans out.
    pub item: Option<Value>,
    /// The resource (status action and its parameters).
    pub resource: String,
    /// What the reviewer saw: status and verdict.
    pub reviewed: String,
    /// What is there now.
    pub current: String,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let item = self
            .item
            .as_ref()
            .map(|i| format!(" item {i}"))
            .unwrap_or_default();
        write!(
            f,
            "`{}` (step `{}`{item}) was reviewed as {} and is now {}",
            self.resource, self.step, self.reviewed, self.current
        )
    }
}

/// The refusal of a run whose resources drifted since its refreshed plan
/// was reviewed (exit 6): the first five drifts, and how many more.
pub fn refusal(drifts: &[Drift]) -> crate::Error {
    let mut listed: Vec<String> = drifts.iter().take(5).map(ToString::to_string).collect();
    if drifts.len() > 5 {
        listed.push(format!("and {} more", drifts.len() - 5));
    }
    crate::Error::new(
        crate::ExitCode::Refused,
        format!(
            "the world changed since the plan was reviewed; nothing was sent: {}",
            listed.join("; ")
        ),
    )
    .with_hint("plan again with --refresh and review it, or pass --allow-drift to run it anyway (journaled)")
}

/// `"RUN" (would change it)`, or why nothing could be read.
fn state(o: &Observation) -> String {
    let value = match (&o.observed, &o.note) {
        (Some(v), _) => v.to_string(),
        (None, Some(note)) if o.request_id.is_none() => format!("unread: {note}"),
        (None, _) => "missing".to_owned(),
    };
    format!("{value} ({})", o.verdict.words())
}

/// The resources the plan's observations record for `step`.
pub fn resources(plan: &Plan, step: &str) -> Vec<String> {
    plan.observations
        .iter()
        .flatten()
        .filter(|o| o.step == step)
        .filter_map(|o| o.resource.clone())
        .collect()
}

/// Reads the statuses the plan's observations recorded (of `step` only,
/// when given), except those of resources in `skip`, and returns the pairs
/// whose verdict changed. Only read-only status calls are sent. A plan
/// without observations never drifts.
pub async fn check(
    plan: &Plan,
    step: Option<&str>,
    skip: &BTreeSet<String>,
    api: &dyn CloudApi,
) -> Vec<Drift> {
    let Some(reviewed) = &plan.observations else {
        return Vec::new();
    };
    let wanted: Vec<&Observation> = reviewed
        .iter()
        .filter(|o| o.status_action.is_some() && step.is_none_or(|s| o.step == s))
        .filter(|o| o.resource.as_ref().is_none_or(|r| !skip.contains(r)))
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let ids: BTreeSet<&str> = wanted.iter().map(|o| o.step.as_str()).collect();
    // Only the steps to check are read again.
    let subset = Plan {
        steps: plan
            .steps
            .iter()
            .filter(|s| ids.contains(s.id.as_str()))
            .cloned()
            .collect(),
        levels: Vec::new(),
        critical_path: Vec::new(),
        observations: None,
        ..plan.clone()
    };
    let current = refresh::refresh(&subset, api).await;
    wanted
        .into_iter()
        .filter_map(|o| {
            let now = current
                .iter()
                .find(|c| c.step == o.step && c.item == o.item);
            if now.is_some_and(|c| c.verdict == o.verdict && same_status(c, o)) {
                return None;
            }
            Some(Drift {
                step: o.step.clone(),
                item: o.item.clone(),
                resource: o.resource.clone().unwrap_or_else(|| o.action.clone()),
                reviewed: state(o),
                current: now.map_or_else(|| "not read".to_owned(), state),
            })
        })
        .collect()
}

/// Whether two reads of one resource saw the same status (case aside).
fn same_status(a: &Observation, b: &Observation) -> bool {
    match (&a.observed, &b.observed) {
        (Some(Value::String(x)), Some(Value::String(y))) => x.eq_ignore_ascii_case(y),
        (x, y) => x == y,
    }
}
