//! Renders run events for people and machines: a live terminal view
//! (indicatif, one line per step with its state, attempts, last polled value
//! and elapsed time), plain lines when stderr is not a terminal, JSON lines
//! for `--output json`, and the final summary. The report of a finished
//! run, for a change ticket, is [`super::run_report`].

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::{ItemRef, Outcome, RunEvent, RunSummary};
use crate::safe_text::{SafeWriter, escape};

/// How events are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportMode {
    /// Live progress on a terminal (stderr).
    Live,
    /// One plain line per notable event (stderr).
    Plain,
    /// One JSON object per event (stdout).
    Json,
}

/// Consumes events until the channel closes.
pub async fn report(mode: ReportMode, mut rx: UnboundedReceiver<RunEvent>, multi: MultiProgress) {
    let start = Instant::now();
    let mut live = Live::new(multi);
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    while let Some(event) = rx.recv().await {
        match mode {
            ReportMode::Json => {
                if let Ok(line) = serde_json::to_string(&event) {
                    let _ = writeln!(SafeWriter::new(stdout.lock()), "{line}");
                }
            }
            ReportMode::Plain => {
                if let Some(line) = plain_line(&event) {
                    // One write per line: stderr is unbuffered, and a
                    // formatted write is a system call per piece.
                    let line = format!("[{:>7}] {line}\n", secs(start.elapsed()));
                    let _ = SafeWriter::new(stderr.lock()).write_all(line.as_bytes());
                }
            }
            ReportMode::Live => live.apply(&event),
        }
    }
    live.finish();
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn ms(v: u64) -> String {
    secs(Duration::from_millis(v))
}

/// `[label]` of a fan-out item (empty for a step without fan-out).
fn item(i: Option<&ItemRef>) -> String {
    i.map(|i| format!("[{}]", i.label)).unwrap_or_default()
}

/// `[label] ` before a live-view message about one item.
fn prefix(i: Option<&ItemRef>) -> String {
    i.map(|i| format!("[{}] ", i.label)).unwrap_or_default()
}

/// The plain-text line for an event, if it is worth a line.
pub fn plain_line(event: &RunEvent) -> Option<String> {
    Some(match event {
        RunEvent::RunStarted {
            run_id,
            name,
            steps,
            resumed,
            ..
        } => {
            let verb = if *resumed { "resuming" } else { "starting" };
            format!("{verb} run {run_id} of `{name}` ({steps} steps)")
        }
        RunEvent::StepStarted {
            step,
            items: Some(n),
        } => format!("{step}: started ({n} items)"),
        RunEvent::StepStarted { step, items: None } => format!("{step}: started"),
        RunEvent::CallSent { .. }
        | RunEvent::ItemFinished {
            outcome: Outcome::Succeeded,
            ..
        } => return None,
        RunEvent::AttemptFailed {
            step,
            item: i,
            attempt,
            action,
            code,
            message,
            request_id,
            next_delay_ms,
            ..
        } => {
            let rid = request_id
                .as_ref()
                .map(|r| format!(", RequestId {r}"))
                .unwrap_or_default();
            let next = next_delay_ms.map_or_else(
                || "giving up".to_owned(),
                |d| format!("retrying in {}", ms(d)),
            );
            format!(
                "{step}{}: {action} attempt {attempt} failed: {code}: {message}{rid}; {next}",
                item(i.as_ref())
            )
        }
        RunEvent::Reconciled {
            step,
            item: i,
            action,
            observed,
            took_effect,
        } => {
            let verdict = if *took_effect {
                "it took effect, not sending it again"
            } else {
                "it did not take effect, sending it again"
            };
            format!(
                "{step}{}: outcome of {action} was unknown; status is {observed}: {verdict}",
                item(i.as_ref())
            )
        }
        RunEvent::Polled {
            step,
            item: i,
            poll,
            value,
            elapsed_ms,
        } => {
            format!(
                "{step}{}: poll {poll}: {value} after {}",
                item(i.as_ref()),
                ms(*elapsed_ms)
            )
        }
        RunEvent::Approval { step, by, approved } => {
            let what = step
                .as_deref()
                .map_or_else(|| "the plan".to_owned(), |s| format!("step `{s}`"));
            if *approved {
                format!("{what} approved by {by}")
            } else {
                format!("{what} not approved")
            }
        }
        RunEvent::WaitingApproval {
            step,
            until,
            command,
            detached,
            ..
        } => {
            let what = step
                .as_deref()
                .map_or_else(|| "the plan".to_owned(), |s| format!("step `{s}`"));
            let until = until
                .as_ref()
                .map(|t| format!(" until {t}"))
                .unwrap_or_default();
            let how = if *detached {
                "left parked in the journal (--detach); once approved, `runbook resume` continues it"
            } else {
                "this process waits, reading the journal"
            };
            format!("waiting for an approval of {what}{until} from elsewhere: {command} ({how})")
        }
        RunEvent::Drift {
            step,
            item: i,
            resource,
            reviewed,
            current,
            allowed,
        } => {
            let i = i.as_ref().map(|i| format!("[{i}]")).unwrap_or_default();
            let then = if *allowed {
                "going on (--allow-drift)"
            } else {
                "not starting the step"
            };
            format!(
                "{step}{i}: drift: {resource} was reviewed as {reviewed}, is now {current}; {then}"
            )
        }
        RunEvent::WindowClosed {
            at,
            window,
            next_opens,
        } => {
            let next = next_opens
                .as_ref()
                .map(|t| format!("; it next opens {t}"))
                .unwrap_or_default();
            format!(
                "the change window ({window}) closed at {at}: no new change starts; calls in flight finish, then the run stops (window_closed){next}"
            )
        }
        RunEvent::ItemFinished {
            step,
            item: i,
            outcome,
            error,
        } => {
            format!(
                "{step}[{}]: {}{}",
                i.label,
                outcome.as_str(),
                error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
            )
        }
        RunEvent::StepFinished {
            step,
            outcome,
            elapsed_ms,
            detail,
        } => {
            let detail = detail
                .as_ref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            format!(
                "{step}: {} in {}{detail}",
                outcome.as_str(),
                ms(*elapsed_ms)
            )
        }
        RunEvent::RunFinished {
            run_id,
            outcome,
            elapsed_ms,
        } => {
            format!("run {run_id} {} in {}", outcome.as_str(), ms(*elapsed_ms))
        }
        RunEvent::Notified { .. } => notified_line(event)?,
        RunEvent::Abandoned { by, host, reason } => {
            format!("abandoned by {by} on {host}: {reason}; its resource locks were released")
        }
    })
}

/// `notified: failed via webhook http://host/hook (attempts 2)`, or why not.
pub fn notified_line(event: &RunEvent) -> Option<String> {
    let RunEvent::Notified {
        about,
        kind,
        target,
        delivered,
        attempts,
        error,
    } = event
    else {
        return None;
    };
    let tries = if *attempts == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{attempts} attempts")
    };
    Some(if *delivered {
        format!("notified `{about}` via {kind} {target} ({tries})")
    } else {
        format!(
            "notification `{about}` via {kind} {target} not delivered ({tries}): {}",
            error.as_deref().unwrap_or("unknown error")
        )
    })
}

/// The live view: a line per step.
struct Live {
    multi: MultiProgress,
    bars: HashMap<String, (ProgressBar, Instant)>,
    attempts: HashMap<String, u32>,
}

impl Live {
    fn new(multi: MultiProgress) -> Live {
        Live {
            multi,
            bars: HashMap::new(),
            attempts: HashMap::new(),
        }
    }

    fn apply(&mut self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted { .. } | RunEvent::RunFinished { .. } => {
                if let Some(line) = plain_line(event) {
                    let _ = self.multi.println(escape(&line));
                }
            }
            RunEvent::StepStarted { step, items } => {
                let bar = match items {
                    Some(n) => {
                        let bar = ProgressBar::new(*n as u64);
                        bar.set_style(
                            ProgressStyle::with_template("{spinner:.cyan} {prefix:<24} {bar:20.cyan/blue} {pos}/{len}  {msg}  {elapsed}")
                                .unwrap_or_else(|_| ProgressStyle::default_bar()),
                        );
                        bar
                    }
                    None => {
                        let bar = ProgressBar::new_spinner();
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{spinner:.cyan} {prefix:<24} {msg}  {elapsed}",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        bar
                    }
                };
                let bar = self.multi.add(bar);
                bar.set_prefix(step.clone());
                bar.set_message("running");
                bar.enable_steady_tick(Duration::from_millis(120));
                self.bars.insert(step.clone(), (bar, Instant::now()));
            }
            RunEvent::CallSent {
                step,
                item: i,
                attempt,
                action,
            } => {
                let a = self.attempts.entry(step.clone()).or_default();
                *a = (*a).max(*attempt);
                if let Some((bar, _)) = self.bars.get(step)
                    && *attempt > 1
                {
                    bar.set_message(
                        escape(&format!(
                            "{}{action}: attempt {attempt}",
                            prefix(i.as_ref())
                        ))
                        .into_owned(),
                    );
                }
            }
            RunEvent::AttemptFailed {
                step,
                item: i,
                code,
                next_delay_ms,
                ..
            } => {
                if let Some((bar, _)) = self.bars.get(step) {
                    let next = next_delay_ms
                        .map_or_else(|| "giving up".to_owned(), |d| format!("retry in {}", ms(d)));
                    bar.set_message(
                        escape(&format!("{}{code}; {next}", prefix(i.as_ref()))).into_owned(),
                    );
                }
            }
            RunEvent::Reconciled { .. }
            | RunEvent::Approval { .. }
            | RunEvent::WaitingApproval { .. }
            | RunEvent::Drift { .. }
            | RunEvent::WindowClosed { .. }
            | RunEvent::Abandoned { .. }
            | RunEvent::Notified { .. } => {
                if let Some(line) = plain_line(event) {
                    let _ = self.multi.println(escape(&line));
                }
            }
            RunEvent::Polled {
                step,
                item: i,
                poll,
                value,
                ..
            } => {
                if let Some((bar, _)) = self.bars.get(step) {
                    bar.set_message(
                        escape(&format!("{}poll {poll}: {value}", prefix(i.as_ref()))).into_owned(),
                    );
                }
            }
            RunEvent::ItemFinished { step, outcome, .. } => {
                if let Some((bar, _)) = self.bars.get(step) {
                    bar.inc(1);
                }
                if *outcome == Outcome::Failed
                    && let Some(line) = plain_line(event)
                {
                    let _ = self.multi.println(escape(&line));
                }
            }
            RunEvent::StepFinished {
                step,
                outcome,
                elapsed_ms,
                detail,
            } => {
                let mark = match outcome {
                    Outcome::Succeeded => "✓",
                    Outcome::Skipped => "-",
                    Outcome::Failed => "✗",
                    Outcome::Cancelled => "!",
                };
                let detail = detail
                    .as_ref()
                    .map(|d| format!("  {d}"))
                    .unwrap_or_default();
                let line = format!(
                    "{mark} {step:<24} {} in {}{detail}",
                    outcome.as_str(),
                    ms(*elapsed_ms)
                );
                if let Some((bar, _)) = self.bars.remove(step) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                let _ = self.multi.println(escape(&line));
            }
        }
    }

    fn finish(&mut self) {
        for (_, (bar, _)) in self.bars.drain() {
            bar.finish_and_clear();
        }
    }
}

/// A hidden `MultiProgress` (for plain and JSON modes).
pub fn hidden() -> MultiProgress {
    MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
}

/// Writes the final summary: one line per step, then the verdict.
pub fn summary(summary: &RunSummary, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(out, "run {}: {}", summary.run_id, summary.outcome.as_str())?;
    let width = summary
        .steps
        .iter()
        .map(|s| s.id.len())
        .max()
        .unwrap_or(4)
        .max(4);
    for s in &summary.steps {
        let outcome = s.outcome.map_or("not started", Outcome::as_str);
        let items = s.items.map(|n| format!(" ({n} items)")).unwrap_or_default();
        let time = if s.from_journal {
            "earlier".to_owned()
        } else {
            ms(s.elapsed_ms)
        };
        write!(out, "  {:<width$}  {outcome:<11} {time:>8}{items}", s.id)?;
        if let Some(d) = &s.detail
            && s.outcome != Some(Outcome::Succeeded)
        {
            write!(out, "  {d}")?;
        }
        writeln!(out)?;
    }
    if let Some(why) = &summary.stopped_because {
        writeln!(out, "stopped: {why}")?;
    }
    if summary.time_scale.is_real() {
        writeln!(out, "elapsed: {}", ms(summary.elapsed_ms))?;
    } else {
        writeln!(
            out,
            "elapsed: {} (time compressed {}x: --time-scale {})",
            ms(summary.elapsed_ms),
            summary.time_scale,
            summary.time_scale
        )?;
    }
    Ok(())
}
