//! The local simulator of the DataWorks (`2020-05-18`) and DTS (`2020-01-01`)
//! RPC APIs: a real HTTP server on loopback that checks signatures, keeps
//! resources with state machines, injects faults and logs every call. It is
//! what the tests run against and what `runbook sim` and `runbook run --sim`
//! start.
//!
//! ```text
//! TcpListener -> conn::SimListener -> axum -> rpc() -> gateway::process ─┬─ gateway errors
//!                                                                        ├─ faults (dice, QPS)
//!                                                                        └─ handlers (state machines)
//!                                              call log (memory, --log FILE, -v) <─┘
//! ```
//!
//! # Protocol
//!
//! One port serves both products: requests are routed by `(Version, Action)`
//! through the shared action catalogue, plus `SuspendDtsJob`, `StartDtsJob`
//! and `StartDISyncInstance`. Parameters come from the query string and an
//! `application/x-www-form-urlencoded` body, merged; `GET` and `POST` both
//! work. Both signatures are accepted (V1 HMAC-SHA1 in the query, V3
//! `ACS3-HMAC-SHA256` in headers) and recomputed with the client's own
//! signer: V1 over every parameter received except `Signature` (so the old
//! SDK's empty `SignatureType=` is signed too), V3 over exactly the headers
//! its `SignedHeaders` names. Gateway errors answer with an HTTP status
//! and `{RequestId, HostId, Code, Message, Recommend}`; every answer carries a
//! fresh upper-case UUID `RequestId` (also in the `x-acs-request-id` header).
//! The order of the checks is listed in `gateway.rs`.
//!
//! # Choices where the docs are silent
//!
//! Every choice the simulator makes where Alibaba's docs are silent (the
//! timestamp window, the order of checks, what stopping a stopped resource
//! does, how a terminated node answers, ...) is listed in the README,
//! section "Choices where Alibaba's docs are silent": one list, kept there.

mod calllog;
mod conn;
mod faults;
mod fixtures;
mod gateway;
mod handlers;
mod identity;
mod served;
mod state;
mod sts;
mod world;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

pub use calllog::{CallRecord, Outcome};
pub use conn::ConnLimits;
pub use faults::{FaultKind, FaultRule, FaultSpec, FaultSpecError};
pub use fixtures::{
    Delays, DiJobFixture, DiNodeFixture, DiSolutionFixture, DtsJobFixture, FixtureError, Fixtures,
};
pub use identity::{IdentityFixtures, RoleFixture, SIM_ACCOUNT, UserFixture};
pub use state::{ResourceKind, StatusError};
pub use world::{WorldError, WorldMark};

use conn::{Conn, Registry, SimListener};
use state::{Now, State};

/// Everything a simulator starts from.
#[derive(Clone)]
pub struct SimConfig {
    /// Accepted key pairs: `(AccessKeyId, AccessKeySecret)`.
    pub credentials: Vec<(String, String)>,
    /// Accepted temporary (STS) credentials: `(AccessKeyId,
    /// AccessKeySecret, SecurityToken)`. A call signed with one must carry
    /// its token (`SecurityToken` with V1, `x-acs-security-token` with V3).
    pub temporary_credentials: Vec<(String, String, String)>,
    /// Initial resources and transition delays.
    pub fixtures: Fixtures,
    /// Injected faults and QPS limits.
    pub faults: FaultSpec,
    /// Create unknown ids as running on first use.
    pub auto_create: bool,
    /// Seed of the fault dice.
    pub seed: u64,
    /// Append every call as a JSON line to this file.
    pub log_path: Option<PathBuf>,
    /// Print one line per call to stderr.
    pub echo: bool,
    /// Bounds on the connections it holds open.
    pub limits: ConnLimits,
    /// Compressed time: every transition delay is divided by it.
    pub time_scale: crate::run::TimeScale,
}

impl Default for SimConfig {
    /// No credentials (every call fails with `InvalidAccessKeyId.NotFound`),
    /// no resources, no faults, default delays.
    fn default() -> SimConfig {
        SimConfig {
            credentials: Vec::new(),
            temporary_credentials: Vec::new(),
            fixtures: Fixtures::default(),
            faults: FaultSpec::default(),
            auto_create: false,
            seed: 0,
            log_path: None,
            echo: false,
            limits: ConnLimits::default(),
            time_scale: crate::run::TimeScale::REAL,
        }
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<_> = self
            .credentials
            .iter()
            .map(|(id, _)| format!("{id}:***"))
            .chain(
                self.temporary_credentials
                    .iter()
                    .map(|(id, _, _)| format!("{id}:***:***")),
            )
            .collect();
        f.debug_struct("SimConfig")
            .field("credentials", &keys)
            .field("fixtures", &self.fixtures)
            .field("faults", &self.faults.to_string())
            .field("auto_create", &self.auto_create)
            .field("seed", &self.seed)
            .field("log_path", &self.log_path)
            .field("echo", &self.echo)
            .field("limits", &self.limits)
            .field("time_scale", &self.time_scale)
            .finish()
    }
}

impl SimConfig {
    /// The `run --sim` setup: one freshly generated key pair (returned too,
    /// for the client to sign with), `--auto-create`, default delays.
    pub fn with_generated_credentials() -> (SimConfig, (String, String)) {
        let id = format!(
            "SIM{}",
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .to_ascii_uppercase()
        );
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let config = SimConfig {
            credentials: vec![(id.clone(), secret.clone())],
            auto_create: true,
            ..SimConfig::default()
        };
        (config, (id, secret))
    }
}

/// What the request handlers share.
pub(crate) struct Shared {
    /// Keys, roles and metadata tokens: every signature check's one key
    /// lookup ([`gateway::credential`]) and STS.
    pub(crate) iam: Mutex<sts::Iam>,
    pub(crate) state: Mutex<State>,
    pub(crate) log: calllog::CallLog,
    /// Arrival counter of call records.
    pub(crate) seq: AtomicU64,
    /// Bounds on the connections served.
    pub(crate) limits: ConnLimits,
    /// The connections open now.
    pub(crate) connections: Arc<Registry>,
}

/// A simulator: its state, credentials and call log. Cheap to clone; every
/// clone is the same simulator.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator").finish_non_exhaustive()
    }
}

impl Simulator {
    /// Builds a simulator; fails when the fault spec is invalid or the log
    /// file cannot be opened.
    pub fn new(config: SimConfig) -> std::io::Result<Simulator> {
        config
            .faults
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let log = calllog::CallLog::new(config.log_path.as_deref(), config.echo)?;
        let mut fixtures = config.fixtures;
        fixtures.delays = fixtures.delays.scaled(config.time_scale);
        let iam = sts::Iam::new(
            config.credentials,
            config.temporary_credentials,
            std::mem::take(&mut fixtures.identities),
            config.auto_create,
            config.time_scale,
        );
        let state = State::new(
            &fixtures,
            &config.faults,
            config.seed,
            config.auto_create,
            gateway::TIMESTAMP_WINDOW * 2,
            Now::current(),
        );
        Ok(Simulator {
            shared: Arc::new(Shared {
                iam: Mutex::new(iam),
                state: Mutex::new(state),
                log,
                seq: AtomicU64::new(0),
                limits: config.limits,
                connections: Arc::new(Registry::default()),
            }),
        })
    }

    /// Every call received so far (the most recent 200,000), in arrival order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.shared.log.snapshot()
    }

    /// How many connections it holds open now.
    pub fn open_connections(&self) -> usize {
        self.shared.connections.len()
    }

    /// The status a status call would report for a resource now, or `None`
    /// when the simulator does not have it.
    pub fn resource_status(&self, kind: ResourceKind, id: &str) -> Option<String> {
        self.lock().status(kind, id, Now::current())
    }

    /// Puts a resource into `status` at once, creating it if needed: for
    /// tests that need a task to fail mid-run. Transient DI statuses move on
    /// (`KILLING` to `PAUSE`, `WAIT` to `RUN`) after their delays.
    pub fn set_status(
        &self,
        kind: ResourceKind,
        id: &str,
        status: &str,
    ) -> Result<(), StatusError> {
        self.lock().set_status(kind, id, status, Now::current())
    }

    /// The world (every resource, its status and the transitions under
    /// way), as JSON: what `run --sim` keeps with the run. `None` when no
    /// call changed it since the save that returned `since`; with it comes
    /// the mark to pass next time.
    pub fn save_world(&self, since: Option<WorldMark>) -> Option<(String, WorldMark)> {
        world::save_if_changed(&self.lock(), since.map(|m| m.0))
            .map(|(json, changes)| (json, WorldMark(changes)))
    }

    /// Replaces every resource with those of a world [`Simulator::save_world`]
    /// returned; transitions under way complete at their saved times.
    pub fn restore_world(&self, json: &str) -> Result<(), WorldError> {
        world::restore(&mut self.lock(), json)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Serves `sim` on `listener` until `shutdown` completes, then stops
/// accepting, lets calls in flight finish and returns.
pub async fn serve(
    listener: TcpListener,
    sim: Simulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = SimListener::new(
        listener,
        sim.shared.limits,
        Arc::clone(&sim.shared.connections),
    );
    let app = axum::Router::new().fallback(rpc).with_state(sim);
    axum::serve(listener, app.into_make_service_with_connect_info::<Conn>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Every request, whatever its path and method: the gateway decides.
async fn rpc(
    AxumState(sim): AxumState<Simulator>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _answering = conn.answering();
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    // Every header, name lower-case (as `http` keeps them); a value that is
    // not UTF-8 is read lossily, so it fails the signature check, not the server.
    let all: Vec<(&str, std::borrow::Cow<'_, str>)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), String::from_utf8_lossy(value.as_bytes())))
        .collect();
    let all: Vec<(&str, &str)> = all.iter().map(|(n, v)| (*n, v.as_ref())).collect();
    if sts::is_host_path(uri.path()) {
        return host_endpoint(&sim, &method, uri.path(), &headers);
    }
    let raw = gateway::RawRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        content_type: header(header::CONTENT_TYPE),
        host: header(header::HOST),
        headers: &all,
        body: &body,
    };
    // All the work (and the state lock) happens here, synchronously, before
    // any await: a slow or dropped answer never holds the lock.
    let processed = gateway::process(&sim.shared, &raw);
    if let Some(delay) = processed.delay {
        tokio::time::sleep(delay).await;
    }
    if processed.drop {
        conn.kill();
        // Never sent: the write of this response fails and hyper closes the connection.
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let reply = processed.reply;
    let status = StatusCode::from_u16(reply.http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&reply.body).unwrap_or_default();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    if let Ok(id) = HeaderValue::from_str(&processed.request_id) {
        headers.insert("x-acs-request-id", id);
    }
    if let Some(wait) = reply.retry_after
        && let Ok(ms) = HeaderValue::from_str(&wait.as_millis().max(1).to_string())
    {
        headers.insert("x-acs-retry-after", ms);
    }
    response
}

/// The ECS metadata service and the credentials URI (see `sts.rs`).
fn host_endpoint(sim: &Simulator, method: &Method, path: &str, headers: &HeaderMap) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let now = Now::current();
    let answer = {
        let mut iam = sim
            .shared
            .iam
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sts::host_endpoint(&mut iam, method.as_str(), path, &header, now.wall)
    };
    sim.shared.log.push(CallRecord {
        seq: sim
            .shared
            .seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1,
        time: now.wall,
        method: method.as_str().to_owned(),
        product: Some("host".to_owned()),
        version: None,
        action: Some(answer.action.to_owned()),
        signature: crate::cloud::signer::SignatureVersion::V1,
        params: std::collections::BTreeMap::from([("Path".to_owned(), path.to_owned())]),
        headers: std::collections::BTreeMap::new(),
        outcome: if answer.status == 200 {
            Outcome::Ok
        } else {
            Outcome::Error
        },
        code: (answer.status != 200).then(|| format!("Http.{}", answer.status)),
        message: None,
        http_status: Some(answer.status),
        request_id: uuid::Uuid::new_v4().to_string().to_ascii_uppercase(),
        changed: false,
        faults: Vec::new(),
        caller: None,
    });
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = if answer.json {
        "application/json;charset=utf-8"
    } else {
        "text/plain;charset=utf-8"
    };
    let mut response = (status, answer.body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Starts a simulator on a free loopback port (`127.0.0.1:0`) in the current
/// tokio runtime.
pub async fn spawn(config: SimConfig) -> std::io::Result<SimHandle> {
    spawn_on(TcpListener::bind("127.0.0.1:0").await?, config).await
}

/// Starts a simulator on an already bound listener.
pub async fn spawn_on(listener: TcpListener, config: SimConfig) -> std::io::Result<SimHandle> {
    let addr = listener.local_addr()?;
    let sim = Simulator::new(config)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, sim.clone(), async move {
        // Resolves on `shutdown()` or when the handle is dropped.
        let _ = stopped.await;
    }));
    Ok(SimHandle {
        addr,
        sim,
        stop,
        task,
    })
}

/// A running simulator. Dropping the handle stops it too (without waiting).
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    sim: Simulator,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`: the endpoint for both products.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The simulator itself (state, call log).
    pub fn simulator(&self) -> &Simulator {
        &self.sim
    }

    /// Every call received so far, in arrival order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.sim.calls()
    }

    /// The status a status call would report for a resource now.
    pub fn resource_status(&self, kind: ResourceKind, id: &str) -> Option<String> {
        self.sim.resource_status(kind, id)
    }

    /// Puts a resource into `status` at once (see [`Simulator::set_status`]).
    pub fn set_status(
        &self,
        kind: ResourceKind,
        id: &str,
        status: &str,
    ) -> Result<(), StatusError> {
        self.sim.set_status(kind, id, status)
    }

    /// Stops accepting, waits for calls in flight, and returns once the
    /// server has stopped.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}
