//! Verified identity: who someone is, established with their own Alibaba
//! Cloud credentials through STS `GetCallerIdentity` (signed like every
//! other call), never from `$USER`. The starter of a run and every
//! approver are verified this way; the journal keeps the ARN, the account
//! and the RequestId of that identity call beside `user@host` (which stays
//! the host/operator label).
//!
//! The credentials are the command's own: the same chain, `--profile`,
//! `--role-arn` and `--sim` target as the command's calls (the client the
//! CLI built). A missing credential fails earlier, when the client is
//! built, naming every source tried.

use crate::cloud::client::RpcClient;
use crate::cloud::principal::Principal;
use crate::cloud::sts::CallerIdentity;
use crate::error::{Error, ExitCode};

/// Who someone is, as STS said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// The ARN STS returned (`acs:ram::1:user/alice`,
    /// `acs:ram::1:assumed-role/ops/alice`).
    pub arn: String,
    /// The account id.
    pub account_id: String,
    /// The principal the ARN stands for (a role whatever its session).
    pub principal: Principal,
    /// The RequestId of the `GetCallerIdentity` call.
    pub request_id: Option<String>,
}

impl VerifiedIdentity {
    /// The identity an answer of `GetCallerIdentity` names.
    ///
    /// # Errors
    ///
    /// The ARN is not a RAM principal's (or names another account than
    /// `AccountId`): the answer cannot be trusted to say who this is.
    pub fn of_caller(c: &CallerIdentity) -> Result<VerifiedIdentity, String> {
        let principal = Principal::of_arn(&c.arn).map_err(|e| {
            format!(
                "STS answered with the ARN `{}`, which runbook cannot read: {e}",
                c.arn
            )
        })?;
        if principal.account_id != c.account_id {
            return Err(format!(
                "STS answered with the ARN `{}` of account {}, but AccountId {}",
                c.arn, principal.account_id, c.account_id
            ));
        }
        Ok(VerifiedIdentity {
            arn: c.arn.clone(),
            account_id: c.account_id.clone(),
            principal,
            request_id: c.request_id.clone(),
        })
    }

    /// The identity recorded in the journal (`arn`, `account_id`,
    /// RequestId), its principal read again from the ARN; `None` when the
    /// ARN does not read (a row not written by runbook).
    pub fn recorded(
        arn: &str,
        account_id: &str,
        request_id: Option<String>,
    ) -> Option<VerifiedIdentity> {
        Some(VerifiedIdentity {
            arn: arn.to_owned(),
            account_id: account_id.to_owned(),
            principal: Principal::of_arn(arn).ok()?,
            request_id,
        })
    }
}

impl std::fmt::Display for VerifiedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.arn)
    }
}

/// Who the credentials of `client` (its own, or `--role-arn`'s) act as:
/// STS `GetCallerIdentity`, signed with them.
///
/// # Errors
///
/// Exit 4: the credentials cannot be had (naming the source), STS refused
/// (its code and RequestId), or its answer does not say who this is.
pub async fn verify(client: &RpcClient) -> Result<VerifiedIdentity, Error> {
    let caller = client.caller_identity(None).await.map_err(|e| {
        Error::new(
            ExitCode::Api,
            format!(
                "cannot verify who you are: STS GetCallerIdentity at {} failed: {e}",
                client.sts_endpoint()
            ),
        )
        .with_hint(
            "approvals and runs are bound to the identity STS gives for your own credentials; check them (`runbook run --help` lists where they are looked for) and that STS is reachable (ALIBABA_CLOUD_STS_ENDPOINT / ALIBABA_CLOUD_STS_REGION)",
        )
    })?;
    VerifiedIdentity::of_caller(&caller).map_err(|m| {
        Error::new(ExitCode::Api, format!("cannot verify who you are: {m}")).with_hint(
            caller
                .request_id
                .as_deref()
                .map(|id| format!("the GetCallerIdentity RequestId was {id}"))
                .unwrap_or_default(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(arn: &str, account: &str) -> CallerIdentity {
        CallerIdentity {
            arn: arn.to_owned(),
            account_id: account.to_owned(),
            identity_type: String::new(),
            request_id: Some("R-1".to_owned()),
        }
    }

    #[test]
    fn an_answer_is_trusted_only_when_its_arn_and_account_agree() {
        let v =
            VerifiedIdentity::of_caller(&caller("acs:ram::7:assumed-role/ops/alice", "7")).unwrap();
        assert_eq!(v.principal.to_string(), "acs:ram::7:role/ops");
        assert_eq!(v.request_id.as_deref(), Some("R-1"));
        let e = VerifiedIdentity::of_caller(&caller("acs:ram::7:user/alice", "8")).unwrap_err();
        assert!(e.contains("AccountId 8"), "{e}");
        let e = VerifiedIdentity::of_caller(&caller("arn:aws:iam::7:user/a", "7")).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }
}
