//! What runs is what was reviewed, and requests go only where they may:
//! `run PLAN.json` rebuilds the plan and refuses any edit of the file (every
//! field path of every example's plan is edited, one at a time),
//! `--expect-digest`, plan files used from other directories, region ids,
//! and strict `--endpoint` flags. Everything goes through the CLI against
//! the simulator, and refusals are checked on its call log.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use runbook::sim::DtsJobFixture;
use serde_json::Value;

use crate::run::{FAN_OUT, Rig, repo, text};

/// The example playbooks, each with its params file and the flags its run needs.
const EXAMPLES: &[(&str, &[&str])] = &[
    ("di-status-report", &[]),
    ("dts-di-cutover", &[]),
    ("di-realtime-maintenance-stop", &["--approve", "go-ahead"]),
    ("stop-di-job", &[]),
];

fn rig() -> Rig {
    Rig::with("", Duration::ZERO, |c| {
        c.fixtures
            .dts_jobs
            .push(DtsJobFixture::running("l3m1213ye7l"));
    })
}

/// Writes the plan of example `name` to `dir/NAME.json` and returns its path.
fn save_plan(rig: &Rig, name: &str, dir: &Path) -> PathBuf {
    let out_path = dir.join(format!("{name}.json"));
    let out = rig.run(&[
        "plan",
        &repo(&format!("playbooks/{name}.yaml")),
        "--params",
        &repo(&format!("playbooks/params/{name}.yaml")),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    out_path
}

/// One edit of a plan file: where, and the edited plan.
struct Edit {
    what: String,
    plan: Value,
}

/// Every edit of every node of `root`: a changed value for each leaf, a
/// deleted key for each member of an object, an added key for each object,
/// a dropped (or, when empty, added) element for each array.
fn edits(root: &Value) -> Vec<Edit> {
    let mut paths: Vec<Vec<Step>> = Vec::new();
    collect(root, &mut Vec::new(), &mut paths);
    let mut out = Vec::new();
    for path in paths {
        let node = get(root, &path).clone();
        let mut push = |what: String, f: &dyn Fn(&mut Value)| {
            let mut plan = root.clone();
            f(&mut plan);
            assert_ne!(&plan, root, "{what} changes nothing");
            out.push(Edit { what, plan });
        };
        let shown = show(&path);
        match &node {
            Value::Object(_) => push(format!("add a key to {shown}"), &|p| {
                get_mut(p, &path)
                    .as_object_mut()
                    .unwrap()
                    .insert("Extra".to_owned(), Value::from(1));
            }),
            Value::Array(items) if items.is_empty() => {
                push(format!("add an element to {shown}"), &|p| {
                    get_mut(p, &path)
                        .as_array_mut()
                        .unwrap()
                        .push(Value::from(1));
                });
            }
            Value::Array(_) => push(format!("drop an element of {shown}"), &|p| {
                get_mut(p, &path).as_array_mut().unwrap().remove(0);
            }),
            leaf => {
                let changed = changed(leaf);
                push(format!("change {shown}"), &|p| {
                    *get_mut(p, &path) = changed.clone();
                });
            }
        }
        if let Some((Step::Key(k), parent)) = path.split_last() {
            push(format!("delete {shown}"), &|p| {
                get_mut(p, parent)
                    .as_object_mut()
                    .unwrap()
                    .shift_remove(k.as_str());
            });
        }
    }
    out
}

#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn collect(v: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(at.clone());
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                at.push(Step::Key(k.clone()));
                collect(child, at, out);
                at.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                at.push(Step::Index(i));
                collect(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn get<'v>(v: &'v Value, path: &[Step]) -> &'v Value {
    path.iter().fold(v, |v, s| match s {
        Step::Key(k) => &v[k.as_str()],
        Step::Index(i) => &v[*i],
    })
}

fn get_mut<'v>(v: &'v mut Value, path: &[Step]) -> &'v mut Value {
    path.iter().fold(v, |v, s| match s {
        Step::Key(k) => &mut v[k.as_str()],
        Step::Index(i) => &mut v[*i],
    })
}

fn show(path: &[Step]) -> String {
    let mut s = String::from("(plan)");
    for step in path {
        match step {
            Step::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// A different value of the same kind (a string that still reads the same
/// way to a person: one more character).
fn changed(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(format!("{s}1")),
        Value::Bool(b) => Value::Bool(!b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::from(u + 1),
            (None, Some(i)) => Value::from(i + 1),
            _ => Value::from(n.as_f64().unwrap_or(0.0) * 2.0 + 1.0),
        },
        Value::Null => Value::from(0),
        other => other.clone(),
    }
}

/// Runs `args` once per edit, on two threads, and returns the outcomes.
fn run_each(rig: &Rig, files: &[(String, PathBuf)], extra: &[&str]) -> Vec<(String, Output)> {
    let chunks: Vec<&[(String, PathBuf)]> = files.chunks(files.len().div_ceil(2).max(1)).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|(what, path)| {
                            let mut args = vec!["run", path.to_str().unwrap(), "--yes"];
                            args.extend_from_slice(extra);
                            (what.clone(), rig.run(&args))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

#[test]
fn every_edit_of_every_field_of_a_saved_plan_is_refused_before_anything_is_sent() {
    let rig = rig();
    let dir = tempfile::tempdir().unwrap();
    let mut total = 0;
    for (name, extra) in EXAMPLES {
        let saved = save_plan(&rig, name, dir.path());
        let root: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
        let edits = edits(&root);
        assert!(edits.len() > 100, "{name}: only {} edits", edits.len());
        let files: Vec<(String, PathBuf)> = edits
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let path = dir.path().join(format!("{name}-edit-{i}.json"));
                std::fs::write(&path, serde_json::to_string_pretty(&e.plan).unwrap()).unwrap();
                (e.what.clone(), path)
            })
            .collect();
        for (what, out) in run_each(&rig, &files, extra) {
            assert_eq!(out.status.code(), Some(6), "{name}: {what}: {}", text(&out));
        }
        total += edits.len();
    }
    assert!(total > 1000, "{total} edits");
    assert!(
        rig.calls().is_empty(),
        "an edited plan reached the simulator"
    );
    let runs = rig.run(&["runs", "--json"]);
    assert!(runs.status.success(), "{}", text(&runs));
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs, serde_json::json!([]), "no run was journaled");

    // The unedited plans run, each rebuilt from its playbook.
    for (name, extra) in EXAMPLES {
        let saved = dir.path().join(format!("{name}.json"));
        let mut args = vec!["run", saved.to_str().unwrap(), "--yes"];
        args.extend_from_slice(extra);
        let out = rig.run(&args);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
    }
}

#[test]
fn a_refusal_names_the_first_differing_fields() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let plan = rig.dir.path().join("plan.json");
    let out = rig.run(&["plan", &pb, "-o", plan.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    type EditFn = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, EditFn, &str)> = vec![
        (
            "a terminate's risk",
            Box::new(|p| p["steps"][2]["risk"] = "read".into()),
            "steps[2].risk: saved \"read\", rebuilt \"irreversible\"",
        ),
        (
            "an item",
            Box::new(|p| p["steps"][2]["for_each"]["items"][1] = 99.into()),
            "steps[2].for_each.items[1]: saved 99, rebuilt 12",
        ),
        (
            "the wait",
            Box::new(|p| {
                p["steps"].as_array_mut().unwrap().remove(1);
            }),
            "steps[1].id: saved \"terminate\", rebuilt \"stopped\"",
        ),
        (
            "the action",
            Box::new(|p| p["steps"][2]["kind"]["call"]["rpc_action"] = "DeleteFile".into()),
            "steps[2].kind.call.rpc_action: saved \"DeleteFile\", rebuilt \"TerminateDISyncInstance\"",
        ),
        (
            "a region",
            Box::new(|p| p["steps"][0]["region"] = "cn-beijing".into()),
            "steps[0].region: saved \"cn-beijing\", rebuilt \"cn-shanghai\"",
        ),
        (
            "the digest",
            Box::new(|p| p["digest"] = "0".repeat(64).into()),
            "digest: saved \"000",
        ),
    ];
    for (what, edit, message) in cases {
        let mut edited = saved.clone();
        edit(&mut edited);
        std::fs::write(&plan, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
        let out = rig.run(&["run", plan.to_str().unwrap(), "--yes"]);
        assert_eq!(out.status.code(), Some(6), "{what}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{what}: {stderr}");
    }
    assert!(rig.calls().is_empty());
}

#[test]
fn a_saved_plan_runs_from_any_working_directory_and_finds_its_playbook() {
    let rig = Rig::new("", Duration::ZERO);
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("playbooks")).unwrap();
    std::fs::create_dir_all(root.path().join("tickets/CHG-1")).unwrap();
    let pb = root.path().join("playbooks/fan.yaml");
    std::fs::write(&pb, FAN_OUT).unwrap();
    // Planned from `root` with relative paths, as a reviewer would.
    let out = rig
        .cmd(&[
            "plan",
            "playbooks/fan.yaml",
            "-o",
            "tickets/CHG-1/plan.json",
        ])
        .current_dir(root.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(root.path().join("tickets/CHG-1/plan.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["source"], "../../playbooks/fan.yaml");
    // Run from an unrelated directory, by absolute path...
    let elsewhere = tempfile::tempdir().unwrap();
    let plan = root.path().join("tickets/CHG-1/plan.json");
    let out = rig
        .cmd(&["run", plan.to_str().unwrap(), "--yes"])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    rig.assert_all_undeployed();
    // ... and from the ticket's directory, by a relative one: the same plan.
    let out = rig
        .cmd(&["plan", "../../playbooks/fan.yaml"])
        .current_dir(root.path().join("tickets/CHG-1"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(saved["digest"].as_str().unwrap()),
        "the digest does not depend on the directory: {}",
        text(&out)
    );
}

#[test]
fn expect_digest_runs_only_the_reviewed_plan() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let plan = rig.dir.path().join("plan.json");
    let out = rig.run(&["plan", &pb, "-o", plan.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let digest = stdout
        .lines()
        .find_map(|l| l.strip_prefix("digest:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert_eq!(digest.len(), 64);
    let plan = plan.to_str().unwrap();

    // Other params, another playbook, a malformed digest: refused, nothing sent.
    let other = "1".repeat(64);
    for (args, code) in [
        (vec!["run", plan, "--expect-digest", &other, "--yes"], 6),
        (
            vec![
                "run",
                &pb,
                "-p",
                "file_ids=11",
                "--expect-digest",
                &digest,
                "--yes",
            ],
            6,
        ),
        (
            vec!["run", plan, "--expect-digest", &digest[..12], "--yes"],
            2,
        ),
    ] {
        let out = rig.run(&args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
    }
    assert!(rig.calls().is_empty());
    let runs = rig.run(&["runs", "--json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&runs.stdout).unwrap(),
        serde_json::json!([]),
        "nothing journaled"
    );
    let out = rig.run(&[
        "run",
        plan,
        "--expect-digest",
        &digest.to_uppercase(),
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    rig.assert_all_undeployed();
    // The playbook itself with the same params builds the same plan.
    let rig = Rig::new("", Duration::ZERO);
    let out = rig.run(&["run", &pb, "--expect-digest", &digest, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

const REGION_PARAM: &str = r#"
name: region-param
params:
  region: { type: string, default: cn-shanghai }
defaults:
  region: "{{params.region}}"
steps:
  - id: stop
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 10000, FileId: 11, TaskType: DI_REALTIME }
"#;

#[test]
fn a_region_that_is_not_a_region_id_never_becomes_a_host() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("region.yaml", REGION_PARAM);
    for region in [
        "x@127.0.0.1:9/",
        "evil.example",
        "cn-hangzhou.evil.example",
        "CN-HANGZHOU",
        "cn",
    ] {
        let param = format!("region={region}");
        for args in [
            vec!["plan", &pb, "-p", &param],
            vec!["run", &pb, "-p", &param, "--yes"],
        ] {
            let out = rig.run(&args);
            let cmd = args[0];
            assert_eq!(out.status.code(), Some(3), "{cmd} {region}: {}", text(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("is not a region id"), "{stderr}");
        }
    }
    let step_region = REGION_PARAM.replace("\"{{params.region}}\"", "\"x@127.0.0.1:9\"");
    let pb = rig.playbook("literal.yaml", &step_region);
    let out = rig.run(&["validate", &pb]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(rig.calls().is_empty());
    let pb = rig.playbook("region.yaml", REGION_PARAM);
    let out = rig.run(&["run", &pb, "-p", "region=cn-shanghai-finance-1", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn endpoint_flags_must_name_a_called_product_and_a_plain_url() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let url = rig.sim().base_url();
    let port = url.rsplit(':').next().unwrap().to_owned();
    let cases = [
        (format!("dst={url}"), "`dst`"),
        (format!("dts={url}"), "`dts` that no step calls"),
        (format!("sts={url}"), "`sts`"),
        (
            format!("dataworks=http://user@127.0.0.1:{port}"),
            "user info",
        ),
        (format!("dataworks={url}/api"), "path"),
        (format!("dataworks={url}/?x=1"), "query"),
        (format!("dataworks=ftp://127.0.0.1:{port}"), "http://"),
        (format!("data.works={url}"), "product code"),
    ];
    for (flag, message) in &cases {
        let out = rig.bare(
            &["run", &pb, "--yes", "--endpoint", flag],
            (crate::run::ID, crate::run::SECRET),
        );
        assert_eq!(out.status.code(), Some(2), "{flag}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{flag}: {stderr}");
    }
    let out = rig.bare(
        &[
            "run",
            &pb,
            "--yes",
            "--sim",
            "--endpoint",
            &format!("dataworks={url}"),
        ],
        (crate::run::ID, crate::run::SECRET),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--sim"),
        "{}",
        text(&out)
    );
    assert!(rig.calls().is_empty());
    let out = rig.bare(
        &[
            "run",
            &pb,
            "--yes",
            "--endpoint",
            &format!("DataWorks={url}/"),
        ],
        (crate::run::ID, crate::run::SECRET),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// Stop nodes 21 and 22 after an approval, stop them again (the same
/// resources, mutated by `stop`), then terminate node 23.
const DRIFT: &str = r#"
name: drift
params:
  file_ids: { type: array, items: integer, default: [21, 22] }
defaults:
  region: cn-shanghai
  retry: { attempts: 3, backoff: fixed, delay: 20ms }
steps:
  - id: gate
    approve: "Stop nodes 21 and 22?"
  - id: stop
    needs: [gate]
    for_each: "{{params.file_ids}}"
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 10000, FileId: "{{item}}", TaskType: DI_REALTIME }
  - id: stop-again
    needs: [stop]
    for_each: "{{params.file_ids}}"
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 10000, FileId: "{{item}}", TaskType: DI_REALTIME }
  - id: terminate
    needs: [stop-again]
    call: dataworks.TerminateDISyncInstance
    with: { ProjectId: 10000, FileId: 23, TaskType: DI_REALTIME }
"#;

const NODE_22: &str = "GetDISyncInstanceInfo FileId=22 ProjectId=10000 TaskType=DI_REALTIME";

/// `plan --refresh -o PLAN.json` of [`DRIFT`] against the rig's simulator.
fn refreshed_plan(rig: &Rig) -> String {
    let pb = rig.playbook("drift.yaml", DRIFT);
    let plan = rig.dir.path().join("plan.json");
    let url = rig.sim().base_url();
    let out = rig.run(&[
        "plan",
        &pb,
        "--refresh",
        "--endpoint",
        &format!("dataworks={url}"),
        "--format",
        "markdown",
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("## Current state"), "{md}");
    assert!(
        md.contains(&format!(
            "| `stop` [22] | `{NODE_22}` | `Data.Status` = `RUN` | would change it | `"
        )),
        "{md}"
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let observations = saved["observations"].as_array().unwrap();
    assert_eq!(observations.len(), 5, "{saved}");
    assert!(
        observations.iter().all(|o| o["request_id"].is_string()),
        "{saved}"
    );
    plan.to_string_lossy().into_owned()
}

fn mutating_calls(rig: &Rig) -> usize {
    rig.calls()
        .iter()
        .filter(|c| {
            matches!(
                c.action.as_deref(),
                Some("StopDISyncInstance" | "TerminateDISyncInstance")
            )
        })
        .count()
}

/// The drift events journaled for the run.
fn drift_events(rig: &Rig) -> Vec<Value> {
    rig.journal_texts("SELECT event_json FROM events ORDER BY seq", "")
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter(|e| e["event"] == "drift")
        .collect()
}

#[test]
fn a_refreshed_plan_runs_only_against_the_world_it_was_reviewed_against() {
    let rig = Rig::new("", Duration::ZERO);
    let plan = refreshed_plan(&rig);
    let reads = rig.calls().len();
    // Node 22 was stopped by someone else after the review.
    rig.sim()
        .set_status(runbook::sim::ResourceKind::DiNode, "22", "PAUSE")
        .unwrap();
    let out = rig.run(&["run", &plan, "--yes", "--approve", "gate"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "`{NODE_22}` (step `stop` item 22) was reviewed as \"RUN\" (would change it) and is now \"PAUSE\" (no-op: already done)"
        )),
        "{stderr}"
    );
    assert_eq!(mutating_calls(&rig), 0, "nothing but reads before the run");
    assert!(rig.calls()[reads..].iter().all(|c| !c.changed));
    let runs = rig.run(&["runs", "--json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&runs.stdout).unwrap(),
        serde_json::json!([])
    );

    // Overridden: it runs, and the journal says so.
    let out = rig.run(&["run", &plan, "--yes", "--approve", "gate", "--allow-drift"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Each (step, resource) pair that drifted, at the start and again before `stop`.
    let events = drift_events(&rig);
    assert!(
        events
            .iter()
            .all(|e| e["resource"] == NODE_22 && e["allowed"] == true),
        "{events:?}"
    );
    let steps: Vec<&str> = events.iter().map(|e| e["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["stop", "stop-again", "stop"], "{events:?}");
}

#[test]
fn drift_during_a_run_stops_before_the_step_and_a_resume_checks_again() {
    let rig = Rig::new("", Duration::ZERO);
    let plan = refreshed_plan(&rig);
    // The run stops at the approval (answered `no`), before anything changes.
    let out = crate::run::on_terminal(&rig, &["run", &plan], "yes\nno");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run_id = rig.last_run_id();
    rig.sim()
        .set_status(runbook::sim::ResourceKind::DiNode, "22", "PAUSE")
        .unwrap();
    let out = rig.run(&["resume", &run_id, "--approve", "gate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("drift since the plan was reviewed"), "{all}");
    assert!(all.contains(NODE_22), "{all}");
    assert_eq!(mutating_calls(&rig), 0, "the drifted step sent nothing");
    let events = drift_events(&rig);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["step"], "stop");
    assert_eq!(events[0]["allowed"], false);

    // Back as reviewed: the run goes on. `stop-again` is not re-checked
    // (its nodes were stopped by `stop`, which would read as drift);
    // `terminate` is, and node 23 is as reviewed.
    rig.sim()
        .set_status(runbook::sim::ResourceKind::DiNode, "22", "RUN")
        .unwrap();
    let before = rig.calls().len();
    let out = rig.run(&["resume", &run_id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let reads: Vec<String> = rig.calls()[before..]
        .iter()
        .filter(|c| c.action.as_deref() == Some("GetDISyncInstanceInfo"))
        .map(|c| c.param("FileId").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        reads,
        ["21", "22", "23"],
        "stop's nodes and terminate's node, once each"
    );
    assert_eq!(drift_events(&rig).len(), 1);
    assert_eq!(
        rig.status(runbook::sim::ResourceKind::DiNode, "23")
            .as_deref(),
        Some("NORUN")
    );
}

/// A stop of a DTS job whose sync failed after the review: the stop would
/// still "change" it, but it is not the world the reviewer saw.
const DTS_DRIFT: &str = r#"
name: dts-drift
defaults:
  region: cn-hangzhou
steps:
  - id: stop-dts
    call: dts.StopDtsJob
    with: { DtsJobId: dtsjob1, SynchronizationDirection: Forward }
"#;

#[test]
fn a_status_that_changed_is_drift_even_when_the_step_would_still_change_it() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("dts-drift.yaml", DTS_DRIFT);
    let plan = rig.dir.path().join("dts-plan.json");
    let url = rig.sim().base_url();
    let out = rig.run(&[
        "plan",
        &pb,
        "--refresh",
        "--endpoint",
        &format!("dts={url}"),
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let plan = plan.to_str().unwrap();
    rig.sim()
        .set_status(runbook::sim::ResourceKind::DtsJob, "dtsjob1", "Failed")
        .unwrap();
    let out = rig.run(&["run", plan, "--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("was reviewed as \"Synchronizing\" (would change it) and is now \"Failed\" (would change it)"),
        "{stderr}"
    );
    assert!(
        rig.calls()
            .iter()
            .all(|c| c.action.as_deref() != Some("StopDtsJob")),
        "nothing mutating was sent"
    );
    // Back as reviewed: it runs.
    rig.sim()
        .set_status(
            runbook::sim::ResourceKind::DtsJob,
            "dtsjob1",
            "Synchronizing",
        )
        .unwrap();
    let out = rig.run(&["run", plan, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
