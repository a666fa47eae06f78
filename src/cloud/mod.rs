//! Talking to Alibaba Cloud's RPC-style OpenAPI.
//!
//! This is the leaf of the crate: it imports nothing else from runbook.
//! `actions` is the catalogue every other stage checks against; `signer` is
//! the pure signatures (V1 HMAC-SHA1, and V3 `ACS3-HMAC-SHA256` in
//! `signer::v3`); `client` sends signed requests over HTTPS
//! (or to the simulator over loopback HTTP) and turns every error shape into
//! one [`ApiError`]; `credentials` finds the key pair and never shows it.

pub mod actions;
pub mod client;
pub mod common;
pub mod credentials;
pub mod credentials_file;
pub mod endpoint;
pub mod error;
pub mod principal;
pub mod provider;
pub mod region;
pub mod signer;
pub mod sts;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub use actions::{ActionSpec, Risk};
use common::Common;
pub use endpoint::Endpoints;
pub use error::{ApiError, ErrorClass};
use signer::SignatureVersion;

/// Parameter names whose values never leave the process in clear: not in
/// plans, logs, the journal, the simulator's call log or error messages.
pub const REDACTED_PARAMS: &[&str] = &[
    "AccessKeyId",
    "Signature",
    "SecurityToken",
    "AccessKeySecret",
    "OIDCToken",
];

/// What a redacted value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// One RPC call, before the common parameters and the signature are added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRequest {
    /// Product code (`dataworks`, `dts`, or any other for the generic action).
    pub product: String,
    /// API version (`2020-05-18`).
    pub version: String,
    /// RPC action name (`StopDISyncInstance`).
    pub action: String,
    /// Region the call targets; picks the endpoint.
    pub region: String,
    /// API parameters sent in the query string.
    pub query: BTreeMap<String, String>,
    /// API parameters sent as a form body.
    pub body: BTreeMap<String, String>,
    /// Risk class (drives reconciliation of unknown outcomes).
    pub risk: Risk,
    /// The RAM role the call is made as (the step's `role_arn`); `None`:
    /// the run's own credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// Who the call was made as (the ARN STS `GetCallerIdentity` gave for
    /// its credentials), set when it is journaled; never a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

impl ActionRequest {
    /// Builds the request of a typed action from already-rendered parameter
    /// values, putting each where the catalogue says (query or body) and
    /// adding `RegionId` for APIs that take it. Unknown names go to the query.
    pub fn typed(
        spec: &ActionSpec,
        region: &str,
        params: BTreeMap<String, String>,
    ) -> ActionRequest {
        let mut query = BTreeMap::new();
        let mut body = BTreeMap::new();
        for (name, value) in params {
            match spec.param(&name).map(|p| p.location) {
                Some(actions::ParamLocation::Body) => body.insert(name, value),
                _ => query.insert(name, value),
            };
        }
        if spec.region_param && !region.is_empty() {
            query
                .entry("RegionId".to_owned())
                .or_insert_with(|| region.to_owned());
        }
        ActionRequest {
            product: spec.product.to_owned(),
            version: spec.version.to_owned(),
            action: spec.action.to_owned(),
            region: region.to_owned(),
            query,
            body,
            risk: spec.risk,
            role_arn: None,
            identity: None,
        }
    }

    /// The typed action this request is an instance of, if any.
    pub fn spec(&self) -> Option<&'static ActionSpec> {
        actions::lookup_rpc(&self.product, &self.action)
    }

    /// The resource this request of a typed mutating action changes, as
    /// the catalogue identifies it ([`actions::Locks`]): its kind and id
    /// (`Name=value` pairs joined by `,`; integers in canonical form, so
    /// `010` and `10` are one FileId). `None` for a read, an action that
    /// locks nothing, or a request missing an identifying parameter.
    pub fn resource(&self) -> Option<(&'static str, String)> {
        let spec = self.spec()?;
        let actions::Locks::Resource { kind, ids } = spec.locks else {
            return None;
        };
        if !spec.risk.mutates() {
            return None;
        }
        let id = ids
            .iter()
            .map(|name| {
                let raw = self.query.get(*name).or_else(|| self.body.get(*name))?;
                let value = match spec.param(name).map(|p| p.ty) {
                    Some(actions::ParamType::Integer) => raw
                        .trim()
                        .parse::<i64>()
                        .map_or_else(|_| raw.clone(), |n| n.to_string()),
                    _ => raw.clone(),
                };
                Some(format!("{name}={value}"))
            })
            .collect::<Option<Vec<_>>>()?
            .join(",");
        Some((kind, id))
    }

    /// The status call that shows whether this mutating request took effect
    /// (its action's [`actions::Effect`]), carrying the parameters it names.
    pub fn status_request(&self) -> Option<(&'static actions::Effect, ActionRequest)> {
        let effect = self.spec()?.effect.as_ref()?;
        let status_spec = actions::lookup(effect.status_action)?;
        let mut carried = BTreeMap::new();
        for (from, to) in effect.carry {
            if let Some(v) = self.query.get(*from).or_else(|| self.body.get(*from)) {
                carried.insert((*to).to_owned(), v.clone());
            }
        }
        let mut status = ActionRequest::typed(status_spec, &self.region, carried);
        status.role_arn.clone_from(&self.role_arn);
        Some((effect, status))
    }

    /// What this request looks like on the wire, with secrets redacted and
    /// the per-attempt values (nonce, timestamp) shown as placeholders. Where
    /// it goes is recorded as product and region, not as a host: the host
    /// depends on where it runs (`--endpoint`, the simulator).
    /// With V3 the common parameters are headers instead (`host` is the
    /// endpoint's, `x-acs-content-sha256` the body's hash, both known only
    /// when sent), and the `Authorization` shows which headers are signed.
    pub fn preview(&self, signature: SignatureVersion) -> RequestPreview {
        match signature {
            SignatureVersion::V1 => self.preview_v1(),
            SignatureVersion::V3 => self.preview_v3(),
        }
    }

    fn preview_v3(&self) -> RequestPreview {
        // The client sends no API parameter named like a common one.
        let api = |params: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            params
                .iter()
                .filter(|(name, _)| !common::is_common(name))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect()
        };
        let body = signer::canonicalized_query(&api(&self.body));
        let per_attempt = "<per-attempt>";
        let mut headers: BTreeMap<String, String> = [
            ("accept", "application/json"),
            ("host", "<endpoint host>"),
            (signer::v3::ACTION, self.action.as_str()),
            (signer::v3::VERSION, self.version.as_str()),
            (signer::v3::DATE, per_attempt),
            (signer::v3::NONCE, per_attempt),
            (signer::v3::CONTENT_SHA256, "<SHA-256 of the body>"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if !body.is_empty() {
            headers.insert(
                "content-type".to_owned(),
                client::FORM_CONTENT_TYPE.to_owned(),
            );
        }
        // Sent only with STS credentials, which a plan does not know of.
        let signed: Vec<&str> = headers.keys().map(String::as_str).collect();
        let authorization = signer::v3::authorization(REDACTED, &signed.join(";"), REDACTED);
        headers.insert(signer::v3::AUTHORIZATION.to_owned(), authorization);
        RequestPreview {
            method: client::METHOD.to_owned(),
            product: self.product.clone(),
            region: self.region.clone(),
            query: signer::canonicalized_query(&api(&self.query)),
            body,
            headers,
        }
    }

    fn preview_v1(&self) -> RequestPreview {
        let mut query: BTreeMap<String, String> = self.query.clone();
        for c in common::ALL {
            // Secrets are redacted; nonce and timestamp are set per attempt.
            let value = match c {
                Common::Action => self.action.as_str(),
                Common::Version => self.version.as_str(),
                Common::Format => "JSON",
                Common::SignatureMethod => signer::SIGNATURE_METHOD,
                Common::SignatureVersion => signer::SIGNATURE_VERSION,
                Common::SignatureNonce | Common::Timestamp => "<per-attempt>",
                Common::AccessKeyId | Common::Signature => REDACTED,
                // Sent only with STS credentials, which a plan does not know of.
                Common::SecurityToken => continue,
            };
            query.insert(c.name().to_owned(), value.to_owned());
        }
        RequestPreview {
            method: "POST".to_owned(),
            product: self.product.clone(),
            region: self.region.clone(),
            query: redact_query(&signer::canonicalized_query(&query)),
            body: signer::canonicalized_query(&self.body),
            headers: BTreeMap::new(),
        }
    }
}

/// A request as it would go on the wire, safe to print and store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestPreview {
    /// HTTP method (always POST, as Alibaba's current SDKs send it).
    pub method: String,
    /// Product code: with the region, picks the endpoint at run time.
    /// (Empty in plans journaled before requests were recorded this way,
    /// which carried `url` and `host`; they still resume.)
    #[serde(default)]
    pub product: String,
    /// Region the request targets (empty: the product's central endpoint).
    #[serde(default)]
    pub region: String,
    /// Canonical (sorted, encoded) query string with secrets redacted.
    pub query: String,
    /// Form body (empty when the action has no body parameters).
    pub body: String,
    /// With signature V3: the headers that carry the signature, by name,
    /// the `Authorization` credential and signature redacted (absent with V1).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl RequestPreview {
    /// Which signature the request is previewed with.
    pub fn signature(&self) -> SignatureVersion {
        if self.headers.is_empty() {
            SignatureVersion::V1
        } else {
            SignatureVersion::V3
        }
    }
}

/// Replaces the values of [`REDACTED_PARAMS`] in an encoded query string.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if REDACTED_PARAMS.contains(&k) => format!("{k}={REDACTED}"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A successful answer: the JSON body is the step's output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiResponse {
    /// The parsed JSON body.
    pub body: serde_json::Value,
    /// `RequestId` from the body, when present.
    pub request_id: Option<String>,
    /// HTTP status (200 for a success).
    pub http_status: u16,
}

/// The future a [`CloudApi`] call returns.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<ApiResponse, ApiError>> + Send + 'a>>;

/// The future a [`CloudApi::prepare`] returns: who the call will be made
/// as (an ARN, when known), or why no credentials can be had for it.
pub type PrepareFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<String>, String>> + Send + 'a>>;

/// The one side-effect boundary of a run: send a call, get its answer.
/// `client::RpcClient` implements it over HTTP; unit tests use fakes.
pub trait CloudApi: Send + Sync {
    /// Sends one attempt of `req` (signed afresh) and returns its answer.
    fn call<'a>(&'a self, req: &'a ActionRequest) -> CallFuture<'a>;

    /// Before anything about `req` is journaled or sent: makes sure its
    /// credentials can be had (fetching or refreshing them), and says who
    /// it will be made as. An error means they cannot: the run stops with
    /// nothing half-sent. The default has nothing to prepare.
    fn prepare<'a>(&'a self, _req: &'a ActionRequest) -> PrepareFuture<'a> {
        Box::pin(async { Ok(None) })
    }
}

/// Reads a dotted path (`Data.Status`, `Items.0.Id`) out of a JSON value.
pub fn select<'v>(value: &'v serde_json::Value, path: &str) -> Option<&'v serde_json::Value> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.').try_fold(value, |v, key| match v {
        serde_json::Value::Object(map) => map.get(key),
        serde_json::Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_request_places_params_and_region() {
        let spec = actions::lookup("dataworks.StopDIJob").unwrap();
        let req = ActionRequest::typed(
            spec,
            "cn-shanghai",
            [("DIJobId".to_owned(), "11668".to_owned())].into(),
        );
        assert!(req.query.is_empty());
        assert_eq!(req.body["DIJobId"], "11668");
        let spec = actions::lookup("dts.StopDtsJob").unwrap();
        let req = ActionRequest::typed(
            spec,
            "cn-hangzhou",
            [("DtsJobId".to_owned(), "j1".to_owned())].into(),
        );
        assert_eq!(req.query["RegionId"], "cn-hangzhou");
    }

    #[test]
    fn preview_redacts_credentials() {
        let spec = actions::lookup("dts.StopDtsJob").unwrap();
        let req = ActionRequest::typed(
            spec,
            "cn-hangzhou",
            [("DtsJobId".to_owned(), "j1".to_owned())].into(),
        );
        let p = req.preview(SignatureVersion::V1);
        assert_eq!(
            (p.product.as_str(), p.region.as_str()),
            ("dts", "cn-hangzhou")
        );
        assert!(p.query.contains("AccessKeyId=<redacted>"), "{}", p.query);
        assert!(p.query.contains("Signature=<redacted>"), "{}", p.query);
        assert!(p.query.starts_with("AccessKeyId="), "sorted: {}", p.query);
    }

    #[test]
    fn previews_journaled_with_a_host_still_read() {
        let old = r#"{"method":"POST","url":"https://dts.aliyuncs.com/","host":"dts.aliyuncs.com","query":"A=1","body":""}"#;
        let p: RequestPreview = serde_json::from_str(old).unwrap();
        assert_eq!((p.product.as_str(), p.query.as_str()), ("", "A=1"));
    }

    #[test]
    fn select_reads_dotted_paths() {
        let v = serde_json::json!({"Data": {"Status": "RUN", "L": [1, {"X": 2}]}});
        assert_eq!(select(&v, "Data.Status"), Some(&serde_json::json!("RUN")));
        assert_eq!(select(&v, "Data.L.1.X"), Some(&serde_json::json!(2)));
        assert_eq!(select(&v, "Data.Nope"), None);
    }
}
