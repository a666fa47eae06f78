//! The commands in `deploy/` (the systemd service and timer, the Kubernetes
//! CronJob) are real runbook invocations: each parses with this crate's clap
//! definition and runs a saved plan, with no flag that approves it; the
//! review steps each file documents (`runbook plan ... -o PLAN.json`, then
//! `runbook approve --plan PLAN.json --expires ...`) parse too, write that
//! very plan from a playbook that validates and plans, and pre-approve it;
//! and each is scheduled at an opening of the playbook's window. A flag
//! renamed here, a playbook edited or a schedule moved outside the window
//! fails these tests until the files follow.

use std::path::{Path, PathBuf};

use clap::Parser as _;
use serde_json::Value;

use super::{Cli, Command};

/// Where the files install the repository's `playbooks/` (their working
/// directory): paths in the commands are relative to it.
const INSTALL_DIR: &str = "/opt/runbook";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `KEY=VALUE` lines of a unit file's sections (the last one of a key wins,
/// as systemd reads them; comments left out).
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().to_owned())
        .collect()
}

/// The value of `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// The words of the `runbook SUBCOMMAND ...` command written in a comment
/// of `text` (the review steps a file documents), without `runbook`.
fn documented(text: &str, subcommand: &str) -> Vec<String> {
    let line = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('#'))
        .map(str::trim)
        .find(|l| l.starts_with(&format!("runbook {subcommand} ")))
        .unwrap_or_else(|| panic!("no `runbook {subcommand} ...` documented"));
    line.split_whitespace()
        .skip(1)
        .take_while(|w| !w.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Checks one `runbook ...` invocation (without the program name), run from
/// `INSTALL_DIR`, with `journal` as its `RUNBOOK_JOURNAL` if it sets one,
/// against the review steps documented in the file (`text`): the saved
/// plan it runs is the one `runbook plan ... -o` writes there, and `runbook
/// approve --plan` pre-approves that plan. Returns the plan it would run.
fn check_invocation(
    what: &str,
    args: &[String],
    journal: Option<&str>,
    text: &str,
) -> crate::plan::Plan {
    // The real clap definition, with the environment's journal as a flag
    // (the same value clap would take from RUNBOOK_JOURNAL).
    let mut argv: Vec<String> = vec!["runbook".to_owned()];
    argv.extend(args.iter().cloned());
    if let Some(url) = journal {
        argv.extend(["--journal".to_owned(), url.to_owned()]);
    }
    let cli = Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("{what}: `{}` does not parse:\n{e}", argv.join(" ")));
    let Command::Run(run) = cli.command else {
        panic!("{what}: a scheduled invocation is `runbook run`, not {argv:?}");
    };
    if journal.is_some() {
        run.state
            .journal_url()
            .unwrap_or_else(|e| panic!("{what}: its journal URL: {}", e.message));
    }
    // Approved ahead, by people: nothing on the command line approves it.
    for approving in ["--yes", "--expect-digest", "--approve"] {
        assert!(
            !args.iter().any(|a| a == approving),
            "{what}: the scheduled run is approved ahead (`runbook approve --plan`), not by {approving}"
        );
    }
    let saved = args.get(1).unwrap_or_else(|| panic!("{what}: no plan"));
    assert!(
        Path::new(saved).extension().is_some_and(|e| e == "json"),
        "{what}: a scheduled run runs a saved, reviewed plan, not {saved}"
    );
    // The plan is written by the documented `runbook plan ... -o SAVED`,
    // from the playbook and params it names (relative to the install
    // directory), and loads back as the same plan.
    let plan_cmd = documented(text, "plan");
    assert_eq!(
        flag(&plan_cmd, "-o"),
        Some(saved.as_str()),
        "{what}: the documented `runbook plan` writes the plan it runs"
    );
    let local = |p: &str| -> PathBuf {
        let p = Path::new(p);
        repo().join(p.strip_prefix(INSTALL_DIR).unwrap_or(p))
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(saved);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut words: Vec<String> = vec!["runbook".to_owned()];
    let mut it = plan_cmd.iter();
    while let Some(w) = it.next() {
        words.push(w.clone());
        if let Some(v) = (w == "--params" || w == "-o").then(|| it.next()).flatten() {
            let path = if w == "-o" { out.clone() } else { local(v) };
            words.push(path.to_string_lossy().into_owned());
        }
    }
    words[2] = local(&plan_cmd[1]).to_string_lossy().into_owned();
    let cli = Cli::try_parse_from(&words).unwrap_or_else(|e| {
        panic!(
            "{what}: `runbook {}` does not parse:\n{e}",
            plan_cmd.join(" ")
        )
    });
    let Command::Plan(plan_args) = cli.command else {
        panic!("{what}: `runbook plan` is documented");
    };
    plan_args.exec().unwrap_or_else(|e| {
        panic!(
            "{what}: `runbook {}` fails: {}",
            plan_cmd.join(" "),
            e.message
        )
    });
    let plan = crate::plan::Plan::load_verified(&out)
        .unwrap_or_else(|e| panic!("{what}: the saved plan does not load: {}", e.message));
    // Each approver pre-approves that plan, for a while.
    let approve_cmd = documented(text, "approve");
    assert_eq!(
        flag(&approve_cmd, "--plan"),
        Some(saved.as_str()),
        "{what}: the documented pre-approval approves the plan it runs"
    );
    let expires = flag(&approve_cmd, "--expires").expect("--expires");
    crate::run::preapproval::expiry(expires, jiff::Timestamp::now())
        .unwrap_or_else(|e| panic!("{what}: --expires {expires}: {}", e.message));
    check_documented_approve(what, &approve_cmd);
    assert!(
        plan.window.is_some(),
        "{what}: a scheduled playbook keeps to a change window"
    );
    plan
}

/// The documented `runbook approve --plan ...` parses as this crate's
/// command line does.
fn check_documented_approve(what: &str, words: &[String]) {
    let mut argv = vec!["runbook".to_owned()];
    argv.extend(words.iter().cloned());
    let cli = Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("{what}: `{}` does not parse:\n{e}", argv.join(" ")));
    assert!(
        matches!(cli.command, Command::Approve(_)),
        "{what}: the pre-approval is `runbook approve`: {argv:?}"
    );
}

/// Whether `window` is open at local time `at` (`2026-12-05T02:00`) in `tz`.
fn open_at(plan: &crate::plan::Plan, at: &str, tz: &str) -> bool {
    let t = at
        .parse::<jiff::civil::DateTime>()
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::get(tz).unwrap())
        .unwrap()
        .timestamp();
    let window = crate::run::RunWindow::new(plan, crate::window::Bounds::default());
    window.admit(t).is_ok()
}

/// The next Saturday at `hh:mm` in `tz` from a fixed date, and the minute
/// after, for a firing that may be a little late.
fn fires_inside(plan: &crate::plan::Plan, hh_mm: &str, tz: &str) -> bool {
    // 2026-12-05 and 2027-01-09 are Saturdays (the second after the
    // year-end freeze).
    ["2026-12-05", "2027-01-09"].iter().all(|d| {
        open_at(plan, &format!("{d}T{hh_mm}"), tz) && open_at(plan, &format!("{d}T{hh_mm}:59"), tz)
    })
}

#[test]
fn the_systemd_service_runs_a_valid_invocation_at_an_opening_of_its_window() {
    let service = read("deploy/systemd/runbook-weekly-di-restart.service");
    let timer = read("deploy/systemd/runbook-weekly-di-restart.timer");
    assert_eq!(unit_values(&service, "WorkingDirectory"), [INSTALL_DIR]);
    assert_eq!(unit_values(&service, "Type"), ["oneshot"]);
    let exec = unit_values(&service, "ExecStart");
    assert_eq!(exec.len(), 1, "one ExecStart: {exec:?}");
    let words: Vec<String> = exec[0].split_whitespace().map(str::to_owned).collect();
    assert!(
        words[0].ends_with("/runbook"),
        "ExecStart runs runbook: {}",
        words[0]
    );
    let plan = check_invocation("the systemd service", &words[1..], None, &service);
    // The timer starts this service at the opening of the window.
    assert_eq!(
        unit_values(&timer, "Unit"),
        ["runbook-weekly-di-restart.service"]
    );
    let calendar = unit_values(&timer, "OnCalendar");
    let [spec] = calendar.as_slice() else {
        panic!("one OnCalendar: {calendar:?}");
    };
    // `Sat *-*-* 02:00:00 Asia/Shanghai`: the weekday, any date, the time, the zone.
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let [day, "*-*-*", time, tz] = parts.as_slice() else {
        panic!("OnCalendar in the form `DAY *-*-* HH:MM:SS ZONE`: {spec}");
    };
    assert_eq!(*day, "Sat", "{spec}");
    let hh_mm = time.strip_suffix(":00").unwrap_or(time);
    assert!(
        fires_inside(&plan, hh_mm, tz),
        "the timer fires at {spec}, outside the window {}",
        plan.window
            .as_ref()
            .map(crate::window::Window::describe)
            .unwrap_or_default()
    );
    // A late start (RandomizedDelaySec) stays well inside the window.
    for delay in unit_values(&timer, "RandomizedDelaySec") {
        assert!(delay.parse::<u64>().is_ok_and(|s| s <= 60), "{delay}");
    }
}

#[test]
fn the_kubernetes_cronjob_runs_a_valid_invocation_at_an_opening_of_its_window() {
    let text = read("deploy/kubernetes/cronjob.yaml");
    let job: Value = serde_saphyr::from_str(&text).expect("the CronJob is YAML");
    assert_eq!(job["kind"], "CronJob");
    let spec = &job["spec"];
    assert_eq!(spec["concurrencyPolicy"], "Forbid", "no overlapping runs");
    let pod = &spec["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(spec["jobTemplate"]["spec"]["backoffLimit"], 0);
    let containers = pod["containers"].as_array().unwrap();
    let runbook: Vec<&Value> = containers
        .iter()
        .filter(|c| c["command"][0] == "runbook")
        .collect();
    assert_eq!(runbook.len(), 1, "one runbook container");
    let c = runbook[0];
    assert_eq!(c["workingDir"], INSTALL_DIR);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut args = strings(&c["command"])[1..].to_vec();
    args.extend(strings(&c["args"]));
    let env = |name: &str| -> Option<String> {
        c["env"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str().map(str::to_owned))
    };
    let journal = env("RUNBOOK_JOURNAL");
    assert!(
        journal
            .as_deref()
            .is_some_and(|j| j.starts_with("postgres://")),
        "the CronJob journals to the shared PostgreSQL: {journal:?}"
    );
    let userinfo = journal
        .as_deref()
        .and_then(|j| j.strip_prefix("postgres://"))
        .and_then(|j| j.split_once('@'))
        .map(|(user, _)| user);
    assert!(
        userinfo.is_some_and(|u| !u.contains(':')),
        "a user and no password in the URL (the password comes from a Secret): {journal:?}"
    );
    let plan = check_invocation("the CronJob", &args, journal.as_deref(), &text);
    // RRSA: the variables Alibaba's credentials chain reads, and the token
    // file on a mounted projected token.
    for name in [
        "ALIBABA_CLOUD_ROLE_ARN",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
    ] {
        assert!(env(name).is_some(), "{name} is set");
    }
    let token = env("ALIBABA_CLOUD_OIDC_TOKEN_FILE").unwrap();
    assert!(
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"]
                .as_str()
                .is_some_and(|p| token.starts_with(&format!("{p}/")))),
        "the OIDC token file {token} is on a mounted volume"
    );
    // `0 2 * * 6` in Asia/Shanghai: Saturday 02:00, the opening.
    let schedule: Vec<&str> = spec["schedule"].as_str().unwrap().split(' ').collect();
    let [minute, hour, "*", "*", "6"] = schedule.as_slice() else {
        panic!("a weekly Saturday schedule `M H * * 6`: {schedule:?}");
    };
    let tz = spec["timeZone"].as_str().expect("timeZone is set");
    let hh_mm = format!("{:0>2}:{:0>2}", hour, minute);
    assert!(
        fires_inside(&plan, &hh_mm, tz),
        "the CronJob fires at {hh_mm} {tz} on Saturdays, outside the window"
    );
}
