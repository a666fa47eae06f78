//! `runbook report`: the report of one run, for the change ticket.

use super::run::StateArgs;
use crate::error::{Error, ExitCode};
use crate::plan::Plan;
use crate::run::lock::observed_status;
use crate::run::run_report::{self, RunReport};

/// Format of `runbook report`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReportFormat {
    /// CommonMark with GFM tables: paste it into the change ticket.
    Markdown,
    /// The same facts as JSON, for tools.
    Json,
    /// One standalone HTML page.
    Html,
}

/// Write the report of a run for the change ticket: what was run against
/// what, who approved it, every step and fan-out item with what it observed,
/// the RequestId of every mutating call, the blast radius planned and
/// actual, compensations and errors.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
  runbook report RUN_ID > report.md            # Markdown for the change ticket
  runbook report RUN_ID --format json | jq .errors
  runbook report RUN_ID --format html > report.html

The report is built from the journal alone: any host that reads the journal can write it, at any
time after the run. Values a step lists under `report:` appear as a table of their own.")]
pub(crate) struct ReportArgs {
    /// The run id (or a unique prefix), from `runbook runs`.
    #[arg(value_parser = super::runs::run_id_arg)]
    run_id: String,
    /// `markdown`, `json` or `html`.
    #[arg(long, value_enum, default_value = "markdown")]
    format: ReportFormat,
    #[command(flatten)]
    state: StateArgs,
}

impl ReportArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        let journal = self.state.journal()?;
        let mut record = journal
            .load_run(&self.run_id)
            .map_err(super::runs::lookup_error)?;
        record.run.status = observed_status(
            &self.state.dir(),
            &record.run,
            crate::run::journal::now_ms(),
        );
        let plan: Plan = serde_json::from_str(&record.plan_json).map_err(|e| {
            Error::new(
                ExitCode::Internal,
                format!("the plan of run {} cannot be read back", record.run.id),
            )
            .with_source(e)
        })?;
        let events = journal.events(&record.run.id).map_err(|e| {
            Error::new(ExitCode::Internal, "cannot read the journal").with_source(e)
        })?;
        let report = RunReport::build(&record, &plan, &events);
        let text = match self.format {
            ReportFormat::Markdown => run_report::markdown(&report),
            ReportFormat::Json => report.json() + "\n",
            ReportFormat::Html => run_report::html(&report),
        };
        super::out(&text);
        Ok(ExitCode::Ok)
    }
}
