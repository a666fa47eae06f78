//! The journal: every run, its plan, approvals, each step and fan-out item,
//! every attempt (request redacted, answer, outcome, timings) and every event,
//! in one database: by default SQLite under the state directory (`sqlite3`
//! can read it), or a PostgreSQL database a team shares ([`JournalUrl`],
//! `--journal postgres://...`; see [`pg`]). Both backends hold the same
//! tables and keep the same rules; the SQL is written once, in SQLite's
//! dialect, which PostgreSQL shares here but for `?N` placeholders (rewritten
//! as `$N`) and the implicit `rowid` (an explicit column there).
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
//! single transaction (group commit, see [`queue`]): a commit is due when a
//! write in it is waited for, and the writes nobody waits for (answers,
//! events) ride along with it, so a 1,000-item fan-out shares commits and
//! fsyncs instead of paying for them per row, while callers that need
//! durability still wait for their own commit. Requests hold only API parameters: the common
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
//! The versions count alike on both backends: PostgreSQL's steps are in
//! [`pg::MIGRATIONS`], in its dialect, one for each step here.
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

use rusqlite::{Connection, TransactionBehavior};
use serde_json::Value;
use tokio::sync::oneshot;

use super::event::Outcome;
use super::ledger::{Ledger, SentCall};
use super::status::{AttemptKind, AttemptOutcome, RunStatus, StepStatus};
use crate::cloud::{ErrorClass, Risk};

mod approvals;
mod busy;
mod link;
mod locks;
mod pg;
mod queue;
mod reconnect;

pub use link::Unreachable;

pub use approvals::{
    ApprovalChannel, IdentityRecord, IdentityRole, NewApproval, PreApprovalRow, RunIdentityRow,
    Verdict,
};
pub use locks::{AbandonOutcome, Abandoned};

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
    /// PostgreSQL failed (or could not be reached).
    #[error("journal database error at {url}")]
    Postgres {
        /// The journal URL, without its password.
        url: String,
        /// The cause.
        #[source]
        source: postgres::Error,
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
    /// Another live process holds the run (its lease has not run out).
    #[error(
        "run {run} is held by host {host} (operator {operator}) until its lease runs out at {until}"
    )]
    Held {
        /// The run.
        run: String,
        /// Its holder's host.
        host: String,
        /// Its holder's operator.
        operator: String,
        /// When its lease runs out without a heartbeat.
        until: String,
    },
    /// This process no longer holds its run's lease: it ran out (the
    /// process was stopped or starved longer than the lease), or another
    /// process took the run over. Nothing more is sent.
    #[error(
        "this process lost the lease of run {0} (it ran out, or another process took the run over); nothing more is sent"
    )]
    LeaseLost(String),
    /// The journal's database could not be reached for longer than the
    /// run's patience (or its lease): nothing more is sent, and the run is
    /// left as journaled, resumable.
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
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
        "the journal {at} has schema version {found}, newer than this runbook knows (up to {supported})"
    )]
    TooNew {
        /// The database file or URL (without its password).
        at: String,
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
const MIGRATIONS: &[&str] = &[V1, V2, V3, locks::V4, approvals::V5, V6];

/// Version 6: a run parked at an approval given from elsewhere
/// (`waiting_approval`): which gate (`plan` or `step:ID`), since when,
/// and until when it waits.
const V6: &str = "
ALTER TABLE runs ADD COLUMN waiting_gate TEXT;
ALTER TABLE runs ADD COLUMN waiting_since TEXT;
ALTER TABLE runs ADD COLUMN waiting_until TEXT;
";

/// Version 3: a request to stop a run, from any host (`runbook cancel`):
/// who asked and when.
const V3: &str = "ALTER TABLE runs ADD COLUMN cancel_requested TEXT;";

/// Version 2: who holds a run (host, operator, the holding process), where
/// it goes (target), its liveness (last heartbeat, lease length, in ms
/// since the epoch), and approval rows made append-only in the database.
const V2: &str = "
ALTER TABLE runs ADD COLUMN host TEXT;
ALTER TABLE runs ADD COLUMN operator TEXT;
ALTER TABLE runs ADD COLUMN target TEXT;
ALTER TABLE runs ADD COLUMN holder TEXT;
ALTER TABLE runs ADD COLUMN heartbeat_ms INTEGER;
ALTER TABLE runs ADD COLUMN lease_ms INTEGER;
CREATE TRIGGER approvals_no_update BEFORE UPDATE ON approvals
BEGIN SELECT RAISE(ABORT, 'journal table approvals is append-only'); END;
CREATE TRIGGER approvals_no_delete BEFORE DELETE ON approvals
BEGIN SELECT RAISE(ABORT, 'journal table approvals is append-only'); END;
";

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// A write, with an optional acknowledgement once committed.
struct Op {
    sql: &'static str,
    args: Vec<Val>,
    ack: Option<oneshot::Sender<Result<(), String>>>,
    /// Must survive a power loss, not only a crash of this process: the
    /// commit that holds it is synced to disk (`synchronous = FULL`).
    durable: bool,
    /// The attempt whose answer this write records: the ledger learns
    /// whether it reached the database.
    answer_of: Option<String>,
    /// Fenced by the run's lease: a write that changes no row (the lease
    /// ran out, or another process took the run over) fails its whole
    /// commit, and the journal stops (see [`Journal::claim_run`]).
    fenced: bool,
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

/// Where a journal lives: `sqlite:PATH` (a database file) or
/// `postgres://USER[:PASSWORD]@HOST:PORT/DB[?sslmode=MODE]`. Shown
/// (`Display`, `Debug`) without its password.
#[derive(Clone)]
pub struct JournalUrl(Location);

#[derive(Clone)]
enum Location {
    Sqlite(PathBuf),
    Postgres(Box<pg::PgTarget>),
}

impl JournalUrl {
    /// As a command to be run elsewhere names it (`--journal` of `runbook
    /// approve`): a database file by its absolute path; never a password.
    pub fn for_command(&self) -> String {
        match &self.0 {
            Location::Sqlite(path) => format!(
                "sqlite:{}",
                std::path::absolute(path)
                    .unwrap_or_else(|_| path.clone())
                    .display()
            ),
            Location::Postgres(t) => t.shown().to_owned(),
        }
    }

    /// The default: `journal.db` in the state directory.
    pub fn in_state_dir(state_dir: &Path) -> JournalUrl {
        JournalUrl(Location::Sqlite(state_dir.join("journal.db")))
    }

    /// Whether it is a PostgreSQL journal.
    pub fn is_postgres(&self) -> bool {
        matches!(self.0, Location::Postgres(_))
    }
}

impl std::str::FromStr for JournalUrl {
    type Err = String;

    /// Parses a journal URL; the error never repeats the text (it may hold
    /// a password).
    fn from_str(text: &str) -> Result<JournalUrl, String> {
        if let Some(path) = text.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err("`sqlite:` needs the database file's path, e.g. `sqlite:/var/lib/runbook/journal.db`".to_owned());
            }
            return Ok(JournalUrl(Location::Sqlite(PathBuf::from(path))));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return pg::PgTarget::parse(text).map(|t| JournalUrl(Location::Postgres(Box::new(t))));
        }
        Err("a journal URL is `sqlite:PATH` or `postgres://USER@HOST:PORT/DB`".to_owned())
    }
}

impl std::fmt::Display for JournalUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Location::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Location::Postgres(t) => f.write_str(t.shown()),
        }
    }
}

impl std::fmt::Debug for JournalUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A value written to or read from the journal, the same on both backends.
#[derive(Clone, Debug, PartialEq)]
enum Val {
    Null,
    Int(i64),
    Text(String),
}

/// A row read back, column by column.
struct Row(Vec<Val>);

impl Row {
    fn corrupt(&self, i: usize, wanted: &str) -> JournalError {
        JournalError::Corrupt(format!("column {i} is {:?}, not {wanted}", self.0.get(i)))
    }

    fn opt_text(&self, i: usize) -> Result<Option<String>, JournalError> {
        match self.0.get(i) {
            Some(Val::Null) => Ok(None),
            Some(Val::Text(s)) => Ok(Some(s.clone())),
            _ => Err(self.corrupt(i, "text")),
        }
    }

    fn text(&self, i: usize) -> Result<String, JournalError> {
        self.opt_text(i)?.ok_or_else(|| self.corrupt(i, "text"))
    }

    fn opt_int(&self, i: usize) -> Result<Option<i64>, JournalError> {
        match self.0.get(i) {
            Some(Val::Null) => Ok(None),
            Some(Val::Int(n)) => Ok(Some(*n)),
            _ => Err(self.corrupt(i, "an integer")),
        }
    }

    fn int(&self, i: usize) -> Result<i64, JournalError> {
        self.opt_int(i)?
            .ok_or_else(|| self.corrupt(i, "an integer"))
    }

    /// A text column read into one of the journal's enums (by its serde name).
    fn typed<T: serde::de::DeserializeOwned>(&self, i: usize) -> Result<T, JournalError> {
        let text = self.text(i)?;
        serde_json::from_value(Value::String(text.clone()))
            .map_err(|_| JournalError::Corrupt(format!("unknown value `{text}` in column {i}")))
    }

    fn opt_typed<T: serde::de::DeserializeOwned>(
        &self,
        i: usize,
    ) -> Result<Option<T>, JournalError> {
        match self.0.get(i) {
            Some(Val::Null) => Ok(None),
            _ => self.typed(i).map(Some),
        }
    }
}

/// A query for the PostgreSQL reader thread.
struct ReadReq {
    sql: String,
    args: Vec<Val>,
    reply: mpsc::Sender<Result<Vec<Vec<Val>>, postgres::Error>>,
}

/// How reads reach the database.
enum Reader {
    /// A connection opened per read (cheap for SQLite; WAL lets it read
    /// while the writer writes).
    Sqlite(PathBuf),
    /// The reader thread, which owns its connection.
    Postgres(mpsc::Sender<ReadReq>),
}

/// A process's hold on a run (see [`Journal::claim_run`]).
#[derive(Clone, Debug)]
pub struct RunClaim {
    /// This host's name.
    pub host: String,
    /// `user@host`.
    pub operator: String,
    /// Where the calls go.
    pub target: String,
    /// Unique to this process and claim.
    pub holder: String,
    /// How long the run stays alive without a heartbeat.
    pub lease: std::time::Duration,
}

impl RunClaim {
    /// A claim by this process, on this host (`RUNBOOK_HOST`, else the
    /// host name).
    pub fn here(operator: String, target: String, lease: std::time::Duration) -> RunClaim {
        let host = host_name();
        let holder = format!(
            "{host}:{}:{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        RunClaim {
            host,
            operator,
            target,
            holder,
            lease,
        }
    }
}

/// This host's name as the journal records it: `RUNBOOK_HOST`, else the
/// kernel's host name.
pub fn host_name() -> String {
    std::env::var("RUNBOOK_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Keeps a run's lease renewed while it lives ([`Journal::heartbeat`]).
#[derive(Debug)]
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Handle to the journal: cheap to clone, shared by all step tasks.
#[derive(Clone)]
pub struct Journal {
    /// Whether the database can be reached, the run this process holds
    /// (once claimed: every intent of a call is then fenced by its lease)
    /// and until when that lease is known to be valid.
    link: Arc<link::Link>,
    url: Arc<JournalUrl>,
    reader: Arc<Reader>,
    tx: queue::Sender<Op>,
    failed: Arc<AtomicBool>,
    synced: Arc<AtomicU64>,
    world: Arc<Mutex<Option<KeptWorld>>>,
    ledger: Arc<Ledger>,
    /// The connection of resource-lock transactions (PostgreSQL; see `locks`).
    locks_conn: Arc<std::sync::OnceLock<mpsc::Sender<locks::TxReq>>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("url", &self.url)
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

/// Who holds a run, where it goes and whether it is alive (all `None` in
/// rows from before schema version 2).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunHolder {
    /// The host that runs (or last ran) it: `RUNBOOK_HOST`, else the host name.
    pub host: Option<String>,
    /// Who started (or last resumed) it, `user@host`.
    pub operator: Option<String>,
    /// Where its calls go: `simulator` or `cloud`, with the account
    /// fingerprint.
    pub target: Option<String>,
    /// Last heartbeat, ms since the epoch.
    pub heartbeat_ms: Option<i64>,
    /// Lease length, ms: alive until `heartbeat_ms + lease_ms`.
    pub lease_ms: Option<i64>,
}

impl RunHolder {
    /// When its lease runs out without a new heartbeat (ms since the epoch).
    pub fn lease_until_ms(&self) -> Option<i64> {
        Some(self.heartbeat_ms?.saturating_add(self.lease_ms?))
    }

    /// Whether a process holds the run now (its lease has not run out); a
    /// run left parked (`--detach`) has no holder.
    pub fn holder_alive(&self, now_ms: i64) -> bool {
        self.lease_until_ms().is_some_and(|until| now_ms <= until)
    }

    /// The last heartbeat as a timestamp.
    pub fn last_heartbeat(&self) -> Option<String> {
        let ms = self.heartbeat_ms?;
        jiff::Timestamp::from_millisecond(ms)
            .ok()
            .map(|t| t.to_string())
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
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
    /// Holder, target and liveness.
    pub holder: RunHolder,
    /// The gate it last waited at for an approval from elsewhere (it
    /// waits there now when its status is `waiting_approval`).
    pub waiting: Option<Waiting>,
}

/// Where and since when a run waits (or last waited) for an approval given
/// from elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// `plan` (the plan's approval) or the id of an `approve` step.
    pub gate: String,
    /// When it began to wait.
    pub since: String,
    /// When the wait times out (the run then fails, resumable).
    pub until: Option<String>,
}

/// An approval (or a rejection), as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalRow {
    /// Step (`None`: the whole plan).
    pub step_id: Option<String>,
    /// Who, as a label: `user@host`.
    pub approved_by: String,
    /// What exactly was used: `terminal`, `--yes`, `--approve`, `approve`,
    /// `pre-approval`.
    pub method: String,
    /// Plan digest it is bound to.
    pub digest: String,
    /// When.
    pub at: String,
    /// How it was given (rows from before schema version 5: from `method`).
    pub channel: ApprovalChannel,
    /// Who, as STS `GetCallerIdentity` said (`None` in rows from before
    /// schema version 5, or where no identity could be had).
    pub identity: Option<IdentityRecord>,
    /// Approved or rejected.
    pub verdict: Verdict,
    /// Why (a rejection's reason).
    pub reason: Option<String>,
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
    /// Approvals and rejections, in the order given.
    pub approvals: Vec<ApprovalRow>,
    /// Who started and resumed it, verified through STS, in order.
    pub identities: Vec<RunIdentityRow>,
    /// Steps.
    pub steps: Vec<StepRow>,
    /// Units.
    pub units: Vec<UnitRow>,
    /// Attempts, in order.
    pub attempts: Vec<AttemptRow>,
}

impl RunRecord {
    /// Who started the run, verified through STS (`None` for runs from
    /// before verified identities, or when STS could not tell).
    pub fn starter(&self) -> Option<&IdentityRecord> {
        self.identities
            .iter()
            .find(|i| i.role == IdentityRole::Started)
            .map(|i| &i.identity)
    }
}

impl Journal {
    /// Opens (creating if needed) `journal.db` in `state_dir` and starts the
    /// writer thread.
    pub fn open(state_dir: &Path) -> Result<Journal, JournalError> {
        Journal::open_url(&JournalUrl::in_state_dir(state_dir))
    }

    /// Opens the journal at `url` (creating, or migrating, its schema if
    /// needed) and starts the writer thread.
    pub fn open_url(url: &JournalUrl) -> Result<Journal, JournalError> {
        match &url.0 {
            Location::Sqlite(path) => Journal::open_sqlite(url, path),
            Location::Postgres(target) => Journal::open_postgres(url, target),
        }
    }

    fn open_sqlite(url: &JournalUrl, path: &Path) -> Result<Journal, JournalError> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        super::private::create_dir(dir).map_err(|source| JournalError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        // Created 0600 before SQLite opens it: SQLite gives the WAL and
        // shared-memory files the database file's permissions.
        super::private::open_file(path).map_err(|source| JournalError::Dir {
            path: path.to_owned(),
            source,
        })?;
        for companion in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(companion);
            super::private::warn_if_loose(Path::new(&name));
        }
        let mut conn = open_conn(path)?;
        migrate(&mut conn, path)?;
        let link = Arc::new(link::Link::default());
        let (waits, at) = (Arc::clone(&link), path.display().to_string());
        Journal::start(url, Reader::Sqlite(path.to_owned()), link, move || {
            let mut conn = conn;
            // On the writer thread, which waits for the lock (see [`busy`]).
            busy::install(&mut conn, waits, at.clone()).map_err(|source| JournalError::Sqlite {
                path: PathBuf::from(at),
                source,
            })?;
            Ok(WriterConn::Sqlite {
                conn,
                synced: false,
            })
        })
    }

    fn open_postgres(url: &JournalUrl, target: &pg::PgTarget) -> Result<Journal, JournalError> {
        let shown = target.shown().to_owned();
        let (read_tx, read_rx) = mpsc::channel::<ReadReq>();
        let reading = target.clone();
        let link = Arc::new(link::Link::default());
        let read_link = Arc::clone(&link);
        std::thread::Builder::new()
            .name("journal-reader".to_owned())
            .spawn(move || pg_reader(&reading, &read_rx, &read_link))
            .map_err(|source| JournalError::Dir {
                path: PathBuf::from("journal-reader"),
                source,
            })?;
        let writing = target.clone();
        let supported = SCHEMA_VERSION;
        let write_link = Arc::clone(&link);
        Journal::start(url, Reader::Postgres(read_tx), link, move || {
            let at = shown;
            let mut session = pg::Session::open(&writing, std::time::Duration::from_secs(3600))
                .map_err(|source| JournalError::Postgres {
                    url: at.clone(),
                    source,
                })?;
            pg::migrate(session.client()).map_err(|e| match e {
                pg::MigrateError::Db(source) => JournalError::Postgres {
                    url: at.clone(),
                    source,
                },
                pg::MigrateError::TooNew(found) => JournalError::TooNew {
                    at: at.clone(),
                    found,
                    supported,
                },
            })?;
            Ok(WriterConn::Postgres(Box::new(reconnect::Writer::new(
                writing, session, write_link,
            ))))
        })
    }

    /// Starts the writer thread, which first makes its connection with
    /// `connect` (on that thread: a PostgreSQL client must not be made, used
    /// or dropped on a thread of the engine's runtime).
    fn start(
        url: &JournalUrl,
        reader: Reader,
        link: Arc<link::Link>,
        connect: impl FnOnce() -> Result<WriterConn, JournalError> + Send + 'static,
    ) -> Result<Journal, JournalError> {
        let (queue, tx) = queue::Queue::new(queue::LINGER);
        let failed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&failed);
        let synced = Arc::new(AtomicU64::new(0));
        let synced_count = Arc::clone(&synced);
        let world = Arc::new(Mutex::new(None));
        let kept = Arc::clone(&world);
        let ledger = Arc::new(Ledger::default());
        let marks = Arc::clone(&ledger);
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("journal-writer".to_owned())
            .spawn(move || {
                // However the writer ends, later writes are refused.
                let _closed = Closer(&queue);
                match connect() {
                    Ok(conn) => {
                        let _ = ready_tx.send(Ok(()));
                        writer(conn, &queue, &flag, &synced_count, &kept, &marks);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|source| JournalError::Dir {
                path: PathBuf::from("journal-writer"),
                source,
            })?;
        ready_rx.recv().map_err(|_| JournalError::WriterGone)??;
        Ok(Journal {
            link,
            url: Arc::new(url.clone()),
            reader: Arc::new(reader),
            tx,
            failed,
            synced,
            world,
            ledger,
            locks_conn: Arc::default(),
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
        let rows = self.query(
            "SELECT world_json FROM worlds WHERE run_id = ?1",
            vec![run_id.sv()],
        )?;
        rows.first().map(|r| r.text(0)).transpose()
    }

    /// How many commits were synced to disk so far (those holding the
    /// intent of a mutating call).
    pub fn synced_commits(&self) -> u64 {
        self.synced.load(Ordering::SeqCst)
    }

    /// Where the journal is (a PostgreSQL URL without its password).
    pub fn url(&self) -> &JournalUrl {
        &self.url
    }

    /// The mutating calls this process sent, and whether their answers
    /// reached the journal: what is known when the journal fails.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
    fn send(&self, sql: &'static str, args: Vec<Val>) {
        self.send_op(sql, args, None);
    }

    fn send_op(&self, sql: &'static str, args: Vec<Val>, answer_of: Option<String>) {
        let op = Op {
            sql,
            args,
            ack: None,
            durable: false,
            answer_of,
            fenced: false,
        };
        let _ = self.tx.send(op, false);
    }

    /// Queues a write and waits until it is committed: durable against a
    /// crash of this process (WAL, `synchronous = NORMAL`).
    async fn send_acked(&self, sql: &'static str, args: Vec<Val>) -> Result<(), JournalError> {
        self.send_waiting(sql, args, false, false).await
    }

    /// Queues a write and waits until it is committed and, with `durable`,
    /// synced to disk so that not even a power loss undoes it (every earlier
    /// commit is synced along with it, as the WAL is written in order).
    async fn send_waiting(
        &self,
        sql: &'static str,
        args: Vec<Val>,
        durable: bool,
        fenced: bool,
    ) -> Result<(), JournalError> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(self.stopped());
        }
        let (ack, done) = oneshot::channel();
        let op = Op {
            sql,
            args,
            ack: Some(ack),
            durable,
            answer_of: None,
            fenced,
        };
        self.tx.send(op, true).map_err(|_| self.stopped())?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.starts_with(FENCED) => {
                let run = self.link.held().map(|h| h.run).unwrap_or_default();
                Err(JournalError::LeaseLost(run))
            }
            _ => Err(self.stopped()),
        }
    }

    /// Why the journal stopped writing: its database could not be reached
    /// in time, or an earlier write failed.
    fn stopped(&self) -> JournalError {
        if let Some(u) = self.link.gave_up() {
            return JournalError::Unreachable(u);
        }
        let fenced = self
            .ledger
            .first_failure()
            .is_some_and(|f| f.starts_with(FENCED) || f.contains("lost the lease"));
        match self.link.held() {
            Some(h) if fenced || now_ms() > self.link.lease_until() => {
                JournalError::LeaseLost(h.run)
            }
            _ => JournalError::WriterGone,
        }
    }

    /// How long a run waits for an unreachable journal (see [`link`]):
    /// the writer reconnects meanwhile, and no call is sent. Zero (the
    /// default) gives up at the first connection error.
    pub fn set_patience(&self, patience: std::time::Duration) {
        self.link.set_patience(patience);
    }

    /// Waits while the journal's database cannot be reached (the writer
    /// reconnects); `Err` once it gave up, or the journal stopped: then no
    /// call may be sent.
    pub async fn reachable(&self) -> Result<(), JournalError> {
        self.link.reachable().await?;
        if self.failed.load(Ordering::SeqCst) {
            return Err(self.stopped());
        }
        Ok(())
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
            fenced: false,
        };
        if self.tx.send(op, true).is_ok() {
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
        let fin: Val = if finished { t.clone().sv() } else { Val::Null };
        self.send_acked(
            "UPDATE runs SET status = ?2, updated_at = ?3, finished_at = ?4 WHERE id = ?1",
            vec![id.sv(), status.as_str().sv(), t.sv(), fin],
        )
        .await
    }

    /// Parks run `id` at `gate` (`plan` or a step id), waiting for an
    /// approval from elsewhere since `since` until `until`: its status
    /// becomes `waiting_approval`. It keeps its holder: a live process that
    /// waits still holds it (see [`Journal::release_run`]).
    pub async fn set_waiting(
        &self,
        id: &str,
        gate: &str,
        since: &str,
        until: Option<&str>,
    ) -> Result<(), JournalError> {
        self.send_acked(
            "UPDATE runs SET status = 'waiting_approval', waiting_gate = ?2, waiting_since = ?3, waiting_until = ?4, updated_at = ?5, finished_at = NULL WHERE id = ?1",
            vec![id.sv(), gate.sv(), since.sv(), opt(until), now().sv()],
        )
        .await
    }

    /// Lets go of run `id` (held by `holder`, this process) without ending
    /// it: a run left parked (`--detach`) can be taken over at once by
    /// whoever resumes it, from any host.
    pub async fn release_run(&self, id: &str, holder: &str) -> Result<(), JournalError> {
        self.send_acked(
            "UPDATE runs SET holder = NULL, heartbeat_ms = NULL WHERE id = ?1 AND holder = ?2",
            vec![id.sv(), holder.sv()],
        )
        .await
    }

    /// Takes run `id` over for this process (`claim.holder`, unique to it)
    /// on `claim.host`, for `claim.operator`, against `claim.target`,
    /// alive for `claim.lease` from now; [`Journal::heartbeat`] keeps it
    /// alive. Refused ([`JournalError::Held`]) while another process holds
    /// it (running, or waiting at an approval): its lease has not run out and it is on another host (on this
    /// host, the plan's lock, which the caller holds, already shows that
    /// process gone). One conditional statement, so two processes taking
    /// an expired run over at once cannot both succeed. From then on every
    /// intent of a call this journal records for the run is fenced: it is
    /// committed only if this process's lease is valid at that moment.
    pub async fn claim_run(&self, id: &str, claim: &RunClaim) -> Result<(), JournalError> {
        let at = now_ms();
        let lease = i64::try_from(claim.lease.as_millis()).unwrap_or(i64::MAX);
        let taken = self.query(
            "UPDATE runs SET host = ?2, operator = ?3, target = ?4, holder = ?5, heartbeat_ms = ?6, lease_ms = ?7, updated_at = ?8
             WHERE id = ?1 AND (holder IS NULL OR holder = ?5 OR host = ?2 OR status NOT IN ('running', 'waiting_approval')
                                OR heartbeat_ms IS NULL OR lease_ms IS NULL OR heartbeat_ms + lease_ms < ?6)
             RETURNING id",
            vec![
                id.sv(),
                claim.host.as_str().sv(),
                claim.operator.as_str().sv(),
                claim.target.as_str().sv(),
                claim.holder.as_str().sv(),
                at.sv(),
                lease.sv(),
                now().sv(),
            ],
        )?;
        if taken.is_empty() {
            let run = self.load_run(id)?.run;
            let until = run.holder.lease_until_ms();
            return Err(JournalError::Held {
                run: run.id,
                host: run.holder.host.unwrap_or_else(|| "?".to_owned()),
                operator: run.holder.operator.unwrap_or_else(|| "?".to_owned()),
                until: until
                    .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                    .map_or_else(|| "?".to_owned(), |t| t.to_string()),
            });
        }
        self.link.hold(
            link::Hold {
                run: id.to_owned(),
                holder: claim.holder.clone(),
                lease_ms: lease,
            },
            at,
        );
        Ok(())
    }

    /// Whether this process's lease is known to be valid now; once it is
    /// not, the journal stops (nothing more is sent).
    fn lease_valid(&self, run_id: &str) -> Result<(), JournalError> {
        if now_ms() <= self.link.lease_until() {
            return Ok(());
        }
        // Run out while the journal was unreachable: that is why.
        if let Some(u) = self.link.gave_up() {
            return Err(JournalError::Unreachable(u));
        }
        let e = JournalError::LeaseLost(run_id.to_owned());
        if !self.failed.swap(true, Ordering::SeqCst) {
            tracing::error!("{e}");
            self.ledger.write_failed(&e.to_string());
        }
        Err(e)
    }

    /// Asks run `id` to stop (`runbook cancel`), from any host: its
    /// holder sees the request at its next heartbeat and cancels as Ctrl-C
    /// does. `by` (who asked) is recorded. `None` when the run is not
    /// `running` (nor waiting at an approval in a live process); else the
    /// host that holds it.
    pub fn request_cancel(&self, id: &str, by: &str) -> Result<Option<String>, JournalError> {
        let rows = self.query(
            "UPDATE runs SET cancel_requested = ?2 WHERE id = ?1 AND (status = 'running' OR (status = 'waiting_approval' AND heartbeat_ms IS NOT NULL)) RETURNING host",
            vec![id.sv(), format!("{by} at {}", now()).sv()],
        )?;
        Ok(rows.first().map(|r| {
            r.opt_text(0)
                .ok()
                .flatten()
                .unwrap_or_else(|| "?".to_owned())
        }))
    }

    /// Renews the lease of run `id` every third of `claim.lease` while the
    /// returned guard lives (and this process holds the run). Not awaited:
    /// a heartbeat rides along with the next group commit. After each
    /// heartbeat it looks for a cancel request ([`Journal::request_cancel`])
    /// and, once there is one, calls `on_cancel` (once).
    pub fn heartbeat(
        &self,
        id: &str,
        claim: &RunClaim,
        on_cancel: impl Fn(&str) + Send + 'static,
    ) -> Heartbeat {
        let journal = self.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let tx = self.tx.clone();
        let link = Arc::clone(&self.link);
        let (id, holder) = (id.to_owned(), claim.holder.clone());
        let every = (claim.lease / 3).max(std::time::Duration::from_millis(50));
        let _ = std::thread::Builder::new()
            .name("journal-heartbeat".to_owned())
            .spawn(move || {
                let tick = std::time::Duration::from_millis(25).min(every);
                let mut next = std::time::Instant::now() + every;
                while !stopped.load(Ordering::SeqCst) {
                    std::thread::sleep(tick);
                    if std::time::Instant::now() < next {
                        continue;
                    }
                    next = std::time::Instant::now() + every;
                    let beat = now_ms();
                    let (ack, done) = oneshot::channel();
                    // Fenced: once another process holds the run, this
                    // changes no row and the journal stops. Never moves
                    // the heartbeat back: one committed late, after a
                    // reconnect, comes after the reconnect's renewal.
                    let op = Op {
                        sql: "UPDATE runs SET heartbeat_ms = CASE WHEN heartbeat_ms > ?2 THEN heartbeat_ms ELSE ?2 END WHERE id = ?1 AND holder = ?3",
                        args: vec![id.as_str().sv(), beat.sv(), holder.as_str().sv()],
                        ack: Some(ack),
                        durable: false,
                        answer_of: None,
                        fenced: true,
                    };
                    if tx.send(op, true).is_err() {
                        break;
                    }
                    match done.blocking_recv() {
                        Ok(Ok(())) => link.renewed(beat),
                        _ => break,
                    }
                    let asked = journal
                        .query(
                            "SELECT cancel_requested FROM runs WHERE id = ?1",
                            vec![id.as_str().sv()],
                        )
                        .ok()
                        .and_then(|rows| rows.first().and_then(|r| r.opt_text(0).ok().flatten()));
                    if let Some(by) = asked {
                        on_cancel(&by);
                        // Asked once is enough: the run is stopping.
                        let _ = journal.query(
                            "UPDATE runs SET cancel_requested = NULL WHERE id = ?1 RETURNING id",
                            vec![id.as_str().sv()],
                        );
                    }
                }
            });
        Heartbeat { stop }
    }

    /// Deletes finished runs `ids` with their steps, units, attempts,
    /// events and saved worlds (never a run that is still `running` or
    /// waiting: checked in the statement itself). Approval rows are
    /// append-only and stay. The run row goes last, so an interrupted prune
    /// leaves the run listed, to be pruned again.
    pub async fn delete_runs(&self, ids: &[String]) -> Result<(), JournalError> {
        for id in ids {
            for sql in [
                "DELETE FROM events WHERE run_id IN (SELECT id FROM runs WHERE id = ?1 AND status NOT IN ('running', 'waiting_approval') AND finished_at IS NOT NULL)",
                "DELETE FROM attempts WHERE run_id IN (SELECT id FROM runs WHERE id = ?1 AND status NOT IN ('running', 'waiting_approval') AND finished_at IS NOT NULL)",
                "DELETE FROM units WHERE run_id IN (SELECT id FROM runs WHERE id = ?1 AND status NOT IN ('running', 'waiting_approval') AND finished_at IS NOT NULL)",
                "DELETE FROM steps WHERE run_id IN (SELECT id FROM runs WHERE id = ?1 AND status NOT IN ('running', 'waiting_approval') AND finished_at IS NOT NULL)",
                "DELETE FROM worlds WHERE run_id IN (SELECT id FROM runs WHERE id = ?1 AND status NOT IN ('running', 'waiting_approval') AND finished_at IS NOT NULL)",
                "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE id = ?1 AND status NOT IN ('running', 'waiting_approval') AND finished_at IS NOT NULL)",
            ] {
                self.send(sql, vec![id.as_str().sv()]);
            }
        }
        self.flush().await
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

    /// A step started (or restarted on resume).
    pub async fn step_started(
        &self,
        run_id: &str,
        step: &str,
        items: Option<usize>,
    ) -> Result<(), JournalError> {
        let items: Val = items.map_or(Val::Null, |n| i64::try_from(n).unwrap_or(i64::MAX).sv());
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
        // Nothing is sent while the journal cannot record it.
        self.reachable().await?;
        // Sent only while this process's lease is valid (see `claim_run`).
        self.lease_valid(run_id)?;
        let held = self
            .link
            .held()
            .filter(|h| h.run == run_id)
            .map(|h| (h.run, h.holder));
        let mut args = vec![
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
        let sql = match (&held, durable) {
            // The intent of a mutating call is committed only under a lease
            // valid at that moment, checked in the same statement.
            (Some((_, holder)), true) => {
                args.extend([holder.as_str().sv(), now_ms().sv()]);
                "INSERT INTO attempts (key, run_id, step_id, item, attempt, kind, action, risk, request_json, sent_at, outcome)
                 SELECT CAST(?1 AS TEXT), CAST(?2 AS TEXT), CAST(?3 AS TEXT), CAST(?4 AS BIGINT), CAST(?5 AS BIGINT), CAST(?6 AS TEXT),
                        CAST(?7 AS TEXT), CAST(?8 AS TEXT), CAST(?9 AS TEXT), CAST(?10 AS TEXT), 'pending'
                 WHERE EXISTS (SELECT 1 FROM runs WHERE id = ?2 AND holder = ?11 AND heartbeat_ms + lease_ms >= ?12)"
            }
            _ => {
                "INSERT INTO attempts (key, run_id, step_id, item, attempt, kind, action, risk, request_json, sent_at, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending')"
            }
        };
        if durable {
            self.send_waiting(sql, args, true, held.is_some()).await?;
            // Stopped between the commit and here past the lease: the
            // intent stands (a resume checks the call), the call is not sent.
            self.lease_valid(run_id)?;
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
                return Err(self.stopped());
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
                err.http_status.map_or(Val::Null, |s| i64::from(s).sv()),
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
        let rows = self.query(
            "SELECT at, event_json FROM events WHERE run_id = ?1 ORDER BY seq",
            vec![run_id.sv()],
        )?;
        rows.iter()
            .map(|r| {
                let (at, json) = (r.text(0)?, r.text(1)?);
                serde_json::from_str(&json)
                    .map(|e| (at, e))
                    .map_err(|e| JournalError::Corrupt(format!("event of run {run_id}: {e}")))
            })
            .collect()
    }

    /// Lists runs, newest first.
    pub fn list_runs(&self) -> Result<Vec<RunRow>, JournalError> {
        self.query(
            &format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at DESC, id"),
            vec![],
        )?
        .iter()
        .map(run_row)
        .collect()
    }

    /// Everything about one run: its full id, or a prefix that starts
    /// exactly one id (an empty prefix names no run).
    pub fn load_run(&self, id: &str) -> Result<RunRecord, JournalError> {
        if id.is_empty() {
            return Err(JournalError::NoSuchRun(String::new()));
        }
        // A plain prefix comparison: `%` and `_` in what was typed are
        // characters, not LIKE wildcards.
        let ids: Vec<String> = self
            .query(
                "SELECT id FROM runs WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id",
                vec![id.sv()],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<_, _>>()?;
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
        let by_id = || vec![id.as_str().sv()];
        let header = self.query(
            &format!("SELECT {RUN_COLUMNS}, plan_json, options_json FROM runs WHERE id = ?1"),
            by_id(),
        )?;
        let r = header
            .first()
            .ok_or_else(|| JournalError::NoSuchRun(id.clone()))?;
        let (run, plan_json, options_json) = (
            run_row(r)?,
            r.text(N_RUN_COLUMNS)?,
            r.text(N_RUN_COLUMNS + 1)?,
        );
        let approvals = self.approvals(&id)?;
        let identities = self.run_identities(&id)?;
        let steps = self
            .query(
                "SELECT step_id, status, items, detail, started_at, finished_at FROM steps WHERE run_id = ?1 ORDER BY rowid",
                by_id(),
            )?
            .iter()
            .map(|r| {
                Ok(StepRow {
                    step_id: r.text(0)?,
                    status: r.typed(1)?,
                    items: r.opt_int(2)?,
                    detail: r.opt_text(3)?,
                    started_at: r.opt_text(4)?,
                    finished_at: r.opt_text(5)?,
                })
            })
            .collect::<Result<_, JournalError>>()?;
        let units = self
            .query(
                "SELECT step_id, item, item_json, status, output_json, error, finished_at FROM units WHERE run_id = ?1 ORDER BY step_id, item",
                by_id(),
            )?
            .iter()
            .map(|r| {
                Ok(UnitRow {
                    step_id: r.text(0)?,
                    item: r.int(1)?,
                    item_json: r.opt_text(2)?,
                    status: r.typed(3)?,
                    output_json: r.opt_text(4)?,
                    error: r.opt_text(5)?,
                    finished_at: r.opt_text(6)?,
                })
            })
            .collect::<Result<_, JournalError>>()?;
        let attempts = self
            .query(
                "SELECT step_id, item, attempt, kind, action, risk, outcome, error_class, error_code, error_message, request_id, http_status, sent_at, finished_at, request_json, response_json
                 FROM attempts WHERE run_id = ?1 ORDER BY sent_at, rowid",
                by_id(),
            )?
            .iter()
            .map(|r| {
                Ok(AttemptRow {
                    step_id: r.text(0)?,
                    item: r.int(1)?,
                    attempt: r.int(2)?,
                    kind: r.typed(3)?,
                    action: r.text(4)?,
                    risk: r.typed(5)?,
                    outcome: r.typed(6)?,
                    error_class: r.opt_typed(7)?,
                    error_code: r.opt_text(8)?,
                    error_message: r.opt_text(9)?,
                    request_id: r.opt_text(10)?,
                    http_status: r.opt_int(11)?,
                    sent_at: r.text(12)?,
                    finished_at: r.opt_text(13)?,
                    request_json: r.text(14)?,
                    response_json: r.opt_text(15)?,
                })
            })
            .collect::<Result<_, JournalError>>()?;
        Ok(RunRecord {
            run,
            plan_json,
            options_json,
            approvals,
            identities,
            steps,
            units,
            attempts,
        })
    }

    /// Runs a query on the reader and returns its rows.
    fn query(&self, sql: &str, args: Vec<Val>) -> Result<Vec<Row>, JournalError> {
        match &*self.reader {
            Reader::Sqlite(path) => {
                let sql_err = |source| JournalError::Sqlite {
                    path: path.clone(),
                    source,
                };
                let conn = open_conn(path)?;
                let mut stmt = conn.prepare(sql).map_err(sql_err)?;
                let n = stmt.column_count();
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                        (0..n)
                            .map(|i| r.get_ref(i).map(Val::from))
                            .collect::<rusqlite::Result<Vec<Val>>>()
                            .map(Row)
                    })
                    .map_err(sql_err)?;
                rows.collect::<rusqlite::Result<Vec<Row>>>()
                    .map_err(sql_err)
            }
            Reader::Postgres(tx) => {
                let (reply, answer) = mpsc::channel();
                let req = ReadReq {
                    sql: sql.to_owned(),
                    args,
                    reply,
                };
                tx.send(req).map_err(|_| JournalError::WriterGone)?;
                let rows = answer
                    .recv()
                    .map_err(|_| JournalError::WriterGone)?
                    .map_err(|source| JournalError::Postgres {
                        url: self.url.to_string(),
                        source,
                    })?;
                Ok(rows.into_iter().map(Row).collect())
            }
        }
    }
}

/// The columns of a [`RunRow`], in [`run_row`]'s order.
const RUN_COLUMNS: &str = "id, name, source, digest, status, created_at, updated_at, finished_at, host, operator, target, heartbeat_ms, lease_ms, waiting_gate, waiting_since, waiting_until";

/// How many columns [`RUN_COLUMNS`] has.
const N_RUN_COLUMNS: usize = 16;

fn run_row(r: &Row) -> Result<RunRow, JournalError> {
    Ok(RunRow {
        id: r.text(0)?,
        name: r.text(1)?,
        source: r.text(2)?,
        digest: r.text(3)?,
        status: r.typed(4)?,
        created_at: r.text(5)?,
        updated_at: r.text(6)?,
        finished_at: r.opt_text(7)?,
        holder: RunHolder {
            host: r.opt_text(8)?,
            operator: r.opt_text(9)?,
            target: r.opt_text(10)?,
            heartbeat_ms: r.opt_int(11)?,
            lease_ms: r.opt_int(12)?,
        },
        waiting: match (r.opt_text(13)?, r.opt_text(14)?, r.opt_text(15)?) {
            (Some(gate), Some(since), until) => Some(Waiting { gate, since, until }),
            _ => None,
        },
    })
}

/// The PostgreSQL reader thread: answers queries on its own connection,
/// made on first use and made again after it broke, riding out an outage
/// within the link's patience ([`reconnect::retrying`]).
fn pg_reader(target: &pg::PgTarget, rx: &mpsc::Receiver<ReadReq>, link: &link::Link) {
    let mut session: Option<pg::Session> = None;
    while let Ok(req) = rx.recv() {
        let result =
            reconnect::retrying(target, &mut session, link, |s| s.query(&req.sql, &req.args));
        let _ = req.reply.send(result);
    }
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
            at: path.display().to_string(),
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

/// The writer's connection.
enum WriterConn {
    /// SQLite, with whether `synchronous` is FULL at the moment.
    Sqlite { conn: Connection, synced: bool },
    /// PostgreSQL, riding out an outage.
    Postgres(Box<reconnect::Writer>),
}

/// How a commit fails when a fenced write changed no row.
const FENCED: &str = "lease lost";

/// Saves the kept world (see [`Journal::keep_world`]).
const SAVE_WORLD: &str = "INSERT INTO worlds (run_id, world_json, at) VALUES (?1, ?2, ?3)
     ON CONFLICT (run_id) DO UPDATE SET world_json = ?2, at = ?3";

impl WriterConn {
    /// Commits a batch in one transaction, with the kept world when it
    /// changed: taken after every answer in the batch arrived, so it holds
    /// their effects. With `durable`, the commit must survive a power loss
    /// (of this machine, or of the database server), not only a crash of
    /// this process.
    fn commit(
        &mut self,
        batch: &[Op],
        durable: bool,
        world: Option<&KeptWorld>,
    ) -> Result<(), String> {
        let world = world.and_then(|w| {
            (w.source)().map(|json| vec![w.run_id.as_str().sv(), json.sv(), now().sv()])
        });
        let writes = batch
            .iter()
            .filter(|op| op.sql != "SELECT 1")
            .map(|op| (op.sql, op.args.as_slice(), op.fenced))
            .chain(world.as_deref().map(|args| (SAVE_WORLD, args, false)));
        let fence = |fenced: bool, changed: u64| {
            if fenced && changed == 0 {
                Err(format!(
                    "{FENCED}: the run's lease ran out or another process took the run over"
                ))
            } else {
                Ok(())
            }
        };
        match self {
            WriterConn::Sqlite { conn, synced } => {
                // Only batches holding a write that must survive a power
                // loss (the intent of a mutating call) pay for a sync to
                // disk; the rest are durable against a crash of this
                // process, which WAL gives for free.
                if durable != *synced {
                    let level = if durable { "FULL" } else { "NORMAL" };
                    conn.pragma_update(None, "synchronous", level)
                        .map_err(|e| e.to_string())?;
                    *synced = durable;
                }
                // Immediate: the write lock is taken (or waited for, see
                // [`busy`]) at the start, never midway.
                let commit = || {
                    let tx = conn
                        .transaction_with_behavior(TransactionBehavior::Immediate)
                        .map_err(|e| e.to_string())?;
                    for (sql, args, fenced) in writes {
                        let mut stmt = tx.prepare_cached(sql).map_err(|e| e.to_string())?;
                        let changed = stmt
                            .execute(rusqlite::params_from_iter(args.iter()))
                            .map_err(|e| e.to_string())?;
                        fence(fenced, u64::try_from(changed).unwrap_or(u64::MAX))?;
                    }
                    tx.commit().map_err(|e| e.to_string())
                };
                let result = commit();
                busy::settled();
                result
            }
            WriterConn::Postgres(session) => session.commit(writes, durable, fence),
        }
    }
}

/// Closes the writer's queue when the writer thread ends, however it ends.
struct Closer<'a>(&'a queue::Queue<Op>);

impl Drop for Closer<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Commits the queue's batches (see [`queue`]) until no handle is left.
fn writer(
    mut conn: WriterConn,
    queue: &queue::Queue<Op>,
    failed: &AtomicBool,
    synced_commits: &AtomicU64,
    world: &Mutex<Option<KeptWorld>>,
    ledger: &Ledger,
) {
    while let Some(batch) = queue.next_batch() {
        let durable = batch.iter().any(|op| op.durable);
        let world = world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = conn.commit(&batch, durable, world.as_ref());
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

/// Converts arguments of journal writes into owned values.
trait Sv {
    fn sv(self) -> Val;
}

impl Sv for &str {
    fn sv(self) -> Val {
        Val::Text(self.to_owned())
    }
}

impl Sv for String {
    fn sv(self) -> Val {
        Val::Text(self)
    }
}

impl Sv for i64 {
    fn sv(self) -> Val {
        Val::Int(self)
    }
}

fn opt(s: Option<&str>) -> Val {
    s.map_or(Val::Null, |s| Val::Text(s.to_owned()))
}

fn idx(item: usize) -> Val {
    Val::Int(i64::try_from(item).unwrap_or(i64::MAX))
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(n) => ToSqlOutput::Borrowed(ValueRef::Integer(*n)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

impl From<rusqlite::types::ValueRef<'_>> for Val {
    fn from(v: rusqlite::types::ValueRef<'_>) -> Val {
        use rusqlite::types::ValueRef;
        match v {
            ValueRef::Null => Val::Null,
            ValueRef::Integer(n) => Val::Int(n),
            ValueRef::Real(x) => Val::Text(x.to_string()),
            ValueRef::Text(t) | ValueRef::Blob(t) => {
                Val::Text(String::from_utf8_lossy(t).into_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `--yes` approval of the plan `digest` by `me@host`, unverified.
    pub(super) fn yes(digest: &str) -> NewApproval {
        NewApproval {
            step_id: None,
            by: "me@host".into(),
            method: "--yes".into(),
            channel: ApprovalChannel::Flag,
            digest: digest.into(),
            identity: None,
            verdict: Verdict::Approved,
            reason: None,
        }
    }

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

    /// A throwaway PostgreSQL database (`RUNBOOK_TEST_PG`, default the
    /// local server's `test`, trust auth), dropped at the end; the test
    /// fails, saying so, when the server cannot be reached.
    pub(super) struct TestDb {
        name: String,
        pub(super) url: JournalUrl,
    }

    fn admin(sql: String) {
        // The sync client must not run on a thread of the test's runtime.
        std::thread::spawn(move || {
            let url = std::env::var("RUNBOOK_TEST_PG")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|e| {
                panic!("this test needs PostgreSQL and cannot reach it at {url}: {e}; start it (`bash .ci/run` does) or set RUNBOOK_TEST_PG")
            });
            c.batch_execute(&sql).unwrap();
        })
        .join()
        .unwrap();
    }

    impl TestDb {
        pub(super) fn new() -> TestDb {
            let name = format!("runbook_u_{}", uuid::Uuid::new_v4().simple());
            admin(format!("CREATE DATABASE {name}"));
            let base = std::env::var("RUNBOOK_TEST_PG")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
            let server = base
                .rsplit_once('/')
                .map_or(base.as_str(), |(s, _)| s)
                .to_owned();
            let url = format!("{server}/{name}?sslmode=disable").parse().unwrap();
            TestDb { name, url }
        }

        /// Runs statements on it, off the runtime.
        pub(super) fn execute(&self, sql: &str) {
            let Location::Postgres(t) = self.url.0.clone() else {
                unreachable!()
            };
            let sql = sql.to_owned();
            std::thread::spawn(move || t.connect().unwrap().batch_execute(&sql).unwrap())
                .join()
                .unwrap();
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            admin(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }

    #[test]
    fn a_postgres_journal_from_a_newer_binary_is_refused_untouched() {
        let db = TestDb::new();
        drop(Journal::open_url(&db.url).unwrap());
        db.execute(&format!(
            "UPDATE schema_version SET version = {}",
            SCHEMA_VERSION + 1
        ));
        let err = Journal::open_url(&db.url).unwrap_err();
        assert!(
            matches!(err, JournalError::TooNew { found, supported, .. } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err:?}"
        );
        // Untouched: still the newer version, and opening again still refuses.
        assert!(matches!(
            Journal::open_url(&db.url),
            Err(JournalError::TooNew { .. })
        ));
    }

    #[tokio::test]
    async fn approvals_are_append_only_in_the_postgres_database_itself() {
        let db = TestDb::new();
        let j = Journal::open_url(&db.url).unwrap();
        j.create_run("r1", "demo", "p.yaml", "abc", "{}".into(), "{}".into())
            .await
            .unwrap();
        j.record_approval("r1", &yes("abc")).await.unwrap();
        for sql in [
            "UPDATE approvals SET approved_by = 'someone else'",
            "DELETE FROM approvals",
        ] {
            let Location::Postgres(t) = db.url.0.clone() else {
                unreachable!()
            };
            let err =
                std::thread::spawn(move || t.connect().unwrap().batch_execute(sql).unwrap_err())
                    .join()
                    .unwrap();
            assert!(
                err.to_string().contains("append-only")
                    || format!("{err:?}").contains("append-only"),
                "{err:?}"
            );
        }
        assert_eq!(
            j.load_run("r1").unwrap().approvals[0].approved_by,
            "me@host"
        );
    }

    #[tokio::test]
    async fn the_kept_world_is_saved_with_every_commit_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        kept_world(Journal::open(dir.path()).unwrap()).await;
        let db = TestDb::new();
        kept_world(Journal::open_url(&db.url).unwrap()).await;
    }

    async fn kept_world(j: Journal) {
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
        round_trip(Journal::open(dir.path()).unwrap()).await;
        let db = TestDb::new();
        round_trip(Journal::open_url(&db.url).unwrap()).await;
    }

    async fn round_trip(j: Journal) {
        j.create_run("r1", "demo", "p.yaml", "abc", "{}".into(), "{}".into())
            .await
            .unwrap();
        j.record_approval("r1", &yes("abc")).await.unwrap();
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
