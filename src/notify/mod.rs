//! Notifications: tell people when a run needs them or has ended.
//!
//! A [`Notifier`] holds the destinations of a run: the playbook's `notify`
//! (from the plan, `{env: NAME}` URLs and secrets read when the run starts)
//! and `--notify KIND:URL` flags. [`Notifier::send`] delivers one
//! [`Notification`] to every destination that wants its event: a generic
//! webhook (JSON POST, signed with `X-Runbook-Signature-256` when it has a
//! secret), a DingTalk custom robot (text message; `timestamp` and `sign`
//! when it has a secret, see [`sign`]) or a Slack-compatible incoming
//! webhook. Each delivery is retried with backoff and bounded in time; one
//! that cannot be made is reported as a [`Delivery`] (which the caller
//! journals), never as an error of the run.
//!
//! Secrets (a signing secret, the token in a robot's URL) are never shown:
//! a destination is named by its scheme, host and path only, and HTTP
//! errors are reported without their URL.
//!
//! Imports: `plan` (the notify targets) and `run` (statuses, the report of
//! a finished run, which names the failed step and its RequestId).

pub mod sign;

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::plan::{NotifyEvent, NotifyKind, NotifyTarget, ValueSource};
use crate::run::RunStatus;
use crate::run::run_report::RunReport;

/// How hard a delivery is tried.
#[derive(Clone, Copy, Debug)]
pub struct DeliveryPolicy {
    /// Attempts per destination, the first included.
    pub attempts: u32,
    /// Delay before the second attempt; doubled after each.
    pub first_delay: Duration,
    /// How long one attempt may take.
    pub request_timeout: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> DeliveryPolicy {
        DeliveryPolicy {
            attempts: 4,
            first_delay: Duration::from_millis(500),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// One destination, resolved.
struct Destination {
    kind: NotifyKind,
    url: String,
    secret: Option<String>,
    events: Vec<NotifyEvent>,
    /// The URL without query string and credentials.
    shown: String,
}

/// A destination that could not be set up (its URL or secret missing from
/// the environment, or a bad `--notify` flag): reported, not fatal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unusable {
    /// How it would have been sent.
    pub kind: NotifyKind,
    /// The events it wanted.
    pub events: Vec<NotifyEvent>,
    /// Why not.
    pub reason: String,
}

/// Where a run's notifications go.
pub struct Notifier {
    destinations: Vec<Destination>,
    unusable: Vec<Unusable>,
    client: Option<reqwest::Client>,
    policy: DeliveryPolicy,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field(
                "destinations",
                &self
                    .destinations
                    .iter()
                    .map(|d| format!("{} {}", d.kind, d.shown))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A `--notify KIND:URL` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagTarget {
    /// How it is sent.
    pub kind: NotifyKind,
    /// Where to (may carry a token: never journaled).
    pub url: String,
}

impl std::str::FromStr for FlagTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<FlagTarget, String> {
        let (kind, url) = s.split_once(':').ok_or_else(|| {
            "expected KIND:URL, e.g. `webhook:https://hooks.example.com/runbook`".to_owned()
        })?;
        let kind = NotifyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(|| format!("unknown kind `{kind}`: expected webhook, dingtalk or slack"))?;
        match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(FlagTarget {
                kind,
                url: url.to_owned(),
            }),
            _ => Err(format!("`{}` is not an http(s) URL", shown_url(url))),
        }
    }
}

/// What a notification says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// What happened.
    pub event: NotifyEvent,
    /// Run id.
    pub run_id: String,
    /// Playbook name.
    pub playbook: String,
    /// Plan digest.
    pub plan_digest: String,
    /// Run status.
    pub status: RunStatus,
    /// The step concerned (the failed one, the one waiting for approval).
    pub step: Option<String>,
    /// The error, for a failure.
    pub error: Option<String>,
    /// RequestId of the failed call (or of the failed step's last answer).
    pub request_id: Option<String>,
    /// The command to run next (`runbook resume RUN_ID`, `runbook approve RUN_ID STEP`).
    pub command: Option<String>,
}

impl Notification {
    /// The notification of a run that ended with `report.run.status`, if its
    /// status is one notifications are sent for.
    pub fn finished(report: &RunReport) -> Option<Notification> {
        let run = &report.run;
        let event = match run.status {
            RunStatus::Succeeded => NotifyEvent::Succeeded,
            RunStatus::Failed | RunStatus::Rejected => NotifyEvent::Failed,
            RunStatus::Cancelled | RunStatus::Interrupted => NotifyEvent::Cancelled,
            RunStatus::WindowClosed => NotifyEvent::WindowClosed,
            RunStatus::Running | RunStatus::WaitingApproval => return None,
        };
        let failed = report
            .steps
            .iter()
            .find(|s| s.status == Some(crate::run::StepStatus::Failed));
        let (step, error, request_id) = match (event, failed) {
            (NotifyEvent::Failed, Some(s)) => {
                let error = report.errors.iter().rev().find(|e| e.step == s.id);
                (
                    Some(s.id.clone()),
                    s.detail
                        .clone()
                        .or_else(|| error.and_then(|e| e.message.clone())),
                    error.and_then(|e| e.request_id.clone()),
                )
            }
            _ => (None, None, None),
        };
        Some(Notification {
            event,
            run_id: run.id.clone(),
            playbook: run.playbook.clone(),
            plan_digest: run.plan_digest.clone(),
            status: run.status,
            step,
            error,
            request_id,
            command: (event != NotifyEvent::Succeeded)
                .then(|| format!("runbook resume {}", run.id)),
        })
    }

    /// The notification that run `run_id` (of `playbook`, plan `digest`)
    /// waits for an approval of `step` (`None`: the plan) given from
    /// elsewhere; `command` gives it.
    pub fn approval_needed(
        run_id: &str,
        playbook: &str,
        digest: &str,
        step: Option<&str>,
        command: String,
    ) -> Notification {
        Notification {
            event: NotifyEvent::ApprovalNeeded,
            run_id: run_id.to_owned(),
            playbook: playbook.to_owned(),
            plan_digest: digest.to_owned(),
            status: RunStatus::WaitingApproval,
            step: step.map(str::to_owned),
            error: None,
            request_id: None,
            command: Some(command),
        }
    }

    /// The notification that a run of `playbook` (plan `digest`) was
    /// refused before it started (so it has no run id, and its status is
    /// `rejected`) for want of the plan's approval: `reason` says what is
    /// missing or expired, `command` how to give it
    /// (`runbook approve --plan ...`).
    pub fn refused(playbook: &str, digest: &str, reason: &str, command: String) -> Notification {
        Notification {
            event: NotifyEvent::ApprovalNeeded,
            run_id: String::new(),
            playbook: playbook.to_owned(),
            plan_digest: digest.to_owned(),
            status: RunStatus::Rejected,
            step: None,
            error: Some(reason.to_owned()),
            request_id: None,
            command: Some(command),
        }
    }

    /// One line: what happened to which run.
    pub fn title(&self) -> String {
        if self.run_id.is_empty() {
            return format!(
                "runbook: a run of `{}` was refused before it started: its plan needs an approval",
                self.playbook
            );
        }
        let what = match self.event {
            NotifyEvent::ApprovalNeeded => match &self.step {
                Some(s) => format!("needs an approval of step `{s}`"),
                None => "needs an approval of its plan".to_owned(),
            },
            NotifyEvent::Failed => match &self.step {
                Some(s) => format!("failed at step `{s}`"),
                None => "failed".to_owned(),
            },
            NotifyEvent::Succeeded => "succeeded".to_owned(),
            NotifyEvent::Cancelled => format!("stopped ({})", self.status),
            NotifyEvent::WindowClosed => "stopped: its window closed".to_owned(),
        };
        format!("runbook: run {} of `{}` {what}", self.run_id, self.playbook)
    }

    /// The message as plain text: the title, then the details.
    pub fn text(&self) -> String {
        let mut lines = vec![self.title()];
        if let Some(s) = &self.step {
            lines.push(format!("step: {s}"));
        }
        if let Some(e) = &self.error {
            lines.push(format!("error: {e}"));
        }
        if let Some(r) = &self.request_id {
            lines.push(format!("RequestId: {r}"));
        }
        lines.push(format!("plan digest: {}", self.plan_digest));
        if let Some(c) = &self.command {
            lines.push(format!("next: {c}"));
        }
        lines.join("\n")
    }

    /// The body sent to a destination of `kind`.
    fn body(&self, kind: NotifyKind) -> Value {
        match kind {
            NotifyKind::Webhook => json!({
                "event": self.event,
                "run_id": self.run_id,
                "playbook": self.playbook,
                "plan_digest": self.plan_digest,
                "status": self.status,
                "step": self.step,
                "error": self.error,
                "request_id": self.request_id,
                "command": self.command,
                "title": self.title(),
                "text": self.text(),
            }),
            NotifyKind::Dingtalk => json!({
                "msgtype": "text",
                "text": { "content": self.text() },
            }),
            NotifyKind::Slack => json!({ "text": slack_escape(&self.text()) }),
        }
    }
}

/// Slack reads `&`, `<` and `>` as markup: escaped as its docs say.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A URL as it may be shown: scheme, host, port and path; a query string
/// (which may hold a token) as `?…`; credentials dropped.
pub fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let query = if u.query().is_some() { "?…" } else { "" };
            format!("{}://{host}{port}{}{query}", u.scheme(), u.path())
        }
        Err(_) => "<invalid URL>".to_owned(),
    }
}

/// The outcome of delivering one notification to one destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The event.
    pub event: NotifyEvent,
    /// How it was sent.
    pub kind: NotifyKind,
    /// Where (see [`shown_url`]).
    pub target: String,
    /// Whether the receiver accepted it.
    pub delivered: bool,
    /// Attempts made.
    pub attempts: u32,
    /// Why it was not delivered (the last attempt's error).
    pub error: Option<String>,
}

impl From<Delivery> for crate::run::RunEvent {
    /// The `notified` event that journals (and shows) a delivery.
    fn from(d: Delivery) -> crate::run::RunEvent {
        crate::run::RunEvent::Notified {
            about: d.event,
            kind: d.kind,
            target: d.target,
            delivered: d.delivered,
            attempts: d.attempts,
            error: d.error,
        }
    }
}

impl Notifier {
    /// The destinations of a run: the plan's targets (environment variables
    /// read now) and the `--notify` flags. Targets that cannot be used are
    /// returned beside it, to be warned about now; they never stop the run,
    /// and every notification they would have had is reported as not
    /// delivered.
    pub fn new(targets: &[NotifyTarget], flags: &[FlagTarget]) -> (Notifier, Vec<Unusable>) {
        Notifier::with(
            targets,
            flags,
            |name| std::env::var(name).ok(),
            DeliveryPolicy::default(),
        )
    }

    /// [`Notifier::new`] with the environment and the policy given.
    pub fn with(
        targets: &[NotifyTarget],
        flags: &[FlagTarget],
        env: impl Fn(&str) -> Option<String>,
        policy: DeliveryPolicy,
    ) -> (Notifier, Vec<Unusable>) {
        let mut destinations = Vec::new();
        let mut unusable = Vec::new();
        let read = |name: &str| env(name).filter(|v| !v.is_empty());
        for t in targets {
            let url = match &t.url {
                ValueSource::Literal(u) => Some(u.clone()),
                ValueSource::Env(name) => read(name),
            };
            let Some(url) = url else {
                let ValueSource::Env(name) = &t.url else {
                    continue;
                };
                unusable.push(Unusable {
                    kind: t.kind,
                    events: t.events.clone(),
                    reason: format!("the environment variable {name} (its URL) is not set"),
                });
                continue;
            };
            let secret = match &t.secret_env {
                Some(name) => match read(name) {
                    Some(s) => Some(s),
                    None => {
                        unusable.push(Unusable {
                            kind: t.kind,
                            events: t.events.clone(),
                            reason: format!(
                                "the environment variable {name} (its secret) is not set"
                            ),
                        });
                        continue;
                    }
                },
                None => None,
            };
            destinations.push(Destination {
                kind: t.kind,
                shown: shown_url(&url),
                url,
                secret,
                events: t.events.clone(),
            });
        }
        for f in flags {
            destinations.push(Destination {
                kind: f.kind,
                shown: shown_url(&f.url),
                url: f.url.clone(),
                secret: None,
                events: NotifyEvent::ALL.to_vec(),
            });
        }
        let client = if destinations.is_empty() {
            None
        } else {
            reqwest::Client::builder()
                .connect_timeout(policy.request_timeout)
                .timeout(policy.request_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| {
                    unusable.push(Unusable {
                        kind: NotifyKind::Webhook,
                        events: NotifyEvent::ALL.to_vec(),
                        reason: format!("cannot set up the HTTP client: {}", e.without_url()),
                    });
                })
                .ok()
        };
        (
            Notifier {
                destinations,
                unusable: unusable.clone(),
                client,
                policy,
            },
            unusable,
        )
    }

    /// Whether any destination (usable or not) wants `event`.
    pub fn wants(&self, event: NotifyEvent) -> bool {
        self.destinations.iter().any(|d| d.events.contains(&event))
            || self.unusable.iter().any(|u| u.events.contains(&event))
    }

    /// Delivers `n` to every destination that wants its event, each
    /// retried with backoff; returns how each delivery went.
    pub async fn send(&self, n: &Notification) -> Vec<Delivery> {
        let mut out: Vec<Delivery> = self
            .unusable
            .iter()
            .filter(|u| u.events.contains(&n.event))
            .map(|u| Delivery {
                event: n.event,
                kind: u.kind,
                target: "-".to_owned(),
                delivered: false,
                attempts: 0,
                error: Some(u.reason.clone()),
            })
            .collect();
        if let Some(client) = &self.client {
            for d in self
                .destinations
                .iter()
                .filter(|d| d.events.contains(&n.event))
            {
                out.push(deliver(client, d, n, self.policy).await);
            }
        }
        out
    }
}

/// One destination, with retries.
async fn deliver(
    client: &reqwest::Client,
    d: &Destination,
    n: &Notification,
    policy: DeliveryPolicy,
) -> Delivery {
    let body = n.body(d.kind).to_string();
    let mut delay = policy.first_delay;
    let mut last_error = None;
    let mut attempts = 0;
    while attempts < policy.attempts.max(1) {
        if attempts > 0 {
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
        attempts += 1;
        match attempt(client, d, &body).await {
            Ok(()) => {
                return Delivery {
                    event: n.event,
                    kind: d.kind,
                    target: d.shown.clone(),
                    delivered: true,
                    attempts,
                    error: None,
                };
            }
            Err(e) => last_error = Some(e),
        }
    }
    Delivery {
        event: n.event,
        kind: d.kind,
        target: d.shown.clone(),
        delivered: false,
        attempts,
        error: last_error,
    }
}

/// One POST; `Err` holds a message fit to show (no URL, no secret).
async fn attempt(client: &reqwest::Client, d: &Destination, body: &str) -> Result<(), String> {
    let mut url = d.url.clone();
    let mut request = client.post(&url);
    match (d.kind, &d.secret) {
        (NotifyKind::Dingtalk, Some(secret)) => {
            let timestamp = jiff::Timestamp::now().as_millisecond();
            let signed = sign::dingtalk(timestamp, secret);
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&format!("timestamp={timestamp}&sign={signed}"));
            request = client.post(&url);
        }
        (NotifyKind::Webhook, Some(secret)) => {
            request = request.header(sign::WEBHOOK_HEADER, sign::webhook(secret, body.as_bytes()));
        }
        _ => {}
    }
    let response = request
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )
        .body(body.to_owned())
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    if d.kind == NotifyKind::Dingtalk {
        // The robot answers 200 with an error code when it refuses.
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let code = answer.get("errcode").and_then(Value::as_i64).unwrap_or(-1);
        if code != 0 {
            let msg = answer
                .get("errmsg")
                .and_then(Value::as_str)
                .unwrap_or("no errcode in the answer");
            return Err(format!("DingTalk errcode {code}: {msg}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_urls_are_shown_without_tokens() {
        let f: FlagTarget = "dingtalk:https://oapi.dingtalk.com/robot/send?access_token=abc"
            .parse()
            .unwrap();
        assert_eq!(f.kind, NotifyKind::Dingtalk);
        assert_eq!(shown_url(&f.url), "https://oapi.dingtalk.com/robot/send?…");
        assert_eq!(
            shown_url("https://user:pw@h.example:8443/x/y"),
            "https://h.example:8443/x/y"
        );
        assert!(
            "pager:https://x"
                .parse::<FlagTarget>()
                .unwrap_err()
                .contains("unknown kind")
        );
        assert!("webhook:ftp://x".parse::<FlagTarget>().is_err());
        assert!("webhook".parse::<FlagTarget>().is_err());
    }

    #[test]
    fn missing_environment_variables_make_a_target_unusable_not_an_error() {
        let targets = vec![
            NotifyTarget {
                kind: NotifyKind::Webhook,
                url: ValueSource::Env("HOOK".into()),
                secret_env: None,
                events: vec![NotifyEvent::Failed],
            },
            NotifyTarget {
                kind: NotifyKind::Dingtalk,
                url: ValueSource::Env("ROBOT".into()),
                secret_env: Some("ROBOT_SECRET".into()),
                events: NotifyEvent::ALL.to_vec(),
            },
        ];
        let env = |k: &str| {
            (k == "ROBOT").then(|| "https://r.example/robot/send?access_token=t".to_owned())
        };
        let (n, unusable) = Notifier::with(&targets, &[], env, DeliveryPolicy::default());
        assert_eq!(unusable.len(), 2, "{unusable:?}");
        assert!(unusable[0].reason.contains("HOOK"));
        assert!(unusable[1].reason.contains("ROBOT_SECRET"));
        assert!(
            n.wants(NotifyEvent::Failed),
            "to report it as not delivered"
        );
        assert!(!format!("{n:?}").contains("access_token"));
    }

    #[test]
    fn slack_text_is_escaped() {
        assert_eq!(slack_escape("a <b> & c"), "a &lt;b&gt; &amp; c");
    }
}
