//! The checks a schema can't do, all run on every load and all reported at
//! once: unique and well-formed ids, `needs` that exist (with "did you
//! mean"), dependency cycles (the whole loop), one kind per step, actions
//! and their parameters against the catalogue, templates that name declared
//! params and steps this step (transitively) needs, `item` only in a
//! `for_each`, param declarations whose defaults fit their type, waits that
//! poll a read-only call, compensation steps wired through `on_failure`.
//!
//! The checks are split by concern: `params.rs` (declarations), `graph.rs`
//! (ids, `needs`, cycles, compensations), `steps.rs` (each step and
//! `defaults`), `templates.rs` (what templates read), `notify.rs` (`notify`).
//!
//! Everything here is static: it needs no param values and no network.
//! Checks that need values (a rendered `ProjectId` that is not an integer)
//! happen when the plan is built.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::cloud::Risk;
use crate::cloud::actions::{ActionSpec, ParamType as ApiType};
use crate::dag::{Dag, Reach};

use super::action::{self, Target};
use super::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use super::load::backticked;
use super::model::{
    DurationExpr, ItemType, Located, OnFailureSpec, ParamDecl, ParamType, Params, Playbook,
    RetrySpec, Step, StepKindSpec, WaitSpec, WhenSpec,
};
use super::source::Loc;
use super::template::{self, Expr, Root, RootError};

/// Default poll interval of a `wait`.
pub const DEFAULT_WAIT_EVERY: Duration = Duration::from_secs(10);
/// Default timeout of a `wait`.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default `concurrency`.
pub const DEFAULT_CONCURRENCY: u32 = 8;

/// Parts of a playbook that failed to load; checks that would only repeat
/// that failure (an unknown step that is really a broken one) are skipped.
#[derive(Debug, Default)]
pub(crate) struct Broken<'a> {
    /// Ids of steps that failed to load.
    pub(crate) ids: &'a [String],
    /// Names of params whose declaration failed to load.
    pub(crate) params: &'a [String],
    /// Whether `defaults` failed to load.
    pub(crate) defaults: bool,
    /// Dotted paths of values that failed to load inside sections that did.
    pub(crate) left_out: &'a [String],
}

/// Runs every semantic check on `pb`, adding what it finds to `diags`.
pub(crate) fn validate(pb: &Playbook, broken: &Broken<'_>, diags: &mut Diagnostics) {
    let mut c = Checker::new(pb, diags);
    c.broken = broken.ids;
    c.broken_params = broken.params;
    c.broken_defaults = broken.defaults;
    c.left_out = broken.left_out;
    c.params();
    c.ids();
    c.needs();
    c.cycles();
    c.defaults();
    c.window();
    for i in 0..pb.steps.len() {
        c.step(i);
    }
    c.compensations();
    c.notify();
    c.plan_approval();
    for d in super::changed_items::check(pb) {
        c.push(d);
    }
}

/// What is valid but may not be what the author means: steps that call an
/// API with no region in the playbook (they take the region of the
/// environment or the aliyun CLI profile when the plan is made; see
/// [`crate::cloud::region`]).
pub(crate) fn warnings(pb: &Playbook) -> Vec<Diagnostic> {
    if pb.defaults.region.is_some() {
        return Vec::new();
    }
    let regionless: Vec<&Step> = pb
        .steps
        .iter()
        .filter(|s| s.region.is_none())
        .filter(|s| matches!(s.kind, StepKindSpec::Call { .. } | StepKindSpec::Wait(_)))
        .collect();
    let Some(first) = regionless.first() else {
        return Vec::new();
    };
    let ids: Vec<String> = regionless
        .iter()
        .map(|s| format!("`{}`", s.id.value))
        .collect();
    let what = if ids.len() == 1 {
        format!("step {} calls an API but names no region", ids[0])
    } else {
        format!("steps {} call APIs but name no region", ids.join(", "))
    };
    vec![
        Diagnostic::new(what, first.id.loc)
            .hint(format!(
                "`plan` and `run` use {}, else the region_id of the aliyun CLI profile, and fail when neither gives one; add `region:` to `defaults` (e.g. `region: \"{{{{params.region}}}}\"`) to say where it runs",
                crate::cloud::region::ENV_REGION_ID
            ))
            .as_warning(),
    ]
}

/// Where a template may look.
#[derive(Clone, Copy)]
struct Scope<'s> {
    /// The step the template belongs to (for `needs` and `item`).
    step: Option<usize>,
    /// Whether `item` is bound here.
    item: bool,
    /// Whether `steps.*` may be read here.
    steps: bool,
    /// Where the template is, for messages (`when`, `region`).
    place: &'s str,
    /// For a call parameter: its name (the place is then `with.NAME`).
    key: Option<&'s str>,
}

impl Scope<'_> {
    /// The place as shown in messages; built only when there is an error.
    fn where_(&self) -> String {
        match self.key {
            Some(k) => format!("`with.{k}`"),
            None => self.place.to_owned(),
        }
    }
}

/// A dependency loop as `a -> b -> a`; past a dozen steps, its first and
/// last steps around a count of the ones left out.
fn loop_text(names: &[&str]) -> String {
    const HEAD: usize = 6;
    const TAIL: usize = 5;
    if names.len() <= HEAD + TAIL + 1 {
        return names.join(" -> ");
    }
    let hidden = names.len() - HEAD - TAIL;
    format!(
        "{} -> ... {hidden} more steps ... -> {} ({} steps)",
        names[..HEAD].join(" -> "),
        names[names.len() - TAIL..].join(" -> "),
        names.len() - 1
    )
}

struct Checker<'a> {
    pb: &'a Playbook,
    diags: &'a mut Diagnostics,
    /// Step id -> index of its first definition.
    index: HashMap<&'a str, usize>,
    /// The graph of resolved `needs` (unknown ids left out).
    dag: Dag,
    /// Scratch space for the ancestor search.
    reach: Reach,
    /// Ids of steps that failed to load.
    broken: &'a [String],
    /// Names of params whose declaration failed to load.
    broken_params: &'a [String],
    /// Whether `defaults` failed to load.
    broken_defaults: bool,
    /// Dotted paths of values that failed to load inside sections that did.
    left_out: &'a [String],
}

impl<'a> Checker<'a> {
    fn new(pb: &'a Playbook, diags: &'a mut Diagnostics) -> Checker<'a> {
        let mut index = HashMap::with_capacity(pb.steps.len());
        for (i, s) in pb.steps.iter().enumerate() {
            index.entry(s.id.value.as_str()).or_insert(i);
        }
        let needs = pb
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.needs_ids()
                    .filter_map(|n| index.get(n).copied())
                    .filter(|&j| j != i)
                    .collect()
            })
            .collect();
        Checker {
            pb,
            diags,
            index,
            dag: Dag::new(needs),
            reach: Reach::new(pb.steps.len()),
            broken: &[],
            broken_params: &[],
            broken_defaults: false,
            left_out: &[],
        }
    }

    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn is_broken(&self, id: &str) -> bool {
        self.broken.iter().any(|b| b == id)
    }

    /// Whether the value at dotted `path`, or a value inside it or around
    /// it, failed to load (its error is reported; checks of what is missing
    /// would only repeat it).
    fn left_out(&self, path: &str) -> bool {
        self.left_out.iter().any(|p| {
            p == path
                || p.strip_prefix(path).is_some_and(|r| r.starts_with('.'))
                || path
                    .strip_prefix(p.as_str())
                    .is_some_and(|r| r.starts_with('.'))
        })
    }

    fn ids_hint(&self, id: &str) -> Option<String> {
        did_you_mean(id, self.pb.steps.iter().map(|s| s.id.value.as_str()))
    }
}

mod approvals;
mod graph;
mod notify;
mod params;
mod steps;
mod templates;
#[cfg(test)]
mod tests;
mod window;

pub use graph::is_step_id;
pub use params::{in_allowed, item_fits, value_fits, value_words};
pub use steps::{merged_retry, wire_value};
