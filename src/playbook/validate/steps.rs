//! Each step and `defaults`: kinds, regions, waits, durations, calls and
//! their parameters against the catalogue, fan-outs.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn defaults(&mut self) {
        let pb = self.pb;
        let d = &pb.defaults;
        self.at_least_one(pb.concurrency.as_ref(), "concurrency");
        self.at_least_one(d.for_each_concurrency.as_ref(), "for_each_concurrency");
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

    /// A concurrency (`key`) of 0 would never run anything.
    fn at_least_one(&mut self, c: Option<&Located<u32>>, key: &str) {
        if let Some(c) = c
            && c.value == 0
        {
            self.push(Diagnostic::new(
                format!("`{key}` must be at least 1"),
                c.loc,
            ));
        }
    }

    pub(super) fn step(&mut self, i: usize) {
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
        self.at_least_one(s.for_each_concurrency.as_ref(), "for_each_concurrency");
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
                self.call(i, call, with.as_ref(), base, false);
            }
            StepKindSpec::Wait(w) => {
                self.call(i, &w.value.call, w.value.with.as_ref(), base, true);
                self.wait_policy(i, w);
            }
            StepKindSpec::Approve(a) => {
                let message = &a.value.message;
                self.template_str(
                    &message.value,
                    message.loc,
                    // The question is rendered into the plan the approver
                    // signs off, so it may read only params.
                    Scope {
                        place: "`approve`",
                        item: false,
                        steps: false,
                        ..base
                    },
                );
                if message.value.trim().is_empty() {
                    self.push(
                        Diagnostic::new(format!("`approve` of step `{id}` is empty"), message.loc)
                            .hint("write the question the approver answers"),
                    );
                }
                self.approval_keys(&a.value.keys, &format!("step `{id}`"));
            }
            StepKindSpec::Sleep(d) => self.duration(d, "`sleep`", Some(i)),
        }
        if let Some(r) = &s.report {
            self.report_paths(s, r);
        }
    }

    /// `report: [Data.Status, ...]`: dotted paths into the response of a
    /// `call` or `wait` step, each written once.
    fn report_paths(&mut self, s: &Step, report: &Located<Vec<Located<String>>>) {
        let id = s.id.value.as_str();
        if !s.kind.has_output() {
            self.push(
                Diagnostic::new(
                    format!(
                        "step `{id}` has `report`, but a `{}` step has no response to report from",
                        s.kind.name()
                    ),
                    report.loc,
                )
                .hint("`report` lists paths into the response of a `call` or `wait` step"),
            );
            return;
        }
        if report.value.is_empty() {
            self.push(
                Diagnostic::new(format!("`report` of step `{id}` is empty"), report.loc)
                    .hint("list the values to report, e.g. `report: [Data.Status, Data.Message]`"),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &report.value {
            let path = p.value.as_str();
            let well_formed = !path.is_empty()
                && path.split('.').all(|seg| {
                    !seg.is_empty()
                        && seg
                            .chars()
                            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                });
            if !well_formed {
                self.push(
                    Diagnostic::new(
                        format!("`report` of step `{id}`: `{path}` is not a dotted path"),
                        p.loc,
                    )
                    .hint("name a value of the response by its keys (and list indexes), e.g. `Data.Status` or `Items.0.Id`"),
                );
            } else if !seen.insert(path) {
                self.push(Diagnostic::new(
                    format!("`report` of step `{id}` lists `{path}` twice"),
                    p.loc,
                ));
            }
        }
    }

    /// A region written out (not a template) must look like a region id.
    pub(super) fn region_literal(&mut self, region: &str, loc: Loc) {
        if !region.contains("{{") && !crate::cloud::endpoint::is_region_id(region) {
            self.push(
                Diagnostic::new(format!("invalid region `{region}`"), loc)
                    .hint("a region id looks like `cn-hangzhou` or `ap-southeast-1`"),
            );
        }
    }

    /// A region that is one `{{params.X}}` needs X to be a string: the plan
    /// refuses a region that renders to a list, a number or a boolean.
    pub(super) fn region_param(&mut self, region: &str, loc: Loc, place: &str) {
        let Some((p, decl, at)) = self.non_string_param(region, loc) else {
            return;
        };
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

    pub(super) fn wait_policy(&mut self, i: usize, wait: &Located<WaitSpec>) {
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
    pub(super) fn duration(&mut self, d: &Located<DurationExpr>, name: &str, step: Option<usize>) {
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
        let Some((p, decl, at)) = self.non_string_param(t, d.loc) else {
            return;
        };
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

    pub(super) fn call(
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
    pub(super) fn typed_params(
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
    pub(super) fn typed_value(
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

    pub(super) fn for_each(&mut self, i: usize, fe: &Located<Value>) {
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
}

pub(super) fn api_type_words(ty: ApiType) -> &'static str {
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
