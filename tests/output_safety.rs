//! Control characters and terminal escape sequences from params, playbooks
//! and API answers never reach a terminal raw: every output of every command
//! that can carry them is checked for raw C0 (but `\n` and `\t`), DEL and C1
//! characters.

use std::process::{Command, Output, Stdio};

use crate::run::{repo, text};

/// Every control character a command-line argument can carry (all but NUL),
/// and the usual sequences: clear screen, set title, one-byte CSI.
fn hostile() -> String {
    let mut s = String::from("j");
    for c in (1u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
        s.push(c);
    }
    s.push_str("\x1b[2J\x1b]0;owned\x07\u{9b}31m");
    s
}

/// The raw control characters in `bytes`, as code points.
fn raw_controls(bytes: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|&c| c.is_control() && c != '\n' && c != '\t')
        .map(u32::from)
        .collect()
}

fn assert_clean(what: &str, out: &Output) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let raw = raw_controls(bytes);
        assert!(
            raw.is_empty(),
            "{what}: raw control characters {raw:x?} on {stream}\n{}",
            text(out)
        );
    }
}

fn runbook(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_hostile_param_reaches_no_output_raw_in_plan_run_show_or_runs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let playbook = repo("playbooks/dts-di-cutover.yaml");
    let params = repo("playbooks/params/dts-di-cutover.yaml");
    let value = format!("dts_job_id={}", hostile());
    let base = ["--params", params.as_str(), "-p", value.as_str()];

    let mut seen_escaped = false;
    for format in ["text", "markdown", "json"] {
        let mut args = vec!["plan", playbook.as_str(), "--format", format];
        args.extend(base);
        let out = runbook(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_clean(&format!("plan --format {format}"), &out);
        seen_escaped |= String::from_utf8_lossy(&out.stdout).contains("\\u001b");
    }
    assert!(seen_escaped, "the plan shows the value, escaped");

    for output in ["text", "json"] {
        let mut args = vec![
            "run",
            playbook.as_str(),
            "--sim",
            "--yes",
            "--time-scale",
            "100",
            "--state-dir",
            state,
            "--output",
            output,
        ];
        args.extend(base);
        let out = runbook(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_clean(&format!("run --output {output}"), &out);
    }

    let runs = runbook(&["runs", "--state-dir", state, "--json"]);
    assert_clean("runs --json", &runs);
    let listed: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    assert_clean("runs", &runbook(&["runs", "--state-dir", state]));
    for flags in [&[][..], &["--attempts"], &["--json"]] {
        let mut args = vec!["show", id.as_str(), "--state-dir", state];
        args.extend(flags);
        let out = runbook(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_clean(&format!("show {flags:?}"), &out);
    }
}

#[test]
fn a_hostile_playbook_reaches_no_diagnostic_raw() {
    let dir = tempfile::tempdir().unwrap();
    // Control characters in a name, a description, an unknown key and a
    // step id: each ends up quoted in a diagnostic or the plan.
    for (i, bad) in [
        "\\e[2J",
        "\\e]0;owned\\a",
        "\\x9b31m",
        "\\x07\\x08\\r",
        "\\x7f\\x85",
    ]
    .iter()
    .enumerate()
    {
        let path = dir.path().join(format!("p{i}.yaml"));
        std::fs::write(
            &path,
            format!(
                "name: \"n{bad}\"\ndescription: \"d{bad}\"\nsteps:\n  - id: \"s{bad}\"\n    sleep: 1s\n    \"k{bad}\": 1\n"
            ),
        )
        .unwrap();
        let path = path.to_str().unwrap();
        for args in [
            vec!["validate", path],
            vec!["plan", path],
            vec!["graph", path],
        ] {
            let out = runbook(&args);
            assert_ne!(out.status.code(), Some(0), "{}", text(&out));
            assert_clean(&format!("{args:?} with {bad}"), &out);
        }
    }
}
