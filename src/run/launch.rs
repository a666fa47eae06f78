//! Starting a run: the change window's gate, its id, what it records about where it runs (so a
//! resume can go on the same way), its first journal rows (plan, options,
//! the plan's approval, drifts allowed), and the note about an unfinished
//! earlier run of the same plan.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::exit::journal_error;
use super::identity::VerifiedIdentity;
use super::journal::IdentityRole;
use super::lock::RunLock;
use super::{ApprovalDecision, Journal, RunEvent, RunStatus, TimeScale};
use crate::error::{Error, ExitCode};
use crate::plan::Plan;
use crate::plan::drift::Drift;

/// Where a run's calls go, as asked on the command line (`run`, `resume`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetChoice {
    /// `--endpoint PRODUCT=URL` flags.
    pub endpoints: Vec<String>,
    /// `--sim`: the in-process simulator.
    pub sim: bool,
    /// `--sim-faults`.
    pub sim_faults: Option<String>,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--role-arn`.
    pub role_arn: Option<String>,
    /// `--qps PRODUCT=N` flags.
    pub qps: Vec<String>,
    /// `--time-scale` (only with `--sim`).
    pub time_scale: Option<TimeScale>,
}

/// What a run records about how it was started (the journal's
/// `options_json`), so `resume` can go on the same way.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredOptions {
    /// `--endpoint` flags.
    pub endpoints: Vec<String>,
    /// Against the in-process simulator.
    pub sim: bool,
    /// Started with `--sim`: the run stays a rehearsal for good, whatever
    /// a resume points it at.
    #[serde(default)]
    pub rehearsal: bool,
    /// A fingerprint of the account the run acts as (SHA-256, first 16 hex
    /// digits of the account id; of the AccessKeyId when STS cannot tell).
    #[serde(default)]
    pub account: Option<String>,
    /// `--sim-faults`.
    pub sim_faults: Option<String>,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--role-arn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// `--qps` flags.
    pub qps: Vec<String>,
    /// Steps in flight at once.
    pub concurrency: usize,
    /// `--time-scale` of a rehearsal.
    #[serde(default)]
    pub time_scale: Option<TimeScale>,
}

impl StoredOptions {
    /// What a run started (or resumed) toward `choice`, acting as the
    /// account fingerprinted `account`, records.
    pub fn of(
        choice: &TargetChoice,
        account: Option<String>,
        rehearsal: bool,
        concurrency: usize,
    ) -> StoredOptions {
        StoredOptions {
            endpoints: choice.endpoints.clone(),
            sim: choice.sim,
            rehearsal,
            account,
            sim_faults: choice.sim_faults.clone(),
            profile: choice.profile.clone(),
            role_arn: choice.role_arn.clone(),
            qps: choice.qps.clone(),
            concurrency,
            time_scale: choice.time_scale.filter(|_| choice.sim),
        }
    }

    /// The options recorded as `json` (defaults for what cannot be read).
    pub fn from_json(json: &str) -> StoredOptions {
        serde_json::from_str(json).unwrap_or_default()
    }

    /// Whether the run was rehearsed against the simulator (it stays one).
    pub fn is_rehearsal(&self) -> bool {
        self.rehearsal || self.sim
    }

    /// Whether `other` sends the calls to the same place, signed the same way.
    pub fn same_target(&self, other: &StoredOptions) -> bool {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        // The simulator makes up a new key pair each time; elsewhere the
        // account must be the same (credentials from the environment can
        // change between two commands without any flag changing).
        let same_account = self.sim || self.account == other.account;
        self.sim == other.sim
            && sorted(&self.endpoints) == sorted(&other.endpoints)
            && self.profile == other.profile
            && self.role_arn == other.role_arn
            && same_account
    }
}

/// The change window's gate, before anything is sent: outside the plan's
/// window (narrowed by `--not-before`/`--not-after`, `bounds`) a run is
/// refused with exit 6 and told when it next opens. Inside it, a run that
/// may not finish before it closes gets a warning (returned, to print).
pub fn admit(
    plan: &Plan,
    bounds: crate::window::Bounds,
    now: jiff::Timestamp,
) -> Result<Option<String>, Error> {
    let window = super::RunWindow::new(plan, bounds);
    if window.is_unbounded() {
        return Ok(None);
    }
    let closes = window.admit(now).map_err(|refusal| {
        Error::new(ExitCode::Refused, refusal.to_string()).with_hint(refusal.hint())
    })?;
    let Some(closes) = closes else {
        return Ok(None);
    };
    let left = u64::try_from(closes.as_second() - now.as_second()).unwrap_or(0);
    if left >= plan.worst_case_secs {
        return Ok(None);
    }
    Ok(Some(format!(
        "the window closes at {}, in {}, before the worst case ({}): if the run is still going then, it starts no new change and stops as window_closed (exit 5), to resume in the next opening",
        window.at(closes),
        crate::duration::format(Duration::from_secs(left)),
        crate::duration::format(Duration::from_secs(plan.worst_case_secs)),
    )))
}

/// A new run id: the start time and six random hex digits.
pub fn new_run_id() -> String {
    let t = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let rand = uuid::Uuid::new_v4().simple().to_string();
    format!("{t}-{}", &rand[..6])
}

/// A note when an earlier run of the same plan did not succeed: resuming it
/// would continue it instead of starting over. Read while holding the
/// plan's lock, so an earlier run still `running` has lost its process.
pub fn earlier_run_note(journal: &Journal, digest: &str) -> Option<String> {
    let runs = journal.list_runs().ok()?;
    let earlier = runs
        .iter()
        .find(|r| r.digest == digest && r.status != RunStatus::Succeeded)?;
    let how = if earlier.status == RunStatus::Running {
        "was interrupted"
    } else {
        earlier.status.as_str()
    };
    Some(format!(
        "run {} of this same plan {how}; `runbook resume {}` would continue it instead of starting over",
        earlier.id, earlier.id
    ))
}

/// Journals a new run of `plan` (its plan, `options`, who started it
/// (`starter`, verified), the plan's approvals and the drifts allowed),
/// claims `lock` for it, and returns its id. Nothing has been sent yet; a
/// journal failure says so.
pub async fn create(
    journal: &Journal,
    lock: &RunLock,
    plan: &Plan,
    options: &StoredOptions,
    approvals: &[ApprovalDecision],
    starter: Option<&VerifiedIdentity>,
    drifts: &[Drift],
) -> Result<String, Error> {
    let run_id = new_run_id();
    journal
        .create_run(
            &run_id,
            &plan.name,
            &plan.source,
            &plan.digest,
            serde_json::to_string(plan).unwrap_or_default(),
            serde_json::to_string(options).unwrap_or_default(),
        )
        .await
        .map_err(journal_error)?;
    lock.claim(&run_id);
    if let Some(identity) = starter {
        journal
            .record_identity(
                &run_id,
                IdentityRole::Started,
                identity,
                &super::approve::who(),
            )
            .await
            .map_err(journal_error)?;
    }
    for row in approvals
        .iter()
        .filter_map(|a| a.to_row(None, &plan.digest))
    {
        journal
            .record_approval(&run_id, &row)
            .await
            .map_err(journal_error)?;
    }
    for d in drifts {
        let event = RunEvent::Drift {
            step: d.step.clone(),
            item: d.item.clone(),
            resource: d.resource.clone(),
            reviewed: d.reviewed.clone(),
            current: d.current.clone(),
            allowed: true,
        };
        journal.event(&run_id, &event);
    }
    Ok(run_id)
}
