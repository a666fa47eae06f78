//! The Alibaba Cloud key pair a run signs with, found where Alibaba's own
//! tools look for it, and never shown.
//!
//! This module reads the static sources: the environment
//! (`ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, plus
//! `ALIBABA_CLOUD_SECURITY_TOKEN` for STS credentials) and the aliyun CLI's
//! config file in modes `AK` and `StsToken`. The whole default chain, with
//! the sources that exchange a token for temporary credentials and refresh
//! them, is [`super::provider`].
//!
//! The secret and the token live in [`Secret`], whose `Debug` and `Display`
//! print `***`; only the signer path calls [`Secret::expose`]. The AccessKeyId
//! is not a secret in Alibaba's model, but it identifies the account, so
//! `Debug`/`Display` of [`Credentials`] show only its first characters.
//!
//! Environment lookups go through a `lookup(name)` function, so tests pass a
//! map instead of mutating the process environment (which would race other
//! tests).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Environment variable holding the AccessKeyId.
pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
/// Environment variable holding the AccessKeySecret.
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
/// Environment variable holding the STS SecurityToken (optional).
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
/// Environment variable naming the aliyun CLI profile to use.
pub const ENV_PROFILE: &str = "ALIBABA_CLOUD_PROFILE";
/// Where the aliyun CLI keeps its profiles, relative to `$HOME`.
pub const ALIYUN_CONFIG_RELATIVE: &str = ".aliyun/config.json";

/// A credential value that must never be printed: `Debug` and `Display`
/// show `***`. Read it with [`Secret::expose`], and only to sign.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The clear value. Call it only where the value is needed to sign or
    /// send a request; never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a set of credentials came from (shown in messages; holds no secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// Built in code (tests, the simulator's own client).
    Explicit,
    /// The `ALIBABA_CLOUD_*` environment variables.
    Environment,
    /// A profile of the aliyun CLI's config file.
    AliyunProfile {
        /// The config file.
        path: PathBuf,
        /// The profile's name.
        profile: String,
    },
    /// A section of the credentials libraries' INI file.
    CredentialsFile {
        /// The file.
        path: PathBuf,
        /// The section.
        section: String,
    },
    /// STS `AssumeRoleWithOIDC` (RRSA).
    OidcRole {
        /// The role assumed.
        role_arn: String,
    },
    /// STS `AssumeRole`, signed with other credentials.
    AssumedRole {
        /// The role assumed.
        role_arn: String,
        /// The credentials that assumed it.
        from: Box<CredentialSource>,
    },
    /// The ECS instance RAM role, from the metadata service.
    EcsRamRole {
        /// The role's name.
        role: String,
    },
    /// A credentials URI (`ALIBABA_CLOUD_CREDENTIALS_URI` or a profile's).
    CredentialsUri {
        /// `scheme://host[:port]` of the URI (its path and query are not shown).
        origin: String,
    },
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Explicit => f.write_str("explicit credentials"),
            CredentialSource::Environment => f.write_str("environment variables"),
            CredentialSource::AliyunProfile { path, profile } => {
                write!(f, "profile `{profile}` in {}", path.display())
            }
            CredentialSource::CredentialsFile { path, section } => {
                write!(f, "section [{section}] of {}", path.display())
            }
            CredentialSource::OidcRole { role_arn } => {
                write!(f, "OIDC role {role_arn} (AssumeRoleWithOIDC)")
            }
            CredentialSource::AssumedRole { role_arn, from } => {
                write!(f, "role {role_arn} assumed with {from}")
            }
            CredentialSource::EcsRamRole { role } => {
                write!(f, "ECS instance RAM role `{role}`")
            }
            CredentialSource::CredentialsUri { origin } => {
                write!(f, "credentials URI at {origin}")
            }
        }
    }
}

/// An AccessKey pair, optionally with an STS SecurityToken.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    access_key_secret: Secret,
    security_token: Option<Secret>,
    source: CredentialSource,
    /// When temporary credentials stop working.
    expiration: Option<jiff::Timestamp>,
}

impl Credentials {
    /// The same credentials, said to come from `source`.
    #[must_use]
    pub fn with_source(mut self, source: CredentialSource) -> Credentials {
        self.source = source;
        self
    }

    /// The same credentials, expiring at `expiration`.
    #[must_use]
    pub fn with_expiration(mut self, expiration: jiff::Timestamp) -> Credentials {
        self.expiration = Some(expiration);
        self
    }

    /// When these (temporary) credentials expire; `None` for a long-term key
    /// or an STS token given without its expiry.
    pub fn expiration(&self) -> Option<jiff::Timestamp> {
        self.expiration
    }

    /// Credentials given in code. An empty `security_token` counts as none.
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<String>,
        security_token: Option<String>,
    ) -> Credentials {
        Credentials {
            access_key_id: access_key_id.into(),
            access_key_secret: Secret::new(access_key_secret),
            security_token: security_token.filter(|t| !t.is_empty()).map(Secret::new),
            source: CredentialSource::Explicit,
            expiration: None,
        }
    }

    /// The AccessKeyId (an `STS.` id for temporary credentials). It is sent
    /// with every request but kept out of logs and messages; use
    /// [`Credentials::access_key_id_hint`] to show which key is in use.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The first characters of the AccessKeyId followed by `***`: enough to
    /// tell keys apart, not enough to identify the account.
    pub fn access_key_id_hint(&self) -> String {
        let shown: String = if self.access_key_id.chars().count() >= 12 {
            self.access_key_id.chars().take(4).collect()
        } else {
            String::new()
        };
        format!("{shown}***")
    }

    /// The AccessKeySecret (signing key).
    pub fn access_key_secret(&self) -> &Secret {
        &self.access_key_secret
    }

    /// The STS SecurityToken, for temporary credentials.
    pub fn security_token(&self) -> Option<&Secret> {
        self.security_token.as_ref()
    }

    /// Whether these are temporary (STS) credentials.
    pub fn is_temporary(&self) -> bool {
        self.security_token.is_some()
    }

    /// Where they came from.
    pub fn source(&self) -> &CredentialSource {
        &self.source
    }

    /// Reads the `ALIBABA_CLOUD_*` variables of the process environment.
    /// `Ok(None)` when neither the id nor the secret is set.
    ///
    /// # Errors
    ///
    /// [`CredentialsError::EnvIncomplete`] when only one of the two is set.
    pub fn from_env() -> Result<Option<Credentials>, CredentialsError> {
        Credentials::from_env_map(env_var)
    }

    /// [`Credentials::from_env`] over any lookup function (tests pass a map).
    /// Empty values count as unset.
    ///
    /// # Errors
    ///
    /// [`CredentialsError::EnvIncomplete`] when only one of id and secret is set.
    pub fn from_env_map(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Credentials>, CredentialsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        match (get(ENV_ACCESS_KEY_ID), get(ENV_ACCESS_KEY_SECRET)) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(CredentialsError::EnvIncomplete {
                set: ENV_ACCESS_KEY_ID,
                missing: ENV_ACCESS_KEY_SECRET,
            }),
            (None, Some(_)) => Err(CredentialsError::EnvIncomplete {
                set: ENV_ACCESS_KEY_SECRET,
                missing: ENV_ACCESS_KEY_ID,
            }),
            (Some(id), Some(secret)) => Ok(Some(Credentials {
                access_key_id: id,
                access_key_secret: Secret::new(secret),
                security_token: get(ENV_SECURITY_TOKEN).map(Secret::new),
                source: CredentialSource::Environment,
                expiration: None,
            })),
        }
    }

    /// Reads a profile of an aliyun CLI config file: `profile`, else the one
    /// named by `ALIBABA_CLOUD_PROFILE`, else the file's `current`.
    ///
    /// # Errors
    ///
    /// The file cannot be read or parsed, the profile does not exist, its mode
    /// is not supported yet, or it lacks a key.
    pub fn from_aliyun_config(
        path: &Path,
        profile: Option<&str>,
    ) -> Result<Credentials, CredentialsError> {
        Credentials::from_aliyun_config_with(path, profile, env_var)
    }

    /// [`Credentials::from_aliyun_config`] with the environment read through
    /// `lookup` (for `ALIBABA_CLOUD_PROFILE`).
    ///
    /// # Errors
    ///
    /// As [`Credentials::from_aliyun_config`].
    pub fn from_aliyun_config_with(
        path: &Path,
        profile: Option<&str>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, CredentialsError> {
        let config = read_aliyun_config(path)?;

        let wanted = profile
            .map(str::to_owned)
            .filter(|p| !p.is_empty())
            .or_else(|| lookup(ENV_PROFILE).filter(|p| !p.is_empty()))
            .or_else(|| config.current.clone().filter(|p| !p.is_empty()))
            .unwrap_or_else(|| "default".to_owned());

        let Some(found) = config.profiles.iter().find(|p| p.name == wanted) else {
            return Err(CredentialsError::ProfileNotFound {
                path: path.to_owned(),
                profile: wanted,
                available: config.profiles.iter().map(|p| p.name.clone()).collect(),
            });
        };

        // `aliyun configure` always writes a mode; a hand-written profile
        // without one holds a plain key pair, which is what AK means.
        let mode = found.mode.clone().unwrap_or_default();
        let temporary = if mode.is_empty() || mode.eq_ignore_ascii_case("AK") {
            false
        } else if mode.eq_ignore_ascii_case("StsToken") {
            true
        } else {
            return Err(CredentialsError::UnsupportedMode {
                profile: wanted,
                mode,
            });
        };

        let incomplete = |field: &'static str| CredentialsError::ProfileIncomplete {
            path: path.to_owned(),
            profile: wanted.clone(),
            field,
        };
        let access_key_id =
            non_empty(found.access_key_id.as_deref()).ok_or_else(|| incomplete("access_key_id"))?;
        let access_key_secret = non_empty(found.access_key_secret.as_deref())
            .ok_or_else(|| incomplete("access_key_secret"))?;
        let security_token = if temporary {
            Some(Secret::new(
                non_empty(found.sts_token.as_deref()).ok_or_else(|| incomplete("sts_token"))?,
            ))
        } else {
            None
        };
        Ok(Credentials {
            access_key_id,
            access_key_secret: Secret::new(access_key_secret),
            security_token,
            source: CredentialSource::AliyunProfile {
                path: path.to_owned(),
                profile: wanted,
            },
            expiration: None,
        })
    }
}

/// `Debug` shows where the credentials came from and a hint of the key id,
/// never the secret or the token.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id_hint())
            .field("access_key_secret", &self.access_key_secret)
            .field("security_token", &self.security_token)
            .field("source", &self.source)
            .finish()
    }
}

/// `AccessKey LTAI*** (STS) from environment variables`.
impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessKey {}", self.access_key_id_hint())?;
        if self.is_temporary() {
            f.write_str(" (STS)")?;
        }
        write!(f, " from {}", self.source)
    }
}

/// Why no usable credentials were found. No variant holds a key value.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Only one half of the key pair is in the environment.
    #[error("{set} is set but {missing} is not (both are needed)")]
    EnvIncomplete {
        /// The variable that is set.
        set: &'static str,
        /// The variable that is missing or empty.
        missing: &'static str,
    },
    /// The aliyun CLI config file does not exist.
    #[error("{} does not exist", path.display())]
    ConfigNotFound {
        /// The file looked for.
        path: PathBuf,
    },
    /// The config file exists but cannot be read: not a regular file, over
    /// its size cap, or an I/O error.
    #[error("{} {reason}", path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: crate::limits::ReadError,
    },
    /// The config file is not the aliyun CLI's JSON.
    #[error("{}:{line}:{column}: {category}", path.display())]
    ConfigParse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What kind of problem.
        category: &'static str,
    },
    /// The credentials libraries' INI file is unreadable, not INI, or its
    /// section lacks what its type needs (line 0: the file as a whole).
    #[error("{}{}: {reason}", path.display(), if *line > 0 { format!(":{line}") } else { String::new() })]
    CredentialsFile {
        /// The file.
        path: PathBuf,
        /// Where (1-based; 0 for the whole file).
        line: usize,
        /// What is wrong (never a value from the file).
        reason: String,
    },
    /// The selected profile is not in the file.
    #[error("no profile `{profile}` in {} (profiles: {})", path.display(), list_or_none(available))]
    ProfileNotFound {
        /// The file.
        path: PathBuf,
        /// The profile asked for.
        profile: String,
        /// The profiles the file has.
        available: Vec<String>,
    },
    /// The profile uses a mode runbook cannot sign with yet.
    #[error(
        "profile `{profile}` uses mode `{mode}`, which runbook does not support \
         (modes: AK, StsToken, RamRoleArn, EcsRamRole, OIDC, ChainableRamRoleArn, CredentialsURI)"
    )]
    UnsupportedMode {
        /// The profile.
        profile: String,
        /// Its mode as written.
        mode: String,
    },
    /// The profile lacks a field its mode needs.
    #[error("profile `{profile}` in {} has no `{field}`", path.display())]
    ProfileIncomplete {
        /// The file.
        path: PathBuf,
        /// The profile.
        profile: String,
        /// The missing or empty field.
        field: &'static str,
    },
    /// A source is configured with a value that cannot work.
    #[error("{source_name}: {variable} is invalid: {reason}")]
    Invalid {
        /// The source (`OIDC role`, `STS endpoint`, ...).
        source_name: String,
        /// The variable or profile field.
        variable: String,
        /// Why.
        reason: String,
    },
    /// A source is partly configured: some of its variables are set, one
    /// it needs is not.
    #[error("{source_name} is partly configured: {set} is set but {missing} is not")]
    Incomplete {
        /// The source.
        source_name: String,
        /// A variable that is set.
        set: String,
        /// The variable that is missing.
        missing: String,
    },
    /// A source is configured but gave no credentials (STS refused, the
    /// metadata service or the URI failed, a token file is unreadable).
    #[error("cannot get credentials from {source_name}: {reason}")]
    Unavailable {
        /// The source.
        source_name: String,
        /// Why (never a key value).
        reason: String,
    },
    /// No source had credentials.
    #[error("no Alibaba Cloud credentials found (tried: {})", tried.join("; "))]
    NotFound {
        /// Each source tried and why it gave nothing.
        tried: Vec<String>,
    },
}

impl CredentialsError {
    /// What the operator can do about it.
    pub fn hint(&self) -> String {
        match self {
            CredentialsError::UnsupportedMode { .. } | CredentialsError::ProfileNotFound { .. } => {
                "list the profiles with `aliyun configure list` and pass one with --profile"
                    .to_owned()
            }
            CredentialsError::CredentialsFile { .. } => format!(
                "fix the file (see the README's credential chain), or point {} at another one",
                super::credentials_file::ENV_CREDENTIALS_FILE
            ),
            _ => format!(
                "set {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} (plus {ENV_SECURITY_TOKEN} for STS), \
                 or run `aliyun configure` and pass --profile; to rehearse without an account use --sim"
            ),
        }
    }
}

/// Reads and parses the aliyun CLI's config file.
pub(crate) fn read_aliyun_config(path: &Path) -> Result<AliyunConfig, CredentialsError> {
    let text =
        crate::limits::read_text(path, crate::limits::CONFIG_BYTES).map_err(
            |reason| match reason {
                crate::limits::ReadError::NotFound => CredentialsError::ConfigNotFound {
                    path: path.to_owned(),
                },
                reason => CredentialsError::ConfigRead {
                    path: path.to_owned(),
                    reason,
                },
            },
        )?;
    // The parser's own message may quote a value from the file (which
    // could be a key), so only its position and category are kept.
    let config: AliyunConfig =
        serde_json::from_str(&text).map_err(|e| CredentialsError::ConfigParse {
            path: path.to_owned(),
            line: e.line(),
            column: e.column(),
            category: match e.classify() {
                serde_json::error::Category::Io => "unreadable",
                serde_json::error::Category::Syntax => "not valid JSON",
                serde_json::error::Category::Data => "not the aliyun CLI's config format",
                serde_json::error::Category::Eof => "truncated JSON",
            },
        })?;
    Ok(config)
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(str::to_owned)
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The parts of `~/.aliyun/config.json` runbook reads. Other keys are
/// ignored. Deliberately not `Debug`: it holds keys in clear.
#[derive(Deserialize)]
pub(crate) struct AliyunConfig {
    #[serde(default)]
    pub(crate) current: Option<String>,
    #[serde(default)]
    pub(crate) profiles: Vec<AliyunProfile>,
}

/// One profile of the aliyun CLI (the field names of the CLI and of
/// credentials-go's `cli_profile.go`). Deliberately not `Debug`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct AliyunProfile {
    pub(crate) name: String,
    pub(crate) mode: Option<String>,
    pub(crate) access_key_id: Option<String>,
    pub(crate) access_key_secret: Option<String>,
    pub(crate) sts_token: Option<String>,
    pub(crate) region_id: Option<String>,
    pub(crate) ram_role_arn: Option<String>,
    pub(crate) ram_session_name: Option<String>,
    pub(crate) role_session_name: Option<String>,
    pub(crate) expired_seconds: Option<u64>,
    pub(crate) source_profile: Option<String>,
    pub(crate) ram_role_name: Option<String>,
    pub(crate) oidc_provider_arn: Option<String>,
    pub(crate) oidc_token_file: Option<String>,
    pub(crate) policy: Option<String>,
    pub(crate) external_id: Option<String>,
    pub(crate) credentials_uri: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn write_config(dir: &Path, json: &str) -> PathBuf {
        let path = dir.join(ALIYUN_CONFIG_RELATIVE);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, json).unwrap();
        path
    }

    const CONFIG: &str = r#"{
      "current": "default",
      "profiles": [
        {"name": "default", "mode": "AK", "access_key_id": "LTAI5tDefaultKeyId", "access_key_secret": "default-secret",
         "region_id": "cn-hangzhou", "output_format": "json", "language": "en"},
        {"name": "sts", "mode": "ststoken", "access_key_id": "STS.tempKeyId0001", "access_key_secret": "sts-secret",
         "sts_token": "sts-token-value", "region_id": "cn-shanghai"},
        {"name": "role", "mode": "RamRoleArn", "access_key_id": "x", "access_key_secret": "y",
         "ram_role_arn": "acs:ram::123:role/ops"},
        {"name": "half", "mode": "StsToken", "access_key_id": "STS.x", "access_key_secret": "z"}
      ],
      "meta_path": ""
    }"#;

    #[test]
    fn secret_never_formats() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?} {s:#?}"), "*** *** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn env_needs_both_halves() {
        assert!(Credentials::from_env_map(env(&[])).unwrap().is_none());
        let c = Credentials::from_env_map(env(&[
            (ENV_ACCESS_KEY_ID, "LTAI5tEnvKeyId00"),
            (ENV_ACCESS_KEY_SECRET, "env-secret"),
            (ENV_SECURITY_TOKEN, ""),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.access_key_id(), "LTAI5tEnvKeyId00");
        assert_eq!(c.access_key_secret().expose(), "env-secret");
        assert!(!c.is_temporary(), "an empty token is no token");
        assert_eq!(c.source(), &CredentialSource::Environment);

        let err = Credentials::from_env_map(env(&[
            (ENV_ACCESS_KEY_ID, "id"),
            (ENV_ACCESS_KEY_SECRET, ""),
        ]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ALIBABA_CLOUD_ACCESS_KEY_ID is set but ALIBABA_CLOUD_ACCESS_KEY_SECRET is not (both are needed)"
        );
        let err = Credentials::from_env_map(env(&[(ENV_ACCESS_KEY_SECRET, "s")])).unwrap_err();
        assert!(matches!(
            err,
            CredentialsError::EnvIncomplete {
                missing: ENV_ACCESS_KEY_ID,
                ..
            }
        ));

        let sts = Credentials::from_env_map(env(&[
            (ENV_ACCESS_KEY_ID, "STS.id"),
            (ENV_ACCESS_KEY_SECRET, "s"),
            (ENV_SECURITY_TOKEN, "tok"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(sts.security_token().map(Secret::expose), Some("tok"));
    }

    #[test]
    fn aliyun_config_profiles_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), CONFIG);
        let no_env = env(&[]);

        let c = Credentials::from_aliyun_config_with(&path, None, &no_env).unwrap();
        assert_eq!(c.access_key_id(), "LTAI5tDefaultKeyId");
        assert!(!c.is_temporary());
        assert_eq!(
            c.source(),
            &CredentialSource::AliyunProfile {
                path: path.clone(),
                profile: "default".into()
            }
        );

        // The flag wins over the environment, which wins over `current`.
        let by_env = env(&[(ENV_PROFILE, "sts")]);
        let c = Credentials::from_aliyun_config_with(&path, None, &by_env).unwrap();
        assert_eq!(
            c.security_token().map(Secret::expose),
            Some("sts-token-value")
        );
        let c = Credentials::from_aliyun_config_with(&path, Some("default"), &by_env).unwrap();
        assert!(!c.is_temporary());

        let err = Credentials::from_aliyun_config_with(&path, Some("role"), &no_env).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("mode `RamRoleArn`"), "{text}");

        let err = Credentials::from_aliyun_config_with(&path, Some("half"), &no_env).unwrap_err();
        assert!(
            matches!(
                err,
                CredentialsError::ProfileIncomplete {
                    field: "sts_token",
                    ..
                }
            ),
            "{err}"
        );

        let err = Credentials::from_aliyun_config_with(&path, Some("nope"), &no_env).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "no profile `nope` in {} (profiles: default, sts, role, half)",
                path.display()
            )
        );
    }

    #[test]
    fn config_parse_errors_give_a_position_and_never_a_value() {
        let dir = tempfile::tempdir().unwrap();
        // A numeric secret: serde_json's own message would quote it.
        let path = write_config(
            dir.path(),
            "{\"profiles\": [\n {\"name\": \"default\", \"access_key_secret\": 987654321}]}",
        );
        let err = Credentials::from_aliyun_config_with(&path, None, env(&[])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(":2:"), "{text}");
        assert!(!text.contains("987654321"), "{text}");
    }

    #[test]
    fn debug_and_display_hide_keys() {
        let c = Credentials::new(
            "LTAI5tSomeLongKeyId",
            "the-secret",
            Some("the-token".into()),
        );
        let shown = format!("{c} {c:?} {c:#?}");
        assert!(!shown.contains("the-secret"), "{shown}");
        assert!(!shown.contains("the-token"), "{shown}");
        assert!(!shown.contains("LTAI5tSomeLongKeyId"), "{shown}");
        assert!(shown.contains("LTAI***"), "{shown}");
        assert_eq!(
            c.to_string(),
            "AccessKey LTAI*** (STS) from explicit credentials"
        );
        assert_eq!(
            Credentials::new("short", "s", None).access_key_id_hint(),
            "***"
        );
    }
}
