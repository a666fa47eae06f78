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

fn runs(rig: &Rig) -> Vec<Value> {
    if !rig.state().exists() {
        return Vec::new();
    }
    let out = rig.run(&["runs", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
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
    assert!(
        stderr.contains(&format!(
            "(daily 00:00-24:00 (Asia/Shanghai); blackout {today}, {tomorrow}): {today} is a blackout date; nothing was sent"
        )),
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
