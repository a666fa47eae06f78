//! What runs is what was reviewed: the plan digest, and the check that a
//! saved plan file is exactly the plan its playbook and params build.
//!
//! # Canonical JSON
//!
//! The digest and the comparison work on the plan's *canonical JSON*: the
//! plan serialized as a JSON value, then written with
//! - object keys sorted by their UTF-8 bytes, at every level;
//! - no whitespace between tokens;
//! - strings escaped as `serde_json` escapes them (`"`, `\` and control
//!   characters; everything else as UTF-8), numbers as `serde_json` prints
//!   them (integers in decimal, floats in their shortest round-trip form);
//! - array order kept.
//!
//! Three top-level fields are left out ([`EXCLUDED`]): `digest` itself,
//! `source` (where the playbook file was found: it depends on the directory
//! the plan is used from; its bytes are bound by `playbook_sha256`), and
//! `observations` (the states read by `plan --refresh`, which a rebuild
//! cannot reproduce; drift checks hold the run to them instead). Nothing in
//! a plan depends on where it runs: requests are recorded by product and
//! region, and the endpoint host is chosen at run time.
//!
//! The digest is the SHA-256 (hex) of the canonical JSON. `run PLAN.json`
//! rebuilds the plan from the playbook (found relative to the plan file) and
//! the plan's params, refuses on any difference between the saved and the
//! rebuilt plan (digest included), and runs the rebuilt plan.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{PLAN_FORMAT, Plan};
use crate::error::{Error, ExitCode};

/// Top-level plan fields outside the digest and the comparison.
pub const EXCLUDED: &[&str] = &["digest", "source", "observations"];

/// How many differing fields a refusal lists.
const MAX_DIFFS: usize = 5;

/// Writes `v` as canonical JSON (see the module doc).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The plan as a JSON value without the [`EXCLUDED`] fields.
fn body(mut plan: Value) -> Value {
    if let Some(map) = plan.as_object_mut() {
        for k in EXCLUDED {
            map.shift_remove(*k);
        }
    }
    plan
}

/// The digest of a plan: SHA-256 (hex) of its canonical JSON.
pub fn digest(plan: &Plan) -> String {
    let v = serde_json::to_value(plan).unwrap_or(Value::Null);
    crate::playbook::source::sha256_hex(canonical_json(&body(v)).as_bytes())
}

/// Up to `limit` paths where `saved` and `rebuilt` differ, in canonical key
/// order: `steps[3].with.FileId: saved 102, rebuilt 101`.
pub fn differences(saved: &Value, rebuilt: &Value, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    diff_at(String::new(), Some(saved), Some(rebuilt), limit, &mut out);
    out
}

fn diff_at(
    path: String,
    saved: Option<&Value>,
    rebuilt: Option<&Value>,
    limit: usize,
    out: &mut Vec<String>,
) {
    if out.len() >= limit {
        return;
    }
    match (saved, rebuilt) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
            keys.dedup();
            for k in keys {
                let sub = if path.is_empty() {
                    field_name(k)
                } else {
                    format!("{path}.{}", field_name(k))
                };
                diff_at(sub, a.get(k), b.get(k), limit, out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                diff_at(format!("{path}[{i}]"), a.get(i), b.get(i), limit, out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => {
            let shown = |v: Option<&Value>| v.map_or_else(|| "(absent)".to_owned(), short_json);
            let path = if path.is_empty() { "(plan)" } else { &path };
            out.push(format!("{path}: saved {}, rebuilt {}", shown(a), shown(b)));
        }
    }
}

/// A key as it reads in a path: bare when it is a plain name.
fn field_name(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        format!("[{}]", Value::String(k.to_owned()))
    }
}

/// Compact JSON of a value, cut to a readable length.
fn short_json(v: &Value) -> String {
    let s = canonical_json(v);
    if s.chars().count() <= 60 {
        return s;
    }
    let cut: String = s.chars().take(57).collect();
    format!("{cut}...")
}

/// `path` relative to the directory `base` (both made absolute first), for
/// the `source` of a plan file: `run PLAN.json` finds the playbook from the
/// plan file's directory, wherever it is run from. Falls back to the
/// absolute path when no relative one exists.
pub fn relative_to(path: &Path, base: &Path) -> PathBuf {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (path, base) = (abs(path), abs(base));
    let p: Vec<_> = path.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return path;
    }
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    out
}

fn refused(message: String) -> Error {
    Error::new(ExitCode::Refused, message)
}

impl Plan {
    /// Reads a plan written by `runbook plan -o PLAN.json`, rebuilds it from
    /// its playbook (`source`, relative to the plan file's directory) and
    /// params, and returns the rebuilt plan (with the saved observations)
    /// if the two are the same; any difference is refused (exit 6), naming
    /// the first differing fields.
    pub fn load_verified(path: &Path) -> Result<Plan, Error> {
        let shown = path.display();
        let text = crate::limits::read_text(path, crate::limits::PLAN_BYTES)
            .map_err(|e| Error::new(ExitCode::InvalidPlaybook, format!("plan `{shown}` {e}")))?;
        let saved: Value = serde_json::from_str(&text).map_err(|e| {
            Error::new(
                ExitCode::InvalidPlaybook,
                format!(
                    "plan `{shown}` is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        let plan_again =
            "write the plan again: `runbook plan PLAYBOOK -o PLAN.json`, and review it";
        let format = saved.get("format").and_then(Value::as_u64);
        if format != Some(u64::from(PLAN_FORMAT)) {
            return Err(refused(format!(
                "plan `{shown}` has format {}, this runbook runs format {PLAN_FORMAT}",
                format.map_or("none".to_owned(), |f| f.to_string())
            ))
            .with_hint(plan_again));
        }
        let Some(source) = saved.get("source").and_then(Value::as_str) else {
            return Err(
                refused(format!("plan `{shown}` names no playbook (`source`)"))
                    .with_hint(plan_again),
            );
        };
        let dir = path.parent().unwrap_or(Path::new(""));
        let playbook_path = dir.join(source);
        let bytes = crate::limits::read_file(&playbook_path, crate::limits::PLAYBOOK_BYTES)
            .map_err(|e| {
                refused(format!(
                    "cannot read playbook `{}` (the plan's `source`, relative to the plan file) to rebuild the plan: it {e}",
                    playbook_path.display()
                ))
                .with_hint("keep the plan file where it was written relative to its playbook, or plan again")
            })?;
        let sha = crate::playbook::source::sha256_hex(&bytes);
        if saved.get("playbook_sha256").and_then(Value::as_str) != Some(sha.as_str())
            && saved.get("playbook_sha256").is_some_and(Value::is_string)
        {
            return Err(refused(format!(
                "playbook `{}` changed since this plan was written",
                playbook_path.display()
            ))
            .with_hint(format!(
                "review the change and plan again: `runbook plan {} -o PLAN.json`",
                playbook_path.display()
            )));
        }
        let cannot = |what: String| {
            refused(format!(
                "plan `{shown}` cannot be rebuilt from playbook `{}`: {what}",
                playbook_path.display()
            ))
            .with_hint("the plan file was edited, or its playbook changed; plan again instead of editing it")
        };
        let pb =
            crate::playbook::Playbook::load(&playbook_path).map_err(|d| cannot(d.summary()))?;
        let Some(Value::Object(params)) = saved.get("params") else {
            return Err(cannot("it has no `params` mapping".to_owned()));
        };
        let params = super::params::bind_saved(&pb, params).map_err(|e| cannot(e.message))?;
        // The plan's own signature (absent: V1), whatever the playbook's
        // default: a plan made with `--signature` rebuilds as it was made.
        let signature = match saved.get("signature") {
            None => crate::cloud::signer::SignatureVersion::V1,
            Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
                cannot(format!(
                    "its `signature` {} is neither \"v1\" nor \"v3\"",
                    short_json(v)
                ))
            })?,
        };
        // The region the plan was made with for steps that name none, never
        // one found again now (the environment may have changed since).
        let default_region = match saved.get("default_region") {
            None => Err("the saved plan records no default region".to_owned()),
            Some(v) => Ok(
                serde_json::from_value::<crate::cloud::region::DefaultRegion>(v.clone())
                    .ok()
                    .filter(|d| crate::cloud::endpoint::is_region_id(&d.region))
                    .ok_or_else(|| {
                        cannot(format!(
                            "its `default_region` {} is not a region id and its source",
                            short_json(v)
                        ))
                    })?,
            ),
        };
        let options = super::BuildOptions::default()
            .signed(Some(signature))
            .default_region(default_region);
        let mut rebuilt =
            Plan::build_with(&pb, &params, &options).map_err(|d| cannot(d.summary()))?;
        let ours = serde_json::to_value(&rebuilt).unwrap_or(Value::Null);
        let diffs = differences(&body(saved.clone()), &body(ours), MAX_DIFFS + 1);
        let digest_edited = saved.get("digest").and_then(Value::as_str) != Some(&rebuilt.digest);
        if !diffs.is_empty() || digest_edited {
            let mut listed: Vec<String> = diffs.iter().take(MAX_DIFFS).cloned().collect();
            if diffs.len() > MAX_DIFFS {
                listed.push("...".to_owned());
            }
            if digest_edited {
                listed.push(format!(
                    "digest: saved {}, rebuilt {}",
                    saved
                        .get("digest")
                        .map_or_else(|| "(absent)".to_owned(), short_json),
                    rebuilt.digest
                ));
            }
            return Err(refused(format!(
                "plan `{shown}` is not the plan its playbook and params build: {}",
                listed.join("; ")
            ))
            .with_hint("the plan file was edited; plan again instead of editing it"));
        }
        if let Some(obs) = saved.get("observations") {
            rebuilt.observations = serde_json::from_value(obs.clone()).map_err(|e| {
                refused(format!(
                    "plan `{shown}` has observations that cannot be read: {e}"
                ))
                .with_hint(plan_again)
            })?;
        }
        Ok(rebuilt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let v: Value = serde_json::from_str(
            r#"{ "b": [1, {"z": 1, "a": "x\n"}], "a": 1.5, "É": null, "Z": true }"#,
        )
        .unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"Z":true,"a":1.5,"b":[1,{"a":"x\n","z":1}],"É":null}"#
        );
    }

    #[test]
    fn differences_name_field_paths() {
        let a = json!({"steps": [{"with": {"FileId": 102}}, {"id": "x"}], "name": "n"});
        let b = json!({"steps": [{"with": {"FileId": 101}}], "name": "n", "extra": {"a b": 1}});
        assert_eq!(
            differences(&a, &b, 10),
            [
                "extra: saved (absent), rebuilt {\"a b\":1}",
                "steps[0].with.FileId: saved 102, rebuilt 101",
                "steps[1]: saved {\"id\":\"x\"}, rebuilt (absent)",
            ]
        );
        assert_eq!(differences(&a, &b, 1).len(), 1);
        assert!(differences(&a, &a, 10).is_empty());
    }

    #[test]
    fn relative_paths_climb_out_of_the_plan_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::create_dir_all(dir.path().join("c")).unwrap();
        std::fs::write(dir.path().join("c/p.yaml"), "").unwrap();
        assert_eq!(
            relative_to(&dir.path().join("c/p.yaml"), &dir.path().join("a/b")),
            Path::new("../../c/p.yaml")
        );
        assert_eq!(
            relative_to(&dir.path().join("c/p.yaml"), &dir.path().join("c")),
            Path::new("p.yaml")
        );
    }
}
