//! STS (`2015-04-01`) and the credential endpoints of a host: what the
//! default credential chain talks to.
//!
//! - `AssumeRole` (signed): the caller must be trusted by the role; issues
//!   `STS.` credentials for a session of the role.
//! - `AssumeRoleWithOIDC` (anonymous, as the cloud takes it): the
//!   `OIDCProviderArn` must be trusted by the role and an `OIDCToken` given
//!   (its content is not verified: the simulator has no identity provider).
//! - `GetCallerIdentity` (signed): the principal of the signing key.
//! - The ECS metadata service: `PUT /latest/api/token` (header
//!   `X-aliyun-ecs-metadata-token-ttl-seconds`, 1 to 21600) gives a session
//!   token; `GET /latest/meta-data/ram/security-credentials/` lists the
//!   instance role, `.../ROLE` gives its credentials (header
//!   `X-aliyun-ecs-metadata-token`, required when the fixtures say
//!   `imds_token_required`).
//! - `GET /credentials`: the credentials URI of the default chain, for the
//!   fixtures' `credentials_uri_role`.
//!
//! Answers have the cloud's shapes (the STS SDK models):
//! `{RequestId, AssumedRoleUser: {Arn, AssumedRoleId}, Credentials:
//! {AccessKeyId, AccessKeySecret, SecurityToken, Expiration}}` and
//! `{RequestId, AccountId, Arn, IdentityType, PrincipalId, UserId|RoleId}`;
//! the metadata and URI bodies are `{Code: "Success", AccessKeyId,
//! AccessKeySecret, SecurityToken, Expiration, LastUpdated}`.
//!
//! Issued credentials live `DurationSeconds` (default 3600), divided by the
//! simulator's time scale and capped by the fixtures' `session_lifetime`, so
//! a test can watch them expire and be refreshed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{Value, json};

use super::calllog::Outcome;
use super::handlers::{Ctx, Reply, gateway_error};
use super::identity::{
    DEFAULT_MAX_SESSION, IdentityFixtures, KeyEntry, Keys, Principal, RoleFixture, is_role_arn,
};

/// The API version of STS.
pub(crate) const STS_VERSION: &str = "2015-04-01";
/// The public host of STS (the `HostId` of its errors).
pub(crate) const STS_HOST: &str = "sts.aliyuncs.com";
/// The header of a metadata session token.
pub(crate) const IMDS_TOKEN_HEADER: &str = "x-aliyun-ecs-metadata-token";
/// The header asking for a metadata session token's lifetime, in seconds.
pub(crate) const IMDS_TTL_HEADER: &str = "x-aliyun-ecs-metadata-token-ttl-seconds";
/// The session name of instance-role credentials.
const ECS_SESSION: &str = "ecs-instance";

/// The identity service's state: keys, roles, metadata session tokens.
pub(crate) struct Iam {
    pub(crate) keys: Keys,
    roles: Vec<RoleFixture>,
    fixtures: IdentityFixtures,
    /// Create any well-formed role on first use, trusting anyone (`run --sim`).
    auto_roles: bool,
    scale: crate::run::TimeScale,
    imds_tokens: HashMap<String, jiff::Timestamp>,
}

impl Iam {
    pub(crate) fn new(
        own: Vec<(String, String)>,
        temporary: Vec<(String, String, String)>,
        fixtures: IdentityFixtures,
        auto_roles: bool,
        scale: crate::run::TimeScale,
    ) -> Iam {
        Iam {
            keys: Keys::new(own, temporary, &fixtures.users),
            roles: fixtures.roles.clone(),
            fixtures,
            auto_roles,
            scale,
            imds_tokens: HashMap::new(),
        }
    }

    fn role(&mut self, arn: &str) -> Option<RoleFixture> {
        if let Some(role) = self.roles.iter().find(|r| r.arn == arn) {
            return Some(role.clone());
        }
        if self.auto_roles && is_role_arn(arn) {
            let role = RoleFixture {
                arn: arn.to_owned(),
                trusted: vec!["*".to_owned()],
                max_session: Duration::from_secs(12 * 3600),
            };
            self.roles.push(role.clone());
            return Some(role);
        }
        None
    }

    /// When credentials asked to live `asked` expire, from `now`.
    fn expiry(&self, asked: Duration, now: jiff::Timestamp) -> jiff::Timestamp {
        let mut life = self.scale.apply(asked);
        if let Some(cap) = self.fixtures.session_lifetime {
            life = life.min(cap);
        }
        // Whole seconds, as the cloud writes `Expiration`; at least one.
        let secs = i64::try_from(life.as_secs().max(1)).unwrap_or(i64::MAX);
        now.checked_add(jiff::SignedDuration::from_secs(secs))
            .unwrap_or(now)
    }

    fn issue(&mut self, principal: Principal, asked: Duration, now: jiff::Timestamp) -> Value {
        let expires = self.expiry(asked, now);
        let (id, secret, token) = self.keys.issue(principal, expires, now);
        json!({
            "AccessKeyId": id,
            "AccessKeySecret": secret,
            "SecurityToken": token,
            "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        })
    }
}

fn ok(body: Value) -> Reply {
    Reply {
        http: 200,
        body,
        outcome: Outcome::Ok,
        code: None,
        message: None,
        changed: false,
        retry_after: None,
    }
}

fn missing(ctx: &Ctx<'_>, name: &str) -> Reply {
    gateway_error(
        ctx,
        400,
        "MissingParameter",
        format!(
            "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
        ),
    )
}

/// Whether STS answers `action` without a signature.
pub(crate) fn is_anonymous(action: &str) -> bool {
    action == "AssumeRoleWithOIDC"
}

/// The STS actions the simulator serves.
const SERVED: [&str; 3] = ["AssumeRole", "AssumeRoleWithOIDC", "GetCallerIdentity"];

/// `action`, if STS serves it.
pub(crate) fn served_action(action: &str) -> Option<&'static str> {
    SERVED.iter().find(|a| **a == action).copied()
}

/// The STS API, after the gateway checked the signature (`caller` is the
/// signing key; `None` for `AssumeRoleWithOIDC`).
pub(crate) fn handle(
    iam: &mut Iam,
    action: &str,
    params: &BTreeMap<String, String>,
    caller: Option<&KeyEntry>,
    ctx: &Ctx<'_>,
) -> Reply {
    let get = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    match (action, caller) {
        ("GetCallerIdentity", Some(caller)) => {
            let p = &caller.principal;
            let mut body = json!({
                "RequestId": ctx.request_id,
                "AccountId": p.account_id,
                "Arn": p.arn,
                "IdentityType": p.identity_type,
                "PrincipalId": p.principal_id,
            });
            let id_field = if p.role_arn.is_some() {
                "RoleId"
            } else {
                "UserId"
            };
            let id = p
                .principal_id
                .split(':')
                .next()
                .unwrap_or_default()
                .to_owned();
            body[id_field] = Value::String(id);
            ok(body)
        }
        ("AssumeRole", Some(_)) | ("AssumeRoleWithOIDC", None) => {
            let Some(role_arn) = get("RoleArn") else {
                return missing(ctx, "RoleArn");
            };
            let oidc = caller.is_none();
            let session = match get("RoleSessionName") {
                Some(s) => s.to_owned(),
                None if oidc => format!("oidc-{}", &ctx.request_id[..8]),
                None => return missing(ctx, "RoleSessionName"),
            };
            if !(2..=64).contains(&session.len())
                || !session
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '-' | '_'))
            {
                return gateway_error(
                    ctx,
                    400,
                    "InvalidParameter.RoleSessionName",
                    "The parameter RoleSessionName is wrongly formed: 2 to 64 letters, digits, `.`, `@`, `-` or `_`.".to_owned(),
                );
            }
            let asked = match get("DurationSeconds").map(str::parse::<u64>) {
                None => DEFAULT_MAX_SESSION,
                Some(Ok(n)) if n >= 900 => Duration::from_secs(n),
                Some(_) => {
                    return gateway_error(
                        ctx,
                        400,
                        "InvalidParameter.DurationSeconds",
                        "The parameter DurationSeconds is invalid: at least 900.".to_owned(),
                    );
                }
            };
            let Some(role) = iam.role(role_arn) else {
                return gateway_error(
                    ctx,
                    404,
                    "EntityNotExist.Role",
                    format!("The role not exists: {role_arn}."),
                );
            };
            if asked > role.max_session {
                return gateway_error(
                    ctx,
                    400,
                    "InvalidParameter.DurationSeconds",
                    format!(
                        "The Min/Max value of DurationSeconds is 15min/{}s.",
                        role.max_session.as_secs()
                    ),
                );
            }
            let trusted = match caller {
                Some(caller) => role.trusted.iter().any(|t| caller.principal.trusted_by(t)),
                None => {
                    let Some(provider) = get("OIDCProviderArn") else {
                        return missing(ctx, "OIDCProviderArn");
                    };
                    if get("OIDCToken").is_none() {
                        return missing(ctx, "OIDCToken");
                    }
                    role.trusted.iter().any(|t| t == "*" || t == provider)
                }
            };
            if !trusted {
                return gateway_error(
                    ctx,
                    403,
                    "NoPermission",
                    format!(
                        "You are not authorized to do this action. You should be authorized by RAM: the trust policy of {role_arn} does not name the caller."
                    ),
                );
            }
            let principal = Principal::session(role_arn, &session);
            let assumed = json!({
                "Arn": format!("{role_arn}/{session}"),
                "AssumedRoleId": principal.principal_id,
            });
            let credentials = iam.issue(principal, asked, ctx.now.wall);
            let mut body = json!({
                "RequestId": ctx.request_id,
                "AssumedRoleUser": assumed,
                "Credentials": credentials,
            });
            if oidc {
                body["OIDCTokenInfo"] = json!({
                    "Issuer": get("OIDCProviderArn").unwrap_or_default(),
                    "Subject": "system:serviceaccount:runbook:sim",
                    "ClientIds": "sts.aliyuncs.com",
                });
            }
            ok(body)
        }
        _ => gateway_error(
            ctx,
            404,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.".to_owned(),
        ),
    }
}

/// An answer of the metadata service or the credentials URI: a status and
/// a body (JSON or plain text).
pub(crate) struct HostAnswer {
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) json: bool,
    /// Which endpoint, for the call log.
    pub(crate) action: &'static str,
}

fn text(status: u16, body: &str, action: &'static str) -> HostAnswer {
    HostAnswer {
        status,
        body: body.to_owned(),
        json: false,
        action,
    }
}

/// Whether `path` is one of the host credential endpoints.
pub(crate) fn is_host_path(path: &str) -> bool {
    path.starts_with("/latest/") || path == "/credentials"
}

/// The ECS metadata service and the credentials URI.
pub(crate) fn host_endpoint(
    iam: &mut Iam,
    method: &str,
    path: &str,
    header: &dyn Fn(&str) -> Option<String>,
    now: jiff::Timestamp,
) -> HostAnswer {
    const PREFIX: &str = "/latest/meta-data/ram/security-credentials/";
    if path == "/latest/api/token" {
        if method != "PUT" {
            return text(405, "Method Not Allowed", "MetadataToken");
        }
        let ttl = header(IMDS_TTL_HEADER).and_then(|v| v.trim().parse::<u64>().ok());
        let Some(ttl) = ttl.filter(|t| (1..=21600).contains(t)) else {
            return text(
                400,
                "X-aliyun-ecs-metadata-token-ttl-seconds must be 1 to 21600",
                "MetadataToken",
            );
        };
        let token = format!("IMDS{}", uuid::Uuid::new_v4().simple());
        let secs = i64::try_from(ttl).unwrap_or(21600);
        let until = now
            .checked_add(jiff::SignedDuration::from_secs(secs))
            .unwrap_or(now);
        iam.imds_tokens.retain(|_, t| *t > now);
        iam.imds_tokens.insert(token.clone(), until);
        return HostAnswer {
            status: 200,
            body: token,
            json: false,
            action: "MetadataToken",
        };
    }
    if path == "/credentials" {
        if method != "GET" {
            return text(405, "Method Not Allowed", "CredentialsUri");
        }
        let Some(arn) = iam.fixtures.credentials_uri_role.clone() else {
            return text(
                404,
                "no credentials_uri_role in the fixtures",
                "CredentialsUri",
            );
        };
        let principal = Principal::session(&arn, "credentials-uri");
        return host_credentials(iam, principal, now, "CredentialsUri");
    }
    let Some(role) = path.strip_prefix(PREFIX) else {
        return text(404, "Not Found", "Metadata");
    };
    if method != "GET" {
        return text(405, "Method Not Allowed", "Metadata");
    }
    match header(IMDS_TOKEN_HEADER) {
        Some(token)
            if iam
                .imds_tokens
                .get(&token)
                .is_none_or(|until| *until <= now) =>
        {
            return text(
                401,
                "Unauthorized: invalid or expired metadata token",
                "Metadata",
            );
        }
        Some(_) => {}
        None if iam.fixtures.imds_token_required => {
            return text(
                403,
                "Forbidden: this instance requires a metadata token (IMDSv2)",
                "Metadata",
            );
        }
        None => {}
    }
    let Some(ecs_role) = iam.fixtures.ecs_role.clone() else {
        return text(404, "Not Found: the instance has no RAM role", "Metadata");
    };
    if role.is_empty() {
        return HostAnswer {
            status: 200,
            body: ecs_role,
            json: false,
            action: "MetadataRoleName",
        };
    }
    if role != ecs_role {
        return text(404, "Not Found", "MetadataCredentials");
    }
    let Some(arn) = iam
        .roles
        .iter()
        .find(|r| r.arn.rsplit('/').next() == Some(role))
        .map(|r| r.arn.clone())
    else {
        return text(404, "Not Found", "MetadataCredentials");
    };
    let principal = Principal::session(&arn, ECS_SESSION);
    host_credentials(iam, principal, now, "MetadataCredentials")
}

fn host_credentials(
    iam: &mut Iam,
    principal: Principal,
    now: jiff::Timestamp,
    action: &'static str,
) -> HostAnswer {
    // The instance role's credentials live 6 hours on ECS.
    let mut credentials = iam.issue(principal, Duration::from_secs(6 * 3600), now);
    credentials["Code"] = json!("Success");
    credentials["LastUpdated"] = json!(now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    HostAnswer {
        status: 200,
        body: credentials.to_string(),
        json: true,
        action,
    }
}
