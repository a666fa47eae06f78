//! `runbook run` and `runbook resume`: the parts that change the cloud.
//!
//! Both share one path: credentials and endpoints (or the in-process
//! simulator), the approval gate bound to the plan digest, the lock that
//! keeps two runs of the same playbook and params apart, the journal, the
//! runner, the live view and the summary.
//!
//! # A rehearsal's world
//!
//! A run against the in-process simulator (`--sim`) keeps the simulator's
//! world in the journal, saved in the same transaction as every commit
//! (so with every answered call), and `resume --sim` restores it: the
//! rehearsal goes on in the world it left, with transitions under way
//! completing at their saved wall-clock times. The world is saved rather
//! than rebuilt by replaying the journaled calls because the journal does
//! not know every effect: a call applied but answered with a dropped
//! connection, or sent just before a kill, changed the world without an
//! `ok` row, and replaying would have to guess. A saved world is exact: it
//! holds every effect of every answer the journal records, and a call in
//! flight at a kill is settled on resume through its status call, against
//! that world, like against the cloud.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::approvals::{self, Asking};
use super::checks::CheckedFlags;
use super::interrupt::Interrupts;
use crate::cloud::client::{ClientOptions, RpcClient};
use crate::cloud::credentials::Credentials;
use crate::cloud::{CloudApi, Endpoints};
use crate::error::{Error, ExitCode};
use crate::plan::Plan;
use crate::run::lock::{LockError, RunLock};
use crate::run::report::{self, ReportMode};
use crate::run::run_report;
use crate::run::{
    ApprovalDecision, ApprovalFuture, Approver, FlagApprover, Journal, JournalUrl, Prior,
    RateLimits, RunOptions, RunStatus, RunSummary, Runner, TimeScale, ratelimit,
};

/// Output format of `run` and `resume`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// A live view on a terminal (plain lines otherwise) and a summary.
    Text,
    /// One JSON event per line on stdout, for machines.
    Json,
}

/// Where the journal lives.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StateArgs {
    /// Directory of the run locks and of the default journal (`journal.db`).
    /// Default: $XDG_STATE_HOME/runbook, else ~/.local/state/runbook.
    #[arg(long, value_name = "DIR", env = "RUNBOOK_STATE_DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// The journal: `sqlite:PATH` (a database file; default: `journal.db`
    /// in the state dir) or `postgres://USER@HOST:PORT/DB[?sslmode=MODE]`,
    /// a PostgreSQL database a team shares (every operator and host points
    /// at the same one). Put no password here, where `ps` shows it: use
    /// PGPASSWORD, ~/.pgpass (or PGPASSFILE), or set the whole URL in
    /// RUNBOOK_JOURNAL. A password is never printed. sslmode: disable,
    /// prefer (default), require, verify-ca or verify-full; whenever TLS is
    /// used the server's certificate is verified against the system's roots.
    #[arg(
        long,
        value_name = "URL",
        env = "RUNBOOK_JOURNAL",
        hide_env_values = true
    )]
    // Parsed by `journal_url`, not by clap, whose errors repeat the value.
    pub(crate) journal: Option<String>,
}

impl StateArgs {
    pub(crate) fn dir(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env("XDG_STATE_HOME")
            .map(|d| d.join("runbook"))
            .or_else(|| env("HOME").map(|h| h.join(".local/state/runbook")))
            .unwrap_or_else(|| PathBuf::from(".runbook"))
    }

    /// Where the journal is: `--journal`, else the state dir's `journal.db`.
    /// A bad URL is a usage error that does not repeat it (a password).
    pub(crate) fn journal_url(&self) -> Result<JournalUrl, Error> {
        match self.journal.as_deref().filter(|j| !j.is_empty()) {
            None => Ok(JournalUrl::in_state_dir(&self.dir())),
            Some(text) => text.parse().map_err(|e: String| {
                Error::usage(format!("--journal: {e}")).with_hint(
                    "e.g. --journal sqlite:/var/lib/runbook/journal.db, or RUNBOOK_JOURNAL=postgres://runbook@db.internal:5432/runbook",
                )
            }),
        }
    }

    pub(crate) fn journal(&self) -> Result<Journal, Error> {
        let url = self.journal_url()?;
        Journal::open_url(&url).map_err(|e| match e {
            crate::run::JournalError::TooNew { .. } => Error::new(ExitCode::Internal, e.to_string())
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
}

/// Where calls go and how they are signed.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TargetArgs {
    /// Send PRODUCT's calls to URL instead of its public endpoint, e.g.
    /// `--endpoint dts=http://127.0.0.1:9000` (repeatable). PRODUCT must be
    /// one the playbook calls; URL is `http(s)://HOST[:PORT]` and nothing
    /// more. Not with --sim, which decides where every call goes.
    #[arg(long = "endpoint", value_name = "PRODUCT=URL", conflicts_with = "sim")]
    pub(crate) endpoints: Vec<String>,
    /// Run against the built-in simulator, started in-process on a free
    /// loopback port with generated credentials; every resource the playbook
    /// names exists and is running (on `resume`: as the run left it, from the
    /// world saved in the journal). No cloud account needed.
    #[arg(long)]
    pub(crate) sim: bool,
    /// Faults for the simulator (with --sim), e.g.
    /// `throttle=0.2,error=0.05,drop=0.02,applied_drop=0.05`.
    #[arg(long, value_name = "SPEC", requires = "sim")]
    pub(crate) sim_faults: Option<String>,
    /// Seed of the simulator's faults (with --sim), for a reproducible rehearsal.
    #[arg(long, value_name = "N", requires = "sim", default_value_t = 1)]
    pub(crate) sim_seed: u64,
    /// Compress time in a rehearsal (with --sim): every duration of the run
    /// (sleeps, poll intervals, back-offs, retry-after, timeouts, settle
    /// windows, --run-timeout) and every delay of the simulator is divided
    /// by N (a number of at least 1, e.g. 10 or 2.5). Journaled: a resume
    /// keeps it unless given again.
    #[arg(long, value_name = "N", requires = "sim")]
    pub(crate) time_scale: Option<TimeScale>,
    /// Append every call the in-process simulator receives to FILE as a
    /// JSON line (with --sim), as `runbook sim --log` does.
    #[arg(long, value_name = "FILE", requires = "sim")]
    pub(crate) sim_log: Option<PathBuf>,
    /// Profile of ~/.aliyun/config.json to sign with (default: the env vars
    /// ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET/_SECURITY_TOKEN, else the file's current profile).
    #[arg(long, value_name = "NAME")]
    pub(crate) profile: Option<String>,
    /// Client-side rate limit per product in calls per second, e.g.
    /// `--qps dataworks=20` (repeatable; 0 = unlimited). Default: 20/s for
    /// dataworks and dts against the cloud, unlimited against the simulator.
    #[arg(long = "qps", value_name = "PRODUCT=N")]
    pub(crate) qps: Vec<String>,
    /// How long one attempt may take, connection to last byte (e.g. `30s`).
    /// A call that runs out of time counts as an unknown outcome.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub(crate) request_timeout: String,
    /// How long to wait for the TCP and TLS connection (nothing is sent yet).
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub(crate) connect_timeout: String,
}

/// How the run proceeds.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ExecArgs {
    /// Approve the plan non-interactively (for scheduled runs). Without it a
    /// playbook that changes anything asks on a terminal, and refuses without one.
    #[arg(long)]
    pub(crate) yes: bool,
    /// Approve the `approve` step STEP non-interactively (repeatable).
    /// Without a terminal to ask on (or with `--output json`), every
    /// `approve` step the run may reach needs it, or the run is refused
    /// before it starts.
    #[arg(long = "approve", value_name = "STEP")]
    pub(crate) approve: Vec<String>,
    /// Steps in flight at once (default: the playbook's `concurrency`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) concurrency: Option<u16>,
    /// `text` (live view and summary) or `json` (one event per line).
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) output: OutputFormat,
    /// Fail the whole run if it takes longer than this (e.g. `30m`).
    #[arg(long, value_name = "DURATION")]
    pub(crate) run_timeout: Option<String>,
    /// Seed for retry jitter (default: random).
    #[arg(long, value_name = "N", hide = true)]
    pub(crate) jitter_seed: Option<u64>,
    /// Go on although a resource's state differs from what a refreshed
    /// plan (`plan --refresh -o PLAN.json`) recorded; the override is journaled.
    #[arg(long)]
    pub(crate) allow_drift: bool,
    /// Change nothing before TIME (RFC 3339 with an offset, e.g.
    /// `2026-12-05T02:00:00+08:00`). It narrows the playbook's `window` (or,
    /// without one, is the window) and never widens it. Before it, the run is
    /// refused (exit 6, nothing sent). For this invocation only: a resume
    /// takes its own.
    #[arg(long, value_name = "TIME")]
    pub(crate) not_before: Option<String>,
    /// Start no change from TIME on (RFC 3339 with an offset). It narrows the
    /// window like --not-before. At TIME a run starts no new mutating call,
    /// lets calls in flight finish, and stops as `window_closed` (exit 5);
    /// `runbook resume` goes on from there.
    #[arg(long, value_name = "TIME")]
    pub(crate) not_after: Option<String>,
}

/// Run a playbook (or a saved plan) against Alibaba Cloud or the simulator.
#[derive(Debug, clap::Args)]
#[command(after_long_help = RUN_EXAMPLES)]
pub(crate) struct RunArgs {
    /// A playbook (YAML) or a plan written by `runbook plan -o PLAN.json`:
    /// rebuilt from its playbook (found relative to the plan file) and
    /// params, refused on any difference, and run as rebuilt.
    #[arg(value_name = "PLAYBOOK|PLAN.json")]
    target: PathBuf,
    /// Refuse (exit 6) unless the plan built from the playbook or plan file
    /// has this digest (SHA-256, as `runbook plan` shows it).
    #[arg(long, value_name = "SHA256")]
    expect_digest: Option<String>,
    /// A param value, `KEY=VALUE` (repeatable; arrays as `[1,2]` or `1,2`).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Params from a YAML or JSON file (a map of name to value).
    #[arg(long = "params", value_name = "FILE")]
    params_file: Option<PathBuf>,
    #[command(flatten)]
    target_args: TargetArgs,
    #[command(flatten)]
    exec: ExecArgs,
    #[command(flatten)]
    pub(crate) state: StateArgs,
}

const RUN_EXAMPLES: &str = "\
Examples:
  # rehearse against the built-in simulator (with faults, to see retries and reconciliation)
  runbook run playbooks/dts-di-cutover.yaml --params playbooks/params/dts-di-cutover.yaml --sim --yes
  runbook run playbooks/dts-di-cutover.yaml --params p.yaml --sim --sim-faults throttle=0.3,applied_drop=0.1 --yes
  # the same with time compressed 20x: every wait, back-off, timeout and simulator delay is 20 times shorter
  runbook run playbooks/dts-di-cutover.yaml --params p.yaml --sim --time-scale 20 --yes
  # review a plan, then run exactly that plan (the digest goes in the change ticket)
  runbook plan playbooks/dts-di-cutover.yaml --params p.yaml -o plan.json
  runbook run plan.json --expect-digest SHA256 --yes
  # scheduled run: approve the plan and an `approve` step non-interactively, JSON events for the log
  runbook run playbooks/di-realtime-maintenance-stop.yaml --params p.yaml --yes --approve go-ahead --output json

A playbook that changes anything needs an approval: a `yes` on a terminal, or --yes. The journal
records every attempt; if the run stops (a failure, Ctrl-C, a crash), `runbook resume RUN_ID`
continues it without repeating what was done.";

const RESUME_EXAMPLES: &str = "\
Steps that finished are not repeated; a mutating call that was in flight when the run stopped is
first re-checked through its status call, so an irreversible call is never sent twice. The
journaled plan is run, not the playbook file as it is now, with the journaled endpoints and profile
unless new ones are given.

Examples:
  runbook runs                       # find the run id
  runbook show RUN_ID --attempts     # see where it stopped and why
  runbook resume RUN_ID              # continue it
  runbook resume RUN_ID --sim        # a run rehearsed with --sim goes on in the simulated world it
                                     # left (saved in the journal): what it stopped is still stopped";

/// Continue an interrupted, cancelled or failed run from its journal.
#[derive(Debug, clap::Args)]
#[command(after_long_help = RESUME_EXAMPLES)]
pub(crate) struct ResumeArgs {
    /// The run id (or a unique prefix), from `runbook runs`.
    #[arg(value_parser = super::runs::run_id_arg)]
    run_id: String,
    #[command(flatten)]
    target_args: TargetArgs,
    #[command(flatten)]
    exec: ExecArgs,
    #[command(flatten)]
    state: StateArgs,
}

/// What a run records about how it was started (the journal's options_json),
/// so `resume` can go on the same way.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StoredOptions {
    endpoints: Vec<String>,
    sim: bool,
    /// Started with `--sim`: the run stays a rehearsal for good, whatever
    /// a resume points it at.
    #[serde(default)]
    rehearsal: bool,
    /// A fingerprint of the AccessKeyId that signs (SHA-256, first 16 hex
    /// digits; never the key itself).
    #[serde(default)]
    account: Option<String>,
    sim_faults: Option<String>,
    profile: Option<String>,
    qps: Vec<String>,
    concurrency: usize,
    /// `--time-scale` of a rehearsal.
    #[serde(default)]
    time_scale: Option<TimeScale>,
}

impl RunArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        let rt = super::runtime()?;
        rt.block_on(async move {
            let flags = CheckedFlags::check(&self.target_args, &self.exec, &self.state)?;
            let expected = self.expect_digest.as_deref().map(parse_digest).transpose()?;
            let interrupts = Interrupts::install()?;
            let is_plan = self.target.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
            let plan = if is_plan {
                if !self.params.is_empty() || self.params_file.is_some() {
                    return Err(Error::usage("a saved plan carries its own params: drop -p/--params, or run the playbook instead"));
                }
                Plan::load_verified(&self.target)?
            } else {
                let raw = parse_params(&self.params)?;
                crate::plan::load_and_build(&self.target, &raw, self.params_file.as_deref())?
            };
            flags.check_plan(&plan, &self.target_args, &self.exec)?;
            admit(&plan, &flags)?;
            if let Some(expected) = expected
                && expected != plan.digest
            {
                return Err(Error::new(
                    ExitCode::Refused,
                    format!("the plan's digest is {}, not the expected {expected}", plan.digest),
                )
                .with_hint("the playbook, its params or the plan file differ from what was reviewed; review this plan (`runbook plan`) before running it"));
            }
            let target = Target::connect(&self.target_args).await?;
            let concurrency = self.exec.concurrency.map_or(plan.concurrency, usize::from);
            let stored = StoredOptions::of(&self.target_args, &target, self.target_args.sim, concurrency);
            let journal = self.state.journal()?;
            let lock = lock(&self.state, &plan.digest, None)?;
            if let Ok(runs) = journal.list_runs()
                && let Some(earlier) = runs.iter().find(|r| r.digest == plan.digest && r.status != RunStatus::Succeeded)
            {
                // This process holds the plan's lock: an earlier run of it
                // still `running` has lost its process.
                let how = if earlier.status == RunStatus::Running { "was interrupted" } else { earlier.status.as_str() };
                eprintln!("note: run {} of this same plan {how}; `runbook resume {}` would continue it instead of starting over", earlier.id, earlier.id);
            }
            // A refreshed plan holds the world to what was reviewed.
            let drifts = crate::plan::drift::check(&plan, None, &Default::default(), target.api.as_ref()).await;
            if !drifts.is_empty() && !self.exec.allow_drift {
                return Err(drift_error(&drifts));
            }
            let gates = || approvals::check_answerable(&plan, &self.exec.approve.iter().cloned().collect(), asking(&self.exec), |_| false);
            let approval = approve_plan(&plan, &self.exec, target.account.as_deref(), gates)?;
            let run_id = new_run_id();
            journal
                .create_run(
                    &run_id,
                    &plan.name,
                    &plan.source,
                    &plan.digest,
                    serde_json::to_string(&plan).unwrap_or_default(),
                    serde_json::to_string(&stored).unwrap_or_default(),
                )
                .await
                .map_err(journal_error)?;
            lock.claim(&run_id);
            if let Some(ApprovalDecision::Approved { by, method }) = &approval {
                journal.record_approval(&run_id, None, by, method, &plan.digest).await.map_err(journal_error)?;
            }
            for d in drifts {
                eprintln!("warning: drift allowed (--allow-drift): {}", crate::safe_text::escape(&d.to_string()));
                journal.event(&run_id, &crate::run::RunEvent::Drift {
                    step: d.step,
                    item: d.item,
                    resource: d.resource,
                    reviewed: d.reviewed,
                    current: d.current,
                    allowed: true,
                });
            }
            let how = How { exec: &self.exec, flags, interrupts, concurrency: stored.concurrency, resumed: false };
            execute(plan, target, journal, how, run_id, Prior::default()).await
        })
    }
}

impl ResumeArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        let rt = super::runtime()?;
        rt.block_on(async move {
            let flags = CheckedFlags::check(&self.target_args, &self.exec, &self.state)?;
            let interrupts = Interrupts::install()?;
            let journal = self.state.journal()?;
            let record = journal.load_run(&self.run_id).map_err(super::runs::lookup_error)?;
            let plan: Plan = serde_json::from_str(&record.plan_json)
                .map_err(|e| Error::new(ExitCode::Internal, format!("the plan of run {} cannot be read back", record.run.id)).with_source(e))?;
            flags.check_plan(&plan, &self.target_args, &self.exec)?;
            // Everything below works from the journal as read under the lock:
            // another process may have gone on with this run before.
            let _lock = lock(&self.state, &plan.digest, Some(&record.run.id))?;
            let record = journal.load_run(&record.run.id).map_err(journal_error)?;
            if record.run.status == RunStatus::Succeeded {
                super::out(&format!("run {} already succeeded; nothing to resume\n", record.run.id));
                return Ok(ExitCode::Ok);
            }
            admit(&plan, &flags)?;
            let stored: StoredOptions = serde_json::from_str(&record.options_json).unwrap_or_default();
            let rehearsal = stored.rehearsal || stored.sim;
            if self.target_args.sim && !rehearsal {
                // The simulator's "done" would be journaled as this real run's.
                return Err(Error::new(
                    ExitCode::Refused,
                    format!("run {} is a real run; resuming it against the simulator would mark steps done that the cloud never saw", record.run.id),
                )
                .with_hint("rehearse the rest with `runbook run PLAYBOOK --sim`, and resume this run against the cloud"));
            }
            let mut target_args = self.target_args.clone();
            if target_args.profile.is_none() {
                target_args.profile.clone_from(&stored.profile);
            }
            if target_args.qps.is_empty() {
                target_args.qps.clone_from(&stored.qps);
            }
            if target_args.time_scale.is_none() && target_args.sim {
                target_args.time_scale = stored.time_scale;
            }
            if target_args.endpoints.is_empty() && !target_args.sim {
                if stored.sim {
                    // The same refusal as a rehearsal pointed at the cloud
                    // (below), and the same exit code.
                    return Err(Error::new(
                        ExitCode::Refused,
                        format!("run {} ran against the in-process simulator; it goes on only in a simulator, not against the cloud", record.run.id),
                    )
                    .with_hint("pass --sim to go on in the simulated world saved with the run, or --endpoint PRODUCT=URL for every product to point at a running `runbook sim`"));
                }
                target_args.endpoints.clone_from(&stored.endpoints);
            }
            if rehearsal && !target_args.sim {
                rehearsal_stays_local(&record.run.id, &plan, &target_args.endpoints)?;
            }
            let target = Target::connect(&target_args).await?;
            // An approval covers the plan and where it runs: a resume against
            // another target (simulator, endpoints, profile) is approved anew.
            let concurrency = self.exec.concurrency.map_or(stored.concurrency.max(1), usize::from);
            let new_options = StoredOptions::of(&target_args, &target, rehearsal, concurrency);
            let same_target = stored.same_target(&new_options);
            let approved = same_target && record.approvals.iter().any(|a| a.step_id.is_none() && a.digest == plan.digest);
            if !same_target {
                eprintln!("note: run {} is resumed against another target than it ran against; the plan needs a new approval", record.run.id);
            }
            let prior = Prior::from_record(&record, &plan);
            let gates = || {
                approvals::check_answerable(&plan, &self.exec.approve.iter().cloned().collect(), asking(&self.exec), |s| {
                    prior.done_steps.contains_key(s)
                })
            };
            let decision = if approved {
                gates()?;
                None
            } else {
                approve_plan(&plan, &self.exec, target.account.as_deref(), gates)?
            };
            if let Some(ApprovalDecision::Approved { by, method }) = decision {
                journal.record_approval(&record.run.id, None, &by, &method, &plan.digest).await.map_err(journal_error)?;
            }
            if !same_target {
                // Only once the new target is approved does it become the
                // run's target (a refused resume leaves the old one).
                journal
                    .set_run_options(&record.run.id, serde_json::to_string(&new_options).unwrap_or_default())
                    .await
                    .map_err(journal_error)?;
            }
            target.restore_world(&journal, &record.run.id)?;
            let how = How { exec: &self.exec, flags, interrupts, concurrency: new_options.concurrency, resumed: true };
            execute(plan, target, journal, how, record.run.id.clone(), prior).await
        })
    }
}

impl StoredOptions {
    /// What a run started (or resumed) with `args` against `target` records.
    fn of(
        args: &TargetArgs,
        target: &Target,
        rehearsal: bool,
        concurrency: usize,
    ) -> StoredOptions {
        StoredOptions {
            endpoints: args.endpoints.clone(),
            sim: args.sim,
            rehearsal,
            account: target.account.clone(),
            sim_faults: args.sim_faults.clone(),
            profile: args.profile.clone(),
            qps: args.qps.clone(),
            concurrency,
            time_scale: args.time_scale.filter(|_| args.sim),
        }
    }

    /// Whether `other` sends the calls to the same place, signed the same way.
    fn same_target(&self, other: &StoredOptions) -> bool {
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
            && same_account
    }
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

/// The API to call and how.
struct Target {
    api: Arc<dyn CloudApi>,
    /// Fingerprint of the signing AccessKeyId.
    account: Option<String>,
    limits: RateLimits,
    /// Compressed time (only against the in-process simulator).
    time_scale: TimeScale,
    /// The in-process simulator (`--sim`).
    sim: Option<crate::sim::SimHandle>,
}

impl Target {
    async fn connect(args: &TargetArgs) -> Result<Target, Error> {
        let mut endpoints = Endpoints::new();
        for e in &args.endpoints {
            endpoints
                .add_flag(e)
                .map_err(|e| Error::usage(e.to_string()))?;
        }
        let mut limits: Vec<(String, f64)> = Vec::new();
        let faults = match &args.sim_faults {
            Some(spec) => spec
                .parse::<crate::sim::FaultSpec>()
                .map_err(|e| Error::usage(format!("invalid --sim-faults: {e}")))?,
            None => crate::sim::FaultSpec::default(),
        };
        if !args.sim {
            limits.extend([("dataworks".to_owned(), 20.0), ("dts".to_owned(), 20.0)]);
        }
        let options = ClientOptions {
            connect_timeout: parse_duration(&args.connect_timeout)?,
            request_timeout: parse_duration(&args.request_timeout)?,
        };
        let (client, sim) = connect(
            args.sim,
            args.profile.as_deref(),
            endpoints,
            options,
            |config| {
                config.faults = faults;
                config.seed = args.sim_seed;
                config.time_scale = args.time_scale.unwrap_or_default();
                config.log_path.clone_from(&args.sim_log);
            },
        )
        .await?;
        // Credentials that cannot be had stop the run before anything is sent.
        let credentials = client.current_credentials(None).await?;
        // Who the run acts as, for the journal; without STS, the key's fingerprint.
        let account = match client.caller_identity_of(&credentials).await {
            Ok(identity) => fingerprint(&identity.account_id),
            Err(e) => {
                tracing::warn!(
                    "cannot tell who the credentials ({}) are: STS GetCallerIdentity at {} failed: {e}; \
                     the journal records a fingerprint of the AccessKeyId instead",
                    client.credentials(),
                    client.sts_endpoint()
                );
                fingerprint(credentials.access_key_id())
            }
        };
        for q in &args.qps {
            let (product, rate) = ratelimit::parse_limit(q).map_err(Error::usage)?;
            limits.retain(|(p, _)| *p != product);
            limits.push((product, rate));
        }
        Ok(Target {
            api: Arc::new(client),
            account: Some(account),
            limits: RateLimits::new(limits),
            time_scale: args.time_scale.filter(|_| args.sim).unwrap_or_default(),
            sim,
        })
    }

    /// With the in-process simulator: puts back the world saved with run
    /// `run_id` (see the module doc), if one was. Elsewhere: drops it, as
    /// the run goes on in another world.
    fn restore_world(&self, journal: &Journal, run_id: &str) -> Result<(), Error> {
        let Some(sim) = &self.sim else {
            journal.forget_world(run_id);
            return Ok(());
        };
        match journal.world(run_id).map_err(journal_error)? {
            Some(world) => sim.simulator().restore_world(&world).map_err(|e| {
                Error::new(
                    ExitCode::Internal,
                    format!("cannot restore the simulated world of run {run_id}"),
                )
                .with_source(e)
            }),
            None => {
                eprintln!(
                    "note: no simulated world was saved with run {run_id}; it goes on against a fresh simulator"
                );
                Ok(())
            }
        }
    }
}

/// The client of a run or a refresh: against the in-process simulator
/// (`sim`, set up by `configure`) with its generated pair, or against
/// `endpoints` with what the default credential chain finds.
pub(crate) async fn connect(
    sim: bool,
    profile: Option<&str>,
    mut endpoints: Endpoints,
    options: ClientOptions,
    configure: impl FnOnce(&mut crate::sim::SimConfig),
) -> Result<(RpcClient, Option<crate::sim::SimHandle>), Error> {
    if sim {
        let (credentials, handle) = start_sim(&mut endpoints, configure).await?;
        let client = RpcClient::new(credentials, endpoints, options)
            .map_err(|e| {
                Error::new(ExitCode::Internal, "cannot set up the HTTP client").with_source(e)
            })?
            .with_sts_endpoint(&handle.base_url());
        return Ok((client, Some(handle)));
    }
    let lookup = |name: &str| std::env::var(name).ok();
    let client = RpcClient::from_chain(profile, &lookup, endpoints, options).await?;
    Ok((client, None))
}

/// Starts the in-process simulator (generated credentials, `--auto-create`)
/// and points the DataWorks and DTS endpoints at it.
pub(crate) async fn start_sim(
    endpoints: &mut Endpoints,
    configure: impl FnOnce(&mut crate::sim::SimConfig),
) -> Result<(Credentials, crate::sim::SimHandle), Error> {
    let (mut config, (id, secret)) = crate::sim::SimConfig::with_generated_credentials();
    configure(&mut config);
    let handle = crate::sim::spawn(config)
        .await
        .map_err(|e| Error::new(ExitCode::Internal, "cannot start the simulator").with_source(e))?;
    for product in [crate::cloud::actions::DATAWORKS, crate::cloud::actions::DTS] {
        endpoints.set_override(product, &handle.base_url());
    }
    // Every other product too (generic `api` calls): a rehearsal never
    // reaches the cloud; the simulator answers what it does not serve with
    // the gateway's not-found error.
    endpoints.set_fallback(&handle.base_url());
    Ok((Credentials::new(id, secret, None), handle))
}

/// A fingerprint of an account id (from STS `GetCallerIdentity`): enough
/// to tell two accounts apart in the journal.
fn fingerprint(access_key_id: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(access_key_id.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The refusal of a refreshed plan whose resources drifted (exit 6).
fn drift_error(drifts: &[crate::plan::drift::Drift]) -> Error {
    let mut listed: Vec<String> = drifts.iter().take(5).map(ToString::to_string).collect();
    if drifts.len() > 5 {
        listed.push(format!("and {} more", drifts.len() - 5));
    }
    Error::new(
        ExitCode::Refused,
        format!(
            "the world changed since the plan was reviewed; nothing was sent: {}",
            listed.join("; ")
        ),
    )
    .with_hint("plan again with --refresh and review it, or pass --allow-drift to run it anyway (journaled)")
}

/// Parses `--expect-digest`: a full SHA-256 in hex (64 digits, any case).
fn parse_digest(s: &str) -> Result<String, Error> {
    let s = s.trim();
    if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(Error::usage(format!(
            "invalid --expect-digest `{s}`: expected the 64 hex digits of the plan digest `runbook plan` shows"
        )))
    }
}

/// Parses `KEY=VALUE` flags.
pub(crate) fn parse_params(raw: &[String]) -> Result<Vec<(String, String)>, Error> {
    raw.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    Error::usage(format!(
                        "invalid param `{p}`: expected KEY=VALUE, e.g. -p project_id=10000"
                    ))
                })
        })
        .collect()
}

fn new_run_id() -> String {
    let t = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let rand = uuid::Uuid::new_v4().simple().to_string();
    format!("{t}-{}", &rand[..6])
}

/// The journal failed while the run was sending: say which mutating calls
/// were sent and whose answers are journaled, as this process knows them.
async fn failed_mid_run(e: crate::run::JournalError, journal: &Journal, run_id: &str) -> Error {
    journal.settle().await;
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

/// A journal failure before the run sent anything.
fn journal_error(e: crate::run::JournalError) -> Error {
    Error::new(
        ExitCode::Internal,
        "the journal could not record the run; nothing was sent",
    )
    .with_source(e)
}

/// `user@host`, for approvals.
pub(crate) fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{user}@{host}")
}

/// The login name of the current uid, from /proc and /etc/passwd (for
/// sessions without `USER`, such as cron or tmux started by a service).
fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut fields = l.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_owned())
    })
}

fn is_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Whether `approve` steps can be asked on this run's terminal.
fn asking(exec: &ExecArgs) -> Asking {
    if exec.output == OutputFormat::Json {
        Asking::Json
    } else if is_terminal() {
        Asking::Terminal
    } else {
        Asking::NoTerminal
    }
}

/// The approval of the whole plan: needed when it changes anything.
/// `gates` checks the run's `approve` steps (see
/// [`approvals::check_answerable`]): after a refusal for want of a terminal,
/// which comes first, and before anyone is asked.
fn approve_plan(
    plan: &Plan,
    exec: &ExecArgs,
    account: Option<&str>,
    gates: impl FnOnce() -> Result<(), Error>,
) -> Result<Option<ApprovalDecision>, Error> {
    let mutating: Vec<&crate::plan::PlannedStep> =
        plan.steps.iter().filter(|s| s.risk.mutates()).collect();
    if mutating.is_empty() {
        gates()?;
        return Ok(None);
    }
    let short = &plan.digest[..plan.digest.len().min(12)];
    if exec.yes {
        gates()?;
        return Ok(Some(ApprovalDecision::Approved {
            by: who(),
            method: "--yes".to_owned(),
        }));
    }
    if !is_terminal() {
        return Err(Error::new(
            ExitCode::Refused,
            format!("plan {short} of `{}` changes cloud resources and needs an approval, but there is no terminal to ask on", plan.name),
        )
        .with_hint("review it with `runbook plan`, then pass --yes to approve it non-interactively"));
    }
    gates()?;
    let mut err = crate::safe_text::SafeWriter::new(std::io::stderr().lock());
    let _ = writeln!(err, "plan {short} of `{}`:", plan.name);
    for s in &mutating {
        let mark = if s.risk == crate::cloud::Risk::Irreversible {
            "IRREVERSIBLE"
        } else {
            "mutating"
        };
        let items = s
            .for_each
            .as_ref()
            .and_then(|f| f.items.as_ref())
            .map(|i| format!(" x{}", i.len()))
            .unwrap_or_default();
        let action = match &s.kind {
            crate::plan::StepKind::Call { call, .. } => call.action.clone(),
            _ => String::new(),
        };
        let only_on_failure = if s.compensation {
            "  (compensation: only if a step fails)"
        } else {
            ""
        };
        let _ = writeln!(
            err,
            "  [{mark:>12}] {}{items}  {action}{only_on_failure}",
            s.id
        );
        if s.risk == crate::cloud::Risk::Irreversible {
            for line in approvals::irreversible_details(s, account) {
                let _ = writeln!(err, "  {:>14} {line}", "");
            }
        }
    }
    let b = &plan.blast_radius;
    let _ = write!(
        err,
        "{} mutating and {} irreversible calls. Type `yes` to run: ",
        b.mutating, b.irreversible
    );
    let _ = err.flush();
    drop(err);
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    if answer.trim().eq_ignore_ascii_case("yes") {
        Ok(Some(ApprovalDecision::Approved {
            by: who(),
            method: "terminal".to_owned(),
        }))
    } else {
        Err(Error::new(
            ExitCode::Refused,
            "not approved; nothing was sent",
        ))
    }
}

/// `approve` steps: `--approve STEP`, else a question on the terminal.
struct StepApprover {
    flags: FlagApprover,
    multi: indicatif::MultiProgress,
    interactive: bool,
}

impl Approver for StepApprover {
    fn approve<'a>(
        &'a self,
        step: &'a str,
        message: &'a str,
        digest: &'a str,
    ) -> ApprovalFuture<'a> {
        Box::pin(async move {
            if self.flags.steps.contains(step) || !self.interactive {
                return self.flags.approve(step, message, digest).await;
            }
            let multi = self.multi.clone();
            let (step_s, message_s) = (step.to_owned(), message.to_owned());
            let by = self.flags.by.clone();
            let answer = tokio::task::spawn_blocking(move || {
                multi.suspend(|| {
                    let mut err = crate::safe_text::SafeWriter::new(std::io::stderr().lock());
                    let _ = write!(
                        err,
                        "approve step `{step_s}`: {message_s}\nType `yes` to continue: "
                    );
                    let _ = err.flush();
                    let mut answer = String::new();
                    let _ = std::io::stdin().read_line(&mut answer);
                    answer
                })
            })
            .await
            .unwrap_or_default();
            if answer.trim().eq_ignore_ascii_case("yes") {
                ApprovalDecision::Approved {
                    by,
                    method: "terminal".to_owned(),
                }
            } else {
                ApprovalDecision::Refused {
                    reason: format!("step `{step}` was not approved"),
                }
            }
        })
    }
}

/// How `execute` goes about a run, beyond the plan and target.
struct How<'a> {
    exec: &'a ExecArgs,
    flags: CheckedFlags,
    interrupts: Interrupts,
    concurrency: usize,
    resumed: bool,
}

/// Runs the plan and prints the outcome; shared by `run` and `resume`.
async fn execute(
    plan: Plan,
    target: Target,
    journal: Journal,
    how: How<'_>,
    run_id: String,
    prior: Prior,
) -> Result<ExitCode, Error> {
    let How {
        exec,
        flags,
        interrupts,
        concurrency,
        resumed,
    } = how;
    let mode = match exec.output {
        OutputFormat::Json => ReportMode::Json,
        OutputFormat::Text if std::io::stderr().is_terminal() => ReportMode::Live,
        OutputFormat::Text => ReportMode::Plain,
    };
    let multi = if mode == ReportMode::Live {
        indicatif::MultiProgress::new()
    } else {
        report::hidden()
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let reporter = tokio::spawn(report::report(mode, rx, multi.clone()));
    let approver = StepApprover {
        flags: FlagApprover {
            steps: exec.approve.iter().cloned().collect::<BTreeSet<_>>(),
            by: who(),
        },
        multi,
        interactive: asking(exec) == Asking::Terminal,
    };
    let cancel = CancellationToken::new();
    interrupts.cancel_on_signal(cancel.clone());
    if let Some(sim) = &target.sim {
        let sim = sim.simulator().clone();
        let mark = std::sync::Mutex::new(None);
        journal.keep_world(
            &run_id,
            Arc::new(move || {
                let mut mark = mark
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let (world, at) = sim.save_world(*mark)?;
                *mark = Some(at);
                Some(world)
            }),
        );
    }
    let ledger = journal.clone();
    let window = crate::run::RunWindow::new(&plan, flags.window);
    let plan = Arc::new(plan);
    let runner = Runner::new(
        Arc::clone(&plan),
        target.api,
        journal,
        Arc::new(tx),
        Arc::new(target.limits),
        Arc::new(approver),
        cancel,
        RunOptions {
            run_id: run_id.clone(),
            concurrency,
            run_timeout: flags.run_timeout,
            seed: exec.jitter_seed,
            allow_drift: exec.allow_drift,
            time_scale: target.time_scale,
        },
        prior,
    )
    .with_window(window, Arc::new(crate::run::SystemClock));
    let summary = runner.execute(resumed).await;
    let _ = reporter.await;
    let summary: RunSummary = match summary {
        Ok(summary) => summary,
        Err(e) => return Err(failed_mid_run(e, &ledger, &run_id).await),
    };
    if exec.output == OutputFormat::Text {
        let mut stdout = crate::safe_text::SafeWriter::new(std::io::stdout().lock());
        let _ = report::summary(&summary, &mut stdout);
        if plan.steps.iter().any(|s| !s.report.is_empty())
            && ledger.flush().await.is_ok()
            && let Ok(record) = ledger.load_run(&run_id)
        {
            let _ = run_report::write_reported(&run_report::reported(&plan, &record), &mut stdout);
        }
        drop(stdout);
        if summary.outcome != RunStatus::Succeeded {
            super::out(&format!("continue with: runbook resume {run_id}\n"));
        }
    }
    // The runner ends a run succeeded, failed or cancelled.
    Ok(match summary.outcome {
        RunStatus::Succeeded => ExitCode::Ok,
        RunStatus::Cancelled | RunStatus::Interrupted | RunStatus::WindowClosed => {
            ExitCode::Cancelled
        }
        RunStatus::Failed
        | RunStatus::Rejected
        | RunStatus::Running
        | RunStatus::WaitingApproval => ExitCode::StepFailed,
    })
}

/// The change window's gate, before anything is sent: outside the plan's
/// window (narrowed by `--not-before`/`--not-after`) a run is refused with
/// exit 6 and told when it next opens. Inside it, a run that may not finish
/// before it closes is warned about.
fn admit(plan: &Plan, flags: &CheckedFlags) -> Result<(), Error> {
    use crate::run::Clock as _;
    let window = crate::run::RunWindow::new(plan, flags.window);
    if window.is_unbounded() {
        return Ok(());
    }
    let now = crate::run::SystemClock.now();
    match window.admit(now) {
        Ok(closes) => {
            if let Some(closes) = closes {
                let left = u64::try_from(closes.as_second() - now.as_second()).unwrap_or(0);
                if left < plan.worst_case_secs {
                    eprintln!(
                        "warning: the window closes at {}, in {}, before the worst case ({}): if the run is still going then, it starts no new change and stops as window_closed (exit 5), to resume in the next opening",
                        window.at(closes),
                        crate::duration::format(Duration::from_secs(left)),
                        crate::duration::format(Duration::from_secs(plan.worst_case_secs)),
                    );
                }
            }
            Ok(())
        }
        Err(refusal) => {
            Err(Error::new(ExitCode::Refused, refusal.to_string()).with_hint(refusal.hint()))
        }
    }
}

/// A duration flag (`30s`, `2m`, `1h 30m`); a bad one is a usage error.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, Error> {
    crate::duration::parse(s).map_err(|e| Error::usage(e.message.clone()).with_hint(e.hint()))
}

/// Takes the run lock of plan `digest` (see [`crate::run::lock`]).
fn lock(state: &StateArgs, digest: &str, run_id: Option<&str>) -> Result<RunLock, Error> {
    RunLock::acquire(&state.dir(), digest, run_id).map_err(|e| match e {
        LockError::Held { .. } => Error::new(ExitCode::Refused, e.to_string())
            .with_hint("wait for it to finish, or stop it (Ctrl-C) and `runbook resume` it"),
        LockError::Io { .. } => Error::new(ExitCode::Internal, e.to_string()).with_source(e),
    })
}
