//! [`RpcClient`]: sends one attempt of an [`ActionRequest`] to Alibaba Cloud's
//! RPC OpenAPI (or to the simulator) and turns the answer into an
//! [`ApiResponse`] or an [`ApiError`].
//!
//! # On the wire
//!
//! Requests go out as Alibaba's current SDKs send them: `POST <base>/?<query>`
//! with the common parameters, the query parameters and `Signature` in the
//! query string, and body parameters (such as `StopDIJob.DIJobId`) as an
//! `application/x-www-form-urlencoded` body. The signature covers query and
//! body merged (as both SDK generations sign), and every attempt is signed
//! afresh with a new `SignatureNonce` (UUID v4) and `Timestamp`, so a resend is
//! never refused as a replay. Both the query and the body are encoded with
//! Alibaba's percent-encoding (space as `%20`), which any form decoder reads.
//! [`build_signed`] is the pure part (nonce and clock passed in), so tests
//! compare the exact bytes with the SDK-computed vectors.
//!
//! That is signature V1, the default. A client made
//! [`RpcClient::signing_with`] V3 sends what Alibaba's current (Tea) SDKs
//! send instead ([`build_signed_v3`]): the same `POST`, query parameters and
//! form body, but only the API's own parameters in the query; the action,
//! version, date, nonce, body hash (and STS token) go in `x-acs-*` headers,
//! every header sent is signed (`accept`, `content-type`, `host` included,
//! each sent once with the very value signed), and the signature travels in
//! an `Authorization` header. Both reproduce the SDKs' vectors byte for byte.
//!
//! Plain-HTTP endpoints are for the simulator: the client skips any proxy
//! for loopback hosts (so a CI proxy cannot capture them) and warns once per
//! host when credentials would travel in clear to any other host. Redirects
//! are not followed: an RPC endpoint never redirects, and following one would
//! hand a signed URL to another host.
//!
//! # Answers
//!
//! [`interpret`] reads every documented shape into one [`ApiError`]:
//!
//! | answer | code | class |
//! |---|---|---|
//! | HTTP 4xx/5xx with `Code`/`Message`/`RequestId`/`Recommend` (JSON, or the XML `<Error>` form) | `Code` (else `Http.<status>`) | by code prefix, then status |
//! | 200 with `Success: false` (DTS `ErrCode`/`ErrMessage`/`DynamicMessage`, DataWorks `ErrorCode`/`ErrorMessage`) | the body's code, else `OperationFailed` | by code, then the body's `HttpStatusCode` |
//! | 200 from a mutating DataWorks call with `Data.Status: fail` | the body's code, else `OperationFailed`; message `Data.Message` | permanent |
//! | a body that is not a JSON object | `InvalidResponse` | by status; unknown outcome for a 2xx |
//! | no connection | `Transport.Connect` | rejected (nothing was sent) |
//! | no answer in time | `Transport.Timeout` | unknown outcome |
//! | connection closed or reset after sending, body cut short | `Transport.ConnectionDropped` | unknown outcome |
//! | a body larger than [`crate::limits::RESPONSE_BYTES`] (4 MiB) | `Transport.AnswerTooLarge` | unknown outcome |
//!
//! `Data.Status` is only a verdict for mutating DataWorks calls: in a read
//! (`GetDISyncInstanceInfo` of a `DI_SOLUTION`) `fail` is the state of the
//! resource, which a playbook's `wait` wants to see rather than an error.
//! DTS's `%s` placeholders in `ErrMessage` are filled from `DynamicMessage`.
//! `x-acs-retry-after` (milliseconds) becomes [`ApiError::retry_after`],
//! capped at 120 s as darabonba caps it. A `SignatureDoesNotMatch` whose
//! message quotes the very string-to-sign this client signed becomes
//! `InvalidAccessKeySecret`, as Alibaba's SDK reports it: the request was
//! built right, so the secret is wrong.
//!
//! # Secrets
//!
//! The AccessKeyId, SecurityToken and Signature are in every URL, so the URL
//! is never logged and reqwest's errors are stripped of it. Error messages and
//! `Recommend` links come from the service, which may echo its string-to-sign
//! (holding the AccessKeyId and token): they are scrubbed of those values, raw
//! or percent-encoded, before they leave this module.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};

use super::common;
use super::credentials::{Credentials, CredentialsError, Secret};
use super::endpoint::{Endpoints, is_loopback};
use super::error::{ApiError, ErrorClass};
use super::provider::{CredentialsProvider, Fetch, HostAnswer, HostFuture};
use super::signer::{self, CommonParams, SignatureVersion, v3};
use super::sts::{self, CallerIdentity, RoleRequest};
use super::{ActionRequest, ApiResponse, CallFuture, CloudApi, REDACTED, actions, redact_query};

/// The response header in which the service says how long to back off, in
/// milliseconds.
pub const RETRY_AFTER_HEADER: &str = "x-acs-retry-after";
/// The longest back-off honoured from [`RETRY_AFTER_HEADER`] (darabonba's cap).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// The response header that carries the RequestId when the body does not.
pub const REQUEST_ID_HEADER: &str = "x-acs-request-id";
/// The HTTP method of every RPC call (as Alibaba's current SDKs send them).
pub const METHOD: &str = "POST";
/// Content type of a non-empty body.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Code of a business failure that names no code of its own.
pub const OPERATION_FAILED: &str = "OperationFailed";
/// Code of an answer that cannot be read.
pub const INVALID_RESPONSE: &str = "InvalidResponse";
/// Code of a call not sent because no credentials could be had for it
/// (a refresh failed).
pub const CREDENTIALS_UNAVAILABLE: &str = "Credentials.Unavailable";
/// Timeouts of requests to the metadata service and a credentials URI
/// (the libraries' 1 s connect, and a little more to read).
const HOST_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const HOST_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Timeouts of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// How long to wait for the TCP (and TLS) connection. A failure here is
    /// `Transport.Connect`: nothing was sent, so it is safe to resend.
    pub connect_timeout: Duration,
    /// How long the whole attempt may take, connection to last byte of the
    /// answer. A failure here is `Transport.Timeout`: the call may have been
    /// applied.
    pub request_timeout: Duration,
}

impl Default for ClientOptions {
    /// 5 s to connect (the SDKs' default) and 30 s per attempt (DTS reads can
    /// take a few seconds; the step's own timeout bounds the retries).
    fn default() -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The HTTP stack could not be set up (for example, no TLS backend).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTP client")]
pub struct ClientError(#[source] reqwest::Error);

/// One attempt, signed and encoded, exactly as it goes on the wire.
///
/// The URL holds the AccessKeyId, the SecurityToken and the Signature: read it
/// with [`SignedRequest::url`] only to send it. `Debug` and
/// [`SignedRequest::redacted_url`] hide them.
pub struct SignedRequest {
    url: String,
    query_start: usize,
    body: String,
    nonce: String,
    string_to_sign: String,
    signature: String,
    /// V3: every header signed, then `authorization` (which, like
    /// `x-acs-security-token`, holds credentials). Empty with V1.
    headers: Vec<(String, String)>,
    version: SignatureVersion,
}

impl SignedRequest {
    /// The HTTP method (always `POST`).
    pub fn method(&self) -> &'static str {
        METHOD
    }

    /// The full URL: `<base>/?<query>&Signature=...`. Holds credentials;
    /// never print or log it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The query string on the wire (common and query parameters sorted by
    /// name, then `Signature`). Holds credentials.
    pub fn query(&self) -> &str {
        &self.url[self.query_start..]
    }

    /// The URL with the AccessKeyId, SecurityToken and Signature replaced by
    /// `<redacted>`: safe to show.
    pub fn redacted_url(&self) -> String {
        format!(
            "{}{}",
            &self.url[..self.query_start],
            redact_query(self.query())
        )
    }

    /// The form body (empty when the action has no body parameters).
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The `SignatureNonce` of this attempt.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The string that was signed (holds the AccessKeyId and token).
    pub fn string_to_sign(&self) -> &str {
        &self.string_to_sign
    }

    /// The signature (before URL encoding).
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// Which signature it carries.
    pub fn signature_version(&self) -> SignatureVersion {
        self.version
    }

    /// The headers that carry the signature (V3: `host`, `accept`,
    /// `content-type`, the `x-acs-*` headers and `authorization`; empty with
    /// V1). Hold credentials; never print or log them.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// [`SignedRequest::headers`] with the `Authorization` credential and
    /// signature and the security token replaced by `<redacted>`: safe to show.
    pub fn redacted_headers(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(name, value)| (name.clone(), redact_header(name, value)))
            .collect()
    }
}

/// A V3 header's value with its secrets replaced by `<redacted>`: the
/// credential and signature of `authorization`, the security token.
pub fn redact_header(name: &str, value: &str) -> String {
    if name.eq_ignore_ascii_case(v3::SECURITY_TOKEN) {
        return REDACTED.to_owned();
    }
    if !name.eq_ignore_ascii_case(v3::AUTHORIZATION) {
        return value.to_owned();
    }
    match v3::parse_authorization(value) {
        Ok(auth) => v3::authorization(REDACTED, &auth.signed_headers.join(";"), REDACTED),
        Err(_) => REDACTED.to_owned(),
    }
}

impl fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedRequest")
            .field("method", &METHOD)
            .field("signature", &self.version)
            .field("url", &self.redacted_url())
            .field("headers", &self.redacted_headers())
            .field("body", &self.body)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// Signs one attempt of `req` for the endpoint `base_url` (scheme and host,
/// e.g. `https://dts.cn-hangzhou.aliyuncs.com`). Pure: the nonce and the
/// timestamp are passed in.
pub fn build_signed(
    req: &ActionRequest,
    base_url: &str,
    credentials: &Credentials,
    nonce: &str,
    timestamp: jiff::Timestamp,
) -> SignedRequest {
    let mut query = req.query.clone();
    query.remove("Signature");
    CommonParams {
        action: &req.action,
        version: &req.version,
        access_key_id: credentials.access_key_id(),
        security_token: credentials.security_token().map(Secret::expose),
        nonce,
        timestamp,
    }
    .apply(&mut query);
    let body: BTreeMap<String, String> = req
        .body
        .iter()
        // The client sets the common parameters itself: an API parameter of
        // the same name can neither override nor duplicate them.
        .filter(|(name, _)| !common::is_common(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();

    let wire_query = signer::canonicalized_query(&query);
    // The signature covers query and body merged; a body value wins over a
    // query value of the same name, as the SDKs merge them.
    let string_to_sign = if body.is_empty() {
        signer::string_to_sign(METHOD, &wire_query)
    } else {
        let mut all = query;
        all.extend(body.iter().map(|(k, v)| (k.clone(), v.clone())));
        signer::string_to_sign(METHOD, &signer::canonicalized_query(&all))
    };
    let signature = signer::signature(&string_to_sign, credentials.access_key_secret().expose());

    let base = base_url.trim_end_matches('/');
    let encoded_signature = signer::percent_encode(&signature);
    let mut url =
        String::with_capacity(base.len() + wire_query.len() + encoded_signature.len() + 14);
    url.push_str(base);
    url.push_str("/?");
    let query_start = url.len();
    url.push_str(&wire_query);
    url.push_str("&Signature=");
    url.push_str(&encoded_signature);

    SignedRequest {
        url,
        query_start,
        body: signer::canonicalized_query(&body),
        nonce: nonce.to_owned(),
        string_to_sign,
        signature,
        headers: Vec::new(),
        version: SignatureVersion::V1,
    }
}

/// The `host` of an endpoint as the HTTP stack sends it: the host, with the
/// port when it is not the scheme's default.
fn wire_host(base_url: &str) -> String {
    match url::Url::parse(base_url) {
        Ok(url) => match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => host_of(base_url).to_owned(),
        },
        Err(_) => host_of(base_url).to_owned(),
    }
}

/// Signs one attempt of `req` with signature V3 (`ACS3-HMAC-SHA256`), as
/// Alibaba's current SDKs send it: `POST <base>/?<API query parameters>`,
/// body parameters as a form body, and the metadata in headers, every one
/// of them signed: `accept`, `content-type` (with a body), `host`,
/// `x-acs-action`, `x-acs-content-sha256`, `x-acs-date`,
/// `x-acs-security-token` (STS), `x-acs-signature-nonce`, `x-acs-version`,
/// then `authorization`. Pure: the nonce and the timestamp are passed in.
pub fn build_signed_v3(
    req: &ActionRequest,
    base_url: &str,
    credentials: &Credentials,
    nonce: &str,
    timestamp: jiff::Timestamp,
) -> SignedRequest {
    // The client sets the common parameters itself (here, as headers): an
    // API parameter of the same name is not sent.
    let api = |params: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        params
            .iter()
            .filter(|(name, _)| !common::is_common(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    };
    let query = api(&req.query);
    let body = signer::canonicalized_query(&api(&req.body));
    let mut headers: Vec<(String, String)> = vec![
        ("accept".to_owned(), "application/json".to_owned()),
        ("host".to_owned(), wire_host(base_url)),
        (v3::ACTION.to_owned(), req.action.clone()),
        (
            v3::CONTENT_SHA256.to_owned(),
            v3::hashed_payload(body.as_bytes()),
        ),
        (v3::DATE.to_owned(), signer::format_timestamp(timestamp)),
        (v3::NONCE.to_owned(), nonce.to_owned()),
        (v3::VERSION.to_owned(), req.version.clone()),
    ];
    if !body.is_empty() {
        headers.push(("content-type".to_owned(), FORM_CONTENT_TYPE.to_owned()));
    }
    if let Some(token) = credentials.security_token() {
        headers.push((v3::SECURITY_TOKEN.to_owned(), token.expose().to_owned()));
    }
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let signed = v3::sign(
        &v3::Request {
            method: METHOD,
            path: "/",
            query: &query,
            headers: &pairs,
            body: body.as_bytes(),
        },
        credentials.access_key_secret().expose(),
    );
    headers.push((
        v3::AUTHORIZATION.to_owned(),
        v3::authorization(
            credentials.access_key_id(),
            &signed.signed_headers,
            &signed.signature,
        ),
    ));

    let base = base_url.trim_end_matches('/');
    let wire_query = v3::canonical_query(&query);
    let mut url = String::with_capacity(base.len() + wire_query.len() + 2);
    url.push_str(base);
    url.push('/');
    let query_start = if wire_query.is_empty() {
        url.len()
    } else {
        url.push('?');
        let start = url.len();
        url.push_str(&wire_query);
        start
    };
    SignedRequest {
        url,
        query_start,
        body,
        nonce: nonce.to_owned(),
        string_to_sign: signed.string_to_sign,
        signature: signed.signature,
        headers,
        version: SignatureVersion::V3,
    }
}

/// Signs one attempt of `req` with `version`: [`build_signed`] (V1) or
/// [`build_signed_v3`].
pub fn build_signed_with(
    version: SignatureVersion,
    req: &ActionRequest,
    base_url: &str,
    credentials: &Credentials,
    nonce: &str,
    timestamp: jiff::Timestamp,
) -> SignedRequest {
    match version {
        SignatureVersion::V1 => build_signed(req, base_url, credentials, nonce, timestamp),
        SignatureVersion::V3 => build_signed_v3(req, base_url, credentials, nonce, timestamp),
    }
}

/// An unsigned request (`AssumeRoleWithOIDC`, whose token is the proof),
/// as the credentials libraries send it: `Action`, `Version`, `Format` and
/// `Timestamp` in the query, the parameters in the form body.
pub fn build_anonymous(
    req: &ActionRequest,
    base_url: &str,
    nonce: &str,
    timestamp: jiff::Timestamp,
) -> SignedRequest {
    let mut query = req.query.clone();
    for name in ["Signature", "AccessKeyId", "SecurityToken"] {
        query.remove(name);
    }
    query.insert("Action".to_owned(), req.action.clone());
    query.insert("Version".to_owned(), req.version.clone());
    query.insert("Format".to_owned(), "JSON".to_owned());
    query.insert(
        "Timestamp".to_owned(),
        timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    let wire_query = signer::canonicalized_query(&query);
    let base = base_url.trim_end_matches('/');
    let url = format!("{base}/?{wire_query}");
    SignedRequest {
        query_start: base.len() + 2,
        url,
        body: signer::canonicalized_query(&req.body),
        nonce: nonce.to_owned(),
        string_to_sign: String::new(),
        signature: String::new(),
        headers: Vec::new(),
        version: SignatureVersion::V1,
    }
}

/// The Alibaba Cloud RPC client: one [`CloudApi::call`] is one signed attempt.
/// Retries, back-off and reconciliation are the runner's job; this client
/// only says, through [`ApiError::class`], what a failure allows.
///
/// Every request is signed with the credentials current at that moment
/// ([`CredentialsProvider::current`]): temporary credentials are refreshed
/// before they expire, and a request for a role (`ActionRequest::role_arn`)
/// is signed with that role's session, assumed with the client's own
/// credentials on first use.
pub struct RpcClient {
    credentials: Arc<CredentialsProvider>,
    /// Sessions of the roles requests asked for, by role ARN.
    roles: Mutex<HashMap<String, Arc<CredentialsProvider>>>,
    /// Who requests act as, by role ARN (`""`: the client's own
    /// credentials), from `GetCallerIdentity`; `None` when STS could not say.
    identities: tokio::sync::Mutex<HashMap<String, Option<String>>>,
    /// Where STS is (`https://sts.aliyuncs.com` unless overridden).
    sts_endpoint: String,
    /// The session name of the roles it assumes.
    session_name: String,
    /// Which signature every call carries (V1 unless told otherwise).
    signature: SignatureVersion,
    endpoints: Endpoints,
    options: ClientOptions,
    /// For loopback endpoints: never through a proxy.
    direct: reqwest::Client,
    /// For everything else: honours `HTTPS_PROXY` and friends.
    proxied: reqwest::Client,
    /// For the metadata service and credentials URIs: short timeouts, no proxy.
    host: reqwest::Client,
    /// Hosts already warned about plain HTTP (warn once per host).
    warned_plain_http: Mutex<BTreeSet<String>>,
}

impl RpcClient {
    /// A client that signs with `credentials` and sends each product's calls
    /// where `endpoints` says.
    ///
    /// # Errors
    ///
    /// The HTTP stack could not be built.
    pub fn new(
        credentials: Credentials,
        endpoints: Endpoints,
        options: ClientOptions,
    ) -> Result<RpcClient, ClientError> {
        RpcClient::with_provider(CredentialsProvider::fixed(credentials), endpoints, options)
    }

    /// A client that signs with whatever `credentials` gives at each request.
    ///
    /// # Errors
    ///
    /// The HTTP stack could not be built.
    pub fn with_provider(
        credentials: CredentialsProvider,
        endpoints: Endpoints,
        options: ClientOptions,
    ) -> Result<RpcClient, ClientError> {
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(options.connect_timeout)
                .timeout(options.request_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
        };
        let host = reqwest::Client::builder()
            .connect_timeout(HOST_CONNECT_TIMEOUT)
            .timeout(HOST_REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError)?;
        Ok(RpcClient {
            direct: builder().no_proxy().build().map_err(ClientError)?,
            proxied: builder().build().map_err(ClientError)?,
            host,
            credentials: Arc::new(credentials),
            roles: Mutex::new(HashMap::new()),
            identities: tokio::sync::Mutex::new(HashMap::new()),
            sts_endpoint: "https://sts.aliyuncs.com".to_owned(),
            session_name: format!("runbook-{}", jiff::Timestamp::now().as_second()),
            signature: SignatureVersion::V1,
            endpoints,
            options,
            warned_plain_http: Mutex::new(BTreeSet::new()),
        })
    }

    /// A client that signs with what Alibaba's default credential chain
    /// finds ([`super::provider::resolve`]; `profile` is `--profile`), with
    /// the environment read through `lookup`. STS is where
    /// [`sts::endpoint`] says, except that when `RUNBOOK_STS_ENDPOINT` is
    /// not set and a product is pointed at a loopback endpoint (a
    /// simulator), STS goes there too: a rehearsal never asks the cloud who
    /// it is.
    ///
    /// # Errors
    ///
    /// The chain's errors; an HTTP stack that cannot be built is reported
    /// as [`CredentialsError::Unavailable`].
    pub async fn from_chain(
        profile: Option<&str>,
        lookup: &(dyn Fn(&str) -> Option<String> + Sync),
        endpoints: Endpoints,
        options: ClientOptions,
    ) -> Result<RpcClient, CredentialsError> {
        let local = endpoints
            .overrides()
            .values()
            .find(|url| is_loopback(url))
            .cloned();
        let sts_endpoint = match local {
            Some(url) if lookup(sts::ENV_STS_ENDPOINT).is_none_or(|v| v.is_empty()) => url,
            _ => sts::endpoint(lookup)?,
        };
        let placeholder = CredentialsProvider::fixed(Credentials::new("", "", None));
        let mut client = RpcClient::with_provider(placeholder, endpoints, options)
            .map_err(|e| CredentialsError::Unavailable {
                source_name: "the HTTP client".to_owned(),
                reason: e.to_string(),
            })?
            .with_sts_endpoint(&sts_endpoint)
            .with_session_name(&super::provider::session_name(lookup));
        let provider = super::provider::resolve(profile, lookup, &client).await?;
        client.credentials = Arc::new(provider);
        Ok(client)
    }

    /// The same client, acting as `role_arn`: its own credentials become a
    /// session of that role, assumed (and refreshed) with the credentials it
    /// had. Roles of single requests are then assumed from that session.
    #[must_use]
    pub fn assuming(mut self, role_arn: &str) -> RpcClient {
        self.credentials = Arc::new(CredentialsProvider::assume_role(
            Arc::clone(&self.credentials),
            RoleRequest::new(role_arn, self.session_name.clone()),
        ));
        self
    }

    /// Sends STS calls to `base_url` (see [`sts::endpoint`]).
    #[must_use]
    pub fn with_sts_endpoint(mut self, base_url: &str) -> RpcClient {
        base_url
            .trim_end_matches('/')
            .clone_into(&mut self.sts_endpoint);
        self
    }

    /// Names the sessions of the roles it assumes.
    #[must_use]
    pub fn with_session_name(mut self, name: &str) -> RpcClient {
        name.clone_into(&mut self.session_name);
        self
    }

    /// The same client, signing every call with `signature`.
    #[must_use]
    pub fn signing_with(mut self, signature: SignatureVersion) -> RpcClient {
        self.signature = signature;
        self
    }

    /// Which signature it signs with.
    pub fn signature(&self) -> SignatureVersion {
        self.signature
    }

    /// Where it finds the credentials it signs with.
    pub fn credentials(&self) -> &CredentialsProvider {
        &self.credentials
    }

    /// Where STS is.
    pub fn sts_endpoint(&self) -> &str {
        &self.sts_endpoint
    }

    /// The provider of `role_arn`'s session (created on first use), or the
    /// client's own for `None`.
    fn provider_for(&self, role_arn: Option<&str>) -> Arc<CredentialsProvider> {
        let Some(role_arn) = role_arn.filter(|r| !r.is_empty()) else {
            return Arc::clone(&self.credentials);
        };
        let mut roles = self.roles.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(roles.entry(role_arn.to_owned()).or_insert_with(|| {
            Arc::new(CredentialsProvider::assume_role(
                Arc::clone(&self.credentials),
                RoleRequest::new(role_arn, self.session_name.clone()),
            ))
        }))
    }

    /// The credentials a request for `role_arn` (or the client's own, for
    /// `None`) is signed with now, refreshed if they are about to expire.
    ///
    /// # Errors
    ///
    /// They cannot be had (an STS, metadata or URI failure).
    pub async fn current_credentials(
        &self,
        role_arn: Option<&str>,
    ) -> Result<Credentials, CredentialsError> {
        self.provider_for(role_arn).current(self).await
    }

    /// Who requests for `role_arn` (or the client's own, for `None`) act
    /// as: STS `GetCallerIdentity` with those credentials.
    ///
    /// # Errors
    ///
    /// The credentials cannot be had, or STS refused.
    pub async fn caller_identity(
        &self,
        role_arn: Option<&str>,
    ) -> Result<CallerIdentity, ApiError> {
        let credentials = self
            .current_credentials(role_arn)
            .await
            .map_err(credentials_unavailable)?;
        self.caller_identity_of(&credentials).await
    }

    /// Who `credentials` act as (STS `GetCallerIdentity`): the ARN, the
    /// account and the RequestId, never a key.
    ///
    /// # Errors
    ///
    /// STS refused or its answer cannot be read.
    pub async fn caller_identity_of(
        &self,
        credentials: &Credentials,
    ) -> Result<CallerIdentity, ApiError> {
        let answer = self
            .send_to(
                &sts::get_caller_identity(),
                &self.sts_endpoint,
                Some(credentials),
            )
            .await?;
        sts::parse_caller_identity(&answer)
            .map_err(|m| ApiError::new(INVALID_RESPONSE, m, Some(answer.http_status)))
    }

    /// Where it sends each product's calls.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Its timeouts.
    pub fn options(&self) -> ClientOptions {
        self.options
    }

    /// Signs `req` for its endpoint with the given nonce and timestamp, as
    /// [`CloudApi::call`] does with fresh ones. Errs when the request's
    /// product or region is not a valid id (no host is built from it).
    ///
    /// Only for a client built with fixed credentials ([`RpcClient::new`]):
    /// others have none until a request asks for them.
    pub fn sign(
        &self,
        req: &ActionRequest,
        nonce: &str,
        timestamp: jiff::Timestamp,
    ) -> Result<SignedRequest, ApiError> {
        let credentials = self.credentials.fixed_credentials().ok_or_else(|| {
            ApiError::new(
                CREDENTIALS_UNAVAILABLE,
                "this client's credentials are fetched per request".to_owned(),
                None,
            )
        })?;
        Ok(build_signed_with(
            self.signature,
            req,
            &self.base_url(req)?,
            credentials,
            nonce,
            timestamp,
        ))
    }

    /// Where `req` goes, or an `InvalidEndpoint` error (nothing is sent).
    fn base_url(&self, req: &ActionRequest) -> Result<String, ApiError> {
        self.endpoints
            .resolve(&req.product, &req.region)
            .map_err(|e| ApiError::new("InvalidEndpoint", e.to_string(), None))
    }

    async fn send(&self, req: &ActionRequest) -> Result<ApiResponse, ApiError> {
        let base = self.base_url(req)?;
        let credentials = self
            .current_credentials(req.role_arn.as_deref())
            .await
            .map_err(credentials_unavailable)?;
        self.send_to(req, &base, Some(&credentials)).await
    }

    /// [`CloudApi::prepare`]: the credentials of `req`'s role (or the
    /// client's own), fetched or refreshed now; and who they act as, asked
    /// of STS once per role.
    async fn prepare_for(&self, req: &ActionRequest) -> Result<Option<String>, String> {
        let role = req.role_arn.as_deref();
        let credentials = self
            .current_credentials(role)
            .await
            .map_err(|e| e.to_string())?;
        let mut identities = self.identities.lock().await;
        let key = role.unwrap_or_default().to_owned();
        if let Some(known) = identities.get(&key) {
            return Ok(known.clone());
        }
        let arn = match self.caller_identity_of(&credentials).await {
            Ok(identity) => Some(identity.arn),
            Err(e) => {
                tracing::warn!(
                    "cannot tell who calls{} are made as: STS GetCallerIdentity failed: {e}",
                    role.map(|r| format!(" as {r}")).unwrap_or_default()
                );
                None
            }
        };
        identities.insert(key, arn.clone());
        Ok(arn)
    }

    /// Sends `req` to `base`, signed with `credentials` (anonymous for `None`).
    async fn send_to(
        &self,
        req: &ActionRequest,
        base: &str,
        credentials: Option<&Credentials>,
    ) -> Result<ApiResponse, ApiError> {
        let host = host_of(base).to_owned();
        let loopback = is_loopback(base);
        if !loopback && base.starts_with("http://") {
            self.warn_plain_http(&host);
        }

        // A version-4 UUID from the thread's random generator (seeded from
        // the OS), not a system call per request.
        let nonce = uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .to_string();
        let mut signed = match credentials {
            Some(credentials) => build_signed_with(
                self.signature,
                req,
                base,
                credentials,
                &nonce,
                jiff::Timestamp::now(),
            ),
            None => build_anonymous(req, base, &nonce, jiff::Timestamp::now()),
        };
        let url = reqwest::Url::parse(signed.url()).map_err(|e| {
            ApiError::new(
                "InvalidEndpoint",
                format!(
                    "the endpoint `{base}` for product `{}` is not a valid URL ({e})",
                    req.product
                ),
                None,
            )
        })?;
        let http = if loopback {
            &self.direct
        } else {
            &self.proxied
        };
        let mut builder = http.post(url);
        if signed.headers().is_empty() {
            builder = builder.header(reqwest::header::ACCEPT, "application/json");
        }
        // V3: the signed headers, `host`, `accept` and `content-type`
        // included (each once, with the very value signed), and `authorization`.
        for (name, value) in signed.headers() {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let body = std::mem::take(&mut signed.body);
        if !body.is_empty() {
            if signed.headers().is_empty() {
                builder = builder.header(reqwest::header::CONTENT_TYPE, FORM_CONTENT_TYPE);
            }
            builder = builder.body(body);
        }

        tracing::debug!(product = %req.product, action = %req.action, %host, nonce = %signed.nonce, signature = %signed.version, "sending request");
        let response = match builder.send().await {
            Ok(response) => response,
            Err(e) => {
                return Err(self.finish_error(
                    transport_error(&e, &host, self.options),
                    &signed,
                    credentials,
                ));
            }
        };
        let status = response.status().as_u16();
        let retry_after = header_value(response.headers(), RETRY_AFTER_HEADER);
        let header_request_id = header_value(response.headers(), REQUEST_ID_HEADER);
        let bytes = match read_body(response, crate::limits::RESPONSE_BYTES).await {
            Ok(bytes) => bytes,
            Err(BodyError::TooLarge(cap)) => {
                return Err(self.finish_error(too_large(&host, status, cap), &signed, credentials));
            }
            Err(BodyError::Http(e)) => {
                return Err(self.finish_error(
                    body_error(&e, &host, status, self.options),
                    &signed,
                    credentials,
                ));
            }
        };
        let answer = RawAnswer {
            status,
            retry_after: retry_after.as_deref(),
            request_id: header_request_id.as_deref(),
            body: &bytes,
        };
        match interpret(&answer, verdict_in_data_status(req)) {
            Ok(response) => {
                tracing::debug!(action = %req.action, status, request_id = ?response.request_id, "answer");
                Ok(response)
            }
            Err(e) => Err(self.finish_error(e, &signed, credentials)),
        }
    }

    /// Last touches on every error: the SDK's reading of a signature mismatch,
    /// and no credential value in what the service echoed back.
    fn finish_error(
        &self,
        mut error: ApiError,
        signed: &SignedRequest,
        credentials: Option<&Credentials>,
    ) -> ApiError {
        if error.code == "SignatureDoesNotMatch"
            && !signed.string_to_sign().is_empty()
            && error.message.contains(signed.string_to_sign())
        {
            error.code = "InvalidAccessKeySecret".to_owned();
            error.message =
                "the AccessKeySecret is incorrect: the service computed the same string to sign \
                             but a different signature"
                    .to_owned();
            error.class = ErrorClass::Permanent;
        }
        let secrets = [
            credentials.map(Credentials::access_key_id),
            credentials.map(|c| c.access_key_secret().expose()),
            credentials.and_then(|c| c.security_token().map(Secret::expose)),
            Some(signed.signature()),
            req_secret(signed),
        ];
        let secrets: Vec<&str> = secrets
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        error.message = scrub(&error.message, &secrets);
        error.recommend = error.recommend.map(|r| scrub(&r, &secrets));
        tracing::debug!(code = %error.code, class = ?error.class, request_id = ?error.request_id, "call failed");
        error
    }

    fn warn_plain_http(&self, host: &str) {
        let first = self
            .warned_plain_http
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(host.to_owned());
        if first {
            tracing::warn!(
                %host,
                "credentials are sent over plain HTTP to a host that is not this machine; \
                 use an https:// endpoint unless this network is trusted"
            );
        }
    }
}

/// The OIDC token of an anonymous request's body, to scrub from errors.
fn req_secret(signed: &SignedRequest) -> Option<&str> {
    signed
        .body()
        .split('&')
        .find_map(|pair| pair.strip_prefix("OIDCToken="))
}

/// A call not sent: no credentials could be had for it.
fn credentials_unavailable(e: CredentialsError) -> ApiError {
    ApiError::new(CREDENTIALS_UNAVAILABLE, e.to_string(), None).with_class(ErrorClass::Permanent)
}

impl Fetch for RpcClient {
    fn sts<'a>(
        &'a self,
        req: &'a ActionRequest,
        credentials: Option<&'a Credentials>,
    ) -> CallFuture<'a> {
        Box::pin(self.send_to(req, &self.sts_endpoint, credentials))
    }

    fn host<'a>(
        &'a self,
        method: &'static str,
        url: &'a str,
        headers: Vec<(&'static str, String)>,
    ) -> HostFuture<'a> {
        Box::pin(async move {
            let method = reqwest::Method::from_bytes(method.as_bytes())
                .map_err(|_| format!("bad method {method}"))?;
            let parsed = reqwest::Url::parse(url).map_err(|_| "not a valid URL".to_owned())?;
            let shown = parsed.origin().ascii_serialization();
            let mut builder = self.host.request(method, parsed);
            for (name, value) in headers {
                builder = builder.header(name, value);
            }
            let response = builder
                .send()
                .await
                .map_err(|e| format!("{shown} did not answer ({})", cause_chain(&e)))?;
            let status = response.status().as_u16();
            let body = read_body(response, 64 * 1024)
                .await
                .map_err(|_| format!("the answer of {shown} could not be read"))?;
            Ok(HostAnswer {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        })
    }
}

impl CloudApi for RpcClient {
    fn call<'a>(&'a self, req: &'a ActionRequest) -> CallFuture<'a> {
        Box::pin(self.send(req))
    }

    fn prepare<'a>(&'a self, req: &'a ActionRequest) -> super::PrepareFuture<'a> {
        Box::pin(self.prepare_for(req))
    }
}

/// Shows the endpoints, the timeouts and which key is in use; never a secret.
impl fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcClient")
            .field("credentials", &self.credentials)
            .field("endpoints", &self.endpoints)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// An HTTP answer as received, before it is read as JSON.
#[derive(Clone, Copy, Debug)]
pub struct RawAnswer<'a> {
    /// HTTP status.
    pub status: u16,
    /// The `x-acs-retry-after` header, if any.
    pub retry_after: Option<&'a str>,
    /// The `x-acs-request-id` header, if any (used when the body has none).
    pub request_id: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

/// Whether a 200's `Data.Status: fail` is the verdict on `req` (mutating
/// DataWorks calls) rather than the state of a resource (reads).
pub fn verdict_in_data_status(req: &ActionRequest) -> bool {
    // The generic `api` action may spell the product as its API code.
    let dataworks = req.product == actions::DATAWORKS || req.product == "dataworks-public";
    dataworks && req.risk.mutates()
}

/// Reads an answer into the step's output or one [`ApiError`] (see the
/// module docs for every shape). `data_status_verdict` is
/// [`verdict_in_data_status`] of the request.
///
/// # Errors
///
/// Every answer that is not a success.
pub fn interpret(
    answer: &RawAnswer<'_>,
    data_status_verdict: bool,
) -> Result<ApiResponse, ApiError> {
    let ok = (200..300).contains(&answer.status);
    let retry_after = parse_retry_after(answer.retry_after);
    let header_request_id = answer
        .request_id
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    match serde_json::from_slice::<Value>(answer.body) {
        Ok(Value::Object(obj)) => {
            let request_id = text_field(&obj, &["RequestId", "requestId"]).or(header_request_id);
            let failure = if ok {
                business_failure(&obj, answer.status, data_status_verdict)
            } else {
                Some(error_answer(&obj, answer.status))
            };
            match failure {
                Some(error) => Err(error
                    .with_request_id(request_id)
                    .with_retry_after(retry_after)),
                None => Ok(ApiResponse {
                    body: Value::Object(obj),
                    request_id,
                    http_status: answer.status,
                }),
            }
        }
        // A 2xx whose body is JSON but not an object: nothing says it failed.
        Ok(other) if ok => Ok(ApiResponse {
            body: other,
            request_id: header_request_id,
            http_status: answer.status,
        }),
        _ => {
            let error = unreadable_answer(answer);
            let request_id = error.request_id.clone().or(header_request_id);
            Err(error
                .with_request_id(request_id)
                .with_retry_after(retry_after))
        }
    }
}

/// `x-acs-retry-after`: a positive number of milliseconds, capped at
/// [`MAX_RETRY_AFTER`]. Anything else is ignored.
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    let millis: u64 = value?.trim().parse().ok()?;
    (millis > 0).then(|| Duration::from_millis(millis).min(MAX_RETRY_AFTER))
}

/// An HTTP 4xx/5xx with a JSON body.
fn error_answer(obj: &Map<String, Value>, status: u16) -> ApiError {
    let code = code_field(obj).unwrap_or_else(|| format!("Http.{status}"));
    let message = message_field(obj)
        .unwrap_or_else(|| format!("the service answered HTTP {status} without a message"));
    ApiError::new(code, message, Some(status))
        .with_recommend(text_field(obj, &["Recommend", "recommend"]))
}

/// A failure reported inside a 2xx answer, if there is one.
fn business_failure(
    obj: &Map<String, Value>,
    status: u16,
    data_status_verdict: bool,
) -> Option<ApiError> {
    let success_false = match obj.get("Success").or_else(|| obj.get("success")) {
        Some(Value::Bool(b)) => !b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("false"),
        _ => false,
    };
    if success_false {
        let code = code_field(obj).unwrap_or_else(|| OPERATION_FAILED.to_owned());
        let message = message_field(obj)
            .or_else(|| data_message(obj))
            .unwrap_or_else(|| {
                "the service reported `Success: false` without a message".to_owned()
            });
        // DTS states the status it means in the body (`HttpStatusCode`).
        let meant = number_field(obj, "HttpStatusCode").unwrap_or(status);
        let class = ErrorClass::classify(&code, Some(meant));
        return Some(ApiError::new(code, message, Some(status)).with_class(class));
    }
    let data_failed = obj
        .get("Data")
        .and_then(|data| data.get("Status"))
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("fail"));
    if data_status_verdict && data_failed {
        let code = code_field(obj)
            .or_else(|| {
                obj.get("Data")
                    .and_then(Value::as_object)
                    .and_then(code_field)
            })
            .unwrap_or_else(|| OPERATION_FAILED.to_owned());
        let message = data_message(obj)
            .or_else(|| message_field(obj))
            .unwrap_or_else(|| {
                "the service reported `Data.Status: fail` without a message".to_owned()
            });
        return Some(ApiError::new(code, message, Some(status)).with_class(ErrorClass::Permanent));
    }
    None
}

/// A body that is not a JSON object: the gateway's XML `<Error>` form when it
/// is one, else `InvalidResponse`.
fn unreadable_answer(answer: &RawAnswer<'_>) -> ApiError {
    let text = String::from_utf8_lossy(answer.body);
    let ok = (200..300).contains(&answer.status);
    if !ok && let Some(code) = xml_tag(&text, "Code") {
        let message = xml_tag(&text, "Message").unwrap_or_else(|| {
            format!(
                "the service answered HTTP {} without a message",
                answer.status
            )
        });
        return ApiError::new(code, message, Some(answer.status))
            .with_request_id(xml_tag(&text, "RequestId"))
            .with_recommend(xml_tag(&text, "Recommend"));
    }
    let message = if text.trim().is_empty() {
        format!(
            "the service answered HTTP {} with an empty body",
            answer.status
        )
    } else {
        format!(
            "the service answered HTTP {} with a body that is not a JSON object: {}",
            answer.status,
            snippet(&text, 160)
        )
    };
    let error = ApiError::new(INVALID_RESPONSE, message, Some(answer.status));
    if ok {
        // The service took the call and something garbled the answer: it
        // may well have been applied.
        error.with_class(ErrorClass::UnknownOutcome)
    } else {
        error
    }
}

/// The error code of a body: `Code` (gateway), `ErrCode` (DTS, with `%s`
/// filled from `DynamicCode`) or `ErrorCode` (DataWorks).
fn code_field(obj: &Map<String, Value>) -> Option<String> {
    if let Some(code) = text_field(obj, &["ErrCode"]) {
        return Some(fill_placeholders(&code, text_field(obj, &["DynamicCode"])));
    }
    text_field(obj, &["Code", "code", "ErrorCode", "errorCode"])
}

/// The error message of a body: DTS's `ErrMessage` (with `%s` filled from
/// `DynamicMessage`), or `Message` / `ErrorMessage`.
fn message_field(obj: &Map<String, Value>) -> Option<String> {
    if let Some(message) = text_field(obj, &["ErrMessage"]) {
        return Some(fill_placeholders(
            &message,
            text_field(obj, &["DynamicMessage"]),
        ));
    }
    text_field(obj, &["Message", "message", "ErrorMessage", "errorMessage"])
}

fn data_message(obj: &Map<String, Value>) -> Option<String> {
    obj.get("Data")
        .and_then(Value::as_object)
        .and_then(|data| text_field(data, &["Message", "message"]))
}

/// `The Value of Input Parameter %s is not valid.` + `DtsJobId`. Without a
/// placeholder, a dynamic part is appended so it is not lost.
fn fill_placeholders(template: &str, dynamic: Option<String>) -> String {
    match dynamic {
        Some(dynamic) if template.contains("%s") => template.replace("%s", &dynamic),
        Some(dynamic) if dynamic != template => format!("{template} ({dynamic})"),
        _ => template.to_owned(),
    }
}

/// The first of `names` that holds a non-empty string (or a number).
fn text_field(obj: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| match obj.get(*name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

fn number_field(obj: &Map<String, Value>, name: &str) -> Option<u16> {
    match obj.get(name)? {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The text of the first `<tag>...</tag>`, for the gateway's XML errors.
fn xml_tag(text: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&close)?;
    let value = text[start..start + len].trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// At most `max` characters of `text`, on one line.
fn snippet(text: &str, max: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > max {
        let cut: String = one_line.chars().take(max).collect();
        format!("{cut}...")
    } else {
        one_line
    }
}

/// Replaces every occurrence of each secret, raw or percent-encoded once or
/// twice (as in a string-to-sign), with `<redacted>`.
fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        let once = signer::percent_encode(secret);
        let twice = signer::percent_encode(&once);
        // Longest first, so a raw value inside an encoded one is not half-replaced.
        for form in [twice, once, (*secret).to_owned()] {
            if out.contains(&form) {
                out = out.replace(&form, REDACTED);
            }
        }
    }
    out
}

/// `host[:port]` of a base URL.
fn host_of(base: &str) -> &str {
    let rest = base.split_once("://").map_or(base, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

fn header_value(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A failure before any answer arrived.
fn transport_error(e: &reqwest::Error, host: &str, options: ClientOptions) -> ApiError {
    let cause = cause_chain(e);
    if e.is_connect() {
        ApiError::new(
            "Transport.Connect",
            format!("could not connect to {host}: {cause}"),
            None,
        )
    } else if e.is_timeout() {
        ApiError::new(
            "Transport.Timeout",
            format!(
                "no answer from {host} within {}s",
                options.request_timeout.as_secs_f64()
            ),
            None,
        )
    } else {
        ApiError::new(
            "Transport.ConnectionDropped",
            format!("the connection to {host} closed before an answer arrived: {cause}"),
            None,
        )
    }
}

/// Why the body of an answer could not be read whole.
enum BodyError {
    /// It is larger than the cap (in bytes).
    TooLarge(u64),
    /// The transport failed.
    Http(reqwest::Error),
}

/// Reads the body of an answer, at most `cap` bytes: an answer that says it
/// is longer is refused before its body is read, and one that turns out
/// longer as it streams stops being read one chunk past the cap.
async fn read_body(mut response: reqwest::Response, cap: u64) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > cap) {
        return Err(BodyError::TooLarge(cap));
    }
    let mut body: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Http)? {
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(BodyError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An answer over the size cap. The request was sent and answered, so it
/// may have been applied: an unknown outcome (a `Transport.*` code).
fn too_large(host: &str, status: u16, cap: u64) -> ApiError {
    ApiError::new(
        "Transport.AnswerTooLarge",
        format!(
            "the answer from {host} (HTTP {status}) is larger than the {} limit on API answers",
            crate::limits::format_bytes(cap)
        ),
        Some(status),
    )
}

/// A failure while reading the body of an answer.
fn body_error(e: &reqwest::Error, host: &str, status: u16, options: ClientOptions) -> ApiError {
    if e.is_timeout() {
        ApiError::new(
            "Transport.Timeout",
            format!(
                "the answer from {host} (HTTP {status}) did not finish within {}s",
                options.request_timeout.as_secs_f64()
            ),
            Some(status),
        )
    } else {
        ApiError::new(
            "Transport.ConnectionDropped",
            format!(
                "the answer from {host} (HTTP {status}) was cut short: {}",
                cause_chain(e)
            ),
            Some(status),
        )
    }
}

/// The causes under a reqwest error, without its own text (which holds the
/// URL, and so the credentials).
fn cause_chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p == &text) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() {
        "no further detail".to_owned()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> RawAnswer<'_> {
        RawAnswer {
            status,
            retry_after: None,
            request_id: None,
            body: body.as_bytes(),
        }
    }

    #[test]
    fn success_keeps_the_body_and_request_id() {
        let ok = interpret(
            &answer(
                200,
                r#"{"RequestId":"R1","Success":true,"Data":{"Status":"RUN"}}"#,
            ),
            true,
        )
        .unwrap();
        assert_eq!(ok.request_id.as_deref(), Some("R1"));
        assert_eq!(ok.body["Data"]["Status"], "RUN");
        assert_eq!(ok.http_status, 200);
    }

    #[test]
    fn gateway_errors_classify_by_code_then_status() {
        let body = r#"{"RequestId":"R2","HostId":"dts.aliyuncs.com","Code":"Throttling.User","Message":"Request was denied due to user flow control.","Recommend":"https://api.alibabacloud.com/troubleshoot?q=Throttling.User"}"#;
        let e = interpret(&answer(400, body), false).unwrap_err();
        assert_eq!(e.code, "Throttling.User");
        assert_eq!(e.class, ErrorClass::Rejected);
        assert_eq!(e.request_id.as_deref(), Some("R2"));
        assert_eq!(e.http_status, Some(400));
        assert_eq!(
            e.recommend.as_deref(),
            Some("https://api.alibabacloud.com/troubleshoot?q=Throttling.User")
        );

        let e = interpret(&answer(502, r#"{"error":"bad gateway"}"#), false).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.class),
            ("Http.502", ErrorClass::UnknownOutcome)
        );
        let e = interpret(&answer(429, "{}"), false).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.class),
            ("Http.429", ErrorClass::Rejected)
        );
    }

    #[test]
    fn xml_and_garbled_bodies() {
        let xml = "<?xml version='1.0'?><Error><RequestId>R3</RequestId><HostId>h</HostId><Code>InvalidApi.NotFound</Code><Message>Specified api is not found.</Message></Error>";
        let e = interpret(&answer(404, xml), false).unwrap_err();
        assert_eq!(e.code, "InvalidApi.NotFound");
        assert_eq!(e.message, "Specified api is not found.");
        assert_eq!(e.request_id.as_deref(), Some("R3"));
        assert_eq!(e.class, ErrorClass::Permanent);

        let e = interpret(
            &answer(502, "<html>\n  <body>502 Bad Gateway</body></html>"),
            false,
        )
        .unwrap_err();
        assert_eq!(e.code, INVALID_RESPONSE);
        assert_eq!(e.class, ErrorClass::UnknownOutcome);
        assert!(
            e.message.contains("<html> <body>502 Bad Gateway"),
            "{}",
            e.message
        );

        let e = interpret(&answer(200, "not json"), true).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.class),
            (INVALID_RESPONSE, ErrorClass::UnknownOutcome)
        );
        let e = interpret(&answer(400, ""), true).unwrap_err();
        assert_eq!(e.class, ErrorClass::Permanent);
        assert!(e.message.ends_with("with an empty body"), "{}", e.message);
    }

    #[test]
    fn dts_business_failure_fills_the_placeholder() {
        let body = r#"{"RequestId":"R4","HttpStatusCode":400,"Success":false,"ErrCode":"InvalidParameter","ErrMessage":"The Value of Input Parameter %s is not valid.","DynamicMessage":"DtsJobId","DynamicCode":""}"#;
        let e = interpret(&answer(200, body), false).unwrap_err();
        assert_eq!(e.code, "InvalidParameter");
        assert_eq!(
            e.message,
            "The Value of Input Parameter DtsJobId is not valid."
        );
        assert_eq!(e.http_status, Some(200));
        assert_eq!(e.class, ErrorClass::Permanent);

        let body = r#"{"Success":false,"ErrCode":"InternalError","ErrMessage":"oops","HttpStatusCode":500}"#;
        assert_eq!(
            interpret(&answer(200, body), false).unwrap_err().class,
            ErrorClass::UnknownOutcome
        );
        let body = r#"{"Success":"false","HttpStatusCode":"503"}"#;
        let e = interpret(&answer(200, body), false).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.class),
            (OPERATION_FAILED, ErrorClass::Rejected)
        );
    }

    #[test]
    fn data_status_fail_is_a_verdict_only_for_mutating_dataworks_calls() {
        let body = r#"{"RequestId":"R5","Success":true,"Data":{"Status":"fail","Message":"fileId:[100] is invalid."}}"#;
        let e = interpret(&answer(200, body), true).unwrap_err();
        assert_eq!(e.code, OPERATION_FAILED);
        assert_eq!(e.message, "fileId:[100] is invalid.");
        assert_eq!(e.class, ErrorClass::Permanent);
        assert_eq!(e.request_id.as_deref(), Some("R5"));
        // In a read, `fail` is the state of a DI solution: the step's output.
        let ok = interpret(&answer(200, body), false).unwrap();
        assert_eq!(ok.body["Data"]["Status"], "fail");
    }

    #[test]
    fn retry_after_is_milliseconds_and_capped() {
        assert_eq!(
            parse_retry_after(Some("1500")),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after(Some(" 200000 ")), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after(Some("0")), None);
        assert_eq!(parse_retry_after(Some("soon")), None);
        assert_eq!(parse_retry_after(None), None);
        let a = RawAnswer {
            retry_after: Some("250"),
            ..answer(429, r#"{"Code":"Throttling.Api","Message":"m"}"#)
        };
        assert_eq!(
            interpret(&a, false).unwrap_err().retry_after,
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn request_id_falls_back_to_the_header() {
        let a = RawAnswer {
            request_id: Some("H1"),
            ..answer(500, r#"{"Code":"InternalError.System","Message":"m"}"#)
        };
        assert_eq!(
            interpret(&a, false).unwrap_err().request_id.as_deref(),
            Some("H1")
        );
    }

    #[test]
    fn scrub_removes_raw_and_encoded_values() {
        let token = "CAIS+tok/en=";
        let text = format!(
            "string to sign is:POST&%2F&SecurityToken%3D{}%26x and {} and {}",
            signer::percent_encode(&signer::percent_encode(token)),
            signer::percent_encode(token),
            token
        );
        let out = scrub(&text, &[token]);
        assert!(!out.contains("tok"), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 3, "{out}");
    }

    #[test]
    fn data_status_verdict_applies_to_mutating_dataworks_calls() {
        let typed =
            |name: &str| ActionRequest::typed(actions::lookup(name).unwrap(), "", BTreeMap::new());
        let terminate = typed("dataworks.TerminateDISyncInstance");
        assert!(verdict_in_data_status(&terminate));
        assert!(!verdict_in_data_status(&typed(
            "dataworks.GetDISyncInstanceInfo"
        )));
        assert!(!verdict_in_data_status(&typed("dts.StopDtsJob")));
        let generic = ActionRequest {
            product: "dataworks-public".into(),
            ..terminate
        };
        assert!(verdict_in_data_status(&generic));
    }

    #[test]
    fn host_of_base_urls() {
        assert_eq!(host_of("https://dts.aliyuncs.com"), "dts.aliyuncs.com");
        assert_eq!(host_of("http://127.0.0.1:9000/x"), "127.0.0.1:9000");
    }
}
