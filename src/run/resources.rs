//! Locks on resources: two runs, from any hosts, of any playbooks, that
//! would mutate the same resource must not overlap.
//!
//! A lock key is (account, region, product, kind, id). The catalogue says,
//! for each typed mutating action, which parameters identify the resource
//! it mutates ([`crate::cloud::actions::Locks`]): a DTS task by `DtsJobId`,
//! a DI node by `ProjectId` + `FileId`, a DI job by `DIJobId`. Generic
//! `api` calls lock nothing (the engine cannot tell what they act on), and
//! `plan` says so.
//!
//! The account is the cloud account the call acts in, as a fingerprint
//! (see [`crate::cloud::sts::account_fingerprint`]): for a step with a
//! `role_arn`, the role's account (from the ARN, known before any call);
//! else the account of the run's credentials, as STS `GetCallerIdentity`
//! named it when the run started (the fingerprint `runs` shows), or, when
//! STS could not tell, the fingerprint of the AccessKeyId (two keys of one
//! account then do not exclude each other). A rehearsal against the
//! in-process simulator (`--sim`) acts on a world of its own: its account is
//! `rehearsal:RUN_ID`, so it never contends with anything else.
//!
//! When locks are taken:
//! - the resources known from params (every mutating step's, every item's
//!   when the items are known, compensations' too) all at once, in one
//!   transaction, after the run is claimed and before its first call:
//!   refused, the run sends nothing and the command exits 6, naming the
//!   holder ([`ResourceLocks::take_known`]);
//! - a resource known only from earlier steps' outputs, before its first
//!   mutating call: held elsewhere, that unit fails (a resumable step
//!   failure naming the holder) and nothing is sent for it
//!   ([`ResourceLocks::ensure`]).
//!
//! How long they hold: until the run ends (succeeded, failed, cancelled,
//! rejected), including while it is parked on purpose (window closed,
//! waiting for an approval), with no process. A run whose process died
//! loses them when its lease runs out; its resume takes them again (and is
//! refused if another run has them now). `runbook abandon` ends a dead or
//! parked run and releases its locks. The journal decides all this in the
//! statement that takes a lock (see `journal/locks.rs`).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Mutex;

use serde::Serialize;

use super::{Journal, JournalError};
use crate::cloud::ActionRequest;
use crate::cloud::actions;
use crate::error::{Error, ExitCode};
use crate::plan::{Plan, PlannedStep, StepKind};

/// What a lock is on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ResourceKey {
    /// Fingerprint of the cloud account (or `rehearsal:RUN_ID`).
    pub account: String,
    /// Region.
    pub region: String,
    /// Product code (`dts`, `dataworks`).
    pub product: String,
    /// Kind of resource in the product (`job`, `di-node`, `di-job`).
    pub kind: String,
    /// Its identifying parameters, `Name=value` joined by `,`.
    pub id: String,
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} in {} (account {})",
            self.product, self.kind, self.id, self.region, self.account
        )
    }
}

/// Who holds a lock another run wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    /// The resource.
    pub key: ResourceKey,
    /// The run that holds it.
    pub run_id: String,
    /// Its operator (`user@host`).
    pub operator: Option<String>,
    /// Its host.
    pub host: Option<String>,
    /// Its playbook's name.
    pub playbook: Option<String>,
    /// The step of that run that took it.
    pub step: Option<String>,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is locked by run {} (playbook {}, operator {}, host {})",
            self.key,
            self.run_id,
            self.playbook.as_deref().unwrap_or("?"),
            self.operator.as_deref().unwrap_or("?"),
            self.host.as_deref().unwrap_or("?")
        )
    }
}

/// The resource a request of a typed mutating action changes, in
/// `account` (`None`: a read, or an action that locks nothing).
pub fn key_of(req: &ActionRequest, account: &str) -> Option<ResourceKey> {
    let (kind, id) = req.resource()?;
    Some(ResourceKey {
        account: account.to_owned(),
        region: req.region.clone(),
        product: req.product.clone(),
        kind: kind.to_owned(),
        id,
    })
}

/// The account of a run's lock keys (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockAccount {
    /// The run's own: its credentials' account fingerprint, or
    /// `rehearsal:RUN_ID`.
    own: String,
    rehearsal: bool,
}

impl LockAccount {
    /// For run `run_id` acting as the account fingerprinted `account`
    /// (`None`: unknown), against the in-process simulator when `rehearsal`.
    pub fn new(run_id: &str, account: Option<&str>, rehearsal: bool) -> LockAccount {
        let own = match account {
            _ if rehearsal => format!("rehearsal:{run_id}"),
            Some(a) => a.to_owned(),
            None => "unknown".to_owned(),
        };
        LockAccount { own, rehearsal }
    }

    /// The account `step`'s calls act in.
    pub fn of(&self, step: &PlannedStep) -> String {
        if self.rehearsal {
            return self.own.clone();
        }
        step.role_arn
            .as_deref()
            .and_then(crate::cloud::sts::role_account)
            .map_or_else(|| self.own.clone(), crate::cloud::sts::account_fingerprint)
    }
}

/// Every resource known from params that the plan's typed mutating calls
/// would change, with the first step that does.
pub fn known_keys(plan: &Plan, account: &LockAccount) -> Vec<(String, ResourceKey)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for step in &plan.steps {
        let StepKind::Call { call, .. } = &step.kind else {
            continue;
        };
        if actions::lookup(&call.action).is_none() || !call.risk.mutates() {
            continue;
        }
        let account = account.of(step);
        for req in crate::plan::locks::requests_known(plan, step).unwrap_or_default() {
            if let Some(key) = key_of(&req, &account)
                && seen.insert(key.clone())
            {
                out.push((step.id.0.clone(), key));
            }
        }
    }
    out
}

/// Why a run may not go on.
#[derive(Debug)]
pub enum LockRefusal {
    /// Another live run holds a resource.
    Held(LockHolder),
    /// The journal failed.
    Journal(JournalError),
}

impl From<JournalError> for LockRefusal {
    fn from(e: JournalError) -> LockRefusal {
        LockRefusal::Journal(e)
    }
}

/// The locks a run holds (or takes as it goes).
#[derive(Debug)]
pub struct ResourceLocks {
    journal: Journal,
    run_id: String,
    account: LockAccount,
    held: Mutex<BTreeSet<ResourceKey>>,
}

impl ResourceLocks {
    /// Takes, for run `run_id` (claimed by this process), every resource
    /// of `plan` known from params, all or none, before anything is sent.
    pub async fn take_known(
        journal: &Journal,
        plan: &Plan,
        run_id: &str,
        account: LockAccount,
    ) -> Result<ResourceLocks, LockRefusal> {
        let keys: Vec<ResourceKey> = known_keys(plan, &account)
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        let locks = ResourceLocks {
            journal: journal.clone(),
            run_id: run_id.to_owned(),
            account,
            held: Mutex::new(BTreeSet::new()),
        };
        if !keys.is_empty() {
            locks.take(None, keys).await?;
        }
        Ok(locks)
    }

    /// The resources held so far.
    pub fn held(&self) -> Vec<ResourceKey> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    async fn take(&self, step: Option<&str>, keys: Vec<ResourceKey>) -> Result<(), LockRefusal> {
        // Not while the journal is known to be unreachable; a failure of
        // the lock's own transaction stops the run (resumable), nothing sent.
        self.journal.reachable().await?;
        let journal = self.journal.clone();
        let (run_id, step) = (self.run_id.clone(), step.map(str::to_owned));
        let wanted = keys.clone();
        let answer = tokio::task::spawn_blocking(move || {
            journal.take_locks(&run_id, step.as_deref(), &wanted, super::journal::now_ms())
        })
        .await
        .map_err(|e| JournalError::Corrupt(format!("the lock task ended abnormally: {e}")))??;
        if let Some(holder) = answer {
            return Err(LockRefusal::Held(holder));
        }
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(keys);
        Ok(())
    }

    /// Before the first mutating call of `step` on the resource of `req`:
    /// takes its lock unless held already. A typed action only: a generic
    /// `api` call (`typed` false) locks nothing.
    pub(crate) async fn ensure(
        &self,
        step: &PlannedStep,
        req: &ActionRequest,
        typed: bool,
    ) -> Result<(), LockRefusal> {
        if !typed {
            return Ok(());
        }
        let Some(key) = key_of(req, &self.account.of(step)) else {
            return Ok(());
        };
        let known = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&key);
        if known {
            return Ok(());
        }
        self.take(Some(step.id.as_str()), vec![key]).await
    }

    /// Releases every lock of the run (it has ended).
    pub async fn release(&self) -> Result<(), JournalError> {
        let journal = self.journal.clone();
        let run_id = self.run_id.clone();
        tokio::task::spawn_blocking(move || journal.release_locks(&run_id))
            .await
            .map_err(|e| JournalError::Corrupt(format!("the lock task ended abnormally: {e}")))?
    }
}

/// Takes the locks of run `run_id` (claimed by this process; `resumed`:
/// an earlier run taken up again) known from params, before anything is
/// sent. Refused: exit 6 naming the holder; a new run then ends `failed`
/// before its first step, a resumed one stays as it was, and is not taken
/// for alive (its lease ends at once). A journal failure: exit as the
/// journal's (nothing sent; resumable).
pub async fn take_before_start(
    journal: &Journal,
    plan: &Plan,
    run_id: &str,
    account: LockAccount,
    resumed: bool,
) -> Result<ResourceLocks, Error> {
    match ResourceLocks::take_known(journal, plan, run_id, account).await {
        Ok(locks) => Ok(locks),
        Err(LockRefusal::Held(holder)) => {
            if resumed {
                let _ = journal.let_go(run_id);
            } else {
                let _ = journal
                    .set_run_status(run_id, super::RunStatus::Failed, true)
                    .await;
            }
            Err(refused(&holder))
        }
        Err(LockRefusal::Journal(e)) => Err(super::exit::journal_error(e)),
    }
}

/// The error of a run refused at its start because `holder` holds a
/// resource it would change: exit 6, nothing sent.
pub fn refused(holder: &LockHolder) -> Error {
    Error::new(
        ExitCode::Refused,
        format!("{holder}; this run sent nothing"),
    )
    .with_hint(format!(
        "wait for run {} to end (`runbook show {}`); if it is dead or parked and must not go on, `runbook abandon {} --reason TEXT` releases its locks",
        holder.run_id, holder.run_id, holder.run_id
    ))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::plan::locks::{StepLocks, step_locks};
    use crate::plan::plan_of_yaml;

    const PLAYBOOK: &str = r#"
name: mixed
params:
  job: { type: string, default: dts-1 }
  files: { type: array, items: integer, default: [101, 102, 101] }
defaults: { region: cn-hangzhou }
steps:
  - id: stop-job
    call: dts.StopDtsJob
    with: { DtsJobId: "{{params.job}}" }
  - id: read
    call: dts.DescribeDtsJobDetail
    with: { DtsJobId: "{{params.job}}" }
  - id: stop-nodes
    for_each: "{{params.files}}"
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 10, FileId: "{{item}}", TaskType: DI_REALTIME }
  - id: as-role
    role_arn: "acs:ram::1234567890:role/ops"
    call: dts.SuspendDtsJob
    with: { DtsJobId: "{{params.job}}" }
  - id: later
    needs: [read]
    call: dts.StopDtsJob
    with: { DtsJobId: "{{steps.read.output.DtsJobId}}" }
  - id: ecs
    call: api
    with:
      product: ecs
      version: "2014-05-26"
      action: StopInstance
      params: { InstanceId: i-1 }
"#;

    #[test]
    fn the_plan_knows_what_each_step_locks_and_in_which_account() {
        let plan = plan_of_yaml(PLAYBOOK);
        let locks = |id: &str| step_locks(&plan, plan.step(id).unwrap());
        assert_eq!(
            locks("stop-job"),
            StepLocks::Known(vec!["dts job DtsJobId=dts-1".to_owned()])
        );
        assert_eq!(locks("read"), StepLocks::Nothing);
        assert_eq!(
            locks("stop-nodes"),
            StepLocks::Known(vec![
                "dataworks di-node ProjectId=10,FileId=101".to_owned(),
                "dataworks di-node ProjectId=10,FileId=102".to_owned(),
                "dataworks di-node ProjectId=10,FileId=101".to_owned(),
            ])
        );
        assert_eq!(locks("later"), StepLocks::AtRunTime("job"));
        assert_eq!(locks("ecs"), StepLocks::Generic);

        let account = LockAccount::new("run-1", Some("own"), false);
        let keys = known_keys(&plan, &account);
        let shown: Vec<(String, String, String)> = keys
            .iter()
            .map(|(step, k)| {
                (
                    step.clone(),
                    k.account.clone(),
                    format!("{} {}", k.kind, k.id),
                )
            })
            .collect();
        let role = crate::cloud::sts::account_fingerprint("1234567890");
        assert_eq!(
            shown,
            vec![
                (
                    "stop-job".to_owned(),
                    "own".to_owned(),
                    "job DtsJobId=dts-1".to_owned()
                ),
                (
                    "stop-nodes".to_owned(),
                    "own".to_owned(),
                    "di-node ProjectId=10,FileId=101".to_owned()
                ),
                (
                    "stop-nodes".to_owned(),
                    "own".to_owned(),
                    "di-node ProjectId=10,FileId=102".to_owned()
                ),
                // Another account: the role's.
                ("as-role".to_owned(), role, "job DtsJobId=dts-1".to_owned()),
            ]
        );
        // A rehearsal's locks are its own, whatever the role.
        let rehearsal = LockAccount::new("run-1", Some("own"), true);
        assert!(
            known_keys(&plan, &rehearsal)
                .iter()
                .all(|(_, k)| k.account == "rehearsal:run-1")
        );
    }

    proptest! {
        /// One resource whatever the spelling of an integer id, and two
        /// resources for two ids, regions or accounts.
        #[test]
        fn keys_name_one_resource_per_id_region_and_account(
            project in 1i64..1_000_000,
            file in 1i64..1_000_000,
            other in 1i64..1_000_000,
            zeros in 0usize..3,
        ) {
            let spec = crate::cloud::actions::lookup("dataworks.TerminateDISyncInstance").unwrap();
            let req = |file: String, region: &str| {
                let params = [
                    ("ProjectId".to_owned(), project.to_string()),
                    ("FileId".to_owned(), file),
                    ("TaskType".to_owned(), "DI_REALTIME".to_owned()),
                ];
                ActionRequest::typed(spec, region, params.into_iter().collect())
            };
            let plain = key_of(&req(file.to_string(), "cn-hangzhou"), "a").unwrap();
            let padded = key_of(&req(format!("{}{file}", "0".repeat(zeros)), "cn-hangzhou"), "a").unwrap();
            prop_assert_eq!(&plain, &padded);
            prop_assert_eq!(&plain.id, &format!("ProjectId={project},FileId={file}"));
            let elsewhere = key_of(&req(file.to_string(), "cn-shanghai"), "a").unwrap();
            prop_assert_ne!(&plain, &elsewhere);
            prop_assert_ne!(&plain, &key_of(&req(file.to_string(), "cn-hangzhou"), "b").unwrap());
            if other != file {
                prop_assert_ne!(&plain, &key_of(&req(other.to_string(), "cn-hangzhou"), "a").unwrap());
            }
        }
    }
}
