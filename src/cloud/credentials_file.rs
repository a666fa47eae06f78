//! The credentials file of Alibaba's credentials libraries: an INI file
//! read between the aliyun CLI's profile and the ECS instance role in their
//! default chain (credentials-go `providers/profile.go` @9ac55b4,
//! credentials-python `provider/profile.py` @0e6d313, 1.0.12).
//!
//! Where: `ALIBABA_CLOUD_CREDENTIALS_FILE`, else
//! `~/.alibabacloud/credentials` (credentials-go's name), else
//! `~/.alibabacloud/credentials.ini` (credentials-python's). Which section:
//! `ALIBABA_CLOUD_PROFILE`, else `default`. Its `type`:
//!
//! | type | keys (optional in brackets) |
//! |---|---|
//! | `access_key` | `access_key_id`, `access_key_secret` |
//! | `ecs_ram_role` | \[`role_name`\] (else asked of the metadata service) |
//! | `ram_role_arn` | `access_key_id`, `access_key_secret`, `role_arn`, \[`role_session_name`\], \[`policy`\] |
//! | `oidc_role_arn` | `role_arn`, `oidc_provider_arn`, `oidc_token_file_path`, \[`role_session_name`\], \[`policy`\] (credentials-python only) |
//!
//! Roles are assumed for 3600 s, as both libraries do. `rsa_key_pair`
//! (STS `GenerateSessionAccessKey`, the Japan site only, gone from
//! credentials-go's chain) is refused with the supported types.
//!
//! The format is what both parsers accept: `[section]` lines, `key = value`
//! or `key: value`, whole-line comments starting with `#` or `;`, and a `#`
//! ending a value (credentials-python cuts values there). Keys are read
//! without regard to case (configparser lowercases them). A line that is
//! none of these, a key outside a section, or a section or key given twice is
//! an error at its line. Unlike the libraries, a section that is there but
//! lacks a key its type needs (or has it empty) is an error naming the
//! file, the line and the key, not a reason to try the next source; no
//! error quotes a value.

use std::path::{Path, PathBuf};

use super::credentials::{CredentialSource, Credentials, CredentialsError, ENV_PROFILE};
use super::provider::CredentialsProvider;
use super::sts::RoleRequest;

/// Another path for the credentials file.
pub const ENV_CREDENTIALS_FILE: &str = "ALIBABA_CLOUD_CREDENTIALS_FILE";
/// credentials-go's file, relative to `$HOME`.
pub const FILE_RELATIVE: &str = ".alibabacloud/credentials";
/// credentials-python's file, relative to `$HOME`.
pub const INI_FILE_RELATIVE: &str = ".alibabacloud/credentials.ini";
/// How long the libraries ask STS for a role session from this file.
pub const ROLE_DURATION_SECS: u64 = 3600;

/// The types runbook reads.
const TYPES: &str = "access_key, ecs_ram_role, ram_role_arn, oidc_role_arn";

/// One `[section]`.
#[derive(Debug)]
pub(crate) struct Section {
    name: String,
    line: usize,
    /// `(lowercased key, value, line)`.
    entries: Vec<(String, String, usize)>,
}

impl Section {
    fn get(&self, key: &str) -> Option<(&str, usize)> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, line)| (v.as_str(), *line))
    }
}

/// Parses INI text. Errors are `(line, what)`, never quoting a value.
pub(crate) fn parse(text: &str) -> Result<Vec<Section>, (usize, String)> {
    let mut sections: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']').map(str::trim) else {
                return Err((line, "a section header must end with `]`".to_owned()));
            };
            if name.is_empty() {
                return Err((line, "a section needs a name".to_owned()));
            }
            if let Some(first) = sections.iter().find(|s| s.name == name) {
                return Err((
                    line,
                    format!("section [{name}] again (first at line {})", first.line),
                ));
            }
            sections.push(Section {
                name: name.to_owned(),
                line,
                entries: Vec::new(),
            });
            continue;
        }
        let Some(at) = trimmed.find(['=', ':']) else {
            return Err((
                line,
                "expected `[section]`, `key = value` or a comment".to_owned(),
            ));
        };
        let key = trimmed[..at].trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err((line, "a value without a key".to_owned()));
        }
        let value = trimmed[at + 1..].split('#').next().unwrap_or("").trim();
        let Some(section) = sections.last_mut() else {
            return Err((line, format!("key `{key}` is outside any [section]")));
        };
        if let Some((_, _, first)) = section.entries.iter().find(|(k, _, _)| *k == key) {
            return Err((
                line,
                format!(
                    "key `{key}` again in [{}] (first at line {first})",
                    section.name
                ),
            ));
        }
        section.entries.push((key, value.to_owned(), line));
    }
    Ok(sections)
}

/// Where the credentials file is: `ALIBABA_CLOUD_CREDENTIALS_FILE`, else the
/// first of `~/.alibabacloud/credentials` and `~/.alibabacloud/credentials.ini`
/// that exists (else the first, to name in messages); `None` without HOME.
pub fn path(lookup: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(p) = lookup(ENV_CREDENTIALS_FILE).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let home = lookup("HOME").filter(|h| !h.is_empty())?;
    let go = Path::new(&home).join(FILE_RELATIVE);
    let python = Path::new(&home).join(INI_FILE_RELATIVE);
    Some(if !go.exists() && python.exists() {
        python
    } else {
        go
    })
}

/// What the credentials file gives.
pub(crate) enum FileSource {
    /// A provider from the section.
    Found(Box<CredentialsProvider>),
    /// Nothing (no file, no such section): why, for the list of sources tried.
    Absent(String),
}

/// The provider of the credentials file's section in use (see the module
/// docs). `metadata` is the metadata service for `ecs_ram_role`,
/// `session_name` names role sessions when the section does not.
///
/// # Errors
///
/// [`CredentialsError::CredentialsFile`] naming the file, the line and what
/// is wrong: unreadable, not INI, an unknown or missing `type`, a key the
/// type needs missing or empty.
pub(crate) fn source(
    lookup: &dyn Fn(&str) -> Option<String>,
    metadata: impl FnOnce() -> Result<(String, bool), CredentialsError>,
    session_name: &dyn Fn() -> String,
) -> Result<FileSource, CredentialsError> {
    let Some(path) = path(lookup) else {
        return Ok(FileSource::Absent(format!(
            "credentials file: HOME and {ENV_CREDENTIALS_FILE} are not set"
        )));
    };
    let error = |line: usize, reason: String| CredentialsError::CredentialsFile {
        path: path.clone(),
        line,
        reason,
    };
    let text = match crate::limits::read_text(&path, crate::limits::CONFIG_BYTES) {
        Ok(text) => text,
        Err(crate::limits::ReadError::NotFound) => {
            return Ok(FileSource::Absent(format!(
                "credentials file {}: no such file",
                path.display()
            )));
        }
        Err(e) => return Err(error(0, e.to_string())),
    };
    let sections = parse(&text).map_err(|(line, what)| error(line, what))?;
    let wanted = lookup(ENV_PROFILE)
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    let Some(section) = sections.iter().find(|s| s.name == wanted) else {
        return Ok(FileSource::Absent(format!(
            "credentials file {}: no section [{wanted}]",
            path.display()
        )));
    };
    let source = CredentialSource::CredentialsFile {
        path: path.clone(),
        section: wanted.clone(),
    };
    let need = |key: &str| -> Result<String, CredentialsError> {
        match section.get(key) {
            Some((v, _)) if !v.is_empty() => Ok(v.to_owned()),
            Some((_, line)) => Err(error(
                line,
                format!("`{key}` of section [{wanted}] is empty"),
            )),
            None if key == "type" => Err(error(
                section.line,
                format!("section [{wanted}] has no `type` (one of {TYPES})"),
            )),
            None => Err(error(
                section.line,
                format!("section [{wanted}] has no `{key}`, which its type needs"),
            )),
        }
    };
    let optional = |key: &str| {
        section
            .get(key)
            .map(|(v, _)| v.to_owned())
            .filter(|v| !v.is_empty())
    };
    let role = |role_arn: String| RoleRequest {
        role_arn,
        session_name: optional("role_session_name").unwrap_or_else(session_name),
        duration_secs: ROLE_DURATION_SECS,
        external_id: None,
        policy: optional("policy"),
    };
    let kind = need("type")?;
    let provider = match kind.as_str() {
        "access_key" => CredentialsProvider::fixed(
            Credentials::new(need("access_key_id")?, need("access_key_secret")?, None)
                .with_source(source),
        ),
        "ecs_ram_role" => {
            let (metadata, imdsv1_disabled) = metadata()?;
            CredentialsProvider::ecs(metadata, optional("role_name"), imdsv1_disabled)
        }
        "ram_role_arn" => {
            let base = Credentials::new(need("access_key_id")?, need("access_key_secret")?, None)
                .with_source(source);
            CredentialsProvider::assume_role(
                std::sync::Arc::new(CredentialsProvider::fixed(base)),
                role(need("role_arn")?),
            )
        }
        "oidc_role_arn" => CredentialsProvider::oidc(
            role(need("role_arn")?),
            need("oidc_provider_arn")?,
            need("oidc_token_file_path")?,
        ),
        other => {
            let line = section.get("type").map_or(section.line, |(_, l)| l);
            let what = if other == "rsa_key_pair" {
                "type `rsa_key_pair` (STS GenerateSessionAccessKey, Japan site only) is not supported".to_owned()
            } else {
                format!("unknown type `{}`", crate::safe_text::escape(other))
            };
            return Err(error(line, format!("{what}; types: {TYPES}")));
        }
    };
    Ok(FileSource::Found(Box::new(provider)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_both_libraries_read() {
        let s = parse(
            "# comment\n; another\n\n[default]\ntype = access_key\nAccess_Key_Id: LTAI # trailing\n  access_key_secret =  s  \n[other]\nk=\n",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].name.as_str(), s[0].line), ("default", 4));
        assert_eq!(s[0].get("type"), Some(("access_key", 5)));
        assert_eq!(s[0].get("access_key_id"), Some(("LTAI", 6)));
        assert_eq!(s[0].get("access_key_secret"), Some(("s", 7)));
        assert_eq!(s[1].get("k"), Some(("", 9)));
    }

    #[test]
    fn bad_lines_are_errors_at_their_line_without_their_value() {
        let cases = [
            ("[a\n", 1, "a section header must end with `]`"),
            ("[]\n", 1, "a section needs a name"),
            ("k = v\n", 1, "key `k` is outside any [section]"),
            (
                "[a]\nLTAIsecretvalue\n",
                2,
                "expected `[section]`, `key = value` or a comment",
            ),
            ("[a]\n= v\n", 2, "a value without a key"),
            ("[a]\n[a]\n", 2, "section [a] again (first at line 1)"),
            (
                "[a]\nk=1\nK=2\n",
                3,
                "key `k` again in [a] (first at line 2)",
            ),
        ];
        for (text, line, what) in cases {
            assert_eq!(
                parse(text).unwrap_err(),
                (line, what.to_owned()),
                "{text:?}"
            );
        }
    }

    proptest::proptest! {
        /// Any text: parsed or refused at a line of it, never a panic, and an
        /// error never quotes a value (`S3CR3T` only ever follows a `=`).
        #[test]
        fn any_text_parses_or_is_refused_at_a_line(text in "([\\[\\]a-z=:#; \\n]|=S3CR3T){0,60}") {
            let lines: Vec<&str> = text.lines().collect();
            match parse(&text) {
                Ok(sections) => {
                    for s in &sections {
                        proptest::prop_assert!(s.line >= 1 && s.line <= lines.len());
                    }
                }
                Err((line, what)) => {
                    proptest::prop_assert!(line >= 1 && line <= lines.len().max(1));
                    let header = lines.get(line - 1).is_some_and(|l| l.trim_start().starts_with('['));
                    proptest::prop_assert!(header || !what.contains("S3CR3T"), "{}", what);
                }
            }
        }
    }
}
