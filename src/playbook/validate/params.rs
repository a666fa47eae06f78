//! Param declarations: names, types, defaults and allowed values.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn params(&mut self) {
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

    pub(super) fn param_decl(&mut self, name: &str, decl: &ParamDecl) {
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

    pub(super) fn param_decl_of(&self, name: &str) -> Option<&'a ParamDecl> {
        self.pb.param(name).map(|p| &p.decl)
    }
}

pub(super) fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(super) fn element_type(ty: ParamType, items: ItemType) -> ItemType {
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

pub(super) fn item_words(ty: ItemType) -> &'static str {
    match ty {
        ItemType::String => "a string",
        ItemType::Integer => "an integer",
        ItemType::Boolean => "a boolean",
    }
}
