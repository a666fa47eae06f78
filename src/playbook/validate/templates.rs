//! Templates: what each may read where (params, `steps.<id>.output`,
//! `item`), and values the plan could not render (a list inside a text).

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn template_value(&mut self, v: &Value, loc: Loc, scope: Scope<'_>) {
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
    pub(super) fn template_str(&mut self, s: &str, loc: Loc, scope: Scope<'_>) -> bool {
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
    pub(super) fn list_in_text(&mut self, s: &str, loc: Loc, e: &Expr, scope: Scope<'_>) -> bool {
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

    /// When `text` is one `{{params.X}}` and X is declared with a type
    /// other than `string`: X, its declaration and where it stands. The
    /// fields that a text value renders into (a region, a duration) refuse
    /// such a param when the plan is built.
    pub(super) fn non_string_param(
        &self,
        text: &str,
        loc: Loc,
    ) -> Option<(String, &'a ParamDecl, Loc)> {
        let t = template::parse(text).ok()?;
        if !t.single {
            return None;
        }
        let e = &t.exprs[0];
        let p = self.whole_param(e)?;
        let decl = self.param_decl_of(p)?;
        (decl.ty.value != ParamType::String)
            .then(|| (p.to_owned(), decl, self.expr_loc(loc, text, e)))
    }

    /// The param `e` reads as a whole (`params.X`, no path after it).
    pub(super) fn whole_param<'e>(&self, e: &'e Expr) -> Option<&'e str> {
        match (e.root(), e.rest().is_empty()) {
            (Ok(Root::Param(p)), true) => Some(p),
            _ => None,
        }
    }

    pub(super) fn expr(&mut self, s: &str, loc: Loc, e: &Expr, scope: Scope<'_>) -> bool {
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
                    RootError::Failed => Some(format!(
                        "in a compensation step, `{{{{{}}}}}` lists what the failed step changed",
                        template::CHANGED_ITEMS
                    )),
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
            Ok(Root::ChangedItems) => {
                self.push(
                    Diagnostic::new(
                        format!(
                            "`{}` is only defined in a compensation step, but {}{whose} is not in one",
                            template::CHANGED_ITEMS,
                            scope.where_()
                        ),
                        at,
                    )
                    .hint("it lists what the failed step changed, for the compensation that undoes it"),
                );
                false
            }
        }
    }

    /// The common case without building any message: the reference is fine.
    pub(super) fn expr_is_fine(&mut self, e: &Expr, scope: Scope<'_>) -> bool {
        match e.root() {
            Ok(Root::Param(p)) => self.pb.param(p).is_some(),
            Ok(Root::Item) => scope.item,
            Ok(Root::ChangedItems) => scope.step.is_some_and(|i| self.pb.steps[i].compensation),
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

    pub(super) fn step_ref(
        &mut self,
        scope: Scope<'_>,
        target: &str,
        at: Loc,
        whose: &str,
    ) -> bool {
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
    pub(super) fn expr_loc(&self, loc: Loc, s: &str, e: &Expr) -> Loc {
        self.sub_loc(loc, s, e.offset, e.len)
    }

    pub(super) fn sub_loc(&self, loc: Loc, s: &str, offset: usize, len: usize) -> Loc {
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
