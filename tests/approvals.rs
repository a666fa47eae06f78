//! Approvals given from elsewhere: a run parked at a gate
//! (`waiting_approval`), `--detach` (exit 7) and `--wait-approval`, the
//! `approval_needed` notification to a real webhook receiver, `runbook
//! approve` / `runbook reject` from another "host" (its own state dir and
//! HOME, the journal shared, another access key of the simulator), resume,
//! rejection (exit 6), a wait that times out (exit 1, resumable), a waiting
//! process killed with SIGKILL. Real HTTP to the simulator, real signatures,
//! both journal backends (this module is in `.ci/run`'s PostgreSQL pass).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::journal_backend::TestJournal;
use crate::notify::{Inbox, receiver};
use crate::run::{Rig, count, text};

/// The approver's key: another RAM user of the simulator's account.
const BOB_ID: &str = "LTAIbobApprover";
const BOB_SECRET: &str = "bob-secret-0123456789";
const BOB_ARN: &str = "acs:ram::1000000000000001:user/bob";

/// Stop a node, ask, then terminate it (irreversible).
const CUTOVER: &str = r#"
name: two-person
defaults: { region: cn-shanghai, retry: { attempts: 1 } }
steps:
  - id: stop
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 10000, TaskType: DI_REALTIME, FileId: 81 }
  - id: go
    needs: [stop]
    approve: "Terminate node 81?"
  - id: kill
    needs: [go]
    call: dataworks.TerminateDISyncInstance
    with: { ProjectId: 10000, TaskType: DI_REALTIME, FileId: 81 }
"#;

/// The operator: the simulator's own key pair, RAM user `sim`.
const SIM_ARN: &str = "acs:ram::1000000000000001:user/sim";

/// [`CUTOVER`] whose plan needs one of bob and sim, not its starter.
fn two_person() -> String {
    format!("approvers: [bob, sim]\n{CUTOVER}")
}

/// The approvals `show --json` lists for run `run_id`.
fn approvals_of(rig: &Rig, run_id: &str) -> Vec<Value> {
    shown(rig, run_id)["approvals"].as_array().unwrap().clone()
}

fn rig() -> Rig {
    Rig::with("", Duration::ZERO, |c| {
        c.fixtures.identities.users.push(runbook::sim::UserFixture {
            access_key_id: BOB_ID.to_owned(),
            access_key_secret: BOB_SECRET.to_owned(),
            arn: BOB_ARN.to_owned(),
        });
    })
}

/// Another machine: its own state dir and HOME, the rig's journal shared,
/// signing as Bob.
struct HostB {
    dir: PathBuf,
}

impl HostB {
    fn new(rig: &Rig) -> HostB {
        let dir = rig.dir.path().join("host-b");
        std::fs::create_dir_all(dir.join("home")).unwrap();
        HostB { dir }
    }

    fn cmd(&self, rig: &Rig, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
        cmd.args(args)
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .env("HOME", self.dir.join("home"))
            .env_remove("XDG_STATE_HOME")
            .env("RUNBOOK_HOST", "host-b")
            .env("USER", "bob")
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", BOB_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", BOB_SECRET)
            .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
            .env("RUNBOOK_STS_ENDPOINT", rig.sim().base_url())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        match &rig.journal {
            TestJournal::Sqlite => cmd.env(
                "RUNBOOK_JOURNAL",
                format!("sqlite:{}", rig.state().join("journal.db").display()),
            ),
            TestJournal::Postgres(db) => cmd.env("RUNBOOK_JOURNAL", &db.url),
        };
        cmd
    }

    fn run(&self, rig: &Rig, args: &[&str]) -> Output {
        self.cmd(rig, args).output().unwrap()
    }
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The run as `show --json` on the rig's host sees it.
fn shown(rig: &Rig, run_id: &str) -> Value {
    json(&rig.run(&["show", run_id, "--json"]))
}

/// Waits (up to 30 s) until `ready` holds.
fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never happened: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `approval_needed` requests the receiver got.
fn approval_requests(inbox: &Inbox) -> Vec<Value> {
    inbox
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.body["event"] == "approval_needed")
        .map(|r| r.body.clone())
        .collect()
}

/// Runs, on host B, the command a notification says to run (`runbook
/// approve RUN_ID [STEP] --journal URL`), with `extra` flags.
fn run_notified_command(rig: &Rig, b: &HostB, command: &str, extra: &[&str]) -> Output {
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[0], "runbook", "{command}");
    let mut args: Vec<&str> = words[1..].to_vec();
    args.extend_from_slice(extra);
    b.run(rig, &args)
}

/// [`crate::status::stable`], and the journal and who answered, which
/// differ between backends and machines.
fn stable(rig: &Rig) -> insta::Settings {
    let mut settings = crate::status::stable(rig);
    settings.add_filter(r"--journal \S+", "--journal [journal]");
    settings.add_filter(r"\(\S+@\S+, ", "([who], ");
    settings.add_filter(r"\((\w+)@[^)\s]+\)", "($1@[host])");
    settings.add_filter(r"on host \S+ ", "on host [host] ");
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[port]");
    settings.add_filter(r"plan [0-9a-f]{12} of", "plan [digest] of");
    settings
}

fn terminated(rig: &Rig) -> usize {
    count(&rig.calls(), "TerminateDISyncInstance")
}

/// THE two-person cutover: the operator starts it with `--detach` on host
/// A (exit 7, nothing sent), the run waits at the plan's gate, the webhook
/// receiver gets the approval request with the exact approve command, Bob
/// runs that command on host B (sharing the journal, signing with his own
/// key), and `runbook resume` on A finishes it, parking again at the
/// `approve` step (which Bob approves the same way).
#[test]
fn a_detached_run_waits_at_its_gates_until_another_host_approves_and_resume_finishes_it() {
    let rig = rig();
    let inbox = Inbox::default();
    let hook = format!("webhook:{}/hook", receiver(&rig, &inbox));
    let pb = rig.playbook("cutover.yaml", &two_person());
    let b = HostB::new(&rig);

    let out = rig.run(&["run", &pb, "--detach", "--notify", &hook]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(
        stdout(&out).contains("waits for an approval of the plan from elsewhere"),
        "{}",
        text(&out)
    );
    assert!(
        rig.calls().is_empty(),
        "nothing is sent before the approval"
    );
    let run_id = rig.last_run_id();
    let waiting_show = stdout(&rig.run(&["show", &run_id]));
    stable(&rig).bind(|| {
        insta::assert_snapshot!("detached-at-the-plan", stdout(&out));
        insta::assert_snapshot!("show-waiting-at-the-plan", waiting_show);
    });

    // The receiver got the request, with the command to run.
    let asked = approval_requests(&inbox);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["run_id"], run_id.as_str());
    assert_eq!(asked[0]["status"], "waiting_approval");
    assert_eq!(asked[0]["step"], Value::Null);
    let command = asked[0]["command"].as_str().unwrap().to_owned();
    assert!(
        command.starts_with(&format!("runbook approve {run_id} --journal ")),
        "{command}"
    );

    // Host B sees it parked at the plan's gate, without a process.
    let runs = json(&b.run(&rig, &["runs", "--json"]));
    assert_eq!(runs[0]["status"], "waiting_approval", "{runs}");
    assert_eq!(runs[0]["waiting"]["gate"], "plan", "{runs}");
    assert!(runs[0]["waiting"]["since"].is_string(), "{runs}");
    let table = stdout(&b.run(&rig, &["runs"]));
    assert!(
        table.contains("waiting for an approval of the plan since")
            && table.contains("no process waits"),
        "{table}"
    );

    // A wrong step, then no terminal without --yes: refused, nothing recorded.
    let out = b.run(&rig, &["approve", &run_id, "go", "--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        stderr(&out).contains("waits for an approval of the plan, not of step `go`"),
        "{}",
        text(&out)
    );
    let out = run_notified_command(&rig, &b, &command, &[]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        stderr(&out).contains("needs a `yes` on a terminal"),
        "{}",
        text(&out)
    );
    assert!(approvals_of(&rig, &run_id).is_empty());
    // The operator may not approve their own run: approvers are set.
    let out = rig
        .cmd(&[
            "approve",
            &run_id,
            "--yes",
            "--state-dir",
            &rig.state().to_string_lossy(),
        ])
        .env("RUNBOOK_STS_ENDPOINT", rig.sim().base_url())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(stderr(&out).contains("started the run"), "{}", text(&out));
    assert!(approvals_of(&rig, &run_id).is_empty());

    // Bob approves with the notified command.
    let out = run_notified_command(&rig, &b, &command, &["--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    stable(&rig).bind(|| insta::assert_snapshot!("approved-parked", stdout(&out)));
    assert!(stdout(&out).contains("runbook resume"), "{}", text(&out));
    // A second approval of a decided gate is refused; the first stands.
    let out = run_notified_command(&rig, &b, &command, &["--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        stderr(&out).contains("is not waiting") || stderr(&out).contains("approved already"),
        "{}",
        text(&out)
    );

    // Resumed on A: the stop goes out, then the run parks at `go`.
    let out = rig.run(&["resume", &run_id, "--detach", "--notify", &hook]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let table: String = stdout(&rig.run(&["runs"]))
        .lines()
        .filter(|l| l.contains("waiting for"))
        .collect();
    stable(&rig).bind(|| {
        insta::assert_snapshot!("summary-detached-at-a-step", stdout(&out));
        insta::assert_snapshot!("runs-waiting-at-a-step", table);
    });
    assert_eq!(count(&rig.calls(), "StopDISyncInstance"), 1);
    assert_eq!(terminated(&rig), 0);
    let seen = shown(&rig, &run_id);
    assert_eq!(seen["status"], "waiting_approval", "{seen}");
    assert_eq!(seen["waiting"]["step"], "go", "{seen}");
    let asked = approval_requests(&inbox);
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[1]["step"], "go");
    let command = asked[1]["command"].as_str().unwrap().to_owned();
    assert!(
        command.starts_with(&format!("runbook approve {run_id} go --journal ")),
        "{command}"
    );
    let out = run_notified_command(&rig, &b, &command, &["--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let out = rig.run(&["resume", &run_id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(terminated(&rig), 1);
    assert_eq!(
        count(&rig.calls(), "StopDISyncInstance"),
        1,
        "not sent again"
    );
    let seen = shown(&rig, &run_id);
    assert_eq!(seen["status"], "succeeded");
    let approvals = seen["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), 2, "{seen}");
    assert_eq!(approvals[0]["step"], Value::Null);
    assert_eq!(approvals[1]["step"], "go");
    for a in approvals {
        assert!(a["by"].as_str().unwrap().starts_with("bob@"), "{seen}");
        assert_eq!(a["method"], "approve");
    }
    let report = stdout(&rig.run(&["report", &run_id]));
    assert!(report.contains("bob@"), "{report}");
    // Both verified identities: the operator's and the approver's.
    assert!(
        report.contains(BOB_ARN) && report.contains(SIM_ARN),
        "{report}"
    );
}

/// Approvers on the plan and on a step: the operator's own `--yes` and
/// `--approve` do not count, so the run waits in the foreground (no flag
/// needed) until Bob approves each gate from host B.
#[test]
fn a_policy_that_needs_someone_else_makes_the_run_wait_for_them() {
    let rig = rig();
    let pb = rig.playbook(
        "cutover.yaml",
        &two_person().replace(
            "approve: \"Terminate node 81?\"",
            "approve: { message: \"Terminate node 81?\", approvers: [bob] }",
        ),
    );
    let b = HostB::new(&rig);
    let child = rig
        .cmd(&["run", &pb, "--yes", "--approve", "go"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let waits_at = |gate: &str, step: Value| {
        let runs = json(&b.run(&rig, &["runs", "--json"]));
        runs[0]["status"] == "waiting_approval"
            && runs[0]["waiting"]["gate"] == gate
            && runs[0]["waiting"]["step"] == step
    };
    eventually("the run waits at the plan", || {
        waits_at("plan", Value::Null)
    });
    let run_id = rig.last_run_id();
    assert!(rig.calls().is_empty());
    let out = b.run(&rig, &["approve", &run_id, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    eventually("the run waits at `go`", || {
        waits_at("step", Value::from("go"))
    });
    assert_eq!(terminated(&rig), 0);
    let out = b.run(&rig, &["approve", &run_id, "go", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(terminated(&rig), 1);
    let by_bob = approvals_of(&rig, &run_id)
        .iter()
        .filter(|a| a["arn"] == BOB_ARN && a["channel"] == "command")
        .count();
    assert_eq!(by_bob, 2, "{:?}", approvals_of(&rig, &run_id));
}

/// `--wait-approval`: the process waits at the gate and goes on by itself
/// once host B approves; killed (SIGKILL) while it waits, the run stays
/// parked, is approved, and is resumed.
#[test]
fn a_waiting_process_goes_on_once_approved_and_a_killed_one_is_resumed_after_the_approval() {
    let rig = rig();
    let pb = rig.playbook("cutover.yaml", CUTOVER);
    let b = HostB::new(&rig);
    let waits_at = |step: &str| {
        let runs = json(&b.run(&rig, &["runs", "--json"]));
        runs[0]["status"] == "waiting_approval" && runs[0]["waiting"]["step"] == step
    };

    // Waits at `go` (the plan approved with --yes), approved from B.
    let mut child = rig
        .cmd(&["run", &pb, "--yes", "--wait-approval", "--lease", "2s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("the run waits at `go`", || waits_at("go"));
    let run_id = rig.last_run_id();
    let table = stdout(&b.run(&rig, &["runs"]));
    assert!(table.contains("a process waits on host"), "{table}");
    assert!(child.try_wait().unwrap().is_none(), "it waits");
    assert_eq!(terminated(&rig), 0);
    let out = b.run(&rig, &["approve", &run_id, "go", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("goes on by itself"), "{}", text(&out));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(terminated(&rig), 1);
    assert_eq!(shown(&rig, &run_id)["status"], "succeeded");

    // The same, killed while it waits at the plan's gate.
    let pb2 = rig.playbook(
        "cutover2.yaml",
        &CUTOVER.replace("FileId: 81", "FileId: 82"),
    );
    let mut child = rig
        .cmd(&[
            "run",
            &pb2,
            "--approve",
            "go",
            "--wait-approval",
            "--lease",
            "2s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("the second run waits at the plan", || {
        let runs = json(&b.run(&rig, &["runs", "--json"]));
        runs[0]["status"] == "waiting_approval" && runs[0]["waiting"]["gate"] == "plan"
    });
    let run_id = rig.last_run_id();
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(shown(&rig, &run_id)["status"], "waiting_approval", "parked");
    let out = b.run(&rig, &["approve", &run_id, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Resumed from host B once the killed process's lease ran out.
    eventually("host B takes the run over", || {
        let out = b.run(&rig, &["resume", &run_id, "--approve", "go"]);
        if out.status.code() == Some(6) && stderr(&out).contains("is held by host") {
            return false;
        }
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        true
    });
    assert_eq!(shown(&rig, &run_id)["status"], "succeeded");
    assert_eq!(terminated(&rig), 2);
}

/// A rejection ends a waiting run `rejected` (exit 6) and sends nothing
/// after the gate; a parked run rejected is ended at once, and a rejected
/// run is never resumed.
#[test]
fn a_rejected_run_ends_rejected_and_is_not_resumed() {
    let rig = rig();
    let pb = rig.playbook("cutover.yaml", CUTOVER);
    let b = HostB::new(&rig);
    let child = rig
        .cmd(&["run", &pb, "--yes", "--wait-approval"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the run waits at `go`", || {
        let runs = json(&b.run(&rig, &["runs", "--json"]));
        runs[0]["status"] == "waiting_approval"
    });
    let run_id = rig.last_run_id();
    let out = b.run(&rig, &["reject", &run_id, "go", "--reason", "  "]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = b.run(&rig, &["reject", &run_id, "go", "--reason", "lag too high"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        text(&out).contains("lag too high") && text(&out).contains(BOB_ARN),
        "{}",
        text(&out)
    );
    assert_eq!(terminated(&rig), 0, "nothing after the gate");
    let shown_text = stdout(&rig.run(&["show", &run_id]));
    assert!(
        shown_text.contains(&format!("rejected: step `go` by {BOB_ARN}"))
            && shown_text.contains(": lag too high"),
        "{shown_text}"
    );
    let seen = shown(&rig, &run_id);
    assert_eq!(seen["status"], "rejected", "{seen}");
    let out = rig.run(&["resume", &run_id, "--approve", "go"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(stderr(&out).contains("was rejected"), "{}", text(&out));
    // An approval after the rejection is refused.
    let out = b.run(&rig, &["approve", &run_id, "go", "--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));

    // Parked (--detach) and rejected: ended at once.
    let pb2 = rig.playbook(
        "cutover2.yaml",
        &CUTOVER.replace("FileId: 81", "FileId: 83"),
    );
    let out = rig.run(&["run", &pb2, "--detach"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let run_id = rig.last_run_id();
    let out = b.run(&rig, &["reject", &run_id, "--reason", "CHG-1 withdrawn"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(shown(&rig, &run_id)["status"], "rejected");
    let out = rig.run(&["resume", &run_id]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(rig.calls().iter().all(|c| c.param("FileId") != Some("83")));
}

/// A wait that times out fails the run (exit 1), resumable: the resume
/// parks it again with a new deadline. An approval after the deadline is
/// refused.
#[test]
fn a_wait_that_times_out_fails_the_run_and_a_resume_waits_again() {
    let rig = rig();
    let pb = rig.playbook("cutover.yaml", CUTOVER);
    let b = HostB::new(&rig);
    let out = rig.run(&[
        "run",
        &pb,
        "--wait-approval",
        "--approval-timeout",
        "1s",
        "--approve",
        "go",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("no approval of the plan came"),
        "{}",
        text(&out)
    );
    let run_id = rig.last_run_id();
    assert_eq!(shown(&rig, &run_id)["status"], "failed");
    assert!(rig.calls().is_empty());
    let out = b.run(&rig, &["approve", &run_id, "--yes"]);
    assert_eq!(out.status.code(), Some(6), "not waiting: {}", text(&out));

    // Parked again (detached), with a deadline that passes.
    let out = rig.run(&[
        "resume",
        &run_id,
        "--detach",
        "--approval-timeout",
        "1s",
        "--approve",
        "go",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(1_500));
    let out = b.run(&rig, &["approve", &run_id, "--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(stderr(&out).contains("timed out"), "{}", text(&out));
    // A resume after the deadline fails it, and the next one waits anew.
    let out = rig.run(&["resume", &run_id, "--approve", "go"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = rig.run(&["resume", &run_id, "--detach", "--approve", "go"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let out = b.run(&rig, &["approve", &run_id, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = rig.run(&["resume", &run_id, "--approve", "go"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(terminated(&rig), 1);
}

/// Answers that cannot apply are refused clearly (exit 6 or 2), nothing
/// recorded: a run that does not wait, a step that is no `approve` step,
/// another digest than reviewed, an unknown run.
#[test]
fn answers_that_do_not_fit_the_waiting_run_are_refused() {
    let rig = rig();
    let pb = rig.playbook("cutover.yaml", CUTOVER);
    let b = HostB::new(&rig);
    let out = rig.run(&["run", &pb, "--yes", "--approve", "go"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let done = rig.last_run_id();
    let out = b.run(&rig, &["approve", &done, "--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        stderr(&out).contains("is not waiting for an approval (it is succeeded)"),
        "{}",
        text(&out)
    );
    let out = b.run(&rig, &["approve", "no-such-run", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let pb2 = rig.playbook(
        "cutover2.yaml",
        &CUTOVER.replace("FileId: 81", "FileId: 84"),
    );
    let out = rig.run(&["run", &pb2, "--detach"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let run_id = rig.last_run_id();
    let out = b.run(&rig, &["approve", &run_id, "kill", "--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        stderr(&out).contains("no `approve` step `kill`"),
        "{}",
        text(&out)
    );
    let other = "ab".repeat(32);
    let out = b.run(
        &rig,
        &["approve", &run_id, "--yes", "--expect-digest", &other],
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(stderr(&out).contains("not the"), "{}", text(&out));
    assert!(
        shown(&rig, &run_id)["approvals"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let digest = shown(&rig, &run_id)["digest"].as_str().unwrap().to_owned();
    let out = b.run(
        &rig,
        &["approve", &run_id, "--yes", "--expect-digest", &digest],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// `runbook approve` on a terminal (a pty, through util-linux `script`) as
/// Bob on host B, answering `answer`.
fn approve_on_terminal(rig: &Rig, b: &HostB, run_id: &str, answer: &str) -> Output {
    use std::io::Write as _;
    let line = format!(
        "{} approve {run_id} --state-dir {}",
        env!("CARGO_BIN_EXE_runbook"),
        b.dir.join("state").display()
    );
    let mut script = b.cmd(rig, &[]);
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"]);
    for (k, v) in script.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let _ = script.stdin(Stdio::null());
    let mut child = cmd
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{answer}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// On a terminal, the approver sees what they approve (the plan's
/// irreversible step with its ids, the blast radius, the digest) before
/// the question; anything but `yes` records nothing.
#[test]
fn the_approver_reviews_the_plan_on_a_terminal_before_answering() {
    let rig = rig();
    let pb = rig.playbook("cutover.yaml", &two_person());
    let b = HostB::new(&rig);
    let out = rig.run(&["run", &pb, "--detach"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let run_id = rig.last_run_id();
    let out = approve_on_terminal(&rig, &b, &run_id, "no");
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let prompt = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    stable(&rig).bind(|| insta::assert_snapshot!("approve-on-a-terminal", prompt));
    assert!(approvals_of(&rig, &run_id).is_empty());
    let out = approve_on_terminal(&rig, &b, &run_id, "yes");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let approvals = approvals_of(&rig, &run_id);
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0]["arn"], BOB_ARN);
    assert_eq!(approvals[0]["channel"], "command");
}
