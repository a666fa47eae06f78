//! Notifications, against a real HTTP receiver (an axum server in this
//! process): the playbook's `notify` and `--notify`, a signed generic
//! webhook, a DingTalk robot whose `sign` is recomputed here from the
//! documented algorithm, a Slack-compatible webhook; retries; a receiver
//! that never answers does not fail or block the run; secrets never appear
//! in any output or in the journal.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde_json::Value;

use crate::run::{Rig, text};

/// A request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) path: String,
    query: String,
    headers: Vec<(String, String)>,
    pub(crate) body: Value,
    raw: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn query(&self, key: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }
}

#[derive(Clone, Default)]
pub(crate) struct Inbox {
    pub(crate) got: Arc<Mutex<Vec<Received>>>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<Mutex<usize>>,
}

async fn receive(State(inbox): State<Inbox>, req: Request) -> impl IntoResponse {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    {
        let mut fail = inbox.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return (StatusCode::INTERNAL_SERVER_ERROR, "try again".to_owned());
        }
    }
    inbox.got.lock().unwrap().push(Received {
        path: path.clone(),
        query,
        headers,
        body,
        raw: String::from_utf8_lossy(&bytes).into_owned(),
    });
    if path.starts_with("/robot") {
        (StatusCode::OK, r#"{"errcode":0,"errmsg":"ok"}"#.to_owned())
    } else {
        (StatusCode::OK, "ok".to_owned())
    }
}

/// Starts the receiver on a free loopback port; returns its base URL.
pub(crate) fn receiver(rig: &Rig, inbox: &Inbox) -> String {
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(inbox.clone());
    let listener = rig
        .rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rig.rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

const WEBHOOK_SECRET: &str = "whsec-do-not-print-4f1c";
const ROBOT_TOKEN: &str = "robot-token-do-not-print-77aa";
const ROBOT_SECRET: &str = "SECrobot-secret-do-not-print-0b9e";

/// One read step (or a failing assert) and three destinations.
fn playbook(fail: bool) -> String {
    let assert = if fail {
        "    assert: { select: Data.Status, in: [PAUSE] }\n"
    } else {
        ""
    };
    format!(
        r#"
name: notified
defaults: {{ region: cn-shanghai, retry: {{ attempts: 1 }} }}
notify:
  - kind: webhook
    url: {{ env: TEST_HOOK_URL }}
    secret: {{ env: TEST_HOOK_SECRET }}
    events: [failed, succeeded]
  - kind: dingtalk
    url: {{ env: TEST_ROBOT_URL }}
    secret: {{ env: TEST_ROBOT_SECRET }}
steps:
  - id: read-node
    call: dataworks.GetDISyncInstanceInfo
    with: {{ ProjectId: 10000, FileId: 81, TaskType: DI_REALTIME }}
{assert}"#
    )
}

fn run_notified(rig: &Rig, pb: &str, base: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", pb, "--yes"];
    args.extend(extra);
    rig.cmd(&args)
        .env("TEST_HOOK_URL", format!("{base}/hook"))
        .env("TEST_HOOK_SECRET", WEBHOOK_SECRET)
        .env(
            "TEST_ROBOT_URL",
            format!("{base}/robot/send?access_token={ROBOT_TOKEN}"),
        )
        .env("TEST_ROBOT_SECRET", ROBOT_SECRET)
        .output()
        .unwrap()
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// No secret in `s`.
fn assert_no_secret(what: &str, s: &str) {
    for secret in [WEBHOOK_SECRET, ROBOT_TOKEN, ROBOT_SECRET] {
        assert!(!s.contains(secret), "{what} shows a secret:\n{s}");
    }
}

/// Every output of every command, and the journal's bytes, hold no secret.
fn assert_secrets_kept(rig: &Rig, run_id: &str, run: &std::process::Output) {
    assert_no_secret("run", &text(run));
    for args in [
        vec!["show", run_id],
        vec!["show", run_id, "--json", "--attempts"],
        vec!["report", run_id],
        vec!["report", run_id, "--format", "json"],
    ] {
        let out = rig.run(&args);
        assert!(out.status.success(), "{}", text(&out));
        assert_no_secret(&args.join(" "), &text(&out));
    }
    for file in ["journal.db", "journal.db-wal"] {
        if let Ok(bytes) = std::fs::read(rig.state().join(file)) {
            assert_no_secret(file, &String::from_utf8_lossy(&bytes));
        }
    }
}

/// A succeeded run: the webhook gets a signed JSON body, the robot a text
/// message signed as DingTalk documents, `--notify slack:URL` a Slack body;
/// each delivery is journaled and shown.
#[test]
fn a_run_notifies_every_destination_signed_and_journals_it() {
    let rig = Rig::new("", Duration::ZERO);
    let inbox = Inbox::default();
    let base = receiver(&rig, &inbox);
    let pb = rig.playbook("notified.yaml", &playbook(false));
    let slack = format!("slack:{base}/slack");
    let before = jiff::Timestamp::now().as_millisecond();
    let run = run_notified(&rig, &pb, &base, &["--notify", &slack]);
    let after = jiff::Timestamp::now().as_millisecond();
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let run_id = rig.last_run_id();
    let got = inbox.got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "{got:#?}");

    let hook = got.iter().find(|r| r.path == "/hook").unwrap();
    assert_eq!(hook.body["event"], "succeeded");
    assert_eq!(hook.body["run_id"], run_id.as_str());
    assert_eq!(hook.body["playbook"], "notified");
    assert_eq!(hook.body["status"], "succeeded");
    let expected = hmac_sha256(WEBHOOK_SECRET.as_bytes(), hook.raw.as_bytes());
    let hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hook.header("x-runbook-signature-256"),
        Some(format!("sha256={hex}").as_str()),
        "the signature covers the body as sent"
    );

    let robot = got.iter().find(|r| r.path == "/robot/send").unwrap();
    assert_eq!(robot.query("access_token").as_deref(), Some(ROBOT_TOKEN));
    let ts: i64 = robot.query("timestamp").unwrap().parse().unwrap();
    assert!((before..=after).contains(&ts), "timestamp in ms: {ts}");
    // DingTalk's documented algorithm, computed here on its own:
    // base64(HMAC-SHA256(secret, timestamp + "\n" + secret)).
    let mac = hmac_sha256(
        ROBOT_SECRET.as_bytes(),
        format!("{ts}\n{ROBOT_SECRET}").as_bytes(),
    );
    assert_eq!(
        robot.query("sign").unwrap(),
        base64::engine::general_purpose::STANDARD.encode(mac)
    );
    assert_eq!(robot.body["msgtype"], "text");
    let content = robot.body["text"]["content"].as_str().unwrap();
    assert!(
        content.contains(&run_id) && content.contains("succeeded"),
        "{content}"
    );

    let slack = got.iter().find(|r| r.path == "/slack").unwrap();
    assert!(
        slack.body["text"].as_str().unwrap().contains("succeeded"),
        "{slack:?}"
    );
    assert!(slack.header("x-runbook-signature-256").is_none());

    let shown = rig.show(&run_id);
    let notes = shown["notifications"].as_array().unwrap();
    assert_eq!(notes.len(), 3, "{shown}");
    assert!(
        notes
            .iter()
            .all(|n| n["delivered"] == true && n["attempts"] == 1)
    );
    assert!(
        notes
            .iter()
            .any(|n| n["target"] == format!("{base}/robot/send?…"))
    );
    assert_secrets_kept(&rig, &run_id, &run);
}

/// A failed run: the webhook (failing twice first) gets the failed step,
/// its error, the RequestId of the failing answer and the resume command.
#[test]
fn a_failed_run_notifies_the_step_error_request_id_and_resume_command_after_retries() {
    let rig = Rig::new("", Duration::ZERO);
    let inbox = Inbox::default();
    *inbox.fail_first.lock().unwrap() = 2;
    let base = receiver(&rig, &inbox);
    let pb = rig.playbook("notified.yaml", &playbook(true));
    let run = rig
        .cmd(&["run", &pb, "--yes"])
        .env("TEST_HOOK_URL", format!("{base}/hook"))
        .env("TEST_HOOK_SECRET", WEBHOOK_SECRET)
        .env_remove("TEST_ROBOT_URL")
        .env("TEST_ROBOT_SECRET", ROBOT_SECRET)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let run_id = rig.last_run_id();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("warning: dingtalk notifications cannot be sent: the environment variable TEST_ROBOT_URL (its URL) is not set"),
        "{stderr}"
    );
    let got = inbox.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:#?}");
    let body = &got[0].body;
    assert_eq!(body["event"], "failed");
    assert_eq!(body["step"], "read-node");
    assert!(
        body["error"].as_str().unwrap().contains("assert failed"),
        "{body}"
    );
    let rid = rig
        .calls()
        .iter()
        .find(|c| c.action.as_deref() == Some("GetDISyncInstanceInfo"))
        .unwrap()
        .request_id
        .clone();
    assert_eq!(body["request_id"], rid.as_str());
    assert_eq!(body["command"], format!("runbook resume {run_id}"));
    let shown = rig.show(&run_id);
    let notes = shown["notifications"].as_array().unwrap();
    let hook = notes.iter().find(|n| n["kind"] == "webhook").unwrap();
    assert_eq!(
        (hook["delivered"].clone(), hook["attempts"].clone()),
        (Value::Bool(true), Value::from(3))
    );
    let robot = notes.iter().find(|n| n["kind"] == "dingtalk").unwrap();
    assert_eq!(robot["delivered"], false);
    assert_eq!(robot["attempts"], 0);
    let report = rig.run(&["report", &run_id]);
    let md = String::from_utf8_lossy(&report.stdout);
    assert!(md.contains("## Notifications"), "{md}");
    assert!(md.contains("TEST_ROBOT_URL"), "{md}");
    assert_secrets_kept(&rig, &run_id, &run);
}

/// A receiver that refuses every request: the run's outcome and exit code
/// are its own, it ends within the retry budget, and the failed delivery
/// is journaled and shown.
#[test]
fn an_undeliverable_notification_never_fails_the_run() {
    let rig = Rig::new("", Duration::ZERO);
    let inbox = Inbox::default();
    *inbox.fail_first.lock().unwrap() = usize::MAX;
    let base = receiver(&rig, &inbox);
    let pb = rig.playbook("notified.yaml", &playbook(false));
    let start = Instant::now();
    let run = rig
        .cmd(&[
            "run",
            &pb,
            "--yes",
            "--notify",
            &format!("webhook:{base}/down"),
        ])
        .env_remove("TEST_HOOK_URL")
        .env_remove("TEST_ROBOT_URL")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    assert!(
        start.elapsed() < Duration::from_secs(120),
        "bounded by the retry budget"
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("warning: notification `succeeded` via webhook")
            && stderr.contains("not delivered (4 attempts): HTTP 500"),
        "{stderr}"
    );
    let run_id = rig.last_run_id();
    let shown = rig.run(&["show", &run_id]);
    let out = String::from_utf8_lossy(&shown.stdout);
    assert!(
        out.contains("NOT delivered (4 attempts): HTTP 500"),
        "{out}"
    );
    assert_eq!(rig.show(&run_id)["status"], "succeeded");
}
