//! `{{failed.changed_items}}`: the check that every step whose failure runs
//! a compensation reading it has items to give.
//!
//! The items are those of the failed step's fan-out, so a compensation that
//! fans out over them can be run only by steps that fan out, or by steps
//! that change nothing (a wait, a read: their list is empty). Where the
//! template may be written (in a compensation step only) is checked with the
//! other template references, in `validate.rs`.

use serde_json::Value;

use super::model::StepKindSpec;
use super::template::{self, CHANGED_ITEMS, Root};
use super::{Diagnostic, Located, OnFailureSpec, Playbook, Step};

/// One diagnostic per step that runs such a compensation without fanning out.
pub(crate) fn check(pb: &Playbook) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let readers: Vec<&str> = pb
        .steps
        .iter()
        .filter(|s| s.compensation && reads_changed_items(s))
        .map(|s| s.id.value.as_str())
        .collect();
    if readers.is_empty() {
        return out;
    }
    for s in pb.steps.iter().filter(|s| !s.compensation) {
        let Some(Located {
            value: OnFailureSpec::Run(ids),
            ..
        }) = s.on_failure.as_ref().or(pb.defaults.on_failure.as_ref())
        else {
            continue;
        };
        let Some(comp) = ids.iter().find(|id| readers.contains(&id.value.as_str())) else {
            continue;
        };
        if matches!(s.kind, StepKindSpec::Call { .. }) && s.for_each.is_none() {
            out.push(
                Diagnostic::new(
                    format!(
                        "step `{}` has no items, but its compensation `{}` reads `{CHANGED_ITEMS}`",
                        s.id.value, comp.value
                    ),
                    comp.loc,
                )
                .hint(format!(
                    "`{CHANGED_ITEMS}` lists the items of a `for_each` step; compensate a single call with a step over `params`"
                )),
            );
        }
    }
    out
}

/// Whether a template of the step (its `for_each`, `with` or `when`) reads
/// `failed.changed_items`.
fn reads_changed_items(s: &Step) -> bool {
    let mut values: Vec<&Value> = Vec::new();
    values.extend(s.for_each.as_ref().map(|fe| &fe.value));
    if let StepKindSpec::Call {
        with: Some(with), ..
    } = &s.kind
    {
        values.extend(with.0.iter().map(|(_, v)| &v.value));
    }
    values.into_iter().any(reads)
        || s.when
            .as_ref()
            .is_some_and(|w| reads_str(w.value.template()))
}

fn reads(v: &Value) -> bool {
    match v {
        Value::String(s) => reads_str(s),
        Value::Array(items) => items.iter().any(reads),
        Value::Object(map) => map.values().any(reads),
        _ => false,
    }
}

fn reads_str(s: &str) -> bool {
    template::has_template(s)
        && template::parse(s)
            .is_ok_and(|t| t.exprs.iter().any(|e| e.root() == Ok(Root::ChangedItems)))
}
