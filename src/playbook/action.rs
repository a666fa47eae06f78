//! What a `call:` names: a typed action from the catalogue
//! ([`crate::cloud::actions`]) or the generic `api` call for any other RPC API.
//!
//! The generic form carries the API's coordinates in `with`:
//!
//! ```yaml
//! call: api
//! with:
//!   product: ecs
//!   version: "2014-05-26"
//!   action: StopInstance
//!   risk: mutating        # read | mutating | irreversible; default mutating (the safe assumption)
//!   params: { InstanceId: "{{params.instance_id}}" }
//! ```

use serde_json::Value;

use crate::cloud::Risk;
use crate::cloud::actions::{self, ActionSpec, GENERIC_API};

use super::diagnostic::{Diagnostic, did_you_mean};
use super::model::{Located, Params};
use super::source::Loc;

/// Keys of `with` for `call: api`.
pub const GENERIC_KEYS: &[&str] = &["product", "version", "action", "risk", "params"];

/// A generic RPC call, as written under `with`.
#[derive(Clone, Debug, PartialEq)]
pub struct GenericCall {
    /// Product code (`ecs`), used for the endpoint and `--endpoint`.
    pub product: String,
    /// API version (`2014-05-26`).
    pub version: String,
    /// RPC action (`StopInstance`).
    pub action: String,
    /// Risk class; `mutating` unless written.
    pub risk: Risk,
    /// The API's parameters.
    pub params: Params,
}

/// The resolved target of a `call` (or of a `wait`'s call).
#[derive(Clone, Debug)]
pub enum Target {
    /// A catalogue action.
    Typed(&'static ActionSpec),
    /// `call: api`.
    Generic(GenericCall),
}

impl Target {
    /// Its risk class.
    pub fn risk(&self) -> Risk {
        match self {
            Target::Typed(spec) => spec.risk,
            Target::Generic(g) => g.risk,
        }
    }

    /// The API parameters (for a typed action, `with` itself).
    pub fn params<'a>(&'a self, with: &'a Params) -> &'a Params {
        match self {
            Target::Typed(_) => with,
            Target::Generic(g) => &g.params,
        }
    }

    /// How the plan names it (`dts.StopDtsJob`, `ecs.StopInstance`).
    pub fn display_name(&self) -> String {
        match self {
            Target::Typed(spec) => spec.name.to_owned(),
            Target::Generic(g) => format!("{}.{}", g.product, g.action),
        }
    }
}

/// Resolves `call` with its `with`. `with_loc` is where a missing parameter
/// is reported (the `call` value).
pub fn resolve(call: &Located<String>, with: Option<&Params>) -> Result<Target, Vec<Diagnostic>> {
    if call.value == GENERIC_API {
        return generic(call.loc, with.unwrap_or(&Params::default())).map(Target::Generic);
    }
    match actions::lookup(&call.value) {
        Some(spec) => Ok(Target::Typed(spec)),
        None => {
            let hint = did_you_mean(&call.value, actions::names()).unwrap_or_else(|| {
                format!(
                    "typed actions are {}; use `call: api` for any other RPC API",
                    super::load::backticked(
                        &actions::CATALOGUE
                            .iter()
                            .map(|a| a.name)
                            .collect::<Vec<_>>()
                    )
                )
            });
            Err(vec![
                Diagnostic::new(format!("unknown action `{}`", call.value), call.loc).hint(hint),
            ])
        }
    }
}

fn generic(call_loc: Loc, with: &Params) -> Result<GenericCall, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    for (k, _) in &with.0 {
        if !GENERIC_KEYS.contains(&k.value.as_str()) {
            let hint = did_you_mean(&k.value, GENERIC_KEYS.iter().copied()).unwrap_or_else(|| {
                "`call: api` takes `product`, `version`, `action`, `risk` and `params`; API parameters go under `params`".to_owned()
            });
            errors.push(
                Diagnostic::new(format!("unknown field `{}` of `call: api`", k.value), k.loc)
                    .hint(hint),
            );
        }
    }
    let mut text = |key: &str, example: &str| -> Option<String> {
        match with.get(key) {
            Some(Located {
                value: Value::String(s),
                loc,
            }) => {
                if s.contains("{{") {
                    errors.push(
                        Diagnostic::new(format!("`{key}` of `call: api` cannot be a template"), *loc)
                            .hint("the plan needs the API's coordinates before the run; write them literally"),
                    );
                    return None;
                }
                Some(s.clone())
            }
            Some(v) => {
                errors.push(Diagnostic::new(
                    format!("`{key}` of `call: api` must be a string"),
                    v.loc,
                ));
                None
            }
            None => {
                errors.push(
                    Diagnostic::new(format!("`call: api` needs `{key}` in `with`"), call_loc)
                        .hint(format!("add `{key}: {example}` under `with`")),
                );
                None
            }
        }
    };
    let product = text("product", "ecs");
    let version = text("version", "\"2014-05-26\"");
    let action = text("action", "StopInstance");
    if let (Some(v), Some(loc)) = (&version, with.get("version").map(|v| v.loc))
        && !is_api_version(v)
    {
        errors.push(
            Diagnostic::new(format!("API version `{v}` is not a date"), loc)
                .hint("Alibaba Cloud API versions look like `2014-05-26`; quote it"),
        );
    }
    if let (Some(a), Some(loc)) = (&action, with.get("action").map(|v| v.loc))
        && (a.is_empty() || !a.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        errors.push(
            Diagnostic::new(format!("invalid API action `{a}`"), loc)
                .hint("an RPC action is one word of letters and digits, like `StopInstance`"),
        );
    }
    let risk = match with.get("risk") {
        None => Risk::Mutating,
        Some(Located {
            value: Value::String(s),
            loc,
        }) => match s.as_str() {
            "read" => Risk::Read,
            "mutating" => Risk::Mutating,
            "irreversible" => Risk::Irreversible,
            other => {
                errors.push(
                    Diagnostic::new(format!("unknown risk `{other}`"), *loc)
                        .hint("risk is `read`, `mutating` or `irreversible`"),
                );
                Risk::Mutating
            }
        },
        Some(v) => {
            errors.push(Diagnostic::new(
                "`risk` must be `read`, `mutating` or `irreversible`",
                v.loc,
            ));
            Risk::Mutating
        }
    };
    let params = match with.get("params") {
        None => Params::default(),
        Some(Located {
            value: Value::Object(map),
            loc,
        }) => Params(
            map.iter()
                .map(|(k, v)| {
                    (
                        Located {
                            value: k.clone(),
                            loc: *loc,
                        },
                        Located {
                            value: v.clone(),
                            loc: *loc,
                        },
                    )
                })
                .collect(),
        ),
        Some(v) => {
            errors.push(Diagnostic::new(
                "`params` of `call: api` must be a mapping of API parameters",
                v.loc,
            ));
            Params::default()
        }
    };
    if let Some(product) = &product
        && (product.is_empty()
            || !product
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        errors.push(Diagnostic::new(
            format!("invalid product code `{product}`"),
            with.get("product").map_or(call_loc, |v| v.loc),
        ));
    }
    match (product, version, action) {
        (Some(product), Some(version), Some(action)) if errors.is_empty() => Ok(GenericCall {
            product: product.to_ascii_lowercase(),
            version,
            action,
            risk,
            params,
        }),
        _ => Err(errors),
    }
}

fn is_api_version(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, Value)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| {
                    (
                        Located::unlocated((*k).to_owned()),
                        Located::unlocated(v.clone()),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn typed_and_unknown() {
        let t = resolve(&Located::unlocated("dts.StopDtsJob".into()), None).unwrap();
        assert_eq!(t.risk(), Risk::Mutating);
        let e = resolve(&Located::unlocated("dts.StopDtsJb".into()), None).unwrap_err();
        assert_eq!(e[0].hint.as_deref(), Some("did you mean `dts.StopDtsJob`?"));
    }

    #[test]
    fn generic_defaults_to_mutating_and_checks_fields() {
        let w = with(&[
            ("product", "ecs".into()),
            ("version", "2014-05-26".into()),
            ("action", "StopInstance".into()),
            ("params", serde_json::json!({"InstanceId": "i-1"})),
        ]);
        let Target::Generic(g) = resolve(&Located::unlocated("api".into()), Some(&w)).unwrap()
        else {
            panic!("generic")
        };
        assert_eq!(g.risk, Risk::Mutating);
        assert_eq!(g.params.0.len(), 1);
        let w = with(&[
            ("product", "ecs".into()),
            ("version", "v1".into()),
            ("acton", "X".into()),
        ]);
        let e = resolve(&Located::unlocated("api".into()), Some(&w)).unwrap_err();
        let msgs: Vec<&str> = e.iter().map(|d| d.message.as_str()).collect();
        assert!(
            msgs.contains(&"unknown field `acton` of `call: api`"),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(&"`call: api` needs `action` in `with`"),
            "{msgs:?}"
        );
        assert!(msgs.contains(&"API version `v1` is not a date"), "{msgs:?}");
    }
}
