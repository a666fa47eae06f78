//! `runbook sim`: the local simulator of the DataWorks and DTS APIs as a
//! process. The first line on stdout is the URL it listens on, so scripts can
//! read it; everything else goes to stderr. Ctrl-C (or SIGTERM) stops it
//! after the calls in flight have been answered.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::error::{Error, ExitCode};
use crate::sim::{ConnLimits, Delays, FaultSpec, Fixtures, SimConfig};

const AFTER_HELP: &str = "\
Examples:
  export ALIBABA_CLOUD_ACCESS_KEY_ID=sim ALIBABA_CLOUD_ACCESS_KEY_SECRET=sim-secret
  runbook sim --auto-create -v
  runbook run playbooks/dts-di-cutover.yaml \\
      --endpoint dataworks=http://127.0.0.1:9000 --endpoint dts=http://127.0.0.1:9000 -p ...

  # rehearse the dangerous case: the terminate is applied, the answer is lost
  runbook sim --auto-create --faults 'applied_drop@TerminateDISyncInstance=1#1' --log calls.jsonl

The simulator accepts exactly the key pair it is given; sign with the same
pair (runbook reads the same two variables). Any id works with --auto-create;
without it, only the resources of --fixtures exist.

Fixtures (YAML; every key optional):
  delays:                 # how long each transition takes
    all: 500ms            # every delay at once, then overrides:
    dts_stop: 2s          # StopDtsJob: old status, then Finished
    di_stop: 1s           # StopDISyncInstance: KILLING, then PAUSE
    di_terminate: 1s      # TerminateDISyncInstance: KILLING, then NORUN
    # also dts_suspend, dts_start, di_start, di_job_stop, di_job_start
  dts_jobs:
    - { id: l3m1213ye7l, status: Synchronizing, reverse_status: Synchronizing }
  di_nodes:
    - { project_id: 10000, file_id: 100, name: orders_rt, status: RUN }
  di_jobs:
    - { id: 11668, status: Running }
  di_solutions:
    - { project_id: 10000, file_id: 200, status: success }
  identities:             # STS, the ECS metadata service, a credentials URI
    users: [{ access_key_id: LTAIops, access_key_secret: s, arn: 'acs:ram::1111111111111111:user/ops' }]
    roles: [{ arn: 'acs:ram::2222222222222222:role/maint', trusted: ['acs:ram::1111111111111111:root'] }]
    ecs_role: maint       # served at /latest/meta-data/ram/security-credentials/
    session_lifetime: 20s # issued credentials expire fast (refresh tests)

The same port serves STS 2015-04-01 (AssumeRole, AssumeRoleWithOIDC,
GetCallerIdentity), the ECS metadata service and GET /credentials: point
RUNBOOK_STS_ENDPOINT and RUNBOOK_ECS_METADATA_ENDPOINT at it.

Faults (comma-separated KIND[@ACTION]=VALUE[#N]):
  throttle=0.2        20% answer Throttling.User (429 DataWorks, 400 DTS)
  error=0.05          5% answer 500 InternalError.System (not applied)
  drop=0.02           2% close the connection before the call is applied
  applied_drop=0.05   5% apply the call, then close the connection unanswered
  slow=0.1:2s         10% answer after 2 s
  qps=dataworks:20    at most 20 calls/s to DataWorks, then Throttling.User
  @ACTION limits a rule to one action; #N fires it at most N times.";

/// Start the local simulator of the DataWorks and DTS APIs.
///
/// A real HTTP server on loopback that speaks the RPC protocol of
/// DataWorks (2020-05-18) and DTS (2020-01-01): it checks HMAC-SHA1
/// signatures, timestamps and nonces, keeps DTS tasks, DI real-time nodes and
/// DI jobs with their documented state machines, injects faults on demand and
/// logs every call. Prints its URL as the first line of output.
#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub(crate) struct SimArgs {
    /// Address to listen on (loopback only; port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    listen: SocketAddr,

    /// Resources, initial states and transition delays (YAML; see below).
    #[arg(long, value_name = "FILE")]
    fixtures: Option<PathBuf>,

    /// Faults to inject, e.g. `throttle=0.2,slow=0.1:2s,qps=dts:10` (see below).
    // Kept as text and parsed in `exec`: a parsed spec would make this the
    // one huge variant of `Command`.
    #[arg(long, value_name = "SPEC")]
    faults: Option<String>,

    /// Create any id not seen before as running, on first use.
    #[arg(long)]
    auto_create: bool,

    /// Set every transition delay (overrides the fixtures), e.g. `0s` or `200ms`.
    #[arg(long, value_name = "DURATION", value_parser = parse_delay)]
    delay: Option<std::time::Duration>,

    /// Append every call to FILE as a JSON line (secrets redacted).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,

    /// Seed of the fault dice, for repeatable faults (default: random, printed).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,

    /// AccessKeyId the simulator accepts.
    #[arg(long, env = "ALIBABA_CLOUD_ACCESS_KEY_ID", hide_env_values = true)]
    access_key_id: Option<String>,

    /// AccessKeySecret of that key (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "ALIBABA_CLOUD_ACCESS_KEY_SECRET", hide_env_values = true)]
    access_key_secret: Option<String>,

    /// Print one line per call to stderr.
    #[arg(short, long)]
    verbose: bool,

    /// Most connections open at once (default 512); at the cap, a new
    /// connection closes the one that has waited longest for a request.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,

    /// How long a request may take to arrive whole, from its first byte
    /// (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    header_timeout: Option<std::time::Duration>,

    /// How long a connection may wait for a request with nothing arriving
    /// (default 60s).
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    idle_timeout: Option<std::time::Duration>,
}

fn parse_delay(text: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse(text).map_err(|e| e.to_string())
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let d = parse_delay(text)?;
    if d.is_zero() {
        return Err(format!("invalid duration `{text}`: must be more than 0s"));
    }
    Ok(d)
}

impl SimArgs {
    /// The connection limits: the flags given, the defaults for the rest.
    fn limits(&self) -> ConnLimits {
        let default = ConnLimits::default();
        ConnLimits {
            max_connections: self
                .max_connections
                .map_or(default.max_connections, |n| n as usize),
            header_timeout: self.header_timeout.unwrap_or(default.header_timeout),
            idle_timeout: self.idle_timeout.unwrap_or(default.idle_timeout),
        }
    }

    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        if !self.listen.ip().is_loopback() {
            return Err(Error::usage(format!(
                "refusing to listen on {}: the simulator serves loopback only",
                self.listen
            ))
            .with_hint("use --listen 127.0.0.1:PORT"));
        }
        let (Some(id), Some(secret)) = (self.access_key_id.clone(), self.access_key_secret.clone())
        else {
            return Err(Error::usage("the simulator needs the key pair it should accept").with_hint(
                "set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET (any values; clients sign with the same pair), \
                 or pass --access-key-id and --access-key-secret",
            ));
        };
        let mut fixtures = match &self.fixtures {
            Some(path) => Fixtures::load(path).map_err(|e| Error::usage(e.to_string()))?,
            None => Fixtures::default(),
        };
        if let Some(delay) = self.delay {
            fixtures.delays = Delays::uniform(delay);
        }
        let faults: FaultSpec = match &self.faults {
            Some(text) => text
                .parse()
                .map_err(|e: crate::sim::FaultSpecError| Error::usage(e.to_string()))?,
            None => FaultSpec::default(),
        };
        let seed = self.seed.unwrap_or_else(rand::random);
        let config = SimConfig {
            credentials: vec![(id, secret)],
            fixtures,
            faults,
            auto_create: self.auto_create,
            seed,
            log_path: self.log.clone(),
            echo: self.verbose,
            limits: self.limits(),
            ..SimConfig::default()
        };
        let runtime = super::runtime()?;
        runtime.block_on(self.serve(config))
    }

    async fn serve(self, config: SimConfig) -> Result<ExitCode, Error> {
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|e| {
                Error::usage(format!("cannot listen on {}", self.listen))
                    .with_source(e)
                    .with_hint(
                        "pick another port with --listen 127.0.0.1:PORT (0 for any free port)",
                    )
            })?;
        let summary = format!(
            "{} DTS tasks, {} DI nodes, {} DI jobs, {} DI solutions{}; faults: {}; seed {}",
            config.fixtures.dts_jobs.len(),
            config.fixtures.di_nodes.len(),
            config.fixtures.di_jobs.len(),
            config.fixtures.di_solutions.len(),
            if config.auto_create {
                " (and any other id, auto-created)"
            } else {
                ""
            },
            if config.faults.is_empty() {
                "none".to_owned()
            } else {
                config.faults.to_string()
            },
            config.seed,
        );
        let handle = crate::sim::spawn_on(listener, config).await.map_err(|e| {
            Error::usage("cannot start the simulator")
                .with_source(e)
                .with_hint("check that the --log file can be written")
        })?;
        let url = handle.base_url();
        // The first line of stdout is the address, for scripts and tests.
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{url}");
        let _ = stdout.flush();
        drop(stdout);
        eprintln!(
            "runbook sim: DataWorks 2020-05-18, DTS 2020-01-01, STS 2015-04-01 and the ECS metadata service on {url}"
        );
        eprintln!("  {}", crate::safe_text::escape(&summary.to_string()));
        eprintln!("  point runbook at it: --endpoint dataworks={url} --endpoint dts={url}");
        eprintln!("  Ctrl-C to stop");
        stop_signal().await;
        eprintln!("runbook sim: stopping");
        handle
            .shutdown()
            .await
            .map_err(|e| Error::new(ExitCode::Internal, "the simulator failed").with_source(e))?;
        Ok(ExitCode::Ok)
    }
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limits_default_as_their_help_says() {
        let limits = ConnLimits::default();
        assert_eq!(limits.max_connections, 512);
        assert_eq!(limits.header_timeout, std::time::Duration::from_secs(10));
        assert_eq!(limits.idle_timeout, std::time::Duration::from_secs(60));
        assert!(parse_timeout("0s").is_err());
    }

    #[test]
    fn delay_and_fault_flags_parse() {
        assert_eq!(
            parse_delay("200ms"),
            Ok(std::time::Duration::from_millis(200))
        );
        assert!(parse_delay("-1s").is_err());
    }
}
