//! The command line: clap derive, one file per subcommand, each with an
//! `Args` struct whose doc comments are the help text and an `exec` that
//! returns the exit code. Errors are printed here, exactly once.

mod approvals;
mod checks;
mod decide;
#[cfg(test)]
mod deploy;
mod graph;
mod interrupt;
mod plan;
mod preapprove;
mod report;
mod run;
mod runs;
mod schema;
mod sim;
mod target;
mod validate;

use crate::cloud::signer::SignatureVersion;
use clap::{Parser, Subcommand};

use crate::error::{Error, ExitCode};

/// Run YAML playbooks of Alibaba Cloud control-plane steps as a DAG.
#[derive(Debug, Parser)]
#[command(name = "runbook", version, about, max_term_width = 100, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

const AFTER_HELP: &str = "\
Start with a rehearsal against the built-in simulator (no cloud account needed):
  runbook validate playbooks/*.yaml
  runbook plan playbooks/dts-di-cutover.yaml --params playbooks/params/dts-di-cutover.yaml
  runbook run  playbooks/dts-di-cutover.yaml --params playbooks/params/dts-di-cutover.yaml --sim --yes

Exit codes: 0 ok, 1 a step failed, 2 usage, 3 invalid playbook, 4 API or credentials error,
5 cancelled by Ctrl-C or SIGTERM, or the change window closed (resumable), 6 refused
(approval, lock, stale plan, rehearsal, outside the change window) or rejected, 7 waiting
for an approval from elsewhere (--detach; resumable once approved), 10 internal (journal).";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check playbooks and report every error with file:line:col (exit 0 or 3).
    Validate(validate::ValidateArgs),
    /// Show what a run would do, without calling anything that changes state.
    Plan(plan::PlanArgs),
    /// Run a playbook (or a saved plan) and journal every step.
    Run(run::RunArgs),
    /// Continue an interrupted or failed run from its journal.
    Resume(run::ResumeArgs),
    /// List the runs in the journal.
    Runs(runs::RunsArgs),
    /// Show one run from the journal, step by step.
    Show(runs::ShowArgs),
    /// Ask a running run, on any host, to stop (through the journal).
    Cancel(runs::CancelArgs),
    /// End a dead or parked run for good and release its resource locks (journaled).
    Abandon(runs::AbandonArgs),
    /// Approve a run that waits for an approval from elsewhere (any host),
    /// or a saved plan ahead of its scheduled run (`--plan PLAN.json --expires 7d`).
    Approve(decide::ApproveArgs),
    /// Reject a run that waits for an approval: it ends `rejected`.
    Reject(decide::RejectArgs),
    /// Write the report of a run for the change ticket (Markdown, JSON or HTML).
    Report(report::ReportArgs),
    /// Print the step graph as Graphviz dot or Mermaid.
    Graph(graph::GraphArgs),
    /// Print the JSON Schema of the playbook language.
    Schema(schema::SchemaArgs),
    /// Start the local simulator of the DataWorks and DTS APIs.
    Sim(sim::SimArgs),
}

/// Parses the command line, runs the subcommand, prints any error once and
/// returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    init_tracing();
    match exec(cli.command) {
        Ok(code) => code.code(),
        Err(e) => {
            let _ = e.render(&mut crate::safe_text::SafeWriter::new(
                std::io::stderr().lock(),
            ));
            e.exit.code()
        }
    }
}

fn exec(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Validate(args) => args.exec(),
        Command::Plan(args) => args.exec(),
        Command::Run(args) => args.exec(),
        Command::Resume(args) => args.exec(),
        Command::Runs(args) => args.exec(),
        Command::Show(args) => args.exec(),
        Command::Cancel(args) => args.exec(),
        Command::Abandon(args) => args.exec(),
        Command::Approve(args) => args.exec(),
        Command::Reject(args) => args.exec(),
        Command::Report(args) => args.exec(),
        Command::Graph(args) => args.exec(),
        Command::Schema(args) => args.exec(),
        Command::Sim(args) => args.exec(),
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings only).
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::safe_text::SafeWriter::new(std::io::stderr()))
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

/// Writes to stdout. A closed or full stdout (`| head`, `> /dev/full`) is
/// not an error worth a panic: the output is simply not wanted any more.
pub(crate) fn out(text: &str) {
    use std::io::Write as _;
    let mut stdout = crate::safe_text::SafeWriter::new(std::io::stdout().lock());
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// A tokio runtime for subcommands that do I/O.
/// The environment variable that sets the default of `--signature`.
pub(crate) const SIGNATURE_ENV: &str = "RUNBOOK_SIGNATURE";

/// Reads a `--signature` value (`v1` or `v3`).
pub(crate) fn parse_signature(s: &str) -> Result<SignatureVersion, String> {
    s.parse::<SignatureVersion>().map_err(|e| e.to_string())
}

/// The signature asked for: `--signature`, else `RUNBOOK_SIGNATURE`, else
/// none (the playbook's `defaults.signature`, else V1, decides).
pub(crate) fn requested_signature(
    flag: Option<SignatureVersion>,
) -> Result<Option<SignatureVersion>, Error> {
    if flag.is_some() {
        return Ok(flag);
    }
    match std::env::var(SIGNATURE_ENV) {
        Ok(v) if !v.trim().is_empty() => v
            .parse::<SignatureVersion>()
            .map(Some)
            .map_err(|e| Error::usage(format!("{SIGNATURE_ENV}: {e}"))),
        _ => Ok(None),
    }
}

/// Refuses a `--signature` that differs from the one a plan was made with
/// (a saved plan, a run's journaled plan): the signature is part of the
/// plan. `RUNBOOK_SIGNATURE` is only a default and does not apply.
pub(crate) fn check_plan_signature(
    flag: Option<SignatureVersion>,
    plan: &crate::plan::Plan,
    what: &str,
) -> Result<(), Error> {
    match flag {
        Some(asked) if asked != plan.signature => Err(Error::usage(format!(
            "--signature {asked}: {what} signs with {}, which is part of its plan",
            plan.signature
        ))
        .with_hint(format!(
            "drop --signature (it keeps {}), or plan again with --signature {asked}",
            plan.signature
        ))),
        _ => Ok(()),
    }
}

/// The region for steps the playbook names none, as the environment and
/// the aliyun CLI profile (`--profile`, else `ALIBABA_CLOUD_PROFILE`, else
/// the current one) give it now.
pub(crate) fn default_region(profile: Option<&str>) -> crate::cloud::region::RegionLookup {
    crate::cloud::region::default_region(profile, &|name| std::env::var(name).ok())
}

/// Says so on stderr when the default region found now is not the one
/// `plan` was made with (which is the one used).
pub(crate) fn note_default_region(plan: &crate::plan::Plan, profile: Option<&str>) {
    if plan.default_region.is_some()
        && let Some(note) = plan.default_region_note(&default_region(profile))
    {
        eprintln!("note: {}", crate::safe_text::escape(&note));
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Error::new(ExitCode::Internal, "failed to start the async runtime").with_source(e)
        })
}
