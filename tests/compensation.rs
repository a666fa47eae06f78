//! Compensation undoes exactly what a run changed: the shipped maintenance
//! example (`playbooks/di-realtime-maintenance-stop.yaml`) run through the
//! CLI against the simulator, with one node undeployed by someone else while
//! the run waits for its go-ahead (so its stop fails), one node already
//! paused before the run, and a kill during the rollback. Every assertion is
//! on the simulator's call log and final states.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use runbook::sim::{CallRecord, DiNodeFixture, Outcome, ResourceKind};

use crate::run::{Rig, on_terminal, repo, text, wait_until};

const PROJECT: i64 = 10000;
/// Stopped by the run, so restarted by the rollback.
const RUNNING: [&str; 2] = ["200101", "200103"];
/// Already `PAUSE` before the run: its stop is a no-op, and it stays paused.
const PAUSED: &str = "200102";
/// Undeployed while the run waits for the go-ahead: its stop fails.
const UNDEPLOYED: &str = "200104";

/// A simulator holding the four nodes, each stop taking `stop` to go from
/// `KILLING` to `PAUSE`.
fn rig(stop: Duration) -> Rig {
    Rig::with("", stop, |c| {
        c.auto_create = false;
        for (id, status) in [
            (RUNNING[0], "RUN"),
            (PAUSED, "PAUSE"),
            (RUNNING[1], "RUN"),
            (UNDEPLOYED, "RUN"),
        ] {
            c.fixtures.di_nodes.push(DiNodeFixture {
                project_id: PROJECT,
                file_id: id.parse().unwrap(),
                name: None,
                status: status.to_owned(),
            });
        }
    })
}

/// Runs the example until its go-ahead, which is refused on a terminal (the
/// nodes have been checked, nothing is stopped), then undeploys one node, as
/// someone else might during the wait. Returns the run id.
fn checked_then_one_node_undeployed(rig: &Rig) -> String {
    let pb = repo("playbooks/di-realtime-maintenance-stop.yaml");
    let params = rig.playbook(
        "params.yaml",
        &format!(
            "region: cn-shanghai\nproject_id: {PROJECT}\nfile_ids: [{}, {PAUSED}, {}, {UNDEPLOYED}]\nchange_ticket: CHG-1\n",
            RUNNING[0], RUNNING[1]
        ),
    );
    let out = on_terminal(rig, &["run", &pb, "--params", &params, "--yes"], "no");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        rig.calls()
            .iter()
            .all(|c| c.action.as_deref() == Some("GetDISyncInstanceInfo")),
        "only the checks ran before the go-ahead"
    );
    rig.sim()
        .set_status(ResourceKind::DiNode, UNDEPLOYED, "NORUN")
        .unwrap();
    rig.last_run_id()
}

fn file_ids(
    calls: &[CallRecord],
    action: &str,
    keep: impl Fn(&CallRecord) -> bool,
) -> BTreeSet<String> {
    calls
        .iter()
        .filter(|c| c.action.as_deref() == Some(action) && keep(c))
        .filter_map(|c| c.param("FileId").map(str::to_owned))
        .collect()
}

/// What every rollback must have done, whatever happened in between: only
/// the nodes this run stopped are started, none while it was still being
/// stopped, and every node ends where it should.
fn assert_rolled_back_exactly(rig: &Rig) {
    let calls = rig.calls();
    let stopped = file_ids(&calls, "StopDISyncInstance", |c| c.changed);
    assert_eq!(
        stopped,
        RUNNING.iter().map(|s| (*s).to_owned()).collect(),
        "the run stopped the running nodes only"
    );
    let started = file_ids(&calls, "StartDISyncInstance", CallRecord::processed);
    assert_eq!(
        started, stopped,
        "only the nodes this run stopped are started again: not the one that failed to stop, not the one already paused"
    );
    let refused: Vec<_> = calls
        .iter()
        .filter(|c| c.action.as_deref() == Some("StartDISyncInstance") && c.outcome != Outcome::Ok)
        .map(|c| (c.param("FileId").map(str::to_owned), c.message.clone()))
        .collect();
    assert!(
        refused.is_empty(),
        "a start was sent while the node was still being stopped: {refused:?}"
    );
    for id in RUNNING {
        let status = rig.status(ResourceKind::DiNode, id);
        assert!(
            matches!(status.as_deref(), Some("WAIT" | "RUN")),
            "node {id} is started again: {status:?}"
        );
    }
    assert_eq!(
        rig.status(ResourceKind::DiNode, PAUSED).as_deref(),
        Some("PAUSE"),
        "a node paused before the run is not restarted"
    );
    assert_eq!(
        rig.status(ResourceKind::DiNode, UNDEPLOYED).as_deref(),
        Some("NORUN")
    );
}

fn step<'v>(shown: &'v serde_json::Value, id: &str) -> &'v serde_json::Value {
    shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {shown}"))
}

#[test]
fn a_failed_stop_restarts_only_the_nodes_it_stopped_once_they_are_paused() {
    // Stops take long enough that the rollback finds the nodes still KILLING.
    let rig = rig(Duration::from_millis(600));
    let run_id = checked_then_one_node_undeployed(&rig);
    let out = rig.run(&["resume", &run_id, "--approve", "go-ahead"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_rolled_back_exactly(&rig);

    // The rollback waited: its first read of each node saw KILLING, and it
    // started the node only after a read showed PAUSE.
    let calls = rig.calls();
    for id in RUNNING {
        let stop = calls
            .iter()
            .position(|c| {
                c.action.as_deref() == Some("StopDISyncInstance") && c.param("FileId") == Some(id)
            })
            .unwrap();
        let start = calls
            .iter()
            .position(|c| {
                c.action.as_deref() == Some("StartDISyncInstance") && c.param("FileId") == Some(id)
            })
            .unwrap();
        let reads = calls[stop..start]
            .iter()
            .filter(|c| {
                c.action.as_deref() == Some("GetDISyncInstanceInfo")
                    && c.param("FileId") == Some(id)
            })
            .count();
        assert!(
            reads >= 2,
            "node {id}: the rollback read it {reads} times between stop and start"
        );
    }

    let shown = rig.show(&run_id);
    assert_eq!(shown["status"], "failed");
    let restart = step(&shown, "restart-nodes");
    assert_eq!(restart["status"], "succeeded", "{restart}");
    assert_eq!(restart["items"], 2, "{restart}");
}

#[test]
fn killed_during_the_rollback_then_resumed_restarts_the_same_nodes() {
    let rig = rig(Duration::from_millis(1500));
    let run_id = checked_then_one_node_undeployed(&rig);
    let mut child = rig
        .cmd(&[
            "resume",
            &run_id,
            "--approve",
            "go-ahead",
            "--output",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The rollback has begun once a node the run stopped is read again (the
    // example's own wait never runs: the stop step failed).
    let rollback_reads = |calls: &[CallRecord]| {
        RUNNING.iter().any(|id| {
            calls
                .iter()
                .skip_while(|c| {
                    !(c.action.as_deref() == Some("StopDISyncInstance")
                        && c.param("FileId") == Some(*id))
                })
                .any(|c| {
                    c.action.as_deref() == Some("GetDISyncInstanceInfo")
                        && c.param("FileId") == Some(*id)
                })
        })
    };
    wait_until(&mut child, "the rollback", || rollback_reads(&rig.calls()));
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        rig.calls()
            .iter()
            .all(|c| c.action.as_deref() != Some("StartDISyncInstance")),
        "killed before any start"
    );

    // The resumed run stops nothing again; its rollback takes the changed
    // set from the journal, including the stops of the killed process.
    let out = rig.run(&["resume", &run_id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_rolled_back_exactly(&rig);
    let stops = rig.processed("StopDISyncInstance", "FileId");
    for id in RUNNING {
        assert_eq!(
            stops.get(id),
            Some(&1),
            "node {id} is stopped once: {stops:?}"
        );
    }
    let starts = rig.processed("StartDISyncInstance", "FileId");
    assert!(
        starts.values().all(|&n| n == 1),
        "each node is started once: {starts:?}"
    );
    let shown = rig.show(&run_id);
    assert_eq!(step(&shown, "restart-nodes")["status"], "succeeded");
}
