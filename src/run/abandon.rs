//! `runbook abandon RUN_ID --reason TEXT`: ends a run nobody carries on,
//! and releases its resource locks.
//!
//! Only a run with no live process: one whose process died (`interrupted`:
//! its lease ran out, or on this host the plan's lock shows it gone) or one
//! parked on purpose (`window_closed`, `waiting_approval`), which keeps its
//! locks with no process. A live run is refused (exit 6): `runbook cancel`
//! asks it to stop. A run that has ended holds no lock, and is refused too.
//!
//! The run ends `cancelled` (resumable, like any cancelled run, should
//! someone decide to go on after all); who abandoned it, from which host,
//! when and why are recorded (`abandoned_runs`, and an `abandoned` event),
//! and `runs`, `show` and the report say so. The journal checks again, in
//! the same transaction, that no live process holds the run, and takes its
//! holder away: a process that was only stopped (SIGSTOP) past its lease
//! can neither heartbeat nor commit the intent of a call afterwards.

use std::path::Path;

use super::journal::{AbandonOutcome, RunRow};
use super::lock::{RunLock, observed_status};
use super::resources::ResourceKey;
use super::{Journal, RunEvent, RunStatus};
use crate::error::{Error, ExitCode};

/// What was abandoned.
#[derive(Debug)]
pub struct AbandonedRun {
    /// How the run stood before (interrupted, window_closed, ...).
    pub was: RunStatus,
    /// The locks it held, now released.
    pub released: Vec<ResourceKey>,
}

/// Abandons `run` (as read from `journal`) for `reason`, by `by` on `host`;
/// `state_dir` holds this host's plan locks.
pub fn abandon(
    journal: &Journal,
    state_dir: &Path,
    run: &RunRow,
    reason: &str,
    by: &str,
    host: &str,
) -> Result<AbandonedRun, Error> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::usage(
            "--reason is empty: say why the run is abandoned (it is journaled)",
        ));
    }
    let now = super::journal::now_ms();
    let was = observed_status(state_dir, run, now);
    let id = &run.id;
    if was == RunStatus::Running {
        return Err(live(run));
    }
    if was.ends_run() {
        return Err(Error::new(
            ExitCode::Refused,
            format!("run {id} has ended ({was}): it holds no locks, there is nothing to abandon"),
        ));
    }
    // A process of this host that holds the plan's lock is alive, whatever
    // its heartbeat says; held here, no process of this host can start it
    // meanwhile.
    let _lock = RunLock::acquire(state_dir, &run.digest, Some(id)).map_err(|_| live(run))?;
    let gone_here = was == RunStatus::Interrupted;
    let released = journal.locks_of(id).map_err(super::exit::journal_error)?;
    let event = RunEvent::Abandoned {
        by: by.to_owned(),
        host: host.to_owned(),
        reason: reason.to_owned(),
    };
    match journal
        .abandon_run(id, by, host, reason, gone_here, &event, now)
        .map_err(super::exit::journal_error)?
    {
        AbandonOutcome::Abandoned => Ok(AbandonedRun { was, released }),
        AbandonOutcome::Refused => Err(Error::new(
            ExitCode::Refused,
            format!(
                "run {id} changed meanwhile: a process took it up again, or it ended; nothing was abandoned"
            ),
        )
        .with_hint(format!("`runbook show {id}` says how it stands"))),
    }
}

/// The refusal to abandon a run a live process holds.
fn live(run: &RunRow) -> Error {
    let h = &run.holder;
    Error::new(
        ExitCode::Refused,
        format!(
            "run {} is alive on host {} (operator {}, last heartbeat {}): a live run keeps its locks until it ends",
            run.id,
            h.host.as_deref().unwrap_or("?"),
            h.operator.as_deref().unwrap_or("?"),
            h.last_heartbeat().as_deref().unwrap_or("?")
        ),
    )
    .with_hint(format!(
        "ask it to stop with `runbook cancel {}`; abandon it only once its process is gone (its lease has run out) or it is parked",
        run.id
    ))
}
