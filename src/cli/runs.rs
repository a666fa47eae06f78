//! `runbook runs` and `runbook show`: read the journal.

use std::io::Write;

use super::run::StateArgs;
use crate::error::{Error, ExitCode};
use crate::run::lock::observed_status;
use crate::run::{AttemptKind, StepStatus};

/// List the runs in the journal, newest first.
#[derive(Debug, clap::Args)]
pub(crate) struct RunsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

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

impl RunsArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        let journal = self.state.journal()?;
        let mut runs = journal.list_runs().map_err(|e| {
            Error::new(ExitCode::Internal, "cannot read the journal").with_source(e)
        })?;
        let dir = self.state.dir();
        for r in &mut runs {
            r.status = observed_status(&dir, r);
        }
        let mut out = crate::safe_text::SafeWriter::new(std::io::stdout().lock());
        if self.json {
            let rows: Vec<_> = runs
                .iter()
                .map(|r| {
                    serde_json::json!({"id": r.id, "name": r.name, "source": r.source, "digest": r.digest, "status": r.status,
                        "created_at": r.created_at, "updated_at": r.updated_at, "finished_at": r.finished_at})
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
            "{:<24} {:<16} {:<26} PLAYBOOK",
            "RUN", "STATUS", "STARTED"
        );
        for r in runs {
            let _ = writeln!(
                out,
                "{:<24} {:<16} {:<26} {} ({})",
                r.id, r.status, r.created_at, r.name, r.source
            );
        }
        Ok(ExitCode::Ok)
    }
}

impl ShowArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        let journal = self.state.journal()?;
        let mut rec = journal.load_run(&self.run_id).map_err(lookup_error)?;
        rec.run.status = observed_status(&self.state.dir(), &rec.run);
        let reported = serde_json::from_str::<crate::plan::Plan>(&rec.plan_json)
            .map(|plan| crate::run::run_report::reported(&plan, &rec))
            .unwrap_or_default();
        let mut out = crate::safe_text::SafeWriter::new(std::io::stdout().lock());
        if self.json {
            let value = serde_json::json!({
                "id": rec.run.id, "name": rec.run.name, "source": rec.run.source, "digest": rec.run.digest,
                "status": rec.run.status, "created_at": rec.run.created_at, "finished_at": rec.run.finished_at,
                "approvals": rec.approvals.iter().map(|a| serde_json::json!({"step": a.step_id, "by": a.approved_by, "method": a.method, "digest": a.digest, "at": a.at})).collect::<Vec<_>>(),
                "steps": rec.steps.iter().map(|s| serde_json::json!({"id": s.step_id, "status": s.status, "items": s.items, "detail": s.detail, "started_at": s.started_at, "finished_at": s.finished_at})).collect::<Vec<_>>(),
                "attempts": rec.attempts.iter().map(|a| serde_json::json!({"step": a.step_id, "item": a.item, "attempt": a.attempt, "kind": a.kind, "action": a.action, "risk": a.risk, "outcome": a.outcome, "error_code": a.error_code, "error_message": a.error_message, "request_id": a.request_id, "http_status": a.http_status, "sent_at": a.sent_at, "finished_at": a.finished_at, "request": serde_json::from_str::<serde_json::Value>(&a.request_json).unwrap_or_default()})).collect::<Vec<_>>(),
                "reported": reported,
            });
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
        let _ = writeln!(out, "plan digest: {}", r.digest);
        for a in &rec.approvals {
            let what = a
                .step_id
                .as_deref()
                .map_or_else(|| "plan".to_owned(), |s| format!("step `{s}`"));
            let _ = writeln!(
                out,
                "approved: {what} by {} via {} at {} (digest {})",
                a.approved_by,
                a.method,
                a.at,
                &a.digest[..a.digest.len().min(12)]
            );
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
