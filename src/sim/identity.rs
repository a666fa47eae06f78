//! Who signs: the simulator's key store. Every AccessKey it accepts belongs
//! to a principal (a RAM user of an account, or a role session STS issued),
//! and the temporary keys it issued carry a SecurityToken and an expiry it
//! checks on every request.
//!
//! The fixtures say which long-term keys exist and whose they are, which
//! roles exist and who may assume them (see [`IdentityFixtures`]). The key
//! pair a simulator is started with (`runbook sim`'s environment, `run
//! --sim`'s generated pair) belongs to the RAM user `sim` of account
//! [`SIM_ACCOUNT`].
//!
//! [`Keys::caller`] is the one lookup every signature check uses: it finds
//! the key, checks its SecurityToken and expiry, and returns the secret to
//! verify the signature with and the principal the request acts as.

use std::collections::HashMap;
use std::time::Duration;

use super::handlers::{Ctx, Reply, gateway_error};

/// The account of the simulator's own key pair.
pub const SIM_ACCOUNT: &str = "1000000000000001";
/// The longest session STS issues when a role names no maximum (1 hour, as
/// a RAM role's default).
pub(crate) const DEFAULT_MAX_SESSION: Duration = Duration::from_secs(3600);

/// A long-term key pair and whose it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserFixture {
    /// `AccessKeyId`.
    pub access_key_id: String,
    /// `AccessKeySecret`.
    pub access_key_secret: String,
    /// `acs:ram::ACCOUNT:user/NAME` (or `acs:ram::ACCOUNT:root`).
    pub arn: String,
}

/// A RAM role and its trust policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleFixture {
    /// `acs:ram::ACCOUNT:role/NAME`.
    pub arn: String,
    /// Who may assume it: principal ARNs (`acs:ram::1:user/ops`, a role ARN
    /// for its sessions, `acs:ram::1:root` for a whole account), OIDC
    /// provider ARNs (`acs:ram::1:oidc-provider/ack`), `ecs` (the instance
    /// role) or `*` (anyone).
    pub trusted: Vec<String>,
    /// The longest session (`DurationSeconds`) it allows.
    pub max_session: Duration,
}

/// The identities of a simulator (fixtures key `identities`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentityFixtures {
    /// Long-term keys besides the simulator's own pair.
    pub users: Vec<UserFixture>,
    /// Roles that exist.
    pub roles: Vec<RoleFixture>,
    /// The name of the instance RAM role the metadata endpoint serves; a
    /// role of that name must be in `roles`.
    pub ecs_role: Option<String>,
    /// Whether the metadata endpoint refuses requests without a session
    /// token (IMDSv2 only, "hardened mode").
    pub imds_token_required: bool,
    /// The role whose credentials `GET /credentials` serves (the
    /// credentials URI of the default chain).
    pub credentials_uri_role: Option<String>,
    /// Caps the lifetime of every credential issued (short-lived credentials
    /// for refresh tests); `None`: the `DurationSeconds` asked for.
    pub session_lifetime: Option<Duration>,
}

/// Who a request acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Principal {
    /// `acs:ram::ACCOUNT:user/NAME`, `acs:ram::ACCOUNT:root` or
    /// `acs:ram::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub(crate) arn: String,
    pub(crate) account_id: String,
    /// `RAMUser`, `Account` or `AssumedRoleUser`.
    pub(crate) identity_type: &'static str,
    /// For a role session: the role's ARN.
    pub(crate) role_arn: Option<String>,
    /// A stable numeric-looking id of the user or role.
    pub(crate) principal_id: String,
}

impl Principal {
    /// The principal of a user (or root) ARN.
    pub(crate) fn user(arn: &str) -> Principal {
        let account_id = account_of(arn).unwrap_or(SIM_ACCOUNT).to_owned();
        let identity_type = if arn.ends_with(":root") {
            "Account"
        } else {
            "RAMUser"
        };
        Principal {
            arn: arn.to_owned(),
            principal_id: stable_id(arn),
            account_id,
            identity_type,
            role_arn: None,
        }
    }

    /// A session of `role_arn` named `session`.
    pub(crate) fn session(role_arn: &str, session: &str) -> Principal {
        let account_id = account_of(role_arn).unwrap_or(SIM_ACCOUNT).to_owned();
        let name = role_arn.rsplit('/').next().unwrap_or(role_arn);
        Principal {
            arn: format!("acs:ram::{account_id}:assumed-role/{name}/{session}"),
            principal_id: format!("{}:{session}", stable_id(role_arn)),
            account_id,
            identity_type: "AssumedRoleUser",
            role_arn: Some(role_arn.to_owned()),
        }
    }

    /// Whether a trust policy entry admits this principal.
    pub(crate) fn trusted_by(&self, entry: &str) -> bool {
        entry == "*"
            || entry == self.arn
            || self.role_arn.as_deref() == Some(entry)
            || entry == format!("acs:ram::{}:root", self.account_id)
    }
}

/// The account id of an `acs:ram::ACCOUNT:...` ARN.
pub(crate) fn account_of(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("acs:ram::")?;
    let (account, _) = rest.split_once(':')?;
    (!account.is_empty() && account.chars().all(|c| c.is_ascii_digit())).then_some(account)
}

/// Whether `arn` is `acs:ram::DIGITS:role/NAME`.
pub(crate) fn is_role_arn(arn: &str) -> bool {
    account_of(arn).is_some()
        && arn
            .split_once(":role/")
            .is_some_and(|(_, name)| !name.is_empty() && !name.contains('/'))
}

/// A 16-digit id derived from a name, so the same user or role always has
/// the same id.
fn stable_id(name: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]));
    format!("{:016}", n % 10_000_000_000_000_000)
}

/// One key the simulator accepts. Deliberately not `Debug` (it holds the
/// secret).
#[derive(Clone)]
pub(crate) struct KeyEntry {
    pub(crate) secret: String,
    /// The SecurityToken of an issued key; `None` for a long-term key.
    pub(crate) token: Option<String>,
    pub(crate) expires: Option<jiff::Timestamp>,
    pub(crate) principal: Principal,
}

/// Every key the simulator accepts: the long-term ones and those STS issued.
#[derive(Default)]
pub(crate) struct Keys {
    entries: HashMap<String, KeyEntry>,
}

impl Keys {
    /// The configured keys: the simulator's own pairs, its own temporary
    /// credentials `(id, secret, token)` (which never expire; both belong
    /// to the user `sim`), and the fixtures' users.
    pub(crate) fn new(
        own: Vec<(String, String)>,
        temporary: Vec<(String, String, String)>,
        users: &[UserFixture],
    ) -> Keys {
        let mut entries = HashMap::new();
        let own_arn = format!("acs:ram::{SIM_ACCOUNT}:user/sim");
        for (id, secret, token) in temporary {
            entries.insert(
                id,
                KeyEntry {
                    secret,
                    token: Some(token),
                    expires: None,
                    principal: Principal::user(&own_arn),
                },
            );
        }
        for (id, secret) in own {
            entries.insert(
                id,
                KeyEntry {
                    secret,
                    token: None,
                    expires: None,
                    principal: Principal::user(&own_arn),
                },
            );
        }
        for user in users {
            entries.insert(
                user.access_key_id.clone(),
                KeyEntry {
                    secret: user.access_key_secret.clone(),
                    token: None,
                    expires: None,
                    principal: Principal::user(&user.arn),
                },
            );
        }
        Keys { entries }
    }

    /// Issues temporary credentials for `principal`, valid until `expires`:
    /// `(AccessKeyId, AccessKeySecret, SecurityToken)`.
    pub(crate) fn issue(
        &mut self,
        principal: Principal,
        expires: jiff::Timestamp,
        now: jiff::Timestamp,
    ) -> (String, String, String) {
        // Expired issued keys are forgotten after a grace period, so a long
        // simulation does not grow without bound (and an old key still gets
        // "expired" rather than "not found" for a while).
        let grace = jiff::SignedDuration::from_secs(3600);
        self.entries.retain(|_, e| {
            e.expires
                .is_none_or(|exp| exp.checked_add(grace).is_ok_and(|t| t > now))
        });
        let id = format!("STS.{}", uuid::Uuid::new_v4().simple());
        let secret = format!("{}", uuid::Uuid::new_v4().simple());
        let token = format!(
            "CAIS{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        self.entries.insert(
            id.clone(),
            KeyEntry {
                secret: secret.clone(),
                token: Some(token.clone()),
                expires: Some(expires),
                principal,
            },
        );
        (id, secret, token)
    }

    /// The one credential lookup of every signed request: the key named by
    /// `key_id`, checked against the `SecurityToken` sent (`token`, empty
    /// when none) and its expiry at `ctx.now`. On success, the secret to
    /// verify the signature with and the principal.
    #[expect(
        clippy::result_large_err,
        reason = "the error is the answer itself, moved once per refused request"
    )]
    pub(crate) fn caller(
        &self,
        key_id: &str,
        token: &str,
        ctx: &Ctx<'_>,
    ) -> Result<KeyEntry, Reply> {
        let Some(entry) = self.entries.get(key_id) else {
            return Err(gateway_error(
                ctx,
                404,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.".to_owned(),
            ));
        };
        match (&entry.token, token) {
            // A token sent with a long-term key is not looked at (the
            // simulator's own pair stands for any credentials a test signs
            // with, temporary ones included).
            (None, _) => {}
            (Some(_), "") => {
                return Err(gateway_error(
                    ctx,
                    400,
                    "MissingSecurityToken",
                    "SecurityToken is mandatory for this action: the AccessKey is a temporary (STS) one."
                        .to_owned(),
                ));
            }
            (Some(expected), given) => {
                if !crate::cloud::signer::signatures_equal(expected, given) {
                    return Err(gateway_error(
                        ctx,
                        400,
                        "InvalidSecurityToken.MismatchWithAccessKey",
                        "Specified SecurityToken mismatch with the AccessKey.".to_owned(),
                    ));
                }
            }
        }
        if let Some(expires) = entry.expires
            && ctx.now.wall >= expires
        {
            return Err(gateway_error(
                ctx,
                400,
                "InvalidSecurityToken.Expired",
                format!(
                    "Specified SecurityToken is expired (it expired at {}).",
                    expires.strftime("%Y-%m-%dT%H:%M:%SZ")
                ),
            ));
        }
        Ok(entry.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_and_trust() {
        let ops = Principal::user("acs:ram::1111:user/ops");
        assert_eq!(ops.account_id, "1111");
        assert_eq!(ops.identity_type, "RAMUser");
        assert!(ops.trusted_by("acs:ram::1111:user/ops"));
        assert!(ops.trusted_by("acs:ram::1111:root"));
        assert!(ops.trusted_by("*"));
        assert!(!ops.trusted_by("acs:ram::2222:root"));
        let s = Principal::session("acs:ram::2222:role/maint", "nightly");
        assert_eq!(s.arn, "acs:ram::2222:assumed-role/maint/nightly");
        assert_eq!(s.identity_type, "AssumedRoleUser");
        assert!(s.trusted_by("acs:ram::2222:role/maint"));
        assert!(is_role_arn("acs:ram::2222:role/maint"));
        assert!(!is_role_arn("acs:ram::2222:user/maint"));
        assert!(!is_role_arn("acs:ram::x:role/maint"));
        assert_eq!(stable_id("a"), stable_id("a"));
        assert_ne!(stable_id("a"), stable_id("b"));
    }
}
