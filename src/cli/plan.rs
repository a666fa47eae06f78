//! `runbook plan`: show what a run would do, without calling anything.

use std::path::PathBuf;

use crate::cloud::Endpoints;
use crate::error::{Error, ExitCode};
use crate::plan::display::{self, Format};

/// Show what a run would do, without calling anything.
///
/// Prints the steps in the order they would run (levels of steps that can
/// run together), each step's rendered parameters and the exact request it
/// would send (Signature, AccessKeyId and SecurityToken redacted), its wait
/// and retry policy and risk class, the blast radius (how many mutating and
/// irreversible calls), the critical path and the worst-case duration.
/// Values known only at run time show as `<steps.ID.output.PATH>` or `<item>`.
///
///   runbook plan playbooks/dts-di-cutover.yaml --params playbooks/params/dts-di-cutover.yaml
///   runbook plan playbooks/stop-di-job.yaml -p di_job_id=11668 --format markdown
///   runbook plan playbooks/dts-di-cutover.yaml --params p.yaml -o plan.json   # then: runbook run plan.json
///
/// Exit 2 for bad params, 3 for an invalid playbook.
#[derive(Debug, clap::Args)]
pub(crate) struct PlanArgs {
    /// The playbook to plan.
    #[arg(value_name = "PLAYBOOK")]
    playbook: PathBuf,
    /// A param value (repeatable); lists as `ids=1,2,3` or `ids=[1,2,3]`.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// A YAML or JSON file of param values; `-p` overrides it.
    #[arg(long = "params", value_name = "FILE")]
    params_file: Option<PathBuf>,
    /// How to print the plan.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also write the plan as JSON to this file, for `runbook run PLAN.json`
    /// (which refuses it if the playbook or params changed since).
    #[arg(short = 'o', long = "output", value_name = "PLAN.json")]
    output: Option<PathBuf>,
    /// Show requests to PRODUCT going to URL (repeatable), e.g. `dts=http://127.0.0.1:9000`.
    #[arg(long = "endpoint", value_name = "PRODUCT=URL")]
    endpoints: Vec<String>,
    /// Ask the read-only status APIs for each resource's current state and
    /// show which steps would change it (not available yet).
    #[arg(long)]
    refresh: bool,
}

/// Parses one `-p KEY=VALUE`.
pub(crate) fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, found `{s}`")),
    }
}

impl PlanArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        if self.refresh {
            return Err(Error::usage("`plan --refresh` is not available yet")
                .with_hint("run `runbook plan` without --refresh; the plan shows every call that would be sent"));
        }
        let mut endpoints = Endpoints::new();
        for e in &self.endpoints {
            endpoints
                .add_flag(e)
                .map_err(|err| Error::usage(err.to_string()))?;
        }
        let plan = crate::plan::load_and_build(
            &self.playbook,
            &self.params,
            self.params_file.as_deref(),
            &endpoints,
        )?;
        if let Some(out) = &self.output {
            std::fs::write(out, display::json(&plan)).map_err(|e| {
                Error::new(
                    ExitCode::Internal,
                    format!("cannot write plan to `{}`", out.display()),
                )
                .with_source(e)
            })?;
            eprintln!("wrote plan to {} (digest {})", out.display(), plan.digest);
        }
        print!("{}", display::render(&plan, self.format));
        Ok(ExitCode::Ok)
    }
}
