//! One function per action: what the service does with a request that has
//! passed the gateway (signature, timestamp, nonce, flow control, parameter
//! checks), and the answer in the product's own shape (the API reference and SDK models).
//!
//! Shapes:
//! - DataWorks: `{RequestId, Success, Data: {Status, Message}}`; a business
//!   failure is HTTP 200 with `Success: false`, `Data.Status: "fail"` and a
//!   `Data.Message` such as `fileId:[100] is invalid.` (the documented example).
//! - `StopDIJob` answers `{RequestId}` only, so its failures are HTTP errors.
//! - DTS: `{RequestId, HttpStatusCode, Success, ErrCode, ErrMessage,
//!   DynamicMessage, DynamicCode}`; a business failure is HTTP 200 with
//!   `Success: false`, `ErrMessage` holding `%s` and `DynamicMessage` the word
//!   that replaces it (the documented convention).
//! - Gateway errors (any product): HTTP status + `{RequestId, HostId, Code,
//!   Message, Recommend}`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::calllog::Outcome;
use super::fixtures::{DiJobFixture, DiNodeFixture, DiSolutionFixture, DtsJobFixture};
use super::state::{DTS_RUNNING, DiJob, DiNode, DiSolution, DtsJob, Machine, Now, State};
use crate::cloud::actions::{ActionSpec, DATAWORKS, DTS};

/// What the gateway and the service decided for one request.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) http: u16,
    pub(crate) body: Value,
    pub(crate) outcome: Outcome,
    pub(crate) code: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) changed: bool,
    /// `x-acs-retry-after` (milliseconds on the wire), for QPS throttling.
    pub(crate) retry_after: Option<Duration>,
}

impl Reply {
    fn ok(body: Value, changed: bool) -> Reply {
        Reply {
            http: 200,
            body,
            outcome: Outcome::Ok,
            code: None,
            message: None,
            changed,
            retry_after: None,
        }
    }
}

/// Per-request facts every answer needs.
pub(crate) struct Ctx<'a> {
    pub(crate) request_id: &'a str,
    /// `HostId` of gateway errors: the product's public host.
    pub(crate) host_id: &'a str,
    /// Product code for the `Recommend` link (`dataworks`, `dts`), if known.
    pub(crate) product: Option<&'static str>,
    pub(crate) now: Now,
}

/// A gateway error: HTTP status and `{RequestId, HostId, Code, Message, Recommend}`.
pub(crate) fn gateway_error(ctx: &Ctx<'_>, http: u16, code: &str, message: String) -> Reply {
    let product = match ctx.product {
        Some(DATAWORKS) => "dataworks-public",
        Some(DTS) => "Dts",
        _ => "",
    };
    let body = json!({
        "RequestId": ctx.request_id,
        "HostId": ctx.host_id,
        "Code": code,
        "Message": message,
        "Recommend": format!(
            "https://api.alibabacloud.com/troubleshoot?intl_lang=EN_US&q={code}&product={product}&requestId={}",
            ctx.request_id
        ),
    });
    Reply {
        http,
        body,
        outcome: Outcome::Error,
        code: Some(code.to_owned()),
        message: Some(message),
        changed: false,
        retry_after: None,
    }
}

type Params = BTreeMap<String, String>;

fn int(params: &Params, name: &str) -> i64 {
    // The gateway has already checked that integer parameters parse.
    params
        .get(name)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_default()
}

fn text<'p>(params: &'p Params, name: &str) -> Option<&'p str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// Runs an action that passed the gateway.
pub(crate) fn handle(
    state: &mut State,
    spec: &ActionSpec,
    params: &Params,
    ctx: &Ctx<'_>,
) -> Reply {
    match (spec.product, spec.action) {
        (DATAWORKS, "StopDISyncInstance") => di_stop(state, params, ctx),
        (DATAWORKS, "TerminateDISyncInstance") => di_terminate(state, params, ctx),
        (DATAWORKS, "StartDISyncInstance") => di_start(state, params, ctx),
        (DATAWORKS, "GetDISyncInstanceInfo") => di_info(state, params, ctx),
        (DATAWORKS, "StopDIJob") => di_job_stop(state, params, ctx),
        (DATAWORKS, "StartDIJob") => di_job_start(state, params, ctx),
        (DATAWORKS, "GetDIJob") => di_job_get(state, params, ctx),
        (DTS, "StopDtsJob") => dts_stop(state, params, ctx),
        (DTS, "SuspendDtsJob") => dts_suspend(state, params, ctx),
        (DTS, "StartDtsJob") => dts_start(state, params, ctx),
        (DTS, "DescribeDtsJobDetail") => dts_describe(state, params, ctx),
        // Every served action has an arm above (a test checks it); this is
        // what the cloud says for an API it routes but cannot run.
        _ => gateway_error(
            ctx,
            404,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.".to_owned(),
        ),
    }
}

// ---- DataWorks: DI real-time nodes -------------------------------------------------

fn di_ok(ctx: &Ctx<'_>, changed: bool) -> Reply {
    Reply::ok(
        json!({"RequestId": ctx.request_id, "Success": true, "Data": {"Status": "success", "Message": null}}),
        changed,
    )
}

fn di_fail(ctx: &Ctx<'_>, message: String) -> Reply {
    Reply {
        http: 200,
        body: json!({"RequestId": ctx.request_id, "Success": false, "Data": {"Status": "fail", "Message": message}}),
        outcome: Outcome::Failed,
        code: None,
        message: Some(message),
        changed: false,
        retry_after: None,
    }
}

/// The node a request names, created as running under `--auto-create`. A
/// node is found by `FileId` and must belong to the `ProjectId` given.
fn di_node<'s>(
    state: &'s mut State,
    params: &Params,
    ctx: &Ctx<'_>,
) -> Result<&'s mut DiNode, Box<Reply>> {
    let (project_id, file_id) = (int(params, "ProjectId"), int(params, "FileId"));
    if state.auto_create && !state.nodes.contains_key(&file_id) {
        let node = DiNode::new(
            &DiNodeFixture::running(project_id, file_id),
            &state.delays,
            ctx.now,
        );
        state.nodes.insert(file_id, node);
    }
    match state.nodes.get_mut(&file_id) {
        Some(node) if node.project_id == project_id => Ok(node),
        _ => Err(Box::new(di_fail(
            ctx,
            format!("fileId:[{file_id}] is invalid."),
        ))),
    }
}

fn di_stop(state: &mut State, params: &Params, ctx: &Ctx<'_>) -> Reply {
    let delay = state.delays.di_stop;
    let node = match di_node(state, params, ctx) {
        Ok(node) => node,
        Err(reply) => return *reply,
    };
    let file_id = node.file_id;
    let m = &mut node.machine;
    match m.status(ctx.now).to_owned().as_str() {
        "RUN" | "WAIT" => {
            m.go(ctx.now, "KILLING", "PAUSE", delay);
            di_ok(ctx, true)
        }
        // Already stopping, stopped: a no-op success, as a repeated stop should be.
        "KILLING" | "PAUSE" => di_ok(ctx, false),
        status => di_fail(
            ctx,
            format!("fileId:[{file_id}] is not deployed (status {status}) and cannot be stopped."),
        ),
    }
}

fn di_terminate(state: &mut State, params: &Params, ctx: &Ctx<'_>) -> Reply {
    let delay = state.delays.di_terminate;
    let node = match di_node(state, params, ctx) {
        Ok(node) => node,
        Err(reply) => return *reply,
    };
    let file_id = node.file_id;
    let m = &mut node.machine;
    let status = m.status(ctx.now).to_owned();
    let target = m.target(ctx.now).to_owned();
    match (status.as_str(), target.as_str()) {
        // The undeploy is already under way: accepted again, nothing changes.
        ("KILLING", "NORUN") => di_ok(ctx, false),
        ("RUN" | "WAIT" | "KILLING", _) => {
            m.go(ctx.now, "KILLING", "NORUN", delay);
            di_ok(ctx, true)
        }
        // Nothing is running, so there is nothing to kill: offline at once.
        ("PAUSE", _) => {
            m.set("NORUN", ctx.now);
            di_ok(ctx, true)
        }
        _ => di_fail(
            ctx,
            format!(
                "fileId:[{file_id}] is already offline (status NORUN); terminate cannot be repeated."
            ),
        ),
    }
}

fn di_start(state: &mut State, params: &Params, ctx: &Ctx<'_>) -> Reply {
    if text(params, "TaskType") == Some("DI_SOLUTION") {
        return match di_solution(state, params, ctx) {
            Ok(solution) => {
                let changed = solution.machine.status(ctx.now) != "run";
                solution.machine.set("run", ctx.now);
                di_ok(ctx, changed)
            }
            Err(reply) => *reply,
        };
    }
    let delay = state.delays.di_start;
    let node = match di_node(state, params, ctx) {
        Ok(node) => node,
        Err(reply) => return *reply,
    };
    let file_id = node.file_id;
    let m = &mut node.machine;
    match m.status(ctx.now).to_owned().as_str() {
        "PAUSE" => {
            m.go(ctx.now, "WAIT", "RUN", delay);
            di_ok(ctx, true)
        }
        "RUN" | "WAIT" => di_ok(ctx, false),
        "KILLING" => di_fail(
            ctx,
            format!("fileId:[{file_id}] is being stopped; try again when it is PAUSE."),
        ),
        status => di_fail(
            ctx,
            format!("fileId:[{file_id}] is not deployed (status {status}) and cannot be started."),
        ),
    }
}

fn di_solution<'s>(
    state: &'s mut State,
    params: &Params,
    ctx: &Ctx<'_>,
) -> Result<&'s mut DiSolution, Box<Reply>> {
    let (project_id, file_id) = (int(params, "ProjectId"), int(params, "FileId"));
    if state.auto_create && !state.solutions.contains_key(&file_id) {
        let fixture = DiSolutionFixture {
            project_id,
            file_id,
            status: "run".to_owned(),
        };
        state
            .solutions
            .insert(file_id, DiSolution::new(&fixture, ctx.now));
    }
    match state.solutions.get_mut(&file_id) {
        Some(solution) if solution.project_id == project_id => Ok(solution),
        _ => Err(Box::new(di_fail(
            ctx,
            format!("fileId:[{file_id}] is invalid."),
        ))),
    }
}

fn di_info(state: &mut State, params: &Params, ctx: &Ctx<'_>) -> Reply {
    if text(params, "TaskType") == Some("DI_SOLUTION") {
        return match di_solution(state, params, ctx) {
            Ok(solution) => {
                let status = solution.machine.status(ctx.now).to_owned();
                let step = if status == "fail" { "fail" } else { "success" };
                Reply::ok(
                    json!({
                        "RequestId": ctx.request_id,
                        "Success": true,
                        "Data": {
                            "Status": if status == "fail" { "fail" } else { "success" },
                            "Message": null,
                            "Name": null,
                            "SolutionInfo": {
                                "Status": status,
                                "Id": solution.file_id,
                                "CreatorName": "runbook-sim",
                                "StepDetail": [{"Status": step, "StepId": 1, "StepName": "sync", "Info": ""}],
                            },
                        },
                    }),
                    false,
                )
            }
            Err(reply) => *reply,
        };
    }
    match di_node(state, params, ctx) {
        Ok(node) => {
            let status = node.machine.status(ctx.now).to_owned();
            Reply::ok(
                json!({
                    "RequestId": ctx.request_id,
                    "Success": true,
                    "Data": {"Status": status, "Message": null, "Name": node.name, "SolutionInfo": null},
                }),
                false,
            )
        }
        Err(reply) => *reply,
    }
}

// ---- DataWorks: new-style DI jobs ----------------------------------------------------

fn di_job<'s>(
    state: &'s mut State,
    params: &Params,
    ctx: &Ctx<'_>,
) -> Result<&'s mut DiJob, Box<Reply>> {
    let id = int(params, "DIJobId");
    if state.auto_create && !state.di_jobs.contains_key(&id) {
        let fixture = DiJobFixture {
            id,
            project_id: None,
            name: None,
            status: "Running".to_owned(),
        };
        state.di_jobs.insert(id, DiJob::new(&fixture, ctx.now));
    }
    state.di_jobs.get_mut(&id).ok_or_else(|| {
        Box::new(gateway_error(
            ctx,
            400,
            "Param.Invalid",
            format!("The parameter is invalid: DIJobId {id} does not exist."),
        ))
    })
}

fn di_job_stop(state: &mut State, params: &Params, ctx: &Ctx<'_>) -> Reply {
    let delay = state.delays.di_job_stop;
    let job = match di_job(state, params, ctx) {
        Ok(job) => job,
        Err(reply) => return *reply,
    };
    let changed = job.machine.target(ctx.now) == "Running";
    if changed {
        job.machine.go(ctx.now, "Running", "Stopped", delay);
    }
    // Stopping a job that is not running is a no-op success.
    Reply::ok(json!({"RequestId": ctx.request_id}), changed)
}

fn di_job_start(state: &mut State, params: &Params, ctx: &Ctx<'_>) -> Reply {
    let delay = state.delays.di_job_start;
    let job = match di_job(state, params, ctx) {
        Ok(job) => job,
        Err(reply) => return *reply,
    };
    let target = job.machine.target(ctx.now).to_owned();
    if target == "Running" {
        // Starting a running job is a no-op success.
        return Reply::ok(json!({"RequestId": ctx.request_id}), false);
    }
    // The job reports its old status until the start shows, as a stop does.
    job.machine.go(ctx.now, &target, "Running", delay);
    Reply::ok(json!({"RequestId": ctx.request_id}), true)
}

fn di_job_get(state: &mut State, params: &Params, ctx: &Ctx<'_>) -> Reply {
    let job = match di_job(state, params, ctx) {
        Ok(job) => job,
        Err(reply) => return *reply,
    };
    let status = job.machine.status(ctx.now).to_owned();
    Reply::ok(
        json!({
            "RequestId": ctx.request_id,
            "Success": true,
            "Data": {
                "DIJobId": job.id,
                "ProjectId": job.project_id,
                "JobName": job.name,
                "JobStatus": status,
                "Description": "",
                "MigrationType": "FullAndRealtimeIncremental",
                "SourceDataSourceType": "MySQL",
                "DestinationDataSourceType": "Hologres",
            },
        }),
        false,
    )
}

// ---- DTS -------------------------------------------------------------------------------

fn dts_ok(ctx: &Ctx<'_>, changed: bool) -> Reply {
    Reply::ok(
        json!({
            "RequestId": ctx.request_id,
            "HttpStatusCode": 200,
            "Success": true,
            "ErrCode": "",
            "ErrMessage": "",
            "DynamicMessage": "",
            "DynamicCode": "",
        }),
        changed,
    )
}

/// A DTS business failure: HTTP 200, `Success: false`; `status` is the
/// `HttpStatusCode` the body reports.
fn dts_fail(ctx: &Ctx<'_>, status: u16, code: &str, template: &str, dynamic: &str) -> Reply {
    let message = template.replace("%s", dynamic);
    Reply {
        http: 200,
        body: json!({
            "RequestId": ctx.request_id,
            "HttpStatusCode": status,
            "Success": false,
            "ErrCode": code,
            "ErrMessage": template,
            "DynamicMessage": dynamic,
            "DynamicCode": "",
        }),
        outcome: Outcome::Failed,
        code: Some(code.to_owned()),
        message: Some(message),
        changed: false,
        retry_after: None,
    }
}

const INVALID_INPUT: &str = "The Value of Input Parameter %s is not valid.";

/// The task and direction a request names. `instance_param` is
/// `DtsInstanceId`, or `DtsInstanceID` for `DescribeDtsJobDetail`.
fn dts_machine<'s>(
    state: &'s mut State,
    params: &Params,
    ctx: &Ctx<'_>,
    instance_param: &str,
) -> Result<(&'s mut DtsJob, bool), Box<Reply>> {
    let id = text(params, "DtsJobId").unwrap_or_default();
    let instance = text(params, instance_param);
    let reverse = text(params, "SynchronizationDirection") == Some("Reverse");
    let auto_create = state.auto_create;
    if auto_create && !state.dts.contains_key(id) {
        let fixture = DtsJobFixture {
            instance_id: instance.map(str::to_owned),
            ..DtsJobFixture::running(id)
        };
        state
            .dts
            .insert(id.to_owned(), DtsJob::new(&fixture, ctx.now));
    }
    let Some(job) = state.dts.get_mut(id) else {
        return Err(Box::new(dts_fail(
            ctx,
            404,
            "InvalidParameter",
            INVALID_INPUT,
            "DtsJobId",
        )));
    };
    if instance.is_some_and(|i| i != job.instance_id) {
        return Err(Box::new(dts_fail(
            ctx,
            400,
            "InvalidParameter",
            INVALID_INPUT,
            instance_param,
        )));
    }
    if reverse && job.reverse.is_none() {
        if !auto_create {
            return Err(Box::new(dts_fail(
                ctx,
                400,
                "InvalidParameter",
                INVALID_INPUT,
                "SynchronizationDirection",
            )));
        }
        job.reverse = Some(Machine::new("Synchronizing", ctx.now));
    }
    Ok((job, reverse))
}

fn dts_stop(state: &mut State, params: &Params, ctx: &Ctx<'_>) -> Reply {
    let delay = state.delays.dts_stop;
    let (job, reverse) = match dts_machine(state, params, ctx, "DtsInstanceId") {
        Ok(found) => found,
        Err(reply) => return *reply,
    };
    let Some(m) = job.direction(reverse) else {
        return dts_ok(ctx, false);
    };
    if m.target(ctx.now) == "Finished" {
        // Ending a task that has ended (or is ending) is a no-op success.
        return dts_ok(ctx, false);
    }
    let shown = m.status(ctx.now).to_owned();
    m.go(ctx.now, &shown, "Finished", delay);
    dts_ok(ctx, true)
}

fn dts_suspend(state: &mut State, params: &Params, ctx: &Ctx<'_>) -> Reply {
    let delay = state.delays.dts_suspend;
    let (job, reverse) = match dts_machine(state, params, ctx, "DtsInstanceId") {
        Ok(found) => found,
        Err(reply) => return *reply,
    };
    let Some(m) = job.direction(reverse) else {
        return dts_ok(ctx, false);
    };
    let target = m.target(ctx.now).to_owned();
    if target == "Suspending" {
        return dts_ok(ctx, false);
    }
    if !DTS_RUNNING.contains(&target.as_str()) {
        return dts_fail(
            ctx,
            403,
            "OperationDenied.JobStatus",
            "The task is %s and cannot be suspended.",
            &target,
        );
    }
    let shown = m.status(ctx.now).to_owned();
    m.go(ctx.now, &shown, "Suspending", delay);
    dts_ok(ctx, true)
}

fn dts_start(state: &mut State, params: &Params, ctx: &Ctx<'_>) -> Reply {
    let delay = state.delays.dts_start;
    let (job, reverse) = match dts_machine(state, params, ctx, "DtsInstanceId") {
        Ok(found) => found,
        Err(reply) => return *reply,
    };
    let Some(m) = job.direction(reverse) else {
        return dts_ok(ctx, false);
    };
    let target = m.target(ctx.now).to_owned();
    if DTS_RUNNING.contains(&target.as_str()) {
        return dts_ok(ctx, false);
    }
    if !matches!(
        target.as_str(),
        "Suspending" | "NotStarted" | "PreCheckPass"
    ) {
        return dts_fail(
            ctx,
            403,
            "OperationDenied.JobStatus",
            "The task is %s and cannot be started.",
            &target,
        );
    }
    let shown = m.status(ctx.now).to_owned();
    m.go(ctx.now, &shown, "Synchronizing", delay);
    dts_ok(ctx, true)
}

/// The sub-status DTS reports under `DataSynchronizationStatus.Status`.
fn sync_sub_status(status: &str) -> &'static str {
    match status {
        "Synchronizing" | "Migrating" | "Retrying" | "Suspending" => "Migrating",
        "Finished" => "Finished",
        "Failed" | "MigrationFailed" | "InitializeFailed" | "PrecheckFailed" => "Failed",
        _ => "NotStarted",
    }
}

fn dts_describe(state: &mut State, params: &Params, ctx: &Ctx<'_>) -> Reply {
    let (job, reverse) = match dts_machine(state, params, ctx, "DtsInstanceID") {
        Ok(found) => found,
        Err(reply) => return *reply,
    };
    let (id, instance_id, name, created) = (
        job.id.clone(),
        job.instance_id.clone(),
        job.name.clone(),
        job.created,
    );
    let error_message = job.error_message.clone();
    let Some(m) = job.direction(reverse) else {
        return dts_ok(ctx, false);
    };
    let status = m.status(ctx.now).to_owned();
    let since = m.since;
    let failed = sync_sub_status(&status) == "Failed";
    let direction = if reverse { "Reverse" } else { "Forward" };
    let mut body = json!({
        "RequestId": ctx.request_id,
        "HttpStatusCode": 200,
        "Success": true,
        "Code": "200",
        "ErrCode": "",
        "ErrMessage": "",
        "DynamicMessage": "",
        "DtsJobId": id,
        "DtsInstanceID": instance_id,
        "DtsJobName": name,
        "DtsJobDirection": direction,
        "SynchronizationDirection": direction,
        "JobType": "SYNC",
        "Status": status,
        "ErrorMessage": if failed { error_message.as_str() } else { "" },
        "Delay": 0,
        "Checkpoint": ctx.now.wall.as_second().to_string(),
        "CreateTime": created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "LastUpdateTime": since.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "DataSynchronizationStatus": {
            "Status": sync_sub_status(&status),
            "Percent": "100",
            "Progress": "0",
            "ErrorMessage": if failed { error_message.as_str() } else { "" },
            "NeedUpgrade": false,
        },
    });
    if status == "Finished"
        && let Some(map) = body.as_object_mut()
    {
        map.insert(
            "FinishTime".to_owned(),
            Value::from(since.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        );
    }
    Reply::ok(body, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::faults::FaultSpec;
    use crate::sim::fixtures::{Delays, Fixtures};
    use crate::sim::served;

    fn state(auto_create: bool) -> State {
        let fixtures = Fixtures {
            delays: Delays::uniform(Duration::ZERO),
            ..Fixtures::default()
        };
        State::new(
            &fixtures,
            &FaultSpec::default(),
            0,
            auto_create,
            Duration::from_secs(60),
            Now::current(),
        )
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_served_action_has_a_handler() {
        let mut s = state(true);
        let ctx = Ctx {
            request_id: "R",
            host_id: "h",
            product: None,
            now: Now::current(),
        };
        let p = params(&[
            ("ProjectId", "1"),
            ("FileId", "2"),
            ("TaskType", "DI_REALTIME"),
            ("DIJobId", "3"),
            ("DtsJobId", "j"),
        ]);
        for spec in served::served() {
            let reply = handle(&mut s, spec, &p, &ctx);
            assert_ne!(
                reply.code.as_deref(),
                Some("InvalidAction.NotFound"),
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn unknown_resources_answer_in_each_products_shape() {
        let mut s = state(false);
        let ctx = Ctx {
            request_id: "R",
            host_id: "h",
            product: Some(DTS),
            now: Now::current(),
        };
        let r = di_info(
            &mut s,
            &params(&[
                ("ProjectId", "1"),
                ("FileId", "100"),
                ("TaskType", "DI_REALTIME"),
            ]),
            &ctx,
        );
        assert_eq!(r.http, 200);
        assert_eq!(r.body["Data"]["Message"], "fileId:[100] is invalid.");
        let r = dts_describe(&mut s, &params(&[("DtsJobId", "nope")]), &ctx);
        assert_eq!(
            (
                r.http,
                r.body["Success"].clone(),
                r.body["DynamicMessage"].clone()
            ),
            (200, json!(false), json!("DtsJobId"))
        );
        let r = di_job_get(&mut s, &params(&[("DIJobId", "5")]), &ctx);
        assert_eq!((r.http, r.code.as_deref()), (400, Some("Param.Invalid")));
        assert!(
            r.body["Recommend"]
                .as_str()
                .unwrap()
                .contains("product=Dts")
        );
    }
}
