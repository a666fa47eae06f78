//! The gateway: what Alibaba's API gateway does before a request reaches a
//! service, in the order the simulator does it:
//!
//! 1. merge the query string and the form body (`+` is a space, `%2B` a plus;
//!    the body wins on a repeated name);
//! 2. method (`GET`/`POST`), path (`/`), `Action` and `Version` present, the
//!    API exists (404 `InvalidAction.NotFound`);
//! 3. the common parameters present (400 `MissingParameter`), `Format` JSON,
//!    `SignatureMethod` HMAC-SHA1, `SignatureVersion` 1.0;
//! 4. `Timestamp` well formed and within 15 minutes of the simulator's clock
//!    (`InvalidTimeStamp.Format` / `.Expired`);
//! 5. the key exists (404 `InvalidAccessKeyId.NotFound`) and the signature
//!    matches, recomputed with [`crate::cloud::signer`] over every parameter
//!    received except `Signature`, empty ones included (400 `SignatureDoesNotMatch`);
//! 6. the nonce is fresh (400 `SignatureNonceUsed`); only a correctly signed
//!    request uses up a nonce;
//! 7. flow control: the QPS limit, then the fault dice;
//! 8. the API's own parameters against the catalogue's `ParamSpec`s
//!    (400 `MissingParameter`, `Param.Invalid` for DataWorks, `InvalidParameter` for DTS);
//! 9. the service ([`super::handlers`]), unless a fault answers or drops instead.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Shared;
use super::calllog::{CallRecord, Outcome, redact};
use super::faults::FaultKind;
use super::handlers::{Ctx, Reply, gateway_error, handle};
use super::served;
use super::state::Now;
use crate::cloud::actions::{ActionSpec, DATAWORKS, ParamType};
use crate::cloud::{common, signer};

/// The parts of an HTTP request the gateway reads.
pub(crate) struct RawRequest<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) host: Option<&'a str>,
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

/// Steps 2 to 5: everything that needs no shared state.
#[expect(
    clippy::result_large_err,
    reason = "the error is the answer itself, moved once per refused request"
)]
fn authenticate(
    shared: &Shared,
    raw: &RawRequest<'_>,
    params: &BTreeMap<String, String>,
    ctx: &Ctx<'_>,
) -> Result<&'static ActionSpec, Reply> {
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
    let get = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let action = get("Action").ok_or_else(|| missing(ctx, "Action"))?;
    let version = get("Version").ok_or_else(|| missing(ctx, "Version"))?;
    let spec = served::lookup(version, action)
        .filter(|_| raw.path == "/")
        .ok_or_else(|| {
            gateway_error(
                ctx,
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.".to_owned(),
            )
        })?;
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
        return Err(gateway_error(
            ctx,
            400,
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards: SignatureVersion must be 1.0.".to_owned(),
        ));
    }
    let timestamp: jiff::Timestamp =
        get("Timestamp").unwrap_or_default().parse().map_err(|_| {
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
    let key_id = get("AccessKeyId").unwrap_or_default();
    let Some(secret) = shared.credentials.get(key_id) else {
        return Err(gateway_error(
            ctx,
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.".to_owned(),
        ));
    };
    let mut signed = params.clone();
    let given = signed.remove("Signature").unwrap_or_default();
    let expected = signer::sign(raw.method, &signed, secret);
    if !signer::signatures_equal(&expected, &given) {
        // Like the cloud, say what was signed, so a client can diff its own
        // canonicalization; the key id and token are redacted.
        let shown =
            signer::string_to_sign(raw.method, &signer::canonicalized_query(&redact(&signed)));
        return Err(gateway_error(
            ctx,
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{shown}"
            ),
        ));
    }
    Ok(spec)
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

/// Runs one request through the gateway and the service, records it, and
/// says how to answer.
pub(crate) fn process(shared: &Shared, raw: &RawRequest<'_>) -> Processed {
    let now = Now::current();
    let request_id = uuid::Uuid::new_v4().to_string().to_ascii_uppercase();
    let params = parameters(raw);
    let version = params.get("Version").cloned();
    let action = params.get("Action").cloned();
    let product = version.as_deref().and_then(served::product_of_version);
    let region = params.get("RegionId").map_or("", String::as_str);
    let host_id = match product {
        Some(product) => crate::cloud::endpoint::default_host(product, region),
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
    let (seq, reply) = match authenticate(shared, raw, &params, &ctx) {
        Err(reply) => (shared.seq.fetch_add(1, Ordering::Relaxed) + 1, reply),
        Ok(spec) => {
            let checked = validate(spec, &params, &ctx);
            let nonce = params.get("SignatureNonce").map_or("", String::as_str);
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
        params: redact(&params),
        outcome: reply.outcome,
        code: if drop { None } else { reply.code.clone() },
        message: if drop { None } else { reply.message.clone() },
        http_status: if drop { None } else { Some(reply.http) },
        request_id: request_id.clone(),
        changed: reply.changed,
        faults,
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

    #[test]
    fn query_and_form_body_merge_with_plus_as_space() {
        let raw = RawRequest {
            method: "POST",
            path: "/",
            query: "Action=StopDIJob&SignatureType=&Name=a%20b",
            content_type: Some("application/x-www-form-urlencoded; charset=utf-8"),
            host: None,
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
