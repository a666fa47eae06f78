//! `plan --refresh`: a dry run that reads the world and cannot write to it.
//!
//! For every mutating call in the plan whose parameters are known now, the
//! action's status call (from the catalogue) is sent and the resource's
//! current state compared with the states that mean the call has taken
//! effect: the step would change it, or would be a no-op. Only actions the
//! catalogue types as `read` are ever sent: the API is wrapped in a guard
//! that refuses anything else, whatever the plan says.

use std::fmt::Write as _;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::render::{self, Scope};
use super::{Plan, StepKind};
use crate::cloud::{self, ActionRequest, ApiError, CallFuture, CloudApi};

/// What the status call says about one step (or one fan-out item).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The resource is not in a done state: the step would change it.
    WillChange,
    /// The resource is already in a done state: the call would be a no-op.
    NoOp,
    /// Could not tell (see the note).
    Unknown,
}

impl Verdict {
    /// How the verdict reads in a plan and in messages.
    pub fn words(&self) -> &'static str {
        match self {
            Verdict::WillChange => "would change it",
            Verdict::NoOp => "no-op: already done",
            Verdict::Unknown => "unknown",
        }
    }
}

/// One resource's current state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Step id.
    pub step: String,
    /// Fan-out item, when the step fans out.
    pub item: Option<Value>,
    /// The mutating action the step would send.
    pub action: String,
    /// The read-only status action that was called.
    pub status_action: Option<String>,
    /// Dotted path of the status value.
    pub select: Option<String>,
    /// The value read just now.
    pub observed: Option<Value>,
    /// What the step would do to it.
    pub verdict: Verdict,
    /// Why the verdict is unknown, or the RequestId of the read.
    pub note: Option<String>,
    /// The resource read: the status action and the parameters it was
    /// called with (`GetDISyncInstanceInfo FileId=11 ProjectId=10000`).
    #[serde(default)]
    pub resource: Option<String>,
    /// RequestId of the status read.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// Refuses every call the catalogue does not type as read-only.
struct ReadOnly<'a>(&'a dyn CloudApi);

impl CloudApi for ReadOnly<'_> {
    fn call<'a>(&'a self, req: &'a ActionRequest) -> CallFuture<'a> {
        let typed_read = req.spec().is_some_and(|s| !s.risk.mutates());
        if typed_read && !req.risk.mutates() {
            self.0.call(req)
        } else {
            Box::pin(async move {
                Err(ApiError::new(
                    "Refused.NotReadOnly",
                    format!(
                        "plan --refresh sends only read-only status calls; {} is not one",
                        req.action
                    ),
                    None,
                ))
            })
        }
    }
}

/// Reads the current state of every resource a mutating step would touch.
pub async fn refresh(plan: &Plan, api: &dyn CloudApi) -> Vec<Observation> {
    let guard = ReadOnly(api);
    let params = serde_json::to_value(&plan.params).unwrap_or(Value::Null);
    let mut out = Vec::new();
    for step in &plan.steps {
        let StepKind::Call { call, .. } = &step.kind else {
            continue;
        };
        if !call.risk.mutates() {
            continue;
        }
        let unknown = |item: Option<Value>, note: String| Observation {
            step: step.id.0.clone(),
            item,
            action: call.action.clone(),
            status_action: None,
            select: None,
            observed: None,
            verdict: Verdict::Unknown,
            note: Some(note),
            resource: None,
            request_id: None,
        };
        let Some(effect) = cloud::actions::lookup(&call.action).and_then(|s| s.effect.as_ref())
        else {
            out.push(unknown(
                None,
                format!("{} has no status call in the catalogue", call.action),
            ));
            continue;
        };
        let Some(status_spec) = cloud::actions::lookup(effect.status_action) else {
            continue;
        };
        let items: Vec<Option<Value>> = match &step.for_each {
            None => vec![None],
            Some(fe) => match &fe.items {
                Some(items) => items.iter().cloned().map(Some).collect(),
                None => {
                    out.push(unknown(
                        None,
                        "the items are known only at run time".to_owned(),
                    ));
                    continue;
                }
            },
        };
        for item in items {
            let mut scope = Scope {
                params: Some(&params),
                steps: None,
                item: None,
                failed: None,
            };
            if let Some(v) = &item {
                scope = scope.with_item(v);
            }
            let rendered = match render::render_params_in(&call.with, scope) {
                Ok(p) => p,
                Err(_) => {
                    out.push(unknown(
                        item,
                        "its parameters depend on earlier steps' outputs".to_owned(),
                    ));
                    continue;
                }
            };
            let req = super::request_for(call, &step.region, rendered);
            let carried = effect
                .carry
                .iter()
                .filter_map(|(from, to)| {
                    req.query
                        .get(*from)
                        .or_else(|| req.body.get(*from))
                        .map(|v| ((*to).to_owned(), v.clone()))
                })
                .collect();
            let resource = resource_label(effect.status_action, &carried);
            let mut status_req = ActionRequest::typed(status_spec, &step.region, carried);
            status_req.role_arn.clone_from(&step.role_arn);
            let (observed, verdict, note) = match read(&guard, &status_req, step).await {
                Ok(resp) => {
                    let observed = cloud::select(&resp.body, effect.select).cloned();
                    let done = observed
                        .as_ref()
                        .and_then(Value::as_str)
                        .is_some_and(|s| effect.done.iter().any(|d| d.eq_ignore_ascii_case(s)));
                    let verdict = if done {
                        Verdict::NoOp
                    } else {
                        Verdict::WillChange
                    };
                    (
                        observed,
                        verdict,
                        resp.request_id.map(|r| format!("RequestId {r}")),
                    )
                }
                Err(e) => (None, Verdict::Unknown, Some(e.to_string())),
            };
            out.push(Observation {
                step: step.id.0.clone(),
                item,
                action: call.action.clone(),
                status_action: Some(effect.status_action.to_owned()),
                select: Some(effect.select.to_owned()),
                observed,
                request_id: note
                    .as_deref()
                    .and_then(|n| n.strip_prefix("RequestId "))
                    .map(str::to_owned),
                verdict,
                note,
                resource: Some(resource),
            });
        }
    }
    out
}

/// `GetDISyncInstanceInfo FileId=11 ProjectId=10000 TaskType=DI_REALTIME`:
/// which resource a status read is about.
fn resource_label(
    status_action: &str,
    carried: &std::collections::BTreeMap<String, String>,
) -> String {
    let mut s = status_action
        .rsplit('.')
        .next()
        .unwrap_or(status_action)
        .to_owned();
    for (k, v) in carried {
        let _ = write!(s, " {k}={v}");
    }
    s
}

/// Sends a status read. A read is a read: its transient failures
/// (throttling, 5xx, timeouts, dropped connections) are retried with the
/// step's back-off, at least `x-acs-retry-after`, until the step's `timeout`
/// (15 minutes without one); a permanent error ends it at once.
async fn read(
    api: &dyn CloudApi,
    req: &ActionRequest,
    step: &super::PlannedStep,
) -> Result<cloud::ApiResponse, ApiError> {
    use crate::run::retry::{Backoff, READ_LIMIT};
    let limit = step.timeout_secs.map_or(READ_LIMIT, Duration::from_secs);
    let deadline = Instant::now() + limit;
    let mut backoff = Backoff::unbounded(&step.retry, rand::random());
    loop {
        match api.call(req).await {
            Err(e) if e.retryable() => {
                let delay = backoff
                    .next()
                    .unwrap_or_default()
                    .max(e.retry_after.unwrap_or_default());
                if Instant::now() + delay >= deadline {
                    return Err(e);
                }
                tokio::time::sleep(delay).await;
            }
            answer => return answer,
        }
    }
}

/// The observations as a text section.
pub fn render_text(observations: &[Observation]) -> String {
    let mut s = String::from("\ncurrent state (read just now through read-only status calls):\n");
    if observations.is_empty() {
        s.push_str("  no mutating steps\n");
    }
    for o in observations {
        let item = o
            .item
            .as_ref()
            .map(|i| format!("[{i}]"))
            .unwrap_or_default();
        let value = match (&o.select, &o.observed) {
            (Some(sel), Some(v)) => format!("{sel} = {v}"),
            (Some(sel), None) => format!("{sel} missing"),
            _ => String::new(),
        };
        let verdict = o.verdict.words();
        let _ = write!(s, "  {}{item}  {}  {value}  -> {verdict}", o.step, o.action);
        if o.verdict == Verdict::Unknown
            && let Some(note) = &o.note
        {
            let _ = write!(s, " ({note})");
        }
        s.push('\n');
    }
    let changes = observations
        .iter()
        .filter(|o| o.verdict == Verdict::WillChange)
        .count();
    let noops = observations
        .iter()
        .filter(|o| o.verdict == Verdict::NoOp)
        .count();
    let unknown = observations
        .iter()
        .filter(|o| o.verdict == Verdict::Unknown)
        .count();
    let _ = writeln!(
        s,
        "  {changes} would change, {noops} no-op, {unknown} unknown"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{ApiResponse, Risk};

    struct Echo;
    impl CloudApi for Echo {
        fn call<'a>(&'a self, _req: &'a ActionRequest) -> CallFuture<'a> {
            Box::pin(async {
                Ok(ApiResponse {
                    body: Value::Null,
                    request_id: None,
                    http_status: 200,
                })
            })
        }
    }

    #[tokio::test]
    async fn the_guard_refuses_mutating_and_untyped_calls() {
        let spec = cloud::actions::lookup("dataworks.TerminateDISyncInstance").unwrap();
        let terminate = ActionRequest::typed(spec, "cn-shanghai", Default::default());
        let err = ReadOnly(&Echo).call(&terminate).await.unwrap_err();
        assert_eq!(err.code, "Refused.NotReadOnly");
        let mut generic = ActionRequest::typed(
            cloud::actions::lookup("dts.DescribeDtsJobDetail").unwrap(),
            "",
            Default::default(),
        );
        generic.action = "DeleteDtsJob".into();
        generic.risk = Risk::Read;
        assert!(
            ReadOnly(&Echo).call(&generic).await.is_err(),
            "untyped actions are refused even if marked read"
        );
        let read = ActionRequest::typed(
            cloud::actions::lookup("dts.DescribeDtsJobDetail").unwrap(),
            "",
            Default::default(),
        );
        assert!(ReadOnly(&Echo).call(&read).await.is_ok());
    }
}
