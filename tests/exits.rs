//! Honest state and clean exits, through the CLI against the simulator:
//! SIGTERM behaves like Ctrl-C, flags are checked before a run is
//! journaled, run ids are looked up strictly, and every refusal exits 6.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::run::{FAN_OUT, FILE_IDS, ID, Rig, SECRET, count, gated, on_terminal, text, wait_until};

/// Sends `signal` (`TERM`, `INT`) to a child process.
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
}

/// The runs in the journal, as `runs --json` lists them.
fn runs(rig: &Rig) -> Vec<Value> {
    let out = rig.run(&["runs", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until the simulator has seen `n` calls of `action`.
fn wait_for_calls(rig: &Rig, child: &mut Child, action: &str, n: usize) {
    wait_until(child, &format!("{n} calls of {action}"), || {
        rig.calls()
            .iter()
            .filter(|c| c.action.as_deref() == Some(action))
            .count()
            >= n
    });
}

#[test]
fn sigterm_cancels_like_ctrl_c_journals_calls_in_flight_and_the_run_resumes() {
    let rig = Rig::new("slow@StopDISyncInstance=1:300ms", Duration::from_millis(20));
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let mut child = rig
        .cmd(&["run", &pb, "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_calls(&rig, &mut child, "StopDISyncInstance", 1);
    signal(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SIGTERM: cancelling"), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stopped: cancelled (Ctrl-C or SIGTERM)"),
        "{}",
        text(&out)
    );
    assert_eq!(
        count(&rig.calls(), "TerminateDISyncInstance"),
        0,
        "nothing new started after SIGTERM"
    );
    // Every stop that reached the service has its answer journaled: the
    // calls in flight were let finish.
    let run_id = rig.last_run_id();
    let shown = rig.show(&run_id);
    assert_eq!(shown["status"], "cancelled");
    let stops: Vec<&Value> = shown["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "StopDISyncInstance")
        .collect();
    assert!(
        stops.iter().all(|a| a["outcome"] == "ok"),
        "a stop in flight was not journaled: {stops:?}"
    );
    assert_eq!(
        stops.len(),
        count(&rig.calls(), "StopDISyncInstance"),
        "each stop the service saw is journaled once"
    );
    let out = rig.run(&["resume", &run_id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    rig.assert_all_undeployed();
    for action in ["StopDISyncInstance", "TerminateDISyncInstance"] {
        let by = rig.processed(action, "FileId");
        assert_eq!(by.len(), FILE_IDS.len(), "{action}: {by:?}");
        assert!(by.values().all(|&n| n == 1), "{action} repeated: {by:?}");
    }
}

#[test]
fn a_second_signal_quits_at_once_and_the_run_stays_resumable() {
    for (first, second) in [("TERM", "TERM"), ("INT", "TERM"), ("TERM", "INT")] {
        // A stop takes 4 s to answer: the first signal waits for it, the
        // second does not.
        let rig = Rig::new("slow@StopDISyncInstance=1:4s", Duration::ZERO);
        let pb = rig.playbook("fan.yaml", FAN_OUT);
        let mut child = rig
            .cmd(&["run", &pb, "--yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_calls(&rig, &mut child, "StopDISyncInstance", 1);
        signal(&child, first);
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        while !seen.contains("cancelling") {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "no cancelling line: {seen}"
            );
            seen.push_str(&line);
        }
        signal(&child, second);
        stderr.read_to_string(&mut seen).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(5), "{first} then {second}: {seen}");
        assert!(seen.contains("quitting at once"), "{seen}");
        // The run was left mid-call: resume settles the stops in flight
        // through their status call instead of sending them again.
        let run_id = rig.last_run_id();
        let out = rig.run(&["resume", &run_id]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        rig.assert_all_undeployed();
        let terms = rig.processed("TerminateDISyncInstance", "FileId");
        assert!(terms.values().all(|&n| n == 1), "{terms:?}");
        let stops = rig.processed("StopDISyncInstance", "FileId");
        assert!(stops.values().all(|&n| n == 1), "{stops:?}");
    }
}

/// Bad values of every `run`/`resume` flag that takes one: (flag, value,
/// what the message must say).
const BAD_FLAGS: &[(&str, &str, &str)] = &[
    (
        "--journal",
        "mysql://me:hunter2@db/x",
        "a journal URL is `sqlite:PATH` or `postgres://USER@HOST:PORT/DB`",
    ),
    (
        "--journal",
        "postgres://me:hunter2@db/x?sslmode=sometimes",
        "sslmode is `sometimes`",
    ),
    (
        "--journal",
        "sqlite:",
        "`sqlite:` needs the database file's path",
    ),
    ("--lease", "0s", "--lease: `0s` must be longer than zero"),
    (
        "--approval-timeout",
        "0s",
        "--approval-timeout: `0s` must be longer than zero",
    ),
    ("--approval-timeout", "an hour", "--approval-timeout"),
    ("--lease", "soon", "--lease"),
    (
        "--journal-patience",
        "0s",
        "--journal-patience: `0s` must be longer than zero",
    ),
    (
        "--journal-patience",
        "30s",
        "--journal-patience `30s` is not shorter than --lease (30s)",
    ),
    ("--journal-patience", "whenever", "--journal-patience"),
    (
        "--role-arn",
        "arn:aws:iam::1:role/x",
        "is not a RAM role ARN such as acs:ram::123456789012:role/maintenance",
    ),
    ("--run-timeout", "30", "--run-timeout"),
    (
        "--run-timeout",
        "0s",
        "--run-timeout: `0s` must be longer than zero",
    ),
    ("--run-timeout", "-5m", "--run-timeout"),
    (
        "--request-timeout",
        "0s",
        "--request-timeout: `0s` must be longer than zero",
    ),
    ("--request-timeout", "soon", "--request-timeout"),
    (
        "--connect-timeout",
        "0ms",
        "--connect-timeout: `0ms` must be longer than zero",
    ),
    ("--connect-timeout", "5", "--connect-timeout"),
    ("--qps", "unknown=5", "calls no `unknown` API"),
    ("--qps", "dataworks", "--qps: invalid rate limit"),
    ("--qps", "dataworks=-1", "--qps: invalid rate limit"),
    ("--qps", "=5", "--qps: invalid rate limit"),
    ("--approve", "nosuchstep", "--approve `nosuchstep`"),
    (
        "--notify",
        "pager:https://hooks.example.com/x",
        "unknown kind `pager`",
    ),
    (
        "--notify",
        "webhook:ftp://hooks.example.com/x",
        "is not an http(s) URL",
    ),
    (
        "--notify",
        "https://hooks.example.com/x",
        "unknown kind `https`",
    ),
    ("--approve", "", "--approve ``"),
    ("--concurrency", "0", "--concurrency"),
    ("--concurrency", "many", "--concurrency"),
    ("--output", "yaml", "--output"),
    (
        "--signature",
        "v2",
        "unknown signature `v2`: expected v1 (HMAC-SHA1) or v3 (ACS3-HMAC-SHA256)",
    ),
    ("--jitter-seed", "-1", "--jitter-seed"),
    ("--sim-seed", "x", "--sim-seed"),
    ("--sim-faults", "bogus=1", "--sim-faults"),
    ("--time-scale", "0.5", "at least 1"),
    (
        "--not-before",
        "tomorrow",
        "--not-before: `tomorrow` is not an RFC 3339 time",
    ),
    (
        "--not-before",
        "2026-12-05T02:00:00",
        "--not-before: `2026-12-05T02:00:00` is not an RFC 3339 time",
    ),
    (
        "--not-after",
        "2026-13-01T00:00:00Z",
        "--not-after: `2026-13-01T00:00:00Z`",
    ),
    ("--time-scale", "fast", "at least 1"),
    (
        "--sim-log",
        "/nonexistent/calls.jsonl",
        "--sim-log `/nonexistent/calls.jsonl`",
    ),
];

/// Flags whose bad values are tested elsewhere: `--endpoint` (strict URL
/// parsing) and `--expect-digest` (both in `integrity`), `--profile` (a
/// credentials error, exit 4).
const TESTED_ELSEWHERE: &[&str] = &["--endpoint", "--expect-digest", "--profile", "--state-dir"];

/// The flags of `runbook SUBCOMMAND` that take a value, from its help.
fn value_flags(sub: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args([sub, "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let mut flags: Vec<String> = help
        .lines()
        .map(str::trim_start)
        .filter_map(|l| {
            let l = l.strip_prefix("-p, ").unwrap_or(l);
            let (flag, rest) = l.split_once(' ')?;
            (flag.starts_with("--") && rest.trim_start().starts_with('<')).then(|| flag.to_owned())
        })
        .filter(|f| !["--param", "--params"].contains(&f.as_str()))
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn every_value_flag_of_run_and_resume_has_bad_values_tested() {
    for sub in ["run", "resume"] {
        let flags = value_flags(sub);
        assert!(flags.len() >= 8, "{sub} --help lists its flags: {flags:?}");
        for flag in flags {
            assert!(
                TESTED_ELSEWHERE.contains(&flag.as_str())
                    || BAD_FLAGS.iter().any(|(f, ..)| *f == flag),
                "`runbook {sub} {flag}` has no bad value in BAD_FLAGS: add one (and check it before the run is journaled)"
            );
        }
    }
}

/// `runbook ARGS` against the rig's simulator, with no endpoint flags for
/// the `--sim*` flags (they start their own).
fn with_bad_flag(rig: &Rig, head: &[&str], flag: &str, value: &str) -> Output {
    let flag_value = format!("{flag}={value}");
    let mut args: Vec<&str> = head.to_vec();
    if flag.starts_with("--sim") || flag == "--time-scale" {
        args.extend(["--sim", &flag_value]);
        return rig.bare(&args, (ID, SECRET));
    }
    args.push(&flag_value);
    rig.run(&args)
}

/// Exit 2, and stderr says `says`.
fn assert_usage_error(out: &Output, what: &str, says: &str) {
    assert_eq!(out.status.code(), Some(2), "{what}: {}", text(out));
    assert!(
        !text(out).contains("hunter2"),
        "{what}: a journal password was shown: {}",
        text(out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(says), "{what}: {}", text(out));
}

#[test]
fn bad_flag_values_are_usage_errors_before_anything_is_journaled_or_sent() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("gate.yaml", &gated(41));
    for (flag, value, says) in BAD_FLAGS {
        let out = with_bad_flag(&rig, &["run", &pb, "--yes"], flag, value);
        assert_usage_error(&out, &format!("run {flag} {value:?}"), says);
        assert!(
            !rig.state().exists() || runs(&rig).is_empty(),
            "run {flag} {value:?} journaled a run"
        );
        assert!(rig.calls().is_empty(), "run {flag} {value:?} sent a call");
    }
    // A run that stops at its approve step (answered `no` on a terminal:
    // without one it would be refused up front), for resume to take up.
    let out = on_terminal(&rig, &["run", &pb], "yes\nno");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let before = runs(&rig);
    let run_id = before[0]["id"].as_str().unwrap().to_owned();
    let calls = rig.calls().len();
    for (flag, value, says) in BAD_FLAGS {
        let out = with_bad_flag(&rig, &["resume", &run_id, "--yes"], flag, value);
        assert_usage_error(&out, &format!("resume {flag} {value:?}"), says);
        assert_eq!(
            runs(&rig),
            before,
            "resume {flag} {value:?} changed the journal"
        );
        assert_eq!(
            rig.calls().len(),
            calls,
            "resume {flag} {value:?} sent a call"
        );
    }
    // A state dir that is a file.
    let file = rig.dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    for args in [
        vec!["run", pb.as_str(), "--yes"],
        vec!["resume", run_id.as_str()],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(&args)
            .arg("--state-dir")
            .arg(&file)
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("is not a directory"),
            "{}",
            text(&out)
        );
    }
    // A good --approve and --qps still run.
    let out = rig.run(&[
        "resume",
        &run_id,
        "--approve",
        "go-no-go",
        "--qps",
        "dataworks=50",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn run_ids_are_looked_up_strictly_empty_and_ambiguous_ones_are_usage_errors() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("gate.yaml", &gated(42));
    let out = on_terminal(&rig, &["run", &pb], "yes\nno");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let only = rig.last_run_id();
    for sub in ["resume", "show"] {
        // With one run in the journal, "" and " " used to name it.
        for empty in ["", " "] {
            let out = rig.run(&[sub, empty]);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{sub} {empty:?}: {}",
                text(&out)
            );
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("the run id is empty"),
                "{}",
                text(&out)
            );
        }
        // LIKE wildcards are characters, not patterns.
        for pattern in ["%", "_", "2%"] {
            let out = rig.run(&[sub, pattern]);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{sub} {pattern}: {}",
                text(&out)
            );
            assert!(
                String::from_utf8_lossy(&out.stderr).contains(&format!("no run `{pattern}`")),
                "{}",
                text(&out)
            );
        }
    }
    let other = rig.playbook("gate2.yaml", &gated(43));
    let out = on_terminal(&rig, &["run", &other], "yes\nno");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let second = rig.last_run_id();
    // Both ids start with the year: the prefix is ambiguous, and says so.
    let calls = rig.calls().len();
    for sub in ["resume", "show"] {
        let out = rig.run(&[sub, &only[..2]]);
        assert_eq!(out.status.code(), Some(2), "{sub}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("`{}` is the start of 2 run ids", &only[..2])),
            "{stderr}"
        );
        assert!(
            stderr.contains(&only) && stderr.contains(&second),
            "{stderr}"
        );
    }
    assert_eq!(rig.calls().len(), calls, "nothing was sent");
    // A unique prefix still names its run.
    let unique = &second[..second.len() - 1];
    assert_eq!(rig.show(unique)["id"], second.as_str());
}

#[test]
fn every_refusal_exits_6_and_sends_nothing() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("gate.yaml", &gated(44));
    // A real run and a rehearsal, both stopped at their approve step
    // (answered `no` on a terminal).
    let out = on_terminal(&rig, &["run", &pb], "yes\nno");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let real = rig.last_run_id();
    let out = on_terminal(&rig, &["run", &pb, "--sim"], "yes\nno");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let rehearsal = rig.last_run_id();
    // A saved plan whose playbook then changed.
    let stale = rig.playbook("stale.yaml", &gated(45));
    let plan = rig.dir.path().join("plan.json");
    let plan = plan.to_str().unwrap();
    let out = rig.run(&["plan", &stale, "-o", plan]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(&stale, gated(46)).unwrap();
    // The lock of a plan, held as another run would hold it.
    let held = rig.playbook("held.yaml", &gated(47));
    let held_plan = rig.dir.path().join("held.json");
    let out = rig.run(&["plan", &held, "-o", held_plan.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let digest: Value = serde_json::from_slice(&std::fs::read(&held_plan).unwrap()).unwrap();
    let locks = rig.state().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lock =
        std::fs::File::create(locks.join(format!("{}.lock", digest["digest"].as_str().unwrap())))
            .unwrap();
    lock.try_lock().unwrap();

    // The same simulator under another name: another target.
    let dataworks = format!(
        "dataworks={}",
        rig.sim().base_url().replace("127.0.0.1", "localhost")
    );
    let calls = rig.calls().len();
    let cases: Vec<(&str, Output, &str)> = vec![
        (
            "approval missing (no terminal, no --yes)",
            rig.run(&["run", &pb]),
            "needs an approval",
        ),
        (
            "another run holds the lock",
            rig.run(&["run", &held, "--yes"]),
            "another run of this playbook with these params is in progress",
        ),
        (
            "a saved plan whose playbook changed",
            rig.run(&["run", plan, "--yes"]),
            "changed since this plan was written",
        ),
        (
            "a real run resumed against the simulator",
            rig.bare(&["resume", &real, "--sim", "--yes"], (ID, SECRET)),
            "is a real run",
        ),
        (
            "a rehearsal resumed with no endpoint (against the cloud)",
            rig.bare(&["resume", &rehearsal, "--yes"], (ID, SECRET)),
            "ran against the in-process simulator",
        ),
        (
            "a rehearsal resumed against a cloud endpoint",
            rig.bare(
                &[
                    "resume",
                    &rehearsal,
                    "--yes",
                    "--endpoint",
                    "dataworks=https://dataworks.cn-shanghai.aliyuncs.com",
                ],
                (ID, SECRET),
            ),
            "it may go on only against a simulator",
        ),
        (
            "a resume against another target without a new approval",
            rig.bare(&["resume", &real, "--endpoint", &dataworks], (ID, SECRET)),
            "needs an approval",
        ),
    ];
    for (what, out, says) in &cases {
        assert_eq!(out.status.code(), Some(6), "{what}: {}", text(out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{what}: {}",
            text(out)
        );
    }
    assert_eq!(rig.calls().len(), calls, "a refusal sent a call");
    drop(lock);
}

/// The permission bits of `path`.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_state_directory_journal_and_locks_are_private_and_loose_ones_are_warned_about() {
    use std::os::unix::fs::PermissionsExt as _;
    // Stops take 1 s to answer, so the journal's WAL and shared-memory
    // files can be looked at while the run holds them open.
    let mut rig = Rig::new("slow@StopDISyncInstance=1:1s", Duration::ZERO);
    // About the embedded journal's files, on either backend's pass.
    rig.journal = crate::journal_backend::TestJournal::Sqlite;
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let mut child = rig
        .cmd(&["run", &pb, "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_calls(&rig, &mut child, "StopDISyncInstance", 1);
    let state = rig.state();
    let mut files = vec![state.join("journal.db")];
    for companion in ["journal.db-wal", "journal.db-shm"] {
        let path = state.join(companion);
        assert!(path.exists(), "{} exists during the run", path.display());
        files.push(path);
    }
    let locks: Vec<_> = std::fs::read_dir(state.join("locks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(locks.len(), 1, "{locks:?}");
    files.extend(locks);
    for dir in [state.clone(), state.join("locks")] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("readable or writable by others"),
        "{}",
        text(&out)
    );
    // Loosened by hand: left as they are, with a warning naming each.
    let loose = [state.clone(), state.join("journal.db"), files[3].clone()];
    for path in &loose {
        let bits = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(bits)).unwrap();
    }
    let out = rig.run(&["runs"]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for path in &loose[..2] {
        assert!(
            stderr.contains(&format!(
                "{} is readable or writable by others",
                path.display()
            )),
            "{}: {stderr}",
            path.display()
        );
    }
    // (The nodes are gone by now, so this run fails; its warnings stand.)
    let out = rig.run(&["run", &pb, "--yes"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for path in &loose {
        assert!(
            stderr.contains(&format!(
                "{} is readable or writable by others",
                path.display()
            )),
            "{}: {stderr}",
            path.display()
        );
    }
    assert_eq!(mode(&state), 0o755, "existing permissions are not changed");
}

/// Terminates `n` running nodes (FileIds 100..100+n), eight at a time.
fn many_terminates(n: usize) -> String {
    let ids: Vec<String> = (0..n).map(|i| (100 + i).to_string()).collect();
    format!(
        r#"
name: many-terminates
params:
  file_ids: {{ type: array, items: integer, default: [{}] }}
defaults: {{ region: cn-shanghai }}
concurrency: 8
steps:
  - id: terminate
    for_each: "{{{{params.file_ids}}}}"
    call: dataworks.TerminateDISyncInstance
    with: {{ ProjectId: 1, FileId: "{{{{item}}}}", TaskType: DI_REALTIME }}
"#,
        ids.join(", ")
    )
}

/// The number before `what` in `text` (`52 mutating calls`).
fn number_before(text: &str, what: &str) -> usize {
    let at = text
        .find(what)
        .unwrap_or_else(|| panic!("`{what}` in {text}"));
    text[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number before `{what}` in {text}"))
}

#[test]
fn a_journal_that_fails_mid_run_is_reported_with_what_was_sent_and_what_is_journaled() {
    const NODES: usize = 200;
    let mut rig = Rig::new("", Duration::ZERO);
    // The failure is the embedded journal's file hitting a size limit (a
    // PostgreSQL journal that goes away is tested in `journal`).
    rig.journal = crate::journal_backend::TestJournal::Sqlite;
    let pb = rig.playbook("many.yaml", &many_terminates(NODES));
    // A real write failure: the files runbook writes may not grow past
    // 800 KiB (RLIMIT_FSIZE; SIGXFSZ ignored, so the write fails with EFBIG
    // and SQLite reports an I/O error), which the journal reaches mid-run.
    let cmd = rig.cmd(&["run", &pb, "--yes", "--qps", "dataworks=0"]);
    let runbook = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let out = Command::new("bash")
        .args(["-c", "ulimit -f 800; trap '' XFSZ; exec \"$0\" \"$@\""])
        .arg(runbook)
        .args(args)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("nothing was sent"), "{stderr}");
    assert!(stderr.contains("the journal failed during run"), "{stderr}");
    // What it says was sent is what reached the service.
    let sent = number_before(&stderr, "mutating calls (");
    let reached = count(&rig.calls(), "TerminateDISyncInstance");
    assert!(sent > 0 && sent < NODES, "failed mid-run: {sent} sent");
    assert_eq!(sent, reached, "{stderr}");
    // What it says is journaled is what the journal holds.
    let journaled = number_before(&stderr, "are journaled");
    let unjournaled = if journaled == sent {
        0
    } else {
        number_before(&stderr, "are not:")
    };
    assert_eq!(journaled + unjournaled, sent, "{stderr}");
    let run_id = rig.last_run_id();
    let shown = rig.show(&run_id);
    let attempts = shown["attempts"].as_array().unwrap();
    let answered = attempts
        .iter()
        .filter(|a| a["outcome"] != "pending")
        .count();
    assert_eq!(answered, journaled, "{stderr}");
    assert_eq!(attempts.len() - answered, unjournaled, "{stderr}");
    // Each call without a journaled answer is listed by step and item.
    let listed = stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("terminate["))
        .count();
    assert_eq!(listed, unjournaled, "{stderr}");
    // Once the journal can be written, resume finishes without sending an
    // irreversible call twice.
    let out = rig.run(&["resume", &run_id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let terms = rig.processed("TerminateDISyncInstance", "FileId");
    assert_eq!(terms.len(), NODES);
    assert!(terms.values().all(|&n| n == 1), "{terms:?}");
}
