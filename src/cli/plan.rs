//! `runbook plan`: show what a run would do, without calling anything.

use std::path::PathBuf;

use crate::cloud::Endpoints;
use crate::error::{Error, ExitCode};
use crate::plan::display::{self, Format};

const PLAN_HELP: &str = "\
Prints the steps in the order they would run (levels of steps that can run together), each
step's rendered parameters and the exact request it would send (Signature, AccessKeyId and
SecurityToken redacted; with --signature v3 its headers, the Authorization credential and
signature redacted), its wait and retry policy and risk class, the blast radius (how many
mutating and irreversible calls), the critical path and the worst-case duration. Values known
only at run time show as `<steps.ID.output.PATH>` or `<item>`.

Examples:
  runbook plan playbooks/dts-di-cutover.yaml --params playbooks/params/dts-di-cutover.yaml
  runbook plan playbooks/stop-di-job.yaml -p di_job_id=11668 --format markdown
  runbook plan playbooks/stop-di-job.yaml -p di_job_id=11668 --signature v3   # the V3 headers each call sends
  runbook plan playbooks/dts-di-cutover.yaml --params p.yaml -o plan.json   # then: runbook run plan.json
  runbook plan playbooks/dts-di-cutover.yaml --params p.yaml --refresh       # what would change, what is a no-op
  runbook plan playbooks/dts-di-cutover.yaml --params p.yaml --refresh -o plan.json   # keep the states read: `run` checks them for drift

Exit 2 for bad params, 3 for an invalid playbook, 4 when --refresh finds no credentials.";

/// Show what a run would do, without calling anything that changes state.
#[derive(Debug, clap::Args)]
#[command(after_long_help = PLAN_HELP)]
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
    /// (which rebuilds it from the playbook, found relative to this file,
    /// and refuses any difference). With --refresh it keeps the states read.
    #[arg(short = 'o', long = "output", value_name = "PLAN.json")]
    output: Option<PathBuf>,
    /// With `--refresh`: send PRODUCT's status reads to URL (repeatable),
    /// e.g. `dts=http://127.0.0.1:9000`. PRODUCT must be one the playbook calls.
    #[arg(
        long = "endpoint",
        value_name = "PRODUCT=URL",
        requires = "refresh",
        conflicts_with = "sim"
    )]
    endpoints: Vec<String>,
    /// Also read each resource's current state through the read-only status
    /// APIs and show which mutating steps would change it and which would be
    /// no-ops. Only calls typed `read` are sent. Signs with the env vars or
    /// `--profile`; `--sim` reads from a fresh simulator instead.
    #[arg(long)]
    refresh: bool,
    /// Profile of ~/.aliyun/config.json: its `region_id` is the region of
    /// steps the playbook names none (after $ALIBABA_CLOUD_REGION_ID), and
    /// `--refresh` signs with it. Default: $ALIBABA_CLOUD_PROFILE, else the
    /// file's current profile.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// With `--refresh`: read from the built-in simulator (every resource
    /// running) instead of the cloud.
    #[arg(long, requires = "refresh")]
    sim: bool,
    /// How calls are signed: `v1` (HMAC-SHA1, the default) or `v3`
    /// (ACS3-HMAC-SHA256, as Alibaba's current SDKs sign). Default:
    /// $RUNBOOK_SIGNATURE, else the playbook's `defaults.signature`, else v1.
    /// Part of the plan and its digest: the plan shows each request as it
    /// would be sent with it (V3: its headers, the credential and signature
    /// redacted), and `--refresh` signs with it.
    #[arg(long, value_name = "v1|v3", value_parser = super::parse_signature)]
    signature: Option<crate::cloud::signer::SignatureVersion>,
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
        let mut endpoints = Endpoints::new();
        for e in &self.endpoints {
            endpoints
                .add_flag(e)
                .map_err(|err| Error::usage(err.to_string()))?;
        }
        let options = crate::plan::BuildOptions::default()
            .signed(super::requested_signature(self.signature)?)
            .default_region(super::default_region(self.profile.as_deref()));
        let mut plan = crate::plan::load_and_build_with(
            &self.playbook,
            &self.params,
            self.params_file.as_deref(),
            &options,
        )?;
        endpoints
            .check_products(plan.products())
            .map_err(Error::usage)?;
        if self.refresh {
            plan.observations = Some(self.observe(&plan, &endpoints)?);
        }
        if let Some(out) = &self.output {
            // The playbook is found from the plan file's directory, wherever
            // `run PLAN.json` is started (`source` is not in the digest).
            let dir = match out.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => std::path::Path::new("."),
            };
            let mut saved = plan.clone();
            saved.source = crate::plan::integrity::relative_to(&self.playbook, dir)
                .to_string_lossy()
                .into_owned();
            std::fs::write(out, display::json(&saved)).map_err(|e| {
                Error::new(
                    ExitCode::Internal,
                    format!("cannot write plan to `{}`", out.display()),
                )
                .with_source(e)
            })?;
            eprintln!(
                "wrote plan to {} (digest {})",
                crate::safe_text::escape(&out.display().to_string()),
                plan.digest
            );
        }
        super::out(&display::render_at(
            &plan,
            self.format,
            Some(jiff::Timestamp::now()),
        ));
        Ok(ExitCode::Ok)
    }

    /// Sends the read-only status calls of `--refresh`.
    fn observe(
        &self,
        plan: &crate::plan::Plan,
        endpoints: &Endpoints,
    ) -> Result<Vec<crate::plan::refresh::Observation>, Error> {
        use crate::cloud::client::ClientOptions;
        let rt = super::runtime()?;
        rt.block_on(async {
            let (client, sim) = super::target::connect(
                self.sim,
                self.profile.as_deref(),
                endpoints.clone(),
                ClientOptions::default(),
                |_| {},
            )
            .await?;
            let client = client.signing_with(plan.signature);
            let observations = crate::plan::refresh::refresh(plan, &client).await;
            if let Some(sim) = sim {
                let _ = sim.shutdown().await;
            }
            Ok(observations)
        })
    }
}
