//! `Plan::build`: a valid playbook plus bound params becomes a [`Plan`].
//!
//! Everything that depends only on params is rendered now, so the reviewer
//! sees the real values: regions, call parameters, fan-out items, the
//! request each call would send. What depends on an earlier step's output or
//! on `item` is shown as a placeholder (`<steps.dts-stopped.output.Status>`,
//! `<item>`) and rendered by the executor at run time. Typed action
//! parameters whose value is known are checked against the catalogue here
//! (an integer parameter given `abc` through a param is an error with the
//! step and the template).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::cloud::Risk;
use crate::cloud::endpoint::is_region_id;
use crate::playbook::action::{self, Target};
use crate::playbook::diagnostic::{Diagnostic, Diagnostics};
use crate::playbook::template::{self, Root};
use crate::playbook::validate::{
    self, DEFAULT_CONCURRENCY, DEFAULT_WAIT_EVERY, DEFAULT_WAIT_TIMEOUT, wire_value,
};
use crate::playbook::{
    BackoffSpec, ConditionSpec, DurationExpr, Located, MatcherSpec, OnFailureSpec, Params,
    Playbook, Step, StepKindSpec, WhenSpec,
};

use super::NotifyTarget;
use super::render::{Scope, lookup, wire_text};
use super::{
    Backoff, BlastRadius, CallPlan, Condition, ForEach, Matcher, OnFailure, PLAN_FORMAT, Plan,
    PlannedStep, RetryPolicy, StepId, StepKind, WaitPlan, When, graph, request_for,
};
use crate::cloud::region::{ENV_REGION_ID, RegionLookup};
use crate::cloud::signer::SignatureVersion;

/// What the command line adds to a playbook when it builds a plan.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// `--signature` or `RUNBOOK_SIGNATURE`; wins over the playbook's
    /// `defaults.signature`.
    pub signature: Option<SignatureVersion>,
    /// The region of the steps the playbook gives none
    /// ([`crate::cloud::region::default_region`]), or why there is none.
    pub default_region: RegionLookup,
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            signature: None,
            default_region: Err("the playbook sets none".to_owned()),
        }
    }
}

impl BuildOptions {
    /// These options, signing with `signature` when given.
    #[must_use]
    pub fn signed(mut self, signature: Option<SignatureVersion>) -> BuildOptions {
        self.signature = signature;
        self
    }

    /// These options, with `default_region` for steps that name none.
    #[must_use]
    pub fn default_region(mut self, default_region: RegionLookup) -> BuildOptions {
        self.default_region = default_region;
        self
    }
}

impl Plan {
    /// Builds the plan of `pb` with bound `params` (see [`super::params::bind`]).
    /// Errors carry the playbook position of the value that failed.
    pub fn build(pb: &Playbook, params: &BTreeMap<String, Value>) -> Result<Plan, Diagnostics> {
        Plan::build_with(pb, params, &BuildOptions::default())
    }

    /// [`Plan::build`] with what the command line adds: the signature, and
    /// the region of steps the playbook gives none (recorded in the plan
    /// when a step uses it).
    pub fn build_with(
        pb: &Playbook,
        params: &BTreeMap<String, Value>,
        options: &BuildOptions,
    ) -> Result<Plan, Diagnostics> {
        let signature = options
            .signature
            .or_else(|| pb.defaults.signature.as_ref().map(|s| s.value))
            .unwrap_or_default();
        let mut b = Builder {
            pb,
            signature,
            default_region: &options.default_region,
            default_region_used: false,
            region_missing_told: false,
            params: Value::Object(
                params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Map<_, _>>(),
            ),
            diags: Diagnostics::new(std::sync::Arc::clone(&pb.source)),
        };
        let steps: Vec<PlannedStep> = pb.steps.iter().filter_map(|s| b.step(s)).collect();
        let window = pb.window.as_ref().and_then(|w| {
            let spec = &w.value;
            crate::window::Window::parse(
                &spec.tz.value,
                spec.slots.iter().map(|s| s.value.as_str()),
                spec.blackout.iter().map(|d| d.value.as_str()),
            )
            .map_err(|e| {
                // Validation reports these with their positions first.
                b.diags.push(
                    Diagnostic::new(format!("window: {}", e.message), w.loc).maybe_hint(e.hint),
                );
            })
            .ok()
        });
        if !b.diags.is_empty() {
            return Err(b.diags);
        }

        let concurrency = pb
            .concurrency
            .as_ref()
            .map_or(DEFAULT_CONCURRENCY, |c| c.value) as usize;
        let shape = graph::shape(&steps, concurrency);
        let ids = |v: &[usize]| v.iter().map(|&i| steps[i].id.clone()).collect::<Vec<_>>();
        let levels = shape.levels.iter().map(|l| ids(l)).collect();
        let critical_path = ids(&shape.critical);
        let blast_radius = blast_radius(&steps);
        let mut by_index: Vec<Option<PlannedStep>> = steps.into_iter().map(Some).collect();
        let ordered: Vec<PlannedStep> = shape
            .order
            .iter()
            .filter_map(|&i| by_index[i].take())
            .collect();

        let worst_case_secs = u64::try_from(shape.worst_case_ms.div_ceil(1000)).unwrap_or(u64::MAX);
        let worst_case_open = ordered
            .iter()
            .filter(|s| {
                !s.compensation
                    && s.worst_case(concurrency)
                        .rounds
                        .is_some_and(|r| r.open_ended())
            })
            .map(|s| s.id.clone())
            .collect();
        let mut plan = Plan {
            format: PLAN_FORMAT,
            name: pb.name.value.clone(),
            description: pb.description.clone(),
            source: pb.source.name().to_owned(),
            playbook_sha256: pb.source.sha256().to_owned(),
            digest: String::new(),
            params: params.clone(),
            concurrency,
            window,
            signature,
            default_region: b
                .default_region_used
                .then(|| options.default_region.clone().ok())
                .flatten(),
            steps: ordered,
            levels,
            critical_path,
            worst_case_secs,
            worst_case_open,
            blast_radius,
            notify: pb.notify.iter().map(NotifyTarget::from_spec).collect(),
            approval: approval_policy(&pb.approval),
            observations: None,
        };
        plan.digest = super::integrity::digest(&plan);
        Ok(plan)
    }
}

/// The policy validated approval keys describe; `None` when none is
/// written (anyone approves, once: the plan and its digest as before).
fn approval_policy(keys: &crate::playbook::model::ApprovalKeys) -> Option<super::ApprovalPolicy> {
    if keys.is_empty() {
        return None;
    }
    Some(super::ApprovalPolicy {
        approvers: keys
            .approvers
            .as_ref()
            .map(|l| l.value.iter().map(|a| a.value.clone()).collect())
            .unwrap_or_default(),
        min_approvals: keys
            .min_approvals
            .as_ref()
            .and_then(|m| u32::try_from(m.value).ok())
            .unwrap_or(super::DEFAULT_MIN_APPROVALS),
        allow_self_approval: keys.allow_self_approval.as_ref().is_some_and(|a| a.value),
    })
}

fn blast_radius(steps: &[PlannedStep]) -> BlastRadius {
    let mut b = BlastRadius::default();
    for s in steps
        .iter()
        .filter(|s| !s.compensation && graph::is_call(s))
    {
        let n = match &s.for_each {
            None => 1,
            Some(ForEach {
                items: Some(items), ..
            }) => items.len(),
            Some(ForEach { items: None, .. }) => {
                b.unknown_fan_out.push(s.id.clone());
                1
            }
        };
        match s.risk {
            Risk::Read => b.read += n,
            Risk::Mutating => b.mutating += n,
            Risk::Irreversible => b.irreversible += n,
        }
    }
    b
}

struct Builder<'a> {
    pb: &'a Playbook,
    /// How the previewed requests are signed.
    signature: SignatureVersion,
    /// The region of steps the playbook gives none.
    default_region: &'a RegionLookup,
    /// Whether a step took [`Builder::default_region`].
    default_region_used: bool,
    /// Whether the lack of one was reported (once, not per step).
    region_missing_told: bool,
    params: Value,
    diags: Diagnostics,
}

/// A value rendered as far as params allow.
struct Symbolic {
    value: Value,
    /// Whether no placeholder is left.
    known: bool,
}

impl Builder<'_> {
    fn scope(&self) -> Scope<'_> {
        Scope {
            params: Some(&self.params),
            steps: None,
            item: None,
            failed: None,
        }
    }

    fn fail(&mut self, step: &Step, message: String, loc: crate::playbook::Loc) {
        let message = format!("step `{}`: {message}", step.id.value);
        self.diags.push(Diagnostic::new(
            message,
            if loc.is_known() { loc } else { step.loc },
        ));
    }

    /// Renders `v`, leaving placeholders for outputs and `item`.
    fn symbolic(&mut self, step: &Step, v: &Located<Value>) -> Option<Symbolic> {
        match symbolic(&v.value, self.scope()) {
            Ok(s) => Some(s),
            Err(m) => {
                self.fail(step, m, v.loc);
                None
            }
        }
    }

    fn step(&mut self, s: &Step) -> Option<PlannedStep> {
        let pb = self.pb;
        let region = self.region(s)?;
        let role_arn = self.role_arn(s)?;
        let for_each = self.for_each(s)?;
        let first_item = for_each
            .as_ref()
            .and_then(|f| f.items.as_ref())
            .and_then(|i| i.first().cloned());
        let (kind, risk) = match &s.kind {
            StepKindSpec::Call { call, with, assert } => {
                let (plan, risk) =
                    self.call(s, call, with.as_ref(), &region, first_item.as_ref())?;
                let assert = assert.as_ref().map(|a| condition(&a.value));
                (StepKind::Call { call: plan, assert }, risk)
            }
            StepKindSpec::Wait(w) => {
                let w = &w.value;
                let (call, _) =
                    self.call(s, &w.call, w.with.as_ref(), &region, first_item.as_ref())?;
                let until = condition(&w.until.as_ref()?.value);
                let every = match &w.every {
                    Some(e) => self.duration(s, e, "every")?,
                    None => DEFAULT_WAIT_EVERY,
                };
                let backoff = w.backoff.as_ref().map_or(1.0, |b| b.value);
                let max_every = match &w.max_every {
                    Some(m) => {
                        let max = self.duration(s, m, "max_every")?;
                        if max < every {
                            self.fail(
                                s,
                                format!(
                                    "`max_every` ({}) is shorter than `every` ({})",
                                    crate::duration::format(max),
                                    crate::duration::format(every)
                                ),
                                m.loc,
                            );
                            return None;
                        }
                        max
                    }
                    None if backoff > 1.0 => every * 10,
                    None => every,
                };
                let timeout = match &w.timeout {
                    Some(t) => self.duration(s, t, "timeout")?,
                    None => DEFAULT_WAIT_TIMEOUT,
                };
                let plan = WaitPlan {
                    call,
                    until,
                    fail_if: w.fail_if.as_ref().map(|c| condition(&c.value)),
                    every_millis: millis(every),
                    backoff,
                    max_every_millis: millis(max_every),
                    timeout_millis: millis(timeout),
                };
                (StepKind::Wait(plan), Risk::Read)
            }
            StepKindSpec::Sleep(d) => (
                StepKind::Sleep {
                    millis: millis(self.duration(s, d, "sleep")?),
                },
                Risk::Read,
            ),
            StepKindSpec::Approve(a) => {
                let text = self.symbolic(
                    s,
                    &Located {
                        value: Value::String(a.value.message.value.clone()),
                        loc: a.value.message.loc,
                    },
                )?;
                let message = wire_text(&text.value).unwrap_or_default();
                let policy = approval_policy(&a.value.keys);
                (StepKind::Approve { message, policy }, Risk::Read)
            }
        };
        let when = s.when.as_ref().map(|w| match &w.value {
            WhenSpec::Truthy(t) => When::Truthy(t.clone()),
            WhenSpec::Match { value, matcher } => When::Match {
                value: value.clone(),
                matcher: matcher_of(matcher),
            },
        });
        let spec = validate::merged_retry(pb, s);
        let base = RetryPolicy::default();
        let delay = spec.delay.map_or(base.delay_millis, |d| millis(d.0));
        let retry = RetryPolicy {
            attempts: spec.attempts.unwrap_or(base.attempts),
            backoff: match spec.backoff {
                Some(BackoffSpec::Fixed) => Backoff::Fixed,
                Some(BackoffSpec::Exponential) => Backoff::Exponential,
                None => base.backoff,
            },
            delay_millis: delay,
            // The built-in ceiling never undercuts an explicit first delay.
            max_delay_millis: spec
                .max_delay
                .map_or(base.max_delay_millis.max(delay), |d| millis(d.0)),
            jitter: spec.jitter.unwrap_or(base.jitter),
        };
        // `defaults.timeout` bounds call steps only: a wait has its own
        // `wait.timeout`, and an approval waits for a human.
        let inherited = if matches!(s.kind, StepKindSpec::Call { .. }) {
            pb.defaults.timeout.as_ref()
        } else {
            None
        };
        let timeout = match s.timeout.as_ref().or(inherited) {
            Some(t) => Some(self.duration(s, t, "timeout")?),
            None => None,
        };
        let on_failure = match s
            .on_failure
            .as_ref()
            .or(pb.defaults.on_failure.as_ref())
            .map(|o| &o.value)
        {
            None | Some(OnFailureSpec::Abort) => OnFailure::Abort,
            Some(OnFailureSpec::Continue) => OnFailure::Continue,
            Some(OnFailureSpec::Run(ids)) => {
                OnFailure::Compensate(ids.iter().map(|i| StepId(i.value.clone())).collect())
            }
        };
        Some(PlannedStep {
            id: StepId(s.id.value.clone()),
            description: s.description.clone(),
            needs: s.needs_ids().map(|n| StepId(n.to_owned())).collect(),
            when,
            for_each,
            kind,
            retry,
            timeout_secs: timeout
                .map(|t| t.as_millis().div_ceil(1000))
                .map(|t| u64::try_from(t).unwrap_or(u64::MAX)),
            on_failure,
            compensation: s.compensation,
            risk,
            region,
            role_arn,
            report: s
                .report
                .as_ref()
                .map(|r| r.value.iter().map(|p| p.value.clone()).collect())
                .unwrap_or_default(),
            line: s.loc.line as usize,
        })
    }

    /// A duration field (`name` as written), its template rendered with
    /// params and checked: a duration, longer than zero unless a `sleep`.
    fn duration(&mut self, s: &Step, d: &Located<DurationExpr>, name: &str) -> Option<Duration> {
        let template = match &d.value {
            DurationExpr::Fixed(f) => return Some(f.0),
            DurationExpr::Template(t) => t,
        };
        let v = self.symbolic(
            s,
            &Located {
                value: Value::String(template.clone()),
                loc: d.loc,
            },
        )?;
        let text = wire_text(&v.value).unwrap_or_default();
        let id = &s.id.value;
        let (message, hint) = match crate::duration::parse(&text) {
            Ok(x) if !x.is_zero() || name == "sleep" => return Some(x),
            Ok(_) => (
                format!(
                    "step `{id}`: `{name}` is `{template}`, which renders to `{text}`; it must be longer than 0s"
                ),
                "pass a longer duration".to_owned(),
            ),
            Err(e) => (
                format!(
                    "step `{id}`: `{name}` is `{template}`, which renders to `{text}`, not a duration"
                ),
                e.hint().to_owned(),
            ),
        };
        self.diags.push(Diagnostic::new(message, d.loc).hint(hint));
        None
    }

    /// The step's `role_arn` (or `defaults.role_arn`), rendered: `None`
    /// when neither is set; an error unless it renders to a role ARN.
    fn role_arn(&mut self, s: &Step) -> Option<Option<String>> {
        let Some(r) = s.role_arn.as_ref().or(self.pb.defaults.role_arn.as_ref()) else {
            return Some(None);
        };
        let v = self.symbolic(
            s,
            &Located {
                value: Value::String(r.value.clone()),
                loc: r.loc,
            },
        )?;
        match v.value {
            Value::String(arn) if v.known && crate::cloud::sts::is_role_arn(arn.trim()) => {
                Some(Some(arn.trim().to_owned()))
            }
            other => {
                let shown = match &other {
                    Value::String(text) => format!("`{text}`"),
                    other => validate::value_words(other),
                };
                self.fail(
                    s,
                    format!(
                        "role_arn `{}` renders to {shown}, not a RAM role ARN such as `acs:ram::123456789012:role/maintenance`",
                        r.value
                    ),
                    r.loc,
                );
                None
            }
        }
    }

    fn region(&mut self, s: &Step) -> Option<String> {
        let Some(r) = s.region.as_ref().or(self.pb.defaults.region.as_ref()) else {
            return self.default_region(s);
        };
        let v = self.symbolic(
            s,
            &Located {
                value: Value::String(r.value.clone()),
                loc: r.loc,
            },
        )?;
        match v.value {
            Value::String(region) if v.known && is_region_id(region.trim()) => {
                Some(region.trim().to_owned())
            }
            Value::String(region) if v.known && !region.trim().is_empty() => {
                let from = if template::has_template(&r.value) {
                    format!(" (rendered from `{}`)", r.value)
                } else {
                    String::new()
                };
                self.fail(
                    s,
                    format!(
                        "region `{region}`{from} is not a region id such as `cn-hangzhou` or `ap-southeast-1`"
                    ),
                    r.loc,
                );
                None
            }
            other => {
                self.fail(
                    s,
                    format!(
                        "region `{}` rendered to {}",
                        r.value,
                        validate::value_words(&other)
                    ),
                    r.loc,
                );
                None
            }
        }
    }

    /// The region of a step the playbook gives none: the default region
    /// for a step that calls an API, none for the others.
    fn default_region(&mut self, s: &Step) -> Option<String> {
        if !matches!(s.kind, StepKindSpec::Call { .. } | StepKindSpec::Wait(_)) {
            return Some(String::new());
        }
        match self.default_region {
            Ok(found) => {
                self.default_region_used = true;
                Some(found.region.clone())
            }
            Err(why) => {
                if !std::mem::replace(&mut self.region_missing_told, true) {
                    self.diags.push(
                        Diagnostic::new(
                            format!("step `{}` calls an API but has no region: {why}", s.id.value),
                            s.id.loc,
                        )
                        .hint(format!(
                            "add `region:` to `defaults` (e.g. `region: \"{{{{params.region}}}}\"`) or to the step, or set {ENV_REGION_ID} (e.g. `{ENV_REGION_ID}=cn-hangzhou`)"
                        )),
                    );
                }
                None
            }
        }
    }

    fn for_each(&mut self, s: &Step) -> Option<Option<ForEach>> {
        let Some(fe) = &s.for_each else {
            return Some(None);
        };
        let concurrency = s
            .for_each_concurrency
            .as_ref()
            .or(self.pb.defaults.for_each_concurrency.as_ref())
            .map(|c| c.value as usize);
        let template = match &fe.value {
            Value::String(t) => t.clone(),
            other => other.to_string(),
        };
        let v = self.symbolic(s, fe)?;
        let items = match v.value {
            Value::Array(items) if v.known => Some(items),
            Value::Array(_) => None,
            Value::String(p) if !v.known && p.starts_with('<') => None,
            other => {
                self.fail(
                    s,
                    format!(
                        "`for_each` rendered to {}, not a list",
                        validate::value_words(&other)
                    ),
                    fe.loc,
                );
                return None;
            }
        };
        Some(Some(ForEach {
            template,
            items,
            concurrency,
        }))
    }

    fn call(
        &mut self,
        s: &Step,
        call: &Located<String>,
        with: Option<&Params>,
        region: &str,
        first_item: Option<&Value>,
    ) -> Option<(CallPlan, Risk)> {
        let target = match action::resolve(call, with) {
            Ok(t) => t,
            Err(ds) => {
                for d in ds {
                    self.diags.push(d);
                }
                return None;
            }
        };
        let empty = Params::default();
        let api_params = target.params(with.unwrap_or(&empty));
        let mut rendered = BTreeMap::new();
        let mut for_request = BTreeMap::new();
        let mut ok = true;
        for (k, v) in &api_params.0 {
            let Some(sym) = self.symbolic(s, v) else {
                ok = false;
                continue;
            };
            let text = match wire_text(&sym.value) {
                Some(t) => t,
                None => {
                    self.fail(
                        s,
                        format!("parameter `{}` rendered to null", k.value),
                        v.loc,
                    );
                    ok = false;
                    continue;
                }
            };
            if sym.known
                && let Target::Typed(spec) = &target
                && let Some(p) = spec.param(&k.value)
                && let Err((m, _)) = wire_value(p.ty, p.allowed, &sym.value)
            {
                let from = if v.value.as_str().is_some_and(template::has_template) {
                    format!(
                        " (rendered from `{}`)",
                        v.value.as_str().unwrap_or_default()
                    )
                } else {
                    String::new()
                };
                self.fail(
                    s,
                    format!("parameter `{}` of `{}` {m}{from}", k.value, spec.name),
                    v.loc,
                );
                ok = false;
                continue;
            }
            // The request preview shows the first item's real values.
            let request_text = match first_item {
                Some(item) if !sym.known => {
                    match super::render::render_value_in(&v.value, self.scope().with_item(item))
                        .ok()
                        .as_ref()
                        .and_then(wire_text)
                    {
                        Some(t) => t,
                        None => text.clone(),
                    }
                }
                _ => text.clone(),
            };
            rendered.insert(k.value.clone(), text);
            for_request.insert(k.value.clone(), request_text);
        }
        if !ok {
            return None;
        }
        let (product, version, rpc_action) = match &target {
            Target::Typed(spec) => (
                spec.product.to_owned(),
                spec.version.to_owned(),
                spec.action.to_owned(),
            ),
            Target::Generic(g) => (g.product.clone(), g.version.clone(), g.action.clone()),
        };
        let mut plan = CallPlan {
            action: call.value.clone(),
            product,
            version,
            rpc_action,
            risk: target.risk(),
            with: api_params.to_map(),
            rendered,
            request: crate::cloud::RequestPreview {
                method: String::new(),
                product: String::new(),
                region: String::new(),
                query: String::new(),
                body: String::new(),
                headers: BTreeMap::new(),
            },
        };
        let mut request = request_for(&plan, region, for_request).preview(self.signature);
        request.query = readable_placeholders(&request.query);
        request.body = readable_placeholders(&request.body);
        plan.request = request;
        Some((plan, target.risk()))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn matcher_of(m: &MatcherSpec) -> Matcher {
    match m {
        MatcherSpec::In(v) => Matcher::In(v.clone()),
        MatcherSpec::NotIn(v) => Matcher::NotIn(v.clone()),
        MatcherSpec::Equals(v) => Matcher::Equals(v.clone()),
        MatcherSpec::Exists(b) => Matcher::Exists(*b),
    }
}

fn condition(c: &ConditionSpec) -> Condition {
    Condition {
        select: c.select.clone(),
        matcher: matcher_of(&c.matcher),
    }
}

/// Renders what params allow; expressions over `steps` or `item` become
/// placeholders (`<steps.x.output.Status>`). A missing param is an error.
fn symbolic(v: &Value, scope: Scope<'_>) -> Result<Symbolic, String> {
    match v {
        Value::String(s) if template::has_template(s) => symbolic_str(s, scope),
        Value::Array(items) => {
            let mut known = true;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let r = symbolic(item, scope)?;
                known &= r.known;
                out.push(r.value);
            }
            Ok(Symbolic {
                value: Value::Array(out),
                known,
            })
        }
        Value::Object(map) => {
            let mut known = true;
            let mut out = Map::new();
            for (k, item) in map {
                let r = symbolic(item, scope)?;
                known &= r.known;
                out.insert(k.clone(), r.value);
            }
            Ok(Symbolic {
                value: Value::Object(out),
                known,
            })
        }
        other => Ok(Symbolic {
            value: other.clone(),
            known: true,
        }),
    }
}

fn symbolic_str(s: &str, scope: Scope<'_>) -> Result<Symbolic, String> {
    let t = template::parse(s).map_err(|e| format!("invalid template `{s}`: {}", e.message))?;
    let resolve = |e: &template::Expr| -> Result<Option<Value>, String> {
        match e.root() {
            Ok(Root::Param(name)) => lookup(e, scope).cloned().map(Some).map_err(|m| {
                let given = scope.params.is_some_and(|p| p.get(name).is_some());
                let why = if given {
                    ""
                } else {
                    " (the param has no value and no default)"
                };
                format!("cannot render `{s}`: {m}{why}")
            }),
            Ok(_) => Ok(None),
            Err(err) => Err(format!("cannot render `{s}`: {err}")),
        }
    };
    if t.single {
        return Ok(match resolve(&t.exprs[0])? {
            Some(v) => Symbolic {
                value: v,
                known: true,
            },
            None => Symbolic {
                value: Value::String(template::placeholder(&t.exprs[0])),
                known: false,
            },
        });
    }
    let mut out = String::new();
    let mut known = true;
    let mut at = 0;
    for e in &t.exprs {
        out.push_str(&s[at..e.offset].replace("\\{{", "{{"));
        match resolve(e)? {
            Some(Value::Array(_) | Value::Object(_)) => {
                return Err(format!(
                    "cannot render `{s}`: `{}` is a list or mapping and cannot be part of a text",
                    e.text
                ));
            }
            Some(v) => out.push_str(&wire_text(&v).unwrap_or_default()),
            None => {
                known = false;
                out.push_str(&template::placeholder(e));
            }
        }
        at = e.offset + e.len;
    }
    out.push_str(&s[at..].replace("\\{{", "{{"));
    Ok(Symbolic {
        value: Value::String(out),
        known,
    })
}

/// Undoes the percent-encoding of `<...>` placeholders in a previewed query,
/// so `FileId=<item>` reads as written rather than `FileId=%3Citem%3E`.
fn readable_placeholders(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    let mut rest = q;
    while let Some(start) = rest.find("%3C") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 3..];
        match after.find("%3E") {
            Some(end)
                if !after[..end].is_empty()
                    && after[..end].chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~')
                    }) =>
            {
                out.push('<');
                out.push_str(&after[..end]);
                out.push('>');
                rest = &after[end + 3..];
            }
            _ => {
                out.push_str("%3C");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_readable() {
        assert_eq!(
            readable_placeholders("A=1&FileId=%3Citem%3E&Nonce=%3Cper-attempt%3E&X=%3Ca%20b%3E"),
            "A=1&FileId=<item>&Nonce=<per-attempt>&X=%3Ca%20b%3E"
        );
    }

    #[test]
    fn symbolic_rendering() {
        let params = serde_json::json!({"p": 7, "ids": [1, 2]});
        let scope = Scope {
            params: Some(&params),
            steps: None,
            item: None,
            failed: None,
        };
        let r = symbolic(&Value::from("{{params.p}}"), scope).unwrap();
        assert_eq!((r.value, r.known), (Value::from(7), true));
        let r = symbolic(&Value::from("{{steps.a.output.Data.Status}}"), scope).unwrap();
        assert_eq!(
            (r.value, r.known),
            (Value::from("<steps.a.output.Data.Status>"), false)
        );
        let r = symbolic(&Value::from("p{{params.p}}-{{item}}"), scope).unwrap();
        assert_eq!((r.value, r.known), (Value::from("p7-<item>"), false));
        let e = symbolic(&Value::from("{{params.q}}"), scope).err().unwrap();
        assert!(e.contains("`params` has no `q`"), "{e}");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn design_sketch_plans() {
        let pb = Playbook::load(std::path::Path::new("playbooks/dts-di-cutover.yaml"))
            .unwrap_or_else(|d| panic!("{}", d.render()));
        let raw = vec![
            ("project_id".to_owned(), "10000".to_owned()),
            ("dts_job_id".to_owned(), "l3m1213ye7l".to_owned()),
            ("file_ids".to_owned(), "101,102".to_owned()),
        ];
        let params = super::super::params::bind(&pb, &raw, None).unwrap();
        let plan = Plan::build(&pb, &params).unwrap_or_else(|d| panic!("{}", d.render()));
        let order: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            order,
            [
                "stop-dts-forward",
                "dts-stopped",
                "terminate-di",
                "di-terminated",
                "report"
            ]
        );
        assert_eq!(plan.critical_path.len(), 5);
        // 2m (call timeout) + 15m (wait) + 2m + 5m (wait) + 2m.
        assert_eq!(plan.worst_case_secs, 26 * 60);
        assert_eq!(
            (
                plan.blast_radius.read,
                plan.blast_radius.mutating,
                plan.blast_radius.irreversible
            ),
            (1, 1, 2)
        );
        let StepKind::Call { call, .. } = &plan.steps[2].kind else {
            panic!("terminate-di is a call")
        };
        assert_eq!(call.rendered["FileId"], "<item>");
        assert!(
            call.request.query.contains("FileId=101&"),
            "{}",
            call.request.query
        );
        assert_eq!(plan.digest, super::super::integrity::digest(&plan));
    }
}
