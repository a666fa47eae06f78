//! `runbook run` and `runbook resume`: the parts that change the cloud.
//!
//! Both share one path: credentials and endpoints (or the in-process
//! simulator, `target.rs`), the approval gate bound to the plan digest, the
//! lock that keeps two runs of the same playbook and params apart, the
//! journal, the runner, the live view and the summary. The decisions (resume
//! policy, approval gates, what a rehearsal's world means, how failures map
//! to exit codes) are the engine's, in `crate::run`; this module parses the
//! flags, calls the engine in order and prints.
//!
//! # A rehearsal's world
//!
//! (Carried out by [`crate::run::world`].) A run against the in-process
//! simulator (`--sim`) keeps the simulator's
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
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::approvals::{self, StepApprover};
use super::checks::CheckedFlags;
use super::interrupt::Interrupts;
use super::target::{SimWorld, Target, TargetArgs};
use crate::error::{Error, ExitCode};
use crate::notify::{Notification, Notifier};
use crate::plan::Plan;
use crate::run::approve::{self, Asking, PlanGate};
use crate::run::launch::{self, StoredOptions};
use crate::run::report::{self, ReportMode};
use crate::run::resources::{self, LockAccount};
use crate::run::run_report;
use crate::run::waiting::{self, Elsewhere, Gate, Park};
use crate::run::world::{self, Restored};
use crate::run::{
    ApprovalDecision, FlagApprover, Journal, JournalUrl, Prior, RunClaim, RunOptions, RunStatus,
    RunSummary, Runner, exit, resume,
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
        exit::open_journal(&self.journal_url()?)
    }
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
    /// before it starts (unless --detach or --wait-approval leaves it to
    /// someone else).
    #[arg(long = "approve", value_name = "STEP")]
    pub(crate) approve: Vec<String>,
    /// Leave every approval this process is not given (no --yes for the
    /// plan, no --approve for a step) to someone else, and exit at once
    /// when the run gets there: the run is parked in the journal
    /// (`waiting_approval`, with the gate and since when), `approval_needed`
    /// is notified with the exact `runbook approve RUN_ID [STEP] --journal
    /// URL` command, and this process exits 7. Once approved (from any
    /// host that reaches the journal), `runbook resume RUN_ID` continues
    /// it; `runbook reject` ends it (`rejected`). No terminal is asked.
    #[arg(long, conflicts_with = "wait_approval")]
    pub(crate) detach: bool,
    /// Like --detach, but this process waits at the gate, reading the
    /// journal, until the approval comes (then the run goes on), a
    /// rejection ends it (`rejected`, exit 6) or the gate's time is up
    /// (`failed`, exit 1, resumable; see --approval-timeout).
    #[arg(long)]
    pub(crate) wait_approval: bool,
    /// How long an approval left to someone else is waited for: the plan's,
    /// and an `approve` step's without a `timeout` of its own (default
    /// 1h). Counted from when the run began to wait; a resumed wait keeps
    /// its deadline. The run then fails (exit 1, resumable: a resume waits
    /// again).
    #[arg(long, value_name = "DURATION")]
    pub(crate) approval_timeout: Option<String>,
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
    /// How long the run stays alive in the journal without a heartbeat
    /// (it renews it every third of this): once it runs out, `runs` and
    /// `show` on any host see the run as `interrupted` (a process on the
    /// same host and state dir is seen at once through its lock).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub(crate) lease: String,
    /// How long the run waits for a journal it cannot reach (PostgreSQL
    /// restarting or failing over, a network cut) or that another process
    /// keeps locked (SQLite), before it stops. Meanwhile it sends nothing
    /// (calls in flight finish) and reconnects with back-off; stopped, it
    /// exits 8 and `runbook resume` continues it. Must be shorter than
    /// --lease (a run cut off longer than its lease has lost it); default:
    /// two thirds of --lease (20s). To ride out a failover of a minute:
    /// --lease 2m --journal-patience 90s.
    #[arg(long, value_name = "DURATION", env = "RUNBOOK_JOURNAL_PATIENCE")]
    pub(crate) journal_patience: Option<String>,
    /// Also notify KIND:URL of every event (approval needed, failed,
    /// succeeded, cancelled, window closed), beside the playbook's `notify`;
    /// KIND is `webhook` (JSON POST), `dingtalk` (custom robot) or `slack`
    /// (incoming webhook). Repeatable. Not journaled, as a URL may hold a
    /// token: give it again on `resume`. A notification that cannot be
    /// delivered is retried, journaled and shown; it never fails the run.
    #[arg(long = "notify", value_name = "KIND:URL")]
    pub(crate) notify: Vec<crate::notify::FlagTarget>,
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
  # keep to a change window (besides the playbook's `window:`): nothing before 02:00, no new change from 05:00
  runbook run playbooks/stop-di-job.yaml -p di_job_id=11668 --yes --not-before 2026-12-05T02:00:00+08:00 --not-after 2026-12-05T05:00:00+08:00
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

impl RunArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        let rt = super::runtime()?;
        rt.block_on(async move {
            let flags = CheckedFlags::check(&self.target_args, &self.exec, &self.state)?;
            let expected = self.expect_digest.as_deref().map(parse_digest).transpose()?;
            let interrupts = Interrupts::install()?;
            let plan = self.plan()?;
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
            let target = Target::connect(&self.target_args, plan.signature).await?;
            let concurrency = self.exec.concurrency.map_or(plan.concurrency, usize::from);
            let stored = StoredOptions::of(&self.target_args.choice(), target.account.clone(), self.target_args.sim, concurrency);
            let journal = self.state.journal()?;
            let lock = exit::lock(&self.state.dir(), &plan.digest, None)?;
            if let Some(note) = launch::earlier_run_note(&journal, &plan.digest) {
                eprintln!("note: {note}");
            }
            // A refreshed plan holds the world to what was reviewed.
            let drifts = crate::plan::drift::check(&plan, None, &Default::default(), target.api.as_ref()).await;
            if !drifts.is_empty() && !self.exec.allow_drift {
                return Err(crate::plan::drift::refusal(&drifts));
            }
            let starter = target.identity.as_ref().map(|i| &i.principal);
            let gates = || approve::check_answerable(&plan, &self.exec.approve.iter().cloned().collect(), asking(&self.exec), starter, |_| false);
            let pre = journal.pre_approvals(&plan.digest).map_err(exit::journal_error)?;
            let approval = match approve_plan(&plan, &self.exec, &target, &pre, elsewhere_asked(&self.exec), gates) {
                Ok(approval) => approval,
                Err(e) => {
                    if e.exit == ExitCode::Refused {
                        notify_refused(&plan, &self.exec, &self.target, &e).await;
                    }
                    return Err(e);
                }
            };
            let run_id = launch::create(&journal, &lock, &plan, &stored, &approval.given, target.identity.as_ref(), &drifts).await?;
            for d in &drifts {
                eprintln!("warning: drift allowed (--allow-drift): {}", crate::safe_text::escape(&d.to_string()));
            }
            let how = How { exec: &self.exec, flags, interrupts, concurrency: stored.concurrency, resumed: false, elsewhere: elsewhere_asked(&self.exec), plan_elsewhere: approval.elsewhere };
            execute(plan, target, journal, how, run_id, Prior::default()).await
        })
    }

    /// The plan to run: from a saved plan file (verified against its
    /// playbook), or built from the playbook and params.
    fn plan(&self) -> Result<Plan, Error> {
        let is_plan = self
            .target
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        if !is_plan {
            let raw = parse_params(&self.params)?;
            let options = crate::plan::BuildOptions::default()
                .signed(super::requested_signature(self.target_args.signature)?)
                .default_region(super::default_region(self.target_args.profile.as_deref()));
            return crate::plan::load_and_build_with(
                &self.target,
                &raw,
                self.params_file.as_deref(),
                &options,
            );
        }
        if !self.params.is_empty() || self.params_file.is_some() {
            return Err(Error::usage(
                "a saved plan carries its own params: drop -p/--params, or run the playbook instead",
            ));
        }
        let plan = Plan::load_verified(&self.target)?;
        super::check_plan_signature(self.target_args.signature, &plan, "this saved plan")?;
        super::note_default_region(&plan, self.target_args.profile.as_deref());
        Ok(plan)
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
            let plan = resume::journaled_plan(&record)?;
            flags.check_plan(&plan, &self.target_args, &self.exec)?;
            super::check_plan_signature(
                self.target_args.signature,
                &plan,
                &format!("run {}", record.run.id),
            )?;
            super::note_default_region(&plan, self.target_args.profile.as_deref());
            // Everything below works from the journal as read under the lock:
            // another process may have gone on with this run before.
            let _lock = exit::lock(&self.state.dir(), &plan.digest, Some(&record.run.id))?;
            let record = journal.load_run(&record.run.id).map_err(exit::journal_error)?;
            let run_id = record.run.id.clone();
            if record.run.status == RunStatus::Succeeded {
                super::out(&format!("run {run_id} already succeeded; nothing to resume\n"));
                return Ok(ExitCode::Ok);
            }
            if record.run.status == RunStatus::Rejected {
                return Err(resume::rejected(&record, &plan));
            }
            // A run parked at a gate goes on waiting there for the approval
            // from elsewhere, whatever the flags of this resume.
            let elsewhere = elsewhere_asked(&self.exec) || record.run.status == RunStatus::WaitingApproval;
            admit(&plan, &flags)?;
            let stored = StoredOptions::from_json(&record.options_json);
            let choice = resume::target(&run_id, &plan, &stored, self.target_args.choice())?;
            let target_args = self.target_args.with_choice(choice);
            // The run's signature, from its journaled plan.
            let target = Target::connect(&target_args, plan.signature).await?;
            let concurrency = self.exec.concurrency.map_or(stored.concurrency.max(1), usize::from);
            let new_options = StoredOptions::of(&target_args.choice(), target.account.clone(), stored.is_rehearsal(), concurrency);
            let carried = resume::Carried::of(&record, &plan, &stored, &new_options);
            if !carried.same_target {
                eprintln!("note: run {run_id} is resumed against another target than it ran against; the plan needs a new approval");
            }
            let prior = Prior::from_record(&record, &plan);
            let starter = target.identity.as_ref().map(|i| &i.principal);
            let asking = if elsewhere { Asking::Elsewhere } else { asking(&self.exec) };
            let gates = || {
                approve::check_answerable(&plan, &self.exec.approve.iter().cloned().collect(), asking, starter, |s| {
                    prior.done_steps.contains_key(s)
                })
            };
            let decisions = if carried.approved {
                gates()?;
                PlanApproval { given: Vec::new(), elsewhere: false }
            } else {
                let pre = journal.pre_approvals(&plan.digest).map_err(exit::journal_error)?;
                approve_plan(&plan, &self.exec, &target, &pre, elsewhere, gates)?
            };
            let new_target = (!carried.same_target).then_some(&new_options);
            resume::record(&journal, &run_id, &plan.digest, &decisions.given, target.identity.as_ref(), new_target).await?;
            let sim = target.sim.as_ref().map(|s| SimWorld(s.simulator().clone()));
            if world::restore(&journal, &run_id, sim.as_ref())? == Restored::Fresh {
                eprintln!("note: no simulated world was saved with run {run_id}; it goes on against a fresh simulator");
            }
            let how = How { exec: &self.exec, flags, interrupts, concurrency: new_options.concurrency, resumed: true, elsewhere, plan_elsewhere: decisions.elsewhere };
            execute(plan, target, journal, how, run_id, prior).await
        })
    }
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

fn is_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Whether the approvals this process is not given are left to someone
/// else (`--detach`, `--wait-approval`).
fn elsewhere_asked(exec: &ExecArgs) -> bool {
    exec.detach || exec.wait_approval
}

/// Whether `approve` steps can be asked on this run's terminal.
fn asking(exec: &ExecArgs) -> Asking {
    if elsewhere_asked(exec) {
        Asking::Elsewhere
    } else if exec.output == OutputFormat::Json {
        Asking::Json
    } else if is_terminal() {
        Asking::Terminal
    } else {
        Asking::NoTerminal
    }
}

/// The change window's gate (see [`launch::admit`]): refused outside it;
/// inside, a warning when the run may outlast it.
fn admit(plan: &Plan, flags: &CheckedFlags) -> Result<(), Error> {
    use crate::run::Clock as _;
    if let Some(warning) = launch::admit(plan, flags.window, crate::run::SystemClock.now())? {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

/// How the plan's approval goes, before the run starts: the decisions to
/// journal (pre-approvals, `--yes`, or the answer asked on the terminal
/// when it comes to that; empty when none is needed), and whether the run
/// then waits for the rest from elsewhere (see [`crate::run::waiting`]).
#[derive(Debug, PartialEq)]
struct PlanApproval {
    given: Vec<ApprovalDecision>,
    elsewhere: bool,
}

/// The approval of the whole plan (see [`approve::gate_plan`]).
fn approve_plan(
    plan: &Plan,
    exec: &ExecArgs,
    target: &Target,
    pre: &[crate::run::PreApprovalRow],
    elsewhere: bool,
    gates: impl FnOnce() -> Result<(), Error>,
) -> Result<PlanApproval, Error> {
    let by = approve::who();
    let starter = approve::Starter {
        yes: exec.yes,
        terminal: is_terminal(),
        by: &by,
        identity: target.identity.as_ref(),
        elsewhere,
    };
    let given = |given| {
        Ok(PlanApproval {
            given,
            elsewhere: false,
        })
    };
    match approve::gate_plan(plan, &starter, pre, jiff::Timestamp::now(), gates)? {
        PlanGate::NotNeeded => given(Vec::new()),
        PlanGate::Approved(decisions) => given(decisions),
        PlanGate::Ask { mut pre } => {
            pre.push(approvals::ask_plan(
                plan,
                target.account.as_deref(),
                &by,
                target.identity.as_ref(),
            )?);
            given(pre)
        }
        PlanGate::Elsewhere { given, own } => {
            if let Some(why) = own {
                eprintln!(
                    "note: {}; nothing was sent; the run waits for the approvers (`runbook approve`)",
                    crate::safe_text::escape(&why)
                );
            }
            Ok(PlanApproval {
                given,
                elsewhere: true,
            })
        }
    }
}

/// How `execute` goes about a run, beyond the plan and target.
struct How<'a> {
    exec: &'a ExecArgs,
    flags: CheckedFlags,
    interrupts: Interrupts,
    concurrency: usize,
    resumed: bool,
    /// Gates this process is not given are left to others.
    elsewhere: bool,
    /// The plan's approval is one of them: the run waits for it first.
    plan_elsewhere: bool,
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
        elsewhere,
        plan_elsewhere,
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
            by: approve::who(),
            identity: target.identity.clone(),
        },
        multi,
        interactive: asking(exec) == Asking::Terminal,
    };
    journal.set_patience(flags.journal_patience);
    // This process holds the run from now on, alive while it heartbeats.
    let claim = RunClaim::here(approve::who(), target.describe(&plan), flags.lease);
    journal
        .claim_run(&run_id, &claim)
        .await
        .map_err(|e| match e {
            crate::run::JournalError::Held { .. } => Error::new(ExitCode::Refused, e.to_string())
                .with_hint("it is alive there: let it finish (or stop it there); if that process is gone, resume once its lease has run out"),
            e => exit::journal_error(e),
        })?;
    // The resources known from params, all at once, before anything is sent.
    let account = LockAccount::new(&run_id, target.account.as_deref(), target.sim.is_some());
    let locks = resources::take_before_start(&journal, &plan, &run_id, account, resumed).await?;
    let (notifier, unusable) = Notifier::new(&plan.notify, &exec.notify);
    let notifier = Arc::new(notifier);
    for u in &unusable {
        eprintln!(
            "warning: {} notifications cannot be sent: {}",
            u.kind,
            crate::safe_text::escape(&u.reason)
        );
    }
    let cancel = CancellationToken::new();
    interrupts.cancel_on_signal(cancel.clone());
    // `runbook cancel` from any host reaches the run through the journal.
    let asked = cancel.clone();
    let _heartbeat = journal.heartbeat(&run_id, &claim, move |by| {
        eprintln!(
            "note: {} asked this run to stop (runbook cancel); calls in flight finish, nothing new starts",
            crate::safe_text::escape(by)
        );
        asked.cancel();
    });
    if let Some(sim) = &target.sim {
        world::keep(&journal, &run_id, SimWorld(sim.simulator().clone()));
    }
    let elsewhere = Elsewhere {
        asked: elsewhere,
        detach: exec.detach,
        timeout: flags.approval_timeout,
        journal: journal.url().for_command(),
        notifier: Some(Arc::clone(&notifier)),
    };
    let sink: Arc<dyn crate::run::EventSink> = Arc::new(tx);
    if plan_elsewhere {
        let waited = {
            let emit = |e: &crate::run::RunEvent| {
                journal.event(&run_id, e);
                sink.emit(e);
            };
            let timeout = elsewhere.timeout.unwrap_or(waiting::DEFAULT_TIMEOUT);
            let park = Park {
                journal: &journal,
                run_id: &run_id,
                plan: &plan,
                gate: Gate::Plan,
                elsewhere: &elsewhere,
                timeout: target.time_scale.apply(timeout),
                emit: &emit,
            };
            park.wait(prior.waiting.as_ref(), &cancel).await
        };
        let ended = match waited {
            Ok(waited) => waiting::end_plan_wait(&journal, &run_id, &claim.holder, waited).await,
            Err(e) => Err(e),
        };
        match ended {
            Ok(None) => {}
            Ok(Some(end)) => {
                drop(sink);
                let _ = reporter.await;
                if end.exit == ExitCode::WaitingApproval {
                    let hint = end.hint.map(|h| format!("\n{h}")).unwrap_or_default();
                    let text = format!("{}{hint}\n", end.message);
                    // JSON lines only on stdout with --output json.
                    if exec.output == OutputFormat::Json {
                        eprint!("{}", crate::safe_text::escape(&text));
                    } else {
                        super::out(&text);
                    }
                    return Ok(ExitCode::WaitingApproval);
                }
                // Ended at the gate (rejected, timed out, cancelled): its
                // resource locks go.
                if let Err(e) = locks.release().await {
                    return Err(exit::failed_mid_run(e, &journal, &run_id).await);
                }
                notify_finished(&notifier, &journal, &plan, &run_id).await;
                return Err(end);
            }
            Err(e) => return Err(exit::failed_mid_run(e, &journal, &run_id).await),
        }
    }
    let ledger = journal.clone();
    let window = crate::run::RunWindow::new(&plan, flags.window);
    let plan = Arc::new(plan);
    let runner = Runner::new(
        Arc::clone(&plan),
        target.api,
        journal,
        sink,
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
    .with_window(window, Arc::new(crate::run::SystemClock))
    .with_locks(locks)
    .with_elsewhere(elsewhere);
    let summary = runner.execute(resumed).await;
    let _ = reporter.await;
    let summary: RunSummary = match summary {
        Ok(summary) => summary,
        Err(e) => return Err(exit::failed_mid_run(e, &ledger, &run_id).await),
    };
    if summary.outcome == RunStatus::WaitingApproval {
        // Parked (--detach): anyone may resume it once approved, at once.
        if let Err(e) = ledger.release_run(&run_id, &claim.holder).await {
            return Err(exit::failed_mid_run(e, &ledger, &run_id).await);
        }
    }
    notify_finished(&notifier, &ledger, &plan, &run_id).await;
    let credentials_failure = summary.credentials_failure.clone();
    if exec.output == OutputFormat::Text {
        print_summary(&plan, &summary, &ledger).await;
    }
    if let Some(why) = credentials_failure {
        return Err(exit::credentials_failed(&run_id, &why));
    }
    Ok(exit::exit_code(summary.outcome))
}

/// The text summary of a run, the values its steps report, and how to go on.
async fn print_summary(plan: &Plan, summary: &RunSummary, journal: &Journal) {
    let run_id = &summary.run_id;
    let mut stdout = crate::safe_text::SafeWriter::new(std::io::stdout().lock());
    let _ = report::summary(summary, &mut stdout);
    if journal.flush().await.is_ok()
        && let Ok(approvals) = journal.approvals(run_id)
    {
        for a in &approvals {
            let _ = std::io::Write::write_all(
                &mut stdout,
                format!("{}\n", waiting::approval_line(a)).as_bytes(),
            );
        }
    }
    if plan.steps.iter().any(|s| !s.report.is_empty())
        && journal.flush().await.is_ok()
        && let Ok(record) = journal.load_run(run_id)
    {
        let _ = run_report::write_reported(&run_report::reported(plan, &record), &mut stdout);
    }
    drop(stdout);
    if summary.outcome == RunStatus::WaitingApproval {
        super::out(&format!(
            "parked: once approved (`runbook approve {run_id} ...`, from any host), continue with: runbook resume {run_id}\n"
        ));
    } else if summary.outcome != RunStatus::Succeeded {
        super::out(&format!("continue with: runbook resume {run_id}\n"));
    }
}

/// Tells the run's notification targets that it was refused before it
/// started for want of the plan's approval (`refusal`), with the command
/// that gives one; each delivery is shown (there is no run to journal it
/// with). Never fails.
async fn notify_refused(plan: &Plan, exec: &ExecArgs, target: &std::path::Path, refusal: &Error) {
    let (notifier, _) = Notifier::new(&plan.notify, &exec.notify);
    if !notifier.wants(crate::plan::NotifyEvent::ApprovalNeeded) {
        return;
    }
    let saved = target
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let command = if saved {
        format!("runbook approve --plan {} --expires 7d", target.display())
    } else {
        format!(
            "runbook plan {} ... -o PLAN.json, then runbook approve --plan PLAN.json --expires 7d",
            target.display()
        )
    };
    let n = Notification::refused(&plan.name, &plan.digest, &refusal.message, command);
    for d in notifier.send(&n).await {
        let event: crate::run::RunEvent = d.into();
        if let Some(line) = report::notified_line(&event) {
            eprintln!("{}", crate::safe_text::escape(&line));
        }
    }
}

/// Sends the notification of how the run ended, journals and shows each
/// delivery. Never fails: the run's outcome stands whatever happens here.
async fn notify_finished(notifier: &Notifier, journal: &Journal, plan: &Plan, run_id: &str) {
    // Nothing to send: no need to read the run back and build its report.
    let wanted = crate::plan::NotifyEvent::ALL
        .iter()
        .any(|e| notifier.wants(*e));
    if !wanted || journal.flush().await.is_err() {
        return;
    }
    let Ok(record) = journal.load_run(run_id) else {
        return;
    };
    let events = journal.events(run_id).unwrap_or_default();
    let report = run_report::RunReport::build(&record, plan, &events);
    let Some(n) = Notification::finished(&report) else {
        return;
    };
    if !notifier.wants(n.event) {
        return;
    }
    for d in notifier.send(&n).await {
        let event = crate::run::RunEvent::from(d);
        if let Some(line) = report::notified_line(&event) {
            let prefix = if matches!(
                event,
                crate::run::RunEvent::Notified {
                    delivered: false,
                    ..
                }
            ) {
                "warning: "
            } else {
                ""
            };
            eprintln!("{prefix}{}", crate::safe_text::escape(&line));
        }
        journal.event(run_id, &event);
    }
    let _ = journal.flush().await;
}
