//! Integration tests: the simulator over real HTTP on loopback, with requests
//! signed by `cloud::signer` through a small client written here (so these
//! tests do not depend on the runbook client). Each error, state transition,
//! fault kind and the QPS limit is driven from the outside, and `runbook sim`
//! is run as a process.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::time::{Duration, Instant};

use runbook::cloud::actions::{DATAWORKS_VERSION, DTS_VERSION};
use runbook::cloud::signer::{self, CommonParams};
use runbook::sim::{
    self, CallRecord, Delays, DiJobFixture, DiNodeFixture, DiSolutionFixture, DtsJobFixture,
    FaultKind, FaultRule, FaultSpec, Fixtures, Outcome, ResourceKind, SimConfig, SimHandle,
};
use serde_json::{Value, json};

pub(super) const ID: &str = "testid";
pub(super) const SECRET: &str = "testsecret";

// ---- a tiny signed client ---------------------------------------------------------------

/// One request before it is sent: common parameters in the query, API
/// parameters in the query or the form body, signed on `sign()`.
#[derive(Clone)]
pub(super) struct Req {
    pub(super) method: &'static str,
    pub(super) query: BTreeMap<String, String>,
    pub(super) body: BTreeMap<String, String>,
}

fn version_of(action: &str) -> &'static str {
    if action.contains("Dts") {
        DTS_VERSION
    } else {
        DATAWORKS_VERSION
    }
}

impl Req {
    pub(super) fn new(action: &str) -> Req {
        Req::at(action, jiff::Timestamp::now())
    }

    fn at(action: &str, timestamp: jiff::Timestamp) -> Req {
        let mut query = BTreeMap::new();
        let nonce = uuid::Uuid::new_v4().to_string();
        CommonParams {
            action,
            version: version_of(action),
            access_key_id: ID,
            security_token: None,
            nonce: &nonce,
            timestamp,
        }
        .apply(&mut query);
        Req {
            method: "POST",
            query,
            body: BTreeMap::new(),
        }
    }

    pub(super) fn q(mut self, k: &str, v: &str) -> Req {
        self.query.insert(k.to_owned(), v.to_owned());
        self
    }

    pub(super) fn b(mut self, k: &str, v: &str) -> Req {
        self.body.insert(k.to_owned(), v.to_owned());
        self
    }

    fn without(mut self, k: &str) -> Req {
        self.query.remove(k);
        self
    }

    fn method(mut self, method: &'static str) -> Req {
        self.method = method;
        self
    }

    /// Signs query and body together with `secret`, as the SDKs do.
    pub(super) fn sign_with(mut self, secret: &str) -> Req {
        let mut all = self.query.clone();
        all.extend(self.body.clone());
        all.remove("Signature");
        let signature = signer::sign(self.method, &all, secret);
        self.query.insert("Signature".to_owned(), signature);
        self
    }

    pub(super) fn sign(self) -> Req {
        self.sign_with(SECRET)
    }
}

#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) headers: reqwest::header::HeaderMap,
    pub(super) body: Value,
}

impl Answer {
    pub(super) fn code(&self) -> &str {
        self.body["Code"].as_str().unwrap_or("")
    }
}

pub(super) struct Api {
    base: String,
    http: reqwest::Client,
}

pub(super) fn encode(params: &BTreeMap<String, String>, plus_for_space: bool) -> String {
    params
        .iter()
        .map(|(k, v)| {
            let v = signer::percent_encode(v);
            let v = if plus_for_space {
                v.replace("%20", "+")
            } else {
                v
            };
            format!("{}={v}", signer::percent_encode(k))
        })
        .collect::<Vec<_>>()
        .join("&")
}

impl Api {
    pub(super) fn new(handle: &SimHandle) -> Api {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a client");
        Api {
            base: handle.base_url(),
            http,
        }
    }

    /// Sends as is; a transport failure is an `Err`.
    async fn try_send(&self, req: &Req) -> Result<Answer, reqwest::Error> {
        let url = format!("{}/?{}", self.base, encode(&req.query, false));
        let method = reqwest::Method::from_bytes(req.method.as_bytes()).expect("a method");
        let mut builder = self.http.request(method, url);
        if !req.body.is_empty() {
            builder = builder
                .header("content-type", "application/x-www-form-urlencoded")
                .body(encode(&req.body, true));
        }
        let response = builder.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    pub(super) async fn send(&self, req: &Req) -> Answer {
        self.try_send(req).await.expect("an answer")
    }

    /// Signs and sends `action` with its parameters in the query.
    async fn call(&self, action: &str, params: &[(&str, &str)]) -> Answer {
        let mut req = Req::new(action);
        for (k, v) in params {
            req = req.q(k, v);
        }
        self.send(&req.sign()).await
    }

    /// Polls a status call until `select` reads `want` or two seconds pass;
    /// returns every distinct value seen, in order.
    async fn poll(
        &self,
        action: &str,
        params: &[(&str, &str)],
        select: &str,
        want: &str,
    ) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut seen: Vec<String> = Vec::new();
        loop {
            let answer = self.call(action, params).await;
            let value = runbook::cloud::select(&answer.body, select)
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned();
            if seen.last() != Some(&value) {
                seen.push(value.clone());
            }
            if value == want || Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
}

pub(super) fn fixtures(delay: Duration) -> Fixtures {
    Fixtures {
        delays: Delays::uniform(delay),
        dts_jobs: vec![DtsJobFixture {
            reverse_status: Some("Synchronizing".to_owned()),
            ..DtsJobFixture::running("j1")
        }],
        di_nodes: vec![DiNodeFixture {
            name: Some("orders_rt".to_owned()),
            ..DiNodeFixture::running(10000, 100)
        }],
        di_jobs: vec![DiJobFixture {
            id: 11668,
            project_id: Some(10000),
            name: None,
            status: "Running".to_owned(),
        }],
        di_solutions: vec![DiSolutionFixture {
            project_id: 10000,
            file_id: 200,
            status: "success".to_owned(),
        }],
        ..Fixtures::default()
    }
}

pub(super) fn config(fixtures: Fixtures, faults: FaultSpec) -> SimConfig {
    SimConfig {
        credentials: vec![(ID.to_owned(), SECRET.to_owned())],
        fixtures,
        faults,
        ..SimConfig::default()
    }
}

async fn start(config: SimConfig) -> (SimHandle, Api) {
    let handle = sim::spawn(config).await.expect("the simulator starts");
    let api = Api::new(&handle);
    (handle, api)
}

pub(super) const NODE: &[(&str, &str)] = &[
    ("ProjectId", "10000"),
    ("FileId", "100"),
    ("TaskType", "DI_REALTIME"),
];
const JOB: &[(&str, &str)] = &[("DtsJobId", "j1")];

fn calls_of<'a>(calls: &'a [CallRecord], action: &str) -> Vec<&'a CallRecord> {
    calls
        .iter()
        .filter(|c| c.action.as_deref() == Some(action))
        .collect()
}

// ---- every action ------------------------------------------------------------------------

#[tokio::test]
async fn every_action_answers_in_its_documented_shape() {
    let (sim, api) = start(config(fixtures(Duration::ZERO), FaultSpec::default())).await;

    let a = api.call("GetDISyncInstanceInfo", NODE).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["Success"], true);
    assert_eq!(
        a.body["Data"],
        json!({"Status": "RUN", "Message": null, "Name": "orders_rt", "SolutionInfo": null})
    );

    let a = api.call("StopDISyncInstance", NODE).await;
    assert_eq!(a.status, 200);
    let id = a.body["RequestId"].as_str().unwrap().to_owned();
    assert_eq!(
        a.body,
        json!({"RequestId": id, "Success": true, "Data": {"Status": "success", "Message": null}})
    );
    assert_eq!(a.headers["x-acs-request-id"], id.as_str());
    assert_eq!(a.headers["content-type"], "application/json;charset=utf-8");
    assert_eq!(
        api.call("GetDISyncInstanceInfo", NODE).await.body["Data"]["Status"],
        "PAUSE"
    );

    let a = api.call("StartDISyncInstance", NODE).await;
    assert_eq!(a.body["Data"]["Status"], "success");
    assert_eq!(
        api.call("GetDISyncInstanceInfo", NODE).await.body["Data"]["Status"],
        "RUN"
    );

    let a = api.call("TerminateDISyncInstance", NODE).await;
    assert_eq!((a.status, a.body["Success"].clone()), (200, json!(true)));
    assert_eq!(
        api.call("GetDISyncInstanceInfo", NODE).await.body["Data"]["Status"],
        "NORUN"
    );

    let a = api
        .call(
            "GetDISyncInstanceInfo",
            &[
                ("ProjectId", "10000"),
                ("FileId", "200"),
                ("TaskType", "DI_SOLUTION"),
            ],
        )
        .await;
    assert_eq!(a.body["Data"]["Status"], "success");
    assert_eq!(a.body["Data"]["Name"], Value::Null);
    assert_eq!(a.body["Data"]["SolutionInfo"]["Id"], 200);
    assert_eq!(a.body["Data"]["SolutionInfo"]["Status"], "success");

    // StopDIJob takes DIJobId in the form body and answers {RequestId} only.
    let a = api
        .send(&Req::new("StopDIJob").b("DIJobId", "11668").sign())
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["RequestId"]
    );
    let a = api.call("GetDIJob", &[("DIJobId", "11668")]).await;
    assert_eq!(a.body["Success"], true);
    assert_eq!(a.body["Data"]["DIJobId"], 11668);
    assert_eq!(a.body["Data"]["ProjectId"], 10000);
    assert_eq!(a.body["Data"]["JobStatus"], "Stopped");

    let a = api
        .call(
            "DescribeDtsJobDetail",
            &[("DtsJobId", "j1"), ("DtsInstanceID", "dtsj1")],
        )
        .await;
    assert_eq!(a.status, 200);
    for (k, v) in [
        ("Status", json!("Synchronizing")),
        ("DtsJobId", json!("j1")),
        ("DtsInstanceID", json!("dtsj1")),
        ("Success", json!(true)),
        ("HttpStatusCode", json!(200)),
        ("ErrorMessage", json!("")),
    ] {
        assert_eq!(a.body[k], v, "{k}: {}", a.body);
    }
    assert_eq!(a.body["DataSynchronizationStatus"]["Status"], "Migrating");

    for (action, expect) in [
        ("SuspendDtsJob", "Suspending"),
        ("StartDtsJob", "Synchronizing"),
        ("StopDtsJob", "Finished"),
    ] {
        let a = api
            .call(
                action,
                &[
                    ("DtsJobId", "j1"),
                    ("DtsInstanceId", "dtsj1"),
                    ("RegionId", "cn-hangzhou"),
                ],
            )
            .await;
        let id = a.body["RequestId"].clone();
        assert_eq!(
            a.body,
            json!({"RequestId": id, "HttpStatusCode": 200, "Success": true, "ErrCode": "", "ErrMessage": "", "DynamicMessage": "", "DynamicCode": ""}),
            "{action}"
        );
        assert_eq!(
            api.call("DescribeDtsJobDetail", JOB).await.body["Status"],
            expect,
            "{action}"
        );
    }
    let finished = api.call("DescribeDtsJobDetail", JOB).await;
    assert!(
        finished.body["FinishTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{}",
        finished.body
    );

    // The Reverse direction of a two-way sync is a task of its own.
    let reverse = [("DtsJobId", "j1"), ("SynchronizationDirection", "Reverse")];
    assert_eq!(
        api.call("DescribeDtsJobDetail", &reverse).await.body["Status"],
        "Synchronizing"
    );
    assert_eq!(api.call("StopDtsJob", &reverse).await.body["Success"], true);
    assert_eq!(
        api.call("DescribeDtsJobDetail", &reverse).await.body["Status"],
        "Finished"
    );
    assert_eq!(
        sim.resource_status(ResourceKind::DtsReverseJob, "j1")
            .as_deref(),
        Some("Finished")
    );

    // Every answer has its own upper-case RequestId.
    let ids: Vec<String> = sim.calls().iter().map(|c| c.request_id.clone()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());
    assert!(
        ids.iter()
            .all(|id| id.len() == 36 && *id == id.to_ascii_uppercase()),
        "{ids:?}"
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn get_requests_and_old_sdk_quirks_verify() {
    let (sim, api) = start(config(fixtures(Duration::ZERO), FaultSpec::default())).await;
    // GET, with every parameter in the query.
    let a = api
        .send(
            &NODE
                .iter()
                .fold(Req::new("GetDISyncInstanceInfo"), |r, (k, v)| r.q(k, v))
                .method("GET")
                .sign(),
        )
        .await;
    assert_eq!(
        (a.status, a.body["Data"]["Status"].clone()),
        (200, json!("RUN"))
    );
    // aliyunsdkcore sends an empty `SignatureType=` and signs it; form bodies
    // encode a space as `+`; a SecurityToken is signed like any parameter.
    let req = NODE
        .iter()
        .fold(Req::new("StartDISyncInstance"), |r, (k, v)| r.q(k, v))
        .q("SignatureType", "")
        .q("SecurityToken", "CAIS+token/with=special&chars~*")
        .b("StartParam", "{\"a\": \"b c\"}");
    let a = api.send(&req.sign()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let call = sim.calls().pop().unwrap();
    assert_eq!(call.param("StartParam"), Some("{\"a\": \"b c\"}"));
    assert_eq!(call.param("SignatureType"), Some(""));
    assert_eq!(call.param("SecurityToken"), Some("<redacted>"));
    sim.shutdown().await.unwrap();
}

// ---- every error -------------------------------------------------------------------------

pub(super) fn assert_gateway_error(a: &Answer, status: u16, code: &str) {
    assert_eq!((a.status, a.code()), (status, code), "{}", a.body);
    let id = a.body["RequestId"].as_str().expect("a RequestId");
    assert!(
        !a.body["HostId"].as_str().unwrap_or("").is_empty(),
        "{}",
        a.body
    );
    assert!(
        !a.body["Message"].as_str().unwrap_or("").is_empty(),
        "{}",
        a.body
    );
    let recommend = a.body["Recommend"].as_str().unwrap_or("");
    assert!(
        recommend.contains(&format!("q={code}")) && recommend.contains(id),
        "{recommend}"
    );
}

#[tokio::test]
async fn signature_key_timestamp_and_nonce_errors() {
    let (sim, api) = start(config(fixtures(Duration::ZERO), FaultSpec::default())).await;
    let node = || {
        NODE.iter()
            .fold(Req::new("GetDISyncInstanceInfo"), |r, (k, v)| r.q(k, v))
    };

    let a = api.send(&node().sign_with("wrong-secret")).await;
    assert_gateway_error(&a, 400, "SignatureDoesNotMatch");
    let message = a.body["Message"].as_str().unwrap();
    assert!(message.contains("server string to sign is:POST&%2F&AccessKeyId%3D%253Credacted%253E%26Action%3DGetDISyncInstanceInfo"), "{message}");
    assert!(!message.contains(ID), "the key id is redacted: {message}");
    assert_eq!(a.body["HostId"], "dataworks.aliyuncs.com");

    // A parameter changed after signing.
    let mut tampered = node().sign();
    tampered.query.insert("FileId".to_owned(), "101".to_owned());
    assert_gateway_error(&api.send(&tampered).await, 400, "SignatureDoesNotMatch");
    // Signed as GET, sent as POST.
    let mut wrong_method = node().method("GET").sign();
    wrong_method.method = "POST";
    assert_gateway_error(&api.send(&wrong_method).await, 400, "SignatureDoesNotMatch");

    let a = api.send(&node().q("AccessKeyId", "nobody").sign()).await;
    assert_gateway_error(&a, 404, "InvalidAccessKeyId.NotFound");

    let now = jiff::Timestamp::now();
    let minutes = |m: i64| jiff::SignedDuration::from_mins(m);
    for (offset, ok) in [(-16, false), (16, false), (-14, true), (14, true)] {
        let req = NODE.iter().fold(
            Req::at("GetDISyncInstanceInfo", now + minutes(offset)),
            |r, (k, v)| r.q(k, v),
        );
        let a = api.send(&req.sign()).await;
        if ok {
            assert_eq!(a.status, 200, "{offset} min: {}", a.body);
        } else {
            assert_gateway_error(&a, 400, "InvalidTimeStamp.Expired");
        }
    }
    assert_gateway_error(
        &api.send(&node().q("Timestamp", "yesterday").sign()).await,
        400,
        "InvalidTimeStamp.Format",
    );

    // A replayed request is refused; a badly signed one does not use up its nonce.
    let once = node().sign();
    assert_eq!(api.send(&once).await.status, 200);
    assert_gateway_error(&api.send(&once).await, 400, "SignatureNonceUsed");
    let fresh = node().q("SignatureNonce", "nonce-1");
    assert_gateway_error(
        &api.send(&fresh.clone().sign_with("wrong")).await,
        400,
        "SignatureDoesNotMatch",
    );
    assert_eq!(api.send(&fresh.sign()).await.status, 200);

    assert_gateway_error(
        &api.send(&node().q("SignatureMethod", "HMAC-SHA256").sign())
            .await,
        400,
        "InvalidSignatureMethod",
    );
    assert_gateway_error(
        &api.send(&node().q("SignatureVersion", "2.0").sign()).await,
        400,
        "IncompleteSignature",
    );
    assert_gateway_error(
        &api.send(&node().q("Format", "XML").sign()).await,
        400,
        "InvalidParameter",
    );
    assert_eq!(
        api.send(&node().q("Format", "json").sign()).await.status,
        200,
        "tea-openapi sends lower case"
    );
    assert_gateway_error(
        &api.send(&node().method("PUT").sign()).await,
        400,
        "UnsupportedHTTPMethod",
    );
    for common in ["Timestamp", "SignatureNonce", "AccessKeyId", "Signature"] {
        let a = api.send(&node().sign().without(common)).await;
        assert_gateway_error(&a, 400, "MissingParameter");
        assert!(
            a.body["Message"]
                .as_str()
                .unwrap()
                .contains(&format!("\"{common}\"")),
            "{}",
            a.body
        );
    }
    // Nothing above reached the service.
    assert!(
        sim.calls()
            .iter()
            .all(|c| c.outcome == Outcome::Error || c.outcome == Outcome::Ok)
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_actions_and_bad_parameters() {
    let (sim, api) = start(config(fixtures(Duration::ZERO), FaultSpec::default())).await;

    assert_gateway_error(
        &api.call("DeleteDtsJob", JOB).await,
        404,
        "InvalidAction.NotFound",
    );
    // A real action under the other product's version is not routed either.
    let wrong_version = Req::new("StopDtsJob")
        .q("Version", DATAWORKS_VERSION)
        .q("DtsJobId", "j1")
        .sign();
    assert_gateway_error(
        &api.send(&wrong_version).await,
        404,
        "InvalidAction.NotFound",
    );
    assert_gateway_error(
        &api.send(&Req::new("StopDtsJob").without("Action").sign())
            .await,
        400,
        "MissingParameter",
    );

    let a = api
        .call(
            "StopDISyncInstance",
            &[("ProjectId", "10000"), ("TaskType", "DI_REALTIME")],
        )
        .await;
    assert_gateway_error(&a, 400, "MissingParameter");
    assert!(
        a.body["Message"].as_str().unwrap().contains("\"FileId\""),
        "{}",
        a.body
    );
    let a = api.send(&Req::new("StopDIJob").sign()).await;
    assert_gateway_error(&a, 400, "MissingParameter");

    let a = api
        .call(
            "StopDISyncInstance",
            &[
                ("ProjectId", "abc"),
                ("FileId", "100"),
                ("TaskType", "DI_REALTIME"),
            ],
        )
        .await;
    assert_gateway_error(&a, 400, "Param.Invalid");
    assert!(
        a.body["Message"]
            .as_str()
            .unwrap()
            .starts_with("The parameter is invalid: ProjectId must be an integer"),
        "{}",
        a.body
    );
    let a = api
        .call(
            "TerminateDISyncInstance",
            &[
                ("ProjectId", "10000"),
                ("FileId", "100"),
                ("TaskType", "DI_SOLUTION"),
            ],
        )
        .await;
    assert_gateway_error(&a, 400, "Param.Invalid");
    let a = api
        .call(
            "StopDtsJob",
            &[("DtsJobId", "j1"), ("SynchronizationDirection", "Sideways")],
        )
        .await;
    assert_gateway_error(&a, 400, "InvalidParameter");
    assert_eq!(a.body["HostId"], "dts.aliyuncs.com");
    let a = api
        .call("StopDtsJob", &[("DtsJobId", "j1"), ("ZeroEtlJob", "yes")])
        .await;
    assert_gateway_error(&a, 400, "InvalidParameter");
    let a = api
        .call(
            "StopDtsJob",
            &[
                ("DtsJobId", "j1"),
                ("RegionId", "cn-shanghai"),
                ("ZeroEtlJob", "maybe"),
            ],
        )
        .await;
    assert_eq!(a.body["HostId"], "dts.cn-shanghai.aliyuncs.com");

    assert_eq!(
        sim.resource_status(ResourceKind::DiNode, "100").as_deref(),
        Some("RUN"),
        "nothing was applied"
    );
    assert_eq!(
        sim.resource_status(ResourceKind::DtsJob, "j1").as_deref(),
        Some("Synchronizing")
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_resources_answer_as_each_product_does() {
    let (sim, api) = start(config(fixtures(Duration::ZERO), FaultSpec::default())).await;
    for action in [
        "GetDISyncInstanceInfo",
        "StopDISyncInstance",
        "TerminateDISyncInstance",
        "StartDISyncInstance",
    ] {
        let a = api
            .call(
                action,
                &[
                    ("ProjectId", "10000"),
                    ("FileId", "999"),
                    ("TaskType", "DI_REALTIME"),
                ],
            )
            .await;
        assert_eq!(a.status, 200, "{action}");
        assert_eq!(a.body["Success"], false, "{action}");
        assert_eq!(
            a.body["Data"],
            json!({"Status": "fail", "Message": "fileId:[999] is invalid."}),
            "{action}"
        );
    }
    // The right FileId in the wrong project is not found either.
    let a = api
        .call(
            "GetDISyncInstanceInfo",
            &[
                ("ProjectId", "1"),
                ("FileId", "100"),
                ("TaskType", "DI_REALTIME"),
            ],
        )
        .await;
    assert_eq!(a.body["Data"]["Message"], "fileId:[100] is invalid.");

    for action in [
        "DescribeDtsJobDetail",
        "StopDtsJob",
        "SuspendDtsJob",
        "StartDtsJob",
    ] {
        let a = api.call(action, &[("DtsJobId", "nope")]).await;
        assert_eq!(a.status, 200, "{action}");
        for (k, v) in [
            ("Success", json!(false)),
            ("ErrCode", json!("InvalidParameter")),
            (
                "ErrMessage",
                json!("The Value of Input Parameter %s is not valid."),
            ),
            ("DynamicMessage", json!("DtsJobId")),
            ("HttpStatusCode", json!(404)),
        ] {
            assert_eq!(a.body[k], v, "{action} {k}");
        }
    }
    let a = api
        .call(
            "StopDtsJob",
            &[("DtsJobId", "j1"), ("DtsInstanceId", "dtsother")],
        )
        .await;
    assert_eq!(
        (a.body["Success"].clone(), a.body["DynamicMessage"].clone()),
        (json!(false), json!("DtsInstanceId"))
    );
    let a = api
        .call(
            "DescribeDtsJobDetail",
            &[("DtsJobId", "j1"), ("DtsInstanceID", "dtsother")],
        )
        .await;
    assert_eq!(a.body["DynamicMessage"], "DtsInstanceID");

    for action in ["GetDIJob", "StopDIJob"] {
        let a = api.call(action, &[("DIJobId", "5")]).await;
        assert_gateway_error(&a, 400, "Param.Invalid");
    }
    let failed = sim
        .calls()
        .iter()
        .filter(|c| c.outcome == Outcome::Failed)
        .count();
    assert_eq!(failed, 11);
    assert!(sim.calls().iter().all(|c| !c.changed));
    sim.shutdown().await.unwrap();
}

// ---- every state transition --------------------------------------------------------------

const DELAY: Duration = Duration::from_millis(250);

#[tokio::test]
async fn dts_stop_reports_the_old_status_until_the_delay_then_finished() {
    let mut f = fixtures(DELAY);
    f.dts_jobs.push(DtsJobFixture {
        status: "Failed".to_owned(),
        error_message: Some("disk full".to_owned()),
        ..DtsJobFixture::running("broken")
    });
    let (sim, api) = start(config(f, FaultSpec::default())).await;

    let started = Instant::now();
    assert_eq!(api.call("StopDtsJob", JOB).await.body["Success"], true);
    let seen = api
        .poll("DescribeDtsJobDetail", JOB, "Status", "Finished")
        .await;
    assert_eq!(seen, ["Synchronizing", "Finished"]);
    assert!(started.elapsed() >= DELAY);
    // Stopping again: a no-op success.
    assert_eq!(api.call("StopDtsJob", JOB).await.body["Success"], true);
    let stops = calls_of(&sim.calls(), "StopDtsJob")
        .iter()
        .map(|c| c.changed)
        .collect::<Vec<_>>();
    assert_eq!(stops, [true, false]);
    // Suspend and start refuse a finished task.
    for action in ["SuspendDtsJob", "StartDtsJob"] {
        let a = api.call(action, JOB).await;
        assert_eq!(
            (a.body["Success"].clone(), a.body["ErrCode"].clone()),
            (json!(false), json!("OperationDenied.JobStatus"))
        );
        assert_eq!(a.body["DynamicMessage"], "Finished");
    }

    // A failed task tells why, and can still be ended.
    let broken = [("DtsJobId", "broken")];
    let a = api.call("DescribeDtsJobDetail", &broken).await;
    assert_eq!(
        (a.body["Status"].clone(), a.body["ErrorMessage"].clone()),
        (json!("Failed"), json!("disk full"))
    );
    api.call("StopDtsJob", &broken).await;
    assert_eq!(
        api.poll("DescribeDtsJobDetail", &broken, "Status", "Finished")
            .await,
        ["Failed", "Finished"]
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn dts_suspend_and_start_round_trip() {
    let (sim, api) = start(config(fixtures(DELAY), FaultSpec::default())).await;
    api.call("SuspendDtsJob", JOB).await;
    assert_eq!(
        api.call("SuspendDtsJob", JOB).await.body["Success"],
        true,
        "a repeated suspend is accepted"
    );
    assert_eq!(
        api.poll("DescribeDtsJobDetail", JOB, "Status", "Suspending")
            .await,
        ["Synchronizing", "Suspending"]
    );
    api.call("StartDtsJob", JOB).await;
    assert_eq!(
        api.poll("DescribeDtsJobDetail", JOB, "Status", "Synchronizing")
            .await,
        ["Suspending", "Synchronizing"]
    );
    let changed: Vec<bool> = sim
        .calls()
        .iter()
        .filter(|c| c.action.as_deref() != Some("DescribeDtsJobDetail"))
        .map(|c| c.changed)
        .collect();
    assert_eq!(changed, [true, false, true]);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn di_node_stop_goes_through_killing_to_pause() {
    let (sim, api) = start(config(fixtures(DELAY), FaultSpec::default())).await;
    assert_eq!(
        api.call("StopDISyncInstance", NODE).await.body["Data"]["Status"],
        "success"
    );
    assert_eq!(
        api.call("StopDISyncInstance", NODE).await.body["Data"]["Status"],
        "success",
        "stop while KILLING"
    );
    assert_eq!(
        api.poll("GetDISyncInstanceInfo", NODE, "Data.Status", "PAUSE")
            .await,
        ["KILLING", "PAUSE"]
    );
    assert_eq!(
        api.call("StopDISyncInstance", NODE).await.body["Data"]["Status"],
        "success",
        "stop while PAUSE"
    );
    let changed: Vec<bool> = calls_of(&sim.calls(), "StopDISyncInstance")
        .iter()
        .map(|c| c.changed)
        .collect();
    assert_eq!(changed, [true, false, false]);

    // Start: PAUSE -> WAIT -> RUN.
    api.call("StartDISyncInstance", NODE).await;
    assert_eq!(
        api.poll("GetDISyncInstanceInfo", NODE, "Data.Status", "RUN")
            .await,
        ["WAIT", "RUN"]
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn di_node_terminate_is_irreversible() {
    let mut f = fixtures(DELAY);
    f.di_nodes.push(DiNodeFixture {
        status: "PAUSE".to_owned(),
        ..DiNodeFixture::running(10000, 101)
    });
    let (sim, api) = start(config(f, FaultSpec::default())).await;

    assert_eq!(
        api.call("TerminateDISyncInstance", NODE).await.body["Success"],
        true
    );
    // Repeated while the undeploy is under way: accepted, nothing changes.
    assert_eq!(
        api.call("TerminateDISyncInstance", NODE).await.body["Success"],
        true
    );
    assert_eq!(
        api.poll("GetDISyncInstanceInfo", NODE, "Data.Status", "NORUN")
            .await,
        ["KILLING", "NORUN"]
    );
    // Once NORUN: terminate, stop and start all fail; the node stays NORUN.
    for action in [
        "TerminateDISyncInstance",
        "StopDISyncInstance",
        "StartDISyncInstance",
    ] {
        let a = api.call(action, NODE).await;
        assert_eq!(
            (
                a.status,
                a.body["Success"].clone(),
                a.body["Data"]["Status"].clone()
            ),
            (200, json!(false), json!("fail")),
            "{action}"
        );
        assert!(
            a.body["Data"]["Message"]
                .as_str()
                .unwrap()
                .contains("fileId:[100]"),
            "{}",
            a.body
        );
    }
    assert_eq!(
        sim.resource_status(ResourceKind::DiNode, "100").as_deref(),
        Some("NORUN")
    );
    let terminates: Vec<(Outcome, bool)> = calls_of(&sim.calls(), "TerminateDISyncInstance")
        .iter()
        .map(|c| (c.outcome, c.changed))
        .collect();
    assert_eq!(
        terminates,
        [
            (Outcome::Ok, true),
            (Outcome::Ok, false),
            (Outcome::Failed, false)
        ]
    );

    // A paused node has nothing to kill: NORUN at once.
    let paused = [
        ("ProjectId", "10000"),
        ("FileId", "101"),
        ("TaskType", "DI_REALTIME"),
    ];
    api.call("TerminateDISyncInstance", &paused).await;
    assert_eq!(
        api.call("GetDISyncInstanceInfo", &paused).await.body["Data"]["Status"],
        "NORUN"
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn di_job_stop_and_auto_create() {
    let mut c = config(fixtures(DELAY), FaultSpec::default());
    c.auto_create = true;
    let (sim, api) = start(c).await;
    let job = [("DIJobId", "11668")];
    api.send(&Req::new("StopDIJob").b("DIJobId", "11668").sign())
        .await;
    assert_eq!(
        api.poll("GetDIJob", &job, "Data.JobStatus", "Stopped")
            .await,
        ["Running", "Stopped"]
    );
    api.send(&Req::new("StopDIJob").b("DIJobId", "11668").sign())
        .await;
    let changed: Vec<bool> = calls_of(&sim.calls(), "StopDIJob")
        .iter()
        .map(|c| c.changed)
        .collect();
    assert_eq!(changed, [true, false]);

    // Unknown ids are created as running on first use, by any action.
    assert_eq!(sim.resource_status(ResourceKind::DiNode, "555"), None);
    let fresh = [
        ("ProjectId", "3"),
        ("FileId", "555"),
        ("TaskType", "DI_REALTIME"),
    ];
    assert_eq!(
        api.call("GetDISyncInstanceInfo", &fresh).await.body["Data"]["Status"],
        "RUN"
    );
    let a = api
        .call(
            "DescribeDtsJobDetail",
            &[("DtsJobId", "new-job"), ("DtsInstanceID", "dtsX")],
        )
        .await;
    assert_eq!(
        (a.body["Status"].clone(), a.body["DtsInstanceID"].clone()),
        (json!("Synchronizing"), json!("dtsX"))
    );
    assert_eq!(
        api.call("GetDIJob", &[("DIJobId", "77")]).await.body["Data"]["JobStatus"],
        "Running"
    );
    api.call(
        "TerminateDISyncInstance",
        &[
            ("ProjectId", "4"),
            ("FileId", "556"),
            ("TaskType", "DI_REALTIME"),
        ],
    )
    .await;
    assert_eq!(
        sim.resource_status(ResourceKind::DiNode, "556").as_deref(),
        Some("KILLING")
    );
    assert_eq!(
        sim.resource_status(ResourceKind::DtsJob, "new-job")
            .as_deref(),
        Some("Synchronizing")
    );
    assert_eq!(
        sim.resource_status(ResourceKind::DiJob, "77").as_deref(),
        Some("Running")
    );

    // Tests can push a resource into any status, e.g. a task failing mid-run.
    sim.set_status(ResourceKind::DtsJob, "new-job", "Failed")
        .unwrap();
    assert_eq!(
        api.call("DescribeDtsJobDetail", &[("DtsJobId", "new-job")])
            .await
            .body["Status"],
        "Failed"
    );
    assert!(
        sim.set_status(ResourceKind::DtsJob, "new-job", "Exploded")
            .is_err()
    );
    sim.shutdown().await.unwrap();
}

// ---- each fault kind ---------------------------------------------------------------------

fn faults(spec: &str) -> FaultSpec {
    spec.parse().expect("a valid fault spec")
}

#[tokio::test]
async fn throttle_and_error_faults_answer_without_applying() {
    let (sim, api) = start(config(
        fixtures(Duration::ZERO),
        faults(
            "throttle@StopDISyncInstance=1,throttle@StopDtsJob=1,error@TerminateDISyncInstance=1",
        ),
    ))
    .await;
    let a = api.call("StopDISyncInstance", NODE).await;
    assert_gateway_error(&a, 429, "Throttling.User");
    let a = api.call("StopDtsJob", JOB).await;
    assert_gateway_error(&a, 400, "Throttling.User");
    let a = api.call("TerminateDISyncInstance", NODE).await;
    assert_gateway_error(&a, 500, "InternalError.System");
    assert_eq!(
        sim.resource_status(ResourceKind::DiNode, "100").as_deref(),
        Some("RUN")
    );
    assert_eq!(
        sim.resource_status(ResourceKind::DtsJob, "j1").as_deref(),
        Some("Synchronizing")
    );
    let kinds: Vec<Vec<FaultKind>> = sim.calls().iter().map(|c| c.faults.clone()).collect();
    assert_eq!(
        kinds,
        [
            vec![FaultKind::Throttle],
            vec![FaultKind::Throttle],
            vec![FaultKind::Error]
        ]
    );
    // The gateway refuses bad parameters before a backend fault can fire.
    let a = api
        .call(
            "TerminateDISyncInstance",
            &[("ProjectId", "10000"), ("TaskType", "DI_REALTIME")],
        )
        .await;
    assert_gateway_error(&a, 400, "MissingParameter");
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn slow_fault_applies_then_answers_late() {
    let (sim, api) = start(config(
        fixtures(Duration::ZERO),
        faults("slow@StopDISyncInstance=1:300ms"),
    ))
    .await;
    let started = Instant::now();
    let a = api.call("StopDISyncInstance", NODE).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a.body["Success"], true);
    assert_eq!(
        sim.resource_status(ResourceKind::DiNode, "100").as_deref(),
        Some("PAUSE")
    );
    let started = Instant::now();
    api.call("GetDISyncInstanceInfo", NODE).await;
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "only the scoped action is slow"
    );
    assert_eq!(sim.calls()[0].faults, [FaultKind::Slow]);
    sim.shutdown().await.unwrap();
}

/// The client sent its request and the connection closed with no answer at
/// all: not a refused connection, not an HTTP error.
fn assert_dropped(result: Result<Answer, reqwest::Error>) {
    let err = result.expect_err("the connection is dropped without an answer");
    assert!(
        err.is_request() && !err.is_connect() && err.status().is_none(),
        "{err:?}"
    );
    assert!(format!("{err:?}").contains("IncompleteMessage"), "{err:?}");
}

#[tokio::test]
async fn drop_closes_the_connection_before_applying() {
    let (sim, api) = start(config(
        fixtures(Duration::ZERO),
        faults("drop@TerminateDISyncInstance=1"),
    ))
    .await;
    let err = api
        .try_send(
            &NODE
                .iter()
                .fold(Req::new("TerminateDISyncInstance"), |r, (k, v)| r.q(k, v))
                .sign(),
        )
        .await;
    assert_dropped(err);
    assert_eq!(
        sim.resource_status(ResourceKind::DiNode, "100").as_deref(),
        Some("RUN")
    );
    // The same client carries on over a new connection.
    assert_eq!(
        api.call("GetDISyncInstanceInfo", NODE).await.body["Data"]["Status"],
        "RUN"
    );
    let call = &sim.calls()[0];
    assert_eq!(
        (call.outcome, call.http_status, call.changed),
        (Outcome::Dropped, None, false)
    );
    assert!(!call.processed());
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn applied_drop_changes_state_then_loses_the_answer() {
    // Only the first terminate is dropped: the case that makes a blind retry
    // of an irreversible call visible.
    let spec = FaultSpec::default().with(
        FaultRule::new(FaultKind::AppliedDrop, 1.0)
            .on("TerminateDISyncInstance")
            .times(1),
    );
    let (sim, api) = start(config(fixtures(Duration::ZERO), spec)).await;
    let terminate = NODE
        .iter()
        .fold(Req::new("TerminateDISyncInstance"), |r, (k, v)| r.q(k, v));
    assert_dropped(api.try_send(&terminate.clone().sign()).await);
    assert_eq!(
        api.call("GetDISyncInstanceInfo", NODE).await.body["Data"]["Status"],
        "NORUN",
        "it was applied"
    );
    // A blind retry reaches the service and fails: the node is already offline.
    let again = api
        .send(
            &NODE
                .iter()
                .fold(Req::new("TerminateDISyncInstance"), |r, (k, v)| r.q(k, v))
                .sign(),
        )
        .await;
    assert_eq!(again.body["Data"]["Status"], "fail");
    let terminates: Vec<(Outcome, Option<u16>, bool, bool)> =
        calls_of(&sim.calls(), "TerminateDISyncInstance")
            .iter()
            .map(|c| (c.outcome, c.http_status, c.changed, c.processed()))
            .collect();
    assert_eq!(
        terminates,
        [
            (Outcome::AppliedThenDropped, None, true, true),
            (Outcome::Failed, Some(200), false, true)
        ]
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn limited_rules_fire_n_times_and_seeds_repeat() {
    let (sim, api) = start(config(
        fixtures(Duration::ZERO),
        faults("throttle@DescribeDtsJobDetail=1#2"),
    ))
    .await;
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..4 {
            out.push(api.call("DescribeDtsJobDetail", JOB).await.status);
        }
        out
    };
    assert_eq!(statuses, [400, 400, 200, 200]);
    sim.shutdown().await.unwrap();

    async fn outcomes(seed: u64) -> Vec<u16> {
        let mut c = config(fixtures(Duration::ZERO), faults("error=0.5"));
        c.seed = seed;
        let (sim, api) = start(c).await;
        let mut out = Vec::new();
        for _ in 0..32 {
            out.push(api.call("GetDISyncInstanceInfo", NODE).await.status);
        }
        sim.shutdown().await.unwrap();
        out
    }
    let first = outcomes(42).await;
    assert_eq!(first, outcomes(42).await, "same seed, same faults");
    assert_ne!(first, outcomes(43).await, "another seed, other faults");
    let errors = first.iter().filter(|s| **s == 500).count();
    assert!((4..=28).contains(&errors), "{errors} of 32 at share 0.5");
}

// ---- the QPS limit -----------------------------------------------------------------------

#[tokio::test]
async fn qps_limit_throttles_one_product_and_says_when_to_retry() {
    let (sim, api) = start(config(fixtures(Duration::ZERO), faults("qps=dts:3"))).await;
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push(api.call("DescribeDtsJobDetail", JOB).await);
    }
    let ok = answers.iter().filter(|a| a.status == 200).count();
    assert!((3..=4).contains(&ok), "{ok} of 10 passed a 3/s limit");
    assert!(answers[..3].iter().all(|a| a.status == 200));
    let throttled = answers.last().unwrap();
    assert_gateway_error(throttled, 400, "Throttling.User");
    let retry_after: u64 = throttled.headers["x-acs-retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=334).contains(&retry_after), "{retry_after} ms");
    // DataWorks has no limit here.
    for _ in 0..8 {
        assert_eq!(api.call("GetDISyncInstanceInfo", NODE).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(retry_after + 20)).await;
    assert_eq!(
        api.call("DescribeDtsJobDetail", JOB).await.status,
        200,
        "a token came back"
    );
    let qps = sim
        .calls()
        .iter()
        .filter(|c| c.faults == [FaultKind::Qps])
        .count();
    assert_eq!(qps, 10 - ok);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn dataworks_qps_throttling_is_a_429() {
    let (sim, api) = start(config(fixtures(Duration::ZERO), faults("qps=dataworks:1"))).await;
    assert_eq!(api.call("GetDISyncInstanceInfo", NODE).await.status, 200);
    assert_gateway_error(
        &api.call("GetDISyncInstanceInfo", NODE).await,
        429,
        "Throttling.User",
    );
    assert_eq!(api.call("DescribeDtsJobDetail", JOB).await.status, 200);
    sim.shutdown().await.unwrap();
}

// ---- the call log ------------------------------------------------------------------------

#[tokio::test]
async fn call_log_file_has_one_redacted_json_line_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.jsonl");
    let mut c = config(
        fixtures(Duration::ZERO),
        faults("applied_drop@StopDtsJob=1"),
    );
    c.log_path = Some(path.clone());
    let (sim, api) = start(c).await;

    let a = api
        .send(
            &NODE
                .iter()
                .fold(Req::new("StopDISyncInstance"), |r, (k, v)| r.q(k, v))
                .q("SecurityToken", "sts-token-value")
                .sign(),
        )
        .await;
    assert_eq!(a.status, 200);
    api.send(
        &Req::new("GetDIJob")
            .q("DIJobId", "11668")
            .sign_with("not-the-secret"),
    )
    .await;
    assert_dropped(
        api.try_send(&Req::new("StopDtsJob").q("DtsJobId", "j1").sign())
            .await,
    );
    let memory = sim.calls();
    sim.shutdown().await.unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    for secret in [SECRET, "sts-token-value", "\"testid\""] {
        assert!(
            !text.contains(secret),
            "`{secret}` leaked into the call log"
        );
    }
    let records: Vec<CallRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record"))
        .collect();
    assert_eq!(records.len(), 3);
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    type Summary<'a> = (&'a str, Outcome, Option<&'a str>, Option<u16>, bool);
    let summary: Vec<Summary<'_>> = records
        .iter()
        .map(|r| {
            (
                r.action.as_deref().unwrap(),
                r.outcome,
                r.code.as_deref(),
                r.http_status,
                r.changed,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("StopDISyncInstance", Outcome::Ok, None, Some(200), true),
            (
                "GetDIJob",
                Outcome::Error,
                Some("SignatureDoesNotMatch"),
                Some(400),
                false
            ),
            ("StopDtsJob", Outcome::AppliedThenDropped, None, None, true),
        ]
    );
    let first = &records[0];
    assert_eq!(first.param("FileId"), Some("100"));
    assert_eq!(first.param("Signature"), Some("<redacted>"));
    assert_eq!(first.param("AccessKeyId"), Some("<redacted>"));
    assert_eq!(first.product.as_deref(), Some("dataworks"));
    assert_eq!(first.version.as_deref(), Some(DATAWORKS_VERSION));
    // The in-memory log says the same.
    assert_eq!(records, memory);
}

// ---- `runbook sim` as a process ----------------------------------------------------------

/// A running `runbook sim` child, killed if a test fails midway.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn runbook_sim(args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.arg("sim")
        .args(args)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
        .env_remove("RUST_LOG");
    cmd
}

fn wait_with_timeout(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn runbook_sim_prints_its_address_answers_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = dir.path().join("fixtures.yaml");
    std::fs::write(
        &fixtures,
        "delays: { all: 0s }\ndi_nodes:\n  - { project_id: 10000, file_id: 100 }\n",
    )
    .unwrap();
    let log = dir.path().join("calls.jsonl");
    let mut child = Child(
        runbook_sim(&[
            "--listen",
            "127.0.0.1:0",
            "--fixtures",
            fixtures.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            "-v",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runbook starts"),
    );
    let mut stdout = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let url = first.trim().to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "first line: {first:?}"
    );

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let api = Api { base: url, http };
    assert_eq!(
        api.call("StopDISyncInstance", NODE).await.body["Data"]["Status"],
        "success"
    );
    assert_eq!(
        api.call("GetDISyncInstanceInfo", NODE).await.body["Data"]["Status"],
        "PAUSE"
    );
    assert_eq!(
        api.call(
            "GetDISyncInstanceInfo",
            &[
                ("ProjectId", "1"),
                ("FileId", "5"),
                ("TaskType", "DI_REALTIME")
            ]
        )
        .await
        .body["Success"],
        false,
        "no --auto-create"
    );

    let pid = child.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status =
        wait_with_timeout(&mut child.0, Duration::from_secs(5)).expect("it stops on SIGINT");
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("--endpoint dataworks=http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("POST StopDISyncInstance FileId=100 -> 200 ok (changed)"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 3);
}

#[test]
fn runbook_sim_refuses_bad_setups_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = dir.path().join("bad.yaml");
    std::fs::write(&fixtures, "dts_jobs:\n  - id: j1\n    status: Running\n").unwrap();
    let out = runbook_sim(&[
        "--listen",
        "127.0.0.1:0",
        "--fixtures",
        fixtures.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml:3:13: unknown DTS status `Running`"),
        "{stderr}"
    );

    let out = runbook_sim(&["--listen", "127.0.0.1:0"])
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"));

    let out = runbook_sim(&["--listen", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback only"));

    let out = runbook_sim(&["--faults", "drop=2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 0 and 1"));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["sim", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for must in [
        "--endpoint dataworks=http://127.0.0.1:9000",
        "di_nodes:",
        "applied_drop",
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
    ] {
        assert!(help.contains(must), "--help lacks {must}:\n{help}");
    }
    assert!(
        !help.contains(SECRET),
        "--help must not show the secret from the environment"
    );
}

#[tokio::test]
async fn generated_credentials_work_and_auto_create_is_on() {
    let (config, (id, secret)) = SimConfig::with_generated_credentials();
    assert!(config.auto_create);
    assert!(
        !format!("{config:?}").contains(&secret),
        "Debug hides the secret"
    );
    let sim = sim::spawn(config).await.unwrap();
    let api = Api::new(&sim);
    let mut req = Req::new("GetDIJob").q("DIJobId", "1").q("AccessKeyId", &id);
    req = req.sign_with(&secret);
    let a = api.send(&req).await;
    assert_eq!(
        (a.status, a.body["Data"]["JobStatus"].clone()),
        (200, json!("Running")),
        "{}",
        a.body
    );
    sim.shutdown().await.unwrap();
}
