//! Assembles a [`Playbook`] from the located YAML tree, one section at a
//! time, so that an error in one step does not hide errors in the others.
//!
//! The top-level keys are read here by hand (they are few and each is
//! deserialized with the strict model type); a unit test keeps this list in
//! step with [`PlaybookDoc`](super::model::PlaybookDoc), which the schema is
//! generated from.

use std::sync::Arc;

use serde::Deserialize;

use super::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use super::load::{DeError, Kind, Lenient, Node, NodeDe, deserialize_all};
use super::model::{
    ApprovalKeys, Defaults, Located, Param, ParamDecl, Playbook, Step, StepDoc, StepKindSpec,
};
use super::source::{Loc, Source};

/// The top-level keys of a playbook, in documentation order.
pub(crate) const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "description",
    "params",
    "defaults",
    "concurrency",
    "window",
    "steps",
    "notify",
    "approvers",
    "min_approvals",
    "allow_self_approval",
];

/// What the loader made of the tree.
pub(crate) struct Assembled {
    /// The playbook, possibly missing the sections that failed to load.
    pub(crate) playbook: Playbook,
    /// Whether every section loaded.
    pub(crate) complete: bool,
    /// Ids of steps that failed to load (references to them are not errors
    /// of their own).
    pub(crate) broken_ids: Vec<String>,
    /// Names of params whose declaration failed to load.
    pub(crate) broken_params: Vec<String>,
    /// Whether `defaults` failed to load (checks that depend on it are skipped).
    pub(crate) broken_defaults: bool,
    /// Dotted paths of the values that failed to load and were left out of
    /// a section that did (`steps.stop.wait.until`, `defaults.region`,
    /// `params.ids.items`): checks that would only report their absence
    /// are skipped.
    pub(crate) left_out: Vec<String>,
}

/// Builds the playbook from `root`, reporting every structural error; the
/// sections that did load are kept so semantic checks can still run on them.
pub(crate) fn assemble(
    source: &Arc<Source>,
    root: &Node,
    diags: &mut Diagnostics,
) -> Option<Assembled> {
    let Kind::Map(entries) = &root.kind else {
        diags.push(
            Diagnostic::new(
                format!("a playbook must be a mapping, found {}", root.describe()),
                root.loc.with_len(1),
            )
            .hint("start with `name:` and `steps:`"),
        );
        return None;
    };

    let mut name: Option<Located<String>> = None;
    let mut description = None;
    let mut params = Vec::new();
    let mut defaults = Defaults::default();
    let mut concurrency = None;
    let mut window = None;
    let mut notify = Vec::new();
    let mut approval = ApprovalKeys::default();
    let mut steps = Vec::new();
    let mut saw_steps = false;
    let mut ok = true;
    let mut broken_ids = Vec::new();
    let mut broken_params = Vec::new();
    let mut broken_defaults = false;
    let mut left_out = Vec::new();

    for (key, value) in entries {
        let Some(k) = key.as_str() else {
            diags.push(Diagnostic::new(
                format!("expected a field name, found {}", key.describe()),
                key.loc,
            ));
            ok = false;
            continue;
        };
        let mut take = |r: Result<(), DeError>| {
            if let Err(e) = r {
                diags.push(e.into_diagnostic());
                ok = false;
            }
        };
        match k {
            "name" => take(de(value).map(|v| name = Some(v))),
            "description" => take(de(value).map(|v| description = v)),
            "concurrency" => take(de(value).map(|v| concurrency = v)),
            "window" => take(de(value).map(|v| window = v)),
            "notify" => take(de::<Option<Vec<_>>>(value).map(|v| notify = v.unwrap_or_default())),
            "approvers" => take(de(value).map(|v| approval.approvers = v)),
            "min_approvals" => take(de(value).map(|v| approval.min_approvals = v)),
            "allow_self_approval" => take(de(value).map(|v| approval.allow_self_approval = v)),
            "defaults" => {
                let loaded = deserialize_all::<Option<Defaults>>(value);
                ok &= report(loaded.errors, "", diags);
                left_out.extend(dotted("defaults", &loaded.left_out));
                match loaded.value {
                    Some(d) => defaults = d.unwrap_or_default(),
                    None => broken_defaults = true,
                }
            }
            "params" => {
                ok &= read_params(value, &mut params, &mut broken_params, &mut left_out, diags);
            }
            "steps" => {
                saw_steps = true;
                ok &= read_steps(value, &mut steps, &mut broken_ids, &mut left_out, diags);
            }
            other => {
                let hint =
                    did_you_mean(other, TOP_LEVEL_KEYS.iter().copied()).unwrap_or_else(|| {
                        format!(
                            "the top level has {}",
                            super::load::backticked(TOP_LEVEL_KEYS)
                        )
                    });
                diags.push(
                    Diagnostic::new(format!("unknown field `{other}` at the top level"), key.loc)
                        .hint(hint),
                );
                ok = false;
            }
        }
    }

    if name.is_none() {
        diags.push(
            Diagnostic::new("missing field `name`", Loc::at(1, 1).with_len(1))
                .hint("add `name: <playbook-name>` at the top"),
        );
        ok = false;
    }
    if !saw_steps {
        diags.push(
            Diagnostic::new("missing field `steps`", Loc::at(1, 1).with_len(1))
                .hint("add `steps:` with at least one step"),
        );
        ok = false;
    }
    let name = name.unwrap_or_else(|| Located::unlocated(String::new()));
    let playbook = Playbook {
        source: Arc::clone(source),
        name,
        description,
        params,
        defaults,
        concurrency,
        window,
        steps,
        notify,
        approval,
    };
    Some(Assembled {
        playbook,
        complete: ok,
        broken_ids,
        broken_params,
        broken_defaults,
        left_out,
    })
}

/// Adds `errors` to `diags` with `context` after each message; whether there were none.
fn report(errors: Vec<DeError>, context: &str, diags: &mut Diagnostics) -> bool {
    let none = errors.is_empty();
    for e in errors {
        diags.push(e.in_context(context).into_diagnostic());
    }
    none
}

/// `paths` under `prefix`, dotted.
fn dotted<'p>(prefix: &'p str, paths: &'p [Vec<String>]) -> impl Iterator<Item = String> + 'p {
    paths
        .iter()
        .map(move |p| format!("{prefix}.{}", p.join(".")))
}

fn de<T: for<'a> Deserialize<'a>>(node: &Node) -> Result<T, DeError> {
    T::deserialize(NodeDe(node, &[]))
}

fn read_params(
    node: &Node,
    out: &mut Vec<Param>,
    broken: &mut Vec<String>,
    left_out: &mut Vec<String>,
    diags: &mut Diagnostics,
) -> bool {
    let entries = match &node.kind {
        Kind::Map(entries) => entries,
        Kind::Null => return true,
        _ => {
            diags.push(
                Diagnostic::new(
                    format!(
                        "`params` must be a mapping of names to declarations, found {}",
                        node.describe()
                    ),
                    node.loc,
                )
                .hint("write `params: { project_id: { type: integer } }`"),
            );
            return false;
        }
    };
    let mut ok = true;
    for (key, value) in entries {
        let name = match de::<Located<String>>(key) {
            Ok(n) => n,
            Err(e) => {
                diags.push(e.into_diagnostic());
                ok = false;
                continue;
            }
        };
        let loaded: Lenient<ParamDecl> = deserialize_all(value);
        ok &= report(loaded.errors, &format!("in param `{}`", name.value), diags);
        left_out.extend(dotted(&format!("params.{}", name.value), &loaded.left_out));
        match loaded.value {
            Some(decl) => out.push(Param { name, decl }),
            None => {
                broken.push(name.value);
                ok = false;
            }
        }
    }
    ok
}

fn read_steps(
    node: &Node,
    out: &mut Vec<Step>,
    broken: &mut Vec<String>,
    left_out: &mut Vec<String>,
    diags: &mut Diagnostics,
) -> bool {
    let Kind::Seq(items) = &node.kind else {
        diags.push(
            Diagnostic::new(
                format!("`steps` must be a list, found {}", node.describe()),
                node.loc,
            )
            .hint("write each step as `- id: ...`"),
        );
        return false;
    };
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let id = item.get("id").and_then(Node::as_str);
        let context = match id {
            Some(id) => format!("in step `{id}`"),
            None => format!("in steps[{i}]"),
        };
        let loaded: Lenient<StepDoc> = deserialize_all(item);
        ok &= report(loaded.errors, &context, diags);
        let step_left_out: Vec<String> = dotted(
            &format!("steps.{}", id.unwrap_or_default()),
            &loaded.left_out,
        )
        .collect();
        let kind_left_out = |key: &str| loaded.left_out.iter().any(|p| p[0] == key);
        match loaded.value {
            Some(doc) => match step_of(doc, item.loc, &kind_left_out, diags) {
                Ok(step) => out.push(step),
                Err(id) => {
                    broken.push(id);
                    ok = false;
                }
            },
            None => {
                if let Some(id) = id {
                    broken.push(id.to_owned());
                }
                ok = false;
            }
        }
        left_out.extend(step_left_out);
    }
    ok
}

/// The step a written step describes: exactly one of `call`, `wait`,
/// `sleep` or `approve` gives its kind. A step with two kinds keeps the
/// first (the second is reported); a step with none cannot be built (its
/// id is returned).
fn step_of(
    doc: StepDoc,
    loc: Loc,
    left_out: &dyn Fn(&str) -> bool,
    diags: &mut Diagnostics,
) -> Result<Step, String> {
    let id = doc.id.value.as_str();
    let mut written: Vec<(&'static str, Loc)> = Vec::new();
    if let Some(c) = &doc.call {
        written.push(("call", c.loc));
    }
    if let Some(w) = &doc.wait {
        written.push(("wait", w.loc));
    }
    if let Some(s) = &doc.sleep {
        written.push(("sleep", s.loc));
    }
    if let Some(a) = &doc.approve {
        written.push(("approve", a.loc));
    }
    if let [(first, _), (second, at), ..] = written[..] {
        diags.push(
            Diagnostic::new(format!("step `{id}` has both `{first}` and `{second}`"), at)
                .hint("a step does one thing: split it into steps and connect them with `needs`"),
        );
    }
    if doc.call.is_none() && !left_out("call") {
        if let Some((k, _)) = doc.with.as_ref().and_then(|w| w.0.first()) {
            let hint = if doc.wait.is_some() {
                "for a wait, put `with` inside `wait:`"
            } else {
                "`with` gives the parameters of a `call`"
            };
            diags.push(
                Diagnostic::new(format!("step `{id}` has `with` but no `call`"), k.loc).hint(hint),
            );
        }
        if let Some(a) = &doc.assert {
            diags.push(
                Diagnostic::new(format!("step `{id}` has `assert` but no `call`"), a.loc)
                    .hint("`assert` checks the response of the step's `call`; a `wait` has `until` and `fail_if`"),
            );
        }
    }
    let mut timeout = doc.timeout;
    let kind = if let Some(call) = doc.call {
        StepKindSpec::Call {
            call,
            with: doc.with,
            assert: doc.assert,
        }
    } else if let Some(w) = doc.wait {
        StepKindSpec::Wait(Box::new(w))
    } else if let Some(s) = doc.sleep {
        StepKindSpec::Sleep(s)
    } else if let Some(mut a) = doc.approve {
        // The question's place: the value itself in the short form.
        if a.value.message.loc == Loc::default() {
            a.value.message.loc = a.loc;
        }
        // `approve.timeout` is the step's timeout (one home for it).
        if let Some(t) = a.value.timeout.take() {
            if let Some(step_timeout) = &timeout {
                diags.push(
                    Diagnostic::new(
                        format!("step `{id}` has both `timeout` and `approve.timeout`"),
                        t.loc,
                    )
                    .hint(format!(
                        "they are the same thing (how long the approval is waited for); keep one (the step's is at line {})",
                        step_timeout.loc.line
                    )),
                );
            } else {
                timeout = Some(t);
            }
        }
        StepKindSpec::Approve(a)
    } else {
        // A kind that failed to load is reported already.
        if !["call", "wait", "sleep", "approve"]
            .iter()
            .any(|k| left_out(k))
        {
            diags.push(
                Diagnostic::new(format!("step `{id}` does nothing"), doc.id.loc)
                    .hint("give it exactly one of `call`, `wait`, `sleep` or `approve`"),
            );
        }
        return Err(doc.id.value);
    };
    Ok(Step {
        id: doc.id,
        description: doc.description,
        needs: doc.needs,
        kind,
        when: doc.when,
        for_each: doc.for_each,
        for_each_concurrency: doc.for_each_concurrency,
        retry: doc.retry,
        timeout,
        on_failure: doc.on_failure,
        region: doc.region,
        role_arn: doc.role_arn,
        compensation: doc.compensation,
        report: doc.report,
        loc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_keys_match_the_schema() {
        let schema = schemars::schema_for!(super::super::model::PlaybookDoc);
        let props = schema
            .get("properties")
            .and_then(|p| p.as_object())
            .expect("root properties");
        let mut from_schema: Vec<&str> = props.keys().map(String::as_str).collect();
        let mut from_loader = TOP_LEVEL_KEYS.to_vec();
        from_schema.sort_unstable();
        from_loader.sort_unstable();
        assert_eq!(from_schema, from_loader);
    }
}
