//! The RPC client against real HTTP on loopback: a small axum server in this
//! file verifies every signature with `cloud::signer` (merging the query and
//! the form body, as a server must) and answers canned bodies, so each typed
//! action round-trips byte for byte and each documented error shape becomes
//! the right `ApiError`. A raw TCP listener plays the server that hangs up.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use runbook::cloud::actions::{self, ParamLocation, ParamType};
use runbook::cloud::client::{ClientOptions, RpcClient, build_signed};
use runbook::cloud::credentials::Credentials;
use runbook::cloud::{ActionRequest, ApiError, CloudApi, Endpoints, ErrorClass, Risk, signer};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpListener;

/// STS credentials, so every test also carries a SecurityToken. The values
/// hold `+ / = & ~ *` to exercise every encoding on the way.
const ID: &str = "STS.NUgYrLnoC37mZZCNnAbez2ypf";
const SECRET: &str = "sts/Secret+Key==";
const TOKEN: &str = "CAIS+token/with=special&chars~*";

fn credentials() -> Credentials {
    Credentials::new(ID, SECRET, Some(TOKEN.to_owned()))
}

/// What the test server received in one request.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    query: BTreeMap<String, String>,
    body: BTreeMap<String, String>,
    body_raw: String,
    content_type: Option<String>,
    /// The `Signature` sent (decoded).
    signature: String,
    /// Whether it matched the server's own computation.
    signature_ok: bool,
}

/// A canned answer.
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Canned {
    fn json(status: u16, body: &Value) -> Canned {
        Canned {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Canned {
        self.headers.push((name, value.to_owned()));
        self
    }
}

type Responder = Arc<dyn Fn(&Seen) -> Canned + Send + Sync>;

#[derive(Clone)]
struct ServerState {
    secret: &'static str,
    seen: Arc<Mutex<Vec<Seen>>>,
    respond: Responder,
}

/// A test server on 127.0.0.1:0 that knows the key `secret`.
struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(respond: impl Fn(&Seen) -> Canned + Send + Sync + 'static) -> Server {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = ServerState {
            secret: SECRET,
            seen: seen.clone(),
            respond: Arc::new(respond),
        };
        let app = axum::Router::new().fallback(handle).with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server { base, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// A client whose `dts` and `dataworks` endpoints are this server.
    fn client(&self, credentials: Credentials, options: ClientOptions) -> RpcClient {
        let mut endpoints = Endpoints::new();
        endpoints.add_flag(&format!("dts={}", self.base)).unwrap();
        endpoints
            .add_flag(&format!("dataworks={}", self.base))
            .unwrap();
        RpcClient::new(credentials, endpoints, options).unwrap()
    }
}

fn fast() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(2),
    }
}

/// Verifies the signature exactly as the cloud does: decode the query and
/// the form body, merge them, drop `Signature`, re-sign with the method.
async fn handle(
    State(state): State<ServerState>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: BTreeMap<String, String> = signer::parse_form(query.as_deref().unwrap_or(""))
        .into_iter()
        .collect();
    let body_raw = String::from_utf8_lossy(&body).into_owned();
    let body: BTreeMap<String, String> = signer::parse_form(&body_raw).into_iter().collect();
    let mut signed = query.clone();
    signed.extend(body.clone());
    let signature = signed.remove("Signature").unwrap_or_default();
    let string_to_sign =
        signer::string_to_sign(method.as_str(), &signer::canonicalized_query(&signed));
    let signature_ok = signer::signatures_equal(
        &signer::signature(&string_to_sign, state.secret),
        &signature,
    );
    let seen = Seen {
        method,
        query,
        body,
        body_raw,
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        signature,
        signature_ok,
    };
    state.seen.lock().unwrap().push(seen.clone());
    if !signature_ok {
        // The gateway's answer, with its string-to-sign in the message.
        let body = json!({
            "RequestId": "req-bad-signature",
            "Code": "SignatureDoesNotMatch",
            "Message": format!("Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"),
        });
        return (StatusCode::BAD_REQUEST, body.to_string()).into_response();
    }
    let canned = (state.respond)(&seen);
    tokio::time::sleep(canned.delay).await;
    let mut response = Response::builder().status(canned.status);
    for (name, value) in canned.headers {
        response = response.header(name, value);
    }
    response.body(axum::body::Body::from(canned.body)).unwrap()
}

/// A value of the right type for a parameter, with characters that need
/// encoding in every string.
fn sample_value(param: &actions::ParamSpec) -> String {
    match (param.ty, param.allowed.first()) {
        (_, Some(allowed)) => (*allowed).to_owned(),
        (ParamType::Integer, None) => "10001".to_owned(),
        (ParamType::Boolean, None) => "true".to_owned(),
        (ParamType::String, None) => format!("{} 数据/1+*~", param.name),
    }
}

#[tokio::test]
async fn every_typed_action_round_trips() {
    let server = Server::start(|seen| {
        let action = seen.query.get("Action").cloned().unwrap_or_default();
        Canned::json(200, &json!({"RequestId": format!("req-{action}"), "Success": true, "Data": {"Status": "RUN"}, "Echo": action}))
    })
    .await;
    let client = server.client(credentials(), fast());

    for spec in actions::CATALOGUE {
        let params: BTreeMap<String, String> = spec
            .params
            .iter()
            .map(|p| (p.name.to_owned(), sample_value(p)))
            .collect();
        let req = ActionRequest::typed(spec, "cn-shanghai", params.clone());
        let answer = client
            .call(&req)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        assert_eq!(
            answer.request_id.as_deref(),
            Some(format!("req-{}", spec.action).as_str()),
            "{}",
            spec.name
        );
        assert_eq!(answer.body["Echo"], spec.action, "{}", spec.name);
        assert_eq!(answer.http_status, 200);

        let seen = server.seen().pop().unwrap();
        assert!(
            seen.signature_ok,
            "{}: the server verified the signature",
            spec.name
        );
        assert_eq!(seen.method, Method::POST, "{}", spec.name);
        for (name, value) in [
            ("Action", spec.action),
            ("Version", spec.version),
            ("Format", "JSON"),
            ("AccessKeyId", ID),
            ("SecurityToken", TOKEN),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
        ] {
            assert_eq!(
                seen.query.get(name).map(String::as_str),
                Some(value),
                "{}: {name}",
                spec.name
            );
        }
        for param in spec.params {
            let (there, not_there) = match param.location {
                ParamLocation::Query => (&seen.query, &seen.body),
                ParamLocation::Body => (&seen.body, &seen.query),
            };
            assert_eq!(
                there.get(param.name),
                params.get(param.name),
                "{}: {}",
                spec.name,
                param.name
            );
            assert!(
                !not_there.contains_key(param.name),
                "{}: {} sent twice",
                spec.name,
                param.name
            );
        }
        assert_eq!(
            seen.query.contains_key("RegionId"),
            spec.region_param,
            "{}: RegionId",
            spec.name
        );
        if spec.region_param {
            assert_eq!(seen.query["RegionId"], "cn-shanghai");
        }
        assert!(
            !seen.body.contains_key("Signature"),
            "{}: the signature travels in the query",
            spec.name
        );
        if seen.body.is_empty() {
            assert!(seen.body_raw.is_empty(), "{}", spec.name);
        } else {
            assert_eq!(
                seen.content_type.as_deref(),
                Some("application/x-www-form-urlencoded"),
                "{}",
                spec.name
            );
        }
    }
    assert_eq!(server.seen().len(), actions::CATALOGUE.len());
}

#[tokio::test]
async fn stop_di_job_sends_its_id_in_the_form_body() {
    let server = Server::start(|_| Canned::json(200, &json!({"RequestId": "r"}))).await;
    let client = server.client(credentials(), fast());
    let spec = actions::lookup("dataworks.StopDIJob").unwrap();
    let req = ActionRequest::typed(
        spec,
        "cn-shanghai",
        [("DIJobId".to_owned(), "11668".to_owned())].into(),
    );
    client.call(&req).await.unwrap();
    let seen = server.seen().pop().unwrap();
    assert!(seen.signature_ok);
    assert_eq!(seen.body_raw, "DIJobId=11668");
    assert!(!seen.query.contains_key("DIJobId"));
    assert!(
        !seen.query.contains_key("RegionId"),
        "DataWorks DI APIs take no RegionId"
    );
}

#[tokio::test]
async fn every_attempt_is_signed_afresh() {
    let server =
        Server::start(|_| Canned::json(200, &json!({"RequestId": "r", "Status": "Synchronizing"})))
            .await;
    let client = server.client(credentials(), fast());
    let spec = actions::lookup("dts.DescribeDtsJobDetail").unwrap();
    let req = ActionRequest::typed(
        spec,
        "cn-hangzhou",
        [("DtsJobId".to_owned(), "j1".to_owned())].into(),
    );
    let before = jiff::Timestamp::now();
    for _ in 0..3 {
        client.call(&req).await.unwrap();
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    let nonces: BTreeSet<&str> = seen
        .iter()
        .map(|s| s.query["SignatureNonce"].as_str())
        .collect();
    assert_eq!(nonces.len(), 3, "a fresh nonce per attempt: {nonces:?}");
    for nonce in &nonces {
        assert!(uuid::Uuid::parse_str(nonce).is_ok(), "{nonce}");
    }
    let signatures: BTreeSet<&str> = seen.iter().map(|s| s.signature.as_str()).collect();
    assert_eq!(signatures.len(), 3);
    for s in &seen {
        assert!(s.signature_ok);
        let ts: jiff::Timestamp = s.query["Timestamp"].parse().unwrap();
        assert!(
            s.query["Timestamp"].ends_with('Z') && s.query["Timestamp"].len() == 20,
            "{}",
            s.query["Timestamp"]
        );
        let skew = ts.as_second() - before.as_second();
        assert!((-1..=60).contains(&skew), "timestamp of the attempt: {ts}");
    }
}

/// A vector of `tests/fixtures/signature-vectors.json`.
#[derive(serde::Deserialize)]
struct Vector {
    name: String,
    params: BTreeMap<String, String>,
    secret: String,
    string_to_sign: String,
    signature: String,
    #[serde(default)]
    form_body_params: Vec<String>,
}

/// The client's own request building reproduces the SDK's signatures for
/// the POST vectors it can express (no `SignatureType`), byte for byte.
#[test]
fn build_signed_reproduces_the_sdk_vectors() {
    let vectors: Vec<Vector> =
        serde_json::from_str(include_str!("fixtures/signature-vectors.json")).unwrap();
    let common = [
        "Action",
        "Version",
        "Format",
        "AccessKeyId",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "Timestamp",
        "SecurityToken",
    ];
    let mut checked = 0;
    for v in vectors.iter().filter(|v| {
        matches!(
            v.name.as_str(),
            "dts-stopdtsjob-post"
                | "dataworks-stopdisyncinstance-sts-post"
                | "dataworks-stopdijob-body-param-post"
        )
    }) {
        let mut query = BTreeMap::new();
        let mut body = BTreeMap::new();
        for (k, val) in &v.params {
            if common.contains(&k.as_str()) {
                continue;
            }
            if v.form_body_params.contains(k) {
                body.insert(k.clone(), val.clone());
            } else {
                query.insert(k.clone(), val.clone());
            }
        }
        let req = ActionRequest {
            product: "x".into(),
            version: v.params["Version"].clone(),
            action: v.params["Action"].clone(),
            region: String::new(),
            query,
            body: body.clone(),
            risk: Risk::Mutating,
            role_arn: None,
            identity: None,
        };
        let creds = Credentials::new(
            v.params["AccessKeyId"].clone(),
            v.secret.clone(),
            v.params.get("SecurityToken").cloned(),
        );
        let ts: jiff::Timestamp = v.params["Timestamp"].parse().unwrap();
        let signed = build_signed(
            &req,
            "https://example.aliyuncs.com/",
            &creds,
            &v.params["SignatureNonce"],
            ts,
        );

        assert_eq!(signed.string_to_sign(), v.string_to_sign, "{}", v.name);
        assert_eq!(signed.signature(), v.signature, "{}", v.name);
        let mut on_query = v.params.clone();
        on_query.retain(|k, _| !v.form_body_params.contains(k));
        let expected_url = format!(
            "https://example.aliyuncs.com/?{}&Signature={}",
            signer::canonicalized_query(&on_query),
            signer::percent_encode(&v.signature)
        );
        assert_eq!(signed.url(), expected_url, "{}", v.name);
        assert_eq!(
            signed.body(),
            signer::canonicalized_query(&body),
            "{}",
            v.name
        );
        assert_eq!(signed.method(), "POST");
        checked += 1;
    }
    assert_eq!(checked, 3);
}

/// One documented error shape and what it must become.
struct ErrorCase {
    name: &'static str,
    product: &'static str,
    risk: Risk,
    answer: fn() -> Canned,
    code: &'static str,
    class: ErrorClass,
    http_status: Option<u16>,
    message: &'static str,
    request_id: Option<&'static str>,
    retry_after: Option<Duration>,
}

fn gateway(status: u16, code: &str, message: &str) -> Canned {
    Canned::json(
        status,
        &json!({
            "RequestId": format!("req-{code}"),
            "HostId": "dts.aliyuncs.com",
            "Code": code,
            "Message": message,
            "Recommend": format!("https://api.alibabacloud.com/troubleshoot?q={code}&product=Dts"),
        }),
    )
}

const ERROR_CASES: &[ErrorCase] = &[
    ErrorCase {
        name: "throttling as 400",
        product: "dts",
        risk: Risk::Mutating,
        answer: || {
            gateway(
                400,
                "Throttling.User",
                "Request was denied due to user flow control.",
            )
        },
        code: "Throttling.User",
        class: ErrorClass::Rejected,
        http_status: Some(400),
        message: "Request was denied due to user flow control.",
        request_id: Some("req-Throttling.User"),
        retry_after: None,
    },
    ErrorCase {
        name: "throttling as 429 with x-acs-retry-after",
        product: "dataworks",
        risk: Risk::Mutating,
        answer: || {
            gateway(
                429,
                "Throttling.Api",
                "The request for this resource has exceeded your available limit.",
            )
            .header("x-acs-retry-after", "1500")
        },
        code: "Throttling.Api",
        class: ErrorClass::Rejected,
        http_status: Some(429),
        message: "The request for this resource has exceeded your available limit.",
        request_id: Some("req-Throttling.Api"),
        retry_after: Some(Duration::from_millis(1500)),
    },
    ErrorCase {
        name: "x-acs-retry-after beyond the cap",
        product: "dts",
        risk: Risk::Read,
        answer: || gateway(429, "Throttling.System", "busy").header("x-acs-retry-after", "999999"),
        code: "Throttling.System",
        class: ErrorClass::Rejected,
        http_status: Some(429),
        message: "busy",
        request_id: Some("req-Throttling.System"),
        retry_after: Some(Duration::from_secs(120)),
    },
    ErrorCase {
        name: "service unavailable",
        product: "dts",
        risk: Risk::Mutating,
        answer: || {
            gateway(
                503,
                "ServiceUnavailable",
                "The request has failed due to a temporary failure of the server.",
            )
        },
        code: "ServiceUnavailable",
        class: ErrorClass::Rejected,
        http_status: Some(503),
        message: "The request has failed due to a temporary failure of the server.",
        request_id: Some("req-ServiceUnavailable"),
        retry_after: None,
    },
    ErrorCase {
        name: "internal error",
        product: "dataworks",
        risk: Risk::Irreversible,
        answer: || gateway(500, "InternalError.System", "An internal error occurred."),
        code: "InternalError.System",
        class: ErrorClass::UnknownOutcome,
        http_status: Some(500),
        message: "An internal error occurred.",
        request_id: Some("req-InternalError.System"),
        retry_after: None,
    },
    ErrorCase {
        name: "invalid parameter",
        product: "dataworks",
        risk: Risk::Mutating,
        answer: || gateway(400, "Param.Invalid", "The parameter is invalid."),
        code: "Param.Invalid",
        class: ErrorClass::Permanent,
        http_status: Some(400),
        message: "The parameter is invalid.",
        request_id: Some("req-Param.Invalid"),
        retry_after: None,
    },
    ErrorCase {
        name: "unknown access key",
        product: "dts",
        risk: Risk::Read,
        answer: || {
            gateway(
                404,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            )
        },
        code: "InvalidAccessKeyId.NotFound",
        class: ErrorClass::Permanent,
        http_status: Some(404),
        message: "Specified access key is not found.",
        request_id: Some("req-InvalidAccessKeyId.NotFound"),
        retry_after: None,
    },
    ErrorCase {
        name: "access denied",
        product: "dataworks",
        risk: Risk::Mutating,
        answer: || gateway(403, "Forbidden.Access", "Access is forbidden."),
        code: "Forbidden.Access",
        class: ErrorClass::Permanent,
        http_status: Some(403),
        message: "Access is forbidden.",
        request_id: Some("req-Forbidden.Access"),
        retry_after: None,
    },
    ErrorCase {
        name: "DTS Success:false in a 200",
        product: "dts",
        risk: Risk::Mutating,
        answer: || {
            Canned::json(
                200,
                &json!({
                    "RequestId": "req-dts",
                    "HttpStatusCode": 400,
                    "Success": false,
                    "ErrCode": "InvalidParameter",
                    "ErrMessage": "The Value of Input Parameter %s is not valid.",
                    "DynamicMessage": "DtsJobId",
                    "DynamicCode": "",
                }),
            )
        },
        code: "InvalidParameter",
        class: ErrorClass::Permanent,
        http_status: Some(200),
        message: "The Value of Input Parameter DtsJobId is not valid.",
        request_id: Some("req-dts"),
        retry_after: None,
    },
    ErrorCase {
        name: "DataWorks Success:false in a 200",
        product: "dataworks",
        risk: Risk::Read,
        answer: || {
            Canned::json(
                200,
                &json!({
                    "RequestId": "req-dw",
                    "Success": false,
                    "ErrorCode": "Invalid.Tenant.ProjectNotExists",
                    "ErrorMessage": "The project does not exist.",
                    "HttpStatusCode": 400,
                }),
            )
        },
        code: "Invalid.Tenant.ProjectNotExists",
        class: ErrorClass::Permanent,
        http_status: Some(200),
        message: "The project does not exist.",
        request_id: Some("req-dw"),
        retry_after: None,
    },
    ErrorCase {
        name: "DataWorks Data.Status fail in a 200",
        product: "dataworks",
        risk: Risk::Irreversible,
        answer: || {
            Canned::json(
                200,
                &json!({
                    "RequestId": "req-fail",
                    "Success": true,
                    "Data": {"Status": "fail", "Message": "fileId:[100] is invalid."},
                }),
            )
        },
        code: "OperationFailed",
        class: ErrorClass::Permanent,
        http_status: Some(200),
        message: "fileId:[100] is invalid.",
        request_id: Some("req-fail"),
        retry_after: None,
    },
    ErrorCase {
        name: "a proxy's HTML 502",
        product: "dts",
        risk: Risk::Mutating,
        answer: || Canned {
            status: 502,
            headers: vec![
                ("content-type", "text/html".into()),
                ("x-acs-request-id", "req-header".into()),
            ],
            body: "<html><body><h1>502 Bad Gateway</h1></body></html>".into(),
            delay: Duration::ZERO,
        },
        code: "InvalidResponse",
        class: ErrorClass::UnknownOutcome,
        http_status: Some(502),
        message: "the service answered HTTP 502 with a body that is not a JSON object: <html><body><h1>502 Bad Gateway</h1></body></html>",
        request_id: Some("req-header"),
        retry_after: None,
    },
];

fn case_request(product: &str, risk: Risk, case: &str) -> ActionRequest {
    ActionRequest {
        product: product.to_owned(),
        version: "2020-01-01".to_owned(),
        action: "SomeAction".to_owned(),
        region: "cn-hangzhou".to_owned(),
        query: [("Case".to_owned(), case.to_owned())].into(),
        body: BTreeMap::new(),
        risk,
        role_arn: None,
        identity: None,
    }
}

#[tokio::test]
async fn every_error_shape_becomes_the_right_api_error() {
    let server = Server::start(|seen| {
        let case = ERROR_CASES
            .iter()
            .find(|c| Some(&c.name.to_owned()) == seen.query.get("Case"))
            .unwrap();
        (case.answer)()
    })
    .await;
    let client = server.client(credentials(), fast());
    for case in ERROR_CASES {
        let err = client
            .call(&case_request(case.product, case.risk, case.name))
            .await
            .unwrap_err();
        assert_eq!(err.code, case.code, "{}", case.name);
        assert_eq!(err.class, case.class, "{}", case.name);
        assert_eq!(err.http_status, case.http_status, "{}", case.name);
        assert_eq!(err.message, case.message, "{}", case.name);
        assert_eq!(err.request_id.as_deref(), case.request_id, "{}", case.name);
        assert_eq!(err.retry_after, case.retry_after, "{}", case.name);
        assert_eq!(
            err.retryable(),
            case.class != ErrorClass::Permanent,
            "{}",
            case.name
        );
    }
    let gateway_err = client
        .call(&case_request("dts", Risk::Read, "access denied"))
        .await
        .unwrap_err();
    assert_eq!(
        gateway_err.recommend.as_deref(),
        Some("https://api.alibabacloud.com/troubleshoot?q=Forbidden.Access&product=Dts")
    );
    assert!(server.seen().iter().all(|s| s.signature_ok));
}

/// `Data.Status: fail` in a read is the state of the resource (a failed DI
/// solution), which the playbook inspects: it is the output, not an error.
#[tokio::test]
async fn data_status_fail_in_a_read_is_output() {
    let server = Server::start(|_| {
        Canned::json(200, &json!({"RequestId": "r", "Success": true, "Data": {"Status": "fail", "Message": null}}))
    })
    .await;
    let client = server.client(credentials(), fast());
    let spec = actions::lookup("dataworks.GetDISyncInstanceInfo").unwrap();
    let params = [
        ("ProjectId", "1"),
        ("FileId", "2"),
        ("TaskType", "DI_SOLUTION"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let answer = client
        .call(&ActionRequest::typed(spec, "cn-shanghai", params))
        .await
        .unwrap();
    assert_eq!(
        runbook::cloud::select(&answer.body, "Data.Status"),
        Some(&json!("fail"))
    );
}

/// The reading Alibaba's SDK gives a signature mismatch when the service's
/// string-to-sign equals ours: the secret is wrong. The echoed
/// string-to-sign (AccessKeyId, token) does not reach the message.
#[tokio::test]
async fn a_wrong_secret_is_named_and_the_echo_is_scrubbed() {
    let server = Server::start(|_| Canned::json(200, &json!({}))).await;
    let client = server.client(
        Credentials::new(ID, "not-the-secret", Some(TOKEN.to_owned())),
        fast(),
    );
    let err = client
        .call(&case_request("dts", Risk::Mutating, "x"))
        .await
        .unwrap_err();
    assert_eq!(err.code, "InvalidAccessKeySecret");
    assert_eq!(err.class, ErrorClass::Permanent);
    assert_eq!(err.request_id.as_deref(), Some("req-bad-signature"));
    assert_no_secrets(&format!("{err} {err:?}"), &[]);
}

/// Reads one HTTP request off `socket` (headers and `Content-Length` body).
async fn read_request(socket: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return buf;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return buf;
            }
        }
    }
}

/// The server reads the whole request, then hangs up without answering: the
/// call may have been applied.
#[tokio::test]
async fn a_connection_dropped_after_sending_is_an_unknown_outcome() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let received = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let request = read_request(&mut socket).await;
        drop(socket);
        request
    });
    let mut endpoints = Endpoints::new();
    endpoints.add_flag(&format!("dts={base}")).unwrap();
    let client = RpcClient::new(credentials(), endpoints, fast()).unwrap();
    let err = client
        .call(&case_request("dts", Risk::Mutating, "drop"))
        .await
        .unwrap_err();
    let request = String::from_utf8(received.await.unwrap()).unwrap();
    assert!(
        request.starts_with("POST /?AccessKeyId="),
        "the request went out: {request}"
    );
    assert_eq!(err.code, "Transport.ConnectionDropped", "{err}");
    assert_eq!(err.class, ErrorClass::UnknownOutcome);
    assert_eq!(err.http_status, None);
    assert_no_secrets(&format!("{err} {err:?}"), &[]);
}

#[tokio::test]
async fn a_server_that_sleeps_times_out_as_an_unknown_outcome() {
    let server = Server::start(|_| Canned {
        delay: Duration::from_secs(5),
        ..Canned::json(200, &json!({}))
    })
    .await;
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(300),
    };
    let client = server.client(credentials(), options);
    let started = Instant::now();
    let err = client
        .call(&case_request("dts", Risk::Mutating, "sleep"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "gave up after {:?}",
        started.elapsed()
    );
    assert_eq!(err.code, "Transport.Timeout", "{err}");
    assert_eq!(err.class, ErrorClass::UnknownOutcome);
    assert_eq!(server.seen().len(), 1, "the request reached the server");
}

#[tokio::test]
async fn a_refused_connection_is_rejected_before_sending() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut endpoints = Endpoints::new();
    endpoints.add_flag(&format!("dts={base}")).unwrap();
    let client = RpcClient::new(credentials(), endpoints, fast()).unwrap();
    let err = client
        .call(&case_request("dts", Risk::Irreversible, "refused"))
        .await
        .unwrap_err();
    assert_eq!(err.code, "Transport.Connect", "{err}");
    assert_eq!(err.class, ErrorClass::Rejected);
    assert!(
        err.message.contains(&base["http://".len()..]),
        "names the host: {err}"
    );
    assert_no_secrets(&format!("{err} {err:?}"), &[]);
}

/// Logs written while a closure runs with a TRACE subscriber on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fails if `text` holds the secret, the token, the AccessKeyId or any of
/// `signatures`, raw or percent-encoded once or twice.
fn assert_no_secrets(text: &str, signatures: &[String]) {
    let mut needles: Vec<String> = vec![SECRET.into(), TOKEN.into(), ID.into()];
    needles.extend(signatures.iter().cloned());
    for needle in needles {
        let once = signer::percent_encode(&needle);
        let twice = signer::percent_encode(&once);
        for form in [&needle, &once, &twice] {
            assert!(
                !text.contains(form.as_str()),
                "`{form}` leaked into:\n{text}"
            );
        }
    }
}

/// Everything a run could print, log or store about its calls (logs at
/// TRACE, Debug and Display of the client, credentials, requests, responses
/// and errors of every kind, the plan's request preview) holds no secret,
/// no token, no AccessKeyId and no signature.
#[tokio::test]
async fn no_secret_reaches_output_logs_or_plans() {
    let captured = Captured::default();
    let _guard = captured.install();
    let server = Server::start(|seen| match seen.query.get("Case").map(String::as_str) {
        Some("ok") => Canned::json(200, &json!({"RequestId": "r", "Success": true})),
        Some("sleep") => Canned { delay: Duration::from_secs(5), ..Canned::json(200, &json!({})) },
        // A service that echoes what it received, raw and encoded.
        Some("echo") => {
            let (id, token) = (&seen.query["AccessKeyId"], &seen.query["SecurityToken"]);
            let message = format!(
                "IncompleteSignature: AccessKeyId={id} SecurityToken%3D{} {} Signature={}",
                signer::percent_encode(&signer::percent_encode(token)),
                signer::percent_encode(token),
                seen.signature
            );
            Canned::json(400, &json!({"RequestId": "r", "Code": "IncompleteSignature", "Message": message, "Recommend": format!("https://x/?q={token}")}))
        }
        _ => gateway(400, "SignatureNonceUsed", "Specified signature nonce was used already."),
    })
    .await;
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(300),
    };
    let client = server.client(credentials(), options);
    let wrong = server.client(
        Credentials::new(ID, "wrong", Some(TOKEN.to_owned())),
        options,
    );
    let mut out = String::new();

    let spec = actions::lookup("dataworks.StopDIJob").unwrap();
    let typed = ActionRequest::typed(
        spec,
        "cn-shanghai",
        [("DIJobId".to_owned(), "1".to_owned())].into(),
    );
    let answer = client
        .call(&case_request("dts", Risk::Read, "ok"))
        .await
        .unwrap();
    let _ = write!(
        out,
        "{answer:?} {}",
        serde_json::to_string(&answer).unwrap()
    );
    for signature in runbook::cloud::signer::SignatureVersion::ALL {
        let preview = typed.preview(signature);
        let _ = write!(
            out,
            "{preview:?} {}",
            serde_json::to_string(&preview).unwrap()
        );
    }
    let signed = client.sign(&typed, "n", jiff::Timestamp::now()).unwrap();
    let _ = write!(out, "{signed:?} {}", signed.redacted_url());
    let signed_v3 = runbook::cloud::client::build_signed_v3(
        &typed,
        "https://dataworks.cn-shanghai.aliyuncs.com",
        &credentials(),
        "n",
        jiff::Timestamp::now(),
    );
    let _ = write!(
        out,
        "{signed_v3:?} {} {:?}",
        signed_v3.redacted_url(),
        signed_v3.redacted_headers()
    );
    for (api, case) in [
        (&client, "nonce"),
        (&client, "sleep"),
        (&client, "echo"),
        (&wrong, "x"),
    ] {
        let err: ApiError = api
            .call(&case_request("dts", Risk::Mutating, case))
            .await
            .unwrap_err();
        let _ = write!(
            out,
            "{err} {err:?} {}",
            serde_json::to_string(&err).unwrap()
        );
    }
    let _ = write!(
        out,
        "{client:?} {:?} {}",
        client.credentials(),
        client.credentials()
    );

    let logs = captured.text();
    assert!(
        logs.contains("sending request"),
        "the capture works: {logs}"
    );
    let mut signatures: Vec<String> = server.seen().into_iter().map(|s| s.signature).collect();
    signatures.push(signed.signature().to_owned());
    signatures.push(signed_v3.signature().to_owned());
    assert!(signatures.len() >= 6);
    assert_no_secrets(&out, &signatures);
    assert_no_secrets(&logs, &signatures);
    assert!(
        !logs.contains("plain HTTP"),
        "no warning for loopback: {logs}"
    );
    // The check itself can fail: the signed URL does hold them.
    assert!(std::panic::catch_unwind(|| assert_no_secrets(signed.url(), &[])).is_err());
    let v3_headers = format!("{:?}", signed_v3.headers());
    assert!(std::panic::catch_unwind(|| assert_no_secrets(&v3_headers, &[])).is_err());
}

/// Credentials over plain HTTP to a host that is not this machine: one
/// warning per host, however many calls.
#[tokio::test]
async fn plain_http_to_a_remote_host_warns_once_per_host() {
    let captured = Captured::default();
    let _guard = captured.install();
    let mut endpoints = Endpoints::new();
    // A reserved name that never resolves: the call fails before sending.
    endpoints
        .add_flag("dts=http://runbook-test.invalid:9")
        .unwrap();
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(600),
    };
    let client = RpcClient::new(credentials(), endpoints, options).unwrap();
    for _ in 0..2 {
        let err = client
            .call(&case_request("dts", Risk::Read, "remote"))
            .await
            .unwrap_err();
        assert!(err.code.starts_with("Transport."), "{err}");
    }
    let logs = captured.text();
    assert_eq!(logs.matches("plain HTTP").count(), 1, "{logs}");
    assert!(logs.contains("runbook-test.invalid:9"), "{logs}");
}
