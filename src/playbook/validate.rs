//! The checks a schema can't do, all run on every load and all reported at
//! once: unique and well-formed ids, `needs` that exist (with "did you
//! mean"), dependency cycles (the whole loop), one kind per step, actions
//! and their parameters against the catalogue, templates that name declared
//! params and steps this step (transitively) needs, `item` only in a
//! `for_each`, param declarations whose defaults fit their type, waits that
//! poll a read-only call, compensation steps wired through `on_failure`.
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
    for i in 0..pb.steps.len() {
        c.step(i);
    }
    c.compensations();
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

    // ---- params -------------------------------------------------------

    fn params(&mut self) {
        let pb = self.pb;
        for p in &pb.params {
            let name = &p.name;
            if !is_param_name(&name.value) {
                self.push(
                    Diagnostic::new(format!("invalid param name `{}`", name.value), name.loc)
                        .hint("use letters, digits and `_`, starting with a letter or `_`"),
                );
            }
            self.param_decl(&name.value, &p.decl);
        }
    }

    fn param_decl(&mut self, name: &str, decl: &ParamDecl) {
        let ty = decl.ty.value;
        if self.left_out(&format!("params.{name}.items")) {
            return;
        }
        if let Some(items) = &decl.items
            && ty != ParamType::Array
        {
            self.push(
                Diagnostic::new(
                    format!(
                        "`items` only applies to `type: array`, but param `{name}` is a {}",
                        ty.as_str()
                    ),
                    items.loc,
                )
                .hint("remove `items`, or make the param `type: array`"),
            );
        }
        let items = decl.items.as_ref().map_or(ItemType::String, |i| i.value);
        if let Some(allowed) = &decl.allowed {
            for v in &allowed.value {
                if let Err(m) = item_fits(element_type(ty, items), v) {
                    self.push(Diagnostic::new(
                        format!("allowed value of param `{name}` {m}"),
                        allowed.loc,
                    ));
                }
            }
        }
        if let Some(default) = &decl.default {
            match value_fits(ty, items, &default.value) {
                Err(m) => self.push(
                    Diagnostic::new(format!("default of param `{name}` {m}"), default.loc)
                        .hint(format!("the param is declared `type: {}`", ty.as_str())),
                ),
                Ok(()) => {
                    if let Some(allowed) = &decl.allowed
                        && let Err(m) = in_allowed(&default.value, &allowed.value)
                    {
                        self.push(Diagnostic::new(
                            format!("default of param `{name}` {m}"),
                            default.loc,
                        ));
                    }
                }
            }
            if let Some(req) = &decl.required
                && req.value
            {
                self.push(
                    Diagnostic::new(
                        format!("param `{name}` is `required: true` but has a default"),
                        req.loc,
                    )
                    .hint("a default makes a param optional; remove one of them"),
                );
            }
        }
    }

    fn param_decl_of(&self, name: &str) -> Option<&'a ParamDecl> {
        self.pb.param(name).map(|p| &p.decl)
    }

    // ---- ids and needs --------------------------------------------------

    fn ids(&mut self) {
        let pb = self.pb;
        for (i, s) in pb.steps.iter().enumerate() {
            let id = &s.id;
            if !is_step_id(&id.value) {
                self.push(
                    Diagnostic::new(format!("invalid step id `{}`", id.value), id.loc)
                        .hint("use lower-case letters, digits, `-` and `_`, starting with a letter or digit (`stop-dts`)"),
                );
            }
            let first = self.index[id.value.as_str()];
            if first != i {
                let line = pb.steps[first].id.loc.line;
                self.push(
                    Diagnostic::new(format!("duplicate step id `{}`", id.value), id.loc).hint(
                        format!(
                            "the first step with this id is on line {line}; ids must be unique"
                        ),
                    ),
                );
            }
        }
    }

    fn needs(&mut self) {
        let pb = self.pb;
        for (i, s) in pb.steps.iter().enumerate() {
            let mut seen: Vec<&str> = Vec::new();
            for n in &s.needs.0 {
                let id = n.value.as_str();
                if seen.contains(&id) {
                    self.push(Diagnostic::new(
                        format!("step `{}` needs `{id}` twice", s.id.value),
                        n.loc,
                    ));
                    continue;
                }
                seen.push(id);
                match self.index.get(id) {
                    None if self.is_broken(id) => {}
                    None => {
                        let hint = self.ids_hint(id);
                        self.push(
                            Diagnostic::new(
                                format!("step `{}` needs unknown step `{id}`", s.id.value),
                                n.loc,
                            )
                            .maybe_hint(hint),
                        );
                    }
                    Some(&j) if j == i => {
                        self.push(
                            Diagnostic::new(format!("step `{}` needs itself", s.id.value), n.loc)
                                .hint("remove it from `needs`"),
                        );
                    }
                    Some(&j) if pb.steps[j].compensation && !s.compensation => {
                        self.push(
                            Diagnostic::new(
                                format!("step `{}` needs compensation step `{id}`", s.id.value),
                                n.loc,
                            )
                            .hint("compensation steps run only from `on_failure: { run: [...] }`"),
                        );
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// Reports each dependency cycle once, as the whole loop (its middle
    /// elided when it is long).
    fn cycles(&mut self) {
        for cycle in self.dag.cycles() {
            let names: Vec<&str> = cycle
                .iter()
                .map(|&i| self.pb.steps[i].id.value.as_str())
                .collect();
            let first = &self.pb.steps[cycle[0]];
            let next = names.get(1).copied().unwrap_or_default();
            let loc = first
                .needs
                .0
                .iter()
                .find(|n| n.value == next)
                .map_or(first.id.loc, |n| n.loc);
            self.push(
                Diagnostic::new(format!("dependency cycle: {}", loop_text(&names)), loc).hint(
                    "each step waits for the next one in the loop; remove one of these `needs`",
                ),
            );
        }
    }

    /// Whether `target` is among the steps `step` needs, directly or not.
    fn is_ancestor(&mut self, step: usize, target: usize) -> bool {
        self.reach.needs(&self.dag, step, target)
    }

    // ---- defaults -------------------------------------------------------

    fn defaults(&mut self) {
        let pb = self.pb;
        let d = &pb.defaults;
        if let Some(c) = &pb.concurrency
            && c.value == 0
        {
            self.push(Diagnostic::new("`concurrency` must be at least 1", c.loc));
        }
        if let Some(c) = &d.for_each_concurrency
            && c.value == 0
        {
            self.push(Diagnostic::new(
                "`for_each_concurrency` must be at least 1",
                c.loc,
            ));
        }
        if let Some(t) = &d.timeout {
            self.duration(t, "`timeout`", None);
        }
        if let Some(r) = &d.region {
            self.region_literal(&r.value, r.loc);
            self.region_param(&r.value, r.loc, "`defaults.region`");
            let scope = Scope {
                step: None,
                item: false,
                steps: false,
                place: "`defaults.region`",
                key: None,
            };
            self.template_str(&r.value, r.loc, scope);
        }
        if let Some(of) = &d.on_failure {
            self.on_failure_targets(&of.value);
        }
    }

    fn on_failure_targets(&mut self, of: &OnFailureSpec) {
        let OnFailureSpec::Run(ids) = of else { return };
        for id in ids {
            match self.index.get(id.value.as_str()) {
                None if self.is_broken(&id.value) => {}
                None => {
                    let hint = self.ids_hint(&id.value);
                    self.push(
                        Diagnostic::new(
                            format!("`on_failure` runs unknown step `{}`", id.value),
                            id.loc,
                        )
                        .maybe_hint(hint),
                    );
                }
                Some(&j)
                    if !self.pb.steps[j].compensation
                        && !self.left_out(&format!("steps.{}.compensation", id.value)) =>
                {
                    self.push(
                        Diagnostic::new(
                            format!(
                                "`on_failure` runs `{}`, which is not a compensation step",
                                id.value
                            ),
                            id.loc,
                        )
                        .hint(format!("add `compensation: true` to step `{}`", id.value)),
                    );
                }
                Some(_) => {}
            }
        }
    }

    fn compensations(&mut self) {
        let pb = self.pb;
        let mut named: Vec<&str> = Vec::new();
        let mut collect = |of: Option<&'a Located<OnFailureSpec>>| {
            if let Some(Located {
                value: OnFailureSpec::Run(ids),
                ..
            }) = of
            {
                named.extend(ids.iter().map(|i| i.value.as_str()));
            }
        };
        collect(pb.defaults.on_failure.as_ref());
        for s in &pb.steps {
            collect(s.on_failure.as_ref());
        }
        for s in &pb.steps {
            if !s.compensation {
                continue;
            }
            if let Some(n) = s.needs.0.first() {
                self.push(
                    Diagnostic::new(
                        format!("compensation step `{}` cannot have `needs`", s.id.value),
                        n.loc,
                    )
                    .hint(
                        "it runs right after the step that failed, from that step's `on_failure`",
                    ),
                );
            }
            // A `run` list that failed to load may have named it.
            let lost_run = self
                .left_out
                .iter()
                .any(|p| p.contains(".on_failure") || p == "defaults");
            if !named.contains(&s.id.value.as_str()) && !lost_run {
                self.push(
                    Diagnostic::new(format!("compensation step `{}` is never run", s.id.value), s.id.loc)
                        .hint(format!("name it in an `on_failure: {{ run: [{}] }}`, or remove `compensation: true`", s.id.value)),
                );
            }
        }
    }

    // ---- steps ----------------------------------------------------------

    fn step(&mut self, i: usize) {
        let pb = self.pb;
        let s = &pb.steps[i];
        let id = s.id.value.as_str();
        if s.for_each.is_none()
            && !self.left_out(&format!("steps.{id}.for_each"))
            && let Some(c) = &s.for_each_concurrency
        {
            self.push(Diagnostic::new(
                format!("step `{id}` has `for_each_concurrency` but no `for_each`"),
                c.loc,
            ));
        }
        if let Some(c) = &s.for_each_concurrency
            && c.value == 0
        {
            self.push(Diagnostic::new(
                "`for_each_concurrency` must be at least 1",
                c.loc,
            ));
        }
        if let Some(t) = &s.timeout {
            self.duration(t, "`timeout`", Some(i));
        }
        if let Some(r) = &s.retry {
            let base = pb
                .defaults
                .retry
                .as_ref()
                .map(|r| r.value.clone())
                .unwrap_or_default();
            if let Err(m) = r.value.over(&base).check() {
                self.push(Diagnostic::new(
                    format!("{m} (after merging `defaults.retry`)"),
                    r.loc,
                ));
            }
        }
        if let Some(of) = &s.on_failure {
            self.on_failure_targets(&of.value);
        }
        let base = Scope {
            step: Some(i),
            item: s.for_each.is_some(),
            steps: !s.compensation,
            place: "",
            key: None,
        };
        if let Some(fe) = &s.for_each {
            self.for_each(i, fe);
        }
        if let Some(w) = &s.when {
            let place = "`when`";
            self.template_str(
                w.value.template(),
                w.loc,
                Scope {
                    item: false,
                    place,
                    ..base
                },
            );
            if let WhenSpec::Truthy(t) = &w.value
                && !template::has_template(t)
            {
                self.push(
                    Diagnostic::new(format!("`when` of step `{id}` is a constant"), w.loc)
                        .hint("write a template, like `when: \"{{params.dry_run}}\"`"),
                );
            }
        }
        if let Some(r) = &s.region {
            self.region_literal(&r.value, r.loc);
            self.region_param(&r.value, r.loc, &format!("`region` of step `{id}`"));
            self.template_str(
                &r.value,
                r.loc,
                Scope {
                    item: false,
                    steps: false,
                    place: "`region`",
                    ..base
                },
            );
        }
        match &s.kind {
            StepKindSpec::Call { call, with, .. } => {
                self.region_required(s);
                self.call(i, call, with.as_ref(), base, false);
            }
            StepKindSpec::Wait(w) => {
                self.region_required(s);
                self.call(i, &w.value.call, w.value.with.as_ref(), base, true);
                self.wait_policy(i, w);
            }
            StepKindSpec::Approve(a) => {
                self.template_str(
                    &a.value,
                    a.loc,
                    // The question is rendered into the plan the approver
                    // signs off, so it may read only params.
                    Scope {
                        place: "`approve`",
                        item: false,
                        steps: false,
                        ..base
                    },
                );
                if a.value.trim().is_empty() {
                    self.push(
                        Diagnostic::new(format!("`approve` of step `{id}` is empty"), a.loc)
                            .hint("write the question the approver answers"),
                    );
                }
            }
            StepKindSpec::Sleep(d) => self.duration(d, "`sleep`", Some(i)),
        }
    }

    /// A region written out (not a template) must look like a region id.
    fn region_literal(&mut self, region: &str, loc: Loc) {
        if !region.contains("{{") && !crate::cloud::endpoint::is_region_id(region) {
            self.push(
                Diagnostic::new(format!("invalid region `{region}`"), loc)
                    .hint("a region id looks like `cn-hangzhou` or `ap-southeast-1`"),
            );
        }
    }

    fn region_required(&mut self, s: &Step) {
        if s.region.is_none()
            && self.pb.defaults.region.is_none()
            && !self.broken_defaults
            && !self.left_out("defaults.region")
            && !self.left_out(&format!("steps.{}.region", s.id.value))
        {
            self.push(
                Diagnostic::new(format!("step `{}` calls an API but has no region", s.id.value), s.id.loc)
                    .hint("add `region:` to `defaults` (e.g. `region: \"{{params.region}}\"`) or to the step"),
            );
        }
    }

    fn wait_policy(&mut self, i: usize, wait: &Located<WaitSpec>) {
        let id = self.pb.steps[i].id.value.as_str();
        let w = &wait.value;
        if w.until.is_none() && !self.left_out(&format!("steps.{id}.wait.until")) {
            self.push(
                Diagnostic::new(format!("`wait` of step `{id}` has no `until`"), wait.loc)
                    .hint("add the condition that ends the wait, e.g. `until: { select: Status, in: [Finished] }`"),
            );
        }
        let every = w
            .every
            .as_ref()
            .map_or(Some(DEFAULT_WAIT_EVERY), |e| e.value.fixed());
        if let Some(e) = &w.every {
            self.duration(e, "`every`", Some(i));
        }
        if let Some(t) = &w.timeout {
            self.duration(t, "`timeout`", Some(i));
        }
        if let Some(m) = &w.max_every {
            self.duration(m, "`max_every`", Some(i));
        }
        if let Some(b) = &w.backoff
            && !(b.value.is_finite() && b.value >= 1.0)
        {
            self.push(
                Diagnostic::new(
                    format!("wait `backoff` must be at least 1.0, found {}", b.value),
                    b.loc,
                )
                .hint("1.0 polls at a fixed interval; 2.0 doubles it after each poll"),
            );
        }
        if let Some(m) = &w.max_every
            && let (Some(max), Some(every)) = (m.value.fixed(), every)
            && max < every
            && !self.left_out(&format!("steps.{id}.wait.every"))
        {
            self.push(Diagnostic::new(
                format!(
                    "`max_every` ({}) is shorter than `every` ({})",
                    crate::duration::format(max),
                    crate::duration::format(every)
                ),
                m.loc,
            ));
        }
    }

    /// A duration field (`name` as shown): written out, it must be longer
    /// than zero; a template may read only params, and a param it reads as
    /// a whole must be a string (`"30s"`: a number has no unit).
    fn duration(&mut self, d: &Located<DurationExpr>, name: &str, step: Option<usize>) {
        let t = match &d.value {
            DurationExpr::Fixed(f) => {
                if f.0.is_zero() && name != "`sleep`" {
                    self.push(Diagnostic::new(
                        format!("{name} must be longer than 0s"),
                        d.loc,
                    ));
                }
                return;
            }
            DurationExpr::Template(t) => t,
        };
        let scope = Scope {
            step,
            item: false,
            steps: false,
            place: name,
            key: None,
        };
        if !self.template_str(t, d.loc, scope) {
            return;
        }
        let Ok(parsed) = template::parse(t) else {
            return;
        };
        if !parsed.single {
            return;
        }
        let e = &parsed.exprs[0];
        let Some(p) = self.whole_param(e) else {
            return;
        };
        let Some(decl) = self.param_decl_of(p) else {
            return;
        };
        if decl.ty.value == ParamType::String {
            return;
        }
        let whose = step.map_or(String::new(), |i| {
            format!(" of step `{}`", self.pb.steps[i].id.value)
        });
        let hint = if decl.ty.value == ParamType::Integer {
            format!(
                "give the unit in the template (`\"{{{{params.{p}}}}}s\"`), or declare `{p}` with `type: string` and pass `30s`"
            )
        } else {
            format!("declare `{p}` with `type: string` and pass a duration like `30s`")
        };
        let at = self.expr_loc(d.loc, t, e);
        self.push(
            Diagnostic::new(
                format!(
                    "{name}{whose} must be a duration, but param `{p}` is declared `type: {}`",
                    decl.ty.value.as_str()
                ),
                at,
            )
            .hint(hint),
        );
    }

    fn call(
        &mut self,
        i: usize,
        call: &Located<String>,
        with: Option<&Params>,
        scope: Scope<'_>,
        is_wait: bool,
    ) {
        let s = &self.pb.steps[i];
        let id = s.id.value.as_str();
        let target = match action::resolve(call, with) {
            Ok(t) => t,
            Err(ds) => {
                for d in ds {
                    self.push(d);
                }
                // Still check the templates, so their errors show too.
                if let Some(w) = with {
                    for (k, v) in &w.0 {
                        self.template_value(
                            &v.value,
                            v.loc,
                            Scope {
                                key: Some(&k.value),
                                ..scope
                            },
                        );
                    }
                }
                return;
            }
        };
        if is_wait && target.risk() != Risk::Read {
            let hint = match &target {
                Target::Typed(spec) => match &spec.effect {
                    Some(e) => format!(
                        "call `{}` in its own step, then wait on `{}`",
                        spec.name, e.status_action
                    ),
                    None => format!("call `{}` in its own step", spec.name),
                },
                Target::Generic(_) => {
                    "if the action only reads, add `risk: read` under `with`".to_owned()
                }
            };
            self.push(
                Diagnostic::new(
                    format!(
                        "a wait polls a read-only action, but `{}` is {}",
                        target.display_name(),
                        target.risk().as_str()
                    ),
                    call.loc,
                )
                .hint(hint),
            );
        }
        let empty = Params::default();
        let with = with.unwrap_or(&empty);
        if let Target::Typed(spec) = &target {
            let with_path = if is_wait { "wait.with" } else { "with" };
            let with_whole = !self.left_out(&format!("steps.{id}.{with_path}"));
            self.typed_params(id, spec, call.loc, with, with_whole);
        }
        for (k, v) in &target.params(with).0 {
            self.template_value(
                &v.value,
                v.loc,
                Scope {
                    key: Some(&k.value),
                    ..scope
                },
            );
        }
    }

    /// Checks the parameters of a typed action; the required ones only when
    /// `with_whole` (none of `with` failed to load).
    fn typed_params(
        &mut self,
        id: &str,
        spec: &'static ActionSpec,
        call_loc: Loc,
        with: &Params,
        with_whole: bool,
    ) {
        for (k, v) in &with.0 {
            let Some(p) = spec.param(&k.value) else {
                let names: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
                let hint = if k.value == "RegionId" && spec.region_param {
                    "set `region:` on the step or in `defaults`; runbook adds `RegionId` from it"
                        .to_owned()
                } else {
                    did_you_mean(&k.value, names.iter().copied())
                        .unwrap_or_else(|| format!("`{}` takes {}", spec.name, backticked(&names)))
                };
                self.push(
                    Diagnostic::new(
                        format!("unknown parameter `{}` for `{}`", k.value, spec.name),
                        k.loc,
                    )
                    .hint(hint),
                );
                continue;
            };
            if let Err((m, hint)) = self.typed_value(p.ty, p.allowed, &v.value) {
                self.push(
                    Diagnostic::new(
                        format!("parameter `{}` of `{}` {m}", p.name, spec.name),
                        v.loc,
                    )
                    .maybe_hint(hint),
                );
            }
        }
        for p in spec.params.iter().filter(|p| p.required && with_whole) {
            if with.get(p.name).is_none() {
                self.push(
                    Diagnostic::new(
                        format!("step `{id}`: `{}` needs parameter `{}`", spec.name, p.name),
                        call_loc,
                    )
                    .hint(format!(
                        "add `{}: ...` under `with` ({})",
                        p.name, p.description
                    )),
                );
            }
        }
    }

    /// Checks a literal against an API parameter's type and allowed values;
    /// for a template that is one `{{params.X}}`, checks X's declared type.
    fn typed_value(
        &self,
        ty: ApiType,
        allowed: &[&str],
        v: &Value,
    ) -> Result<(), (String, Option<String>)> {
        if let Value::String(s) = v
            && template::has_template(s)
        {
            let Ok(t) = template::parse(s) else {
                return Ok(());
            };
            if !t.single {
                return Ok(());
            }
            if let (Ok(Root::Param(p)), true) = (t.exprs[0].root(), t.exprs[0].rest().is_empty())
                && let Some(decl) = self.param_decl_of(p)
            {
                let pty = decl.ty.value;
                let bad = matches!(
                    (ty, pty),
                    (_, ParamType::Array)
                        | (ApiType::Integer, ParamType::Boolean)
                        | (ApiType::Boolean, ParamType::Integer)
                );
                if bad {
                    return Err((
                        format!(
                            "must be {}, but param `{p}` is declared `type: {}`",
                            api_type_words(ty),
                            pty.as_str()
                        ),
                        (pty == ParamType::Array).then(|| {
                            "pick one item (`{{params.X.[0]}}`) or fan out with `for_each`"
                                .to_owned()
                        }),
                    ));
                }
            }
            return Ok(());
        }
        wire_value(ty, allowed, v)
    }

    fn for_each(&mut self, i: usize, fe: &Located<Value>) {
        let id = self.pb.steps[i].id.value.as_str();
        match &fe.value {
            Value::Array(items) => {
                for item in items {
                    if !matches!(
                        item,
                        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Object(_)
                    ) {
                        self.push(Diagnostic::new(
                            format!("`for_each` of step `{id}` has an empty item"),
                            fe.loc,
                        ));
                        break;
                    }
                }
                let scope = Scope {
                    step: Some(i),
                    item: false,
                    steps: true,
                    place: "`for_each`",
                    key: None,
                };
                self.template_value(&fe.value, fe.loc, scope);
            }
            Value::String(s) => {
                let t = match template::parse(s) {
                    Ok(t) => t,
                    Err(e) => {
                        let loc = self.sub_loc(fe.loc, s, e.offset, e.len);
                        self.push(Diagnostic::new(
                            format!("invalid template: {}", e.message),
                            loc,
                        ));
                        return;
                    }
                };
                if !t.single {
                    self.push(
                        Diagnostic::new(format!("`for_each` of step `{id}` must be one `{{{{...}}}}` that gives a list"), fe.loc)
                            .hint("write `for_each: \"{{params.file_ids}}\"` or a literal list"),
                    );
                    return;
                }
                let scope = Scope {
                    step: Some(i),
                    item: false,
                    steps: !self.pb.steps[i].compensation,
                    place: "`for_each`",
                    key: None,
                };
                if !self.template_str(s, fe.loc, scope) {
                    return;
                }
                let e = &t.exprs[0];
                if let (Ok(Root::Param(p)), true) = (e.root(), e.rest().is_empty())
                    && let Some(decl) = self.param_decl_of(p)
                    && decl.ty.value != ParamType::Array
                {
                    let loc = self.expr_loc(fe.loc, s, e);
                    self.push(
                        Diagnostic::new(
                            format!("`for_each` over a non-array: param `{p}` is declared `type: {}`", decl.ty.value.as_str()),
                            loc,
                        )
                        .hint(format!("declare it `type: array` (e.g. `{p}: {{ type: array, items: integer }}`)")),
                    );
                }
            }
            other => {
                self.push(
                    Diagnostic::new(
                        format!(
                            "`for_each` of step `{id}` needs a list, found {}",
                            value_words(other)
                        ),
                        fe.loc,
                    )
                    .hint("write `for_each: \"{{params.file_ids}}\"` or a literal list"),
                );
            }
        }
    }

    // ---- templates ------------------------------------------------------

    fn template_value(&mut self, v: &Value, loc: Loc, scope: Scope<'_>) {
        match v {
            Value::String(s) => {
                self.template_str(s, loc, scope);
            }
            Value::Array(items) => {
                for item in items {
                    self.template_value(item, loc, scope);
                }
            }
            Value::Object(map) => {
                for item in map.values() {
                    self.template_value(item, loc, scope);
                }
            }
            _ => {}
        }
    }

    /// Checks one template string; returns whether it is fine.
    fn template_str(&mut self, s: &str, loc: Loc, scope: Scope<'_>) -> bool {
        if !template::has_template(s) {
            return true;
        }
        let t = match template::parse(s) {
            Ok(t) => t,
            Err(e) => {
                let at = self.sub_loc(loc, s, e.offset, e.len);
                let whose = scope.step.map_or(String::new(), |i| {
                    format!(" of step `{}`", self.pb.steps[i].id.value)
                });
                self.push(Diagnostic::new(
                    format!(
                        "invalid template in {}{whose}: {}",
                        scope.where_(),
                        e.message
                    ),
                    at,
                ));
                return false;
            }
        };
        let mut ok = true;
        for e in &t.exprs {
            let fine = self.expr(s, loc, e, scope);
            if fine && !t.single {
                ok &= self.list_in_text(s, loc, e, scope);
            }
            ok &= fine;
        }
        ok
    }

    /// A list param cannot be part of a text (`"ids: {{params.ids}}"`): the
    /// plan would refuse to render it.
    fn list_in_text(&mut self, s: &str, loc: Loc, e: &Expr, scope: Scope<'_>) -> bool {
        let Some(p) = self.whole_param(e) else {
            return true;
        };
        if self
            .param_decl_of(p)
            .is_none_or(|d| d.ty.value != ParamType::Array)
        {
            return true;
        }
        let whose = scope.step.map_or(String::new(), |i| {
            format!(" of step `{}`", self.pb.steps[i].id.value)
        });
        let at = self.expr_loc(loc, s, e);
        self.push(
            Diagnostic::new(
                format!(
                    "param `{p}` is a list and cannot be part of the text of {}{whose}",
                    scope.where_()
                ),
                at,
            )
            .hint(format!(
                "pick one item (`{{{{params.{p}.[0]}}}}`), or fan out over it with `for_each` and use `{{{{item}}}}`"
            )),
        );
        false
    }

    /// The param `e` reads as a whole (`params.X`, no path after it).
    fn whole_param<'e>(&self, e: &'e Expr) -> Option<&'e str> {
        match (e.root(), e.rest().is_empty()) {
            (Ok(Root::Param(p)), true) => Some(p),
            _ => None,
        }
    }

    /// A region that is one `{{params.X}}` needs X to be a string: the plan
    /// refuses a region that renders to a list, a number or a boolean.
    fn region_param(&mut self, region: &str, loc: Loc, place: &str) {
        let Ok(t) = template::parse(region) else {
            return;
        };
        if !t.single {
            return;
        }
        let e = &t.exprs[0];
        let Some(p) = self.whole_param(e) else {
            return;
        };
        let Some(decl) = self.param_decl_of(p) else {
            return;
        };
        if decl.ty.value == ParamType::String {
            return;
        }
        let at = self.expr_loc(loc, region, e);
        self.push(
            Diagnostic::new(
                format!(
                    "{place} must be a region id, but param `{p}` is declared `type: {}`",
                    decl.ty.value.as_str()
                ),
                at,
            )
            .hint(format!("declare `{p}` with `type: string`")),
        );
    }

    fn expr(&mut self, s: &str, loc: Loc, e: &Expr, scope: Scope<'_>) -> bool {
        if self.expr_is_fine(e, scope) {
            return true;
        }
        let at = self.expr_loc(loc, s, e);
        let step_id = scope.step.map(|i| self.pb.steps[i].id.value.as_str());
        let whose = step_id.map_or(String::new(), |id| format!(" of step `{id}`"));
        match e.root() {
            Err(err) => {
                let hint = match &err {
                    RootError::Unknown(r) => did_you_mean(r, ["params", "steps", "item"]),
                    _ => None,
                }
                .unwrap_or_else(|| {
                    "templates read `params.NAME`, `steps.ID.output.PATH` or `item`".to_owned()
                });
                self.push(
                    Diagnostic::new(format!("{err} in {}{whose}", scope.where_()), at).hint(hint),
                );
                false
            }
            Ok(Root::Param(p)) => {
                if self.pb.param(p).is_some() || self.broken_params.iter().any(|b| b == p) {
                    return true;
                }
                let hint = did_you_mean(p, self.pb.params.iter().map(|p| p.name.value.as_str()))
                    .unwrap_or_else(|| {
                        format!("declare it under `params:` (e.g. `{p}: {{ type: string }}`)")
                    });
                self.push(
                    Diagnostic::new(
                        format!("unknown param `{p}` in {}{whose}", scope.where_()),
                        at,
                    )
                    .hint(hint),
                );
                false
            }
            Ok(Root::Item) => {
                if scope.item
                    || step_id.is_some_and(|id| self.left_out(&format!("steps.{id}.for_each")))
                {
                    return true;
                }
                let message = match scope.step {
                    Some(i) if self.pb.steps[i].for_each.is_some() => {
                        format!("`item` is not bound in {}{whose}", scope.where_())
                    }
                    _ => format!(
                        "`item` is only defined in a `for_each` step, but {} is not in one",
                        scope.where_()
                    ),
                };
                let hint = if [
                    "`for_each`",
                    "`when`",
                    "`region`",
                    "`sleep`",
                    "`timeout`",
                    "`every`",
                    "`max_every`",
                ]
                .contains(&scope.place)
                {
                    format!(
                        "{} is evaluated once for the whole step, before the fan-out",
                        scope.place
                    )
                } else {
                    "add `for_each:` to the step, or read a param instead".to_owned()
                };
                self.push(Diagnostic::new(message, at).hint(hint));
                false
            }
            Ok(Root::StepOutput(target)) => self.step_ref(scope, target, at, &whose),
        }
    }

    /// The common case without building any message: the reference is fine.
    fn expr_is_fine(&mut self, e: &Expr, scope: Scope<'_>) -> bool {
        match e.root() {
            Ok(Root::Param(p)) => self.pb.param(p).is_some(),
            Ok(Root::Item) => scope.item,
            Ok(Root::StepOutput(target)) => {
                let (Some(i), Some(&j)) = (scope.step, self.index.get(target)) else {
                    return false;
                };
                scope.steps
                    && i != j
                    && self.pb.steps[j].kind.has_output()
                    && self.is_ancestor(i, j)
            }
            Err(_) => false,
        }
    }

    fn step_ref(&mut self, scope: Scope<'_>, target: &str, at: Loc, whose: &str) -> bool {
        if !scope.steps {
            let why = match scope.step {
                Some(i) if self.pb.steps[i].compensation => {
                    "a compensation step can read only `params`".to_owned()
                }
                _ => format!(
                    "{} is known before any step runs, so it can read only `params`",
                    scope.where_()
                ),
            };
            self.push(
                Diagnostic::new(
                    format!("{}{whose} cannot read `steps.{target}`", scope.where_()),
                    at,
                )
                .hint(why),
            );
            return false;
        }
        let Some(&j) = self.index.get(target) else {
            if self.is_broken(target) {
                return true;
            }
            let hint = self.ids_hint(target);
            self.push(
                Diagnostic::new(
                    format!("{}{whose} reads unknown step `{target}`", scope.where_()),
                    at,
                )
                .maybe_hint(hint),
            );
            return false;
        };
        let Some(i) = scope.step else { return true };
        let pb = self.pb;
        let id = pb.steps[i].id.value.as_str();
        if i == j {
            self.push(
                Diagnostic::new(format!("step `{id}` reads its own output"), at).hint(
                    "a step's output exists only after it finishes; read it from a later step",
                ),
            );
            return false;
        }
        if !pb.steps[j].kind.has_output() {
            self.push(Diagnostic::new(
                format!("step `{target}` has no output (only `call` and `wait` steps do)"),
                at,
            ));
            return false;
        }
        if !self.is_ancestor(i, j) && !self.left_out(&format!("steps.{id}.needs")) {
            self.push(
                Diagnostic::new(
                    format!("step `{id}` reads `steps.{target}` but does not need `{target}`"),
                    at,
                )
                .hint(format!(
                    "add `{target}` to the `needs` of `{id}` so that it runs first"
                )),
            );
            return false;
        }
        true
    }

    /// Where the expression `e` of template `s` (a scalar at `loc`) is,
    /// when the text at `loc` is the template as written.
    fn expr_loc(&self, loc: Loc, s: &str, e: &Expr) -> Loc {
        self.sub_loc(loc, s, e.offset, e.len)
    }

    fn sub_loc(&self, loc: Loc, s: &str, offset: usize, len: usize) -> Loc {
        let Some(line) = self.pb.source.line(loc.line) else {
            return loc;
        };
        let col0 = usize::try_from(loc.col.saturating_sub(1)).unwrap_or(0);
        let Some((start, _)) = line.char_indices().nth(col0) else {
            return loc;
        };
        let rest = &line[start..];
        let quoted = rest.starts_with(['"', '\'']);
        let body = if quoted { &rest[1..] } else { rest };
        let (Some(prefix), Some(part)) = (s.get(..offset), s.get(offset..offset + len)) else {
            return loc;
        };
        if body.starts_with(prefix) && body[prefix.len()..].starts_with(part) {
            let shift = u32::from(quoted) + u32::try_from(prefix.chars().count()).unwrap_or(0);
            return loc.shifted(shift, u32::try_from(part.chars().count()).unwrap_or(1));
        }
        loc
    }
}

/// `[a-z0-9][a-z0-9_-]*`.
pub fn is_step_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn element_type(ty: ParamType, items: ItemType) -> ItemType {
    match ty {
        ParamType::String => ItemType::String,
        ParamType::Integer => ItemType::Integer,
        ParamType::Boolean => ItemType::Boolean,
        ParamType::Array => items,
    }
}

/// How a JSON value reads in a message.
pub fn value_words(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean `{b}`"),
        Value::Number(n) => format!("the number `{n}`"),
        Value::String(s) => format!("the string `{s}`"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

/// Whether `v` is a value of a scalar param type (declarations are strict:
/// a string param's default must be a string).
pub fn item_fits(ty: ItemType, v: &Value) -> Result<(), String> {
    let ok = match ty {
        ItemType::String => v.is_string(),
        ItemType::Integer => v.as_i64().is_some(),
        ItemType::Boolean => v.is_boolean(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be {}, found {}",
            item_words(ty),
            value_words(v)
        ))
    }
}

/// Whether `v` is a value of the declared type.
pub fn value_fits(ty: ParamType, items: ItemType, v: &Value) -> Result<(), String> {
    match ty {
        ParamType::Array => match v {
            Value::Array(xs) => xs
                .iter()
                .try_for_each(|x| item_fits(items, x).map_err(|m| format!("has an item that {m}"))),
            other => Err(format!("must be a list, found {}", value_words(other))),
        },
        other => item_fits(element_type(other, items), v),
    }
}

/// Whether `v` (or each item of it) is one of `allowed`.
pub fn in_allowed(v: &Value, allowed: &[Value]) -> Result<(), String> {
    let check = |x: &Value| {
        if allowed.contains(x) {
            Ok(())
        } else {
            let list: Vec<String> = allowed
                .iter()
                .map(|a| a.to_string().trim_matches('"').to_owned())
                .collect();
            Err(format!(
                "is `{}`, which is not allowed (allowed: {})",
                x.to_string().trim_matches('"'),
                list.iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    };
    match v {
        Value::Array(xs) => xs.iter().try_for_each(check),
        x => check(x),
    }
}

fn item_words(ty: ItemType) -> &'static str {
    match ty {
        ItemType::String => "a string",
        ItemType::Integer => "an integer",
        ItemType::Boolean => "a boolean",
    }
}

fn api_type_words(ty: ApiType) -> &'static str {
    match ty {
        ApiType::String => "a string",
        ApiType::Integer => "an integer",
        ApiType::Boolean => "`true` or `false`",
    }
}

/// Checks a concrete value against an API parameter's wire type and
/// allowed values; the error carries a hint when a close allowed value exists.
pub fn wire_value(
    ty: ApiType,
    allowed: &[&str],
    v: &Value,
) -> Result<(), (String, Option<String>)> {
    let text = match (ty, v) {
        (ApiType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        (ApiType::Integer, Value::String(s)) if s.trim().parse::<i64>().is_ok() => {
            s.trim().to_owned()
        }
        (ApiType::Boolean, Value::Bool(b)) => b.to_string(),
        (ApiType::Boolean, Value::String(s)) if s == "true" || s == "false" => s.clone(),
        (ApiType::String, Value::String(s)) => s.clone(),
        (ApiType::String, Value::Number(n)) => n.to_string(),
        (ApiType::String, Value::Bool(b)) => b.to_string(),
        (ty, other) => {
            return Err((
                format!(
                    "must be {}, found {}",
                    api_type_words(ty),
                    value_words(other)
                ),
                None,
            ));
        }
    };
    if !allowed.is_empty() && !allowed.contains(&text.as_str()) {
        let hint = did_you_mean(&text, allowed.iter().copied())
            .or_else(|| Some(format!("allowed: {}", backticked(allowed))));
        return Err((
            format!("must be one of {}, found `{text}`", backticked(allowed)),
            hint,
        ));
    }
    Ok(())
}

/// The retry spec a step ends up with (its own over the defaults).
pub fn merged_retry(pb: &Playbook, s: &Step) -> RetrySpec {
    let base = pb
        .defaults
        .retry
        .as_ref()
        .map(|r| r.value.clone())
        .unwrap_or_default();
    s.retry
        .as_ref()
        .map_or(base.clone(), |r| r.value.over(&base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(is_step_id("stop-dts_1"));
        assert!(is_step_id("1st"));
        assert!(!is_step_id("Stop"));
        assert!(!is_step_id("-x"));
        assert!(!is_step_id(""));
    }

    #[test]
    fn wire_values() {
        assert!(wire_value(ApiType::Integer, &[], &Value::from("10000")).is_ok());
        assert!(wire_value(ApiType::Integer, &[], &Value::from(10000)).is_ok());
        let (m, _) = wire_value(ApiType::Integer, &[], &Value::from("abc")).unwrap_err();
        assert_eq!(m, "must be an integer, found the string `abc`");
        let (m, h) = wire_value(
            ApiType::String,
            &["DI_REALTIME"],
            &Value::from("DI_REALTIM"),
        )
        .unwrap_err();
        assert_eq!(m, "must be one of `DI_REALTIME`, found `DI_REALTIM`");
        assert_eq!(h.as_deref(), Some("did you mean `DI_REALTIME`?"));
    }

    /// The messages `validate` reports for a playbook snippet (after a
    /// header with a region).
    fn errors(steps: &str) -> Vec<String> {
        let text = format!(
            "name: t\nparams:\n  ids: {{ type: array, items: integer }}\n  n: {{ type: integer }}\ndefaults:\n  region: cn-hangzhou\nsteps:\n{steps}"
        );
        match crate::playbook::Playbook::from_str("t.yaml", &text) {
            Ok(_) => Vec::new(),
            Err(d) => d.items().into_iter().map(|d| d.message.clone()).collect(),
        }
    }

    #[test]
    fn written_out_regions_must_look_like_region_ids() {
        let e = errors(
            "  - id: a\n    region: \" \"\n    sleep: 1s\n  - id: b\n    region: CN_Hangzhou\n    sleep: 1s\n",
        );
        assert_eq!(e, ["invalid region ` `", "invalid region `CN_Hangzhou`"]);
        assert!(errors("  - id: a\n    region: ap-southeast-1\n    sleep: 1s\n").is_empty());
    }

    #[test]
    fn needs_rules() {
        let e =
            errors("  - id: a\n    needs: [a, b, b]\n    sleep: 1s\n  - id: b\n    sleep: 1s\n");
        assert_eq!(e, ["step `a` needs itself", "step `a` needs `b` twice"]);
        let e = errors(
            "  - id: a\n    needs: b\n    sleep: 1s\n  - id: b\n    needs: a\n    sleep: 1s\n",
        );
        assert_eq!(e, ["dependency cycle: a -> b -> a"]);
    }

    #[test]
    fn compensation_rules() {
        let e = errors(concat!(
            "  - id: a\n    sleep: 1s\n    on_failure: { run: [undo] }\n",
            "  - id: undo\n    compensation: true\n    needs: [a]\n    sleep: 1s\n",
            "  - id: spare\n    compensation: true\n    sleep: 1s\n",
            "  - id: b\n    needs: [undo]\n    sleep: 1s\n",
        ));
        assert_eq!(
            e,
            [
                "compensation step `undo` cannot have `needs`",
                "compensation step `spare` is never run",
                "step `b` needs compensation step `undo`",
            ]
        );
        let e = errors(concat!(
            "  - id: a\n    call: dts.DescribeDtsJobDetail\n    with: { DtsJobId: j }\n    on_failure: { run: [undo] }\n",
            "  - id: undo\n    compensation: true\n    call: dts.StopDtsJob\n    with: { DtsJobId: \"{{steps.a.output.DtsJobId}}\" }\n",
        ));
        assert_eq!(e, ["`with.DtsJobId` of step `undo` cannot read `steps.a`"]);
    }

    #[test]
    fn template_scopes() {
        let e = errors(concat!(
            "  - id: a\n    call: dts.DescribeDtsJobDetail\n    with: { DtsJobId: j }\n",
            "  - id: b\n    needs: [a]\n    for_each: \"{{item}}\"\n    sleep: 1s\n",
            "  - id: c\n    needs: [a]\n    region: \"{{steps.a.output.Region}}\"\n    sleep: 1s\n",
            "  - id: d\n    needs: [a]\n    when: \"yes\"\n    sleep: 1s\n",
            "  - id: e\n    needs: [a]\n    for_each: \"ids: {{params.ids}}\"\n    sleep: 1s\n",
            "  - id: f\n    needs: [a]\n    for_each: [1, 2]\n    for_each_concurrency: 0\n    call: dts.DescribeDtsJobDetail\n    with: { DtsJobId: \"{{item}}-{{steps.a.output.X}}-{{this}}\" }\n",
        ));
        assert_eq!(
            e,
            [
                "`item` is not bound in `for_each` of step `b`",
                "`region` of step `c` cannot read `steps.a`",
                "`when` of step `d` is a constant",
                "`for_each` of step `e` must be one `{{...}}` that gives a list",
                "`for_each_concurrency` must be at least 1",
                "invalid template in `with.DtsJobId` of step `f`: `this` is not supported in templates: name the value from `params`, `steps` or `item`",
            ]
        );
    }

    #[test]
    fn generic_api_calls() {
        let ok = concat!(
            "  - id: a\n    call: api\n    with: { product: ecs, version: \"2014-05-26\", action: DescribeInstances, risk: read, params: { PageSize: 10 } }\n",
            "  - id: w\n    needs: [a]\n    wait:\n      call: api\n      with: { product: ecs, version: \"2014-05-26\", action: DescribeInstanceStatus, risk: read }\n      until: { select: TotalCount, equals: 0 }\n",
        );
        assert_eq!(errors(ok), Vec::<String>::new());
        let e = errors(
            "  - id: w\n    wait:\n      call: api\n      with: { product: ecs, version: \"2014-05-26\", action: StopInstance }\n      until: { select: X, exists: true }\n      backoff: 0.5\n      every: 10s\n      max_every: 5s\n",
        );
        assert_eq!(
            e,
            [
                "a wait polls a read-only action, but `ecs.StopInstance` is mutating",
                "wait `backoff` must be at least 1.0, found 0.5",
                "`max_every` (5s) is shorter than `every` (10s)",
            ]
        );
    }

    #[test]
    fn param_typed_templates() {
        let e = errors(
            "  - id: a\n    call: dataworks.StopDIJob\n    with: { DIJobId: \"{{params.ids}}\" }\n",
        );
        assert_eq!(
            e,
            [
                "parameter `DIJobId` of `dataworks.StopDIJob` must be an integer, but param `ids` is declared `type: array`"
            ]
        );
        assert!(errors("  - id: a\n    call: dataworks.StopDIJob\n    with: { DIJobId: \"{{params.n}}\" }\n").is_empty());
    }
}
