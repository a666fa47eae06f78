//! The gateway: what Alibaba's API gateway does before a request reaches a
//! service, in the order the simulator does it. It accepts both signatures:
//! V3 (`ACS3-HMAC-SHA256`) when the request has an `Authorization` header
//! (or an `x-acs-action` header and no `Signature` parameter), V1 (HMAC-SHA1)
//! otherwise ([`signature_of`]).
//!
//! 1. merge the query string and the form body (`+` is a space, `%2B` a plus;
//!    the body wins on a repeated name): the API's parameters;
//! 2. method (`GET`/`POST`), path (`/`), the action and version present
//!    (V1: `Action`, `Version`; V3: `x-acs-action`, `x-acs-version`; 400
//!    `MissingParameter`), the API exists (404 `InvalidAction.NotFound`);
//! 3. V1: the common parameters present (400 `MissingParameter`), `Format`
//!    JSON, `SignatureMethod` HMAC-SHA1, `SignatureVersion` 1.0.
//!    V3: no `Authorization` or `x-acs-*` header repeated, the `Authorization`
//!    well formed ([`v3::parse_authorization`]), `x-acs-date`,
//!    `x-acs-signature-nonce` and `x-acs-content-sha256` present, and
//!    `SignedHeaders` naming `host`, every `x-acs-*` header sent, and only
//!    headers sent (400 `IncompleteSignature`, saying which);
//! 4. the date (`Timestamp` / `x-acs-date`) well formed and within 15 minutes
//!    of the simulator's clock (`InvalidTimeStamp.Format` / `.Expired`);
//! 5. the key exists (404 `InvalidAccessKeyId.NotFound`) and, for temporary
//!    credentials, the STS token (`SecurityToken` / `x-acs-security-token`)
//!    came with it and is right ([`credential`], one lookup for both
//!    signatures); then the signature matches (400 `SignatureDoesNotMatch`),
//!    recomputed with [`crate::cloud::signer`]: V1 over every parameter
//!    received except `Signature`, empty ones included; V3 first checks
//!    `x-acs-content-sha256` against the body, then signs the method, path,
//!    query and exactly the headers `SignedHeaders` names;
//! 6. the nonce (`SignatureNonce` / `x-acs-signature-nonce`; one store for
//!    both) is fresh (400 `SignatureNonceUsed`); only a correctly signed
//!    request uses up a nonce;
//! 7. flow control: the QPS limit, then the fault dice;
//! 8. the API's own parameters against the catalogue's `ParamSpec`s
//!    (400 `MissingParameter`, `Param.Invalid` for DataWorks, `InvalidParameter` for DTS);
//! 9. the service ([`super::handlers`]), unless a fault answers or drops instead.
//!
//! The call log records which signature each request carried.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Shared;
use super::calllog::{CallRecord, Outcome, redact, redact_headers};
use super::faults::FaultKind;
use super::handlers::{Ctx, Reply, gateway_error, handle};
use super::identity::KeyEntry;
use super::served;
use super::state::Now;
use super::sts;
use crate::cloud::actions::{ActionSpec, DATAWORKS, ParamType};
use crate::cloud::common;
use crate::cloud::signer::{self, SignatureVersion, v3};

/// The parts of an HTTP request the gateway reads.
pub(crate) struct RawRequest<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) host: Option<&'a str>,
    /// Every header (name lower-case, value), in the order received.
    pub(crate) headers: &'a [(&'a str, &'a str)],
    pub(crate) body: &'a [u8],
}

/// What to do with a request: answer `reply` after `delay`, or drop the
/// connection instead of answering.
pub(crate) struct Processed {
    pub(crate) reply: Reply,
    pub(crate) request_id: String,
    pub(crate) delay: Option<Duration>,
    pub(crate) drop: bool,
}

/// How long a `Timestamp` may differ from the simulator's clock.
pub(crate) const TIMESTAMP_WINDOW: Duration = Duration::from_secs(15 * 60);

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

/// The parameters of a request: query string and form body, decoded and merged.
pub(crate) fn parameters(raw: &RawRequest<'_>) -> BTreeMap<String, String> {
    let mut params: BTreeMap<String, String> = signer::parse_form(raw.query).into_iter().collect();
    let is_form = raw.content_type.is_some_and(|t| {
        t.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if is_form && !raw.body.is_empty() {
        params.extend(signer::parse_form(&String::from_utf8_lossy(raw.body)));
    }
    params
}

/// The one credential lookup, for both signatures and STS: the key named
/// `access_key_id`, once the STS token that must come with a temporary key
/// is there, right and unexpired ([`super::identity::Keys::caller`]).
/// (A token sent with a permanent key is ignored.)
#[expect(
    clippy::result_large_err,
    reason = "the error is the answer itself, moved once per refused request"
)]
pub(crate) fn credential(
    shared: &Shared,
    access_key_id: &str,
    security_token: Option<&str>,
    ctx: &Ctx<'_>,
) -> Result<KeyEntry, Reply> {
    shared
        .iam
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .keys
        .caller(access_key_id, security_token.unwrap_or_default(), ctx)
}

/// The request's headers (names lower-case, as the HTTP stack gives them).
struct Headers<'a>(&'a [(&'a str, &'a str)]);

impl<'a> Headers<'a> {
    fn all(&self, name: &str) -> impl Iterator<Item = &'a str> + '_ {
        let name = name.to_owned();
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(&name))
            .map(|(_, v)| *v)
    }

    /// The value of a header sent once; `None` when absent or empty.
    fn one(&self, name: &str) -> Option<&'a str> {
        self.all(name)
            .next()
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    fn has(&self, name: &str) -> bool {
        self.all(name).next().is_some()
    }

    /// A header that must not be repeated but is: the first such name.
    fn repeated_control_header(&self) -> Option<&'a str> {
        self.0.iter().enumerate().find_map(|(i, (name, _))| {
            let control = *name == v3::AUTHORIZATION || name.starts_with("x-acs-");
            let again = self.0[..i].iter().any(|(n, _)| n == name);
            (control && again).then_some(*name)
        })
    }
}

/// What a request's signature says, whichever signature it uses: the
/// checks after this point are the same for both.
struct Claims<'a> {
    signature: SignatureVersion,
    api: Api,
    access_key_id: &'a str,
    security_token: Option<&'a str>,
    nonce: &'a str,
    /// `Timestamp` (V1) or `x-acs-date` (V3), as sent.
    date: &'a str,
    /// V3 only: the parsed `Authorization`.
    authorization: Option<v3::Authorization<'a>>,
}

/// Which signature a request carries: V3 when it has an `Authorization`
/// header, or an `x-acs-action` header and no `Signature` parameter (so a V3
/// request without `Authorization` is refused as unsigned, not as a V1
/// request missing its `Action`). The Tea SDKs send `x-acs-action` with V1
/// requests too (`signature_algorithm = "v2"`), so that header alone does
/// not make a request V3.
pub(crate) fn signature_of(
    headers: &[(&str, &str)],
    params: &BTreeMap<String, String>,
) -> SignatureVersion {
    let h = Headers(headers);
    if h.has(v3::AUTHORIZATION) || (h.has(v3::ACTION) && !params.contains_key("Signature")) {
        SignatureVersion::V3
    } else {
        SignatureVersion::V1
    }
}

/// What a request calls: a product's action, or STS.
#[derive(Clone, Copy)]
pub(crate) enum Api {
    /// An action of the served catalogue.
    Product(&'static ActionSpec),
    /// An STS action ([`sts::served_action`]).
    Sts(&'static str),
}

/// The API a request names, if the simulator serves it.
fn api(raw: &RawRequest<'_>, version: &str, action: &str) -> Option<Api> {
    if raw.path != "/" {
        return None;
    }
    if version == sts::STS_VERSION {
        return sts::served_action(action).map(Api::Sts);
    }
    served::lookup(version, action).map(Api::Product)
}

fn incomplete(ctx: &Ctx<'_>, why: &str) -> Reply {
    gateway_error(
        ctx,
        400,
        "IncompleteSignature",
        format!("The request signature does not conform to Aliyun standards: {why}."),
    )
}

fn not_found(ctx: &Ctx<'_>) -> Reply {
    gateway_error(
        ctx,
        404,
        "InvalidAction.NotFound",
        "Specified api is not found, please check your url and method.".to_owned(),
    )
}

/// Step 2 and 3 for V1: the common parameters in the query string or body.
#[expect(
    clippy::result_large_err,
    reason = "the error is the answer itself, moved once per refused request"
)]
fn claims_v1<'a>(
    raw: &RawRequest<'_>,
    params: &'a BTreeMap<String, String>,
    ctx: &Ctx<'_>,
) -> Result<Claims<'a>, Reply> {
    let get = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let action = get("Action").ok_or_else(|| missing(ctx, "Action"))?;
    let version = get("Version").ok_or_else(|| missing(ctx, "Version"))?;
    let api = api(raw, version, action).ok_or_else(|| not_found(ctx))?;
    for name in common::ALL
        .iter()
        .filter(|c| c.required())
        .map(|c| c.name())
    {
        if get(name).is_none() {
            return Err(missing(ctx, name));
        }
    }
    if let Some(format) = get("Format")
        && !format.eq_ignore_ascii_case("JSON")
    {
        return Err(gateway_error(
            ctx,
            400,
            "InvalidParameter",
            format!(
                "Specified parameter Format is not valid: the simulator answers JSON only, got \"{format}\"."
            ),
        ));
    }
    if get("SignatureMethod") != Some(signer::SIGNATURE_METHOD) {
        return Err(gateway_error(
            ctx,
            400,
            "InvalidSignatureMethod",
            "Specified signature method is not valid.".to_owned(),
        ));
    }
    if get("SignatureVersion") != Some(signer::SIGNATURE_VERSION) {
        return Err(incomplete(ctx, "SignatureVersion must be 1.0"));
    }
    Ok(Claims {
        signature: SignatureVersion::V1,
        api,
        access_key_id: get("AccessKeyId").unwrap_or_default(),
        security_token: get("SecurityToken"),
        nonce: get("SignatureNonce").unwrap_or_default(),
        date: get("Timestamp").unwrap_or_default(),
        authorization: None,
    })
}

/// Step 2 and 3 for V3: the `x-acs-*` headers and the `Authorization`,
/// whose `SignedHeaders` must name `host` and every `x-acs-*` header sent,
/// and name only headers that were sent.
#[expect(
    clippy::result_large_err,
    reason = "the error is the answer itself, moved once per refused request"
)]
fn claims_v3<'a>(raw: &RawRequest<'a>, ctx: &Ctx<'_>) -> Result<Claims<'a>, Reply> {
    let h = Headers(raw.headers);
    if let Some(name) = h.repeated_control_header() {
        return Err(incomplete(
            ctx,
            &format!("the header {name} is sent more than once"),
        ));
    }
    let action = h.one(v3::ACTION).ok_or_else(|| missing(ctx, v3::ACTION))?;
    let version = h
        .one(v3::VERSION)
        .ok_or_else(|| missing(ctx, v3::VERSION))?;
    let api = api(raw, version, action).ok_or_else(|| not_found(ctx))?;
    let value = h
        .one(v3::AUTHORIZATION)
        .ok_or_else(|| incomplete(ctx, "the Authorization header is missing"))?;
    let authorization =
        v3::parse_authorization(value).map_err(|e| incomplete(ctx, &e.to_string()))?;
    for name in [v3::DATE, v3::NONCE, v3::CONTENT_SHA256] {
        if h.one(name).is_none() {
            return Err(missing(ctx, name));
        }
    }
    let signed = &authorization.signed_headers;
    if !signed.contains(&"host") {
        return Err(incomplete(ctx, "SignedHeaders must include host"));
    }
    if let Some((name, _)) = raw
        .headers
        .iter()
        .find(|(n, _)| n.starts_with("x-acs-") && !signed.contains(n))
    {
        return Err(incomplete(
            ctx,
            &format!(
                "SignedHeaders must include every x-acs-* header sent, and {name} is not in it"
            ),
        ));
    }
    if let Some(name) = signed.iter().find(|n| !h.has(n)) {
        return Err(incomplete(
            ctx,
            &format!("SignedHeaders names {name}, which was not sent"),
        ));
    }
    Ok(Claims {
        signature: SignatureVersion::V3,
        api,
        access_key_id: authorization.credential,
        security_token: h.one(v3::SECURITY_TOKEN),
        nonce: h.one(v3::NONCE).unwrap_or_default(),
        date: h.one(v3::DATE).unwrap_or_default(),
        authorization: Some(authorization),
    })
}

/// Step 5 for V1: HMAC-SHA1 over every parameter received but `Signature`.
#[expect(
    clippy::result_large_err,
    reason = "the error is the answer itself, moved once per refused request"
)]
fn verify_v1(
    raw: &RawRequest<'_>,
    params: &BTreeMap<String, String>,
    secret: &str,
    ctx: &Ctx<'_>,
) -> Result<(), Reply> {
    let mut signed = params.clone();
    let given = signed.remove("Signature").unwrap_or_default();
    let expected = signer::sign(raw.method, &signed, secret);
    if signer::signatures_equal(&expected, &given) {
        return Ok(());
    }
    // Like the cloud, say what was signed, so a client can diff its own
    // canonicalization; the key id and token are redacted.
    let shown = signer::string_to_sign(raw.method, &signer::canonicalized_query(&redact(&signed)));
    Err(gateway_error(
        ctx,
        400,
        "SignatureDoesNotMatch",
        format!(
            "Specified signature is not matched with our calculation. server string to sign is:{shown}"
        ),
    ))
}

/// Step 5 for V3: the body against `x-acs-content-sha256`, then
/// HMAC-SHA256 over exactly the headers `SignedHeaders` names.
#[expect(
    clippy::result_large_err,
    reason = "the error is the answer itself, moved once per refused request"
)]
fn verify_v3(
    raw: &RawRequest<'_>,
    authorization: &v3::Authorization<'_>,
    secret: &str,
    ctx: &Ctx<'_>,
) -> Result<(), Reply> {
    let h = Headers(raw.headers);
    let payload = v3::hashed_payload(raw.body);
    if !h
        .one(v3::CONTENT_SHA256)
        .is_some_and(|sent| sent.eq_ignore_ascii_case(&payload))
    {
        return Err(gateway_error(
            ctx,
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation: x-acs-content-sha256 is not the SHA-256 of the body received ({payload})."
            ),
        ));
    }
    let signed_headers: Vec<(&str, &str)> = authorization
        .signed_headers
        .iter()
        .flat_map(|name| h.all(name).map(move |v| (*name, v)))
        .collect();
    let query: BTreeMap<String, String> = signer::parse_form(raw.query).into_iter().collect();
    let expected = v3::sign(
        &v3::Request {
            method: raw.method,
            path: raw.path,
            query: &query,
            headers: &signed_headers,
            body: raw.body,
        },
        secret,
    );
    if signer::signatures_equal(&expected.signature, authorization.signature) {
        return Ok(());
    }
    // The string to sign is a hash: it shows nothing secret, and a client
    // that finds its own in the message knows its secret is wrong. The
    // canonical request is shown with the token redacted.
    let token = h.one(v3::SECURITY_TOKEN).unwrap_or_default();
    let canonical = if token.is_empty() {
        expected.canonical_request
    } else {
        expected
            .canonical_request
            .replace(token, crate::cloud::REDACTED)
    };
    Err(gateway_error(
        ctx,
        400,
        "SignatureDoesNotMatch",
        format!(
            "Specified signature is not matched with our calculation. server string to sign is:{} canonical request is:{canonical}",
            expected.string_to_sign
        ),
    ))
}

/// Steps 2 to 5: everything that needs no shared state but the key table.
/// Returns the API, the nonce to use up and the key it was signed with.
#[expect(
    clippy::result_large_err,
    reason = "the error is the answer itself, moved once per refused request"
)]
fn authenticate<'a>(
    shared: &Shared,
    raw: &RawRequest<'a>,
    params: &'a BTreeMap<String, String>,
    ctx: &Ctx<'_>,
) -> Result<(Api, &'a str, KeyEntry), Reply> {
    if !matches!(raw.method, "GET" | "POST") {
        return Err(gateway_error(
            ctx,
            400,
            "UnsupportedHTTPMethod",
            format!(
                "The HTTP method {} is not supported; RPC APIs take GET or POST.",
                raw.method
            ),
        ));
    }
    let claims = match signature_of(raw.headers, params) {
        SignatureVersion::V1 => claims_v1(raw, params, ctx)?,
        SignatureVersion::V3 => claims_v3(raw, ctx)?,
    };
    let timestamp: jiff::Timestamp = claims.date.parse().map_err(|_| {
        gateway_error(
            ctx,
            400,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.".to_owned(),
        )
    })?;
    let skew = ctx.now.wall.duration_since(timestamp).unsigned_abs();
    if skew > TIMESTAMP_WINDOW {
        return Err(gateway_error(
            ctx,
            400,
            "InvalidTimeStamp.Expired",
            format!(
                "Specified time stamp or date value is expired: {timestamp} is {}s away from the server time {}.",
                skew.as_secs(),
                ctx.now.wall.strftime("%Y-%m-%dT%H:%M:%SZ")
            ),
        ));
    }
    let key = credential(shared, claims.access_key_id, claims.security_token, ctx)?;
    match &claims.authorization {
        None => verify_v1(raw, params, &key.secret, ctx)?,
        Some(authorization) => verify_v3(raw, authorization, &key.secret, ctx)?,
    }
    debug_assert_eq!(claims.signature, signature_of(raw.headers, params));
    Ok((claims.api, claims.nonce, key))
}

/// Step 8: the API's own parameters.
#[expect(
    clippy::result_large_err,
    reason = "the error is the answer itself, moved once per refused request"
)]
fn validate(
    spec: &ActionSpec,
    params: &BTreeMap<String, String>,
    ctx: &Ctx<'_>,
) -> Result<(), Reply> {
    for p in spec.params {
        let value = params.get(p.name).map_or("", String::as_str);
        if value.is_empty() {
            if p.required {
                return Err(missing(ctx, p.name));
            }
            continue;
        }
        let problem = match p.ty {
            ParamType::Integer if value.parse::<i64>().is_err() => {
                Some("must be an integer".to_owned())
            }
            ParamType::Boolean if !matches!(value, "true" | "false") => {
                Some("must be true or false".to_owned())
            }
            _ if !p.allowed.is_empty() && !p.allowed.contains(&value) => {
                Some(format!("must be one of {}", p.allowed.join(", ")))
            }
            _ => None,
        };
        if let Some(problem) = problem {
            return Err(if spec.product == DATAWORKS {
                gateway_error(
                    ctx,
                    400,
                    "Param.Invalid",
                    format!(
                        "The parameter is invalid: {} {problem}, got \"{value}\".",
                        p.name
                    ),
                )
            } else {
                gateway_error(
                    ctx,
                    400,
                    "InvalidParameter",
                    format!(
                        "Specified parameter {} is not valid: {problem}, got \"{value}\".",
                        p.name
                    ),
                )
            });
        }
    }
    Ok(())
}

fn throttled(ctx: &Ctx<'_>, product: &str) -> Reply {
    // DataWorks documents 429; the gateway tables (and so DTS) say 400.
    if product == DATAWORKS {
        gateway_error(
            ctx,
            429,
            "Throttling.User",
            "Your request is too frequent. Try again later.".to_owned(),
        )
    } else {
        gateway_error(
            ctx,
            400,
            "Throttling.User",
            "Request was denied due to user flow control.".to_owned(),
        )
    }
}

/// STS, once the gateway has checked the request (faults and flow control
/// do not apply to it).
fn serve_sts(
    shared: &Shared,
    action: &str,
    params: &BTreeMap<String, String>,
    caller: Option<&KeyEntry>,
    ctx: &Ctx<'_>,
) -> Reply {
    let mut iam = shared
        .iam
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    sts::handle(&mut iam, action, params, caller, ctx)
}

/// Runs one request through the gateway and the service, records it, and
/// says how to answer.
pub(crate) fn process(shared: &Shared, raw: &RawRequest<'_>) -> Processed {
    let now = Now::current();
    let request_id = uuid::Uuid::new_v4().to_string().to_ascii_uppercase();
    let params = parameters(raw);
    let signature = signature_of(raw.headers, &params);
    let headers = Headers(raw.headers);
    let (version, action) = match signature {
        SignatureVersion::V1 => (
            params.get("Version").cloned(),
            params.get("Action").cloned(),
        ),
        SignatureVersion::V3 => (
            headers.one(v3::VERSION).map(str::to_owned),
            headers.one(v3::ACTION).map(str::to_owned),
        ),
    };
    let product = version.as_deref().and_then(served::product_of_version);
    let region = params.get("RegionId").map_or("", String::as_str);
    let is_sts = version.as_deref() == Some(sts::STS_VERSION);
    let host_id = match product {
        Some(product) => crate::cloud::endpoint::default_host(product, region),
        None if is_sts => sts::STS_HOST.to_owned(),
        None => raw.host.unwrap_or("localhost").to_owned(),
    };
    let ctx = Ctx {
        request_id: &request_id,
        host_id: &host_id,
        product,
        now,
    };

    let mut faults = Vec::new();
    let mut delay = None;
    let mut drop = false;
    // STS takes `AssumeRoleWithOIDC` unsigned: the OIDC token is the proof.
    let anonymous = is_sts
        && signature == SignatureVersion::V1
        && action.as_deref().is_some_and(sts::is_anonymous);
    let authenticated = if anonymous {
        match (raw.method, raw.path) {
            ("GET" | "POST", "/") => Ok(None),
            _ => Err(not_found(&ctx)),
        }
    } else {
        authenticate(shared, raw, &params, &ctx).map(Some)
    };
    let caller = match &authenticated {
        Ok(Some((_, _, key))) => Some(key.principal.arn.clone()),
        _ => None,
    };
    let (seq, reply) = match authenticated {
        Err(reply) => (shared.seq.fetch_add(1, Ordering::Relaxed) + 1, reply),
        Ok(None) => (
            shared.seq.fetch_add(1, Ordering::Relaxed) + 1,
            serve_sts(shared, "AssumeRoleWithOIDC", &params, None, &ctx),
        ),
        Ok(Some((Api::Sts(action), nonce, caller))) => {
            let fresh = shared
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .nonces
                .insert(nonce, now.mono);
            let reply = if fresh {
                serve_sts(shared, action, &params, Some(&caller), &ctx)
            } else {
                gateway_error(
                    &ctx,
                    400,
                    "SignatureNonceUsed",
                    "Specified signature nonce was used already.".to_owned(),
                )
            };
            (shared.seq.fetch_add(1, Ordering::Relaxed) + 1, reply)
        }
        Ok(Some((Api::Product(spec), nonce, _))) => {
            let checked = validate(spec, &params, &ctx);
            let mut state = shared
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Taken under the state lock, so `seq` is the order calls were applied in.
            let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
            let reply = if !state.nonces.insert(nonce, now.mono) {
                gateway_error(
                    &ctx,
                    400,
                    "SignatureNonceUsed",
                    "Specified signature nonce was used already.".to_owned(),
                )
            } else if let Err(wait) = state.faults.admit(spec.product, now.mono) {
                faults.push(FaultKind::Qps);
                Reply {
                    retry_after: Some(wait),
                    ..throttled(&ctx, spec.product)
                }
            } else {
                let draw = state.faults.draw(spec.action);
                if let Some(slow) = draw.slow {
                    faults.push(FaultKind::Slow);
                    delay = Some(slow);
                }
                if let Some(kind) = draw.outcome {
                    faults.push(kind);
                }
                match (draw.outcome, checked) {
                    (Some(FaultKind::Throttle), _) => throttled(&ctx, spec.product),
                    // Access is decided before the parameters are looked at.
                    (Some(FaultKind::Deny), _) => gateway_error(
                        &ctx,
                        403,
                        "Forbidden.RAM",
                        "User not authorized to operate on the specified resource, or this API does not support RAM.".to_owned(),
                    ),
                    (_, Err(invalid)) => {
                        // The gateway refuses bad parameters before any backend fault.
                        faults.retain(|k| {
                            !matches!(
                                k,
                                FaultKind::Error | FaultKind::Drop | FaultKind::AppliedDrop
                            )
                        });
                        invalid
                    }
                    (Some(FaultKind::Error), Ok(())) => gateway_error(
                        &ctx,
                        500,
                        "InternalError.System",
                        "An internal error occurred. Try again later.".to_owned(),
                    ),
                    (Some(FaultKind::Drop), Ok(())) => {
                        drop = true;
                        Reply {
                            outcome: Outcome::Dropped,
                            ..gateway_error(&ctx, 500, "Dropped", String::new())
                        }
                    }
                    (Some(FaultKind::AppliedDrop), Ok(())) => {
                        drop = true;
                        Reply {
                            outcome: Outcome::AppliedThenDropped,
                            ..handle(&mut state, spec, &params, &ctx)
                        }
                    }
                    (_, Ok(())) => handle(&mut state, spec, &params, &ctx),
                }
            };
            if reply.changed {
                state.changes += 1;
            }
            (seq, reply)
        }
    };

    shared.log.push(CallRecord {
        seq,
        time: now.wall,
        method: raw.method.to_owned(),
        product: product.map(str::to_owned),
        version,
        action,
        signature,
        params: redact(&params),
        headers: match signature {
            SignatureVersion::V1 => BTreeMap::new(),
            SignatureVersion::V3 => redact_headers(raw.headers.iter().copied()),
        },
        outcome: reply.outcome,
        code: if drop { None } else { reply.code.clone() },
        message: if drop { None } else { reply.message.clone() },
        http_status: if drop { None } else { Some(reply.http) },
        request_id: request_id.clone(),
        changed: reply.changed,
        faults,
        caller,
    });
    Processed {
        reply,
        request_id,
        delay,
        drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact requests of the SDK-computed V3 vectors, `Authorization`
    /// included, verify at the gateway; with another secret they do not.
    #[test]
    fn the_sdks_own_v3_requests_verify() {
        #[derive(serde::Deserialize)]
        struct Vector {
            name: String,
            method: String,
            path: String,
            query: BTreeMap<String, String>,
            headers: BTreeMap<String, String>,
            body: String,
            access_key_secret: String,
            authorization: String,
        }
        #[derive(serde::Deserialize)]
        struct File {
            vectors: Vec<Vector>,
        }
        let file: File = serde_json::from_str(include_str!(
            "../../tests/fixtures/signature-v3-vectors.json"
        ))
        .unwrap();
        let ctx = Ctx {
            request_id: "R",
            host_id: "h",
            product: None,
            now: Now::current(),
        };
        for v in &file.vectors {
            let query = signer::canonicalized_query(&v.query);
            let mut headers: Vec<(&str, &str)> = v
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            headers.push(("authorization", &v.authorization));
            // Unsigned headers a client adds do not matter.
            headers.push(("user-agent", "AlibabaCloud (Linux) Python/3"));
            let raw = RawRequest {
                method: &v.method,
                path: &v.path,
                query: &query,
                content_type: None,
                host: None,
                headers: &headers,
                body: v.body.as_bytes(),
            };
            assert_eq!(
                signature_of(raw.headers, &BTreeMap::new()),
                SignatureVersion::V3
            );
            let auth = v3::parse_authorization(&v.authorization).unwrap();
            assert!(
                verify_v3(&raw, &auth, &v.access_key_secret, &ctx).is_ok(),
                "{}",
                v.name
            );
            let wrong = verify_v3(&raw, &auth, "another", &ctx).unwrap_err();
            assert_eq!(wrong.code.as_deref(), Some("SignatureDoesNotMatch"));
            let message = wrong.message.unwrap();
            if let Some(token) = v.headers.get(v3::SECURITY_TOKEN) {
                assert!(!message.contains(token.as_str()), "{message}");
            }
        }
    }

    #[test]
    fn query_and_form_body_merge_with_plus_as_space() {
        let raw = RawRequest {
            method: "POST",
            path: "/",
            query: "Action=StopDIJob&SignatureType=&Name=a%20b",
            content_type: Some("application/x-www-form-urlencoded; charset=utf-8"),
            host: None,
            headers: &[],
            body: b"DIJobId=11668&Note=x+y%2Bz&Name=body",
        };
        let p = parameters(&raw);
        assert_eq!(p["SignatureType"], "");
        assert_eq!(p["Note"], "x y+z");
        assert_eq!(p["DIJobId"], "11668");
        assert_eq!(p["Name"], "body", "the body wins");
        let json = RawRequest {
            content_type: Some("application/json"),
            ..raw
        };
        assert!(
            !parameters(&json).contains_key("DIJobId"),
            "only form bodies are parameters"
        );
    }
}
