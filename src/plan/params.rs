//! Binding param values: `--params FILE` (YAML or JSON), then `-p KEY=VALUE`
//! on top, then declared defaults, each converted to the declared type.
//!
//! Command-line text is converted by the declared type: `-p project_id=10000`
//! is an integer, `-p dry_run=true` a boolean, `-p ids=1,2` or
//! `-p ids=[1,2]` a list of `items`. A params file may spell values as
//! their type or as text (`project_id: "10000"`); both are converted the same way.
//!
//! Every problem (unknown name, missing value, wrong type, value not
//! allowed) is reported at once, as a usage error (exit 2): params are
//! command-line input, not part of the playbook.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, ExitCode};
use crate::playbook::diagnostic::did_you_mean;
use crate::playbook::validate::{in_allowed, value_words};
use crate::playbook::{ItemType, ParamDecl, ParamType, Playbook};

/// Binds the params of `pb` from a params file and `-p` pairs (which win).
pub fn bind(
    pb: &Playbook,
    raw: &[(String, String)],
    file: Option<&Path>,
) -> Result<BTreeMap<String, Value>, Error> {
    let mut given: BTreeMap<String, (Value, String)> = BTreeMap::new();

    if let Some(path) = file {
        let shown = path.display().to_string();
        let text = crate::limits::read_text(path, crate::limits::PARAMS_BYTES)
            .map_err(|e| Error::usage(format!("params file `{shown}` {e}")))?;
        let value = crate::playbook::parse_params_file(&text).map_err(|d| {
            let at = d
                .loc
                .map_or(String::new(), |l| format!(":{}:{}", l.line, l.col));
            Error::usage(format!("params file `{shown}{at}`: {}", d.message))
        })?;
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    given.insert(k, (v, format!("in `{shown}`")));
                }
            }
            Value::Null => {}
            other => {
                return Err(Error::usage(format!(
                    "params file `{shown}` must be a mapping of param names to values, found {}",
                    value_words(&other)
                )));
            }
        }
    }
    for (k, v) in raw {
        given.insert(k.clone(), (Value::String(v.clone()), "from -p".to_owned()));
    }
    bind_given(pb, &given)
}

/// Binds the params saved in a plan file, as a params file would give them
/// (`run PLAN.json` rebuilds the plan from them).
pub fn bind_saved(
    pb: &Playbook,
    saved: &serde_json::Map<String, Value>,
) -> Result<BTreeMap<String, Value>, Error> {
    let given = saved
        .iter()
        .map(|(k, v)| (k.clone(), (v.clone(), "in the plan".to_owned())))
        .collect();
    bind_given(pb, &given)
}

/// Checks and converts the given values (name -> value and where it came
/// from), then adds defaults and reports what is missing.
fn bind_given(
    pb: &Playbook,
    given: &BTreeMap<String, (Value, String)>,
) -> Result<BTreeMap<String, Value>, Error> {
    let mut errors: Vec<String> = Vec::new();
    let mut out = BTreeMap::new();
    for (name, (value, origin)) in given {
        let Some(param) = pb.param(name) else {
            let hint = did_you_mean(name, pb.params.iter().map(|p| p.name.value.as_str()))
                .map_or_else(|| declared_list(pb), |h| format!(" ({h})"));
            errors.push(format!("unknown param `{name}` {origin}{hint}"));
            continue;
        };
        match coerce(&param.decl, value) {
            Ok(v) => match check_allowed(&param.decl, &v) {
                Ok(()) => {
                    out.insert(name.clone(), v);
                }
                Err(m) => errors.push(format!("param `{name}` {m}")),
            },
            Err(m) => errors.push(format!("param `{name}` {origin} {m}")),
        }
    }
    for p in &pb.params {
        let name = &p.name.value;
        if out.contains_key(name) || given.contains_key(name) {
            continue;
        }
        if let Some(d) = &p.decl.default {
            out.insert(name.clone(), d.value.clone());
        } else if p.decl.required.as_ref().is_none_or(|r| r.value) {
            let about = p
                .decl
                .description
                .as_deref()
                .map_or(String::new(), |d| format!(" ({d})"));
            errors.push(format!(
                "missing param `{name}`{about}: give it with `-p {name}=...` ({} {})",
                article(p.decl.ty.value),
                type_words(&p.decl)
            ));
        }
    }
    if errors.is_empty() {
        return Ok(out);
    }
    let mut text = String::new();
    for e in &errors {
        text.push_str("error: ");
        text.push_str(e);
        text.push('\n');
    }
    let summary = if errors.len() == 1 {
        errors[0].clone()
    } else {
        format!("{} problems with params", errors.len())
    };
    Err(Error::rendered(ExitCode::Usage, summary, text))
}

fn declared_list(pb: &Playbook) -> String {
    if pb.params.is_empty() {
        return " (the playbook declares no params)".to_owned();
    }
    let names: Vec<String> = pb
        .params
        .iter()
        .map(|p| format!("`{}`", p.name.value))
        .collect();
    format!(" (declared: {})", names.join(", "))
}

fn article(ty: ParamType) -> &'static str {
    match ty {
        ParamType::Integer | ParamType::Array => "an",
        _ => "a",
    }
}

fn type_words(decl: &ParamDecl) -> String {
    match decl.ty.value {
        ParamType::Array => {
            format!(
                "array of {}s",
                decl.items
                    .as_ref()
                    .map_or(ItemType::String, |i| i.value)
                    .as_str()
            )
        }
        other => other.as_str().to_owned(),
    }
}

fn check_allowed(decl: &ParamDecl, v: &Value) -> Result<(), String> {
    match &decl.allowed {
        Some(allowed) => in_allowed(v, &allowed.value),
        None => Ok(()),
    }
}

/// Converts a given value (text from `-p`, or any JSON from a file) to the
/// declared type.
pub fn coerce(decl: &ParamDecl, v: &Value) -> Result<Value, String> {
    let items = decl.items.as_ref().map_or(ItemType::String, |i| i.value);
    match decl.ty.value {
        ParamType::String => coerce_item(ItemType::String, v),
        ParamType::Integer => coerce_item(ItemType::Integer, v),
        ParamType::Boolean => coerce_item(ItemType::Boolean, v),
        ParamType::Array => match v {
            Value::Array(xs) => xs
                .iter()
                .map(|x| coerce_item(items, x))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Value::String(s) => split_list(s)?
                .iter()
                .map(|x| coerce_item(items, x))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            other => coerce_item(items, other).map(|x| Value::Array(vec![x])),
        },
    }
}

/// `[1, 2]` (a YAML/JSON flow list), `1,2`, a single `1`, or empty.
fn split_list(s: &str) -> Result<Vec<Value>, String> {
    let t = s.trim();
    if t.is_empty() || t == "[]" {
        return Ok(Vec::new());
    }
    if t.starts_with('[') {
        return match crate::playbook::parse_params_file(t) {
            Ok(Value::Array(xs)) => Ok(xs),
            _ => Err(format!(
                "must be a list, found `{s}` (write `1,2,3` or `[1,2,3]`)"
            )),
        };
    }
    Ok(t.split(',')
        .map(|x| Value::String(x.trim().to_owned()))
        .collect())
}

fn coerce_item(ty: ItemType, v: &Value) -> Result<Value, String> {
    let bad = || {
        let words = match ty {
            ItemType::String => "a string",
            ItemType::Integer => "an integer",
            ItemType::Boolean => "`true` or `false`",
        };
        Err(format!("must be {words}, found {}", value_words(v)))
    };
    match (ty, v) {
        (ItemType::String, Value::String(_)) => Ok(v.clone()),
        (ItemType::String, Value::Number(n)) => Ok(Value::String(n.to_string())),
        (ItemType::String, Value::Bool(b)) => Ok(Value::String(b.to_string())),
        (ItemType::Integer, Value::Number(n)) if n.is_i64() => Ok(v.clone()),
        (ItemType::Integer, Value::String(s)) => {
            s.trim().parse::<i64>().map(Value::from).or_else(|_| bad())
        }
        (ItemType::Boolean, Value::Bool(_)) => Ok(v.clone()),
        (ItemType::Boolean, Value::String(s)) if s == "true" || s == "false" => {
            Ok(Value::Bool(s == "true"))
        }
        _ => bad(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playbook() -> Playbook {
        Playbook::from_str(
            "t.yaml",
            r#"
name: t
params:
  region: { type: string, default: cn-hangzhou, allowed: [cn-hangzhou, cn-shanghai] }
  project_id: { type: integer }
  file_ids: { type: array, items: integer }
  dry_run: { type: boolean, default: false }
  note: { type: string, required: false }
steps:
  - id: s
    sleep: 1s
"#,
        )
        .unwrap_or_else(|d| panic!("{}", d.render()))
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn coerces_command_line_text() {
        let pb = playbook();
        let got = bind(
            &pb,
            &pairs(&[
                ("project_id", "10000"),
                ("file_ids", "1, 2"),
                ("dry_run", "true"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(got["project_id"], serde_json::json!(10000));
        assert_eq!(got["file_ids"], serde_json::json!([1, 2]));
        assert_eq!(got["dry_run"], serde_json::json!(true));
        assert_eq!(got["region"], serde_json::json!("cn-hangzhou"));
        assert!(!got.contains_key("note"));
        let got = bind(
            &pb,
            &pairs(&[("project_id", "1"), ("file_ids", "[3,4]")]),
            None,
        )
        .unwrap();
        assert_eq!(got["file_ids"], serde_json::json!([3, 4]));
    }

    #[test]
    fn reports_every_problem() {
        let pb = playbook();
        let e = bind(
            &pb,
            &pairs(&[
                ("project_id", "abc"),
                ("file_id", "1"),
                ("region", "us-east-1"),
            ]),
            None,
        )
        .unwrap_err();
        assert_eq!(e.exit, ExitCode::Usage);
        let text = e.rendered.unwrap();
        assert!(
            text.contains("param `project_id` from -p must be an integer, found the string `abc`"),
            "{text}"
        );
        assert!(
            text.contains("unknown param `file_id` from -p (did you mean `file_ids`?)"),
            "{text}"
        );
        assert!(
            text.contains("param `region` is `us-east-1`, which is not allowed"),
            "{text}"
        );
        assert!(text.contains("missing param `file_ids`"), "{text}");
    }
}
