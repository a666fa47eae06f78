//! `runbook plan` and `runbook graph` on every example playbook (text,
//! markdown and JSON snapshots), param errors, plan files and their
//! freshness check.
//!
//! Plans are deterministic, so nothing is redacted: a change in any byte
//! of a plan is a change a reviewer would see.

use std::path::Path;

use runbook::ExitCode;
use runbook::cloud::signer::SignatureVersion;
use runbook::plan::{Plan, StepKind};

use crate::validate::{run_cli, transcript};

/// Every example playbook; each has a params file under `playbooks/params/`.
const EXAMPLES: &[&str] = &[
    "dts-di-cutover",
    "di-realtime-maintenance-stop",
    "stop-di-job",
    "di-status-report",
    "weekly-di-restart",
];

fn plan_args(name: &str, format: &str) -> Vec<String> {
    vec![
        "plan".to_owned(),
        format!("playbooks/{name}.yaml"),
        "--params".to_owned(),
        format!("playbooks/params/{name}.yaml"),
        "--format".to_owned(),
        format.to_owned(),
    ]
}

/// Snapshots the plan of an example with each signature, whatever
/// `RUNBOOK_SIGNATURE` says: V1's under `plan-NAME-FORMAT`, V3's under
/// `plan-v3-NAME-FORMAT` (only the requests differ, and the digest).
fn snapshot_plan(name: &str, format: &str) {
    for signature in SignatureVersion::ALL {
        let mut args = plan_args(name, format);
        args.extend(["--signature".to_owned(), signature.to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stdout, stderr) = run_cli(&args);
        assert_eq!(code, 0, "{name} {format} {signature}: {stderr}");
        assert!(stderr.is_empty(), "{stderr}");
        // Credentials never reach a plan, whatever the format.
        for secret in ["AccessKeySecret", "SecurityToken=", "x-acs-security-token:"] {
            assert!(
                !stdout.contains(secret),
                "{name} {format} {signature} mentions {secret}"
            );
        }
        match signature {
            SignatureVersion::V1 => {
                assert!(
                    stdout.contains("AccessKeyId=<redacted>")
                        && stdout.contains("Signature=<redacted>")
                );
                insta::assert_snapshot!(
                    format!("plan-{name}-{format}"),
                    without_window_now(&stdout)
                );
            }
            SignatureVersion::V3 => {
                assert!(
                    stdout.contains("Credential=<redacted>,SignedHeaders=")
                        && stdout.contains(",Signature=<redacted>")
                        && !stdout.contains("SignatureNonce")
                        && !stdout.contains("AccessKeyId"),
                    "{stdout}"
                );
                insta::assert_snapshot!(
                    format!("plan-v3-{name}-{format}"),
                    without_window_now(&stdout)
                );
            }
        }
    }
}

/// The plan with the one line that depends on when it is made (whether the
/// change window is open now, and whether the worst case fits in what is
/// left) replaced by a placeholder; a plan with a window must have that line.
fn without_window_now(plan: &str) -> String {
    let mut found = false;
    let out: Vec<String> = plan
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("open now") || t.starts_with("closed now") {
                found = true;
                format!(
                    "{}[whether the window is open now]",
                    &l[..l.len() - t.len()]
                )
            } else if l.starts_with("| Window now | ") {
                found = true;
                "| Window now | [whether the window is open now] |".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    let has_window = plan
        .lines()
        .any(|l| l.starts_with("window:       ") || l.starts_with("| Change window |"));
    assert_eq!(
        found, has_window,
        "a window, and whether it is open now:\n{plan}"
    );
    let mut s = out.join("\n");
    if plan.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// The signature is part of the plan: each builds another digest, and a
/// playbook's `defaults.signature` is what `--signature` overrides.
#[test]
fn the_signature_is_part_of_the_plan_and_its_digest() {
    let digest = |extra: &[&str]| {
        let mut args = vec![
            "plan",
            "playbooks/stop-di-job.yaml",
            "-p",
            "di_job_id=11668",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = run_cli(&args);
        assert_eq!(code, 0, "{stderr}");
        let plan: Plan = serde_json::from_str(&stdout).expect("a plan");
        (plan.signature, plan.digest)
    };
    let (v1, d1) = digest(&["--signature", "v1"]);
    let (v3, d3) = digest(&["--signature", "v3"]);
    assert_eq!((v1, v3), (SignatureVersion::V1, SignatureVersion::V3));
    assert_ne!(d1, d3);

    let dir = tempfile::tempdir().expect("tempdir");
    let playbook = dir.path().join("v3.yaml");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/stop-di-job.yaml"),
    )
    .expect("read");
    let text = text.replacen("defaults:\n", "defaults:\n  signature: v3\n", 1);
    assert!(text.contains("signature: v3"), "{text}");
    std::fs::write(&playbook, &text).expect("write");
    let path = playbook.to_str().expect("utf-8 path");
    let plan = |extra: &[&str]| {
        let mut args = vec!["plan", path, "-p", "di_job_id=11668", "--format", "json"];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = run_cli(&args);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str::<Plan>(&stdout)
            .expect("a plan")
            .signature
    };
    assert_eq!(
        plan(&["--signature", "v1"]),
        SignatureVersion::V1,
        "the flag wins"
    );
    assert_eq!(plan(&["--signature", "v3"]), SignatureVersion::V3);

    // A bad value, on the command line or in the environment: exit 2.
    let (code, _, stderr) = run_cli(&["plan", path, "--signature", "v2"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("expected v1 (HMAC-SHA1) or v3"), "{stderr}");
    let out = assert_cmd::cargo::cargo_bin_cmd!("runbook")
        .args(["plan", path, "-p", "di_job_id=1"])
        .env("RUNBOOK_SIGNATURE", "sha1")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("RUNBOOK_SIGNATURE: unknown signature `sha1`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The environment is the default when no flag is given, over the playbook's.
    for (env, want) in [("v1", SignatureVersion::V1), ("v3", SignatureVersion::V3)] {
        let out = assert_cmd::cargo::cargo_bin_cmd!("runbook")
            .args(["plan", path, "-p", "di_job_id=1", "--format", "json"])
            .env("RUNBOOK_SIGNATURE", env)
            .output()
            .expect("runs");
        let plan: Plan = serde_json::from_slice(&out.stdout).expect("a plan");
        assert_eq!(plan.signature, want);
    }
    let out = assert_cmd::cargo::cargo_bin_cmd!("runbook")
        .args(["plan", path, "-p", "di_job_id=1", "--format", "json"])
        .env_remove("RUNBOOK_SIGNATURE")
        .output()
        .expect("runs");
    let plan: Plan = serde_json::from_slice(&out.stdout).expect("a plan");
    assert_eq!(
        plan.signature,
        SignatureVersion::V3,
        "the playbook's default"
    );
}

macro_rules! plan_snapshots {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                for format in ["text", "markdown", "json"] {
                    snapshot_plan($name, format);
                }
            }
        )*
    };
}

plan_snapshots! {
    plan_dts_di_cutover => "dts-di-cutover",
    plan_di_realtime_maintenance_stop => "di-realtime-maintenance-stop",
    plan_stop_di_job => "stop-di-job",
    plan_di_status_report => "di-status-report",
    plan_weekly_di_restart => "weekly-di-restart",
}

#[test]
fn every_example_has_params_and_a_snapshot_test() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
    let found = super::validate::yaml_stems("playbooks");
    let mut listed: Vec<String> = EXAMPLES.iter().map(|s| (*s).to_owned()).collect();
    listed.sort();
    assert_eq!(found, listed);
    for name in EXAMPLES {
        assert!(
            dir.join("params").join(format!("{name}.yaml")).is_file(),
            "playbooks/params/{name}.yaml"
        );
    }
}

#[test]
fn plans_are_deterministic() {
    let args = plan_args("dts-di-cutover", "json");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = run_cli(&args);
    let second = run_cli(&args);
    assert_eq!(first, second);
}

#[test]
fn graphs() {
    for format in ["dot", "mermaid"] {
        for name in ["dts-di-cutover", "di-realtime-maintenance-stop"] {
            let path = format!("playbooks/{name}.yaml");
            insta::assert_snapshot!(
                format!("graph-{name}-{format}"),
                transcript(&["graph", &path, "--format", format])
            );
        }
    }
}

#[test]
fn command_line_params_override_the_file_and_requests_name_product_and_region() {
    let (code, stdout, stderr) = run_cli(&[
        "plan",
        "playbooks/dts-di-cutover.yaml",
        "--params",
        "playbooks/params/dts-di-cutover.yaml",
        "-p",
        "file_ids=7",
        "-p",
        "region=cn-shanghai",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("file_ids=[7]"), "{stdout}");
    assert!(stdout.contains("POST dts in cn-shanghai"), "{stdout}");
    assert!(stdout.contains("POST dataworks in cn-shanghai"), "{stdout}");
    assert!(stdout.contains("RegionId=cn-shanghai"), "{stdout}");
    assert!(
        !stdout.contains("aliyuncs.com"),
        "no host in a plan: {stdout}"
    );
    // Where requests go is decided at run time: `--endpoint` only steers `--refresh` reads.
    let (code, _, stderr) = run_cli(&[
        "plan",
        "playbooks/stop-di-job.yaml",
        "-p",
        "di_job_id=1",
        "--endpoint",
        "dataworks=http://127.0.0.1:9000",
    ]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn param_errors_are_usage_errors_listing_every_problem() {
    insta::assert_snapshot!(
        "plan-param-errors",
        transcript(&[
            "plan",
            "playbooks/dts-di-cutover.yaml",
            "-p",
            "project_id=ten",
            "-p",
            "file_id=1",
            "-p",
            "dts_job_id=j-1",
        ])
    );
    let (code, _, _) = run_cli(&["plan", "playbooks/dts-di-cutover.yaml"]);
    assert_eq!(code, 2);
}

#[test]
fn rendered_values_are_checked_against_the_action() {
    // `report` reads FileId from `params.file_ids.[0]`; an empty list has no item 0.
    let out = transcript(&[
        "plan",
        "playbooks/dts-di-cutover.yaml",
        "--params",
        "playbooks/params/dts-di-cutover.yaml",
        "-p",
        "file_ids=",
    ]);
    assert!(out.contains("exit: 3"), "{out}");
    insta::assert_snapshot!("plan-render-error", out);
}

#[test]
fn a_string_param_that_does_not_fit_an_integer_api_parameter_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    std::fs::write(
        &path,
        "name: t\nparams:\n  project: { type: string }\ndefaults: { region: cn-shanghai }\nsteps:\n  - id: stop\n    call: dataworks.StopDIJob\n    with: { DIJobId: \"{{params.project}}\" }\n",
    )
    .expect("write");
    let err = runbook::plan::load_and_build(&path, &[("project".into(), "abc".into())], None)
        .expect_err("abc is not an integer");
    assert_eq!(err.exit, ExitCode::InvalidPlaybook);
    let text = err.rendered.expect("rendered");
    assert!(
        text.contains("step `stop`: parameter `DIJobId` of `dataworks.StopDIJob` must be an integer, found the string `abc` (rendered from `{{params.project}}`)"),
        "{text}"
    );
    assert!(text.contains("p.yaml:8:22"), "{text}");
    let ok = runbook::plan::load_and_build(&path, &[("project".into(), "11668".into())], None)
        .expect("11668 is an integer");
    let StepKind::Call { call, .. } = &ok.steps[0].kind else {
        panic!("a call")
    };
    assert_eq!(call.request.body, "DIJobId=11668");
}

#[test]
fn plan_files_round_trip_and_refuse_a_changed_playbook() {
    let dir = tempfile::tempdir().expect("tempdir");
    let playbook = dir.path().join("stop.yaml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/stop-di-job.yaml"),
        &playbook,
    )
    .expect("copy");
    let out = dir.path().join("plan.json");
    let (code, _, stderr) = run_cli(&[
        "plan",
        playbook.to_str().expect("utf-8 path"),
        "-p",
        "di_job_id=11668",
        "-o",
        out.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.starts_with("wrote plan to "), "{stderr}");

    let plan = Plan::load_verified(&out).expect("plan file loads");
    assert_eq!(plan.params["di_job_id"], serde_json::json!(11668));
    assert_eq!(plan.digest, runbook::plan::integrity::digest(&plan));

    // Same params, different playbook bytes: refused.
    let text = std::fs::read_to_string(&playbook).expect("read");
    std::fs::write(&playbook, text.replace("every: 5s", "every: 1s")).expect("write");
    let err = Plan::load_verified(&out).expect_err("changed playbook");
    assert_eq!(err.exit, ExitCode::Refused);
    assert!(
        err.message.contains("changed since this plan was written"),
        "{}",
        err.message
    );

    // Same playbook, edited params in the plan file: refused, naming the field.
    std::fs::write(&playbook, &text).expect("restore");
    let saved = std::fs::read_to_string(&out).expect("read plan");
    let edited = saved.replace("\"di_job_id\": 11668", "\"di_job_id\": 1");
    assert_ne!(edited, saved);
    std::fs::write(&out, edited).expect("write");
    let err = Plan::load_verified(&out).expect_err("edited params");
    assert_eq!(err.exit, ExitCode::Refused);
    assert!(
        err.message
            .contains(".with.DIJobId: saved \"{{params.di_job_id}}\"")
            || err.message.contains("saved \"11668\", rebuilt \"1\""),
        "{}",
        err.message
    );
    // Every value edited consistently: only the digest tells.
    std::fs::write(&out, saved.replace("11668", "1")).expect("write");
    let err = Plan::load_verified(&out).expect_err("edited everywhere");
    assert_eq!(err.exit, ExitCode::Refused);
    assert!(err.message.contains("digest: saved "), "{}", err.message);

    // Not a plan of this format.
    std::fs::write(&out, "{\"format\": 99}").expect("write");
    let err = Plan::load_verified(&out).expect_err("wrong format");
    assert_eq!(err.exit, ExitCode::Refused);
    std::fs::write(&out, "{").expect("write");
    let err = Plan::load_verified(&out).expect_err("not JSON");
    assert_eq!(err.exit, ExitCode::InvalidPlaybook);
}

#[test]
fn refresh_without_credentials_fails_clearly_before_any_call() {
    let home = tempfile::tempdir().unwrap();
    let out = assert_cmd::cargo::cargo_bin_cmd!("runbook")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "plan",
            "playbooks/stop-di-job.yaml",
            "-p",
            "di_job_id=1",
            "--refresh",
        ])
        .env("HOME", home.path())
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .env_remove("ALIBABA_CLOUD_PROFILE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("ALIBABA_CLOUD_ACCESS_KEY_ID"), "{stderr}");
    assert!(stderr.contains(".aliyun/config.json"), "{stderr}");
}
