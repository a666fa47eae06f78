//! Fixtures: the resources a simulator starts with, their initial states and
//! the delays of its state transitions, written as YAML:
//!
//! ```yaml
//! delays:                 # how long a transition takes (all optional)
//!   all: 500ms            # sets every delay below at once
//!   dts_stop: 2s          # StopDtsJob: Synchronizing -> Finished
//!   dts_suspend: 1s       # SuspendDtsJob: Synchronizing -> Suspending
//!   dts_start: 1s         # StartDtsJob: Suspending -> Synchronizing
//!   di_stop: 1s           # StopDISyncInstance: KILLING -> PAUSE
//!   di_terminate: 1s      # TerminateDISyncInstance: KILLING -> NORUN
//!   di_start: 1s          # StartDISyncInstance: WAIT -> RUN
//!   di_job_stop: 1s       # StopDIJob: Running -> Stopped
//!   di_job_start: 1s      # StartDIJob: Stopped -> Running
//! dts_jobs:
//!   - id: l3m1213ye7l
//!     instance_id: dtsl3m1213ye7l   # default: "dts" + id
//!     name: orders-forward
//!     status: Synchronizing         # default
//!     reverse_status: Synchronizing # a two-way sync: state of the Reverse direction
//! di_nodes:
//!   - { project_id: 10000, file_id: 100, name: orders_rt, status: RUN }
//! di_jobs:
//!   - { id: 11668, project_id: 10000, name: mysql_to_holo, status: Running }
//! di_solutions:
//!   - { project_id: 10000, file_id: 200, status: success }
//! ```
//!
//! Errors point at `file:line:col`. Durations use the friendly format
//! (`250ms`, `2s`, `1m30s`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::identity::{
    DEFAULT_MAX_SESSION, IdentityFixtures, RoleFixture, UserFixture, is_role_arn,
};
use super::state::{DI_JOB_STATUSES, DI_NODE_STATUSES, DI_SOLUTION_STATUSES, DTS_STATUSES};

/// How long each state transition takes. Status calls report the old (or the
/// transient) status until the delay has passed, so waits really poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delays {
    /// `StopDtsJob`: the task reports its old status, then `Finished`.
    pub dts_stop: Duration,
    /// `SuspendDtsJob`: `Synchronizing`, then `Suspending`.
    pub dts_suspend: Duration,
    /// `StartDtsJob`: `Suspending`, then `Synchronizing`.
    pub dts_start: Duration,
    /// `StopDISyncInstance`: `KILLING`, then `PAUSE`.
    pub di_stop: Duration,
    /// `TerminateDISyncInstance`: `KILLING`, then `NORUN`.
    pub di_terminate: Duration,
    /// `StartDISyncInstance`: `WAIT`, then `RUN`.
    pub di_start: Duration,
    /// `StopDIJob`: `Running`, then `Stopped`.
    pub di_job_stop: Duration,
    /// `StartDIJob`: the old status (`Stopped`), then `Running`.
    pub di_job_start: Duration,
}

impl Default for Delays {
    /// Short enough to watch by hand, long enough that a wait polls more than once.
    fn default() -> Delays {
        Delays {
            dts_stop: Duration::from_secs(2),
            dts_suspend: Duration::from_secs(1),
            dts_start: Duration::from_secs(1),
            di_stop: Duration::from_secs(1),
            di_terminate: Duration::from_secs(1),
            di_start: Duration::from_secs(1),
            di_job_stop: Duration::from_secs(1),
            di_job_start: Duration::from_secs(1),
        }
    }
}

impl Delays {
    /// Every transition takes `delay` (zero: transitions are immediate).
    pub fn uniform(delay: Duration) -> Delays {
        Delays {
            dts_stop: delay,
            dts_suspend: delay,
            dts_start: delay,
            di_stop: delay,
            di_terminate: delay,
            di_start: delay,
            di_job_stop: delay,
            di_job_start: delay,
        }
    }

    /// The same transitions in compressed time (`run --sim --time-scale`).
    pub fn scaled(&self, scale: crate::run::TimeScale) -> Delays {
        let at = |d: Duration| scale.apply(d);
        Delays {
            dts_stop: at(self.dts_stop),
            dts_suspend: at(self.dts_suspend),
            dts_start: at(self.dts_start),
            di_stop: at(self.di_stop),
            di_terminate: at(self.di_terminate),
            di_start: at(self.di_start),
            di_job_stop: at(self.di_job_stop),
            di_job_start: at(self.di_job_start),
        }
    }
}

/// A DTS task (one per `DtsJobId`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DtsJobFixture {
    /// `DtsJobId`.
    pub id: String,
    /// `DtsInstanceId`; `None` means `"dts" + id`.
    pub instance_id: Option<String>,
    /// `DtsJobName`; `None` means the id.
    pub name: Option<String>,
    /// Status of the Forward direction (`Synchronizing`, `Suspending`, `Failed`, ...).
    pub status: String,
    /// Status of the Reverse direction of a two-way sync; `None`: one-way.
    pub reverse_status: Option<String>,
    /// `ErrorMessage` reported while the task is `Failed`.
    pub error_message: Option<String>,
}

impl DtsJobFixture {
    /// A one-way task in `Synchronizing`.
    pub fn running(id: impl Into<String>) -> DtsJobFixture {
        DtsJobFixture {
            id: id.into(),
            instance_id: None,
            name: None,
            status: "Synchronizing".to_owned(),
            reverse_status: None,
            error_message: None,
        }
    }
}

/// A DataWorks real-time sync node (`TaskType=DI_REALTIME`), keyed by `FileId`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiNodeFixture {
    /// `ProjectId` the node belongs to; calls naming another project do not find it.
    pub project_id: i64,
    /// `FileId`.
    pub file_id: i64,
    /// `Data.Name`; `None` means `node_<file_id>`.
    pub name: Option<String>,
    /// `RUN`, `PAUSE`, `NORUN`, `KILLING` or `WAIT`.
    pub status: String,
}

impl DiNodeFixture {
    /// A node in `RUN`.
    pub fn running(project_id: i64, file_id: i64) -> DiNodeFixture {
        DiNodeFixture {
            project_id,
            file_id,
            name: None,
            status: "RUN".to_owned(),
        }
    }
}

/// A new-style DI job (`StopDIJob`, `GetDIJob`), keyed by `DIJobId`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiJobFixture {
    /// `DIJobId`.
    pub id: i64,
    /// `ProjectId` reported by `GetDIJob`.
    pub project_id: Option<i64>,
    /// `JobName`; `None` means `di_job_<id>`.
    pub name: Option<String>,
    /// `Running`, `Stopped`, `Finished` or `Failed` (inferred values).
    pub status: String,
}

/// A DI solution (`TaskType=DI_SOLUTION`), keyed by `FileId`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiSolutionFixture {
    /// `ProjectId` the solution belongs to.
    pub project_id: i64,
    /// `FileId` (the solution id).
    pub file_id: i64,
    /// `SolutionInfo.Status`: `run`, `success` or `fail`.
    pub status: String,
}

/// Everything a simulator starts with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fixtures {
    /// Transition delays.
    pub delays: Delays,
    /// DTS tasks.
    pub dts_jobs: Vec<DtsJobFixture>,
    /// DI real-time nodes.
    pub di_nodes: Vec<DiNodeFixture>,
    /// New-style DI jobs.
    pub di_jobs: Vec<DiJobFixture>,
    /// DI solutions.
    pub di_solutions: Vec<DiSolutionFixture>,
    /// Keys, roles and the host credential endpoints (STS, metadata).
    pub identities: IdentityFixtures,
}

/// A fixtures file that could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
#[error("{}{message}", location_prefix(.path.as_deref(), *.line, *.column))]
pub struct FixtureError {
    /// The file, when read from one.
    pub path: Option<PathBuf>,
    /// 1-based line (0: unknown).
    pub line: u64,
    /// 1-based column (0: unknown).
    pub column: u64,
    /// What is wrong.
    pub message: String,
}

fn location_prefix(path: Option<&Path>, line: u64, column: u64) -> String {
    let file = path.map_or_else(|| "<fixtures>".to_owned(), |p| p.display().to_string());
    if line == 0 {
        format!("{file}: ")
    } else {
        format!("{file}:{line}:{column}: ")
    }
}

impl Fixtures {
    /// Reads and checks a fixtures file.
    pub fn load(path: &Path) -> Result<Fixtures, FixtureError> {
        let text = crate::limits::read_text(path, crate::limits::FIXTURES_BYTES).map_err(|e| {
            FixtureError {
                path: Some(path.to_owned()),
                line: 0,
                column: 0,
                message: format!("the fixtures file {e}"),
            }
        })?;
        Fixtures::from_yaml(&text).map_err(|e| FixtureError {
            path: Some(path.to_owned()),
            ..e
        })
    }

    /// Parses and checks fixtures written as YAML.
    pub fn from_yaml(text: &str) -> Result<Fixtures, FixtureError> {
        let raw: RawFixtures = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            let message = e.without_snippet().to_string();
            // The parser prefixes its own "line L column C: "; we already say where.
            let message = match message.split_once(": ") {
                Some((prefix, rest)) if prefix.contains("line ") => rest.to_owned(),
                _ => message,
            };
            FixtureError {
                path: None,
                line,
                column,
                message,
            }
        })?;
        raw.check()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFixtures {
    #[serde(default)]
    delays: Option<RawDelays>,
    #[serde(default)]
    dts_jobs: Vec<RawDtsJob>,
    #[serde(default)]
    di_nodes: Vec<RawDiNode>,
    #[serde(default)]
    di_jobs: Vec<RawDiJob>,
    #[serde(default)]
    di_solutions: Vec<RawDiSolution>,
    #[serde(default)]
    identities: Option<RawIdentities>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentities {
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    roles: Vec<RawRole>,
    ecs_role: Option<Spanned<String>>,
    #[serde(default)]
    imds_token_required: bool,
    credentials_uri_role: Option<Spanned<String>>,
    session_lifetime: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    access_key_id: Spanned<String>,
    access_key_secret: String,
    arn: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    arn: Spanned<String>,
    #[serde(default)]
    trusted: Vec<String>,
    max_session: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelays {
    all: Option<Spanned<String>>,
    dts_stop: Option<Spanned<String>>,
    dts_suspend: Option<Spanned<String>>,
    dts_start: Option<Spanned<String>>,
    di_stop: Option<Spanned<String>>,
    di_terminate: Option<Spanned<String>>,
    di_start: Option<Spanned<String>>,
    di_job_stop: Option<Spanned<String>>,
    di_job_start: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDtsJob {
    id: Spanned<String>,
    instance_id: Option<String>,
    name: Option<String>,
    status: Option<Spanned<String>>,
    reverse_status: Option<Spanned<String>>,
    error_message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiNode {
    project_id: i64,
    file_id: Spanned<i64>,
    name: Option<String>,
    status: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiJob {
    id: Spanned<i64>,
    project_id: Option<i64>,
    name: Option<String>,
    status: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiSolution {
    project_id: i64,
    file_id: Spanned<i64>,
    status: Option<Spanned<String>>,
}

fn at<T>(spanned: &Spanned<T>, message: String) -> FixtureError {
    FixtureError {
        path: None,
        line: spanned.referenced.line(),
        column: spanned.referenced.column(),
        message,
    }
}

fn duration(value: &Spanned<String>) -> Result<Duration, FixtureError> {
    crate::duration::parse(&value.value).map_err(|e| at(value, e.to_string()))
}

fn status(
    value: Option<&Spanned<String>>,
    default: &str,
    allowed: &[&str],
    what: &str,
) -> Result<String, FixtureError> {
    let Some(value) = value else {
        return Ok(default.to_owned());
    };
    if allowed.contains(&value.value.as_str()) {
        Ok(value.value.clone())
    } else {
        Err(at(
            value,
            format!(
                "unknown {what} status `{}` (expected one of: {})",
                value.value,
                allowed.join(", ")
            ),
        ))
    }
}

fn unique<T: Ord + Clone + std::fmt::Display>(
    seen: &mut BTreeSet<T>,
    id: &Spanned<T>,
    what: &str,
) -> Result<(), FixtureError> {
    if seen.insert(id.value.clone()) {
        Ok(())
    } else {
        Err(at(id, format!("duplicate {what} `{}`", id.value)))
    }
}

impl RawFixtures {
    fn check(self) -> Result<Fixtures, FixtureError> {
        let mut delays = Delays::default();
        if let Some(raw) = &self.delays {
            if let Some(all) = &raw.all {
                delays = Delays::uniform(duration(all)?);
            }
            for (field, slot) in [
                (&raw.dts_stop, &mut delays.dts_stop),
                (&raw.dts_suspend, &mut delays.dts_suspend),
                (&raw.dts_start, &mut delays.dts_start),
                (&raw.di_stop, &mut delays.di_stop),
                (&raw.di_terminate, &mut delays.di_terminate),
                (&raw.di_start, &mut delays.di_start),
                (&raw.di_job_stop, &mut delays.di_job_stop),
                (&raw.di_job_start, &mut delays.di_job_start),
            ] {
                if let Some(value) = field {
                    *slot = duration(value)?;
                }
            }
        }

        let mut seen = BTreeSet::new();
        let mut dts_jobs = Vec::with_capacity(self.dts_jobs.len());
        for job in &self.dts_jobs {
            if job.id.value.is_empty() {
                return Err(at(&job.id, "a DTS job id must not be empty".to_owned()));
            }
            unique(&mut seen, &job.id, "DTS job id")?;
            dts_jobs.push(DtsJobFixture {
                id: job.id.value.clone(),
                instance_id: job.instance_id.clone(),
                name: job.name.clone(),
                status: status(job.status.as_ref(), "Synchronizing", DTS_STATUSES, "DTS")?,
                reverse_status: match &job.reverse_status {
                    Some(s) => Some(status(Some(s), "Synchronizing", DTS_STATUSES, "DTS")?),
                    None => None,
                },
                error_message: job.error_message.clone(),
            });
        }

        let mut seen = BTreeSet::new();
        let mut di_nodes = Vec::with_capacity(self.di_nodes.len());
        for node in &self.di_nodes {
            unique(&mut seen, &node.file_id, "DI node file_id")?;
            di_nodes.push(DiNodeFixture {
                project_id: node.project_id,
                file_id: node.file_id.value,
                name: node.name.clone(),
                status: status(node.status.as_ref(), "RUN", DI_NODE_STATUSES, "DI node")?,
            });
        }

        let mut seen = BTreeSet::new();
        let mut di_jobs = Vec::with_capacity(self.di_jobs.len());
        for job in &self.di_jobs {
            unique(&mut seen, &job.id, "DI job id")?;
            di_jobs.push(DiJobFixture {
                id: job.id.value,
                project_id: job.project_id,
                name: job.name.clone(),
                status: status(job.status.as_ref(), "Running", DI_JOB_STATUSES, "DI job")?,
            });
        }

        let mut seen = BTreeSet::new();
        let mut di_solutions = Vec::with_capacity(self.di_solutions.len());
        for solution in &self.di_solutions {
            unique(&mut seen, &solution.file_id, "DI solution file_id")?;
            di_solutions.push(DiSolutionFixture {
                project_id: solution.project_id,
                file_id: solution.file_id.value,
                status: status(
                    solution.status.as_ref(),
                    "run",
                    DI_SOLUTION_STATUSES,
                    "DI solution",
                )?,
            });
        }

        let identities = match &self.identities {
            Some(raw) => raw.check()?,
            None => IdentityFixtures::default(),
        };

        Ok(Fixtures {
            delays,
            dts_jobs,
            di_nodes,
            di_jobs,
            di_solutions,
            identities,
        })
    }
}

impl RawIdentities {
    fn check(&self) -> Result<IdentityFixtures, FixtureError> {
        let mut seen = BTreeSet::new();
        let mut users = Vec::with_capacity(self.users.len());
        for user in &self.users {
            if user.access_key_id.value.is_empty() || user.access_key_secret.is_empty() {
                return Err(at(
                    &user.access_key_id,
                    "a user needs a non-empty access_key_id and access_key_secret".to_owned(),
                ));
            }
            unique(&mut seen, &user.access_key_id, "access_key_id")?;
            let arn = &user.arn.value;
            let well_formed = super::identity::account_of(arn).is_some()
                && (arn.ends_with(":root") || arn.contains(":user/"));
            if !well_formed {
                return Err(at(
                    &user.arn,
                    format!(
                        "`{arn}` is not a user ARN (acs:ram::ACCOUNT:user/NAME or acs:ram::ACCOUNT:root)"
                    ),
                ));
            }
            users.push(UserFixture {
                access_key_id: user.access_key_id.value.clone(),
                access_key_secret: user.access_key_secret.clone(),
                arn: arn.clone(),
            });
        }
        let mut seen = BTreeSet::new();
        let mut roles = Vec::with_capacity(self.roles.len());
        for role in &self.roles {
            if !is_role_arn(&role.arn.value) {
                return Err(at(
                    &role.arn,
                    format!(
                        "`{}` is not a role ARN (acs:ram::ACCOUNT:role/NAME)",
                        role.arn.value
                    ),
                ));
            }
            unique(&mut seen, &role.arn, "role")?;
            roles.push(RoleFixture {
                arn: role.arn.value.clone(),
                trusted: role.trusted.clone(),
                max_session: match &role.max_session {
                    Some(d) => duration(d)?,
                    None => DEFAULT_MAX_SESSION,
                },
            });
        }
        let role_named = |name: &Spanned<String>, by_arn: bool| {
            let found = roles.iter().any(|r| {
                if by_arn {
                    r.arn == name.value
                } else {
                    r.arn.rsplit('/').next() == Some(name.value.as_str())
                }
            });
            if found {
                Ok(name.value.clone())
            } else {
                Err(at(
                    name,
                    format!("no role `{}` in identities.roles", name.value),
                ))
            }
        };
        Ok(IdentityFixtures {
            users,
            ecs_role: self
                .ecs_role
                .as_ref()
                .map(|n| role_named(n, false))
                .transpose()?,
            credentials_uri_role: self
                .credentials_uri_role
                .as_ref()
                .map(|n| role_named(n, true))
                .transpose()?,
            roles,
            imds_token_required: self.imds_token_required,
            session_lifetime: self.session_lifetime.as_ref().map(duration).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_section_with_defaults() {
        let f = Fixtures::from_yaml(
            "delays: { all: 100ms, dts_stop: 2s }\n\
             dts_jobs:\n  - id: j1\n  - { id: 42, status: Failed, reverse_status: Suspending }\n\
             di_nodes:\n  - { project_id: 10000, file_id: 7 }\n\
             di_jobs:\n  - { id: 11668, status: Stopped }\n\
             di_solutions:\n  - { project_id: 1, file_id: 9, status: fail }\n",
        )
        .unwrap();
        assert_eq!(f.delays.dts_stop, Duration::from_secs(2));
        assert_eq!(f.delays.di_stop, Duration::from_millis(100));
        assert_eq!(f.dts_jobs[0], DtsJobFixture::running("j1"));
        assert_eq!(f.dts_jobs[1].id, "42");
        assert_eq!(f.dts_jobs[1].status, "Failed");
        assert_eq!(f.dts_jobs[1].reverse_status.as_deref(), Some("Suspending"));
        assert_eq!(f.di_nodes[0], DiNodeFixture::running(10000, 7));
        assert_eq!(f.di_jobs[0].status, "Stopped");
        assert_eq!(f.di_solutions[0].status, "fail");
    }

    #[test]
    fn errors_point_at_the_value() {
        let e =
            Fixtures::from_yaml("di_nodes:\n  - { project_id: 1, file_id: 7, status: RUNNING }\n")
                .unwrap_err();
        assert_eq!((e.line, e.column), (2, 42), "{e}");
        assert!(
            e.message.contains("unknown DI node status `RUNNING`"),
            "{e}"
        );
        assert!(e.message.contains("KILLING"), "{e}");

        let e = Fixtures::from_yaml("delays:\n  dts_stop: soon\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 13), "{e}");
        assert!(
            e.to_string()
                .starts_with("<fixtures>:2:13: invalid duration `soon`"),
            "{e}"
        );

        let e = Fixtures::from_yaml("dts_jobs:\n  - id: a\n  - id: a\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("duplicate DTS job id `a`"), "{e}");

        let e = Fixtures::from_yaml("dts_job:\n  - id: a\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert!(e.message.contains("unknown field `dts_job`"), "{e}");

        let e = Fixtures::from_yaml("di_jobs:\n  - { id: x }\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn durations_refuse_negatives_and_bare_numbers() {
        assert_eq!(
            crate::duration::parse("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(crate::duration::parse("1m30s"), Ok(Duration::from_secs(90)));
        assert!(crate::duration::parse("-1s").is_err());
        assert!(crate::duration::parse("2").is_err());
    }
}
