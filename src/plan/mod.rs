//! The plan: a validated playbook with its params bound, in the shape the
//! executor runs and the reviewer reads.
//!
//! `Plan::build(&Playbook, &Params)` (in `build.rs`) resolves step ids to a
//! DAG, orders steps topologically (file order breaks ties), renders every
//! template that depends only on params (values that depend on earlier
//! outputs stay templates, shown symbolically as `<steps.x.output.Y>`), and
//! previews each request. The plan is serializable: `plan -o PLAN.json`
//! writes it, `run PLAN.json` rebuilds it and refuses any difference
//! (`integrity.rs`: canonical JSON, the digest, the comparison).
//!
//! Types in this file are the contract between the planner, the displays and
//! the executor: change them with care (the journal stores plans as JSON).
//!
//! Files: `build.rs` (playbook + params -> plan), `integrity.rs` (canonical
//! JSON, digest, rebuilding a plan file), `refresh.rs` and `drift.rs` (the
//! states a plan was reviewed against), `params.rs` (binding `-p`
//! and `--params`), `render.rs` (run-time templates and conditions, for the
//! executor), `graph.rs` (order, levels, critical path, dot/Mermaid),
//! `worst.rs` (worst-case durations), `display.rs` (text, markdown and JSON
//! plans).

mod build;
pub use build::BuildOptions;
pub mod display;
pub mod drift;
pub mod graph;
pub mod integrity;
pub mod locks;
pub mod params;
pub mod refresh;
pub mod render;
pub mod worst;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cloud::signer::SignatureVersion;
use crate::cloud::{ActionRequest, RequestPreview, Risk};
pub use crate::playbook::notify::{NotifyEvent, NotifyKind, ValueSource};

/// Version of the plan JSON format; bumped on incompatible changes.
pub const PLAN_FORMAT: u32 = 2;

/// A step id, as written in the playbook.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepId(pub String);

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StepId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A whole plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_FORMAT`].
    pub format: u32,
    /// Playbook `name`.
    pub name: String,
    /// Playbook `description`.
    pub description: Option<String>,
    /// Path of the playbook file the plan was built from (in a plan file:
    /// relative to the plan file's directory).
    pub source: String,
    /// SHA-256 (hex) of the playbook file's bytes.
    pub playbook_sha256: String,
    /// Params after defaults and type coercion.
    pub params: BTreeMap<String, Value>,
    /// SHA-256 (hex) of the plan's canonical JSON (see [`integrity`]): what
    /// an approval, `--expect-digest` and `run PLAN.json` are bound to.
    pub digest: String,
    /// Steps in flight at once.
    pub concurrency: usize,
    /// The change window (the playbook's `window`, normalized): `run` and
    /// `resume` refuse outside it, and a run stops starting mutating calls
    /// when it closes (see [`crate::window`] and [`crate::run::window`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<crate::window::Window>,
    /// How every call is signed (`--signature`, else `RUNBOOK_SIGNATURE`,
    /// else the playbook's `defaults.signature`, else V1). In the digest, and
    /// journaled with the run's plan, so `resume` signs as the run did.
    /// Left out of the JSON when V1, so V1 plans read and hash as before.
    #[serde(default, skip_serializing_if = "SignatureVersion::is_v1")]
    pub signature: SignatureVersion,
    /// The region of the steps the playbook gives none
    /// (`ALIBABA_CLOUD_REGION_ID`, else the aliyun CLI profile's
    /// `region_id`), and where it came from. In the digest; a saved plan
    /// and a resumed run keep it, whatever the environment says later.
    /// Only when a step uses it, so plans whose playbook names every region
    /// read and hash as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_region: Option<crate::cloud::region::DefaultRegion>,
    /// Every step, in topological order (file order breaks ties). Steps with
    /// `compensation: true` come last and run only from an `on_failure`.
    pub steps: Vec<PlannedStep>,
    /// Steps grouped in levels that can run together (level N needs only
    /// levels < N). Compensation steps are not in any level.
    pub levels: Vec<Vec<StepId>>,
    /// The longest chain by worst-case duration.
    pub critical_path: Vec<StepId>,
    /// Sum of worst-case durations along the critical path, in seconds.
    pub worst_case_secs: u64,
    /// Steps whose worst case grows with an item count known only at run
    /// time (a wait or sleep over an earlier output, with no step `timeout`):
    /// `worst_case_secs` counts one round of their items.
    #[serde(default)]
    pub worst_case_open: Vec<StepId>,
    /// How many calls of each risk class a full run sends (fan-outs counted
    /// by item count when it is known from params; unknown counts are
    /// reported in `unknown_fan_out`).
    pub blast_radius: BlastRadius,
    /// Where the run's notifications go (`notify`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifyTarget>,
    /// Who must approve the plan (top-level `approvers`, `min_approvals`,
    /// `allow_self_approval`). `None` when the playbook sets none of them:
    /// anyone approves, once (and the plan JSON and digest are as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalPolicy>,
    /// The states `plan --refresh` read, which `run` holds the world to
    /// (drift checks). Not part of the digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observations: Option<Vec<refresh::Observation>>,
}

/// Where a run's notifications go, as the playbook's `notify` says: an
/// `{env: NAME}` URL or secret is read when the run starts, so no token is
/// in the plan (validation refuses one written out).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyTarget {
    /// How it is sent.
    pub kind: NotifyKind,
    /// Where to.
    pub url: ValueSource,
    /// The environment variable holding the signing secret.
    pub secret_env: Option<String>,
    /// The events sent there.
    pub events: Vec<NotifyEvent>,
}

impl NotifyTarget {
    /// The target a valid `notify` entry describes (all events by default).
    pub fn from_spec(n: &crate::playbook::notify::NotifySpec) -> NotifyTarget {
        NotifyTarget {
            kind: n.kind.value,
            url: n.url.value.0.clone(),
            secret_env: n.secret.as_ref().and_then(|s| match &s.value.0 {
                ValueSource::Env(name) => Some(name.clone()),
                ValueSource::Literal(_) => None,
            }),
            events: n.events.as_ref().map_or_else(
                || NotifyEvent::ALL.to_vec(),
                |e| e.value.iter().map(|e| e.value).collect(),
            ),
        }
    }
}

/// Who must approve: the plan (top-level keys) or an `approve` step (the
/// same keys in its mapping form). Evaluated by
/// [`crate::run::approval_policy`] against verified identities.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalPolicy {
    /// RAM user or role names, or ARNs (`acs:ram::ACCOUNT:user/NAME`,
    /// `:role/NAME`, `:root`), as written. Empty: anyone may approve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// How many distinct principals must approve (default
    /// [`DEFAULT_MIN_APPROVALS`]).
    pub min_approvals: u32,
    /// Whether the person who started the run may be one of them (only
    /// meaningful with `approvers`; without, anyone may, the starter too).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_self_approval: bool,
}

impl ApprovalPolicy {
    /// How plans show it: `2 distinct approvers among alice, acs:ram::1:role/ops;
    /// not the person who started the run`.
    pub fn describe(&self) -> String {
        let n = self.min_approvals;
        let who = if n == 1 {
            "1 approver".to_owned()
        } else {
            format!("{n} distinct approvers")
        };
        if self.approvers.is_empty() {
            return format!("{who}, anyone");
        }
        let self_rule = if self.allow_self_approval {
            "the person who started the run may be one"
        } else {
            "not the person who started the run"
        };
        format!("{who} among {}; {self_rule}", self.approvers.join(", "))
    }
}

/// `min_approvals` when the playbook does not say: one approval.
pub const DEFAULT_MIN_APPROVALS: u32 = 1;

/// Counts of calls by risk class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlastRadius {
    /// Read-only calls (not counting wait polls).
    pub read: usize,
    /// Mutating calls.
    pub mutating: usize,
    /// Irreversible calls.
    pub irreversible: usize,
    /// Steps whose fan-out size depends on earlier outputs.
    pub unknown_fan_out: Vec<StepId>,
}

/// One step of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    /// Its id.
    pub id: StepId,
    /// `description`, if written.
    pub description: Option<String>,
    /// Steps that must be done first.
    pub needs: Vec<StepId>,
    /// Run only when this holds (rendered at run time).
    pub when: Option<When>,
    /// Fan-out: a template that renders to an array; each item runs the step
    /// once with `item` bound. `Some` also when the items are known now.
    pub for_each: Option<ForEach>,
    /// What the step does.
    pub kind: StepKind,
    /// Retry policy for its calls.
    pub retry: RetryPolicy,
    /// Whole-step timeout (all attempts, all items), if any. A wait step is
    /// bounded by the larger of this and its own `timeout`.
    pub timeout_secs: Option<u64>,
    /// What a failure of this step does to the run.
    pub on_failure: OnFailure,
    /// Runs only when named by an `on_failure: { run: [...] }`.
    pub compensation: bool,
    /// The highest risk of any call the step makes.
    pub risk: Risk,
    /// Region its calls go to.
    pub region: String,
    /// The RAM role its calls are made as (`role_arn`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// Dotted paths of its response to report (`report:`), in the order
    /// written. Empty (and then left out of the plan JSON) when not asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub report: Vec<String>,
    /// 1-based line of the step in the playbook (for messages).
    pub line: usize,
}

/// A fan-out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForEach {
    /// The template as written (`{{params.file_ids}}`).
    pub template: String,
    /// The items, when they depend only on params.
    pub items: Option<Vec<Value>>,
    /// Items in flight at once for this step (defaults to the run's concurrency).
    pub concurrency: Option<usize>,
}

/// The kinds of step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepKind {
    /// One API call (per item), retried by policy, optionally asserted.
    Call {
        /// The call.
        call: CallPlan,
        /// Fails the step unless this holds on the response.
        assert: Option<Condition>,
    },
    /// Poll a read-only call until `until` holds.
    Wait(WaitPlan),
    /// Sleep for a while.
    Sleep {
        /// How long, in milliseconds.
        millis: u64,
    },
    /// Stop for a human's yes (terminal) or `--approve STEP`.
    Approve {
        /// What the approver is asked.
        message: String,
        /// Who must approve (`approve: {message, approvers, ...}`); `None`:
        /// anyone, once (left out of the plan JSON).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<ApprovalPolicy>,
    },
}

/// A call as planned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallPlan {
    /// What the playbook wrote after `call:` (`dts.StopDtsJob` or `api`).
    pub action: String,
    /// Product code.
    pub product: String,
    /// API version.
    pub version: String,
    /// RPC action.
    pub rpc_action: String,
    /// Risk class.
    pub risk: Risk,
    /// Parameters as written (templates are JSON strings with `{{...}}`).
    pub with: BTreeMap<String, Value>,
    /// Parameters rendered as far as params allow; a value that depends on
    /// an earlier output or `item` is shown as `<steps.x.output.Y>` / `<item>`.
    pub rendered: BTreeMap<String, String>,
    /// The request it would send (first item for a fan-out), redacted.
    pub request: RequestPreview,
}

/// A polling wait.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaitPlan {
    /// The read-only call to poll.
    pub call: CallPlan,
    /// Done when this holds.
    pub until: Condition,
    /// Failed at once when this holds.
    pub fail_if: Option<Condition>,
    /// Poll interval, in milliseconds.
    pub every_millis: u64,
    /// Multiply the interval by this after each poll (1.0: fixed).
    pub backoff: f64,
    /// Upper bound of the interval when backing off, in milliseconds.
    pub max_every_millis: u64,
    /// Give up after this long, in milliseconds.
    pub timeout_millis: u64,
}

/// A test on a JSON value: `select` a dotted path of the response, then match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// Dotted path (`Data.Status`); empty selects the whole response.
    pub select: String,
    /// How the selected value must look.
    pub matcher: Matcher,
}

/// How a selected value is matched. Strings compare case-insensitively
/// (Alibaba's status casing varies between APIs), numbers numerically.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Matcher {
    /// One of these values.
    In(Vec<Value>),
    /// None of these values (a missing value matches).
    NotIn(Vec<Value>),
    /// Exactly this value.
    Equals(Value),
    /// The path exists (true) or not (false).
    Exists(bool),
}

/// A `when:` condition, evaluated at run time against params and outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// A template that must render to a truthy value (not empty, `false`,
    /// `0` or `null`).
    Truthy(String),
    /// A template whose rendered value must match.
    Match {
        /// The template (`{{steps.check.output.Data.Status}}`).
        value: String,
        /// How it must look.
        matcher: Matcher,
    },
}

/// Retry policy of a step's calls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts, the first included (1: no retry).
    pub attempts: u32,
    /// How the delay grows.
    pub backoff: Backoff,
    /// First delay, in milliseconds.
    pub delay_millis: u64,
    /// Largest delay, in milliseconds.
    pub max_delay_millis: u64,
    /// Full jitter: each delay is uniform in `[0, delay]`.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            backoff: Backoff::Exponential,
            delay_millis: 1_000,
            max_delay_millis: 30_000,
            jitter: true,
        }
    }
}

/// How retry delays grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// The same delay every time.
    Fixed,
    /// Doubling from `delay` up to `max_delay`.
    Exponential,
}

/// What a failed step does to the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// No new steps start; steps in flight finish; the run fails (default).
    Abort,
    /// The run goes on; the step is recorded as failed, its dependents are
    /// skipped, and the run ends failed.
    Continue,
    /// Run these compensation steps (in order), then abort.
    Compensate(Vec<StepId>),
}

impl Plan {
    /// The step called `id`.
    pub fn step(&self, id: &str) -> Option<&PlannedStep> {
        self.steps.iter().find(|s| s.id.0 == id)
    }

    /// The product codes the plan's calls and waits go to.
    pub fn products(&self) -> std::collections::BTreeSet<&str> {
        self.steps
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Call { call, .. } => Some(call.product.as_str()),
                StepKind::Wait(w) => Some(w.call.product.as_str()),
                StepKind::Sleep { .. } | StepKind::Approve { .. } => None,
            })
            .collect()
    }
}

/// Builds the request a call would send once its parameters are rendered.
pub fn request_for(
    call: &CallPlan,
    region: &str,
    params: BTreeMap<String, String>,
) -> ActionRequest {
    match crate::cloud::actions::lookup(&call.action) {
        Some(spec) => ActionRequest::typed(spec, region, params),
        None => ActionRequest {
            product: call.product.clone(),
            version: call.version.clone(),
            action: call.rpc_action.clone(),
            region: region.to_owned(),
            query: params,
            body: BTreeMap::new(),
            risk: call.risk,
            role_arn: None,
            identity: None,
        },
    }
}

/// Loads the playbook at `path`, binds params (`--params FILE`, then `-p`
/// pairs) and builds the plan: the one entry `plan`, `run` and `graph` use.
///
/// Exit codes: an invalid playbook, or a plan that cannot be built from it
/// (a rendered value that does not fit its action), is 3; a problem with
/// the params themselves (unknown, missing, ill-typed, not allowed, an
/// unreadable params file) is a usage error, 2.
pub fn load_and_build(
    path: &Path,
    raw_params: &[(String, String)],
    params_file: Option<&Path>,
) -> Result<Plan, crate::Error> {
    load_and_build_with(path, raw_params, params_file, &BuildOptions::default())
}

/// [`load_and_build`] with what the command line adds ([`BuildOptions`]).
pub fn load_and_build_with(
    path: &Path,
    raw_params: &[(String, String)],
    params_file: Option<&Path>,
    options: &BuildOptions,
) -> Result<Plan, crate::Error> {
    let pb = load_playbook(path)?;
    let params = params::bind(&pb, raw_params, params_file)?;
    Plan::build_with(&pb, &params, options).map_err(diagnostics_error)
}

impl Plan {
    /// A note when the default region found now differs from the one this
    /// plan was made with (a saved plan, a journaled run): the plan's is
    /// used, and the operator should know the other is not.
    pub fn default_region_note(&self, now: &crate::cloud::region::RegionLookup) -> Option<String> {
        let (Some(made), Ok(now)) = (&self.default_region, now) else {
            return None;
        };
        (made.region != now.region).then(|| {
            format!(
                "the steps that name no region run in {} ({} when planned); {} now says {}, which is not used",
                made.region,
                made.origin(),
                now.origin(),
                now.region
            )
        })
    }
}

/// Loads and checks a playbook, turning its diagnostics into an exit-3 error.
pub fn load_playbook(path: &Path) -> Result<crate::playbook::Playbook, crate::Error> {
    crate::playbook::Playbook::load(path).map_err(diagnostics_error)
}

/// Rendered diagnostics as the top-level error (exit 3).
pub fn diagnostics_error(d: crate::playbook::Diagnostics) -> crate::Error {
    crate::Error::rendered(crate::ExitCode::InvalidPlaybook, d.summary(), d.render())
}

/// The plan of a playbook given as text, for unit tests.
#[cfg(test)]
pub(crate) fn plan_of_yaml(yaml: &str) -> Plan {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, yaml).unwrap();
    load_and_build(&path, &[], None).unwrap()
}
