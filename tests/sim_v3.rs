//! Integration tests: signature V3 (`ACS3-HMAC-SHA256`) against the
//! simulator over real HTTP, with requests built here from the pure stages
//! of `cloud::signer::v3` (not with the runbook client), so every header can
//! be left out, repeated or tampered with after signing.

use std::collections::BTreeMap;
use std::time::Duration;

use runbook::cloud::actions::{DATAWORKS_VERSION, DTS_VERSION};
use runbook::cloud::signer::{self, SignatureVersion, v3};
use runbook::sim::{self, FaultSpec, Outcome, SimConfig, SimHandle};
use serde_json::{Value, json};

use super::sim::{Answer, ID, NODE, Req, SECRET, assert_gateway_error, config, encode, fixtures};

/// One V3 request: API parameters in the query and the form body, the
/// metadata in `x-acs-*` headers, signed by [`V3::signed`].
#[derive(Clone)]
struct V3 {
    method: &'static str,
    action: String,
    version: String,
    query: BTreeMap<String, String>,
    body: BTreeMap<String, String>,
    date: String,
    nonce: String,
    key_id: String,
    token: Option<String>,
    /// Extra headers, signed like the others.
    extra: Vec<(String, String)>,
}

/// A signed V3 request, as it goes on the wire (headers can still be
/// changed to test the gateway).
struct Wire {
    method: &'static str,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    string_to_sign: String,
}

impl Wire {
    fn set(mut self, name: &str, value: &str) -> Wire {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn remove(mut self, name: &str) -> Wire {
        self.headers.retain(|(n, _)| n != name);
        self
    }

    fn add(mut self, name: &str, value: &str) -> Wire {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn authorization(&self) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap()
    }
}

impl V3 {
    fn new(action: &str) -> V3 {
        V3 {
            method: "POST",
            action: action.to_owned(),
            version: if action.contains("Dts") {
                DTS_VERSION
            } else {
                DATAWORKS_VERSION
            }
            .to_owned(),
            query: BTreeMap::new(),
            body: BTreeMap::new(),
            date: signer::format_timestamp(jiff::Timestamp::now()),
            nonce: uuid::Uuid::new_v4().simple().to_string(),
            key_id: ID.to_owned(),
            token: None,
            extra: Vec::new(),
        }
    }

    fn node(action: &str) -> V3 {
        NODE.iter().fold(V3::new(action), |r, (k, v)| r.q(k, v))
    }

    fn q(mut self, k: &str, v: &str) -> V3 {
        self.query.insert(k.to_owned(), v.to_owned());
        self
    }

    fn b(mut self, k: &str, v: &str) -> V3 {
        self.body.insert(k.to_owned(), v.to_owned());
        self
    }

    /// Signs for `host` with `secret`, the way the Tea SDKs do: every header
    /// sent is signed.
    fn signed(&self, host: &str, secret: &str) -> Wire {
        let body = if self.body.is_empty() {
            Vec::new()
        } else {
            encode(&self.body, true).into_bytes()
        };
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), host.into()),
            (v3::ACTION.into(), self.action.clone()),
            (v3::VERSION.into(), self.version.clone()),
            (v3::DATE.into(), self.date.clone()),
            (v3::NONCE.into(), self.nonce.clone()),
            (v3::CONTENT_SHA256.into(), v3::hashed_payload(&body)),
            ("accept".into(), "application/json".into()),
        ];
        if !body.is_empty() {
            headers.push((
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
        }
        if let Some(token) = &self.token {
            headers.push((v3::SECURITY_TOKEN.into(), token.clone()));
        }
        headers.extend(self.extra.iter().cloned());
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let signed = v3::sign(
            &v3::Request {
                method: self.method,
                path: "/",
                query: &self.query,
                headers: &pairs,
                body: &body,
            },
            secret,
        );
        headers.push((
            "authorization".into(),
            v3::authorization(&self.key_id, &signed.signed_headers, &signed.signature),
        ));
        Wire {
            method: self.method,
            // The Tea SDKs put `+` for a space in the query (plain urlencode).
            query: encode(&self.query, true),
            headers,
            body,
            string_to_sign: signed.string_to_sign,
        }
    }
}

struct Api {
    base: String,
    host: String,
    http: reqwest::Client,
}

impl Api {
    fn new(handle: &SimHandle) -> Api {
        Api {
            base: handle.base_url(),
            host: handle.addr().to_string(),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("a client"),
        }
    }

    fn sign(&self, req: &V3) -> Wire {
        req.signed(&self.host, SECRET)
    }

    async fn send(&self, wire: &Wire) -> Answer {
        let url = if wire.query.is_empty() {
            format!("{}/", self.base)
        } else {
            format!("{}/?{}", self.base, wire.query)
        };
        let method = reqwest::Method::from_bytes(wire.method.as_bytes()).unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &wire.headers {
            headers.append(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                reqwest::header::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        let response = self
            .http
            .request(method, url)
            .headers(headers)
            .body(wire.body.clone())
            .send()
            .await
            .expect("an answer");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, req: &V3) -> Answer {
        self.send(&self.sign(req)).await
    }
}

async fn start(config: SimConfig) -> (SimHandle, Api) {
    let handle = sim::spawn(config).await.expect("the simulator starts");
    let api = Api::new(&handle);
    (handle, api)
}

/// The body with the per-request id blanked, to compare two answers.
fn without_request_id(mut body: Value) -> Value {
    if let Some(obj) = body.as_object_mut() {
        obj.insert("RequestId".into(), json!("-"));
    }
    body
}

/// Parameters: (name, value).
type Pairs = Vec<(&'static str, &'static str)>;

#[tokio::test]
async fn every_served_action_answers_v3_as_it_answers_v1() {
    let (sim, api) = start(config(fixtures(Duration::ZERO), FaultSpec::default())).await;
    let v1_api = super::sim::Api::new(&sim);
    let dts = [("DtsJobId", "j1"), ("RegionId", "cn-hangzhou")];
    // (action, query, body): reads first, so V1 and V3 see the same state.
    let cases: Vec<(&str, Pairs, Pairs)> = vec![
        ("GetDISyncInstanceInfo", NODE.to_vec(), vec![]),
        ("DescribeDtsJobDetail", dts.to_vec(), vec![]),
        ("GetDIJob", vec![("DIJobId", "11668")], vec![]),
        ("StopDISyncInstance", NODE.to_vec(), vec![]),
        ("StartDISyncInstance", NODE.to_vec(), vec![]),
        ("SuspendDtsJob", dts.to_vec(), vec![]),
        ("StartDtsJob", dts.to_vec(), vec![]),
        ("StopDIJob", vec![], vec![("DIJobId", "11668")]),
        ("StartDIJob", vec![], vec![("DIJobId", "11668")]),
        ("StopDtsJob", dts.to_vec(), vec![]),
        ("TerminateDISyncInstance", NODE.to_vec(), vec![]),
    ];
    let served: Vec<&str> = runbook::cloud::actions::CATALOGUE
        .iter()
        .map(|s| s.action)
        .collect();
    for action in &served {
        assert!(
            cases.iter().any(|(a, _, _)| a == action),
            "{action} is served but not tested with V3"
        );
    }
    for (action, query, body) in &cases {
        let v3 = query.iter().fold(V3::new(action), |r, (k, v)| r.q(k, v));
        let v3 = body.iter().fold(v3, |r, (k, v)| r.b(k, v));
        let a3 = api.call(&v3).await;
        assert_eq!(a3.status, 200, "{action}: {}", a3.body);
        let reads = action.starts_with("Get") || action.starts_with("Describe");
        if reads {
            let v1 = query.iter().fold(Req::new(action), |r, (k, v)| r.q(k, v));
            let v1 = body.iter().fold(v1, |r, (k, v)| r.b(k, v));
            let a1 = v1_api.send(&v1.sign()).await;
            assert_eq!(
                without_request_id(a1.body),
                without_request_id(a3.body.clone()),
                "{action}: the same JSON whichever the signature"
            );
        }
        let call = sim
            .calls()
            .into_iter()
            .rev()
            .find(|c| c.signature == SignatureVersion::V3)
            .unwrap();
        assert_eq!(call.action.as_deref(), Some(*action));
        assert_eq!(call.outcome, Outcome::Ok);
        for (k, v) in query.iter().chain(body) {
            assert_eq!(call.param(k), Some(*v), "{action} {k}");
        }
        assert_eq!(call.headers[v3::ACTION], *action);
        assert!(!call.params.contains_key("Action"), "{:?}", call.params);
    }
    // The state moved as the mutating calls said.
    assert_eq!(
        sim.resource_status(sim::ResourceKind::DiNode, "100")
            .as_deref(),
        Some("NORUN")
    );
    let calls = sim.calls();
    assert!(calls.iter().any(|c| c.signature == SignatureVersion::V1));
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.signature == SignatureVersion::V3)
            .count(),
        cases.len()
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn get_and_unicode_parameters_verify() {
    let (sim, api) = start(config(fixtures(Duration::ZERO), FaultSpec::default())).await;
    let mut get = V3::node("GetDISyncInstanceInfo");
    get.method = "GET";
    let a = api.call(&get).await;
    assert_eq!(
        (a.status, a.body["Data"]["Status"].clone()),
        (200, json!("RUN")),
        "{}",
        a.body
    );
    // A value with spaces, `*`, `~`, `/`, `+` and non-ASCII, in query and body.
    let odd = "a b*c~d/e+f=g&h%i\"j 数据 ✓";
    let a = api
        .call(
            &V3::node("StartDISyncInstance")
                .b("StartParam", odd)
                .q("Note", odd),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let call = sim.calls().pop().unwrap();
    assert_eq!(call.param("StartParam"), Some(odd));
    assert_eq!(call.param("Note"), Some(odd));
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn signature_key_date_and_nonce_errors() {
    let (sim, api) = start(config(fixtures(Duration::ZERO), FaultSpec::default())).await;
    let node = || V3::node("GetDISyncInstanceInfo");

    // A wrong secret: the message quotes the string to sign (a hash) so a
    // client can tell a wrong secret from a wrong canonicalization.
    let wire = node().signed(&api.host, "wrong-secret");
    let a = api.send(&wire).await;
    assert_gateway_error(&a, 400, "SignatureDoesNotMatch");
    let message = a.body["Message"].as_str().unwrap();
    assert!(message.contains(&wire.string_to_sign), "{message}");
    assert!(!message.contains(ID), "{message}");

    // Anything changed after signing.
    let tampered = [
        api.sign(&node()).set("accept", "text/xml"),
        api.sign(&node())
            .set("host", "dataworks.cn-shanghai.aliyuncs.com"),
        api.sign(&node()).set(v3::ACTION, "GetDIJob"),
        {
            let mut w = api.sign(&node());
            w.query = w.query.replace("FileId=100", "FileId=101");
            w
        },
        {
            let mut w = api.sign(&node());
            w.method = "GET";
            w
        },
    ];
    for wire in &tampered {
        assert_gateway_error(&api.send(wire).await, 400, "SignatureDoesNotMatch");
    }
    // The body is not what was hashed.
    let mut wire = api.sign(&V3::new("StopDIJob").b("DIJobId", "11668"));
    wire.body = b"DIJobId=11669".to_vec();
    let a = api.send(&wire).await;
    assert_gateway_error(&a, 400, "SignatureDoesNotMatch");
    assert!(
        a.body["Message"]
            .as_str()
            .unwrap()
            .contains("x-acs-content-sha256"),
        "{}",
        a.body
    );

    let mut nobody = node();
    nobody.key_id = "nobody".into();
    assert_gateway_error(&api.call(&nobody).await, 404, "InvalidAccessKeyId.NotFound");

    let now = jiff::Timestamp::now();
    for (offset, ok) in [(-16, false), (16, false), (-14, true), (14, true)] {
        let mut req = node();
        req.date = signer::format_timestamp(now + jiff::SignedDuration::from_mins(offset));
        let a = api.call(&req).await;
        if ok {
            assert_eq!(a.status, 200, "{offset} min: {}", a.body);
        } else {
            assert_gateway_error(&a, 400, "InvalidTimeStamp.Expired");
        }
    }
    let mut bad_date = node();
    bad_date.date = "yesterday".into();
    assert_gateway_error(&api.call(&bad_date).await, 400, "InvalidTimeStamp.Format");

    // Replays are refused; a badly signed request does not use up its nonce;
    // V1 and V3 share one nonce store.
    let once = api.sign(&node());
    assert_eq!(api.send(&once).await.status, 200);
    assert_gateway_error(&api.send(&once).await, 400, "SignatureNonceUsed");
    let mut fresh = node();
    fresh.nonce = "v3-nonce-1".into();
    assert_gateway_error(
        &api.send(&fresh.signed(&api.host, "wrong")).await,
        400,
        "SignatureDoesNotMatch",
    );
    assert_eq!(api.call(&fresh).await.status, 200);
    let v1 = NODE
        .iter()
        .fold(Req::new("GetDISyncInstanceInfo"), |r, (k, v)| r.q(k, v))
        .q("SignatureNonce", "shared-nonce")
        .sign();
    assert_eq!(super::sim::Api::new(&sim).send(&v1).await.status, 200);
    let mut again = node();
    again.nonce = "shared-nonce".into();
    assert_gateway_error(&api.call(&again).await, 400, "SignatureNonceUsed");

    // Nothing refused reached the service, and every call is logged as V3.
    let calls = sim.calls();
    assert!(
        calls
            .iter()
            .filter(|c| c.signature == SignatureVersion::V3)
            .all(|c| c.outcome == Outcome::Error
                || c.action.as_deref() == Some("GetDISyncInstanceInfo"))
    );
    assert!(!calls.iter().any(|c| c.changed));
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn signed_headers_must_cover_host_and_every_x_acs_header() {
    let (sim, api) = start(config(fixtures(Duration::ZERO), FaultSpec::default())).await;
    let node = || V3::node("GetDISyncInstanceInfo");
    let incomplete = |a: &Answer, says: &str| {
        assert_gateway_error(a, 400, "IncompleteSignature");
        let message = a.body["Message"].as_str().unwrap();
        assert!(message.contains(says), "`{says}` not in {message}");
    };

    // An x-acs-* header added after signing.
    let a = api.send(&api.sign(&node()).add("x-acs-extra", "1")).await;
    incomplete(&a, "x-acs-extra is not in it");
    // A SignedHeaders list without host (re-signed honestly without it).
    let wire = api.sign(&node());
    let auth = wire.authorization().replace("host;", "");
    let a = api.send(&wire.set("authorization", &auth)).await;
    incomplete(&a, "must include host");
    // A signed header that was not sent.
    let mut traced = node();
    traced.extra.push(("x-trace".into(), "1".into()));
    let a = api.send(&api.sign(&traced).remove("x-trace")).await;
    incomplete(&a, "names x-trace, which was not sent");
    // No Authorization at all, but V3 headers.
    let a = api.send(&api.sign(&node()).remove("authorization")).await;
    incomplete(&a, "Authorization header is missing");
    // Malformed, duplicated.
    for (value, says) in [
        (
            "ACS3-HMAC-SHA1 Credential=testid",
            "must start with `ACS3-HMAC-SHA256 `",
        ),
        (
            "ACS3-HMAC-SHA256 Credential=testid",
            "`SignedHeaders` is missing",
        ),
        (
            "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host,Signature=zz",
            "64 lower-case hex",
        ),
        ("Bearer x", "must start with"),
    ] {
        let a = api
            .send(&api.sign(&node()).set("authorization", value))
            .await;
        incomplete(&a, says);
    }
    let wire = api.sign(&node());
    let auth = wire.authorization();
    let a = api.send(&wire.add("authorization", &auth)).await;
    incomplete(&a, "authorization is sent more than once");
    let a = api
        .send(&api.sign(&node()).add(v3::DATE, "2020-01-01T00:00:00Z"))
        .await;
    incomplete(&a, "x-acs-date is sent more than once");
    // Missing metadata headers.
    for name in [
        v3::ACTION,
        v3::VERSION,
        v3::DATE,
        v3::NONCE,
        v3::CONTENT_SHA256,
    ] {
        let a = api.send(&api.sign(&node()).remove(name)).await;
        assert_gateway_error(&a, 400, "MissingParameter");
        assert!(
            a.body["Message"].as_str().unwrap().contains(name),
            "{}",
            a.body
        );
    }
    // A huge Authorization and a huge signed header: refused, no panic, and
    // the simulator still serves.
    let huge = format!("ACS3-HMAC-SHA256 Credential={}", "A".repeat(60_000));
    let a = api
        .send(&api.sign(&node()).set("authorization", &huge))
        .await;
    incomplete(&a, "more than 8192");
    let mut big = node();
    big.extra.push(("x-acs-padding".into(), "p".repeat(60_000)));
    assert_eq!(
        api.call(&big).await.status,
        200,
        "a long signed header is fine"
    );
    // A signed header whose bytes are not UTF-8.
    let mut latin1 = api.sign(&node());
    latin1.headers.retain(|(n, _)| n != "accept");
    let a = {
        let url = format!("{}/?{}", api.base, latin1.query);
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &latin1.headers {
            headers.append(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                reqwest::header::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        headers.insert(
            "accept",
            reqwest::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        let r = api.http.post(url).headers(headers).send().await.unwrap();
        Answer {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.json().await.unwrap(),
        }
    };
    assert_gateway_error(&a, 400, "SignatureDoesNotMatch");
    assert_eq!(api.call(&node()).await.status, 200);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn temporary_credentials_need_their_token_with_either_signature() {
    const STS_ID: &str = "STS.NUexample";
    const STS_SECRET: &str = "stssecret";
    const TOKEN: &str = "CAIStoken+/=";
    let config = SimConfig {
        temporary_credentials: vec![(STS_ID.into(), STS_SECRET.into(), TOKEN.into())],
        ..config(fixtures(Duration::ZERO), FaultSpec::default())
    };
    let (sim, api) = start(config).await;
    let sts = |token: Option<&str>| {
        let mut r = V3::node("GetDISyncInstanceInfo");
        r.key_id = STS_ID.into();
        r.token = token.map(str::to_owned);
        r
    };
    let a = api
        .send(&sts(Some(TOKEN)).signed(&api.host, STS_SECRET))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let call = sim.calls().pop().unwrap();
    assert_eq!(call.headers[v3::SECURITY_TOKEN], "<redacted>");
    let line = serde_json::to_string(&call).unwrap();
    assert!(
        !line.contains(TOKEN) && !line.contains(STS_SECRET),
        "{line}"
    );

    let a = api.send(&sts(None).signed(&api.host, STS_SECRET)).await;
    assert_gateway_error(&a, 400, "MissingSecurityToken");
    let a = api
        .send(&sts(Some("CAISother")).signed(&api.host, STS_SECRET))
        .await;
    assert_gateway_error(&a, 400, "InvalidSecurityToken.MismatchWithAccessKey");
    // The token must be signed: sent but left out of SignedHeaders.
    let wire = sts(None)
        .signed(&api.host, STS_SECRET)
        .add(v3::SECURITY_TOKEN, TOKEN);
    assert_gateway_error(&api.send(&wire).await, 400, "IncompleteSignature");

    // V1: the same lookup.
    let v1 = super::sim::Api::new(&sim);
    let req = |token: Option<&str>| {
        let r = NODE
            .iter()
            .fold(Req::new("GetDISyncInstanceInfo"), |r, (k, v)| r.q(k, v))
            .q("AccessKeyId", STS_ID);
        match token {
            Some(t) => r.q("SecurityToken", t),
            None => r,
        }
        .sign_with(STS_SECRET)
    };
    assert_eq!(v1.send(&req(Some(TOKEN))).await.status, 200);
    assert_gateway_error(&v1.send(&req(None)).await, 400, "MissingSecurityToken");
    assert_gateway_error(
        &v1.send(&req(Some("CAISother"))).await,
        400,
        "InvalidSecurityToken.MismatchWithAccessKey",
    );
    // A permanent key with a token is served (the token is not its business).
    let a = api
        .call(&V3 {
            token: Some("x".into()),
            ..V3::node("GetDISyncInstanceInfo")
        })
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_v1_request_with_x_acs_headers_is_v1() {
    // The Tea SDKs in V1 mode (`signature_algorithm = "v2"`) send
    // `x-acs-action` and `x-acs-version` beside the V1 query parameters.
    let (sim, _) = start(config(fixtures(Duration::ZERO), FaultSpec::default())).await;
    let req = NODE
        .iter()
        .fold(Req::new("GetDISyncInstanceInfo"), |r, (k, v)| r.q(k, v))
        .sign();
    let url = format!("{}/?{}", sim.base_url(), encode(&req.query, true));
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(url)
        .header(v3::ACTION, "GetDISyncInstanceInfo")
        .header(v3::VERSION, DATAWORKS_VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let call = sim.calls().pop().unwrap();
    assert_eq!(call.signature, SignatureVersion::V1);
    assert!(call.headers.is_empty(), "{:?}", call.headers);
    sim.shutdown().await.unwrap();
}
