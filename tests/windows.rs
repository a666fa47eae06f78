//! Change windows end to end: the binary refuses a run or a resume outside
//! the window before anything is sent or journaled (exit 6), says when the
//! window next opens (in its zone and in UTC), and checks the window flags.
//!
//! The windows here are computed around the real time of the test (a slot
//! on yesterday's weekday is closed now; today a blackout date), so they
//! hold whenever the test runs.

use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use serde_json::Value;

use crate::run::{Rig, gated, on_terminal, text};

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A playbook that stops one DI job, with `window` as given.
fn stop_job(window: &str) -> String {
    format!(
        r#"
name: windowed
{window}
defaults: {{ region: cn-shanghai }}
steps:
  - id: stop
    call: dataworks.StopDIJob
    with: {{ DIJobId: 11668 }}
"#
    )
}

/// The runs in the journal, as `runs --json` lists them.
fn runs(rig: &Rig) -> Vec<Value> {
    let out = rig.run(&["runs", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn utc_day(t: Timestamp) -> jiff::civil::Date {
    t.to_zoned(jiff::tz::TimeZone::UTC).date()
}

#[test]
fn outside_the_slots_a_run_is_refused_before_anything_is_sent_and_told_when_it_opens() {
    let rig = Rig::new("", Duration::ZERO);
    let now = Timestamp::now();
    let yesterday = utc_day(now).yesterday().unwrap();
    let day = DAYS[usize::try_from(yesterday.weekday().to_monday_zero_offset()).unwrap()];
    let pb = rig.playbook(
        "w.yaml",
        &stop_job(&format!(
            "window: {{ tz: UTC, slots: ['{day} 10:00-11:00'] }}"
        )),
    );
    let out = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // It opens next on the same weekday, six days after today.
    let opens = yesterday.checked_add(7.days()).unwrap();
    assert!(
        stderr.contains(&format!(
            "error: outside the change window ({day} 10:00-11:00 (UTC)): now is outside its slots; nothing was sent\n  hint: it next opens {day} {opens} 10:00 UTC ({opens}T10:00:00Z) until {day} {opens} 11:00 UTC ({opens}T11:00:00Z)"
        )),
        "{stderr}"
    );
    assert!(rig.calls().is_empty(), "a refused run sent a call");
    assert!(runs(&rig).is_empty(), "a refused run was journaled");
}

#[test]
fn on_a_blackout_date_a_run_is_refused_and_the_zone_is_the_windows() {
    let rig = Rig::new("", Duration::ZERO);
    // Today and tomorrow in Shanghai are blacked out (two days, so the
    // test holds across a midnight); the window opens the day after.
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let today = Timestamp::now().to_zoned(tz.clone()).date();
    let tomorrow = today.tomorrow().unwrap();
    let after = tomorrow.tomorrow().unwrap();
    let pb = rig.playbook(
        "w.yaml",
        &stop_job(&format!(
            "window:\n  tz: asia/shanghai\n  slots: [daily 00:00-24:00]\n  blackout: [{today}, {tomorrow}]"
        )),
    );
    let out = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let utc = after.at(0, 0, 0, 0).to_zoned(tz).unwrap().timestamp();
    // (`tomorrow` when the run starts just after midnight in Shanghai.)
    assert!(
        [today, tomorrow].iter().any(|day| stderr.contains(&format!(
            "(daily 00:00-24:00 (Asia/Shanghai); blackout {today}, {tomorrow}): {day} is a blackout date; nothing was sent"
        ))),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "it next opens {} {after} 00:00 CST ({utc})",
            DAYS[usize::try_from(after.weekday().to_monday_zero_offset()).unwrap()]
        )),
        "{stderr}"
    );
    assert!(rig.calls().is_empty() && runs(&rig).is_empty());
}

#[test]
fn the_flags_narrow_the_window_and_a_resume_keeps_to_it() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("gate.yaml", &gated(61));
    let now = Timestamp::now();
    let later = now.checked_add(1.hour()).unwrap();
    let past = now.checked_sub(1.hour()).unwrap();
    // --not-before ahead: refused until then.
    let out = rig.run(&["run", &pb, "--yes", "--not-before", &later.to_string()]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("outside the change window (--not-before {later}): it is before --not-before; nothing was sent")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("it next opens {later};")),
        "{stderr}"
    );
    // --not-after passed: it does not open again.
    let out = rig.run(&["run", &pb, "--yes", "--not-after", &past.to_string()]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        text(&out).contains("--not-after has passed"),
        "{}",
        text(&out)
    );
    assert!(rig.calls().is_empty() && runs(&rig).is_empty());

    // A run inside its flags stops at its approve step (answered no)...
    let out = on_terminal(
        &rig,
        &["run", &pb, "--not-after", &later.to_string()],
        "yes\nno",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run_id = rig.last_run_id();
    // ...and its resume is refused when the resume's own flags are closed.
    let calls = rig.calls().len();
    let out = rig.run(&[
        "resume",
        &run_id,
        "--yes",
        "--approve",
        "go-no-go",
        "--not-after",
        &past.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(text(&out).contains("nothing was sent"), "{}", text(&out));
    assert_eq!(rig.calls().len(), calls, "a refused resume sent a call");
    // Within them it goes on.
    let out = rig.run(&[
        "resume",
        &run_id,
        "--yes",
        "--approve",
        "go-no-go",
        "--not-before",
        &past.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        rig.processed("TerminateDISyncInstance", "FileId").get("61"),
        Some(&1)
    );
}

#[test]
fn window_flags_that_leave_nothing_are_usage_errors() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("gate.yaml", &gated(62));
    let out = rig.run(&[
        "run",
        &pb,
        "--yes",
        "--not-before",
        "2026-12-05T03:00:00+08:00",
        "--not-after",
        "2026-12-05T02:00:00+08:00",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--not-after (2026-12-04T18:00:00Z) is not after --not-before (2026-12-04T19:00:00Z): the window they leave is empty"),
        "{}",
        text(&out)
    );
    assert!(rig.calls().is_empty() && runs(&rig).is_empty());
}

/// Stops node 501, holds an hour, stops node 502.
const STOP_HOLD_STOP: &str = r#"
name: stop-hold-stop
defaults: { region: cn-shanghai }
steps:
  - id: stop-a
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 1, FileId: 501, TaskType: DI_REALTIME }
  - id: hold
    needs: [stop-a]
    sleep: 1h
  - id: stop-b
    needs: [hold]
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 1, FileId: 502, TaskType: DI_REALTIME }
"#;

/// In real time: `--not-after` a few seconds after the start closes the
/// window during the hold (an hour, compressed to a minute), so the second
/// stop is never sent; the run stops `window_closed` (exit 5) and a resume
/// in a new window sends only what is left.
#[test]
fn a_window_that_closes_mid_run_stops_it_resumably_and_sends_nothing_after() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("shs.yaml", STOP_HOLD_STOP);
    let log = rig.dir.path().join("calls.jsonl");
    let log = log.to_str().unwrap();
    let close = Timestamp::now().checked_add(15.seconds()).unwrap();
    let out = rig.run(&[
        "run",
        &pb,
        "--sim",
        "--time-scale",
        "60",
        "--sim-log",
        log,
        "--yes",
        "--output",
        "json",
        "--not-after",
        &close.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let closed = events
        .iter()
        .find(|e| e["event"] == "window_closed")
        .unwrap_or_else(|| panic!("no window_closed event: {events:#?}"));
    assert_eq!(closed["at"], close.to_string());
    assert_eq!(closed["window"], format!("--not-after {close}"));
    let finished = events.last().unwrap();
    assert_eq!(
        (&finished["event"], &finished["outcome"]),
        (&Value::from("run_finished"), &Value::from("window_closed"))
    );
    let stops = |log: &str| -> Vec<String> {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|c| c["action"] == "StopDISyncInstance")
            .map(|c| {
                c["params"]["FileId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(stops(log), ["501"], "only the first stop was sent");
    let run_id = rig.last_run_id();
    let listed = runs(&rig);
    assert_eq!(listed[0]["status"], "window_closed", "{listed:#?}");

    // Resumed (with a window that is open), it goes on where it stopped.
    let out = rig.run(&[
        "resume",
        &run_id,
        "--sim",
        "--time-scale",
        "3600",
        "--sim-log",
        log,
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stops(log), ["501", "502"], "each stop sent once");
}
