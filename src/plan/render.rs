//! Templates and conditions at run time: `{{params.x}}`, `{{item}}`,
//! `{{steps.<id>.output.<path>}}` rendered with handlebars in strict mode
//! (a missing value is an error, never an empty string) and without HTML
//! escaping. A string that is exactly one `{{path}}` keeps the JSON type of
//! the value it names, so `for_each: "{{params.file_ids}}"` is an array and
//! `ProjectId: "{{params.project_id}}"` an integer.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use handlebars::Handlebars;
use serde_json::Value;

use super::{Condition, Matcher, When};

/// A template that could not be rendered.
#[derive(Debug, thiserror::Error)]
#[error("template `{template}`: {reason}")]
pub struct RenderError {
    /// The template as written.
    pub template: String,
    /// What went wrong.
    pub reason: String,
}

fn registry() -> &'static Handlebars<'static> {
    static REGISTRY: OnceLock<Handlebars<'static>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut h = Handlebars::new();
        h.set_strict_mode(true);
        h.register_escape_fn(handlebars::no_escape);
        h
    })
}

/// The path of a template that is exactly one `{{path}}`, if it is one.
pub fn single_expression(template: &str) -> Option<&str> {
    let inner = template.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let simple = !inner.is_empty()
        && !inner.contains(['{', '}', ' '])
        && inner.chars().all(|c| c.is_ascii_alphanumeric() || "._-[]".contains(c));
    simple.then_some(inner)
}

/// Looks `a.b.[0].c` up in `ctx`.
pub fn lookup<'v>(ctx: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(ctx, |v, seg| {
        let seg = seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(seg);
        match v {
            Value::Object(map) => map.get(seg),
            Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
    })
}

/// Renders one template string.
pub fn render_str(template: &str, ctx: &Value) -> Result<Value, RenderError> {
    if !template.contains("{{") {
        return Ok(Value::String(template.to_owned()));
    }
    if let Some(path) = single_expression(template) {
        return lookup(ctx, path).cloned().ok_or_else(|| RenderError {
            template: template.to_owned(),
            reason: format!("`{path}` has no value"),
        });
    }
    registry()
        .render_template(template, ctx)
        .map(Value::String)
        .map_err(|e| RenderError { template: template.to_owned(), reason: e.reason().to_string() })
}

/// Renders a JSON value: strings as templates, arrays and objects recursively.
pub fn render_value(template: &Value, ctx: &Value) -> Result<Value, RenderError> {
    Ok(match template {
        Value::String(s) => render_str(s, ctx)?,
        Value::Array(items) => Value::Array(items.iter().map(|v| render_value(v, ctx)).collect::<Result<_, _>>()?),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(v, ctx)?)))
                .collect::<Result<_, RenderError>>()?,
        ),
        other => other.clone(),
    })
}

/// The wire form of a rendered value: strings as is, numbers in decimal,
/// booleans `true`/`false`, arrays and objects as JSON (as Alibaba's RPC
/// APIs take list parameters).
pub fn wire(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Renders a call's `with` into wire strings.
pub fn render_params(with: &BTreeMap<String, Value>, ctx: &Value) -> Result<BTreeMap<String, String>, RenderError> {
    with.iter().map(|(k, v)| Ok((k.clone(), wire(&render_value(v, ctx)?)))).collect()
}

fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.eq_ignore_ascii_case(y),
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => {
            s.trim().parse::<f64>().ok() == n.as_f64()
        }
        (Value::String(s), Value::Bool(b)) | (Value::Bool(b), Value::String(s)) => s.eq_ignore_ascii_case(&b.to_string()),
        _ => a == b,
    }
}

impl Matcher {
    /// Whether a selected value (`None`: the path is missing) matches.
    pub fn matches(&self, value: Option<&Value>) -> bool {
        match self {
            Matcher::In(vs) => value.is_some_and(|v| vs.iter().any(|c| loosely_equal(v, c))),
            Matcher::NotIn(vs) => !value.is_some_and(|v| vs.iter().any(|c| loosely_equal(v, c))),
            Matcher::Equals(c) => value.is_some_and(|v| loosely_equal(v, c)),
            Matcher::Exists(want) => value.is_some_and(|v| !v.is_null()) == *want,
        }
    }
}

impl Condition {
    /// Whether the condition holds on a response.
    pub fn eval(&self, response: &Value) -> bool {
        self.matcher.matches(crate::cloud::select(response, &self.select))
    }
}

/// Truthiness of a rendered `when`: not empty, `false`, `0`, `no` or `null`.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !matches!(s.trim().to_ascii_lowercase().as_str(), "" | "false" | "0" | "no" | "null"),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

impl When {
    /// Evaluates the condition against a render context.
    pub fn eval(&self, ctx: &Value) -> Result<bool, RenderError> {
        match self {
            When::Truthy(t) => Ok(truthy(&render_str(t, ctx)?)),
            When::Match { value, matcher } => Ok(matcher.matches(Some(&render_str(value, ctx)?))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({"params": {"ids": [7, 8], "project_id": 10000, "name": "a<b"}, "steps": {"s": {"output": {"Data": {"Status": "RUN"}}}}, "item": 7})
    }

    #[test]
    fn single_expressions_keep_their_type() {
        assert_eq!(render_str("{{params.ids}}", &ctx()).unwrap(), json!([7, 8]));
        assert_eq!(render_str("{{ params.project_id }}", &ctx()).unwrap(), json!(10000));
        assert_eq!(render_str("{{params.ids.[1]}}", &ctx()).unwrap(), json!(8));
        assert_eq!(render_str("{{item}}", &ctx()).unwrap(), json!(7));
    }

    #[test]
    fn mixed_templates_render_strings_without_escaping() {
        assert_eq!(render_str("n-{{params.name}}-{{item}}", &ctx()).unwrap(), json!("n-a<b-7"));
    }

    #[test]
    fn missing_values_are_errors() {
        assert!(render_str("{{params.nope}}", &ctx()).is_err());
        assert!(render_str("x {{steps.t.output.X}}", &ctx()).is_err());
    }

    #[test]
    fn params_render_to_wire_strings() {
        let with: BTreeMap<String, Value> =
            [("ProjectId".to_owned(), json!("{{params.project_id}}")), ("Flag".to_owned(), json!(true))].into();
        let out = render_params(&with, &ctx()).unwrap();
        assert_eq!(out["ProjectId"], "10000");
        assert_eq!(out["Flag"], "true");
    }

    #[test]
    fn conditions_compare_loosely() {
        let c = Condition { select: "Data.Status".into(), matcher: Matcher::In(vec![json!("run")]) };
        assert!(c.eval(&json!({"Data": {"Status": "RUN"}})));
        assert!(!c.eval(&json!({"Data": {}})));
        assert!(Matcher::NotIn(vec![json!("X")]).matches(None));
        assert!(Matcher::Equals(json!(5)).matches(Some(&json!("5"))));
        let w = When::Match { value: "{{steps.s.output.Data.Status}}".into(), matcher: Matcher::Equals(json!("RUN")) };
        assert!(w.eval(&ctx()).unwrap());
        assert!(!When::Truthy("false".into()).eval(&ctx()).unwrap());
    }
}
