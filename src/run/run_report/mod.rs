//! The run report: what one run did, for the change ticket
//! (`runbook report RUN_ID --format markdown|json|html`).
//!
//! Built from the journal alone (the run's plan, options, approvals, steps,
//! units, attempts and events), so a report can be written on any host
//! that reads the journal, long after the run. [`RunReport`] is the data,
//! serialized as the JSON format; `markdown.rs` and `html.rs` render it.
//!
//! Also here: the values steps were asked to `report` ([`ReportedTable`]),
//! shown at the end of `run`, in `show` and in the report.
//!
//! Not to be confused with [`super::report`], the live view and summary a
//! run prints while it goes.

mod html;
mod markdown;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;

use serde::Serialize;
use serde_json::Value;

use super::journal::{AttemptRow, IdentityRole, RunRecord, UnitRow};
use super::{AttemptKind, AttemptOutcome, RunEvent, RunStatus, StepStatus};
use crate::cloud::Risk;
use crate::plan::{Plan, PlannedStep, StepKind};

pub use html::html;
pub use markdown::markdown;

/// Version of the report's JSON format; bumped on incompatible changes.
pub const REPORT_FORMAT: u32 = 1;

/// Everything the report says about one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// [`REPORT_FORMAT`].
    pub format: u32,
    /// Which run, of what, and how it ended.
    pub run: RunHeader,
    /// Params the plan was built with.
    pub params: BTreeMap<String, Value>,
    /// Where the calls went.
    pub target: TargetReport,
    /// Approvals, in the order they were given.
    pub approvals: Vec<ApprovalReport>,
    /// Every step of the plan, in plan order, with its items.
    pub steps: Vec<StepReport>,
    /// The values steps were asked to `report`.
    pub reported: Vec<ReportedTable>,
    /// Calls the plan would send against calls that were sent.
    pub blast_radius: BlastRadiusReport,
    /// Compensation steps that ran, and how they ended.
    pub compensations: Vec<CompensationReport>,
    /// Every error: failed attempts and failed units, with RequestIds.
    pub errors: Vec<ErrorReport>,
    /// Notifications sent (or not delivered).
    pub notifications: Vec<NotificationReport>,
}

/// A notification, as journaled.
#[derive(Clone, Debug, Serialize)]
pub struct NotificationReport {
    /// What it was about.
    pub about: crate::plan::NotifyEvent,
    /// How it was sent.
    pub kind: crate::plan::NotifyKind,
    /// Where: scheme, host and path.
    pub target: String,
    /// Whether the receiver accepted it.
    pub delivered: bool,
    /// Attempts made.
    pub attempts: u32,
    /// Why it was not delivered.
    pub error: Option<String>,
    /// When it was journaled.
    pub at: String,
}

/// The notifications among a run's events.
pub fn notifications(events: &[(String, RunEvent)]) -> Vec<NotificationReport> {
    events
        .iter()
        .filter_map(|(at, e)| match e {
            RunEvent::Notified {
                about,
                kind,
                target,
                delivered,
                attempts,
                error,
            } => Some(NotificationReport {
                about: *about,
                kind: *kind,
                target: target.clone(),
                delivered: *delivered,
                attempts: *attempts,
                error: error.clone(),
                at: at.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The run itself.
#[derive(Clone, Debug, Serialize)]
pub struct RunHeader {
    /// Run id.
    pub id: String,
    /// Playbook name.
    pub playbook: String,
    /// Playbook path.
    pub source: String,
    /// SHA-256 of the playbook file.
    pub playbook_sha256: String,
    /// Digest of the plan the run is bound to.
    pub plan_digest: String,
    /// How it ended (or stands).
    pub status: RunStatus,
    /// When it was created.
    pub started_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// From start to end, in seconds.
    pub duration_secs: Option<f64>,
    /// Who abandoned it (`runbook abandon`), when and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abandoned: Option<AbandonedReport>,
}

/// A run abandoned with `runbook abandon`.
#[derive(Clone, Debug, Serialize)]
pub struct AbandonedReport {
    /// Who (`user@host`).
    pub by: String,
    /// From which host.
    pub host: String,
    /// Why, as given.
    pub reason: String,
    /// When it was journaled.
    pub at: String,
}

/// Where the calls went, as the run recorded it.
#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    /// `simulator` (in-process or a local `runbook sim`) or `cloud`.
    pub kind: &'static str,
    /// Started against a simulator: a rehearsal, whatever a resume pointed it at.
    pub rehearsal: bool,
    /// `--endpoint PRODUCT=URL` overrides.
    pub endpoints: Vec<String>,
    /// Regions of the plan's calls.
    pub regions: Vec<String>,
    /// Fingerprint of the AccessKeyId that signed (never the key).
    pub account: Option<String>,
    /// Profile of the credentials file, when one was named.
    pub profile: Option<String>,
    /// Who started the run, verified through STS `GetCallerIdentity`
    /// (`None` for runs from before verified identities, or when STS could
    /// not tell and nothing needed it).
    pub operator: Option<IdentityReport>,
    /// Who resumed it, verified the same way, in order.
    pub resumed_by: Vec<IdentityReport>,
}

/// A verified identity.
#[derive(Clone, Debug, Serialize)]
pub struct IdentityReport {
    /// The ARN STS returned.
    pub arn: String,
    /// Its account.
    pub account_id: String,
    /// The RequestId of the `GetCallerIdentity` call.
    pub request_id: Option<String>,
    /// `user@host` (a label, not verified).
    pub host_user: Option<String>,
    /// When.
    pub at: Option<String>,
}

impl IdentityReport {
    fn of(
        i: &super::journal::IdentityRecord,
        host_user: Option<&str>,
        at: Option<&str>,
    ) -> IdentityReport {
        IdentityReport {
            arn: i.arn.clone(),
            account_id: i.account_id.clone(),
            request_id: i.request_id.clone(),
            host_user: host_user.map(str::to_owned),
            at: at.map(str::to_owned),
        }
    }
}

/// One approval (or rejection).
#[derive(Clone, Debug, Serialize)]
pub struct ApprovalReport {
    /// The step approved (`None`: the whole plan).
    pub step: Option<String>,
    /// `approved` or `rejected`.
    pub verdict: &'static str,
    /// Who, verified through STS (`None` in rows from before verified
    /// identities).
    pub identity: Option<IdentityReport>,
    /// Who, as a label: `user@host`.
    pub by: String,
    /// How: `terminal`, `flag`, `command` or `pre-approval`.
    pub channel: super::journal::ApprovalChannel,
    /// What exactly (`terminal`, `--yes`, `--approve`, ...).
    pub method: String,
    /// Why (a rejection's reason).
    pub reason: Option<String>,
    /// The plan digest it is bound to.
    pub digest: String,
    /// When.
    pub at: String,
}

/// One step.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    /// Step id.
    pub id: String,
    /// `call`, `wait`, `sleep` or `approve`.
    pub kind: &'static str,
    /// The action it calls or polls.
    pub action: Option<String>,
    /// Highest risk of its calls.
    pub risk: Risk,
    /// A compensation step.
    pub compensation: bool,
    /// How it ended (`None`: never started).
    pub status: Option<StepStatus>,
    /// Error text or skip reason.
    pub detail: Option<String>,
    /// When it started.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Its units: one per fan-out item, or one for a step without fan-out.
    pub items: Vec<ItemReport>,
}

/// One unit: a fan-out item or a whole step.
#[derive(Clone, Debug, Serialize)]
pub struct ItemReport {
    /// The item named by its value (`FileId=101`); `None` without fan-out.
    pub item: Option<String>,
    /// How it ended.
    pub status: StepStatus,
    /// What it observed: the status a wait ended on, the value an assert checked.
    pub observed: Option<Observed>,
    /// Calls sent (attempts of the step's call).
    pub calls: usize,
    /// Calls sent again after a failed attempt.
    pub retries: usize,
    /// Polls of a wait.
    pub polls: usize,
    /// Unknown outcomes settled through the status call.
    pub reconciles: Vec<ReconcileReport>,
    /// Every mutating call sent, with its RequestId.
    pub mutating_calls: Vec<CallReport>,
    /// Error text when it failed.
    pub error: Option<String>,
}

/// A value a unit observed.
#[derive(Clone, Debug, Serialize)]
pub struct Observed {
    /// The dotted path read (`Data.Status`).
    pub path: String,
    /// The value there (null when missing).
    pub value: Value,
    /// `until` of a wait, `assert` of a call.
    pub by: &'static str,
}

/// An unknown outcome, settled.
#[derive(Clone, Debug, Serialize)]
pub struct ReconcileReport {
    /// The mutating action whose outcome was unknown.
    pub action: String,
    /// The status read.
    pub observed: Value,
    /// Whether the call had taken effect (true: not sent again).
    pub took_effect: bool,
}

/// A mutating call sent.
#[derive(Clone, Debug, Serialize)]
pub struct CallReport {
    /// RPC action.
    pub action: String,
    /// Risk class.
    pub risk: Risk,
    /// 1-based attempt.
    pub attempt: i64,
    /// `ok`, `error` or `pending` (sent, no answer journaled).
    pub outcome: AttemptOutcome,
    /// RequestId of the answer.
    pub request_id: Option<String>,
    /// When it was sent.
    pub sent_at: String,
}

/// Planned and actual calls by risk class.
#[derive(Clone, Debug, Serialize)]
pub struct BlastRadiusReport {
    /// What the plan said a full run sends (fan-outs of unknown size count once).
    pub planned: RiskCounts,
    /// Steps whose fan-out size was unknown when planned.
    pub unknown_fan_out: Vec<String>,
    /// What was done: reads made, and changes that were answered `ok` or
    /// found to have taken effect (one per unit).
    pub actual: RiskCounts,
    /// Calls sent, retries and reconciled resends included.
    pub sent: RiskCounts,
}

/// Calls by risk class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RiskCounts {
    /// Read-only calls (wait polls and status checks not counted).
    pub read: usize,
    /// Mutating calls.
    pub mutating: usize,
    /// Irreversible calls.
    pub irreversible: usize,
}

impl RiskCounts {
    fn add(&mut self, risk: Risk) {
        match risk {
            Risk::Read => self.read += 1,
            Risk::Mutating => self.mutating += 1,
            Risk::Irreversible => self.irreversible += 1,
        }
    }
}

/// A compensation step that ran.
#[derive(Clone, Debug, Serialize)]
pub struct CompensationReport {
    /// The compensation step.
    pub step: String,
    /// The steps whose failure runs it.
    pub compensates: Vec<String>,
    /// How it ended.
    pub status: StepStatus,
    /// Items it ran over.
    pub items: Vec<String>,
}

/// An error: a failed attempt (an API error), or a unit that failed for
/// another reason (an assert, a wait that timed out or hit `fail_if`).
#[derive(Clone, Debug, Serialize)]
pub struct ErrorReport {
    /// Step id.
    pub step: String,
    /// The item, for a fan-out.
    pub item: Option<String>,
    /// What failed: an attempt's kind (`call`, `poll`, `reconcile`,
    /// `precheck`) or `step` for a unit's own failure.
    pub kind: String,
    /// RPC action (for a unit's failure: of its last answered call).
    pub action: Option<String>,
    /// 1-based attempt (attempts only).
    pub attempt: Option<i64>,
    /// Error code (attempts only).
    pub code: Option<String>,
    /// Error message, or the unit's error text.
    pub message: Option<String>,
    /// RequestId of the failed answer, or of the unit's last answered call.
    pub request_id: Option<String>,
    /// HTTP status (attempts only).
    pub http_status: Option<i64>,
    /// When the attempt was sent, or the unit ended.
    pub at: Option<String>,
}

/// The values one step was asked to `report`: a row per unit.
#[derive(Clone, Debug, Serialize)]
pub struct ReportedTable {
    /// Step id.
    pub step: String,
    /// The paths, in the order written (the columns).
    pub paths: Vec<String>,
    /// One row per unit that ran.
    pub rows: Vec<ReportedRow>,
}

/// One unit's reported values.
#[derive(Clone, Debug, Serialize)]
pub struct ReportedRow {
    /// The item named by its value; `None` without fan-out.
    pub item: Option<String>,
    /// How the unit ended.
    pub status: StepStatus,
    /// The value at each path (null when missing or when the unit failed).
    pub values: Vec<Value>,
    /// Error text, when the unit failed.
    pub error: Option<String>,
}

/// The subset of the run's options (`options_json`, written by `cli/run.rs`)
/// that the report shows; other keys are ignored.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RecordedTarget {
    endpoints: Vec<String>,
    sim: bool,
    rehearsal: bool,
    account: Option<String>,
    profile: Option<String>,
}

impl RunReport {
    /// The report of a run: its journal record (status as observed), the
    /// plan it ran and its journaled events.
    pub fn build(record: &RunRecord, plan: &Plan, events: &[(String, RunEvent)]) -> RunReport {
        let r = &record.run;
        let recorded: RecordedTarget =
            serde_json::from_str(&record.options_json).unwrap_or_default();
        let endpoints_local = !recorded.endpoints.is_empty()
            && recorded.endpoints.iter().all(|e| {
                e.split_once('=')
                    .is_some_and(|(_, url)| crate::cloud::endpoint::is_loopback(url))
            });
        let kind = if recorded.sim || endpoints_local {
            "simulator"
        } else {
            "cloud"
        };
        let regions: BTreeSet<String> = plan
            .steps
            .iter()
            .filter(|s| action_of(s).is_some())
            .map(|s| s.region.clone())
            .collect();
        let duration_secs = r.finished_at.as_deref().and_then(|end| {
            let start: jiff::Timestamp = r.created_at.parse().ok()?;
            let end: jiff::Timestamp = end.parse().ok()?;
            Some(end.duration_since(start).as_secs_f64())
        });
        let labels = Labels::of(&record.units);
        let by_unit = ByUnit::of(record, events);
        let steps: Vec<StepReport> = plan
            .steps
            .iter()
            .map(|s| step_report(s, record, &by_unit, &labels))
            .collect();
        let mut actual = RiskCounts::default();
        let mut sent = RiskCounts::default();
        for a in &record.attempts {
            if a.kind == AttemptKind::Call {
                sent.add(a.risk);
            }
        }
        for s in &steps {
            for i in &s.items {
                let changed = i
                    .mutating_calls
                    .iter()
                    .any(|c| c.outcome == AttemptOutcome::Ok)
                    || i.reconciles.iter().any(|r| r.took_effect);
                if changed {
                    actual.add(s.risk);
                } else if s.risk == Risk::Read && i.calls > 0 {
                    actual.add(Risk::Read);
                }
            }
        }
        let compensations = plan
            .steps
            .iter()
            .filter(|s| s.compensation)
            .filter_map(|s| {
                let row = record.steps.iter().find(|r| r.step_id == s.id.as_str())?;
                let compensates = plan
                    .steps
                    .iter()
                    .filter(|f| {
                        matches!(&f.on_failure, crate::plan::OnFailure::Compensate(ids) if ids.contains(&s.id))
                    })
                    .map(|f| f.id.to_string())
                    .collect();
                Some(CompensationReport {
                    step: s.id.to_string(),
                    compensates,
                    status: row.status,
                    items: record
                        .units
                        .iter()
                        .filter(|u| u.step_id == s.id.as_str())
                        .filter_map(|u| labels.get(u))
                        .collect(),
                })
            })
            .collect();
        let mut errors: Vec<ErrorReport> = record
            .attempts
            .iter()
            .filter(|a| a.outcome == AttemptOutcome::Error)
            .map(|a| ErrorReport {
                step: a.step_id.clone(),
                item: labels.at(&a.step_id, a.item),
                kind: a.kind.to_string(),
                action: Some(a.action.clone()),
                attempt: Some(a.attempt),
                code: a.error_code.clone(),
                message: a.error_message.clone(),
                request_id: a.request_id.clone(),
                http_status: a.http_status,
                at: Some(a.sent_at.clone()),
            })
            .collect();
        for u in record
            .units
            .iter()
            .filter(|u| u.status == StepStatus::Failed)
        {
            let last = record
                .attempts
                .iter()
                .rev()
                .find(|a| a.step_id == u.step_id && a.item == u.item && a.request_id.is_some());
            errors.push(ErrorReport {
                step: u.step_id.clone(),
                item: labels.get(u),
                kind: "step".to_owned(),
                action: last.map(|a| a.action.clone()),
                attempt: None,
                code: None,
                message: u.error.clone(),
                request_id: last.and_then(|a| a.request_id.clone()),
                http_status: None,
                at: u.finished_at.clone(),
            });
        }
        RunReport {
            format: REPORT_FORMAT,
            run: RunHeader {
                id: r.id.clone(),
                playbook: r.name.clone(),
                source: r.source.clone(),
                playbook_sha256: plan.playbook_sha256.clone(),
                plan_digest: r.digest.clone(),
                status: r.status,
                started_at: r.created_at.clone(),
                finished_at: r.finished_at.clone(),
                duration_secs,
                abandoned: events.iter().rev().find_map(|(at, e)| match e {
                    RunEvent::Abandoned { by, host, reason } => Some(AbandonedReport {
                        by: by.clone(),
                        host: host.clone(),
                        reason: reason.clone(),
                        at: at.clone(),
                    }),
                    _ => None,
                }),
            },
            params: plan.params.clone(),
            target: TargetReport {
                kind,
                rehearsal: recorded.rehearsal || recorded.sim,
                endpoints: recorded.endpoints,
                regions: regions.into_iter().collect(),
                account: recorded.account,
                profile: recorded.profile,
                operator: record
                    .identities
                    .iter()
                    .find(|i| i.role == IdentityRole::Started)
                    .map(|i| IdentityReport::of(&i.identity, Some(&i.operator), Some(&i.at))),
                resumed_by: record
                    .identities
                    .iter()
                    .filter(|i| i.role == IdentityRole::Resumed)
                    .map(|i| IdentityReport::of(&i.identity, Some(&i.operator), Some(&i.at)))
                    .collect(),
            },
            approvals: record
                .approvals
                .iter()
                .map(|a| ApprovalReport {
                    step: a.step_id.clone(),
                    verdict: a.verdict.as_str(),
                    identity: a
                        .identity
                        .as_ref()
                        .map(|i| IdentityReport::of(i, None, None)),
                    by: a.approved_by.clone(),
                    channel: a.channel,
                    method: a.method.clone(),
                    reason: a.reason.clone(),
                    digest: a.digest.clone(),
                    at: a.at.clone(),
                })
                .collect(),
            reported: reported(plan, record),
            steps,
            blast_radius: BlastRadiusReport {
                planned: RiskCounts {
                    read: plan.blast_radius.read,
                    mutating: plan.blast_radius.mutating,
                    irreversible: plan.blast_radius.irreversible,
                },
                unknown_fan_out: plan
                    .blast_radius
                    .unknown_fan_out
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                actual,
                sent,
            },
            compensations,
            errors,
            notifications: notifications(events),
        }
    }

    /// The JSON format.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Item labels of a run's units, by (step, item index).
struct Labels(BTreeMap<(String, i64), String>);

impl Labels {
    fn of(units: &[UnitRow]) -> Labels {
        Labels(
            units
                .iter()
                .filter_map(|u| {
                    let value: Value = serde_json::from_str(u.item_json.as_deref()?).ok()?;
                    Some((
                        (u.step_id.clone(), u.item),
                        super::label::item_label(&value),
                    ))
                })
                .collect(),
        )
    }

    fn get(&self, u: &UnitRow) -> Option<String> {
        self.at(&u.step_id, u.item)
    }

    fn at(&self, step: &str, item: i64) -> Option<String> {
        self.0.get(&(step.to_owned(), item)).cloned()
    }
}

/// The action a step calls or polls.
fn action_of(s: &PlannedStep) -> Option<&crate::plan::CallPlan> {
    match &s.kind {
        StepKind::Call { call, .. } => Some(call),
        StepKind::Wait(w) => Some(&w.call),
        StepKind::Sleep { .. } | StepKind::Approve { .. } => None,
    }
}

fn kind_name(s: &PlannedStep) -> &'static str {
    match &s.kind {
        StepKind::Call { .. } => "call",
        StepKind::Wait(_) => "wait",
        StepKind::Sleep { .. } => "sleep",
        StepKind::Approve { .. } => "approve",
    }
}

/// A run's attempts and the events about one unit (polls, reconciles),
/// grouped by unit (step, item) in their order, so that each unit's are
/// found at once: a report of a 6,000-item run is not 6,000 scans of
/// every attempt and event.
struct ByUnit<'a> {
    attempts: HashMap<(&'a str, i64), Vec<&'a AttemptRow>>,
    events: HashMap<(&'a str, i64), Vec<&'a RunEvent>>,
}

impl<'a> ByUnit<'a> {
    fn of(record: &'a RunRecord, events: &'a [(String, RunEvent)]) -> ByUnit<'a> {
        let mut by = ByUnit {
            attempts: HashMap::new(),
            events: HashMap::new(),
        };
        for a in &record.attempts {
            by.attempts
                .entry((a.step_id.as_str(), a.item))
                .or_default()
                .push(a);
        }
        for (_, e) in events {
            if let RunEvent::Polled { step, item, .. } | RunEvent::Reconciled { step, item, .. } = e
            {
                let index = item.as_ref().map_or(0, |i| i.index);
                by.events
                    .entry((step.as_str(), i64::try_from(index).unwrap_or(i64::MAX)))
                    .or_default()
                    .push(e);
            }
        }
        by
    }

    fn attempts(&self, u: &'a UnitRow) -> &[&'a AttemptRow] {
        self.attempts
            .get(&(u.step_id.as_str(), u.item))
            .map_or(&[], Vec::as_slice)
    }

    fn events(&self, u: &'a UnitRow) -> &[&'a RunEvent] {
        self.events
            .get(&(u.step_id.as_str(), u.item))
            .map_or(&[], Vec::as_slice)
    }
}

fn step_report<'a>(
    s: &PlannedStep,
    record: &'a RunRecord,
    by_unit: &ByUnit<'a>,
    labels: &Labels,
) -> StepReport {
    let id = s.id.as_str();
    let row = record.steps.iter().find(|r| r.step_id == id);
    let items = record
        .units
        .iter()
        .filter(|u| u.step_id == id)
        .map(|u| item_report(s, u, by_unit.attempts(u), by_unit.events(u), labels))
        .collect();
    StepReport {
        id: id.to_owned(),
        kind: kind_name(s),
        action: action_of(s).map(|c| format!("{}.{}", c.product, c.rpc_action)),
        risk: s.risk,
        compensation: s.compensation,
        status: row.map(|r| r.status),
        detail: row.and_then(|r| r.detail.clone()),
        started_at: row.and_then(|r| r.started_at.clone()),
        finished_at: row.and_then(|r| r.finished_at.clone()),
        items,
    }
}

/// The report of unit `u` of step `s`, from its attempts and events (see
/// [`ByUnit`]).
fn item_report(
    s: &PlannedStep,
    u: &UnitRow,
    attempts: &[&AttemptRow],
    events: &[&RunEvent],
    labels: &Labels,
) -> ItemReport {
    let calls = attempts
        .iter()
        .filter(|a| a.kind == AttemptKind::Call)
        .count();
    let polls = attempts
        .iter()
        .filter(|a| a.kind == AttemptKind::Poll)
        .count();
    let output: Option<Value> = u
        .output_json
        .as_deref()
        .and_then(|o| serde_json::from_str(o).ok());
    let last_poll = events.iter().rev().find_map(|e| match e {
        RunEvent::Polled { value, .. } => Some(value.clone()),
        _ => None,
    });
    let observed = match &s.kind {
        StepKind::Wait(w) => Some(Observed {
            path: w.until.select.clone(),
            value: output
                .as_ref()
                .and_then(|o| crate::cloud::select(o, &w.until.select).cloned())
                .or(last_poll)
                .unwrap_or(Value::Null),
            by: "until",
        }),
        StepKind::Call {
            assert: Some(c), ..
        } => Some(Observed {
            path: c.select.clone(),
            value: output
                .as_ref()
                .and_then(|o| crate::cloud::select(o, &c.select).cloned())
                .or_else(|| last_answer(attempts, &c.select))
                .unwrap_or(Value::Null),
            by: "assert",
        }),
        _ => None,
    };
    let reconciles = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Reconciled {
                action,
                observed,
                took_effect,
                ..
            } => Some(ReconcileReport {
                action: action.clone(),
                observed: observed.clone(),
                took_effect: *took_effect,
            }),
            _ => None,
        })
        .collect();
    ItemReport {
        item: labels.get(u),
        status: u.status,
        observed,
        calls,
        retries: calls.saturating_sub(1),
        polls,
        reconciles,
        mutating_calls: attempts
            .iter()
            .filter(|a| a.kind == AttemptKind::Call && a.risk.mutates())
            .map(|a| CallReport {
                action: a.action.clone(),
                risk: a.risk,
                attempt: a.attempt,
                outcome: a.outcome,
                request_id: a.request_id.clone(),
                sent_at: a.sent_at.clone(),
            })
            .collect(),
        error: u.error.clone(),
    }
}

/// The value at `path` in the last answered call of a unit (an assert that
/// failed leaves no output, but its answer is journaled).
fn last_answer(attempts: &[&AttemptRow], path: &str) -> Option<Value> {
    attempts
        .iter()
        .rev()
        .filter(|a| a.kind == AttemptKind::Call)
        .find_map(|a| {
            let body: Value = serde_json::from_str(a.response_json.as_deref()?).ok()?;
            crate::cloud::select(&body, path).cloned()
        })
}

/// The values of every step with `report`, a row per unit that ran, in plan
/// order: what `run` prints at its end, `show` and the report.
pub fn reported(plan: &Plan, record: &RunRecord) -> Vec<ReportedTable> {
    let labels = Labels::of(&record.units);
    plan.steps
        .iter()
        .filter(|s| !s.report.is_empty())
        .filter_map(|s| {
            let rows: Vec<ReportedRow> = record
                .units
                .iter()
                .filter(|u| u.step_id == s.id.as_str())
                .map(|u| {
                    let output: Option<Value> = u
                        .output_json
                        .as_deref()
                        .and_then(|o| serde_json::from_str(o).ok());
                    ReportedRow {
                        item: labels.get(u),
                        status: u.status,
                        values: s
                            .report
                            .iter()
                            .map(|p| {
                                output
                                    .as_ref()
                                    .and_then(|o| crate::cloud::select(o, p).cloned())
                                    .unwrap_or(Value::Null)
                            })
                            .collect(),
                        error: u.error.clone(),
                    }
                })
                .collect();
            (!rows.is_empty()).then(|| ReportedTable {
                step: s.id.to_string(),
                paths: s.report.clone(),
                rows,
            })
        })
        .collect()
}

/// A reported value as one line of text: strings as they are, `-` for
/// null, anything else as JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Writes the reported values as aligned text tables (for `run` and `show`).
/// Write through a [`crate::safe_text::SafeWriter`]: values are the
/// service's.
pub fn write_reported(tables: &[ReportedTable], out: &mut impl Write) -> std::io::Result<()> {
    if tables.is_empty() {
        return Ok(());
    }
    writeln!(out, "reported values:")?;
    for t in tables {
        writeln!(out, "  {}", t.step)?;
        let fan_out = t.rows.iter().any(|r| r.item.is_some());
        let mut header: Vec<String> = Vec::new();
        if fan_out {
            header.push("ITEM".to_owned());
        }
        header.extend(t.paths.iter().cloned());
        let mut lines: Vec<Vec<String>> = vec![header];
        for r in &t.rows {
            let mut cells = Vec::new();
            if fan_out {
                cells.push(r.item.clone().unwrap_or_default());
            }
            match (&r.error, r.status) {
                (Some(e), _) => {
                    cells.push(format!("{}: {}", r.status, one_line(e)));
                }
                (None, StepStatus::Succeeded) => {
                    cells.extend(r.values.iter().map(|v| one_line(&value_text(v))));
                }
                (None, status) => cells.push(status.to_string()),
            }
            lines.push(cells);
        }
        let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                lines
                    .iter()
                    .filter(|l| l.len() > c + 1)
                    .filter_map(|l| l.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for l in &lines {
            let mut line = String::from("   ");
            for (c, cell) in l.iter().enumerate() {
                line.push(' ');
                line.push_str(cell);
                if c + 1 < l.len() {
                    let pad = widths[c].saturating_sub(cell.chars().count());
                    line.push_str(&" ".repeat(pad + 1));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    Ok(())
}

/// Text on one line: line breaks written as `\n`.
fn one_line(s: &str) -> String {
    s.replace('\r', "\\r").replace('\n', "\\n")
}
