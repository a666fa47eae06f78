//! The checks of the `run` and `resume` flags, made before anything is
//! journaled or sent: a flag with a bad value is a usage error (exit 2) that
//! names the flag, never an orphan "running" run nor a value silently ignored.
//!
//! Two passes: [`CheckedFlags::check`] needs only the flags (every value
//! parses, durations are longer than zero) and runs first of all;
//! [`CheckedFlags::check_plan`] needs the plan (an `--approve` names one of
//! its steps, an `--endpoint` or a `--qps` a product it calls) and runs
//! before the journal.

use std::collections::BTreeSet;
use std::time::Duration;

use super::run::{ExecArgs, StateArgs};
use super::target::{TargetArgs, parse_duration};
use crate::error::Error;
use crate::plan::{Plan, StepKind};
use crate::run::ratelimit;

/// Values of the flags that are parsed once checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckedFlags {
    /// `--run-timeout`.
    pub(crate) run_timeout: Option<Duration>,
    /// `--not-before` and `--not-after`.
    pub(crate) window: crate::window::Bounds,
    /// `--lease`.
    pub(crate) lease: Duration,
    /// `--journal-patience`: always shorter than the lease.
    pub(crate) journal_patience: Duration,
    /// `--approval-timeout`.
    pub(crate) approval_timeout: Option<Duration>,
}

impl CheckedFlags {
    /// Checks every flag whose value stands on its own.
    pub(crate) fn check(
        target: &TargetArgs,
        exec: &ExecArgs,
        state: &StateArgs,
    ) -> Result<CheckedFlags, Error> {
        positive_duration("--request-timeout", &target.request_timeout)?;
        positive_duration("--connect-timeout", &target.connect_timeout)?;
        let run_timeout = exec
            .run_timeout
            .as_deref()
            .map(|v| positive_duration("--run-timeout", v))
            .transpose()?;
        let approval_timeout = exec
            .approval_timeout
            .as_deref()
            .map(|v| positive_duration("--approval-timeout", v))
            .transpose()?;
        for q in &target.qps {
            ratelimit::parse_limit(q).map_err(|e| Error::usage(format!("--qps: {e}")))?;
        }
        if let Some(spec) = &target.sim_faults {
            spec.parse::<crate::sim::FaultSpec>()
                .map_err(|e| Error::usage(format!("invalid --sim-faults: {e}")))?;
        }
        if let Some(log) = &target.sim_log {
            let dir = log.parent().filter(|d| !d.as_os_str().is_empty());
            if log.as_os_str().is_empty() || log.is_dir() || dir.is_some_and(|d| !d.is_dir()) {
                return Err(Error::usage(format!(
                    "--sim-log `{}` is not a file in an existing directory",
                    log.display()
                )));
            }
        }
        state.journal_url()?;
        if let Some(dir) = &state.state_dir {
            if dir.as_os_str().is_empty() {
                return Err(Error::usage("--state-dir is empty").with_hint(
                    "name the directory of the journal, or leave the flag out for the default",
                ));
            }
            if dir.exists() && !dir.is_dir() {
                return Err(Error::usage(format!(
                    "--state-dir `{}` is not a directory",
                    dir.display()
                )));
            }
        }
        let window = crate::window::Bounds {
            not_before: exec
                .not_before
                .as_deref()
                .map(|v| time("--not-before", v))
                .transpose()?,
            not_after: exec
                .not_after
                .as_deref()
                .map(|v| time("--not-after", v))
                .transpose()?,
        };
        if let (Some(a), Some(b)) = (window.not_before, window.not_after)
            && a >= b
        {
            return Err(Error::usage(format!(
                "--not-after ({b}) is not after --not-before ({a}): the window they leave is empty"
            )));
        }
        let lease = positive_duration("--lease", &exec.lease)?;
        let journal_patience = journal_patience(exec.journal_patience.as_deref(), lease)?;
        Ok(CheckedFlags {
            run_timeout,
            window,
            lease,
            journal_patience,
            approval_timeout,
        })
    }

    /// Checks the flags that name parts of `plan`.
    pub(crate) fn check_plan(
        &self,
        plan: &Plan,
        target: &TargetArgs,
        exec: &ExecArgs,
    ) -> Result<(), Error> {
        let steps: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        for name in &exec.approve {
            if !steps.contains(&name.as_str()) {
                let approve_steps: Vec<&str> = plan
                    .steps
                    .iter()
                    .filter(|s| matches!(s.kind, StepKind::Approve { .. }))
                    .map(|s| s.id.as_str())
                    .collect();
                let hint = crate::playbook::diagnostic::did_you_mean(name, steps.iter().copied())
                    .unwrap_or_else(|| {
                        if approve_steps.is_empty() {
                            format!("`{}` has no `approve` step", plan.name)
                        } else {
                            format!("its `approve` steps: {}", approve_steps.join(", "))
                        }
                    });
                return Err(Error::usage(format!(
                    "--approve `{name}`: `{}` has no step with that id",
                    plan.name
                ))
                .with_hint(hint));
            }
        }
        let mut endpoints = crate::cloud::Endpoints::new();
        for e in &target.endpoints {
            endpoints
                .add_flag(e)
                .map_err(|e| Error::usage(e.to_string()))?;
        }
        endpoints
            .check_products(plan.products())
            .map_err(Error::usage)?;
        let products = plan_products(plan);
        for q in &target.qps {
            let (product, _) = ratelimit::parse_limit(q).map_err(Error::usage)?;
            if !products.contains(&product) {
                let called: Vec<&str> = products.iter().map(String::as_str).collect();
                return Err(Error::usage(format!(
                    "--qps `{q}`: `{}` calls no `{product}` API",
                    plan.name
                ))
                .with_hint(format!("the products it calls: {}", called.join(", "))));
            }
        }
        Ok(())
    }
}

/// The products whose APIs `plan` calls (lower case).
fn plan_products(plan: &Plan) -> BTreeSet<String> {
    plan.products()
        .into_iter()
        .map(str::to_ascii_lowercase)
        .collect()
}

/// A time flag: RFC 3339 with an offset (`2026-12-05T02:00:00+08:00`, `...Z`).
fn time(flag: &str, value: &str) -> Result<jiff::Timestamp, Error> {
    value.trim().parse::<jiff::Timestamp>().map_err(|_| {
        Error::usage(format!("{flag}: `{value}` is not an RFC 3339 time"))
            .with_hint("give a date, a time and an offset, e.g. `2026-12-05T02:00:00+08:00` or `2026-12-04T18:00:00Z`")
    })
}

/// A duration flag that must be longer than zero.
/// `--journal-patience` (or `RUNBOOK_JOURNAL_PATIENCE`), checked against
/// the lease: a run cut off from its journal longer than its lease has lost
/// it (another process may take the run, and its resources, over), so it
/// could not go on anyway. Default: two thirds of the lease, what is surely
/// left of it when an outage starts (the heartbeat renews it every third).
fn journal_patience(value: Option<&str>, lease: Duration) -> Result<Duration, Error> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(lease * 2 / 3);
    };
    let patience = positive_duration("--journal-patience", value)?;
    if patience >= lease {
        return Err(Error::usage(format!(
            "--journal-patience `{value}` is not shorter than --lease ({}): a run cut off from its journal longer than its lease has lost it",
            crate::duration::format(lease)
        ))
        .with_hint(format!(
            "raise --lease too (e.g. --lease {} --journal-patience {value}), or leave --journal-patience out: two thirds of the lease",
            crate::duration::format(patience * 3 / 2 + Duration::from_secs(1))
        )));
    }
    Ok(patience)
}

fn positive_duration(flag: &str, value: &str) -> Result<Duration, Error> {
    let d = parse_duration(value).map_err(|e| Error::usage(format!("{flag}: {}", e.message)))?;
    if d.is_zero() {
        return Err(Error::usage(format!(
            "{flag}: `{value}` must be longer than zero"
        )));
    }
    Ok(d)
}
