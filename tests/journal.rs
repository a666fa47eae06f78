//! The shared journal on PostgreSQL: what only a server can show (another
//! "host" resuming a run, a password kept out of every output, an
//! unreachable server). "Hosts" are processes with their own state dir and
//! HOME. These tests always need PostgreSQL (see [`crate::journal_backend`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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

    /// `runbook run` of the cutover rehearsal on this host, its calls in
    /// [`Host::log`], with `extra` flags; stdout dropped.
    fn cutover(&self, journal: &str, extra: &[&str]) -> Command {
        let (pb, params) = (
            repo("playbooks/dts-di-cutover.yaml"),
            repo("playbooks/params/dts-di-cutover.yaml"),
        );
        let log = self.log().to_string_lossy().into_owned();
        let mut args = vec![
            "run",
            &pb,
            "--params",
            &params,
            "--yes",
            "--sim",
            "--sim-log",
            &log,
        ];
        args.extend_from_slice(extra);
        let mut cmd = self.cmd(journal, &args);
        cmd.stdout(Stdio::null());
        cmd
    }

    /// Waits, while `child` lives, until this host's simulator has answered
    /// the cutover's first DTS status read (the wait after the stop).
    fn wait_for_first_status_read(&self, child: &mut Child) {
        wait_until(child, "the first status read", || {
            log_of(&self.log())
                .iter()
                .any(|c| c.action.as_deref() == Some("DescribeDtsJobDetail"))
        });
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
    let mut child = a
        .cutover(&db.url, &["--time-scale", "2", "--lease", "2s"])
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
    // Another host takes a run over once its holder's lease has run out.
    eventually("the killed run's lease runs out", || {
        json(&b.cmd(&db.url, &["runs", "--json"]).output().unwrap())[0]["status"] == "interrupted"
    });
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

/// The journal "hosts" share: a PostgreSQL database of its own, or (on the
/// SQLite pass) one database file all of them open.
struct Shared {
    url: String,
    _db: Option<TestDb>,
}

impl Shared {
    fn new(root: &Path) -> Shared {
        match crate::journal_backend::backend() {
            crate::journal_backend::Backend::Postgres => {
                let db = TestDb::new();
                Shared {
                    url: db.url.clone(),
                    _db: Some(db),
                }
            }
            crate::journal_backend::Backend::Sqlite => Shared {
                url: format!("sqlite:{}", root.join("shared/journal.db").display()),
                _db: None,
            },
        }
    }
}

/// Waits (up to 60 s) until `ready` holds.
fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "never happened: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A run on host A is `running` for host B while it heartbeats, with its
/// host, operator and target; killed (SIGKILL), it is `interrupted` for B
/// once its lease runs out, with its last heartbeat; resumed on B, it is
/// B's.
#[test]
fn another_host_sees_a_run_alive_while_it_heartbeats_and_interrupted_once_its_lease_ran_out() {
    let root = tempfile::tempdir().unwrap();
    let shared = Shared::new(root.path());
    let (a, b) = (
        Host::new(root.path(), "host-a"),
        Host::new(root.path(), "host-b"),
    );
    let mut child = a
        .cutover(&shared.url, &["--lease", "2s"])
        .env("USER", "alice")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    a.wait_for_first_status_read(&mut child);
    let runs_on_b = || json(&b.cmd(&shared.url, &["runs", "--json"]).output().unwrap());
    let seen = runs_on_b();
    let run_id = seen[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(seen[0]["status"], "running", "{seen}");
    assert_eq!(seen[0]["host"], "host-a");
    assert!(
        seen[0]["operator"].as_str().unwrap().starts_with("alice@"),
        "{seen}"
    );
    assert!(
        seen[0]["target"]
            .as_str()
            .unwrap()
            .starts_with("simulator cn-"),
        "{seen}"
    );
    // Alive past its first lease: the heartbeat renews it.
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    if child.try_wait().unwrap().is_none() {
        assert_eq!(runs_on_b()[0]["status"], "running");
    }
    child.kill().unwrap();
    let _ = child.wait();
    eventually("host B sees the run interrupted", || {
        runs_on_b()[0]["status"] == "interrupted"
    });
    let seen = runs_on_b();
    assert!(seen[0]["last_heartbeat"].is_string(), "{seen}");
    let table = b.cmd(&shared.url, &["runs"]).output().unwrap();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let row = table.lines().find(|l| l.starts_with(&run_id)).unwrap();
    for cell in ["interrupted", "host-a", "alice@", "simulator"] {
        assert!(row.contains(cell), "{cell}: {table}");
    }
    assert!(table.contains("last heartbeat "), "{table}");
    let shown = b.cmd(&shared.url, &["show", &run_id]).output().unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.contains("status: interrupted") && shown.contains("host: host-a"),
        "{shown}"
    );
    // Host B takes it over and finishes it.
    let out = b
        .cmd(&shared.url, &["resume", &run_id, "--yes", "--sim"])
        .env("USER", "bob")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let seen = runs_on_b();
    assert_eq!(seen[0]["status"], "succeeded");
    assert_eq!(seen[0]["host"], "host-b");
    assert!(seen[0]["operator"].as_str().unwrap().starts_with("bob@"));
}

/// `runs` filters by status, playbook, start and operator; `runs prune`
/// deletes finished runs older than its limit (the append-only approvals
/// of those runs do not stop it) and
/// never one that is not finished.
#[test]
fn runs_are_filtered_and_pruned_and_an_unfinished_run_is_never_pruned() {
    let root = tempfile::tempdir().unwrap();
    let shared = Shared::new(root.path());
    let host = Host::new(root.path(), "host-a");
    let (pb, params) = (
        repo("playbooks/dts-di-cutover.yaml"),
        repo("playbooks/params/dts-di-cutover.yaml"),
    );
    let run = |user: &str| {
        let out = host
            .cmd(
                &shared.url,
                &[
                    "run",
                    &pb,
                    "--params",
                    &params,
                    "--yes",
                    "--sim",
                    "--time-scale",
                    "20",
                ],
            )
            .env("USER", user)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    };
    run("alice");
    run("bob");
    // One killed mid-run: interrupted, not finished.
    let mut child = host
        .cutover(&shared.url, &[])
        .env("USER", "alice")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    host.wait_for_first_status_read(&mut child);
    child.kill().unwrap();
    let _ = child.wait();
    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["runs", "--json"];
        all.extend_from_slice(args);
        let out = host
            .cmd(&shared.url, &all)
            .env("USER", "alice")
            .output()
            .unwrap();
        json(&out)
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = ids(&[]);
    assert_eq!(all.len(), 3);
    assert_eq!(ids(&["--status", "succeeded"]).len(), 2);
    assert_eq!(ids(&["--status", "interrupted"]), [all[0].clone()]);
    assert_eq!(ids(&["--playbook", "dts-di-cutover"]).len(), 3);
    assert_eq!(ids(&["--playbook", &pb]).len(), 3);
    assert!(ids(&["--playbook", "other"]).is_empty());
    assert_eq!(ids(&["--since", "1h"]).len(), 3);
    assert!(ids(&["--since", "2999-01-01T00:00:00Z"]).is_empty());
    let mine = ids(&["--mine"]);
    assert_eq!(mine, [all[0].clone(), all[2].clone()], "alice's runs");
    let out = host
        .cmd(&shared.url, &["runs", "--status", "done"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // Prune: nothing is 90 days old; everything finished is 1 s old.
    let prune = |age: &str, dry: bool| {
        let mut args = vec!["runs", "prune", "--older-than", age];
        if dry {
            args.push("--dry-run");
        }
        let out = host.cmd(&shared.url, &args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(prune("90d", false).starts_with("deleted 0 run(s)"));
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let said = prune("1s", true);
    assert!(said.starts_with("would delete 2 run(s)"), "{said}");
    assert_eq!(ids(&[]).len(), 3, "a dry run deletes nothing");
    let said = prune("1s", false);
    assert!(said.starts_with("deleted 2 run(s)"), "{said}");
    for id in &all[1..] {
        assert!(said.contains(id.as_str()), "{said}");
    }
    assert_eq!(ids(&[]), [all[0].clone()], "the interrupted run stays");
    let out = host.cmd(&shared.url, &["show", &all[1]]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// The fencing guarantee: a run stopped (SIGSTOP) past its lease is taken
/// over by another host, which finishes it; continued (SIGCONT), the
/// stopped process sends nothing more: no mutating call reaches its
/// simulator after the stop, and it ends with the lease lost. While a
/// holder is alive, another host's resume is refused (exit 6) naming it.
#[test]
fn a_run_stopped_past_its_lease_is_taken_over_and_sends_nothing_more_when_continued() {
    let root = tempfile::tempdir().unwrap();
    let shared = Shared::new(root.path());
    let (a, b) = (
        Host::new(root.path(), "host-a"),
        Host::new(root.path(), "host-b"),
    );
    let mut child = a
        .cutover(&shared.url, &["--lease", "2s"])
        .env("USER", "alice")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // In the wait after the job's stop, before any terminate.
    a.wait_for_first_status_read(&mut child);
    let runs = json(&b.cmd(&shared.url, &["runs", "--json"]).output().unwrap());
    let run_id = runs[0]["id"].as_str().unwrap().to_owned();
    // Alive: another host may not take it over.
    let out = b
        .cmd(&shared.url, &["resume", &run_id, "--yes", "--sim"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is held by host host-a (operator alice@"),
        "{}",
        text(&out)
    );
    let pid = child.id().to_string();
    let signal = |sig: &str| {
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    let before = log_of(&a.log()).len();
    eventually("host B sees the stopped run interrupted", || {
        json(&b.cmd(&shared.url, &["runs", "--json"]).output().unwrap())[0]["status"]
            == "interrupted"
    });
    let out = b
        .cmd(
            &shared.url,
            &[
                "resume",
                &run_id,
                "--yes",
                "--sim",
                "--sim-log",
                &b.log().to_string_lossy(),
            ],
        )
        .env("USER", "bob")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    signal("-CONT");
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lost the lease of run"),
        "{}",
        text(&out)
    );
    // A sent nothing after the stop but what was already on the wire (a
    // status read at most), and no call that changes anything.
    let after = &log_of(&a.log())[before..];
    assert!(after.len() <= 1, "host A went on: {after:?}");
    for c in after {
        assert_eq!(c.action.as_deref(), Some("DescribeDtsJobDetail"), "{c:?}");
    }
    assert!(
        !log_of(&a.log())
            .iter()
            .any(|c| c.action.as_deref() == Some("TerminateDISyncInstance")),
        "host A terminated a node"
    );
    let seen = json(&b.cmd(&shared.url, &["runs", "--json"]).output().unwrap());
    assert_eq!(seen[0]["status"], "succeeded");
    assert_eq!(seen[0]["host"], "host-b");
}

/// `runbook cancel` on another host stops a live run through the journal:
/// it ends `cancelled` (exit 5) at its next heartbeat, and is resumable
/// from any host; a run that is not running cannot be cancelled.
#[test]
fn a_run_is_cancelled_from_another_host_through_the_journal_and_resumes() {
    let root = tempfile::tempdir().unwrap();
    let shared = Shared::new(root.path());
    let (a, b) = (
        Host::new(root.path(), "host-a"),
        Host::new(root.path(), "host-b"),
    );
    let mut child = a
        .cutover(&shared.url, &["--lease", "3s"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    a.wait_for_first_status_read(&mut child);
    let runs = json(&b.cmd(&shared.url, &["runs", "--json"]).output().unwrap());
    let run_id = runs[0]["id"].as_str().unwrap().to_owned();
    let out = b.cmd(&shared.url, &["cancel", &run_id]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(on host host-a) to stop"),
        "{}",
        text(&out)
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("asked this run to stop (runbook cancel)"),
        "{}",
        text(&out)
    );
    let seen = json(&b.cmd(&shared.url, &["runs", "--json"]).output().unwrap());
    assert_eq!(seen[0]["status"], "cancelled");
    assert!(
        !log_of(&a.log())
            .iter()
            .any(|c| c.action.as_deref() == Some("TerminateDISyncInstance")),
        "the cancelled run went on to the terminates"
    );
    let out = b.cmd(&shared.url, &["cancel", &run_id]).output().unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let out = b
        .cmd(&shared.url, &["resume", &run_id, "--yes", "--sim"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
