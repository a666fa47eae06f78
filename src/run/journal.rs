//! The journal: every run, its plan, approvals, each step and fan-out item,
//! every attempt (request redacted, answer, outcome, timings) and every event,
//! in one SQLite database under the state directory (`sqlite3` can read it).
//!
//! Durability rules the executor relies on:
//! - an *intent* row is committed before a mutating call is sent, so a run
//!   killed mid-call knows on resume that the call may have happened; that
//!   commit is synced to disk (`synchronous = FULL`), so not even a power
//!   loss can undo it, and everything committed before it is synced with it;
//! - a unit's result is committed before any step that needs it starts
//!   (durable against a crash of the process; if a power loss undid it, the
//!   synced intent still makes resume re-check the call).
//!
//! Writes go through one writer thread that commits whatever is queued in a
//! single transaction (group commit): a 1,000-item fan-out shares fsyncs
//! instead of paying one per row, while callers that need durability still
//! wait for their own commit. Requests hold only API parameters: the common
//! parameters (AccessKeyId, Signature, SecurityToken) are added by the client
//! and never reach this module.
//!
//! Rows are parsed into typed values once, when they are read (statuses,
//! attempt kinds and outcomes from [`super::status`], risk and error class
//! from the action catalogue); a value this binary does not know is a
//! [`JournalError::Corrupt`] row, not a silent mismatch.
//!
//! # Schema versions
//!
//! The journal records its schema version (table `schema_version`), checked
//! on open: a journal written by a newer binary is refused
//! ([`JournalError::TooNew`]) before anything is read or written, and an
//! older one is migrated, in one transaction, by the steps of [`MIGRATIONS`].
//! Version 0 is an empty database or a journal from before versions existed.
//! To change the schema, append one step (never edit a shipped one); adding a
//! column is one line:
//!
//! ```text
//! const MIGRATIONS: &[&str] = &[
//!     V1,
//!     "ALTER TABLE attempts ADD COLUMN settle_started_at TEXT;", // -> version 2
//! ];
//! ```
//!
//! # The simulated world
//!
//! A run against the in-process simulator keeps the simulator's world with
//! it ([`Journal::keep_world`]): every commit of the writer also saves the
//! world, when it changed, in the same transaction. See `cli/run.rs` (resume
//! `--sim`) for why the world is saved rather than rebuilt.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;
use tokio::sync::oneshot;

use super::event::Outcome;
use super::ledger::{Ledger, SentCall};
use super::status::{AttemptKind, AttemptOutcome, RunStatus, StepStatus};
use crate::cloud::{ErrorClass, Risk};

/// A journal failure.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// SQLite failed.
    #[error("journal database error at {path}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The state directory or the journal file could not be created.
    #[error("cannot create {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The writer thread is gone (an earlier write failed).
    #[error("the journal writer stopped after a failed write; no further calls are sent")]
    WriterGone,
    /// No run with that id.
    #[error("no run `{0}` in the journal")]
    NoSuchRun(String),
    /// More than one run starts with that prefix.
    #[error("`{prefix}` is the start of {} run ids: {}", candidates.len(), candidates.join(", "))]
    AmbiguousRun {
        /// The prefix given.
        prefix: String,
        /// The ids it starts, sorted.
        candidates: Vec<String>,
    },
    /// A stored row could not be read back.
    #[error("journal row is corrupt: {0}")]
    Corrupt(String),
    /// The journal was written by a newer binary (a higher schema version).
    #[error(
        "the journal {path} has schema version {found}, newer than this runbook knows (up to {supported})"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest version this binary reads.
        supported: i64,
    },
}

/// Version 1: the tables of the unversioned journal (created if missing,
/// kept as they are otherwise), the simulated worlds, and the version table.
const V1: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    digest TEXT NOT NULL,
    plan_json TEXT NOT NULL,
    options_json TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS approvals (
    run_id TEXT NOT NULL,
    step_id TEXT,
    approved_by TEXT NOT NULL,
    method TEXT NOT NULL,
    digest TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    status TEXT NOT NULL,
    items INTEGER,
    detail TEXT,
    started_at TEXT,
    finished_at TEXT,
    PRIMARY KEY (run_id, step_id)
);
CREATE TABLE IF NOT EXISTS units (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    item INTEGER NOT NULL,
    item_json TEXT,
    status TEXT NOT NULL,
    output_json TEXT,
    error TEXT,
    started_at TEXT,
    finished_at TEXT,
    PRIMARY KEY (run_id, step_id, item)
);
CREATE TABLE IF NOT EXISTS attempts (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    item INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    risk TEXT NOT NULL,
    request_json TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT NOT NULL,
    error_class TEXT,
    error_code TEXT,
    error_message TEXT,
    request_id TEXT,
    http_status INTEGER,
    response_json TEXT
);
CREATE INDEX IF NOT EXISTS attempts_unit ON attempts (run_id, step_id, item);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    at TEXT NOT NULL,
    event_json TEXT NOT NULL
);
CREATE TABLE worlds (
    run_id TEXT PRIMARY KEY,
    world_json TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE schema_version (version INTEGER NOT NULL);
";

/// The steps that build the schema: `MIGRATIONS[i]` takes a journal from
/// version `i` to `i + 1` (see the module doc).
const MIGRATIONS: &[&str] = &[V1];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// A write, with an optional acknowledgement once committed.
struct Op {
    sql: &'static str,
    args: Vec<rusqlite::types::Value>,
    ack: Option<oneshot::Sender<Result<(), String>>>,
    /// Must survive a power loss, not only a crash of this process: the
    /// commit that holds it is synced to disk (`synchronous = FULL`).
    durable: bool,
    /// The attempt whose answer this write records: the ledger learns
    /// whether it reached the database.
    answer_of: Option<String>,
}

/// What [`Journal::keep_world`] saves with every commit: the world of the
/// in-process simulator, as JSON, or `None` when it has not changed since
/// the last time it was asked.
pub type WorldSource = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// The world kept with a run.
struct KeptWorld {
    run_id: String,
    source: WorldSource,
}

/// Handle to the journal: cheap to clone, shared by all step tasks.
#[derive(Clone)]
pub struct Journal {
    path: PathBuf,
    tx: mpsc::Sender<Op>,
    failed: Arc<AtomicBool>,
    synced: Arc<AtomicU64>,
    world: Arc<Mutex<Option<KeptWorld>>>,
    ledger: Arc<Ledger>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The attempt of a call, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRow {
    /// Step id.
    pub step_id: String,
    /// Item index (0 without fan-out).
    pub item: i64,
    /// 1-based attempt within its unit.
    pub attempt: i64,
    /// What it was for.
    pub kind: AttemptKind,
    /// RPC action.
    pub action: String,
    /// Risk class of the action.
    pub risk: Risk,
    /// Pending (sent, no answer recorded), ok or error.
    pub outcome: AttemptOutcome,
    /// Error class, when it failed.
    pub error_class: Option<ErrorClass>,
    /// Error code.
    pub error_code: Option<String>,
    /// Error message.
    pub error_message: Option<String>,
    /// RequestId.
    pub request_id: Option<String>,
    /// HTTP status.
    pub http_status: Option<i64>,
    /// When it was sent.
    pub sent_at: String,
    /// When its answer was recorded.
    pub finished_at: Option<String>,
    /// The request (API parameters only).
    pub request_json: String,
    /// The answer's body, when it succeeded.
    pub response_json: Option<String>,
}

/// One unit (a step, or one item of a fan-out step), as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitRow {
    /// Step id.
    pub step_id: String,
    /// Item index (0 without fan-out).
    pub item: i64,
    /// The item value, for fan-outs.
    pub item_json: Option<String>,
    /// Running, or how it ended.
    pub status: StepStatus,
    /// The output (response body), when it succeeded.
    pub output_json: Option<String>,
    /// Error text.
    pub error: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
}

/// One step, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRow {
    /// Step id.
    pub step_id: String,
    /// Running, blocked, or how it ended.
    pub status: StepStatus,
    /// Fan-out size.
    pub items: Option<i64>,
    /// Error text or skip reason.
    pub detail: Option<String>,
    /// Start time.
    pub started_at: Option<String>,
    /// End time.
    pub finished_at: Option<String>,
}

/// A run's header row.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRow {
    /// Run id.
    pub id: String,
    /// Playbook name.
    pub name: String,
    /// Playbook path.
    pub source: String,
    /// Plan digest.
    pub digest: String,
    /// As stored: `running` also for a run whose process died (see
    /// [`super::lock::observed_status`]).
    pub status: RunStatus,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// End time.
    pub finished_at: Option<String>,
}

/// An approval, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalRow {
    /// Step (`None`: the whole plan).
    pub step_id: Option<String>,
    /// Who.
    pub approved_by: String,
    /// `terminal`, `--yes` or `--approve`.
    pub method: String,
    /// Plan digest it is bound to.
    pub digest: String,
    /// When.
    pub at: String,
}

/// Everything stored about one run.
#[derive(Clone, Debug)]
pub struct RunRecord {
    /// Header.
    pub run: RunRow,
    /// The plan, as JSON.
    pub plan_json: String,
    /// Options the run was started with, as JSON.
    pub options_json: String,
    /// Approvals.
    pub approvals: Vec<ApprovalRow>,
    /// Steps.
    pub steps: Vec<StepRow>,
    /// Units.
    pub units: Vec<UnitRow>,
    /// Attempts, in order.
    pub attempts: Vec<AttemptRow>,
}

impl Journal {
    /// Opens (creating if needed) `journal.db` in `state_dir` and starts the
    /// writer thread.
    pub fn open(state_dir: &Path) -> Result<Journal, JournalError> {
        super::private::create_dir(state_dir).map_err(|source| JournalError::Dir {
            path: state_dir.to_owned(),
            source,
        })?;
        let path = state_dir.join("journal.db");
        // Created 0600 before SQLite opens it: SQLite gives the WAL and
        // shared-memory files the database file's permissions.
        super::private::open_file(&path).map_err(|source| JournalError::Dir {
            path: path.clone(),
            source,
        })?;
        for companion in ["journal.db-wal", "journal.db-shm"] {
            super::private::warn_if_loose(&state_dir.join(companion));
        }
        let mut conn = open_conn(&path)?;
        migrate(&mut conn, &path)?;
        let (tx, rx) = mpsc::channel::<Op>();
        let failed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&failed);
        let synced = Arc::new(AtomicU64::new(0));
        let synced_count = Arc::clone(&synced);
        let world = Arc::new(Mutex::new(None));
        let kept = Arc::clone(&world);
        let ledger = Arc::new(Ledger::default());
        let marks = Arc::clone(&ledger);
        std::thread::Builder::new()
            .name("journal-writer".to_owned())
            .spawn(move || writer(conn, &rx, &flag, &synced_count, &kept, &marks))
            .map_err(|source| JournalError::Dir {
                path: state_dir.to_owned(),
                source,
            })?;
        Ok(Journal {
            path,
            tx,
            failed,
            synced,
            world,
            ledger,
        })
    }

    /// Keeps `source` (the in-process simulator's world) with run `run_id`:
    /// from now on every commit also saves it, when it changed, in the same
    /// transaction. So whatever the journal says was answered, the saved
    /// world has already done. (If that commit fails, the writer stops, and
    /// nothing more is sent.)
    pub fn keep_world(&self, run_id: &str, source: WorldSource) {
        *self
            .world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(KeptWorld {
            run_id: run_id.to_owned(),
            source,
        });
    }

    /// Drops the world saved with run `run_id` (it goes on elsewhere, so
    /// that world is out of date). Committed before anything queued later.
    pub fn forget_world(&self, run_id: &str) {
        self.send("DELETE FROM worlds WHERE run_id = ?1", vec![run_id.sv()]);
    }

    /// The world last saved with run `run_id`, if any.
    pub fn world(&self, run_id: &str) -> Result<Option<String>, JournalError> {
        let conn = self.reader()?;
        conn.query_row(
            "SELECT world_json FROM worlds WHERE run_id = ?1",
            [run_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| self.sql(e))
    }

    /// How many commits were synced to disk so far (those holding the
    /// intent of a mutating call).
    pub fn synced_commits(&self) -> u64 {
        self.synced.load(Ordering::SeqCst)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mutating calls this process sent, and whether their answers
    /// reached the journal: what is known when the journal fails.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn send(&self, sql: &'static str, args: Vec<rusqlite::types::Value>) {
        self.send_op(sql, args, None);
    }

    fn send_op(
        &self,
        sql: &'static str,
        args: Vec<rusqlite::types::Value>,
        answer_of: Option<String>,
    ) {
        let _ = self.tx.send(Op {
            sql,
            args,
            ack: None,
            durable: false,
            answer_of,
        });
    }

    /// Queues a write and waits until it is committed: durable against a
    /// crash of this process (WAL, `synchronous = NORMAL`).
    async fn send_acked(
        &self,
        sql: &'static str,
        args: Vec<rusqlite::types::Value>,
    ) -> Result<(), JournalError> {
        self.send_waiting(sql, args, false).await
    }

    /// Queues a write and waits until it is committed and, with `durable`,
    /// synced to disk so that not even a power loss undoes it (every earlier
    /// commit is synced along with it, as the WAL is written in order).
    async fn send_waiting(
        &self,
        sql: &'static str,
        args: Vec<rusqlite::types::Value>,
        durable: bool,
    ) -> Result<(), JournalError> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(JournalError::WriterGone);
        }
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Op {
                sql,
                args,
                ack: Some(ack),
                durable,
                answer_of: None,
            })
            .map_err(|_| JournalError::WriterGone)?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            _ => Err(JournalError::WriterGone),
        }
    }

    /// Waits until everything queued so far is committed.
    pub async fn flush(&self) -> Result<(), JournalError> {
        self.send_acked("SELECT 1", vec![]).await
    }

    /// Waits until the writer has dealt with everything queued so far,
    /// whether or not it could commit it (after a failure, so that the
    /// ledger is complete).
    pub async fn settle(&self) {
        let (ack, done) = oneshot::channel();
        let op = Op {
            sql: "SELECT 1",
            args: vec![],
            ack: Some(ack),
            durable: false,
            answer_of: None,
        };
        if self.tx.send(op).is_ok() {
            let _ = done.await;
        }
    }

    /// Records a new run with its plan.
    pub async fn create_run(
        &self,
        id: &str,
        name: &str,
        source: &str,
        digest: &str,
        plan_json: String,
        options_json: String,
    ) -> Result<(), JournalError> {
        let t = now();
        self.send_acked(
            "INSERT INTO runs (id, name, source, digest, plan_json, options_json, status, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?7)",
            vec![id.sv(), name.sv(), source.sv(), digest.sv(), plan_json.sv(), options_json.sv(), t.sv()],
        )
        .await
    }

    /// Sets a run's status (`running` on resume, or its outcome at the end).
    pub async fn set_run_status(
        &self,
        id: &str,
        status: RunStatus,
        finished: bool,
    ) -> Result<(), JournalError> {
        let t = now();
        let fin: rusqlite::types::Value = if finished {
            t.clone().into()
        } else {
            rusqlite::types::Value::Null
        };
        self.send_acked(
            "UPDATE runs SET status = ?2, updated_at = ?3, finished_at = ?4 WHERE id = ?1",
            vec![id.sv(), status.as_str().sv(), t.sv(), fin],
        )
        .await
    }

    /// Replaces the options a run was started with (a resume against another target).
    pub async fn set_run_options(
        &self,
        id: &str,
        options_json: String,
    ) -> Result<(), JournalError> {
        self.send_acked(
            "UPDATE runs SET options_json = ?2, updated_at = ?3 WHERE id = ?1",
            vec![id.sv(), options_json.sv(), now().sv()],
        )
        .await
    }

    /// Records an approval bound to `digest`.
    pub async fn record_approval(
        &self,
        run_id: &str,
        step_id: Option<&str>,
        by: &str,
        method: &str,
        digest: &str,
    ) -> Result<(), JournalError> {
        self.send_acked(
            "INSERT INTO approvals (run_id, step_id, approved_by, method, digest, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            vec![run_id.sv(), opt(step_id), by.sv(), method.sv(), digest.sv(), now().sv()],
        )
        .await
    }

    /// A step started (or restarted on resume).
    pub async fn step_started(
        &self,
        run_id: &str,
        step: &str,
        items: Option<usize>,
    ) -> Result<(), JournalError> {
        let items: rusqlite::types::Value = items.map_or(rusqlite::types::Value::Null, |n| {
            i64::try_from(n).unwrap_or(i64::MAX).into()
        });
        self.send_acked(
            "INSERT INTO steps (run_id, step_id, status, items, started_at) VALUES (?1, ?2, 'running', ?3, ?4)
             ON CONFLICT (run_id, step_id) DO UPDATE SET status = 'running', items = ?3, detail = NULL, finished_at = NULL",
            vec![run_id.sv(), step.sv(), items, now().sv()],
        )
        .await
    }

    /// A step ended. Committed before its dependents start.
    pub async fn step_finished(
        &self,
        run_id: &str,
        step: &str,
        outcome: Outcome,
        detail: Option<&str>,
    ) -> Result<(), JournalError> {
        self.send_acked(
            "INSERT INTO steps (run_id, step_id, status, detail, started_at, finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (run_id, step_id) DO UPDATE SET status = ?3, detail = ?4, finished_at = ?5",
            vec![run_id.sv(), step.sv(), StepStatus::from(outcome).as_str().sv(), opt(detail), now().sv()],
        )
        .await
    }

    /// A step was not run because a step it needs did not succeed. Journaled
    /// as `blocked` (not `skipped`), so a resume runs it once its inputs exist.
    pub async fn step_blocked(
        &self,
        run_id: &str,
        step: &str,
        detail: &str,
    ) -> Result<(), JournalError> {
        self.send_acked(
            "INSERT INTO steps (run_id, step_id, status, detail, started_at, finished_at) VALUES (?1, ?2, 'blocked', ?3, ?4, ?4)
             ON CONFLICT (run_id, step_id) DO UPDATE SET status = 'blocked', detail = ?3, finished_at = ?4",
            vec![run_id.sv(), step.sv(), detail.sv(), now().sv()],
        )
        .await
    }

    /// A unit started (not awaited: the intent row is what matters for safety).
    pub fn unit_started(&self, run_id: &str, step: &str, item: usize, item_json: Option<&Value>) {
        self.send(
            "INSERT INTO units (run_id, step_id, item, item_json, status, started_at) VALUES (?1, ?2, ?3, ?4, 'running', ?5)
             ON CONFLICT (run_id, step_id, item) DO UPDATE SET status = 'running', error = NULL",
            vec![run_id.sv(), step.sv(), idx(item), opt(item_json.map(Value::to_string).as_deref()), now().sv()],
        );
    }

    /// A unit ended with its output or error. Committed before dependents start.
    pub async fn unit_finished(
        &self,
        run_id: &str,
        step: &str,
        item: usize,
        outcome: Outcome,
        output: Option<&Value>,
        error: Option<&str>,
    ) -> Result<(), JournalError> {
        self.send_acked(
            "UPDATE units SET status = ?4, output_json = ?5, error = ?6, finished_at = ?7 WHERE run_id = ?1 AND step_id = ?2 AND item = ?3",
            vec![
                run_id.sv(),
                step.sv(),
                idx(item),
                StepStatus::from(outcome).as_str().sv(),
                opt(output.map(Value::to_string).as_deref()),
                opt(error),
                now().sv(),
            ],
        )
        .await
    }

    /// Records that an attempt is about to be sent. For a mutating call the
    /// caller awaits this, so the intent is durable before the request leaves.
    #[allow(clippy::too_many_arguments)]
    pub async fn attempt_intent(
        &self,
        key: &str,
        run_id: &str,
        step: &str,
        item: usize,
        attempt: u32,
        kind: AttemptKind,
        action: &str,
        risk: Risk,
        request_json: String,
        durable: bool,
    ) -> Result<(), JournalError> {
        let sql = "INSERT INTO attempts (key, run_id, step_id, item, attempt, kind, action, risk, request_json, sent_at, outcome)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending')";
        let args = vec![
            key.sv(),
            run_id.sv(),
            step.sv(),
            idx(item),
            i64::from(attempt).sv(),
            kind.as_str().sv(),
            action.sv(),
            risk.as_str().sv(),
            request_json.sv(),
            now().sv(),
        ];
        if durable {
            self.send_waiting(sql, args, true).await?;
            self.ledger.sent(
                key,
                SentCall {
                    step: step.to_owned(),
                    item,
                    action: action.to_owned(),
                    risk,
                    answer: None,
                    journaled: false,
                },
            );
            Ok(())
        } else {
            // A read is not waited for, but is not sent either once the
            // journal has failed: the run is stopping.
            if self.failed.load(Ordering::SeqCst) {
                return Err(JournalError::WriterGone);
            }
            self.send(sql, args);
            Ok(())
        }
    }

    /// Records an attempt's answer.
    pub fn attempt_ok(
        &self,
        key: &str,
        request_id: Option<&str>,
        http_status: u16,
        response: &Value,
    ) {
        let rid = request_id
            .map(|r| format!(", RequestId {r}"))
            .unwrap_or_default();
        self.ledger
            .answered(key, format!("ok (HTTP {http_status}{rid})"));
        self.send_op(
            "UPDATE attempts SET outcome = 'ok', finished_at = ?2, request_id = ?3, http_status = ?4, response_json = ?5 WHERE key = ?1",
            vec![key.sv(), now().sv(), opt(request_id), i64::from(http_status).sv(), response.to_string().sv()],
            Some(key.to_owned()),
        );
    }

    /// Records an attempt's failure.
    pub fn attempt_failed(&self, key: &str, err: &crate::cloud::ApiError) {
        let class = serde_json::to_value(err.class)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned));
        self.ledger.answered(key, format!("an error: {err}"));
        self.send_op(
            "UPDATE attempts SET outcome = 'error', finished_at = ?2, error_class = ?3, error_code = ?4, error_message = ?5, request_id = ?6, http_status = ?7 WHERE key = ?1",
            vec![
                key.sv(),
                now().sv(),
                opt(class.as_deref()),
                err.code.clone().sv(),
                err.message.clone().sv(),
                opt(err.request_id.as_deref()),
                err.http_status.map_or(rusqlite::types::Value::Null, |s| i64::from(s).sv()),
            ],
            Some(key.to_owned()),
        );
    }

    /// Appends an event (not awaited).
    pub fn event(&self, run_id: &str, event: &super::event::RunEvent) {
        if let Ok(json) = serde_json::to_string(event) {
            self.send(
                "INSERT INTO events (run_id, at, event_json) VALUES (?1, ?2, ?3)",
                vec![run_id.sv(), now().sv(), json.sv()],
            );
        }
    }

    /// The events of run `run_id` (its full id), in the order they were
    /// journaled, each with the time it was written.
    pub fn events(
        &self,
        run_id: &str,
    ) -> Result<Vec<(String, super::event::RunEvent)>, JournalError> {
        let conn = self.reader()?;
        let rows: Vec<(String, String)> = self.rows(
            &conn,
            "SELECT at, event_json FROM events WHERE run_id = ?1 ORDER BY seq",
            [run_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        rows.into_iter()
            .map(|(at, json)| {
                serde_json::from_str(&json)
                    .map(|e| (at, e))
                    .map_err(|e| JournalError::Corrupt(format!("event of run {run_id}: {e}")))
            })
            .collect()
    }

    /// Lists runs, newest first.
    pub fn list_runs(&self) -> Result<Vec<RunRow>, JournalError> {
        let conn = self.reader()?;
        self.rows(
            &conn,
            &format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at DESC, id"),
            [],
            run_row,
        )
    }

    /// Everything about one run: its full id, or a prefix that starts
    /// exactly one id (an empty prefix names no run).
    pub fn load_run(&self, id: &str) -> Result<RunRecord, JournalError> {
        if id.is_empty() {
            return Err(JournalError::NoSuchRun(String::new()));
        }
        let conn = self.reader()?;
        // A plain prefix comparison: `%` and `_` in what was typed are
        // characters, not LIKE wildcards.
        let ids: Vec<String> = self.rows(
            &conn,
            "SELECT id FROM runs WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id",
            params![id],
            |r| r.get(0),
        )?;
        let id = match ids.as_slice() {
            [] => return Err(JournalError::NoSuchRun(id.to_owned())),
            [one] => one.clone(),
            _ if ids.iter().any(|i| i == id) => id.to_owned(),
            _ => {
                return Err(JournalError::AmbiguousRun {
                    prefix: id.to_owned(),
                    candidates: ids,
                });
            }
        };
        let (run, plan_json, options_json) = conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS}, plan_json, options_json FROM runs WHERE id = ?1"),
                [&id],
                |r| Ok((run_row(r)?, r.get::<_, String>(8)?, r.get::<_, String>(9)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?
            .ok_or_else(|| JournalError::NoSuchRun(id.clone()))?;
        let approvals = self.rows(
            &conn,
            "SELECT step_id, approved_by, method, digest, at FROM approvals WHERE run_id = ?1 ORDER BY rowid",
            [&id],
            |r| Ok(ApprovalRow { step_id: r.get(0)?, approved_by: r.get(1)?, method: r.get(2)?, digest: r.get(3)?, at: r.get(4)? }),
        )?;
        let steps = self.rows(
            &conn,
            "SELECT step_id, status, items, detail, started_at, finished_at FROM steps WHERE run_id = ?1 ORDER BY rowid",
            [&id],
            |r| {
                Ok(StepRow {
                    step_id: r.get(0)?,
                    status: typed(r, 1)?,
                    items: r.get(2)?,
                    detail: r.get(3)?,
                    started_at: r.get(4)?,
                    finished_at: r.get(5)?,
                })
            },
        )?;
        let units = self.rows(
            &conn,
            "SELECT step_id, item, item_json, status, output_json, error, finished_at FROM units WHERE run_id = ?1 ORDER BY step_id, item",
            [&id],
            |r| {
                Ok(UnitRow {
                    step_id: r.get(0)?,
                    item: r.get(1)?,
                    item_json: r.get(2)?,
                    status: typed(r, 3)?,
                    output_json: r.get(4)?,
                    error: r.get(5)?,
                    finished_at: r.get(6)?,
                })
            },
        )?;
        let attempts = self.rows(
            &conn,
            "SELECT step_id, item, attempt, kind, action, risk, outcome, error_class, error_code, error_message, request_id, http_status, sent_at, finished_at, request_json, response_json
             FROM attempts WHERE run_id = ?1 ORDER BY sent_at, rowid",
            [&id],
            |r| {
                Ok(AttemptRow {
                    step_id: r.get(0)?,
                    item: r.get(1)?,
                    attempt: r.get(2)?,
                    kind: typed(r, 3)?,
                    action: r.get(4)?,
                    risk: typed(r, 5)?,
                    outcome: typed(r, 6)?,
                    error_class: r
                        .get::<_, Option<String>>(7)?
                        .map(|_| typed(r, 7))
                        .transpose()?,
                    error_code: r.get(8)?,
                    error_message: r.get(9)?,
                    request_id: r.get(10)?,
                    http_status: r.get(11)?,
                    sent_at: r.get(12)?,
                    finished_at: r.get(13)?,
                    request_json: r.get(14)?,
                    response_json: r.get(15)?,
                })
            },
        )?;
        Ok(RunRecord {
            run,
            plan_json,
            options_json,
            approvals,
            steps,
            units,
            attempts,
        })
    }

    /// Runs a query and maps every row.
    fn rows<T>(
        &self,
        conn: &Connection,
        sql: &str,
        args: impl rusqlite::Params,
        map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, JournalError> {
        conn.prepare(sql)
            .and_then(|mut stmt| stmt.query_map(args, map)?.collect())
            .map_err(|e| self.sql(e))
    }

    fn reader(&self) -> Result<Connection, JournalError> {
        open_conn(&self.path)
    }

    fn sql(&self, source: rusqlite::Error) -> JournalError {
        JournalError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

/// The columns of a [`RunRow`], in [`run_row`]'s order.
const RUN_COLUMNS: &str = "id, name, source, digest, status, created_at, updated_at, finished_at";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        name: r.get(1)?,
        source: r.get(2)?,
        digest: r.get(3)?,
        status: typed(r, 4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
        finished_at: r.get(7)?,
    })
}

/// Reads a text column into one of the journal's enums (by its serde name).
fn typed<T: serde::de::DeserializeOwned>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    serde_json::from_value(Value::String(text.clone())).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown value `{text}`").into(),
        )
    })
}

/// Brings the schema to [`SCHEMA_VERSION`], or refuses a newer journal.
/// One immediate transaction: two processes opening an old journal at once
/// migrate it once.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), JournalError> {
    let sql = |source| JournalError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    let found = schema_version(&tx).map_err(sql)?;
    if found > SCHEMA_VERSION {
        return Err(JournalError::TooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    for step in &MIGRATIONS[usize::try_from(found).unwrap_or_default()..] {
        tx.execute_batch(step).map_err(sql)?;
    }
    tx.execute("DELETE FROM schema_version", []).map_err(sql)?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES (?1)",
        [SCHEMA_VERSION],
    )
    .map_err(sql)?;
    tx.commit().map_err(sql)
}

/// The schema version of a journal (0: empty, or from before versions).
fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    let versioned: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
        [],
        |r| r.get(0),
    )?;
    if !versioned {
        return Ok(0);
    }
    conn.query_row("SELECT MAX(version) FROM schema_version", [], |r| {
        r.get::<_, Option<i64>>(0)
    })
    .map(Option::unwrap_or_default)
}

fn open_conn(path: &Path) -> Result<Connection, JournalError> {
    let conn = Connection::open(path).map_err(|source| JournalError::Sqlite {
        path: path.to_owned(),
        source,
    })?;
    // WAL lets `runs`/`show` read while a run writes, and makes every commit
    // survive a crash of this process. The writer raises `synchronous` to
    // FULL for the commits that must also survive a power loss.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000;",
    )
    .map_err(|source| JournalError::Sqlite {
        path: path.to_owned(),
        source,
    })?;
    Ok(conn)
}

fn writer(
    mut conn: Connection,
    rx: &mpsc::Receiver<Op>,
    failed: &AtomicBool,
    synced_commits: &AtomicU64,
    world: &Mutex<Option<KeptWorld>>,
    ledger: &Ledger,
) {
    let mut synced = false;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        // Only batches holding a write that must survive a power loss (the
        // intent of a mutating call) pay for a sync to disk; the rest are
        // durable against a crash of this process, which WAL gives for free.
        let durable = batch.iter().any(|op| op.durable);
        let mut result = Ok(());
        if durable != synced {
            let level = if durable { "FULL" } else { "NORMAL" };
            result = conn
                .pragma_update(None, "synchronous", level)
                .map_err(|e| e.to_string());
            synced = durable;
        }
        let world = world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = result.and_then(|()| commit(&mut conn, &batch, world.as_ref()));
        drop(world);
        match &result {
            Err(e) => {
                if ledger.first_failure().is_none() {
                    tracing::error!("journal write failed: {e}");
                }
                ledger.write_failed(e);
                failed.store(true, Ordering::SeqCst);
            }
            Ok(()) if durable => {
                synced_commits.fetch_add(1, Ordering::SeqCst);
            }
            Ok(()) => {}
        }
        for op in batch {
            if let Some(key) = &op.answer_of {
                ledger.answer_committed(key, result.is_ok());
            }
            if let Some(ack) = op.ack {
                let _ = ack.send(result.clone());
            }
        }
    }
}

/// Commits a batch, with the kept world when it changed: taken after every
/// answer in the batch arrived, so it holds their effects.
fn commit(conn: &mut Connection, batch: &[Op], world: Option<&KeptWorld>) -> Result<(), String> {
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    for op in batch {
        if op.sql == "SELECT 1" {
            continue;
        }
        let mut stmt = tx.prepare_cached(op.sql).map_err(|e| e.to_string())?;
        stmt.execute(rusqlite::params_from_iter(op.args.iter()))
            .map_err(|e| e.to_string())?;
    }
    if let Some(w) = world
        && let Some(json) = (w.source)()
    {
        tx.prepare_cached(
            "INSERT INTO worlds (run_id, world_json, at) VALUES (?1, ?2, ?3)
             ON CONFLICT (run_id) DO UPDATE SET world_json = ?2, at = ?3",
        )
        .and_then(|mut stmt| stmt.execute(params![w.run_id, json, now()]))
        .map_err(|e| e.to_string())?;
    }
    tx.commit().map_err(|e| e.to_string())
}

/// Converts arguments of journal writes into owned SQLite values.
trait Sv {
    fn sv(self) -> rusqlite::types::Value;
}

impl Sv for &str {
    fn sv(self) -> rusqlite::types::Value {
        self.to_owned().into()
    }
}

impl Sv for String {
    fn sv(self) -> rusqlite::types::Value {
        self.into()
    }
}

impl Sv for i64 {
    fn sv(self) -> rusqlite::types::Value {
        self.into()
    }
}

fn opt(s: Option<&str>) -> rusqlite::types::Value {
    s.map_or(rusqlite::types::Value::Null, |s| s.to_owned().into())
}

fn idx(item: usize) -> rusqlite::types::Value {
    i64::try_from(item).unwrap_or(i64::MAX).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables of a journal from before schema versions.
    fn unversioned_shape() -> &'static str {
        &V1[..V1.find("CREATE TABLE worlds").unwrap()]
    }

    #[tokio::test]
    async fn an_unversioned_journal_is_migrated_and_keeps_its_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(unversioned_shape()).unwrap();
        conn.execute(
            "INSERT INTO runs (id, name, source, digest, plan_json, options_json, status, created_at, updated_at) VALUES ('r1', 'n', 'p.yaml', 'd', '{}', '{}', 'failed', 't', 't')",
            [],
        )
        .unwrap();
        drop(conn);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.load_run("r1").unwrap().run.status, RunStatus::Failed);
        let conn = Connection::open(&path).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        // The new table is there and used.
        j.keep_world("r1", Arc::new(|| Some("{\"a\":1}".to_owned())));
        j.flush().await.unwrap();
        assert_eq!(j.world("r1").unwrap().as_deref(), Some("{\"a\":1}"));
        assert_eq!(j.world("r2").unwrap(), None);
        // Opening again is a no-op.
        drop(Journal::open(dir.path()).unwrap());
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_journal_from_a_newer_binary_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        drop(Journal::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join("journal.db")).unwrap();
        conn.execute(
            "UPDATE schema_version SET version = ?1",
            [SCHEMA_VERSION + 1],
        )
        .unwrap();
        let err = Journal::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, JournalError::TooNew { found, supported, .. } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err:?}"
        );
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION + 1);
    }

    #[tokio::test]
    async fn the_kept_world_is_saved_with_every_commit_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let n = Arc::new(AtomicU64::new(0));
        let changes = Arc::clone(&n);
        j.keep_world(
            "r1",
            Arc::new(move || {
                let n = changes.load(Ordering::SeqCst);
                n.is_multiple_of(2).then(|| n.to_string())
            }),
        );
        for (i, saved) in [(0, "0"), (1, "0"), (2, "2"), (3, "2")] {
            n.store(i, Ordering::SeqCst);
            j.flush().await.unwrap();
            assert_eq!(j.world("r1").unwrap().as_deref(), Some(saved));
        }
    }

    #[tokio::test]
    async fn round_trips_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.create_run("r1", "demo", "p.yaml", "abc", "{}".into(), "{}".into())
            .await
            .unwrap();
        j.record_approval("r1", None, "me@host", "--yes", "abc")
            .await
            .unwrap();
        j.step_started("r1", "s1", Some(2)).await.unwrap();
        j.unit_started("r1", "s1", 0, Some(&serde_json::json!(7)));
        j.attempt_intent(
            "k1",
            "r1",
            "s1",
            0,
            1,
            AttemptKind::Call,
            "StopDtsJob",
            Risk::Mutating,
            "{}".into(),
            true,
        )
        .await
        .unwrap();
        j.attempt_failed(
            "k1",
            &crate::cloud::ApiError::new("InternalError.System", "boom", Some(500)),
        );
        j.unit_finished(
            "r1",
            "s1",
            0,
            Outcome::Succeeded,
            Some(&serde_json::json!({"ok": true})),
            None,
        )
        .await
        .unwrap();
        j.step_finished("r1", "s1", Outcome::Succeeded, None)
            .await
            .unwrap();
        j.set_run_status("r1", RunStatus::Succeeded, true)
            .await
            .unwrap();
        let rec = j.load_run("r").unwrap();
        assert_eq!(rec.run.status, RunStatus::Succeeded);
        assert_eq!(rec.approvals[0].method, "--yes");
        assert_eq!(rec.units[0].item_json.as_deref(), Some("7"));
        assert_eq!(
            rec.attempts[0].error_code.as_deref(),
            Some("InternalError.System")
        );
        assert_eq!(
            rec.attempts[0].error_class,
            Some(ErrorClass::UnknownOutcome)
        );
        assert_eq!(rec.attempts[0].kind, AttemptKind::Call);
        assert_eq!(rec.attempts[0].outcome, AttemptOutcome::Error);
        assert_eq!(rec.attempts[0].risk, Risk::Mutating);
        assert_eq!(rec.units[0].status, StepStatus::Succeeded);
        assert_eq!(rec.steps[0].status, StepStatus::Succeeded);
        assert!(matches!(j.load_run("zzz"), Err(JournalError::NoSuchRun(_))));
        assert_eq!(
            j.synced_commits(),
            1,
            "only the mutating intent was synced to disk"
        );
        j.attempt_intent(
            "k2",
            "r1",
            "s1",
            1,
            1,
            AttemptKind::Poll,
            "GetDISyncInstanceInfo",
            Risk::Read,
            "{}".into(),
            false,
        )
        .await
        .unwrap();
        j.flush().await.unwrap();
        assert_eq!(j.synced_commits(), 1, "reads are not synced");
    }
}
