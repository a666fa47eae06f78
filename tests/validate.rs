//! `runbook validate`, the diagnostics for every error kind, and the schema.
//!
//! Each file in `tests/fixtures/invalid/` holds one kind of error; its
//! diagnostic (stderr and exit code of the real binary) is an insta
//! snapshot, and must name `file:line:col`. The schema test regenerates
//! `schemas/playbook.schema.json` from the model types and checks every
//! example playbook against it with a small checker for the keywords the
//! schema uses (it fails on any other keyword, so it cannot silently pass).

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

/// Output of the binary, as snapshotted: exit code, stdout, stderr.
pub(crate) fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out: Output = assert_cmd::cargo::cargo_bin_cmd!("runbook")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("the runbook binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The names (without `.yaml`) of the YAML files in `dir` (relative to the
/// package), sorted.
pub(crate) fn yaml_stems(dir: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .expect("the directory exists")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".yaml"))
                .map(str::to_owned)
        })
        .collect();
    found.sort();
    found
}

/// The snapshot form of a run.
pub(crate) fn transcript(args: &[&str]) -> String {
    let (code, stdout, stderr) = run_cli(args);
    format!(
        "$ runbook {}\nexit: {code}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        args.join(" ")
    )
}

fn fixture(kind: &str) -> String {
    format!("tests/fixtures/invalid/{kind}.yaml")
}

/// Every error kind has a fixture and a snapshot; the list must cover the directory.
const KINDS: &[&str] = &[
    "approvers",
    "bad-duration",
    "bad-output-path",
    "changed-items",
    "cycle",
    "duplicate-step-id",
    "duration-template",
    "for-each-non-array",
    "ill-typed-action-param",
    "item-outside-for-each",
    "list-param-in-text",
    "missing-action-param",
    "notify",
    "on-failure-target",
    "param-default-wrong-type",
    "region-not-a-string",
    "report-paths",
    "retry-policy",
    "several-errors",
    "signature",
    "step-kind",
    "step-not-needed",
    "unknown-action",
    "unknown-action-param",
    "unknown-field",
    "unknown-needs",
    "unknown-param-in-template",
    "unknown-step-in-template",
    "wait-mutating-call",
    "wait-without-until",
    "window",
    "wrong-type",
    "yaml-syntax",
];

fn check_fixture(kind: &str) {
    let path = fixture(kind);
    let (code, stdout, stderr) = run_cli(&["validate", &path]);
    assert_eq!(code, 3, "{kind}: exit code\n{stderr}");
    assert!(
        stdout.is_empty(),
        "{kind}: nothing on stdout for an invalid playbook: {stdout}"
    );
    // Every diagnostic points at file:line:col with a source line and caret.
    let arrows: Vec<&str> = stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("--> "))
        .collect();
    assert!(!arrows.is_empty(), "{kind}: no location in\n{stderr}");
    for a in &arrows {
        let loc = a.trim_start().trim_start_matches("--> ");
        let rest = loc
            .strip_prefix(&format!("{path}:"))
            .unwrap_or_else(|| panic!("{kind}: `{a}` names the file"));
        let (line, col) = rest
            .split_once(':')
            .unwrap_or_else(|| panic!("{kind}: `{a}` has line:col"));
        assert!(
            line.parse::<u32>().is_ok_and(|l| l > 0) && col.parse::<u32>().is_ok_and(|c| c > 0),
            "{kind}: {a}"
        );
    }
    assert!(
        stderr.contains(" | "),
        "{kind}: source line shown\n{stderr}"
    );
    assert!(stderr.contains('^'), "{kind}: caret shown\n{stderr}");
    insta::assert_snapshot!(format!("invalid-{kind}"), transcript(&["validate", &path]));
}

macro_rules! fixture_tests {
    ($($name:ident => $kind:literal),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check_fixture($kind);
            }
        )*
    };
}

fixture_tests! {
    approvers_names_arns_counts_and_the_self_rule => "approvers",
    bad_duration => "bad-duration",
    bad_output_path => "bad-output-path",
    changed_items_only_in_compensations_of_fan_outs => "changed-items",
    cycle_names_the_whole_loop => "cycle",
    duplicate_step_id => "duplicate-step-id",
    duration_template => "duration-template",
    for_each_non_array => "for-each-non-array",
    list_param_in_text => "list-param-in-text",
    region_not_a_string => "region-not-a-string",
    report_paths => "report-paths",
    ill_typed_action_param => "ill-typed-action-param",
    item_outside_for_each => "item-outside-for-each",
    missing_action_param => "missing-action-param",
    notify => "notify",
    on_failure_target => "on-failure-target",
    param_default_wrong_type => "param-default-wrong-type",
    retry_policy => "retry-policy",
    several_errors => "several-errors",
    signature_is_v1_or_v3 => "signature",
    step_kind => "step-kind",
    step_not_needed => "step-not-needed",
    unknown_action => "unknown-action",
    unknown_action_param => "unknown-action-param",
    unknown_field => "unknown-field",
    unknown_needs => "unknown-needs",
    unknown_param_in_template => "unknown-param-in-template",
    unknown_step_in_template => "unknown-step-in-template",
    wait_mutating_call => "wait-mutating-call",
    wait_without_until => "wait-without-until",
    window_slots_days_times_zone_and_dates => "window",
    wrong_type => "wrong-type",
    yaml_syntax => "yaml-syntax",
}

#[test]
fn every_fixture_has_a_test() {
    assert_eq!(yaml_stems("tests/fixtures/invalid"), KINDS);
}

#[test]
fn one_file_reports_all_its_errors() {
    let (code, _, stderr) = run_cli(&["validate", &fixture("several-errors")]);
    assert_eq!(code, 3);
    for expected in [
        "invalid duration `2 min utes`",
        "unknown param `dts_job`",
        "unknown parameter `Direction` for `dts.StopDtsJob`",
        "needs unknown step `stp`",
        "has no `until`",
        "unknown field `atempts` in step `terminate`",
        "`for_each` over a non-array",
        "has 7 errors",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in\n{stderr}"
        );
    }
}

#[test]
fn several_files_are_all_checked() {
    let (code, stdout, stderr) = run_cli(&[
        "validate",
        "playbooks/dts-di-cutover.yaml",
        &fixture("cycle"),
        &fixture("unknown-action"),
    ]);
    assert_eq!(code, 3);
    assert_eq!(stdout, "ok: playbooks/dts-di-cutover.yaml (5 steps)\n");
    assert!(stderr.contains("cycle.yaml:4:13"), "{stderr}");
    assert!(stderr.contains("unknown-action.yaml:6:11"), "{stderr}");
}

fn example_playbooks() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("playbooks dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_playbook_is_valid() {
    let examples = example_playbooks();
    assert!(examples.len() >= 4, "{examples:?}");
    let rel: Vec<String> = examples
        .iter()
        .map(|p| {
            p.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap_or(p)
                .display()
                .to_string()
        })
        .map(|p| p.trim_start_matches('/').to_owned())
        .collect();
    let mut args = vec!["validate"];
    args.extend(rel.iter().map(String::as_str));
    let (code, stdout, stderr) = run_cli(&args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), examples.len(), "{stdout}");
}

#[test]
fn examples_start_with_the_schema_comment() {
    for p in example_playbooks() {
        let text = std::fs::read_to_string(&p).expect("readable");
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/playbook.schema.json\n"),
            "{} must start with the schema comment",
            p.display()
        );
    }
}

#[test]
fn the_language_reference_lists_every_typed_action() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    for spec in runbook::cloud::actions::CATALOGUE {
        assert!(
            doc.contains(&format!("| `{}` |", spec.name)),
            "README.md does not list `{}`",
            spec.name
        );
        for p in spec.params {
            assert!(
                doc.contains(&format!("`{}`", p.name)),
                "README.md does not mention `{}` of `{}`",
                p.name,
                spec.name
            );
        }
    }
}

// ---- the schema --------------------------------------------------------------

#[test]
fn schema_file_is_generated_from_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/playbook.schema.json");
    let generated = runbook::playbook::schema_json();
    if std::env::var_os("RUNBOOK_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write schema");
    }
    let committed = std::fs::read_to_string(&path).expect("schema file");
    assert!(
        committed == generated,
        "schemas/playbook.schema.json is out of date; regenerate it with\n  RUNBOOK_UPDATE_SCHEMA=1 cargo test --test integration schema_file"
    );
    assert_eq!(
        runbook::playbook::SCHEMA,
        committed,
        "the embedded schema is the committed file"
    );
}

#[test]
fn schema_command_prints_the_schema() {
    let (code, stdout, _) = run_cli(&["schema"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, runbook::playbook::SCHEMA);
}

fn yaml_to_json(text: &str) -> Value {
    runbook::playbook::parse_params_file(text).unwrap_or_else(|d| panic!("{}", d.message))
}

#[test]
fn every_example_playbook_matches_the_schema() {
    let schema: Value = serde_json::from_str(runbook::playbook::SCHEMA).expect("schema is JSON");
    for p in example_playbooks() {
        let doc = yaml_to_json(&std::fs::read_to_string(&p).expect("readable"));
        let errors = schema_check::check(&schema, &schema, &doc, "");
        assert!(errors.is_empty(), "{}: {errors:#?}", p.display());
    }
}

#[test]
fn the_schema_checker_can_fail() {
    let schema: Value = serde_json::from_str(runbook::playbook::SCHEMA).expect("schema is JSON");
    let cases = [
        ("name: x\nsteps: []\nbogus: 1\n", "/bogus"),
        ("name: x\n", "steps"),
        (
            "name: x\nsteps:\n  - id: Bad_Id\n    sleep: 1s\n",
            "/steps/0/id",
        ),
        (
            "name: x\nsteps:\n  - id: a\n    retry: { attempts: 0 }\n",
            "/steps/0/retry",
        ),
        (
            "name: x\nsteps:\n  - id: a\n    on_failure: explode\n",
            "/steps/0/on_failure",
        ),
        (
            "name: x\nparams: { p: { type: float } }\nsteps: []\n",
            "/params/p/type",
        ),
        ("name: x\nconcurrency: 0\nsteps: []\n", "/concurrency"),
    ];
    for (yaml, expected) in cases {
        let errors = schema_check::check(&schema, &schema, &yaml_to_json(yaml), "");
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{yaml}: expected an error at {expected}, got {errors:?}"
        );
    }
}

/// A JSON Schema checker for exactly the keywords `playbook.schema.json`
/// uses; any other keyword is an error, so the schema cannot outgrow it
/// unnoticed.
mod schema_check {
    use serde_json::Value;

    const ANNOTATIONS: &[&str] = &[
        "$schema",
        "title",
        "description",
        "default",
        "examples",
        "format",
        "$defs",
    ];

    pub(super) fn check(root: &Value, schema: &Value, v: &Value, at: &str) -> Vec<String> {
        let mut errs = Vec::new();
        let Some(obj) = schema.as_object() else {
            if schema == &Value::Bool(false) {
                errs.push(format!("{at}: not allowed"));
            }
            return errs;
        };
        for (k, s) in obj {
            match k.as_str() {
                k if ANNOTATIONS.contains(&k) => {}
                "$ref" => {
                    let name = s
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/$defs/"))
                        .expect("local $ref");
                    errs.extend(check(root, &root["$defs"][name], v, at));
                }
                "type" => {
                    let types: Vec<&str> = match s {
                        Value::String(t) => vec![t.as_str()],
                        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                        _ => panic!("bad type keyword"),
                    };
                    if !types.iter().any(|t| is_type(v, t)) {
                        errs.push(format!("{at}: expected {types:?}, found {v}"));
                    }
                }
                "properties" => {
                    if let (Some(props), Some(o)) = (s.as_object(), v.as_object()) {
                        for (name, sub) in props {
                            if let Some(x) = o.get(name) {
                                errs.extend(check(root, sub, x, &format!("{at}/{name}")));
                            }
                        }
                    }
                }
                "additionalProperties" => {
                    if let Some(o) = v.as_object() {
                        let known = obj.get("properties").and_then(Value::as_object);
                        for (name, x) in o {
                            if known.is_some_and(|k| k.contains_key(name)) {
                                continue;
                            }
                            match s {
                                Value::Bool(true) => {}
                                Value::Bool(false) => {
                                    errs.push(format!("{at}/{name}: unknown property"))
                                }
                                sub => errs.extend(check(root, sub, x, &format!("{at}/{name}"))),
                            }
                        }
                    }
                }
                "required" => {
                    if let Some(o) = v.as_object() {
                        for r in s
                            .as_array()
                            .expect("required is a list")
                            .iter()
                            .filter_map(Value::as_str)
                        {
                            if !o.contains_key(r) {
                                errs.push(format!("{at}: missing required `{r}`"));
                            }
                        }
                    }
                }
                "items" => {
                    if let Some(items) = v.as_array() {
                        for (i, x) in items.iter().enumerate() {
                            errs.extend(check(root, s, x, &format!("{at}/{i}")));
                        }
                    }
                }
                "anyOf" | "oneOf" => {
                    let branches = s.as_array().expect("a list of schemas");
                    let ok = branches
                        .iter()
                        .filter(|b| check(root, b, v, at).is_empty())
                        .count();
                    let fine = if k == "anyOf" { ok >= 1 } else { ok == 1 };
                    if !fine {
                        errs.push(format!("{at}: matches {ok} of the {k} branches"));
                    }
                }
                "enum" => {
                    if !s.as_array().expect("enum list").contains(v) {
                        errs.push(format!("{at}: {v} is not one of {s}"));
                    }
                }
                "const" => {
                    if s != v {
                        errs.push(format!("{at}: {v} is not {s}"));
                    }
                }
                "minimum" => {
                    if let (Some(min), Some(x)) = (s.as_f64(), v.as_f64())
                        && x < min
                    {
                        errs.push(format!("{at}: {x} is below {min}"));
                    }
                }
                "pattern" => {
                    if let Some(text) = v.as_str()
                        && !pattern_matches(s.as_str().expect("pattern string"), text)
                    {
                        errs.push(format!("{at}: `{text}` does not match {s}"));
                    }
                }
                other => panic!("the schema checker does not know keyword `{other}`; extend it"),
            }
        }
        errs
    }

    fn is_type(v: &Value, t: &str) -> bool {
        match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            other => panic!("unknown type `{other}`"),
        }
    }

    /// Anchored patterns made of literal characters and `[...]` classes,
    /// each optionally followed by `*` (what the schema uses).
    fn pattern_matches(pattern: &str, text: &str) -> bool {
        let body = pattern
            .strip_prefix('^')
            .and_then(|p| p.strip_suffix('$'))
            .expect("anchored pattern");
        let mut atoms: Vec<(Vec<(char, char)>, bool)> = Vec::new();
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            let class = if c == '[' {
                let mut ranges = Vec::new();
                let mut prev: Option<char> = None;
                loop {
                    let d = chars.next().expect("closed class");
                    match d {
                        ']' => break,
                        '-' if prev.is_some() && chars.peek() != Some(&']') => {
                            let hi = chars.next().expect("range end");
                            let lo = prev.take().expect("range start");
                            ranges.pop();
                            ranges.push((lo, hi));
                        }
                        d => {
                            ranges.push((d, d));
                            prev = Some(d);
                        }
                    }
                }
                ranges
            } else {
                vec![(c, c)]
            };
            let star = chars.peek() == Some(&'*');
            if star {
                chars.next();
            }
            atoms.push((class, star));
        }
        let text: Vec<char> = text.chars().collect();
        let mut i = 0;
        for (class, star) in atoms {
            let fits = |c: char| class.iter().any(|&(lo, hi)| lo <= c && c <= hi);
            if star {
                while i < text.len() && fits(text[i]) {
                    i += 1;
                }
            } else if i < text.len() && fits(text[i]) {
                i += 1;
            } else {
                return false;
            }
        }
        i == text.len()
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("^[a-z0-9][a-z0-9_-]*$", "stop-dts_1"));
        assert!(!pattern_matches("^[a-z0-9][a-z0-9_-]*$", "Stop"));
        assert!(!pattern_matches("^[a-z0-9][a-z0-9_-]*$", ""));
    }
}
