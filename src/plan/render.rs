//! Rendering templates at run time, and evaluating conditions.
//!
//! The context a template sees is a JSON object:
//!
//! ```json
//! { "params": { "project_id": 10000 },
//!   "steps":  { "dts-stopped": { "output": { "Status": "Finished" } } },
//!   "item":   42,
//!   "failed": { "changed_items": [101, 103] } }
//! ```
//!
//! (`failed` only in a compensation step: what the step whose failure runs
//! it changed.)
//!
//! [`context`], [`set_output`] and [`set_item`] build it; [`Scope`] is the
//! same thing by reference, so the executor can bind `item` for each of a
//! fan-out's items without copying the outputs.
//!
//! A string that is exactly one `{{path}}` renders to the value at the path
//! with its JSON type; any other string with expressions is rendered as text
//! by Handlebars (strict mode, no HTML escaping, one registry for the
//! process) from a context holding only what the template reads. Every
//! missing value is an error naming the template and how far the path got.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use handlebars::Handlebars;
use serde_json::{Map, Value};

use crate::playbook::template::{self, Expr, Seg};

use super::{Condition, ForEach, Matcher, When};

/// A template could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot render `{template}`: {message}")]
pub struct RenderError {
    /// The template as written.
    pub template: String,
    /// What went wrong.
    pub message: String,
    /// Whether the cause is a value that is not there (as opposed to a
    /// syntax error or a value of the wrong shape).
    pub missing: bool,
}

/// What templates can read, by reference.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scope<'a> {
    /// `params`: an object of param values.
    pub params: Option<&'a Value>,
    /// `steps`: an object of `{ "<id>": { "output": ... } }`.
    pub steps: Option<&'a Value>,
    /// `item`: the current item of a fan-out.
    pub item: Option<&'a Value>,
    /// `failed`: `{ "changed_items": [...] }`, in a compensation step.
    pub failed: Option<&'a Value>,
}

impl<'a> Scope<'a> {
    /// The scope a context object describes.
    pub fn of(ctx: &'a Value) -> Scope<'a> {
        Scope {
            params: ctx.get("params"),
            steps: ctx.get("steps"),
            item: ctx.get("item"),
            failed: ctx.get("failed"),
        }
    }

    /// The same scope with `item` bound.
    #[must_use]
    pub fn with_item(self, item: &'a Value) -> Scope<'a> {
        Scope {
            item: Some(item),
            ..self
        }
    }
}

/// A new context holding the params.
pub fn context(params: &BTreeMap<String, Value>) -> Value {
    let params: Map<String, Value> = params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    serde_json::json!({ "params": params, "steps": {} })
}

/// Records step `id`'s output in a context made by [`context`].
pub fn set_output(ctx: &mut Value, id: &str, output: Value) {
    if let Some(obj) = ctx.as_object_mut() {
        let steps = obj
            .entry("steps")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(steps) = steps.as_object_mut() {
            steps.insert(id.to_owned(), serde_json::json!({ "output": output }));
        }
    }
}

/// Binds (or with `None`, unbinds) `item` in a context.
pub fn set_item(ctx: &mut Value, item: Option<Value>) {
    if let Some(obj) = ctx.as_object_mut() {
        match item {
            Some(v) => {
                obj.insert("item".to_owned(), v);
            }
            None => {
                obj.remove("item");
            }
        }
    }
}

/// The process-wide Handlebars registry: strict (a missing value is an
/// error, not an empty string) and without HTML escaping.
fn registry() -> &'static Handlebars<'static> {
    static REGISTRY: OnceLock<Handlebars<'static>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        hb
    })
}

/// Renders a JSON value: strings are templates (a single `{{path}}` keeps
/// the value's type), arrays and objects are rendered item by item, other
/// values are returned as they are.
pub fn render_value(template: &Value, ctx: &Value) -> Result<Value, RenderError> {
    render_value_in(template, Scope::of(ctx))
}

/// [`render_value`] against a [`Scope`].
pub fn render_value_in(template: &Value, scope: Scope<'_>) -> Result<Value, RenderError> {
    match template {
        Value::String(s) => render_str(s, scope),
        Value::Array(items) => items
            .iter()
            .map(|v| render_value_in(v, scope))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), render_value_in(v, scope)?)))
            .collect::<Result<Map<_, _>, _>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

/// Renders call parameters to their wire form: strings as they are,
/// integers in decimal, booleans `true`/`false`, lists and mappings as
/// compact JSON (how RPC APIs take structured values).
pub fn render_params(
    with: &BTreeMap<String, Value>,
    ctx: &Value,
) -> Result<BTreeMap<String, String>, RenderError> {
    render_params_in(with, Scope::of(ctx))
}

/// [`render_params`] against a [`Scope`].
pub fn render_params_in(
    with: &BTreeMap<String, Value>,
    scope: Scope<'_>,
) -> Result<BTreeMap<String, String>, RenderError> {
    with.iter()
        .map(|(k, v)| {
            let rendered = render_value_in(v, scope)?;
            let wire = wire_text(&rendered).ok_or_else(|| RenderError {
                template: v.to_string(),
                message: format!("parameter `{k}` rendered to null"),
                missing: true,
            })?;
            Ok((k.clone(), wire))
        })
        .collect()
}

/// The wire text of a rendered value (`None` for null).
pub fn wire_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

fn render_str(s: &str, scope: Scope<'_>) -> Result<Value, RenderError> {
    if !template::has_template(s) {
        return Ok(Value::String(s.to_owned()));
    }
    let err = |message: String, missing: bool| RenderError {
        template: s.to_owned(),
        message,
        missing,
    };
    let t = template::parse(s).map_err(|e| err(e.message, false))?;
    if t.single {
        return lookup(&t.exprs[0], scope)
            .cloned()
            .map_err(|m| err(m, true));
    }
    // Check every value first: the message names the path, and a list or
    // mapping cannot be spliced into text.
    let mut needed = Map::new();
    for e in &t.exprs {
        let v = lookup(e, scope).map_err(|m| err(m, true))?;
        match v {
            Value::Array(_) | Value::Object(_) => {
                return Err(err(
                    format!(
                        "`{}` is a list or mapping and cannot be part of a text",
                        e.text
                    ),
                    false,
                ));
            }
            Value::Null => return Err(err(format!("`{}` is null", e.text), true)),
            _ => {}
        }
        copy_root(e, scope, &mut needed);
    }
    registry()
        .render_template(s, &Value::Object(needed))
        .map(Value::String)
        .map_err(|e| err(e.to_string(), false))
}

/// Copies into `out` the part of the scope the expression reads (a whole
/// step output or param value), so Handlebars gets a small context.
fn copy_root(e: &Expr, scope: Scope<'_>, out: &mut Map<String, Value>) {
    let key = |i: usize| match e.path.get(i) {
        Some(Seg::Key(k)) => Some(k.as_str()),
        _ => None,
    };
    match key(0) {
        Some("item") => {
            if let Some(item) = scope.item {
                out.insert("item".to_owned(), item.clone());
            }
        }
        Some(root @ ("params" | "steps" | "failed")) => {
            let src = match root {
                "params" => scope.params,
                "steps" => scope.steps,
                _ => scope.failed,
            };
            let (Some(name), Some(src)) = (key(1), src) else {
                return;
            };
            let Some(v) = src.get(name) else { return };
            let slot = out.entry(root).or_insert_with(|| Value::Object(Map::new()));
            if let Some(m) = slot.as_object_mut() {
                m.entry(name).or_insert_with(|| v.clone());
            }
        }
        _ => {}
    }
}

/// The value an expression names, or a message saying how far the path got.
pub fn lookup<'v>(e: &Expr, scope: Scope<'v>) -> Result<&'v Value, String> {
    let (root, rest) = match e.path.first() {
        Some(Seg::Key(k)) if k == "params" => (scope.params, &e.path[1..]),
        Some(Seg::Key(k)) if k == "steps" => (scope.steps, &e.path[1..]),
        Some(Seg::Key(k)) if k == "item" => (scope.item, &e.path[1..]),
        Some(Seg::Key(k)) if k == "failed" => (scope.failed, &e.path[1..]),
        _ => return Err(format!("unknown template variable `{}`", e.text)),
    };
    let Some(mut cur) = root else {
        return Err(match e.path.first() {
            Some(Seg::Key(k)) if k == "item" => {
                "`item` is not bound here (not in a `for_each`)".to_owned()
            }
            Some(first) => format!("`{first}` is not available here"),
            None => "empty path".to_owned(),
        });
    };
    let mut walked = e.path[0].to_string();
    for seg in rest {
        let next = match (cur, seg) {
            (Value::Object(m), Seg::Key(k)) => m.get(k),
            (Value::Object(m), Seg::Index(i)) => m.get(&i.to_string()),
            (Value::Array(items), Seg::Index(i)) => items.get(*i),
            (Value::Array(items), Seg::Key(k)) => {
                k.parse::<usize>().ok().and_then(|i| items.get(i))
            }
            _ => None,
        };
        match next {
            Some(v) => {
                walked.push('.');
                walked.push_str(&seg.to_string());
                cur = v;
            }
            None => {
                return Err(match cur {
                    Value::Array(items) => {
                        format!("`{walked}` has {} items, no item `{seg}`", items.len())
                    }
                    Value::Object(_) => format!("`{walked}` has no `{seg}`"),
                    other => format!(
                        "`{walked}` is {}, not a mapping or list",
                        crate::playbook::validate::value_words(other)
                    ),
                });
            }
        }
    }
    Ok(cur)
}

/// Truthiness for `when`: false for null, `false`, 0, empty strings, lists
/// and mappings, and the texts `false` and `0` (a rendered text of a false
/// value).
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !(s.is_empty() || s == "false" || s == "0"),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Loose equality for conditions: strings case-insensitively (status casing
/// varies between Alibaba APIs), numbers numerically, and a number equal to
/// a string that spells it.
pub fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.eq_ignore_ascii_case(y),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => {
            s.trim().parse::<f64>().ok() == n.as_f64()
        }
        (Value::Bool(x), Value::String(s)) | (Value::String(s), Value::Bool(x)) => {
            s.eq_ignore_ascii_case(&x.to_string())
        }
        (x, y) => x == y,
    }
}

impl Matcher {
    /// Whether the selected value (`None`: the path does not exist) matches.
    pub fn matches(&self, v: Option<&Value>) -> bool {
        let v = v.filter(|v| !v.is_null());
        match self {
            Matcher::In(list) => v.is_some_and(|v| list.iter().any(|x| loose_eq(v, x))),
            Matcher::NotIn(list) => v.is_none_or(|v| !list.iter().any(|x| loose_eq(v, x))),
            Matcher::Equals(x) => v.is_some_and(|v| loose_eq(v, x)),
            Matcher::Exists(want) => v.is_some() == *want,
        }
    }
}

impl ForEach {
    /// The items of the fan-out, rendered against `ctx`. Handles both forms
    /// a playbook can write: a template (`"{{params.file_ids}}"`) and a
    /// literal list (kept in `template` as its JSON text, e.g. `[1,2]`, whose
    /// items may themselves be templates).
    pub fn render(&self, ctx: &Value) -> Result<Vec<Value>, RenderError> {
        self.render_in(Scope::of(ctx))
    }

    /// [`ForEach::render`] against a [`Scope`].
    pub fn render_in(&self, scope: Scope<'_>) -> Result<Vec<Value>, RenderError> {
        let err = |message: String| RenderError {
            template: self.template.clone(),
            message,
            missing: false,
        };
        // A template is one `{{...}}` (validation makes sure), so only a
        // literal list starts with `[`.
        let source = if self.template.trim_start().starts_with('[') {
            serde_json::from_str::<Value>(&self.template)
                .map_err(|e| err(format!("not a JSON list: {e}")))?
        } else {
            Value::String(self.template.clone())
        };
        match render_value_in(&source, scope)? {
            Value::Array(items) => Ok(items),
            other => Err(err(format!(
                "rendered to {}, not a list",
                crate::playbook::validate::value_words(&other)
            ))),
        }
    }
}

impl Condition {
    /// Whether the condition holds on a response.
    pub fn eval(&self, response: &Value) -> bool {
        self.matcher
            .matches(crate::cloud::select(response, &self.select))
    }

    /// The selected value, for messages ("polled: Status = Synchronizing").
    pub fn observed<'v>(&self, response: &'v Value) -> Option<&'v Value> {
        crate::cloud::select(response, &self.select)
    }
}

impl When {
    /// Whether the step should run.
    pub fn eval(&self, ctx: &Value) -> Result<bool, RenderError> {
        self.eval_in(Scope::of(ctx))
    }

    /// [`When::eval`] against a [`Scope`].
    pub fn eval_in(&self, scope: Scope<'_>) -> Result<bool, RenderError> {
        match self {
            When::Truthy(t) => render_str(t, scope).map(|v| truthy(&v)),
            When::Match { value, matcher } => match render_str(value, scope) {
                Ok(v) => Ok(matcher.matches(Some(&v))),
                // A value that is not there is exactly what `exists: false`
                // and `not_in` ask about.
                Err(e)
                    if e.missing && matches!(matcher, Matcher::Exists(_) | Matcher::NotIn(_)) =>
                {
                    Ok(matcher.matches(None))
                }
                Err(e) => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        let mut c = context(&BTreeMap::from([
            ("project_id".to_owned(), json!(10000)),
            ("file_ids".to_owned(), json!([101, 102])),
            ("name".to_owned(), json!("a<b>&c")),
        ]));
        set_output(
            &mut c,
            "dts-stopped",
            json!({"Status": "Finished", "Data": {"L": [1, 2]}}),
        );
        c
    }

    #[test]
    fn single_expressions_keep_their_type() {
        let c = ctx();
        assert_eq!(
            render_value(&json!("{{params.project_id}}"), &c).unwrap(),
            json!(10000)
        );
        assert_eq!(
            render_value(&json!("{{params.file_ids}}"), &c).unwrap(),
            json!([101, 102])
        );
        assert_eq!(
            render_value(&json!("{{params.file_ids.[1]}}"), &c).unwrap(),
            json!(102)
        );
        assert_eq!(
            render_value(&json!("{{steps.dts-stopped.output.Status}}"), &c).unwrap(),
            json!("Finished")
        );
        assert_eq!(
            render_value(&json!({"a": ["{{params.project_id}}", 3]}), &c).unwrap(),
            json!({"a": [10000, 3]})
        );
    }

    #[test]
    fn text_is_rendered_without_escaping() {
        let c = ctx();
        assert_eq!(
            render_value(&json!("p-{{params.project_id}}/{{params.name}}"), &c).unwrap(),
            json!("p-10000/a<b>&c")
        );
        assert_eq!(
            render_value(&json!("status {{steps.dts-stopped.output.Status}}"), &c).unwrap(),
            json!("status Finished")
        );
    }

    #[test]
    fn missing_values_are_errors_naming_the_path() {
        let c = ctx();
        let e = render_value(&json!("{{steps.dts-stopped.output.Data.Status}}"), &c).unwrap_err();
        assert_eq!(e.message, "`steps.dts-stopped.output.Data` has no `Status`");
        assert!(e.missing);
        let e = render_value(&json!("x {{params.nope}}"), &c).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot render `x {{params.nope}}`: `params` has no `nope`"
        );
        let e = render_value(&json!("{{params.file_ids.[5]}}"), &c).unwrap_err();
        assert_eq!(e.message, "`params.file_ids` has 2 items, no item `5`");
        let e = render_value(&json!("{{item}}"), &c).unwrap_err();
        assert!(e.message.contains("not bound"), "{}", e.message);
        let e = render_value(&json!("ids {{params.file_ids}}"), &c).unwrap_err();
        assert!(
            e.message.contains("cannot be part of a text"),
            "{}",
            e.message
        );
    }

    #[test]
    fn items_bind_per_scope() {
        let c = ctx();
        let item = json!({"FileId": 7});
        let scope = Scope::of(&c).with_item(&item);
        assert_eq!(
            render_value_in(&json!("{{item.FileId}}"), scope).unwrap(),
            json!(7)
        );
        let with = BTreeMap::from([
            ("FileId".to_owned(), json!("{{item.FileId}}")),
            ("Flag".to_owned(), json!(true)),
            ("ProjectId".to_owned(), json!("{{params.project_id}}")),
        ]);
        let wire = render_params_in(&with, scope).unwrap();
        assert_eq!(wire["FileId"], "7");
        assert_eq!(wire["Flag"], "true");
        assert_eq!(wire["ProjectId"], "10000");
    }

    #[test]
    fn for_each_items_from_templates_and_literal_lists() {
        let c = ctx();
        let fe = |t: &str| ForEach {
            template: t.to_owned(),
            items: None,
            concurrency: None,
        };
        assert_eq!(
            fe("{{params.file_ids}}").render(&c).unwrap(),
            vec![json!(101), json!(102)]
        );
        assert_eq!(
            fe("[1,\"{{params.project_id}}\",\"x\"]")
                .render(&c)
                .unwrap(),
            vec![json!(1), json!(10000), json!("x")]
        );
        let e = fe("{{params.project_id}}").render(&c).unwrap_err();
        assert!(e.message.contains("not a list"), "{}", e.message);
    }

    #[test]
    fn matchers() {
        let m = Matcher::In(vec![json!("finished")]);
        assert!(m.matches(Some(&json!("Finished"))));
        assert!(!m.matches(None));
        assert!(Matcher::NotIn(vec![json!("RUN")]).matches(None));
        assert!(!Matcher::NotIn(vec![json!("RUN")]).matches(Some(&json!("run"))));
        assert!(Matcher::Equals(json!(200)).matches(Some(&json!("200"))));
        assert!(Matcher::Exists(false).matches(Some(&Value::Null)));
        let c = Condition {
            select: "Data.Status".into(),
            matcher: Matcher::In(vec![json!("NORUN")]),
        };
        assert!(c.eval(&json!({"Data": {"Status": "NORUN"}})));
        assert!(!c.eval(&json!({"Data": {}})));
    }

    #[test]
    fn when_conditions() {
        let c = ctx();
        assert!(
            When::Truthy("{{params.project_id}}".into())
                .eval(&c)
                .unwrap()
        );
        let w = When::Match {
            value: "{{steps.dts-stopped.output.Status}}".into(),
            matcher: Matcher::In(vec![json!("Finished")]),
        };
        assert!(w.eval(&c).unwrap());
        let w = When::Match {
            value: "{{steps.dts-stopped.output.Nope}}".into(),
            matcher: Matcher::Exists(false),
        };
        assert!(w.eval(&c).unwrap());
        let w = When::Match {
            value: "{{steps.dts-stopped.output.Nope}}".into(),
            matcher: Matcher::Equals(json!(1)),
        };
        assert!(w.eval(&c).is_err());
    }
}
