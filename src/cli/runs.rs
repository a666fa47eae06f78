//! `runbook runs` and `runbook show`: read the journal.

use std::io::Write;

use super::run::StateArgs;
use crate::error::{Error, ExitCode};
use crate::run::journal::RunRow;
use crate::run::lock::observed_status;
use crate::run::{AttemptKind, RunStatus, StepStatus};

/// List the runs in the journal, newest first: status as seen now (a run
/// whose process is gone is `interrupted`), start, where it runs and who
/// holds it.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct RunsArgs {
    #[command(subcommand)]
    command: Option<RunsCommand>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Only runs with this status as seen now: running, interrupted,
    /// succeeded, failed, cancelled, waiting_approval, rejected or window_closed.
    #[arg(long, value_name = "STATUS")]
    status: Option<String>,
    /// Only runs of this playbook: its name, or the path it was run from.
    #[arg(long, value_name = "NAME|PATH")]
    playbook: Option<String>,
    /// Only runs started in the last DURATION (e.g. `24h`, `7d`) or since
    /// TIMESTAMP (e.g. `2026-11-01T00:00:00Z`).
    #[arg(long, value_name = "DURATION|TIMESTAMP")]
    since: Option<String>,
    /// Only runs started or last resumed by me (`user@host`, as approvals
    /// record it).
    #[arg(long)]
    mine: bool,
    #[command(flatten)]
    state: StateArgs,
}

/// What `runs` does besides listing.
#[derive(Debug, clap::Subcommand)]
enum RunsCommand {
    /// Delete finished runs (succeeded, failed, cancelled, rejected, or
    /// whose window closed) that ended longer ago than `--older-than`, with
    /// their steps, attempts and events. A run that is not finished
    /// (running, interrupted, waiting for an approval) is never deleted.
    /// Approval rows are append-only and stay.
    Prune(PruneArgs),
}

#[derive(Debug, clap::Args)]
struct PruneArgs {
    /// Age of the runs to delete, from when they ended (e.g. `90d`).
    #[arg(long, value_name = "DURATION")]
    older_than: String,
    /// List what would be deleted, and delete nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    state: StateArgs,
}

/// Ask a running run to stop, on whatever host it runs: the request goes
/// through the journal, the run sees it at its next heartbeat (within a
/// third of its `--lease`) and stops as Ctrl-C stops it: calls in flight
/// finish, nothing new starts, it ends `cancelled` and `runbook resume`
/// continues it.
#[derive(Debug, clap::Args)]
pub(crate) struct CancelArgs {
    /// The run id (or a unique prefix), from `runbook runs`.
    #[arg(value_parser = run_id_arg)]
    run_id: String,
    #[command(flatten)]
    state: StateArgs,
}

impl CancelArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        let journal = self.state.journal()?;
        let rec = journal.load_run(&self.run_id).map_err(lookup_error)?;
        let id = rec.run.id;
        match journal
            .request_cancel(&id, &crate::run::approve::who())
            .map_err(|e| {
                Error::new(ExitCode::Internal, "cannot write the journal").with_source(e)
            })? {
            Some(host) => {
                super::out(&format!(
                    "asked run {id} (on host {host}) to stop; it stops at its next heartbeat and ends cancelled (resumable)\n"
                ));
                Ok(ExitCode::Ok)
            }
            None => Err(Error::new(
                ExitCode::Refused,
                format!(
                    "run {id} is not running ({}): nothing to cancel",
                    rec.run.status
                ),
            )),
        }
    }
}

/// End a run that no process carries on, and release the resources it
/// locks (see `ABANDON_HELP`).
#[derive(Debug, clap::Args)]
#[command(after_long_help = ABANDON_HELP)]
pub(crate) struct AbandonArgs {
    /// The run id (or a unique prefix), from `runbook runs`.
    #[arg(value_parser = run_id_arg)]
    run_id: String,
    /// Why it is abandoned (journaled, shown by `show` and the report).
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    state: StateArgs,
}

impl AbandonArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        let journal = self.state.journal()?;
        let rec = journal.load_run(&self.run_id).map_err(lookup_error)?;
        let done = crate::run::abandon::abandon(
            &journal,
            &self.state.dir(),
            &rec.run,
            &self.reason,
            &crate::run::approve::who(),
            &crate::run::journal::host_name(),
        )?;
        let id = &rec.run.id;
        let mut text = format!(
            "abandoned run {id} (it was {}): it ends cancelled; released {} resource lock(s)\n",
            done.was,
            done.released.len()
        );
        for key in &done.released {
            text.push_str(&format!("  {key}\n"));
        }
        super::out(&text);
        Ok(ExitCode::Ok)
    }
}

const ABANDON_HELP: &str =
    "A run locks the resources it changes (a DTS job, a DI node, a DI job) until it
ends, also while it is parked with no process (window closed, waiting for an
approval), so that no other run, of any playbook, on any host, changes them
meanwhile. `abandon` ends such a run for good and releases its locks:
  - only a run whose process is gone (`interrupted`: killed, crashed, its host
    lost; seen from another host once its lease has run out), or one parked on
    purpose (`window_closed`, `waiting_approval`);
  - a live run is refused (exit 6): stop it with `runbook cancel RUN_ID`; a run
    that has ended holds no locks and is refused too;
  - the run ends `cancelled`; who abandoned it, from which host, when and why
    are journaled, and `runs`, `show` and `report` say so;
  - nothing is sent to the cloud: a resource the run left half-changed stays so
    (`runbook show RUN_ID` says where it stopped); the run can still be
    resumed should anyone decide to go on.

Examples:
  runbook runs --status interrupted     # find the dead run
  runbook show RUN_ID                   # what it did, what it locks
  runbook abandon RUN_ID --reason \"laptop lost mid-cutover; DTS job stopped by hand\"
  RUNBOOK_JOURNAL=postgres://ops@db:5432/runbook runbook abandon RUN_ID --reason \"rescheduled\"";

/// Show one run step by step: approvals, steps, items and every attempt.
#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    /// The run id (or a unique prefix), from `runbook runs`.
    #[arg(value_parser = run_id_arg)]
    run_id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Also list every attempt (calls, polls, status checks).
    #[arg(long)]
    attempts: bool,
    #[command(flatten)]
    state: StateArgs,
}

/// Parses a RUN_ID argument: an empty id names no run (it is not a prefix
/// of every id).
pub(crate) fn run_id_arg(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Err("the run id is empty; `runbook runs` lists the runs".to_owned());
    }
    Ok(value.to_owned())
}

/// The error of looking a run up by id: a usage error when the id names no
/// run or more than one (listing them), an internal one when the journal
/// cannot be read.
pub(crate) fn lookup_error(e: crate::run::JournalError) -> Error {
    use crate::run::JournalError;
    match e {
        JournalError::NoSuchRun(_) => Error::new(ExitCode::Usage, e.to_string())
            .with_hint("`runbook runs` lists the runs in the journal"),
        JournalError::AmbiguousRun { .. } => Error::new(ExitCode::Usage, e.to_string())
            .with_hint("give more of the id, enough to name one run"),
        e => Error::new(ExitCode::Internal, "cannot read the journal").with_source(e),
    }
}

/// An age: a duration (`30s`, `2h`) or days and weeks (`90d`, `2w`, a day
/// being 24 hours).
fn age(flag: &str, value: &str) -> Result<std::time::Duration, Error> {
    crate::duration::parse_days(value).map_err(|_| {
        Error::usage(format!(
            "{flag}: `{value}` is not a duration (e.g. 12h, 7d, 90d)"
        ))
    })
}

/// Parses `--since`: a duration back from now, or a timestamp.
fn since(value: &str) -> Result<jiff::Timestamp, Error> {
    if let Ok(t) = value.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let back = age("--since", value).map_err(|_| {
        Error::usage(format!(
            "--since: `{value}` is neither a duration (e.g. 24h, 7d) nor a timestamp (e.g. 2026-11-01T00:00:00Z)"
        ))
    })?;
    jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::try_from(back).unwrap_or(jiff::SignedDuration::MAX))
        .or_else(|_| Ok(jiff::Timestamp::MIN))
}

fn parse_status(value: &str) -> Result<RunStatus, Error> {
    RunStatus::parse(value).ok_or_else(|| {
        Error::usage(format!(
            "--status: `{value}` is not a run status (one of {})",
            RunStatus::ALL.map(RunStatus::as_str).join(", ")
        ))
    })
}

/// A run's header as JSON, as `runs --json` lists it.
fn run_json(r: &RunRow) -> serde_json::Value {
    serde_json::json!({"id": r.id, "name": r.name, "source": r.source, "digest": r.digest, "status": r.status,
        "created_at": r.created_at, "updated_at": r.updated_at, "finished_at": r.finished_at,
        "host": r.holder.host, "operator": r.holder.operator, "target": r.holder.target,
        "last_heartbeat": r.holder.last_heartbeat(), "waiting": crate::run::waiting::waiting_json(r)})
}

impl RunsArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        if let Some(RunsCommand::Prune(prune)) = self.command {
            return prune.exec();
        }
        let status = self.status.as_deref().map(parse_status).transpose()?;
        let since = self.since.as_deref().map(since).transpose()?;
        let journal = self.state.journal()?;
        let mut runs = journal.list_runs().map_err(|e| {
            Error::new(ExitCode::Internal, "cannot read the journal").with_source(e)
        })?;
        let dir = self.state.dir();
        let now = crate::run::journal::now_ms();
        for r in &mut runs {
            r.status = observed_status(&dir, r, now);
        }
        let me = crate::run::approve::who();
        runs.retain(|r| {
            status.is_none_or(|s| r.status == s)
                && self
                    .playbook
                    .as_deref()
                    .is_none_or(|p| r.name == p || r.source == p)
                && since.is_none_or(|t| {
                    r.created_at
                        .parse::<jiff::Timestamp>()
                        .is_ok_and(|c| c >= t)
                })
                && (!self.mine || r.holder.operator.as_deref() == Some(me.as_str()))
        });
        let abandoned = journal.abandoned_runs().unwrap_or_default();
        let mut out = crate::safe_text::SafeWriter::new(std::io::stdout().lock());
        if self.json {
            let rows: Vec<_> = runs
                .iter()
                .map(|r| {
                    let mut row = run_json(r);
                    if let (Some(a), Some(obj)) = (abandoned.get(&r.id), row.as_object_mut()) {
                        obj.insert("abandoned".to_owned(), serde_json::json!(a));
                    }
                    row
                })
                .collect();
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            );
            return Ok(ExitCode::Ok);
        }
        if runs.is_empty() {
            let _ = writeln!(out, "no runs in {}", journal.url());
            return Ok(ExitCode::Ok);
        }
        let _ = writeln!(
            out,
            "{:<24} {:<16} {:<20} {:<16} {:<24} {:<40} PLAYBOOK",
            "RUN", "STATUS", "STARTED", "HOST", "OPERATOR", "TARGET"
        );
        for r in runs {
            let h = &r.holder;
            let started = r.created_at.get(..19).unwrap_or(&r.created_at);
            let _ = writeln!(
                out,
                "{:<24} {:<16} {:<20} {:<16} {:<24} {:<40} {} ({})",
                r.id,
                r.status,
                started,
                h.host.as_deref().unwrap_or("-"),
                h.operator.as_deref().unwrap_or("-"),
                h.target.as_deref().unwrap_or("-"),
                r.name,
                r.source
            );
            if r.status == RunStatus::Interrupted
                && let Some(beat) = h.last_heartbeat()
            {
                let _ = writeln!(out, "{:<24} last heartbeat {beat}", "");
            }
            if let Some(a) = abandoned.get(&r.id) {
                let _ = writeln!(
                    out,
                    "{:<24} abandoned by {} at {}: {}",
                    "", a.by, a.at, a.reason
                );
            }
            if let Some(line) = crate::run::waiting::waiting_line(&r, &journal.url().for_command())
            {
                let _ = writeln!(out, "{:<24} {line}", "");
            }
        }
        Ok(ExitCode::Ok)
    }
}

impl PruneArgs {
    fn exec(self) -> Result<ExitCode, Error> {
        let age = age("--older-than", &self.older_than)?;
        let cutoff = jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::try_from(age).unwrap_or(jiff::SignedDuration::MAX))
            .unwrap_or(jiff::Timestamp::MIN);
        let journal = self.state.journal()?;
        let runs = journal.list_runs().map_err(|e| {
            Error::new(ExitCode::Internal, "cannot read the journal").with_source(e)
        })?;
        let old: Vec<String> = runs
            .iter()
            .filter(|r| r.status.is_finished())
            .filter(|r| {
                r.finished_at
                    .as_deref()
                    .and_then(|f| f.parse::<jiff::Timestamp>().ok())
                    .is_some_and(|f| f < cutoff)
            })
            .map(|r| r.id.clone())
            .collect();
        if !self.dry_run {
            super::runtime()?
                .block_on(journal.delete_runs(&old))
                .map_err(|e| {
                    Error::new(ExitCode::Internal, "cannot prune the journal").with_source(e)
                })?;
        }
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        let mut text = format!("{verb} {} run(s) that ended before {cutoff}\n", old.len());
        for id in &old {
            text.push_str(&format!("  {id}\n"));
        }
        super::out(&text);
        Ok(ExitCode::Ok)
    }
}

impl ShowArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        let journal = self.state.journal()?;
        let mut rec = journal.load_run(&self.run_id).map_err(lookup_error)?;
        rec.run.status =
            observed_status(&self.state.dir(), &rec.run, crate::run::journal::now_ms());
        let notifications = journal
            .events(&rec.run.id)
            .map(|e| crate::run::run_report::notifications(&e))
            .unwrap_or_default();
        let reported = serde_json::from_str::<crate::plan::Plan>(&rec.plan_json)
            .map(|plan| crate::run::run_report::reported(&plan, &rec))
            .unwrap_or_default();
        let abandoned = journal
            .abandoned_runs()
            .unwrap_or_default()
            .remove(&rec.run.id);
        let locks = journal.locks_of(&rec.run.id).unwrap_or_default();
        let mut out = crate::safe_text::SafeWriter::new(std::io::stdout().lock());
        if self.json {
            let mut value = serde_json::json!({
                "id": rec.run.id, "name": rec.run.name, "source": rec.run.source, "digest": rec.run.digest,
                "status": rec.run.status, "created_at": rec.run.created_at, "finished_at": rec.run.finished_at,
                "host": rec.run.holder.host, "operator": rec.run.holder.operator, "target": rec.run.holder.target,
                "last_heartbeat": rec.run.holder.last_heartbeat(),
                "waiting": crate::run::waiting::waiting_json(&rec.run),
                "approvals": rec.approvals.iter().map(|a| serde_json::json!({"step": a.step_id, "verdict": a.verdict.as_str(), "by": a.approved_by, "arn": a.identity.as_ref().map(|i| &i.arn), "account_id": a.identity.as_ref().map(|i| &i.account_id), "identity_request_id": a.identity.as_ref().and_then(|i| i.request_id.as_ref()), "method": a.method, "channel": a.channel.as_str(), "reason": a.reason, "digest": a.digest, "at": a.at})).collect::<Vec<_>>(),
                "steps": rec.steps.iter().map(|s| serde_json::json!({"id": s.step_id, "status": s.status, "items": s.items, "detail": s.detail, "started_at": s.started_at, "finished_at": s.finished_at})).collect::<Vec<_>>(),
                "attempts": rec.attempts.iter().map(|a| serde_json::json!({"step": a.step_id, "item": a.item, "attempt": a.attempt, "kind": a.kind, "action": a.action, "risk": a.risk, "outcome": a.outcome, "error_code": a.error_code, "error_message": a.error_message, "request_id": a.request_id, "http_status": a.http_status, "sent_at": a.sent_at, "finished_at": a.finished_at, "request": serde_json::from_str::<serde_json::Value>(&a.request_json).unwrap_or_default()})).collect::<Vec<_>>(),
                "reported": reported,
                "notifications": notifications,
            });
            if let Some(obj) = value.as_object_mut() {
                if let Some(a) = &abandoned {
                    obj.insert("abandoned".to_owned(), serde_json::json!(a));
                }
                if !locks.is_empty() {
                    obj.insert("locks".to_owned(), serde_json::json!(locks));
                }
            }
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            return Ok(ExitCode::Ok);
        }
        let r = &rec.run;
        let _ = writeln!(out, "run {}: {} ({})", r.id, r.name, r.source);
        let _ = writeln!(
            out,
            "status: {}   started: {}   finished: {}",
            r.status,
            r.created_at,
            r.finished_at.as_deref().unwrap_or("-")
        );
        if let (Some(host), Some(operator)) = (&r.holder.host, &r.holder.operator) {
            let _ = writeln!(
                out,
                "host: {host}   operator: {operator}   last heartbeat: {}",
                r.holder.last_heartbeat().as_deref().unwrap_or("-")
            );
        }
        if let Some(target) = &r.holder.target {
            let _ = writeln!(out, "target: {target}");
        }
        if let Some(a) = &abandoned {
            let _ = writeln!(
                out,
                "abandoned: by {} on {} at {}: {}",
                a.by, a.host, a.at, a.reason
            );
        }
        // Lock rows of an ended run hold nothing (and are gone once it ends).
        if !locks.is_empty() && !r.status.ends_run() {
            let _ = writeln!(
                out,
                "{}",
                if r.status == RunStatus::Interrupted {
                    "locks (lapsed with its lease; a resume takes them again):"
                } else {
                    "locks:"
                }
            );
            for key in &locks {
                let _ = writeln!(out, "  {key}");
            }
        }
        let _ = writeln!(out, "plan digest: {}", r.digest);
        if let Some(line) = crate::run::waiting::waiting_line(r, &journal.url().for_command()) {
            let _ = writeln!(out, "{line}");
        }
        for a in &rec.approvals {
            let _ = writeln!(out, "{}", crate::run::waiting::approval_line(a));
        }
        let _ = writeln!(out, "steps:");
        for s in &rec.steps {
            let units: Vec<_> = rec
                .units
                .iter()
                .filter(|u| u.step_id == s.step_id)
                .collect();
            let done = units
                .iter()
                .filter(|u| u.status == StepStatus::Succeeded)
                .count();
            let calls = rec
                .attempts
                .iter()
                .filter(|a| a.step_id == s.step_id && a.kind == AttemptKind::Call)
                .count();
            let polls = rec
                .attempts
                .iter()
                .filter(|a| a.step_id == s.step_id && a.kind == AttemptKind::Poll)
                .count();
            let checks = rec
                .attempts
                .iter()
                .filter(|a| {
                    a.step_id == s.step_id
                        && matches!(a.kind, AttemptKind::Reconcile | AttemptKind::Precheck)
                })
                .count();
            let items = s
                .items
                .map(|n| format!(" {done}/{n} items"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<24} {:<10}{items}  calls {calls}, polls {polls}, status checks {checks}{}",
                s.step_id,
                s.status,
                s.detail
                    .as_ref()
                    .map(|d| format!("\n      {d}"))
                    .unwrap_or_default()
            );
            for u in units.iter().filter(|u| u.status == StepStatus::Failed) {
                let _ = writeln!(
                    out,
                    "      item {}: {}",
                    unit_label(u).unwrap_or_else(|| u.item.to_string()),
                    u.error.as_deref().unwrap_or("")
                );
            }
        }
        let _ = crate::run::run_report::write_reported(&reported, &mut out);
        if !notifications.is_empty() {
            let _ = writeln!(out, "notifications:");
            for n in &notifications {
                let what = if n.delivered {
                    format!("delivered ({} attempts)", n.attempts)
                } else {
                    format!(
                        "NOT delivered ({} attempts): {}",
                        n.attempts,
                        n.error.as_deref().unwrap_or("")
                    )
                };
                let _ = writeln!(
                    out,
                    "  {} {:<16} {} {}: {what}",
                    n.at, n.about, n.kind, n.target
                );
            }
        }
        if self.attempts {
            // Fan-out items are named by their value: `terminate[FileId=101]`.
            let labels: std::collections::HashMap<(&str, i64), String> = rec
                .units
                .iter()
                .filter_map(|u| Some(((u.step_id.as_str(), u.item), unit_label(u)?)))
                .collect();
            let _ = writeln!(out, "attempts:");
            for a in &rec.attempts {
                let err = a
                    .error_code
                    .as_ref()
                    .map(|c| format!(" {c}: {}", a.error_message.as_deref().unwrap_or("")))
                    .unwrap_or_default();
                let rid = a
                    .request_id
                    .as_ref()
                    .map(|r| format!(" RequestId {r}"))
                    .unwrap_or_default();
                let item = labels
                    .get(&(a.step_id.as_str(), a.item))
                    .map(|l| format!("[{l}]"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {} {}{item} #{} {} {} -> {}{err}{rid}",
                    a.sent_at, a.step_id, a.attempt, a.kind, a.action, a.outcome
                );
            }
        }
        Ok(ExitCode::Ok)
    }
}

/// The label of a fan-out item (`None` for a step without fan-out).
fn unit_label(u: &crate::run::journal::UnitRow) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(u.item_json.as_deref()?).ok()?;
    Some(crate::run::label::item_label(&value))
}
