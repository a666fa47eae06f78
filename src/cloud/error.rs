//! `ApiError`: every way an API call can fail, in one shape, with the class
//! that decides whether it may be sent again.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a failure says about whether the call happened, which decides what
/// the executor may do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Refused before it was processed (`Throttling*`, `ServiceUnavailable`,
    /// `SignatureNonceUsed`, a connection that never opened): safe to resend
    /// after a back-off, re-signed.
    Rejected,
    /// May or may not have been applied (`InternalError*`, 500/502/504, a
    /// timeout, a connection dropped after the request was sent). A read is
    /// simply retried; a mutating call is re-checked through its status call.
    UnknownOutcome,
    /// Will fail the same way again (bad parameters, access denied, signature
    /// or key errors, other 4xx, a business failure in a 200).
    Permanent,
}

impl ErrorClass {
    /// Classifies by error code prefix first (throttling arrives as 400 or
    /// 429), then by HTTP status.
    pub fn classify(code: &str, http_status: Option<u16>) -> ErrorClass {
        if code.starts_with("Throttling")
            || code.starts_with("Rejected.Throttling")
            || code == "ServiceUnavailable"
            || code == "SignatureNonceUsed"
            || code == "Transport.Connect"
        {
            return ErrorClass::Rejected;
        }
        if code.starts_with("InternalError")
            || code == "UnknownError"
            || code.starts_with("Transport.")
        {
            return ErrorClass::UnknownOutcome;
        }
        match http_status {
            // 429 Too Many Requests without a `Throttling*` code is still
            // throttling: refused before it was processed.
            Some(429 | 503) => ErrorClass::Rejected,
            Some(500 | 502 | 504) => ErrorClass::UnknownOutcome,
            _ => ErrorClass::Permanent,
        }
    }
}

/// A failed API call: an error answer from the service, a business failure
/// inside a 200 answer, or a transport failure (codes `Transport.*`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Alibaba error code (`Throttling.User`, `Param.Invalid`, ...) or `Transport.*`.
    pub code: String,
    /// Human-readable message from the service (never holds a secret).
    pub message: String,
    /// The service's RequestId, when it answered.
    pub request_id: Option<String>,
    /// HTTP status, when there was an answer.
    pub http_status: Option<u16>,
    /// Whether it may be sent again, and how.
    pub class: ErrorClass,
    /// `x-acs-retry-after`, when the service said how long to wait.
    pub retry_after: Option<Duration>,
    /// The service's diagnosis link (`Recommend`), when given.
    pub recommend: Option<String>,
}

impl ApiError {
    /// An error answer; the class is derived from the code and status.
    pub fn new(
        code: impl Into<String>,
        message: impl Into<String>,
        http_status: Option<u16>,
    ) -> ApiError {
        let code = code.into();
        let class = ErrorClass::classify(&code, http_status);
        ApiError {
            code,
            message: message.into(),
            request_id: None,
            http_status,
            class,
            retry_after: None,
            recommend: None,
        }
    }

    /// Sets the RequestId.
    #[must_use]
    pub fn with_request_id(mut self, request_id: Option<String>) -> ApiError {
        self.request_id = request_id;
        self
    }

    /// Sets how long the service asked the caller to wait (`x-acs-retry-after`).
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> ApiError {
        self.retry_after = retry_after;
        self
    }

    /// Sets the service's diagnosis link (`Recommend`).
    #[must_use]
    pub fn with_recommend(mut self, recommend: Option<String>) -> ApiError {
        self.recommend = recommend;
        self
    }

    /// Overrides the class derived from the code and status, where the
    /// answer itself says more (a business `fail` is permanent whatever its
    /// status; a garbled 200 may have been applied).
    #[must_use]
    pub fn with_class(mut self, class: ErrorClass) -> ApiError {
        self.class = class;
        self
    }

    /// Whether sending it again can help (rejected or unknown outcome).
    pub fn retryable(&self) -> bool {
        self.class != ErrorClass::Permanent
    }

    /// Whether the service refused it before processing it for load
    /// (throttling, unavailable): sending it again later is safe, and does
    /// not count as another try of the same thing.
    pub fn throttled(&self) -> bool {
        self.class == ErrorClass::Rejected && !self.code.starts_with("Transport.")
    }

    /// Whether the call may have been applied even though it failed.
    pub fn outcome_unknown(&self) -> bool {
        self.class == ErrorClass::UnknownOutcome
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(status) = self.http_status {
            write!(f, " (HTTP {status}")?;
            if let Some(id) = &self.request_id {
                write!(f, ", RequestId {id}")?;
            }
            write!(f, ")")?;
        } else if let Some(id) = &self.request_id {
            write!(f, " (RequestId {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_code_prefix_before_status() {
        use ErrorClass::*;
        assert_eq!(ErrorClass::classify("Throttling.User", Some(400)), Rejected);
        assert_eq!(ErrorClass::classify("Throttling.Api", Some(429)), Rejected);
        assert_eq!(
            ErrorClass::classify("ServiceUnavailable", Some(503)),
            Rejected
        );
        assert_eq!(
            ErrorClass::classify("SignatureNonceUsed", Some(400)),
            Rejected
        );
        assert_eq!(
            ErrorClass::classify("InternalError.System", Some(500)),
            UnknownOutcome
        );
        assert_eq!(ErrorClass::classify("Whatever", Some(502)), UnknownOutcome);
        assert_eq!(
            ErrorClass::classify("Transport.Timeout", None),
            UnknownOutcome
        );
        assert_eq!(ErrorClass::classify("Transport.Connect", None), Rejected);
        assert_eq!(
            ErrorClass::classify("Transport.ConnectionDropped", None),
            UnknownOutcome
        );
        assert_eq!(ErrorClass::classify("Param.Invalid", Some(400)), Permanent);
        assert_eq!(
            ErrorClass::classify("SignatureDoesNotMatch", Some(400)),
            Permanent
        );
        assert_eq!(
            ErrorClass::classify("Forbidden.Access", Some(403)),
            Permanent
        );
        assert_eq!(
            ErrorClass::classify("InvalidAccessKeyId.NotFound", Some(404)),
            Permanent
        );
    }

    #[test]
    fn codeless_answers_classify_by_status() {
        use ErrorClass::*;
        assert_eq!(ErrorClass::classify("Http.429", Some(429)), Rejected);
        assert_eq!(ErrorClass::classify("Http.503", Some(503)), Rejected);
        assert_eq!(ErrorClass::classify("Http.504", Some(504)), UnknownOutcome);
        assert_eq!(
            ErrorClass::classify("InvalidResponse", Some(404)),
            Permanent
        );
        assert_eq!(
            ErrorClass::classify("UnknownError", Some(400)),
            UnknownOutcome
        );
    }
}
