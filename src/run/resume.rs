//! Resume policy: which target a resumed run goes to (the flags given,
//! completed from what the run recorded), the refusals that keep a real run
//! and a rehearsal apart, and whether the plan's approval carries over.
//!
//! A rehearsal (a run started with `--sim`) never reaches the cloud: it goes
//! on in the simulator (its world restored, see [`super::world`]) or against
//! loopback endpoints only. A real run never goes on in the simulator, whose
//! "done" would be journaled as the cloud's.

use super::exit::journal_error;
use super::journal::RunRecord;
use super::launch::{StoredOptions, TargetChoice};
use super::{ApprovalDecision, Journal};
use crate::cloud::Endpoints;
use crate::error::{Error, ExitCode};
use crate::plan::Plan;

/// The plan journaled with a run (what a resume runs, not the playbook file
/// as it is now).
pub fn journaled_plan(record: &RunRecord) -> Result<Plan, Error> {
    serde_json::from_str(&record.plan_json).map_err(|e| {
        Error::new(
            ExitCode::Internal,
            format!("the plan of run {} cannot be read back", record.run.id),
        )
        .with_source(e)
    })
}

/// The target a resume of run `run_id` goes to: what was `asked`, completed
/// from what the run recorded (`stored`): its profile, rate limits, time
/// scale (in the simulator) and endpoints (outside it). Refuses (exit 6) to
/// cross between a real run and the simulator.
pub fn target(
    run_id: &str,
    plan: &Plan,
    stored: &StoredOptions,
    asked: TargetChoice,
) -> Result<TargetChoice, Error> {
    let rehearsal = stored.is_rehearsal();
    if asked.sim && !rehearsal {
        // The simulator's "done" would be journaled as this real run's.
        return Err(Error::new(
            ExitCode::Refused,
            format!("run {run_id} is a real run; resuming it against the simulator would mark steps done that the cloud never saw"),
        )
        .with_hint("rehearse the rest with `runbook run PLAYBOOK --sim`, and resume this run against the cloud"));
    }
    let mut choice = asked;
    if choice.profile.is_none() {
        choice.profile.clone_from(&stored.profile);
    }
    if choice.role_arn.is_none() {
        choice.role_arn.clone_from(&stored.role_arn);
    }
    if choice.qps.is_empty() {
        choice.qps.clone_from(&stored.qps);
    }
    if choice.time_scale.is_none() && choice.sim {
        choice.time_scale = stored.time_scale;
    }
    if choice.endpoints.is_empty() && !choice.sim {
        if stored.sim {
            // The same refusal as a rehearsal pointed at the cloud (below),
            // and the same exit code.
            return Err(Error::new(
                ExitCode::Refused,
                format!("run {run_id} ran against the in-process simulator; it goes on only in a simulator, not against the cloud"),
            )
            .with_hint("pass --sim to go on in the simulated world saved with the run, or --endpoint PRODUCT=URL for every product to point at a running `runbook sim`"));
        }
        choice.endpoints.clone_from(&stored.endpoints);
    }
    if rehearsal && !choice.sim {
        rehearsal_stays_local(run_id, plan, &choice.endpoints)?;
    }
    Ok(choice)
}

/// A run rehearsed against the simulator may go on only against simulators:
/// every product the plan calls must be pointed at a loopback endpoint.
fn rehearsal_stays_local(
    run_id: &str,
    plan: &Plan,
    endpoint_flags: &[String],
) -> Result<(), Error> {
    let mut endpoints = Endpoints::new();
    for e in endpoint_flags {
        endpoints
            .add_flag(e)
            .map_err(|e| Error::usage(e.to_string()))?;
    }
    let remote: Vec<&str> = plan
        .products()
        .into_iter()
        .filter(|p| {
            !endpoints
                .overrides()
                .get(*p)
                .is_some_and(|url| crate::cloud::endpoint::is_loopback(url))
        })
        .collect();
    if remote.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ExitCode::Refused,
        format!(
            "run {run_id} was a rehearsal against the simulator; it may go on only against a simulator, but {} would go to the cloud",
            remote.join(", ")
        ),
    )
    .with_hint("resume it with --sim, or with --endpoint PRODUCT=http://127.0.0.1:PORT for every product; to do it for real, start a new run"))
}

/// Whether a resume goes on under the approval the plan was given before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Carried {
    /// The resume sends the calls where the run sent them, signed the same way.
    pub same_target: bool,
    /// The plan was approved before, for that target: no new approval.
    pub approved: bool,
}

impl Carried {
    /// An approval covers the plan and where it runs: a resume toward
    /// `resumed` when the run recorded `stored` keeps the plan's approval
    /// only when the target is the same.
    pub fn of(
        record: &RunRecord,
        plan: &Plan,
        stored: &StoredOptions,
        resumed: &StoredOptions,
    ) -> Carried {
        let same_target = stored.same_target(resumed);
        let approved = same_target && plan_approved(record, plan);
        Carried {
            same_target,
            approved,
        }
    }
}

/// Whether the journal holds the plan's approval: for a plan without a
/// policy, any approval of its digest; with one, enough distinct verified
/// approvers (the starter's own only when allowed) to satisfy it.
pub fn plan_approved(record: &RunRecord, plan: &Plan) -> bool {
    use super::waiting::{Gate, Verdict, starter, verdict};
    matches!(
        verdict(
            &record.approvals,
            plan,
            &Gate::Plan,
            starter(record).as_ref()
        ),
        Verdict::Approved(_)
    )
}

/// The refusal to resume a rejected run (exit 6): who rejected which
/// gate, and why. A rejection is final; the plan may be run anew.
pub fn rejected(record: &RunRecord, plan: &Plan) -> Error {
    let run_id = &record.run.id;
    let (gate, by, reason) = super::waiting::first_rejection(&record.approvals, &plan.digest)
        .unwrap_or((super::waiting::Gate::Plan, "?".to_owned(), String::new()));
    Error::new(
        ExitCode::Refused,
        format!(
            "run {run_id} was rejected ({by} rejected {}: {reason}); a rejected run is not resumed",
            gate.describe()
        ),
    )
    .with_hint("to do the change after all, review the plan again and start a new run")
}

/// Journals what a resume decided before it runs: who resumes it
/// (`resumer`, verified), the plan's new approvals, if any were given, and
/// then (only once approved) the new target as the run's, so a refused
/// resume leaves the old one.
pub async fn record(
    journal: &Journal,
    run_id: &str,
    digest: &str,
    approvals: &[ApprovalDecision],
    resumer: Option<&super::identity::VerifiedIdentity>,
    new_target: Option<&StoredOptions>,
) -> Result<(), Error> {
    if let Some(identity) = resumer {
        journal
            .record_identity(
                run_id,
                super::journal::IdentityRole::Resumed,
                identity,
                &super::approve::who(),
            )
            .await
            .map_err(journal_error)?;
    }
    for row in approvals.iter().filter_map(|a| a.to_row(None, digest)) {
        journal
            .record_approval(run_id, &row)
            .await
            .map_err(journal_error)?;
    }
    if let Some(options) = new_target {
        journal
            .set_run_options(run_id, serde_json::to_string(options).unwrap_or_default())
            .await
            .map_err(journal_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        crate::plan::plan_of_yaml(
            r"
name: t
defaults: { region: cn-shanghai }
steps:
  - id: stop
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 1, TaskType: DI_REALTIME, FileId: 1 }
",
        )
    }

    fn stored(sim: bool) -> StoredOptions {
        StoredOptions {
            endpoints: vec!["dataworks=http://127.0.0.1:9000".to_owned()],
            sim,
            rehearsal: sim,
            profile: Some("ops".to_owned()),
            qps: vec!["dataworks=5".to_owned()],
            concurrency: 2,
            time_scale: sim.then(|| "10".parse().unwrap()),
            ..StoredOptions::default()
        }
    }

    #[test]
    fn a_resume_completes_the_target_from_what_the_run_recorded() {
        let real = StoredOptions {
            sim: false,
            rehearsal: false,
            time_scale: None,
            ..stored(false)
        };
        let choice = target("r1", &plan(), &real, TargetChoice::default()).unwrap();
        assert_eq!(choice.endpoints, real.endpoints);
        assert_eq!(choice.profile.as_deref(), Some("ops"));
        assert_eq!(choice.qps, real.qps);
        // Flags given win.
        let asked = TargetChoice {
            profile: Some("other".to_owned()),
            ..TargetChoice::default()
        };
        let choice = target("r1", &plan(), &real, asked).unwrap();
        assert_eq!(choice.profile.as_deref(), Some("other"));
        // A rehearsal keeps its time scale in the simulator.
        let asked = TargetChoice {
            sim: true,
            ..TargetChoice::default()
        };
        let choice = target("r1", &plan(), &stored(true), asked).unwrap();
        assert_eq!(choice.time_scale, stored(true).time_scale);
        assert!(choice.endpoints.is_empty());
    }

    #[test]
    fn a_real_run_and_a_rehearsal_never_cross() {
        let asked_sim = TargetChoice {
            sim: true,
            ..TargetChoice::default()
        };
        let e = target("r1", &plan(), &stored(false), asked_sim).unwrap_err();
        assert_eq!(e.exit, ExitCode::Refused);
        assert!(e.message.contains("is a real run"), "{}", e.message);
        let e = target("r1", &plan(), &stored(true), TargetChoice::default()).unwrap_err();
        assert_eq!(e.exit, ExitCode::Refused);
        assert!(e.message.contains("in-process simulator"), "{}", e.message);
        // A rehearsal once moved to a loopback `runbook sim` stays there.
        let moved = StoredOptions {
            sim: false,
            ..stored(true)
        };
        assert!(target("r1", &plan(), &moved, TargetChoice::default()).is_ok());
        let remote = TargetChoice {
            endpoints: vec!["dataworks=https://dataworks.example.com".to_owned()],
            ..TargetChoice::default()
        };
        let e = target("r1", &plan(), &moved, remote).unwrap_err();
        assert!(
            e.message.contains("dataworks would go to the cloud"),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_plan_approval_carries_over_only_to_the_same_target() {
        let before = StoredOptions {
            account: Some("a1".to_owned()),
            ..stored(false)
        };
        let mut other_account = before.clone();
        other_account.account = Some("a2".to_owned());
        let mut reordered = before.clone();
        reordered
            .endpoints
            .insert(0, "dts=http://127.0.0.1:9001".to_owned());
        let mut reordered_back = reordered.clone();
        reordered_back.endpoints.reverse();
        assert!(before.same_target(&before));
        assert!(!before.same_target(&other_account));
        assert!(reordered.same_target(&reordered_back));
        // In the simulator the account is made up each time.
        let mut sim_other = stored(true);
        sim_other.account = Some("x".to_owned());
        assert!(stored(true).same_target(&sim_other));
    }
}
