//! STS (`2015-04-01`) on the wire: the requests the credential providers
//! send and the answers they read, as Alibaba's credentials libraries
//! (`credentials-go`, `alibabacloud-credentials` for Python) send and read them.
//!
//! | action | signed | parameters (form body) |
//! |---|---|---|
//! | `AssumeRole` | yes (the caller's key) | `RoleArn`, `RoleSessionName`, `DurationSeconds`, `ExternalId`?, `Policy`? |
//! | `AssumeRoleWithOIDC` | no | `RoleArn`, `OIDCProviderArn`, `OIDCToken`, `RoleSessionName`, `DurationSeconds` |
//! | `GetCallerIdentity` | yes | none |
//!
//! Answers: `Credentials: {AccessKeyId, AccessKeySecret, SecurityToken,
//! Expiration}` (`Expiration` as `2006-01-02T15:04:05Z`) and
//! `{AccountId, Arn, IdentityType, PrincipalId, RequestId, ...}`.
//!
//! Where STS is: `RUNBOOK_STS_ENDPOINT` (a URL: runbook's own override, for
//! the simulator; the libraries take an endpoint only in code), else
//! `sts[-vpc].REGION.aliyuncs.com` when `ALIBABA_CLOUD_STS_REGION` is set
//! (`-vpc` when `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=true`), else
//! `sts.aliyuncs.com`, exactly as the libraries compute it.

use std::collections::BTreeMap;

use serde_json::Value;

use super::actions::Risk;
use super::credentials::{CredentialSource, Credentials, CredentialsError};
use super::{ActionRequest, ApiResponse};

/// Product code of STS.
pub const PRODUCT: &str = "sts";
/// API version of STS.
pub const VERSION: &str = "2015-04-01";
/// The region of the STS endpoint (the libraries' variable).
pub const ENV_STS_REGION: &str = "ALIBABA_CLOUD_STS_REGION";
/// `true`: the VPC endpoint `sts-vpc.REGION.aliyuncs.com` (the libraries' variable).
pub const ENV_VPC_ENDPOINT: &str = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED";
/// runbook's own override of the whole STS endpoint (a URL).
pub const ENV_STS_ENDPOINT: &str = "RUNBOOK_STS_ENDPOINT";
/// The session length runbook asks for (the libraries' default).
pub const DEFAULT_DURATION_SECS: u64 = 3600;

/// Who a key acts as, from `GetCallerIdentity`. Holds no secret.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallerIdentity {
    /// `acs:ram::ACCOUNT:user/NAME`, `acs:ram::ACCOUNT:assumed-role/ROLE/SESSION`, ...
    pub arn: String,
    /// The account id.
    pub account_id: String,
    /// `RAMUser`, `AssumedRoleUser`, `Account`.
    pub identity_type: String,
    /// The RequestId of the `GetCallerIdentity` answer.
    pub request_id: Option<String>,
}

/// Where STS is, from the environment (see the module docs).
///
/// # Errors
///
/// `RUNBOOK_STS_ENDPOINT` is not an `http(s)://HOST[:PORT]` URL, or
/// `ALIBABA_CLOUD_STS_REGION` is not a region id.
pub fn endpoint(lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, CredentialsError> {
    let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
    if let Some(url) = get(ENV_STS_ENDPOINT) {
        return base_url(&url).ok_or(CredentialsError::Invalid {
            source_name: "STS endpoint".to_owned(),
            variable: ENV_STS_ENDPOINT.to_owned(),
            reason: "expected http(s)://HOST[:PORT]".to_owned(),
        });
    }
    let vpc = get(ENV_VPC_ENDPOINT).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    match get(ENV_STS_REGION) {
        Some(region) if super::endpoint::is_region_id(&region) => {
            let prefix = if vpc { "sts-vpc" } else { "sts" };
            Ok(format!("https://{prefix}.{region}.aliyuncs.com"))
        }
        Some(_) => Err(CredentialsError::Invalid {
            source_name: "STS endpoint".to_owned(),
            variable: ENV_STS_REGION.to_owned(),
            reason: "not a region id such as cn-hangzhou".to_owned(),
        }),
        None => Ok("https://sts.aliyuncs.com".to_owned()),
    }
}

/// Whether `arn` is a RAM role ARN: `acs:ram::ACCOUNT:role/NAME` (the
/// account all digits; the name letters, digits and `.@-_`, maybe behind
/// a path).
pub fn is_role_arn(arn: &str) -> bool {
    role_account(arn).is_some()
}

/// The account a RAM role ARN belongs to (`acs:ram::ACCOUNT:role/NAME`),
/// when `arn` is one.
pub fn role_account(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("acs:ram::")?;
    let (account, name) = rest.split_once(":role/")?;
    let valid = is_role_parts(account, name);
    valid.then_some(account)
}

/// A fingerprint of an account id (from STS `GetCallerIdentity`, or the
/// account of a role ARN): SHA-256, the first 16 hex digits. Enough to tell
/// two accounts apart in the journal without naming them.
pub fn account_fingerprint(account_id: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(account_id.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn is_role_parts(account: &str, name: &str) -> bool {
    !account.is_empty()
        && account.chars().all(|c| c.is_ascii_digit())
        && !name.is_empty()
        && name.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '-' | '_'))
        })
}

/// `scheme://host[:port]` of a URL with nothing else, or `None`.
pub(crate) fn base_url(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let ok = matches!(parsed.scheme(), "http" | "https")
        && parsed.host().is_some()
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && matches!(parsed.path(), "" | "/")
        && parsed.query().is_none()
        && parsed.fragment().is_none();
    ok.then(|| parsed.origin().ascii_serialization())
}

fn request(action: &str, body: BTreeMap<String, String>) -> ActionRequest {
    ActionRequest {
        product: PRODUCT.to_owned(),
        version: VERSION.to_owned(),
        action: action.to_owned(),
        region: String::new(),
        query: BTreeMap::new(),
        body,
        risk: Risk::Read,
        role_arn: None,
        identity: None,
    }
}

/// What to ask `AssumeRole` for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleRequest {
    /// `acs:ram::ACCOUNT:role/NAME`.
    pub role_arn: String,
    /// `RoleSessionName`.
    pub session_name: String,
    /// `DurationSeconds`.
    pub duration_secs: u64,
    /// `ExternalId`, when the role's trust policy asks for one.
    pub external_id: Option<String>,
    /// `Policy`, to narrow the session's permissions.
    pub policy: Option<String>,
}

impl RoleRequest {
    /// A session of `role_arn` named `session_name`, for the default duration.
    pub fn new(role_arn: impl Into<String>, session_name: impl Into<String>) -> RoleRequest {
        RoleRequest {
            role_arn: role_arn.into(),
            session_name: session_name.into(),
            duration_secs: DEFAULT_DURATION_SECS,
            external_id: None,
            policy: None,
        }
    }
}

/// The `AssumeRole` request (signed by the caller).
pub fn assume_role(role: &RoleRequest) -> ActionRequest {
    let mut body = BTreeMap::from([
        ("RoleArn".to_owned(), role.role_arn.clone()),
        ("RoleSessionName".to_owned(), role.session_name.clone()),
        ("DurationSeconds".to_owned(), role.duration_secs.to_string()),
    ]);
    if let Some(id) = role.external_id.as_ref().filter(|v| !v.is_empty()) {
        body.insert("ExternalId".to_owned(), id.clone());
    }
    if let Some(policy) = role.policy.as_ref().filter(|v| !v.is_empty()) {
        body.insert("Policy".to_owned(), policy.clone());
    }
    request("AssumeRole", body)
}

/// The `AssumeRoleWithOIDC` request (anonymous: the OIDC token is the proof).
pub fn assume_role_with_oidc(
    role: &RoleRequest,
    provider_arn: &str,
    oidc_token: &str,
) -> ActionRequest {
    let mut req = assume_role(role);
    req.action = "AssumeRoleWithOIDC".to_owned();
    req.body.remove("ExternalId");
    req.body
        .insert("OIDCProviderArn".to_owned(), provider_arn.to_owned());
    req.body
        .insert("OIDCToken".to_owned(), oidc_token.trim().to_owned());
    req
}

/// The `GetCallerIdentity` request.
pub fn get_caller_identity() -> ActionRequest {
    request("GetCallerIdentity", BTreeMap::new())
}

/// Reads the credentials of an `AssumeRole*` answer (`Credentials`) or of
/// the metadata service and a credentials URI (the same four fields at the
/// top level, with `Code: Success`).
///
/// # Errors
///
/// A field is missing, or `Expiration` is not `YYYY-MM-DDTHH:MM:SSZ`. The
/// message names the field, never a value.
pub fn parse_credentials(body: &Value, source: CredentialSource) -> Result<Credentials, String> {
    let creds = body.get("Credentials").unwrap_or(body);
    if let Some(code) = creds.get("Code").and_then(Value::as_str)
        && code != "Success"
    {
        return Err(format!("the answer's Code is `{code}`, not `Success`"));
    }
    let field = |name: &str| {
        creds
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("the answer has no `{name}`"))
    };
    let id = field("AccessKeyId")?;
    let secret = field("AccessKeySecret")?;
    let token = field("SecurityToken")?;
    let expiration: jiff::Timestamp = field("Expiration")?
        .parse()
        .map_err(|_| "the answer's `Expiration` is not a UTC timestamp".to_owned())?;
    Ok(Credentials::new(id, secret, Some(token.to_owned()))
        .with_expiration(expiration)
        .with_source(source))
}

/// Reads a `GetCallerIdentity` answer.
///
/// # Errors
///
/// `Arn` or `AccountId` is missing.
pub fn parse_caller_identity(resp: &ApiResponse) -> Result<CallerIdentity, String> {
    let field = |name: &str| {
        resp.body
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Ok(CallerIdentity {
        arn: field("Arn").ok_or("the GetCallerIdentity answer has no `Arn`")?,
        account_id: field("AccountId").ok_or("the GetCallerIdentity answer has no `AccountId`")?,
        identity_type: field("IdentityType").unwrap_or_default(),
        request_id: resp.request_id.clone().or_else(|| field("RequestId")),
    })
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

    #[test]
    fn the_endpoint_is_computed_as_the_libraries_do() {
        assert_eq!(endpoint(&env(&[])).unwrap(), "https://sts.aliyuncs.com");
        assert_eq!(
            endpoint(&env(&[(ENV_STS_REGION, "cn-shanghai")])).unwrap(),
            "https://sts.cn-shanghai.aliyuncs.com"
        );
        assert_eq!(
            endpoint(&env(&[
                (ENV_STS_REGION, "cn-shanghai"),
                (ENV_VPC_ENDPOINT, "TRUE")
            ]))
            .unwrap(),
            "https://sts-vpc.cn-shanghai.aliyuncs.com"
        );
        // Without a region the VPC flag changes nothing (as in the libraries).
        assert_eq!(
            endpoint(&env(&[(ENV_VPC_ENDPOINT, "true")])).unwrap(),
            "https://sts.aliyuncs.com"
        );
        assert_eq!(
            endpoint(&env(&[(ENV_STS_ENDPOINT, "http://127.0.0.1:9000/")])).unwrap(),
            "http://127.0.0.1:9000"
        );
        let e = endpoint(&env(&[(ENV_STS_ENDPOINT, "http://h/path")])).unwrap_err();
        assert!(e.to_string().contains(ENV_STS_ENDPOINT), "{e}");
        let e = endpoint(&env(&[(ENV_STS_REGION, "Shanghai!")])).unwrap_err();
        assert!(e.to_string().contains(ENV_STS_REGION), "{e}");
    }

    #[test]
    fn requests_carry_the_libraries_parameters() {
        let role = RoleRequest {
            external_id: Some("ext".into()),
            ..RoleRequest::new("acs:ram::1:role/r", "s1")
        };
        let req = assume_role(&role);
        assert_eq!(
            (req.version.as_str(), req.action.as_str()),
            (VERSION, "AssumeRole")
        );
        assert_eq!(req.body["RoleArn"], "acs:ram::1:role/r");
        assert_eq!(req.body["RoleSessionName"], "s1");
        assert_eq!(req.body["DurationSeconds"], "3600");
        assert_eq!(req.body["ExternalId"], "ext");
        assert!(!req.body.contains_key("Policy"));
        let oidc = assume_role_with_oidc(&role, "acs:ram::1:oidc-provider/p", "tok\n");
        assert_eq!(oidc.action, "AssumeRoleWithOIDC");
        assert_eq!(oidc.body["OIDCToken"], "tok");
        assert!(!oidc.body.contains_key("ExternalId"));
    }

    #[test]
    fn answers_are_read_without_quoting_values() {
        let body = serde_json::json!({"RequestId": "R", "Credentials": {
            "AccessKeyId": "STS.x", "AccessKeySecret": "sec", "SecurityToken": "tok",
            "Expiration": "2030-01-02T03:04:05Z"}});
        let c = parse_credentials(&body, CredentialSource::Explicit).unwrap();
        assert_eq!(c.access_key_id(), "STS.x");
        assert_eq!(
            c.expiration().map(|t| t.to_string()).as_deref(),
            Some("2030-01-02T03:04:05Z")
        );
        let metadata = serde_json::json!({"Code": "Failed", "AccessKeyId": "a"});
        assert!(
            parse_credentials(&metadata, CredentialSource::Explicit)
                .unwrap_err()
                .contains("Failed")
        );
        let bad = serde_json::json!({"Credentials": {"AccessKeyId": "a", "AccessKeySecret": "secret-value", "SecurityToken": "t", "Expiration": "tomorrow"}});
        let e = parse_credentials(&bad, CredentialSource::Explicit).unwrap_err();
        assert!(
            !e.contains("secret-value") && e.contains("Expiration"),
            "{e}"
        );
    }
}
