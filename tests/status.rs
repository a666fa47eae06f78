//! What `runs` and `show` say about a run: its status (one enum, with
//! `interrupted` for a run whose process died), the journal's schema version,
//! and the in-process simulator's world kept with a rehearsal so that
//! `resume --sim` goes on in the same world.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::run::{FAN_OUT, Rig, count, text};

/// `runs --json`, parsed.
fn runs(rig: &Rig) -> Value {
    let out = rig.run(&["runs", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `runs` and `show` (text): the line or field that carries the status.
fn text_statuses(rig: &Rig, run_id: &str) -> (String, String) {
    let out = rig.run(&["runs"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with(run_id))
        .unwrap_or_else(|| panic!("{run_id} not listed: {table}"));
    let out = rig.run(&["show", run_id]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    let status = shown
        .lines()
        .find_map(|l| l.strip_prefix("status: "))
        .unwrap_or_else(|| panic!("no status line: {shown}"));
    (
        row.split_whitespace().nth(1).unwrap().to_owned(),
        status.split_whitespace().next().unwrap().to_owned(),
    )
}

#[test]
fn a_killed_run_shows_interrupted_while_a_live_one_shows_running() {
    let rig = Rig::new("", Duration::from_secs(3600));
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let mut child = rig
        .cmd(&["run", &pb, "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The nodes never reach PAUSE: the run waits until it is killed.
    let start = Instant::now();
    while count(&rig.calls(), "GetDISyncInstanceInfo") < 3 {
        assert!(start.elapsed() < Duration::from_secs(30), "no poll arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    let run_id = rig.last_run_id();
    assert_eq!(runs(&rig)[0]["status"], "running");
    assert_eq!(rig.show(&run_id)["status"], "running");
    assert_eq!(
        text_statuses(&rig, &run_id),
        ("running".to_owned(), "running".to_owned())
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run is still going"
    );

    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(runs(&rig)[0]["status"], "interrupted");
    assert_eq!(rig.show(&run_id)["status"], "interrupted");
    assert_eq!(
        text_statuses(&rig, &run_id),
        ("interrupted".to_owned(), "interrupted".to_owned())
    );
    // Only what is seen changes: the journal still says `running` (a
    // resume takes the run over, see `run::kill_and_resume`).
    let conn = rusqlite::Connection::open(rig.state().join("journal.db")).unwrap();
    let stored: String = conn
        .query_row("SELECT status FROM runs WHERE id = ?1", [&run_id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, "running");
}

#[test]
fn a_journal_from_a_newer_runbook_is_refused_with_exit_10_and_nothing_is_sent() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let out = rig.run(&["runs"]);
    assert!(out.status.success(), "{}", text(&out));
    let conn = rusqlite::Connection::open(rig.state().join("journal.db")).unwrap();
    let version: i64 = conn
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .unwrap();
    conn.execute("UPDATE schema_version SET version = ?1", [version + 1])
        .unwrap();
    for args in [
        vec!["runs"],
        vec!["show", "any"],
        vec!["run", &pb, "--yes"],
        vec!["resume", "any"],
    ] {
        let out = rig.run(&args);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(10), "{args:?}: {all}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "has schema version {}, newer than this runbook knows (up to {version})",
                version + 1
            )),
            "{all}"
        );
        assert!(
            stderr.contains("hint: a newer runbook wrote this journal"),
            "{all}"
        );
    }
    assert!(rig.calls().is_empty(), "nothing was sent");
}
