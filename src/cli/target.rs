//! Where the calls of `run`, `resume` and `plan --refresh` go: the flags
//! (`--endpoint`, `--sim`, `--profile`, `--qps`, timeouts), the endpoints and
//! signing credentials they give, and the in-process simulator of a
//! rehearsal (started here; its world saved and restored by
//! [`crate::run::world`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cloud::client::{ClientOptions, RpcClient};
use crate::cloud::credentials::Credentials;
use crate::cloud::{CloudApi, Endpoints};
use crate::error::{Error, ExitCode};
use crate::run::launch::TargetChoice;
use crate::run::{RateLimits, TimeScale, ratelimit};

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
    /// How calls are signed: `v1` (HMAC-SHA1, the default) or `v3`
    /// (ACS3-HMAC-SHA256, as Alibaba's current SDKs sign). Default:
    /// $RUNBOOK_SIGNATURE, else the playbook's `defaults.signature`, else v1.
    /// Part of the plan and its digest; a saved plan and `resume` keep the
    /// plan's (a different value is refused).
    #[arg(long, value_name = "v1|v3", value_parser = super::parse_signature)]
    pub(crate) signature: Option<crate::cloud::signer::SignatureVersion>,
    /// Profile of ~/.aliyun/config.json to sign with (default: the env vars
    /// ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET/_SECURITY_TOKEN, else the file's current profile).
    /// Its `region_id` is the region of steps the playbook names none, after
    /// $ALIBABA_CLOUD_REGION_ID (a saved plan and a resume keep the planned one).
    #[arg(long, value_name = "NAME")]
    pub(crate) profile: Option<String>,
    /// Act as this RAM role for the whole run, e.g.
    /// `--role-arn acs:ram::123456789012:role/maintenance`: it is assumed
    /// (STS AssumeRole, refreshed before it expires) with the credentials
    /// found as above. A step's `role_arn` is then assumed from it.
    /// Journaled: a resume keeps it unless given again.
    #[arg(long, value_name = "ARN", value_parser = parse_role_arn)]
    pub(crate) role_arn: Option<String>,
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

impl TargetArgs {
    /// Where these flags send the calls, as the engine's resume policy sees it.
    pub(crate) fn choice(&self) -> TargetChoice {
        TargetChoice {
            endpoints: self.endpoints.clone(),
            sim: self.sim,
            sim_faults: self.sim_faults.clone(),
            profile: self.profile.clone(),
            role_arn: self.role_arn.clone(),
            qps: self.qps.clone(),
            time_scale: self.time_scale,
        }
    }

    /// These flags, sending the calls to `choice` instead.
    pub(crate) fn with_choice(&self, choice: TargetChoice) -> TargetArgs {
        TargetArgs {
            endpoints: choice.endpoints,
            sim: choice.sim,
            sim_faults: choice.sim_faults,
            profile: choice.profile,
            role_arn: choice.role_arn,
            qps: choice.qps,
            time_scale: choice.time_scale,
            ..self.clone()
        }
    }
}

/// The API to call and how.
pub(crate) struct Target {
    pub(crate) api: Arc<dyn CloudApi>,
    /// Fingerprint of the signing AccessKeyId.
    pub(crate) account: Option<String>,
    /// Who the command's credentials act as, verified through STS
    /// `GetCallerIdentity` (`None` when STS could not tell; a plan that
    /// says who must approve then refuses to start).
    pub(crate) identity: Option<crate::run::identity::VerifiedIdentity>,
    pub(crate) limits: RateLimits,
    /// Compressed time (only against the in-process simulator).
    pub(crate) time_scale: TimeScale,
    /// The in-process simulator (`--sim`).
    pub(crate) sim: Option<crate::sim::SimHandle>,
}

impl Target {
    /// Where the calls go, for `runs`: `simulator` or `cloud`, the regions
    /// and the account's fingerprint.
    pub(crate) fn describe(&self, plan: &crate::plan::Plan) -> String {
        let mut regions: Vec<&str> = plan
            .steps
            .iter()
            .map(|s| s.region.as_str())
            .filter(|r| !r.is_empty())
            .collect();
        regions.sort_unstable();
        regions.dedup();
        let mut text = if self.sim.is_some() {
            "simulator"
        } else {
            "cloud"
        }
        .to_owned();
        if !regions.is_empty() {
            text.push(' ');
            text.push_str(&regions.join(","));
        }
        if let Some(account) = &self.account {
            text.push_str(&format!(" account {account}"));
        }
        text
    }

    /// Sets up the client (starting the simulator with `--sim`), signing
    /// every call (STS's included) with `signature`, the plan's.
    pub(crate) async fn connect(
        args: &TargetArgs,
        signature: crate::cloud::signer::SignatureVersion,
    ) -> Result<Target, Error> {
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
        let client = client.signing_with(signature);
        let client = match &args.role_arn {
            Some(role_arn) => client.assuming(role_arn),
            None => client,
        };
        // Credentials that cannot be had stop the run before anything is sent.
        let credentials = client.current_credentials(None).await?;
        // Who the run acts as, verified, for the journal and the approval
        // policy; without STS, the key's fingerprint.
        let verified = client.caller_identity_of(&credentials).await.and_then(|c| {
            crate::run::identity::VerifiedIdentity::of_caller(&c)
                .map_err(|m| crate::cloud::ApiError::new("InvalidResponse", m, None))
        });
        let (account, identity) = match verified {
            Ok(identity) => (fingerprint(&identity.account_id), Some(identity)),
            Err(e) => {
                tracing::warn!(
                    "cannot tell who the credentials ({}) are: STS GetCallerIdentity at {} failed: {e}; \
                     the journal records a fingerprint of the AccessKeyId instead",
                    client.credentials(),
                    client.sts_endpoint()
                );
                (fingerprint(credentials.access_key_id()), None)
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
            identity,
            limits: RateLimits::new(limits),
            time_scale: args.time_scale.filter(|_| args.sim).unwrap_or_default(),
            sim,
        })
    }
}

/// Parses `--role-arn`: `acs:ram::ACCOUNT:role/NAME`.
fn parse_role_arn(s: &str) -> Result<String, String> {
    if crate::cloud::sts::is_role_arn(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a RAM role ARN such as acs:ram::123456789012:role/maintenance"
        ))
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

/// The in-process simulator's world, kept with a rehearsal's journal.
pub(crate) struct SimWorld(pub(crate) crate::sim::Simulator);

impl crate::run::world::World for SimWorld {
    type Mark = crate::sim::WorldMark;
    type Error = crate::sim::WorldError;

    fn save(&self, since: Option<Self::Mark>) -> Option<(String, Self::Mark)> {
        self.0.save_world(since)
    }

    fn restore(&self, json: &str) -> Result<(), Self::Error> {
        self.0.restore_world(json)
    }
}

use crate::cloud::sts::account_fingerprint as fingerprint;

/// A duration flag (`30s`, `2m`, `1h 30m`); a bad one is a usage error.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, Error> {
    crate::duration::parse(s).map_err(|e| Error::usage(e.message.clone()).with_hint(e.hint()))
}
