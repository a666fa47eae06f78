//! How the engine's ends and failures reach the user: the exit code of a
//! run's status, and the errors (with their exit codes and hints) for a
//! journal that cannot be opened or written, and for a run lock that is
//! held. One home, so `run` and `resume` say the same thing.

use std::path::Path;

use super::RunStatus;
use super::journal::{Journal, JournalError, JournalUrl};
use super::lock::{LockError, RunLock};
use crate::error::{Error, ExitCode};

/// A run stopped because no credentials could be had for its next call
/// (a refresh failed): exit 4, resumable.
pub fn credentials_failed(run_id: &str, why: &str) -> Error {
    Error::new(
        ExitCode::Api,
        format!(
            "run {run_id} stopped: no credentials could be had for its next call ({why}); \
             that call was neither journaled nor sent, and the calls in flight finished"
        ),
    )
    .with_hint(format!(
        "fix the credentials (or STS / the metadata service), then `runbook resume {run_id}`"
    ))
}

/// The exit code of a run that ended `status`.
pub fn exit_code(status: RunStatus) -> ExitCode {
    match status {
        RunStatus::Succeeded => ExitCode::Ok,
        RunStatus::Cancelled | RunStatus::Interrupted | RunStatus::WindowClosed => {
            ExitCode::Cancelled
        }
        RunStatus::Rejected => ExitCode::Refused,
        RunStatus::WaitingApproval => ExitCode::WaitingApproval,
        RunStatus::Failed | RunStatus::Running => ExitCode::StepFailed,
    }
}

/// Opens the journal at `url`, or says why it cannot be.
pub fn open_journal(url: &JournalUrl) -> Result<Journal, Error> {
    Journal::open_url(url).map_err(|e| match e {
        JournalError::TooNew { .. } => Error::new(ExitCode::Internal, e.to_string())
            .with_hint("a newer runbook wrote this journal: use that version (or newer), or another --journal / --state-dir"),
        e if url.is_postgres() => Error::new(
            ExitCode::Internal,
            format!("cannot open the journal {url}"),
        )
        .with_source(e)
        .with_hint("check that PostgreSQL is reachable, the database exists and the user may create tables in it (its password: PGPASSWORD or ~/.pgpass)"),
        e => Error::new(
            ExitCode::Internal,
            format!("cannot open the journal {url}"),
        )
        .with_source(e)
        .with_hint("pass --state-dir DIR (or set RUNBOOK_STATE_DIR) to a writable directory, or --journal URL"),
    })
}

/// Takes the run lock of plan `digest` (see [`super::lock`]); another run
/// holding it is a refusal (exit 6).
pub fn lock(state_dir: &Path, digest: &str, run_id: Option<&str>) -> Result<RunLock, Error> {
    RunLock::acquire(state_dir, digest, run_id).map_err(|e| match e {
        LockError::Held { .. } => Error::new(ExitCode::Refused, e.to_string())
            .with_hint("wait for it to finish, or stop it (Ctrl-C) and `runbook resume` it"),
        LockError::Io { .. } => Error::new(ExitCode::Internal, e.to_string()).with_source(e),
    })
}

/// A journal failure before the run sent anything.
pub fn journal_error(e: JournalError) -> Error {
    Error::new(
        ExitCode::Internal,
        "the journal could not record the run; nothing was sent",
    )
    .with_source(e)
}

/// The journal failed while the run was sending: says which mutating calls
/// were sent and whose answers are journaled, as this process knows them.
pub async fn failed_mid_run(e: JournalError, journal: &Journal, run_id: &str) -> Error {
    journal.settle().await;
    if let JournalError::Unreachable(u) = &e {
        return unreachable_mid_run(u, journal, run_id);
    }
    let ledger = journal.ledger();
    let first = ledger
        .first_failure()
        .map(|f| format!(" (the first failed write: {f})"))
        .unwrap_or_default();
    Error::new(
        ExitCode::Internal,
        format!(
            "the journal failed during run {run_id}{first}; runbook stopped sending\n  {}",
            ledger.report()
        ),
    )
    .with_source(e)
    .with_hint(format!(
        "once the journal can be written again (disk space, permissions), `runbook resume {run_id}`: a call whose answer is not journaled is re-checked through its status call, never sent again blindly"
    ))
}

/// The journal could not be reached for longer than the run's patience
/// (or its lease): exit 8, resumable. Says what was sent and journaled.
fn unreachable_mid_run(u: &super::journal::Unreachable, journal: &Journal, run_id: &str) -> Error {
    Error::new(
        ExitCode::JournalUnreachable,
        format!(
            "run {run_id} stopped: its journal could not be reached; nothing was sent while it was unreachable, \
             the calls in flight finished, and the run is left as journaled\n  {}",
            journal.ledger().report()
        ),
    )
    .with_source(u.clone())
    .with_hint(format!(
        "once the journal can be reached again, `runbook resume {run_id}` (from another host: once its lease has run out and `runbook runs` shows it interrupted): \
         a call whose answer is not journaled is re-checked through its status call, never sent again blindly. \
         To ride out longer outages (a failover), raise --lease and --journal-patience"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_exit_code() {
        let code = |s| exit_code(s).code();
        assert_eq!(code(RunStatus::Succeeded), 0);
        assert_eq!(code(RunStatus::Failed), 1);
        assert_eq!(code(RunStatus::Rejected), 6);
        assert_eq!(code(RunStatus::WaitingApproval), 7);
        assert_eq!(code(RunStatus::Cancelled), 5);
        assert_eq!(code(RunStatus::Interrupted), 5);
        assert_eq!(code(RunStatus::WindowClosed), 5);
    }
}
