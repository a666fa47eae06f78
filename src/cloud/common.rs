//! Alibaba's common request parameters: the ones every RPC call carries
//! besides the API's own. This is their one list: the signer adds them, the
//! client keeps an API parameter from overriding them, the plan previews
//! them and the simulator's gateway requires them.
//!
//! `RegionId` is not among them here: only some APIs take it, so the action
//! catalogue says which ([`super::actions::ActionSpec::region_param`]).

/// One common request parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Common {
    /// The API's name, e.g. `StopDtsJob`.
    Action,
    /// The API version, e.g. `2020-01-01`.
    Version,
    /// The answer's format; runbook always asks for `JSON`.
    Format,
    /// The AccessKey id (an `STS.` id with temporary credentials).
    AccessKeyId,
    /// `HMAC-SHA1`.
    SignatureMethod,
    /// `1.0`.
    SignatureVersion,
    /// Unique per attempt; the gateway refuses a nonce it has seen.
    SignatureNonce,
    /// When the attempt was signed, ISO 8601 in UTC.
    Timestamp,
    /// The STS token, only with temporary credentials.
    SecurityToken,
    /// The signature over every other parameter.
    Signature,
}

/// Every common parameter, in the order the gateway checks them.
pub const ALL: &[Common] = &[
    Common::Action,
    Common::Version,
    Common::Format,
    Common::AccessKeyId,
    Common::SignatureMethod,
    Common::SignatureVersion,
    Common::SignatureNonce,
    Common::Timestamp,
    Common::SecurityToken,
    Common::Signature,
];

impl Common {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Common::Action => "Action",
            Common::Version => "Version",
            Common::Format => "Format",
            Common::AccessKeyId => "AccessKeyId",
            Common::SignatureMethod => "SignatureMethod",
            Common::SignatureVersion => "SignatureVersion",
            Common::SignatureNonce => "SignatureNonce",
            Common::Timestamp => "Timestamp",
            Common::SecurityToken => "SecurityToken",
            Common::Signature => "Signature",
        }
    }

    /// Whether the gateway refuses a request without it (`MissingParameter`).
    /// `Format` defaults to XML and `SecurityToken` comes only with STS
    /// credentials.
    pub fn required(self) -> bool {
        !matches!(self, Common::Format | Common::SecurityToken)
    }
}

/// Whether `name` is a common parameter (which an API parameter may not set).
pub fn is_common(name: &str) -> bool {
    ALL.iter().any(|c| c.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_recognised() {
        let mut names: Vec<&str> = ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        assert!(ALL.iter().all(|c| is_common(c.name())));
        assert!(!is_common("RegionId"));
        assert!(!is_common("DtsJobId"));
    }
}
