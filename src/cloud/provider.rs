//! Credentials as Alibaba's credentials libraries find them, and kept fresh.
//!
//! # The default chain ([`resolve`])
//!
//! In the order of `credentials-go`'s `NewDefaultCredentialsProvider` and
//! Python's `DefaultCredentialsProvider`:
//!
//! 1. environment: `ALIBABA_CLOUD_ACCESS_KEY_ID` + `ALIBABA_CLOUD_ACCESS_KEY_SECRET`
//!    (+ `ALIBABA_CLOUD_SECURITY_TOKEN`);
//! 2. OIDC role (RRSA): `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`
//!    and `ALIBABA_CLOUD_OIDC_TOKEN_FILE` → STS `AssumeRoleWithOIDC`
//!    (session name `ALIBABA_CLOUD_ROLE_SESSION_NAME`, else `runbook-<time>`);
//! 3. the aliyun CLI's config file (`ALIBABA_CLOUD_CONFIG_FILE`, else
//!    `~/.aliyun/config.json`; skipped when `ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true`),
//!    profile `--profile`, else `ALIBABA_CLOUD_PROFILE`, else the file's
//!    `current`, in modes `AK`, `StsToken`, `RamRoleArn`, `EcsRamRole`,
//!    `OIDC`, `ChainableRamRoleArn` and `CredentialsURI`; then (3b) the
//!    libraries' own credentials file (an INI file,
//!    `ALIBABA_CLOUD_CREDENTIALS_FILE`, else `~/.alibabacloud/credentials`,
//!    else `~/.alibabacloud/credentials.ini`), section `ALIBABA_CLOUD_PROFILE`,
//!    else `default` (see [`super::credentials_file`]);
//! 4. the ECS instance RAM role through the metadata service (skipped when
//!    `ALIBABA_CLOUD_ECS_METADATA_DISABLED=true`): a session token first
//!    (`PUT /latest/api/token`, IMDSv2 style; required when
//!    `ALIBABA_CLOUD_IMDSV1_DISABLED=true`), the role name from
//!    `ALIBABA_CLOUD_ECS_METADATA` or the service, then its credentials;
//! 5. a credentials URI: `ALIBABA_CLOUD_CREDENTIALS_URI`.
//!
//! Two deviations, both on purpose: a source that is partly configured is an
//! error naming the source and the missing variable (the libraries skip to
//! the next source and may sign with other credentials than intended), and
//! `--profile` skips the sources before the config file (the operator said
//! which credentials to use, and the file of 3b is not read then).
//!
//! Endpoint overrides: STS as in [`super::sts::endpoint`]; the metadata
//! service is `http://100.100.100.200` (fixed in the libraries), or
//! `RUNBOOK_ECS_METADATA_ENDPOINT` (runbook's own, for the simulator).
//!
//! # Refresh
//!
//! Temporary credentials are fetched on first use and again when less than
//! [`REFRESH_MARGIN`] (or a third of their lifetime, if shorter) is left, so
//! a request is never signed with credentials about to expire. One refresh
//! runs at a time; the others wait for it. [`CredentialsProvider::current`]
//! is what the client calls for every request.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::credentials::{
    ALIYUN_CONFIG_RELATIVE, CredentialSource, Credentials, CredentialsError, ENV_ACCESS_KEY_ID,
    ENV_ACCESS_KEY_SECRET, ENV_PROFILE,
};
use super::sts::{self, RoleRequest};
use super::{ActionRequest, CallFuture};

/// The role assumed by the OIDC source.
pub const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
/// The OIDC provider of the OIDC source.
pub const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
/// The file holding the OIDC token (RRSA mounts it into the pod).
pub const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
/// The session name of assumed roles.
pub const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
/// Another path for the aliyun CLI's config file (credentials-go's variable).
pub const ENV_CONFIG_FILE: &str = "ALIBABA_CLOUD_CONFIG_FILE";
/// `true`: skip the aliyun CLI's config file.
pub const ENV_CLI_PROFILE_DISABLED: &str = "ALIBABA_CLOUD_CLI_PROFILE_DISABLED";
/// `true`: skip the ECS metadata service.
pub const ENV_ECS_METADATA_DISABLED: &str = "ALIBABA_CLOUD_ECS_METADATA_DISABLED";
/// The ECS instance RAM role's name (else asked of the metadata service).
pub const ENV_ECS_METADATA: &str = "ALIBABA_CLOUD_ECS_METADATA";
/// `true`: the metadata service must give a session token (no IMDSv1 fallback).
pub const ENV_IMDSV1_DISABLED: &str = "ALIBABA_CLOUD_IMDSV1_DISABLED";
/// A URL that serves credentials.
pub const ENV_CREDENTIALS_URI: &str = "ALIBABA_CLOUD_CREDENTIALS_URI";
/// runbook's override of the metadata service (a URL).
pub const ENV_ECS_METADATA_ENDPOINT: &str = "RUNBOOK_ECS_METADATA_ENDPOINT";
/// The metadata service of an ECS instance.
pub const ECS_METADATA: &str = "http://100.100.100.200";
/// How long before expiry temporary credentials are refreshed (the
/// libraries' 180 s).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(180);
/// The lifetime asked of a metadata session token (the libraries' 6 hours).
pub const IMDS_TOKEN_TTL: u64 = 21600;

/// An HTTP answer of the metadata service or a credentials URI.
pub struct HostAnswer {
    /// HTTP status.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

/// The future of a plain HTTP request.
pub type HostFuture<'a> = Pin<Box<dyn Future<Output = Result<HostAnswer, String>> + Send + 'a>>;

/// What a provider needs to fetch credentials: STS calls and plain HTTP.
/// The client implements it.
pub trait Fetch: Send + Sync {
    /// Sends an STS request, signed with `credentials` (or anonymous).
    fn sts<'a>(
        &'a self,
        req: &'a ActionRequest,
        credentials: Option<&'a Credentials>,
    ) -> CallFuture<'a>;
    /// Sends `method url` with `headers` (short timeouts, no proxy for
    /// loopback and link-local hosts).
    fn host<'a>(
        &'a self,
        method: &'static str,
        url: &'a str,
        headers: Vec<(&'static str, String)>,
    ) -> HostFuture<'a>;
}

/// The future of [`CredentialsProvider::current`].
pub type CredentialsFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Credentials, CredentialsError>> + Send + 'a>>;

enum Kind {
    Fixed(Credentials),
    AssumeRole {
        base: Arc<CredentialsProvider>,
        role: RoleRequest,
    },
    Oidc {
        role: RoleRequest,
        provider_arn: String,
        token_file: PathBuf,
    },
    Ecs {
        metadata: String,
        role: Option<String>,
        imdsv1_disabled: bool,
    },
    Uri {
        url: String,
    },
}

/// One source of credentials, cached and refreshed before expiry.
pub struct CredentialsProvider {
    kind: Kind,
    cache: tokio::sync::Mutex<Option<(Credentials, jiff::Timestamp)>>,
}

impl std::fmt::Debug for CredentialsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Fixed(c) => write!(f, "{c:?}"),
            _ => write!(f, "CredentialsProvider({})", self.source()),
        }
    }
}

impl std::fmt::Display for CredentialsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Fixed(c) => write!(f, "{c}"),
            _ => write!(f, "temporary credentials from {}", self.source()),
        }
    }
}

impl CredentialsProvider {
    fn of(kind: Kind) -> CredentialsProvider {
        CredentialsProvider {
            kind,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// Credentials that never change (a key pair, or an STS token given as is).
    pub fn fixed(credentials: Credentials) -> CredentialsProvider {
        CredentialsProvider::of(Kind::Fixed(credentials))
    }

    /// `role`, assumed with the credentials of `base` (STS `AssumeRole`).
    pub fn assume_role(base: Arc<CredentialsProvider>, role: RoleRequest) -> CredentialsProvider {
        CredentialsProvider::of(Kind::AssumeRole { base, role })
    }

    /// `role`, assumed with the OIDC token in `token_file` (STS `AssumeRoleWithOIDC`).
    pub fn oidc(
        role: RoleRequest,
        provider_arn: impl Into<String>,
        token_file: impl Into<PathBuf>,
    ) -> CredentialsProvider {
        CredentialsProvider::of(Kind::Oidc {
            role,
            provider_arn: provider_arn.into(),
            token_file: token_file.into(),
        })
    }

    /// The ECS instance RAM role from the metadata service at `metadata`.
    pub fn ecs(
        metadata: impl Into<String>,
        role: Option<String>,
        imdsv1_disabled: bool,
    ) -> CredentialsProvider {
        CredentialsProvider::of(Kind::Ecs {
            metadata: metadata.into(),
            role,
            imdsv1_disabled,
        })
    }

    /// The same provider, holding `credentials` it already fetched (so the
    /// first request does not fetch them again).
    #[must_use]
    pub fn seeded(self, credentials: Credentials) -> CredentialsProvider {
        tracing::debug!(source = %self.source(), expiration = ?credentials.expiration(), "credentials fetched");
        CredentialsProvider {
            kind: self.kind,
            cache: tokio::sync::Mutex::new(Some((credentials, jiff::Timestamp::now()))),
        }
    }

    /// Credentials served at `url`.
    pub fn uri(url: impl Into<String>) -> CredentialsProvider {
        CredentialsProvider::of(Kind::Uri { url: url.into() })
    }

    /// The credentials of a fixed provider; `None` for the others.
    pub fn fixed_credentials(&self) -> Option<&Credentials> {
        match &self.kind {
            Kind::Fixed(c) => Some(c),
            _ => None,
        }
    }

    /// Where the credentials come from (no secret).
    pub fn source(&self) -> CredentialSource {
        match &self.kind {
            Kind::Fixed(c) => c.source().clone(),
            Kind::AssumeRole { base, role } => CredentialSource::AssumedRole {
                role_arn: role.role_arn.clone(),
                from: Box::new(base.source()),
            },
            Kind::Oidc { role, .. } => CredentialSource::OidcRole {
                role_arn: role.role_arn.clone(),
            },
            Kind::Ecs { role, .. } => CredentialSource::EcsRamRole {
                role: role
                    .clone()
                    .unwrap_or_else(|| "(from the metadata service)".to_owned()),
            },
            Kind::Uri { url } => CredentialSource::CredentialsUri {
                origin: sts::base_url(url)
                    .or_else(|| {
                        reqwest::Url::parse(url)
                            .ok()
                            .map(|u| u.origin().ascii_serialization())
                    })
                    .unwrap_or_else(|| "?".to_owned()),
            },
        }
    }

    /// Credentials good for a request now: the cached ones, or fresh ones
    /// when they are about to expire.
    ///
    /// # Errors
    ///
    /// [`CredentialsError::Unavailable`] when they cannot be fetched.
    pub fn current<'a>(&'a self, fetch: &'a dyn Fetch) -> CredentialsFuture<'a> {
        Box::pin(async move {
            let mut cache = self.cache.lock().await;
            let now = jiff::Timestamp::now();
            if let Some((credentials, obtained)) = cache.as_ref()
                && fresh(credentials, *obtained, now)
            {
                return Ok(credentials.clone());
            }
            let credentials = self.fetch(fetch).await?;
            if let Some(expiration) = credentials.expiration()
                && expiration <= now
            {
                return Err(self.unavailable(format!(
                    "the credentials it gave expired at {expiration} (is this host's clock right?)"
                )));
            }
            tracing::debug!(source = %self.source(), expiration = ?credentials.expiration(), "credentials fetched");
            *cache = Some((credentials.clone(), now));
            Ok(credentials)
        })
    }

    fn unavailable(&self, reason: String) -> CredentialsError {
        CredentialsError::Unavailable {
            source_name: self.source().to_string(),
            reason,
        }
    }

    async fn fetch(&self, fetch: &dyn Fetch) -> Result<Credentials, CredentialsError> {
        let source = self.source();
        match &self.kind {
            Kind::Fixed(c) => Ok(c.clone()),
            Kind::AssumeRole { base, role } => {
                let caller = base.current(fetch).await?;
                let answer = fetch
                    .sts(&sts::assume_role(role), Some(&caller))
                    .await
                    .map_err(|e| self.unavailable(format!("AssumeRole failed: {e}")))?;
                sts::parse_credentials(&answer.body, source).map_err(|e| self.unavailable(e))
            }
            Kind::Oidc {
                role,
                provider_arn,
                token_file,
            } => {
                let token = crate::limits::read_text(token_file, 64 * 1024).map_err(|e| {
                    self.unavailable(format!(
                        "the OIDC token file {} ({ENV_OIDC_TOKEN_FILE}) {e}",
                        token_file.display()
                    ))
                })?;
                let req = sts::assume_role_with_oidc(role, provider_arn, &token);
                let answer = fetch
                    .sts(&req, None)
                    .await
                    .map_err(|e| self.unavailable(format!("AssumeRoleWithOIDC failed: {e}")))?;
                sts::parse_credentials(&answer.body, source).map_err(|e| self.unavailable(e))
            }
            Kind::Ecs {
                metadata,
                role,
                imdsv1_disabled,
            } => {
                let (credentials, _) =
                    ecs_credentials(fetch, metadata, role.as_deref(), *imdsv1_disabled)
                        .await
                        .map_err(|e| self.unavailable(e))?;
                Ok(credentials)
            }
            Kind::Uri { url } => {
                let answer = fetch
                    .host("GET", url, Vec::new())
                    .await
                    .map_err(|e| self.unavailable(e))?;
                if answer.status != 200 {
                    return Err(
                        self.unavailable(format!("the URI answered HTTP {}", answer.status))
                    );
                }
                let body: serde_json::Value = serde_json::from_str(&answer.body)
                    .map_err(|_| self.unavailable("the URI's answer is not JSON".to_owned()))?;
                sts::parse_credentials(&body, source).map_err(|e| self.unavailable(e))
            }
        }
    }
}

/// Whether credentials obtained at `obtained` are still good to sign with
/// at `now`: long-term ones always; temporary ones until the margin before
/// their expiry.
fn fresh(credentials: &Credentials, obtained: jiff::Timestamp, now: jiff::Timestamp) -> bool {
    let Some(expiration) = credentials.expiration() else {
        return true;
    };
    let lifetime = expiration.duration_since(obtained);
    let margin = jiff::SignedDuration::try_from(REFRESH_MARGIN)
        .unwrap_or_default()
        .min(lifetime / 3);
    expiration.duration_since(now) > margin
}

/// The instance role's credentials: `(credentials, role name)`.
async fn ecs_credentials(
    fetch: &dyn Fetch,
    metadata: &str,
    role: Option<&str>,
    imdsv1_disabled: bool,
) -> Result<(Credentials, String), String> {
    let token = match fetch
        .host(
            "PUT",
            &format!("{metadata}/latest/api/token"),
            vec![(
                "X-aliyun-ecs-metadata-token-ttl-seconds",
                IMDS_TOKEN_TTL.to_string(),
            )],
        )
        .await
    {
        Ok(answer) if answer.status == 200 && !answer.body.trim().is_empty() => {
            Some(answer.body.trim().to_owned())
        }
        Ok(answer) if imdsv1_disabled => {
            return Err(format!(
                "the metadata service gave no session token (HTTP {}) and {ENV_IMDSV1_DISABLED}=true",
                answer.status
            ));
        }
        Err(e) if imdsv1_disabled => {
            return Err(format!(
                "no metadata session token ({e}) and {ENV_IMDSV1_DISABLED}=true"
            ));
        }
        _ => None,
    };
    let headers = || {
        token
            .iter()
            .map(|t| ("X-aliyun-ecs-metadata-token", t.clone()))
            .collect::<Vec<_>>()
    };
    let base = format!("{metadata}/latest/meta-data/ram/security-credentials/");
    let role = match role {
        Some(role) => role.to_owned(),
        None => {
            let answer = fetch.host("GET", &base, headers()).await?;
            if answer.status != 200 || answer.body.trim().is_empty() {
                return Err(format!(
                    "the metadata service names no instance RAM role (HTTP {})",
                    answer.status
                ));
            }
            answer.body.trim().to_owned()
        }
    };
    let answer = fetch
        .host("GET", &format!("{base}{role}"), headers())
        .await?;
    if answer.status != 200 {
        return Err(format!(
            "the metadata service answered HTTP {} for role `{role}`",
            answer.status
        ));
    }
    let body: serde_json::Value = serde_json::from_str(&answer.body)
        .map_err(|_| "the metadata service's answer is not JSON".to_owned())?;
    let credentials =
        sts::parse_credentials(&body, CredentialSource::EcsRamRole { role: role.clone() })?;
    Ok((credentials, role))
}

/// The session name of roles runbook assumes:
/// `ALIBABA_CLOUD_ROLE_SESSION_NAME`, else `runbook-<unix seconds>`.
pub fn session_name(lookup: &dyn Fn(&str) -> Option<String>) -> String {
    lookup(ENV_ROLE_SESSION_NAME)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("runbook-{}", jiff::Timestamp::now().as_second()))
}

fn is_true(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> bool {
    lookup(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The default chain (see the module docs). `profile` is `--profile`.
///
/// # Errors
///
/// A source is partly configured or invalid (named, with the missing
/// variable), the profile cannot be used, or no source has credentials
/// ([`CredentialsError::NotFound`] lists what was tried).
pub async fn resolve(
    profile: Option<&str>,
    lookup: &(dyn Fn(&str) -> Option<String> + Sync),
    fetch: &dyn Fetch,
) -> Result<CredentialsProvider, CredentialsError> {
    let profile = profile.filter(|p| !p.is_empty());
    let mut tried = Vec::new();
    let mut missing_profile = None;
    if profile.is_none() {
        if let Some(credentials) = Credentials::from_env_map(lookup)? {
            return Ok(CredentialsProvider::fixed(credentials));
        }
        tried.push(format!(
            "environment variables {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET}: not set"
        ));
        if let Some(provider) = oidc_from_env(lookup)? {
            return Ok(provider);
        }
        tried.push(format!("OIDC role ({ENV_ROLE_ARN}, ...): not set"));
    }

    if is_true(lookup, ENV_CLI_PROFILE_DISABLED) {
        tried.push(format!(
            "aliyun CLI profile: {ENV_CLI_PROFILE_DISABLED}=true"
        ));
    } else {
        match super::region::aliyun_config_path(lookup) {
            None => tried.push(format!("$HOME/{ALIYUN_CONFIG_RELATIVE}: HOME is not set")),
            Some(path) => match profile_provider(&path, profile, lookup) {
                Err(CredentialsError::ConfigNotFound { path }) if profile.is_none() => {
                    tried.push(format!("{}: no such file", path.display()));
                }
                // The profile of ALIBABA_CLOUD_PROFILE (or `current`) may be a
                // section of the credentials file; if not, this error stands.
                Err(e @ CredentialsError::ProfileNotFound { .. }) if profile.is_none() => {
                    missing_profile = Some(e);
                }
                other => return other,
            },
        }
    }
    if profile.is_some() {
        // Unreachable: an explicit profile either resolved or failed above
        // (unless the config file is disabled, which is an error then).
        return Err(CredentialsError::NotFound { tried });
    }

    let file = super::credentials_file::source(
        lookup,
        || {
            Ok((
                metadata_endpoint(lookup)?,
                is_true(lookup, ENV_IMDSV1_DISABLED),
            ))
        },
        &|| session_name(lookup),
    )?;
    match (file, missing_profile) {
        (super::credentials_file::FileSource::Found(provider), _) => return Ok(*provider),
        (super::credentials_file::FileSource::Absent(_), Some(e)) => return Err(e),
        (super::credentials_file::FileSource::Absent(why), None) => tried.push(why),
    }

    if is_true(lookup, ENV_ECS_METADATA_DISABLED) {
        tried.push(format!(
            "ECS instance RAM role: {ENV_ECS_METADATA_DISABLED}=true"
        ));
    } else {
        let metadata = metadata_endpoint(lookup)?;
        let role = lookup(ENV_ECS_METADATA).filter(|v| !v.is_empty());
        let imdsv1_disabled = is_true(lookup, ENV_IMDSV1_DISABLED);
        match role {
            // Named: this host means to use it; a failure is an error.
            Some(role) => {
                return Ok(CredentialsProvider::ecs(
                    metadata,
                    Some(role),
                    imdsv1_disabled,
                ));
            }
            None => match ecs_credentials(fetch, &metadata, None, imdsv1_disabled).await {
                Ok((credentials, role)) => {
                    return Ok(
                        CredentialsProvider::ecs(metadata, Some(role), imdsv1_disabled)
                            .seeded(credentials),
                    );
                }
                Err(why) => tried.push(format!(
                    "ECS instance RAM role at {metadata}: {why} (not an ECS instance?)"
                )),
            },
        }
    }

    match lookup(ENV_CREDENTIALS_URI).filter(|v| !v.is_empty()) {
        Some(url) => {
            check_uri(&url, ENV_CREDENTIALS_URI, "credentials URI")?;
            Ok(CredentialsProvider::uri(url))
        }
        None => {
            tried.push(format!("credentials URI ({ENV_CREDENTIALS_URI}): not set"));
            Err(CredentialsError::NotFound { tried })
        }
    }
}

/// Where the metadata service is.
fn metadata_endpoint(lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, CredentialsError> {
    match lookup(ENV_ECS_METADATA_ENDPOINT).filter(|v| !v.is_empty()) {
        Some(url) => sts::base_url(&url).ok_or(CredentialsError::Invalid {
            source_name: "ECS metadata service".to_owned(),
            variable: ENV_ECS_METADATA_ENDPOINT.to_owned(),
            reason: "expected http(s)://HOST[:PORT]".to_owned(),
        }),
        None => Ok(ECS_METADATA.to_owned()),
    }
}

fn check_uri(url: &str, variable: &str, source_name: &str) -> Result<(), CredentialsError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(CredentialsError::Invalid {
            source_name: source_name.to_owned(),
            variable: variable.to_owned(),
            reason: "expected an http(s) URL".to_owned(),
        }),
    }
}

/// The OIDC source from the environment: `None` when none of its three
/// variables is set; an error naming the missing one when some are.
fn oidc_from_env(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<CredentialsProvider>, CredentialsError> {
    let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
    let names = [ENV_ROLE_ARN, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE];
    let values: Vec<Option<String>> = names.iter().map(|n| get(n)).collect();
    let Some(set) = names.iter().zip(&values).find(|(_, v)| v.is_some()) else {
        return Ok(None);
    };
    if let Some((missing, _)) = names.iter().zip(&values).find(|(_, v)| v.is_none()) {
        return Err(CredentialsError::Incomplete {
            source_name: "the OIDC role source (RRSA)".to_owned(),
            set: (*set.0).to_owned(),
            missing: (*missing).to_owned(),
        });
    }
    let [Some(role_arn), Some(provider_arn), Some(token_file)] =
        [&values[0], &values[1], &values[2]]
    else {
        return Ok(None);
    };
    Ok(Some(CredentialsProvider::oidc(
        RoleRequest::new(role_arn.clone(), session_name(lookup)),
        provider_arn.clone(),
        token_file.clone(),
    )))
}

/// A profile of the aliyun CLI's config file, in any supported mode.
fn profile_provider(
    path: &Path,
    profile: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<CredentialsProvider, CredentialsError> {
    let config = super::credentials::read_aliyun_config(path)?;
    let wanted = profile
        .map(str::to_owned)
        .or_else(|| lookup(ENV_PROFILE).filter(|p| !p.is_empty()))
        .or_else(|| config.current.clone().filter(|p| !p.is_empty()))
        .unwrap_or_else(|| "default".to_owned());
    build_profile(&config, path, &wanted, lookup, 0)
}

fn build_profile(
    config: &super::credentials::AliyunConfig,
    path: &Path,
    name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<CredentialsProvider, CredentialsError> {
    let Some(p) = config.profiles.iter().find(|p| p.name == name) else {
        return Err(CredentialsError::ProfileNotFound {
            path: path.to_owned(),
            profile: name.to_owned(),
            available: config.profiles.iter().map(|p| p.name.clone()).collect(),
        });
    };
    let incomplete = |field: &'static str| CredentialsError::ProfileIncomplete {
        path: path.to_owned(),
        profile: name.to_owned(),
        field,
    };
    let need = |value: &Option<String>, field: &'static str| {
        value
            .clone()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| incomplete(field))
    };
    let role = |arn: String, session: Option<&String>| RoleRequest {
        role_arn: arn,
        session_name: session
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| session_name(lookup)),
        duration_secs: p
            .expired_seconds
            .filter(|s| *s > 0)
            .unwrap_or(sts::DEFAULT_DURATION_SECS),
        external_id: p.external_id.clone(),
        policy: p.policy.clone(),
    };
    let mode = p.mode.clone().unwrap_or_default();
    let source = CredentialSource::AliyunProfile {
        path: path.to_owned(),
        profile: name.to_owned(),
    };
    match mode.to_ascii_lowercase().as_str() {
        "" | "ak" | "ststoken" => {
            super::credentials::Credentials::from_aliyun_config_with(path, Some(name), lookup)
                .map(CredentialsProvider::fixed)
        }
        "ramrolearn" => {
            let base = Credentials::new(
                need(&p.access_key_id, "access_key_id")?,
                need(&p.access_key_secret, "access_key_secret")?,
                None,
            )
            .with_source(source);
            Ok(CredentialsProvider::assume_role(
                Arc::new(CredentialsProvider::fixed(base)),
                role(
                    need(&p.ram_role_arn, "ram_role_arn")?,
                    p.ram_session_name.as_ref(),
                ),
            ))
        }
        "chainableramrolearn" => {
            let from = need(&p.source_profile, "source_profile")?;
            if depth > 8 || from == name {
                return Err(CredentialsError::Invalid {
                    source_name: format!("profile `{name}` in {}", path.display()),
                    variable: "source_profile".to_owned(),
                    reason: "the chain of source profiles loops".to_owned(),
                });
            }
            let base = build_profile(config, path, &from, lookup, depth + 1)?;
            Ok(CredentialsProvider::assume_role(
                Arc::new(base),
                role(
                    need(&p.ram_role_arn, "ram_role_arn")?,
                    p.ram_session_name.as_ref(),
                ),
            ))
        }
        "ecsramrole" => Ok(CredentialsProvider::ecs(
            metadata_endpoint(lookup)?,
            p.ram_role_name.clone().filter(|r| !r.is_empty()),
            is_true(lookup, ENV_IMDSV1_DISABLED),
        )),
        "oidc" => Ok(CredentialsProvider::oidc(
            role(
                need(&p.ram_role_arn, "ram_role_arn")?,
                p.role_session_name.as_ref(),
            ),
            need(&p.oidc_provider_arn, "oidc_provider_arn")?,
            need(&p.oidc_token_file, "oidc_token_file")?,
        )),
        "credentialsuri" => {
            let url = need(&p.credentials_uri, "credentials_uri")?;
            check_uri(&url, "credentials_uri", &source.to_string())?;
            Ok(CredentialsProvider::uri(url))
        }
        _ => Err(CredentialsError::UnsupportedMode {
            profile: name.to_owned(),
            mode,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn refresh_margin_is_180s_or_a_third_of_the_lifetime() {
        let hour = Credentials::new("STS.a", "s", Some("t".into()))
            .with_expiration(at("2030-01-01T01:00:00Z"));
        let obtained = at("2030-01-01T00:00:00Z");
        assert!(fresh(&hour, obtained, at("2030-01-01T00:56:59Z")));
        assert!(!fresh(&hour, obtained, at("2030-01-01T00:57:00Z")));
        let short = Credentials::new("STS.a", "s", Some("t".into()))
            .with_expiration(at("2030-01-01T00:00:30Z"));
        assert!(fresh(&short, obtained, at("2030-01-01T00:00:19Z")));
        assert!(!fresh(&short, obtained, at("2030-01-01T00:00:20Z")));
        let long_term = Credentials::new("LTAI", "s", None);
        assert!(fresh(&long_term, obtained, at("2099-01-01T00:00:00Z")));
    }
}
