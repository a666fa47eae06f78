//! The region of steps a playbook names none: `ALIBABA_CLOUD_REGION_ID`,
//! else the `region_id` of the aliyun CLI profile in use (`--profile`, else
//! `ALIBABA_CLOUD_PROFILE`, else the file's `current`). `validate` warns,
//! `plan` records the region and its source (and fails when no source
//! gives one), and a saved plan or a resumed run keeps the planned region
//! whatever the environment says later. End to end against the simulator.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::run::{Rig, text, wait_until};
use crate::validate::run_cli;

/// Two DataWorks calls and a sleep; no region anywhere.
const REGIONLESS: &str = "tests/fixtures/regionless.yaml";

const ENV_REGION: &str = "ALIBABA_CLOUD_REGION_ID";

/// `runbook ARGS` from the rig, with the region sources under the test's
/// control: no region variable, no profile variable, and the aliyun CLI
/// config at `<rig>/aliyun.json` (absent unless written), then `env`.
fn cmd(rig: &Rig, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = rig.cmd(args);
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove(ENV_REGION)
        .env_remove("ALIBABA_CLOUD_PROFILE")
        .env_remove("ALIBABA_CLOUD_CLI_PROFILE_DISABLED")
        .env("HOME", rig.dir.path())
        .env(
            "ALIBABA_CLOUD_CONFIG_FILE",
            rig.dir.path().join("aliyun.json"),
        );
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Writes the aliyun CLI config: `current` and `(name, region_id)` profiles.
fn write_config(rig: &Rig, current: &str, profiles: &[(&str, Option<&str>)]) {
    let profiles: Vec<Value> = profiles
        .iter()
        .map(|(name, region)| {
            let mut p = json!({"name": name, "mode": "AK",
                "access_key_id": crate::run::ID, "access_key_secret": crate::run::SECRET});
            if let Some(r) = region {
                p["region_id"] = json!(r);
            }
            p
        })
        .collect();
    std::fs::write(
        rig.dir.path().join("aliyun.json"),
        json!({"current": current, "profiles": profiles}).to_string(),
    )
    .unwrap();
}

fn plan_json(rig: &Rig, playbook: &str, extra: &[&str], env: &[(&str, &str)]) -> Value {
    let mut args = vec!["plan", playbook, "--format", "json"];
    args.extend(extra);
    let out = cmd(rig, &args, env).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The regions of the plan's steps that call an API.
fn call_regions(plan: &Value) -> Vec<String> {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"]["kind"] != "sleep")
        .map(|s| s["region"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn validate_warns_and_passes() {
    let (code, stdout, stderr) = run_cli(&["validate", REGIONLESS]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("ok: {REGIONLESS} (3 steps)\n"));
    insta::assert_snapshot!("validate-warning", stderr);
    // A playbook with a region everywhere has nothing to warn about.
    let (code, _, stderr) = run_cli(&["validate", "playbooks/stop-di-job.yaml"]);
    assert_eq!((code, stderr.as_str()), (0, ""));
}

#[test]
fn plan_fails_when_no_source_gives_a_region() {
    let rig = Rig::new("", Duration::ZERO);
    let dir = rig.dir.path().display().to_string();
    let redact = |s: &[u8]| String::from_utf8_lossy(s).replace(&dir, "[DIR]");
    // No variable, no config file.
    let out = cmd(&rig, &["plan", REGIONLESS], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(out.stdout.is_empty());
    insta::assert_snapshot!("plan-no-region", redact(&out.stderr));
    // A config whose profile in use has no region_id (another one has).
    write_config(&rig, "dev", &[("dev", None), ("prod", Some("cn-beijing"))]);
    let out = cmd(&rig, &["plan", REGIONLESS], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    insta::assert_snapshot!("plan-profile-without-region", redact(&out.stderr));
    // A region that is set but is not one is an error, not skipped.
    let out = cmd(&rig, &["plan", REGIONLESS], &[(ENV_REGION, "cn_shanghai")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("ALIBABA_CLOUD_REGION_ID is `cn_shanghai`, not a region id"),
        "{}",
        text(&out)
    );
    // A named profile that does not exist is an error naming it.
    let out = cmd(&rig, &["plan", REGIONLESS, "--profile", "nope"], &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        redact(&out.stderr)
            .contains("profile `nope` is not in [DIR]/aliyun.json (named by --profile)"),
        "{}",
        text(&out)
    );
}

/// Every combination of the sources, through the binary: the variable
/// wins, else the profile in use (flag, else ALIBABA_CLOUD_PROFILE, else
/// `current`); the plan's steps and its `default_region` agree.
#[test]
fn every_source_and_its_precedence() {
    let rig = Rig::new("", Duration::ZERO);
    write_config(
        &rig,
        "cur",
        &[
            ("cur", Some("cn-beijing")),
            ("named", Some("ap-southeast-1")),
        ],
    );
    for env_region in [None, Some("cn-shanghai")] {
        for env_profile in [None, Some("named")] {
            for flag in [None, Some("cur"), Some("named")] {
                let mut env = Vec::new();
                if let Some(r) = env_region {
                    env.push((ENV_REGION, r));
                }
                if let Some(p) = env_profile {
                    env.push(("ALIBABA_CLOUD_PROFILE", p));
                }
                let extra: Vec<&str> = flag.map(|f| vec!["--profile", f]).unwrap_or_default();
                let plan = plan_json(&rig, REGIONLESS, &extra, &env);
                let in_use = flag.or(env_profile).unwrap_or("cur");
                let want = match env_region {
                    Some(r) => json!({"region": r, "source": "env"}),
                    None => json!({
                        "region": if in_use == "cur" { "cn-beijing" } else { "ap-southeast-1" },
                        "source": "profile",
                        "profile": in_use,
                    }),
                };
                let case = format!(
                    "env {env_region:?}, ALIBABA_CLOUD_PROFILE {env_profile:?}, --profile {flag:?}"
                );
                assert_eq!(plan["default_region"], want, "{case}");
                let region = want["region"].as_str().unwrap();
                assert_eq!(call_regions(&plan), [region, region], "{case}");
            }
        }
    }
    // ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true: the profile is not read.
    let out = cmd(
        &rig,
        &["plan", REGIONLESS],
        &[("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "true")],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}

/// A playbook that names its regions is planned as before: no
/// `default_region`, the same digest whatever the environment says.
#[test]
fn a_playbook_with_regions_ignores_the_default() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = "playbooks/stop-di-job.yaml";
    let without = plan_json(&rig, pb, &["-p", "di_job_id=1"], &[]);
    let with = plan_json(
        &rig,
        pb,
        &["-p", "di_job_id=1"],
        &[(ENV_REGION, "eu-central-1")],
    );
    assert!(without.get("default_region").is_none());
    assert_eq!(with, without);
}

/// The text and markdown plans say where the region came from.
#[test]
fn text_and_markdown_show_the_source() {
    let rig = Rig::new("", Duration::ZERO);
    write_config(&rig, "prod", &[("prod", Some("cn-beijing"))]);
    let out = cmd(&rig, &["plan", REGIONLESS], &[]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(
            "region:       cn-beijing for the steps that name none (from the region_id of aliyun CLI profile `prod` when planned)\n"
        ),
        "{}",
        text(&out)
    );
    let out = cmd(
        &rig,
        &["plan", REGIONLESS, "--format", "markdown"],
        &[(ENV_REGION, "cn-shanghai")],
    )
    .output()
    .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(
            "| Region | cn-shanghai for the steps that name none (from ALIBABA_CLOUD_REGION_ID when planned) |\n"
        ),
        "{}",
        text(&out)
    );
}

/// The regions of the product calls the simulator received.
fn sent_regions(rig: &Rig) -> Vec<String> {
    rig.calls()
        .iter()
        .map(|c| c.param("RegionId").unwrap_or("(none)").to_owned())
        .collect()
}

#[test]
fn a_run_with_only_the_env_region_goes_end_to_end() {
    let rig = Rig::new("", Duration::from_millis(20));
    let out = cmd(
        &rig,
        &["run", REGIONLESS, "--yes"],
        &[(ENV_REGION, "cn-shanghai")],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let regions = sent_regions(&rig);
    assert!(regions.len() >= 2, "{regions:?}");
    assert!(regions.iter().all(|r| r == "cn-shanghai"), "{regions:?}");
    // The journaled plan records it.
    let run_id = rig.last_run_id();
    let plan: Vec<String> = rig.journal_texts("SELECT plan_json FROM runs WHERE id = ?1", &run_id);
    let plan: Value = serde_json::from_str(&plan[0]).unwrap();
    assert_eq!(
        plan["default_region"],
        json!({"region": "cn-shanghai", "source": "env"})
    );
    // And with no source at all, `run` refuses before sending anything.
    let rig = Rig::new("", Duration::ZERO);
    let out = cmd(&rig, &["run", REGIONLESS, "--yes"], &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(rig.calls().is_empty());
}

/// `run PLAN.json` runs where the plan was made for, and says so when the
/// environment now says otherwise; an edited `default_region` is refused.
#[test]
fn a_saved_plan_keeps_its_region() {
    let rig = Rig::new("", Duration::from_millis(20));
    let saved = rig.dir.path().join("plan.json");
    let saved = saved.to_str().unwrap();
    let pb = rig.playbook(
        "regionless.yaml",
        &std::fs::read_to_string(REGIONLESS).unwrap(),
    );
    let out = cmd(
        &rig,
        &["plan", &pb, "-o", saved],
        &[(ENV_REGION, "cn-shanghai")],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Edited to another region (digest and all): refused, nothing sent.
    let text_of = std::fs::read_to_string(saved).unwrap();
    let edited = rig.dir.path().join("edited.json");
    std::fs::write(&edited, text_of.replace("cn-shanghai", "cn-beijing")).unwrap();
    let out = cmd(&rig, &["run", edited.to_str().unwrap(), "--yes"], &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(rig.calls().is_empty());
    // Run with another region in the environment: the plan's is used.
    let out = cmd(
        &rig,
        &["run", saved, "--yes"],
        &[(ENV_REGION, "cn-beijing")],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "note: the steps that name no region run in cn-shanghai (ALIBABA_CLOUD_REGION_ID when planned); ALIBABA_CLOUD_REGION_ID now says cn-beijing, which is not used"
        ),
        "{}",
        text(&out)
    );
    let regions = sent_regions(&rig);
    assert!(
        !regions.is_empty() && regions.iter().all(|r| r == "cn-shanghai"),
        "{regions:?}"
    );
    // Run with no region source at all: still the plan's.
    let out = cmd(&rig, &["run", saved, "--yes"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(sent_regions(&rig).iter().all(|r| r == "cn-shanghai"));
}

/// A run killed mid-way and resumed with another region in the environment
/// goes on in the region it was planned in.
#[test]
fn resume_keeps_the_journaled_region() {
    let rig = Rig::new("", Duration::from_millis(300));
    let mut child = cmd(
        &rig,
        &["run", REGIONLESS, "--yes"],
        &[(ENV_REGION, "cn-shanghai")],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_until(&mut child, "the stop was sent", || {
        crate::run::count(&rig.calls(), "StopDtsJob") == 1
    });
    child.kill().unwrap();
    let _ = child.wait();
    let run_id = rig.last_run_id();
    let out = cmd(&rig, &["resume", &run_id], &[(ENV_REGION, "cn-beijing")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("ALIBABA_CLOUD_REGION_ID now says cn-beijing, which is not used"),
        "{}",
        text(&out)
    );
    let regions = sent_regions(&rig);
    assert!(regions.len() >= 2, "{regions:?}");
    assert!(regions.iter().all(|r| r == "cn-shanghai"), "{regions:?}");
}
