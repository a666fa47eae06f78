//! The shared journal on PostgreSQL: what only a server can show (another
//! "host" resuming a run, a password kept out of every output, an
//! unreachable server). "Hosts" are processes with their own state dir and
//! HOME. These tests always need PostgreSQL (see [`crate::journal_backend`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use runbook::sim::CallRecord;
use serde_json::Value;

use crate::journal_backend::TestDb;
use crate::run::{repo, text, wait_until};

/// A machine of its own: a state dir and a HOME, and a host name.
struct Host {
    name: &'static str,
    dir: PathBuf,
}

impl Host {
    fn new(root: &Path, name: &'static str) -> Host {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        Host { name, dir }
    }

    /// `runbook ARGS` on this host, its journal in RUNBOOK_JOURNAL.
    fn cmd(&self, journal: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
        cmd.args(args)
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .env("HOME", self.dir.join("home"))
            .env_remove("XDG_STATE_HOME")
            .env("RUNBOOK_HOST", self.name)
            .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        if journal.is_empty() {
            cmd.env_remove("RUNBOOK_JOURNAL");
        } else {
            cmd.env("RUNBOOK_JOURNAL", journal);
        }
        cmd
    }

    fn log(&self) -> PathBuf {
        self.dir.join("sim.jsonl")
    }
}

fn log_of(path: &Path) -> Vec<CallRecord> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn processed(calls: &[CallRecord], action: &str, key: &str) -> Vec<(String, usize)> {
    let mut by = std::collections::BTreeMap::<String, usize>::new();
    for c in calls
        .iter()
        .filter(|c| c.action.as_deref() == Some(action) && c.processed())
    {
        *by.entry(c.param(key).unwrap_or("").to_owned()).or_default() += 1;
    }
    by.into_iter().collect()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A rehearsal started on host A and killed there (SIGKILL) after its first
/// terminate is resumed on host B with nothing from A but the journal URL:
/// the journaled plan, options and simulated world are enough, and no
/// mutating call reaches the (saved, restored) world twice.
#[test]
fn a_run_killed_on_one_host_is_resumed_on_another_from_the_shared_journal() {
    let db = TestDb::new();
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (
        Host::new(root.path(), "host-a"),
        Host::new(root.path(), "host-b"),
    );
    let (pb, params) = (
        repo("playbooks/dts-di-cutover.yaml"),
        repo("playbooks/params/dts-di-cutover.yaml"),
    );
    let mut child = a
        .cmd(
            &db.url,
            &[
                "run",
                &pb,
                "--params",
                &params,
                "--yes",
                "--sim",
                "--time-scale",
                "2",
                "--sim-log",
                &a.log().to_string_lossy(),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the terminates are answered and their step's result
    // committed: the wait after it has begun polling.
    wait_until(&mut child, "the wait after the terminates", || {
        let calls = log_of(&a.log());
        let last_terminate = calls
            .iter()
            .rposition(|c| c.action.as_deref() == Some("TerminateDISyncInstance"));
        processed(&calls, "TerminateDISyncInstance", "FileId").len() == 3
            && last_terminate.is_some_and(|i| {
                calls[i..]
                    .iter()
                    .any(|c| c.action.as_deref() == Some("GetDISyncInstanceInfo"))
            })
    });
    child.kill().unwrap();
    let _ = child.wait();
    std::fs::remove_dir_all(a.dir.join("state")).unwrap();
    let runs = json(&b.cmd(&db.url, &["runs", "--json"]).output().unwrap());
    let run_id = runs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(runs[0]["name"], "dts-di-cutover");
    let out = b
        .cmd(
            &db.url,
            &[
                "resume",
                &run_id,
                "--yes",
                "--sim",
                "--sim-log",
                &b.log().to_string_lossy(),
            ],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = json(
        &b.cmd(&db.url, &["show", &run_id, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(shown["status"], "succeeded");
    // Host B went on from where A stopped, in the world A left: it changed
    // nothing A had already changed (no stop, no terminate), only waited.
    let on_b = log_of(&b.log());
    assert!(!on_b.is_empty(), "host B reached its simulator");
    for action in ["StopDtsJob", "TerminateDISyncInstance"] {
        assert!(
            !on_b.iter().any(|c| c.action.as_deref() == Some(action)),
            "host B sent {action} again"
        );
    }
    assert!(
        on_b.iter()
            .any(|c| c.action.as_deref() == Some("GetDISyncInstanceInfo")),
        "host B polled the nodes"
    );
    let on_a = log_of(&a.log());
    assert_eq!(
        processed(&on_a, "TerminateDISyncInstance", "FileId"),
        ["100101", "100102", "100103"]
            .map(|n| (n.to_owned(), 1))
            .to_vec(),
    );
}

/// A password in the journal URL (trust auth ignores it, so the run goes
/// through) appears in no output, log, error or journal row; an
/// unreachable server and a bad URL are clear errors without it.
#[test]
fn a_journal_password_appears_in_no_output_log_error_or_row() {
    const PASSWORD: &str = "pw-Zq81-never-shown";
    let db = TestDb::new();
    let root = tempfile::tempdir().unwrap();
    let host = Host::new(root.path(), "host-a");
    let with_password = db.url.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{PASSWORD}@"),
        1,
    );
    assert!(with_password.contains(PASSWORD));
    let (pb, params) = (
        repo("playbooks/dts-di-cutover.yaml"),
        repo("playbooks/params/dts-di-cutover.yaml"),
    );
    let mut outputs = Vec::new();
    let run = host
        .cmd(
            &with_password,
            &["run", &pb, "--params", &params, "--yes", "--sim"],
        )
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    outputs.push(run);
    let runs = host
        .cmd(&with_password, &["runs", "--json"])
        .output()
        .unwrap();
    let run_id = json(&runs)[0]["id"].as_str().unwrap().to_owned();
    outputs.push(runs);
    outputs.push(host.cmd(&with_password, &["runs"]).output().unwrap());
    outputs.push(
        host.cmd(&with_password, &["show", &run_id, "--attempts"])
            .output()
            .unwrap(),
    );
    // Given as a flag (discouraged, but it must not leak either).
    outputs.push(
        host.cmd(
            "",
            &["show", &run_id, "--json", "--journal", &with_password],
        )
        .output()
        .unwrap(),
    );
    // Unreachable: exit 10, the URL shown without its password.
    let unreachable =
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:1/nothing?connect_timeout=5");
    let out = host.cmd(&unreachable, &["runs"]).output().unwrap();
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("postgres://postgres@127.0.0.1:1/nothing"),
        "{}",
        text(&out)
    );
    outputs.push(out);
    // A bad URL: a usage error that does not repeat it.
    let bad = format!("postgres://postgres:{PASSWORD}@127.0.0.1/");
    let out = host.cmd("", &["runs", "--journal", &bad]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    outputs.push(out);
    for out in &outputs {
        assert!(!text(out).contains(PASSWORD), "{}", text(out));
    }
    // Not in the journal either: every row of every table.
    let mut client = db.client();
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() >= 8, "{tables:?}");
    for table in tables {
        let rows = client
            .query(&format!("SELECT row_to_json(t)::text FROM {table} t"), &[])
            .unwrap();
        for row in rows {
            let text: String = row.get(0);
            assert!(!text.contains(PASSWORD), "{table}: {text}");
        }
    }
    // --help says where a password belongs.
    let help = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("PGPASSWORD") && help.contains("~/.pgpass"),
        "{help}"
    );
}

/// Two processes opening a new journal at once create its schema once, and
/// `sqlite:PATH` names a database file anywhere.
#[test]
fn a_new_journal_is_created_once_by_concurrent_first_uses_and_sqlite_paths_work() {
    let db = TestDb::new();
    let root = tempfile::tempdir().unwrap();
    let host = Host::new(root.path(), "host-a");
    let children: Vec<_> = (0..4)
        .map(|_| {
            host.cmd(&db.url, &["runs", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(json(&out), serde_json::json!([]));
    }
    let versions: Vec<i64> = db
        .client()
        .query("SELECT version FROM schema_version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions.len(), 1, "{versions:?}");
    let file = root.path().join("elsewhere/j.db");
    let url = format!("sqlite:{}", file.display());
    let (pb, params) = (
        repo("playbooks/dts-di-cutover.yaml"),
        repo("playbooks/params/dts-di-cutover.yaml"),
    );
    let out = host
        .cmd(&url, &["run", &pb, "--params", &params, "--yes", "--sim"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(file.exists());
    assert!(!host.dir.join("state/journal.db").exists());
    let runs = json(&host.cmd(&url, &["runs", "--json"]).output().unwrap());
    assert_eq!(runs[0]["status"], "succeeded");
}
