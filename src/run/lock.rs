//! The run lock: one file per plan digest under the state directory's
//! `locks/`, held (an OS file lock) by the process that carries out a run of
//! that plan, and released when the process ends, however it ends. It keeps
//! two runs of the same playbook and params apart, and tells a run whose
//! process died (`interrupted`) from one that is still going (`running`).
//!
//! The file names its holder (`pid N run RUN_ID`). To see whether a run is
//! alive, a reader tries the lock for a moment: if it gets it, nobody holds
//! it. Since that probe could make a starting run find the lock taken, a run
//! tries for a little while before it refuses.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::RunStatus;
use super::journal::RunRow;

/// How long a run keeps trying a lock that is taken before it refuses: far
/// longer than a probe holds it, far shorter than anyone would notice.
const PATIENCE: Duration = Duration::from_millis(500);

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("another run of this playbook with these params is in progress ({holder})")]
    Held {
        /// What the lock file says about its holder (`pid N run ID`).
        holder: String,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {path}")]
    Io {
        /// The lock file (or its directory).
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A held run lock; released on drop (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    file: File,
}

fn path(state_dir: &Path, digest: &str) -> PathBuf {
    state_dir.join("locks").join(format!("{digest}.lock"))
}

impl RunLock {
    /// Takes the lock of plan `digest`, for run `run_id` when it is known
    /// (a resume; a new run names itself with [`RunLock::claim`]).
    pub fn acquire(
        state_dir: &Path,
        digest: &str,
        run_id: Option<&str>,
    ) -> Result<RunLock, LockError> {
        let dir = state_dir.join("locks");
        super::private::create_dir(&dir).map_err(|source| LockError::Io {
            path: dir.clone(),
            source,
        })?;
        let path = path(state_dir, digest);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let file = super::private::open_file(&path).map_err(io)?;
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    return Err(LockError::Held {
                        holder: holder.trim().to_owned(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        let lock = RunLock { file };
        lock.write_holder(run_id);
        Ok(lock)
    }

    /// Names run `run_id` as the holder (once a new run has its id).
    pub fn claim(&self, run_id: &str) {
        self.write_holder(Some(run_id));
    }

    fn write_holder(&self, run_id: Option<&str>) {
        let mut holder = format!("pid {}", std::process::id());
        if let Some(id) = run_id {
            holder.push_str(&format!(" run {id}"));
        }
        let _ = self.file.set_len(0);
        let _ = (&self.file).seek(SeekFrom::Start(0));
        let _ = (&self.file).write_all(format!("{holder}\n").as_bytes());
    }
}

/// What this state dir's plan lock says about a run.
#[derive(Debug, PartialEq, Eq)]
enum Local {
    /// A live process here holds the plan's lock for it (or has not named
    /// its run yet).
    Alive,
    /// It was held here for this run, and no process holds it any more.
    Gone,
    /// This state dir does not know (no lock file, or it is another run's):
    /// the run may be alive on another host.
    Unknown,
}

fn probe(state_dir: &Path, digest: &str, run_id: &str) -> Local {
    let path = path(state_dir, digest);
    let Ok(file) = File::open(&path) else {
        return Local::Unknown;
    };
    let holder = || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.split_whitespace()
            .skip_while(|w| *w != "run")
            .nth(1)
            .map(str::to_owned)
    };
    match file.try_lock_shared() {
        Ok(()) if holder().as_deref() == Some(run_id) => Local::Gone,
        Ok(()) => Local::Unknown,
        Err(std::fs::TryLockError::WouldBlock) => match holder() {
            Some(holder_run) if holder_run != run_id => Local::Unknown,
            _ => Local::Alive,
        },
        // Cannot tell: say what the journal says.
        Err(std::fs::TryLockError::Error(_)) => Local::Alive,
    }
}

/// A run's status as the user should see it: the stored one, except that a
/// `running` run that no live process holds is [`RunStatus::Interrupted`].
/// A process on this host is seen through the plan's lock at once; one on
/// another host (a shared journal) through its heartbeat: gone once its
/// lease (last heartbeat + lease length) has run out at `now_ms`.
pub fn observed_status(state_dir: &Path, run: &RunRow, now_ms: i64) -> RunStatus {
    if run.status != RunStatus::Running {
        return run.status;
    }
    // The lock here speaks only for a run last held from this host.
    let elsewhere = run
        .holder
        .host
        .as_deref()
        .is_some_and(|h| h != super::journal::host_name());
    let local = if elsewhere {
        Local::Unknown
    } else {
        probe(state_dir, &run.digest, &run.id)
    };
    match local {
        Local::Alive => RunStatus::Running,
        Local::Gone => RunStatus::Interrupted,
        Local::Unknown => match run.holder.lease_until_ms() {
            Some(until) if now_ms <= until => RunStatus::Running,
            _ => RunStatus::Interrupted,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, status: RunStatus) -> RunRow {
        RunRow {
            id: id.to_owned(),
            name: "n".to_owned(),
            source: "p.yaml".to_owned(),
            digest: "d1".to_owned(),
            status,
            created_at: String::new(),
            updated_at: String::new(),
            finished_at: None,
            holder: super::super::journal::RunHolder::default(),
            waiting: None,
        }
    }

    #[test]
    fn a_running_run_is_interrupted_unless_its_lock_is_held_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        let r1 = row("r1", RunStatus::Running);
        // Never locked: no process ever held it.
        assert_eq!(observed_status(state, &r1, 0), RunStatus::Interrupted);
        let lock = RunLock::acquire(state, "d1", None).unwrap();
        assert_eq!(
            observed_status(state, &r1, 0),
            RunStatus::Running,
            "unnamed holder"
        );
        lock.claim("r1");
        assert_eq!(observed_status(state, &r1, 0), RunStatus::Running);
        assert_eq!(
            observed_status(state, &row("r0", RunStatus::Running), 0),
            RunStatus::Interrupted,
            "the lock is held for another run of the same plan"
        );
        assert!(matches!(
            RunLock::acquire(state, "d1", Some("r2")),
            Err(LockError::Held { holder }) if holder == format!("pid {} run r1", std::process::id())
        ));
        drop(lock);
        assert_eq!(observed_status(state, &r1, 0), RunStatus::Interrupted);
        for s in RunStatus::ALL
            .into_iter()
            .filter(|s| *s != RunStatus::Running)
        {
            assert_eq!(observed_status(state, &row("r1", s), 0), s);
        }
        // The probe leaves the lock free.
        RunLock::acquire(state, "d1", Some("r1")).unwrap();
    }

    #[test]
    fn a_run_held_on_another_host_is_alive_while_its_lease_lasts() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        let mut r = row("r9", RunStatus::Running);
        r.holder = super::super::journal::RunHolder {
            host: Some("host-b".to_owned()),
            heartbeat_ms: Some(1_000),
            lease_ms: Some(500),
            ..Default::default()
        };
        assert_eq!(observed_status(state, &r, 1_500), RunStatus::Running);
        assert_eq!(observed_status(state, &r, 1_501), RunStatus::Interrupted);
        // Another run of the plan holds the lock here: the lease decides.
        let lock = RunLock::acquire(state, "d1", Some("r8")).unwrap();
        assert_eq!(observed_status(state, &r, 1_200), RunStatus::Running);
        drop(lock);
        // A lock here for it (a refused resume took it) says nothing of a
        // run held on another host.
        drop(RunLock::acquire(state, "d1", Some("r9")).unwrap());
        assert_eq!(observed_status(state, &r, 1_200), RunStatus::Running);
        // It ran here and its process is gone: known at once, lease or not.
        r.holder.host = Some(super::super::journal::host_name());
        assert_eq!(observed_status(state, &r, 1_200), RunStatus::Interrupted);
    }
}
