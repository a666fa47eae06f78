//! The region a call goes to when the playbook names none, found as the
//! aliyun CLI finds its default region.
//!
//! Sources, first found wins:
//!
//! 1. `ALIBABA_CLOUD_REGION_ID` (the one region variable the aliyun CLI
//!    documents; the CLI's code also reads `ALIBABACLOUD_REGION_ID`,
//!    `ALICLOUD_REGION_ID`, `REGION_ID` and `REGION`, undocumented, which
//!    runbook does not);
//! 2. the `region_id` of the aliyun CLI profile in use: `--profile`, else
//!    `ALIBABA_CLOUD_PROFILE`, else the config file's `current` (the file
//!    the credential chain reads: `ALIBABA_CLOUD_CONFIG_FILE`, else
//!    `~/.aliyun/config.json`; none when
//!    `ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true`).
//!
//! The aliyun CLI itself puts the profile before the variable (its docs:
//! flags, then the config file, then the environment). runbook's contract
//! puts the variable first: a region set for one command (`ALIBABA_CLOUD_REGION_ID=cn-shanghai
//! runbook plan ...`) or by a scheduler's unit file is the more deliberate
//! choice, and a laptop's profile should not quietly override it.
//!
//! A value that is set but is not a region id is an error naming where it
//! was found, never skipped. What is found is recorded in the plan
//! ([`DefaultRegion`]), so a saved plan and a resumed run keep it whatever
//! the environment says later.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::credentials::{ALIYUN_CONFIG_RELATIVE, CredentialsError, ENV_PROFILE};
use super::endpoint::is_region_id;
use super::provider::{ENV_CLI_PROFILE_DISABLED, ENV_CONFIG_FILE};

/// The environment variable that gives the default region.
pub const ENV_REGION_ID: &str = "ALIBABA_CLOUD_REGION_ID";

/// Where a default region came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionSource {
    /// `ALIBABA_CLOUD_REGION_ID`.
    Env,
    /// The `region_id` of an aliyun CLI profile.
    Profile,
}

/// The region used for the steps a playbook gives none, and its source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultRegion {
    /// The region id.
    pub region: String,
    /// Where it was found.
    pub source: RegionSource,
    /// The profile, when the source is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

impl DefaultRegion {
    /// Where it came from, in words: `ALIBABA_CLOUD_REGION_ID` or
    /// ``the region_id of aliyun CLI profile `prod` ``.
    pub fn origin(&self) -> String {
        match (self.source, &self.profile) {
            (RegionSource::Env, _) => ENV_REGION_ID.to_owned(),
            (RegionSource::Profile, Some(p)) => {
                format!("the region_id of aliyun CLI profile `{p}`")
            }
            (RegionSource::Profile, None) => "the region_id of the aliyun CLI profile".to_owned(),
        }
    }
}

impl fmt::Display for DefaultRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (from {})", self.region, self.origin())
    }
}

/// The default region ([`default_region`]), or why there is none: a
/// sentence that reads after "has no region: ".
pub type RegionLookup = Result<DefaultRegion, String>;

/// The aliyun CLI's config file as the credential chain reads it:
/// `ALIBABA_CLOUD_CONFIG_FILE`, else `$HOME/.aliyun/config.json`; `None`
/// when neither is set.
pub fn aliyun_config_path(lookup: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    match lookup(ENV_CONFIG_FILE).filter(|v| !v.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => lookup("HOME")
            .filter(|h| !h.is_empty())
            .map(|home| Path::new(&home).join(ALIYUN_CONFIG_RELATIVE)),
    }
}

/// Finds the default region (see the module docs). `profile` is
/// `--profile`.
///
/// # Errors
///
/// Why there is none, naming every source looked at; or a value that is
/// set but unusable (not a region id, a profile that does not exist, a
/// config file that cannot be read), naming where it is.
pub fn default_region(
    profile: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> RegionLookup {
    if let Some(region) = lookup(ENV_REGION_ID).filter(|v| !v.is_empty()) {
        let region = region.trim();
        if !is_region_id(region) {
            return Err(format!(
                "{ENV_REGION_ID} is `{}`, not a region id such as `cn-hangzhou`",
                crate::safe_text::escape(region)
            ));
        }
        return Ok(DefaultRegion {
            region: region.to_owned(),
            source: RegionSource::Env,
            profile: None,
        });
    }
    let why_not_profile = match from_profile(profile, lookup) {
        Ok(found) => return Ok(found),
        Err(ProfileMiss::Unusable(why)) => return Err(why),
        Err(ProfileMiss::None(why)) => why,
    };
    Err(format!(
        "the playbook sets none, {ENV_REGION_ID} is not set, and {why_not_profile}"
    ))
}

enum ProfileMiss {
    /// The profile gives no region (why, in words).
    None(String),
    /// It gives one that cannot be used, or the profile named cannot be read.
    Unusable(String),
}

fn from_profile(
    profile: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<DefaultRegion, ProfileMiss> {
    let disabled = lookup(ENV_CLI_PROFILE_DISABLED).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if disabled {
        return Err(ProfileMiss::None(format!(
            "the aliyun CLI profile is not read ({ENV_CLI_PROFILE_DISABLED}=true)"
        )));
    }
    let Some(path) = aliyun_config_path(lookup) else {
        return Err(ProfileMiss::None(format!(
            "there is no aliyun CLI config ({ENV_CONFIG_FILE} and HOME are not set)"
        )));
    };
    let named = profile
        .filter(|p| !p.is_empty())
        .map(|p| (p.to_owned(), "--profile"))
        .or_else(|| {
            lookup(ENV_PROFILE)
                .filter(|p| !p.is_empty())
                .map(|p| (p, ENV_PROFILE))
        });
    let config = match super::credentials::read_aliyun_config(&path) {
        Ok(config) => config,
        Err(CredentialsError::ConfigNotFound { .. }) if named.is_none() => {
            return Err(ProfileMiss::None(format!(
                "there is no aliyun CLI config at {}",
                path.display()
            )));
        }
        Err(e) => {
            return Err(ProfileMiss::Unusable(match &named {
                Some((p, by)) => format!("profile `{p}` (named by {by}) cannot be read: {e}"),
                None => format!("the aliyun CLI config cannot be read: {e}"),
            }));
        }
    };
    let name = named
        .as_ref()
        .map(|(p, _)| p.clone())
        .or_else(|| config.current.clone().filter(|p| !p.is_empty()))
        .unwrap_or_else(|| "default".to_owned());
    let Some(found) = config.profiles.iter().find(|p| p.name == name) else {
        let why = format!("profile `{name}` is not in {}", path.display());
        return Err(match named {
            Some((_, by)) => ProfileMiss::Unusable(format!("{why} (named by {by})")),
            None => ProfileMiss::None(why),
        });
    };
    match found.region_id.as_deref().map(str::trim) {
        Some(region) if is_region_id(region) => Ok(DefaultRegion {
            region: region.to_owned(),
            source: RegionSource::Profile,
            profile: Some(name),
        }),
        Some(region) if !region.is_empty() => Err(ProfileMiss::Unusable(format!(
            "the region_id `{}` of profile `{name}` in {} is not a region id such as `cn-hangzhou`",
            crate::safe_text::escape(region),
            path.display()
        ))),
        _ => Err(ProfileMiss::None(format!(
            "profile `{name}` in {} has no region_id",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<&str, String> = pairs.into_iter().collect();
        move |name| map.get(name).cloned()
    }

    fn config(dir: &Path, current: &str, profiles: &[(&str, Option<&str>)]) -> String {
        let profiles: Vec<serde_json::Value> = profiles
            .iter()
            .map(|(name, region)| {
                let mut p = serde_json::json!({"name": name, "mode": "AK",
                    "access_key_id": "LTAIexample", "access_key_secret": "s"});
                if let Some(r) = region {
                    p["region_id"] = serde_json::json!(r);
                }
                p
            })
            .collect();
        let path = dir.join("config.json");
        std::fs::write(
            &path,
            serde_json::json!({"current": current, "profiles": profiles}).to_string(),
        )
        .unwrap();
        path.display().to_string()
    }

    proptest::proptest! {
        /// Over every combination of the sources: the variable wins when
        /// set, else the region of the profile in use (flag, else
        /// ALIBABA_CLOUD_PROFILE, else `current`), else none with a reason.
        #[test]
        fn the_first_source_that_gives_a_region_wins(
            env_region in proptest::option::of(proptest::sample::select(vec!["cn-shanghai", ""])),
            flag in proptest::option::of(proptest::sample::select(vec!["a", "b"])),
            env_profile in proptest::option::of(proptest::sample::select(vec!["a", "b"])),
            current in proptest::sample::select(vec!["a", "b", ""]),
            region_a in proptest::option::of(proptest::sample::select(vec!["cn-beijing", ""])),
            region_b in proptest::option::of(proptest::sample::select(vec!["ap-southeast-1"])),
            disabled in proptest::bool::ANY,
            has_file in proptest::bool::ANY,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = if has_file {
                config(dir.path(), current, &[("a", region_a), ("b", region_b)])
            } else {
                dir.path().join("absent.json").display().to_string()
            };
            let mut pairs = vec![(ENV_CONFIG_FILE, path)];
            if let Some(r) = env_region {
                pairs.push((ENV_REGION_ID, r.to_owned()));
            }
            if let Some(p) = env_profile {
                pairs.push((ENV_PROFILE, p.to_owned()));
            }
            if disabled {
                pairs.push((ENV_CLI_PROFILE_DISABLED, "true".to_owned()));
            }
            let got = default_region(flag, &env(pairs));

            // The expected answer, from the rules.
            let in_use = flag.or(env_profile).unwrap_or(if current.is_empty() { "default" } else { current });
            let named = flag.is_some() || env_profile.is_some();
            let profile_region = match in_use {
                "a" => region_a.filter(|r| !r.is_empty()),
                "b" => region_b,
                _ => None,
            };
            match env_region.filter(|r| !r.is_empty()) {
                Some(r) => {
                    let found = got.unwrap();
                    proptest::prop_assert_eq!(found.region, r);
                    proptest::prop_assert_eq!(found.source, RegionSource::Env);
                }
                None if disabled => {
                    let why = got.unwrap_err();
                    proptest::prop_assert!(why.contains(ENV_CLI_PROFILE_DISABLED), "{}", why);
                }
                None if !has_file => {
                    let why = got.unwrap_err();
                    if named {
                        proptest::prop_assert!(why.contains("cannot be read") && why.contains("absent.json does not exist"), "{}", why);
                    } else {
                        proptest::prop_assert!(why.starts_with("the playbook sets none"), "{}", why);
                        proptest::prop_assert!(why.contains("absent.json"), "{}", why);
                    }
                }
                None => match profile_region {
                    Some(r) => {
                        let found = got.unwrap();
                        proptest::prop_assert_eq!(found.region, r);
                        proptest::prop_assert_eq!(found.source, RegionSource::Profile);
                        proptest::prop_assert_eq!(found.profile.as_deref(), Some(in_use));
                    }
                    None => {
                        let why = got.unwrap_err();
                        proptest::prop_assert!(why.contains(&format!("profile `{in_use}`")), "{}", why);
                        proptest::prop_assert!(why.contains(ENV_REGION_ID), "{}", why);
                    }
                },
            }
        }
    }

    #[test]
    fn a_region_that_is_set_but_wrong_is_an_error_naming_where() {
        let dir = tempfile::tempdir().unwrap();
        let path = config(dir.path(), "p", &[("p", Some("Hangzhou"))]);
        let why = default_region(
            None,
            &env(vec![(ENV_REGION_ID, "cn hangzhou\u{1b}[2J".to_owned())]),
        )
        .unwrap_err();
        assert_eq!(
            why,
            "ALIBABA_CLOUD_REGION_ID is `cn hangzhou\\u001b[2J`, not a region id such as `cn-hangzhou`"
        );
        let why = default_region(None, &env(vec![(ENV_CONFIG_FILE, path.clone())])).unwrap_err();
        assert_eq!(
            why,
            format!(
                "the region_id `Hangzhou` of profile `p` in {path} is not a region id such as `cn-hangzhou`"
            )
        );
        let why =
            default_region(Some("nope"), &env(vec![(ENV_CONFIG_FILE, path.clone())])).unwrap_err();
        assert_eq!(
            why,
            format!("profile `nope` is not in {path} (named by --profile)")
        );
    }

    #[test]
    fn it_says_where_it_came_from() {
        let env_region = DefaultRegion {
            region: "cn-shanghai".to_owned(),
            source: RegionSource::Env,
            profile: None,
        };
        assert_eq!(
            env_region.to_string(),
            "cn-shanghai (from ALIBABA_CLOUD_REGION_ID)"
        );
        assert_eq!(
            serde_json::to_string(&env_region).unwrap(),
            r#"{"region":"cn-shanghai","source":"env"}"#
        );
        let profile = DefaultRegion {
            region: "cn-beijing".to_owned(),
            source: RegionSource::Profile,
            profile: Some("prod".to_owned()),
        };
        assert_eq!(
            profile.to_string(),
            "cn-beijing (from the region_id of aliyun CLI profile `prod`)"
        );
        assert_eq!(
            serde_json::to_string(&profile).unwrap(),
            r#"{"region":"cn-beijing","source":"profile","profile":"prod"}"#
        );
    }
}
