//! One unit of work: a step, or one item of a fan-out step. Calls are retried
//! by policy and reconciled when their outcome is unknown; waits poll until
//! their condition holds, fails, or the deadline passes.

mod precheck;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::changed;
use super::retry::{Backoff, READ_LIMIT};
use super::{AttemptKind, JournalError, RunEvent, Shared, TimeScale};
use crate::cloud::{self, ActionRequest, ApiError};
use crate::plan::{CallPlan, Condition, PlannedStep, WaitPlan, render};

/// When a unit must be done by: the end of its step's `timeout`, which
/// covers every attempt and item, already in compressed time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    /// The step's `timeout`, for messages.
    pub(crate) timeout: Duration,
}

/// Why a unit did not succeed.
#[derive(Debug)]
pub(crate) enum UnitError {
    /// It failed; the text says what, where and what to do.
    Failed(String),
    /// The run was cancelled before it finished.
    Cancelled,
    /// The journal could not record it: nothing more may be sent.
    Journal(JournalError),
}

impl From<JournalError> for UnitError {
    fn from(e: JournalError) -> UnitError {
        UnitError::Journal(e)
    }
}

/// What the status call said about a mutating call whose outcome was unknown.
enum Settled {
    /// It took effect: do not send it again. Holds the status response.
    TookEffect(Value),
    /// It did not take effect: safe to send.
    NotApplied,
    /// The status call failed too.
    Unknown(String),
}

/// A unit being run.
pub(crate) struct Unit<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) step: &'a PlannedStep,
    /// Item index (0 without fan-out).
    pub(crate) item: usize,
    /// Whether the step fans out (events then carry the index).
    pub(crate) fan_out: bool,
    /// Render context: params and the outputs the step references.
    pub(crate) ctx: &'a Value,
    /// The fan-out item, bound as `item` (not copied into `ctx`).
    pub(crate) item_value: Option<&'a Value>,
    /// Seed for this unit's jitter.
    pub(crate) seed: u64,
    /// The step's cancellation (Ctrl-C, run or step timeout).
    pub(crate) cancel: &'a CancellationToken,
    /// The step's deadline, when it has a `timeout` (the scheduler cancels
    /// the step then).
    pub(crate) deadline: Option<Deadline>,
}

impl Unit<'_> {
    fn item_label(&self) -> Option<super::ItemRef> {
        self.item_value
            .filter(|_| self.fan_out)
            .map(|v| super::ItemRef::new(self.item, v))
    }

    fn run_id(&self) -> &str {
        &self.shared.options.run_id
    }

    fn scale(&self) -> TimeScale {
        self.shared.options.time_scale
    }

    async fn sleep(&self, d: Duration) -> Result<(), UnitError> {
        tokio::select! {
            () = tokio::time::sleep(d) => Ok(()),
            () = self.cancel.cancelled() => Err(UnitError::Cancelled),
        }
    }

    fn render_request(&self, call: &CallPlan) -> Result<ActionRequest, UnitError> {
        let mut scope = render::Scope::of(self.ctx);
        if let Some(item) = self.item_value {
            scope = scope.with_item(item);
        }
        let params = render::render_params_in(&call.with, scope).map_err(|e| {
            UnitError::Failed(format!(
                "cannot render the parameters of {}: {e}",
                call.action
            ))
        })?;
        let mut req = crate::plan::request_for(call, &self.step.region, params);
        req.role_arn.clone_from(&self.step.role_arn);
        Ok(req)
    }

    /// Sends one attempt, journaling it (durably first when it mutates).
    async fn send(
        &self,
        req: &ActionRequest,
        kind: AttemptKind,
        attempt: u32,
    ) -> Result<Result<cloud::ApiResponse, ApiError>, UnitError> {
        // Waiting for the rate limit is not sending: cancellation wins.
        tokio::select! {
            () = self.shared.limits.acquire(&req.product) => {}
            () = self.cancel.cancelled() => return Err(UnitError::Cancelled),
        }
        // No change once the window has closed: not a first attempt, not a
        // retry, not a compensation's call. The unit stays `running` in the
        // journal, and a resume (re-checking what may have been applied)
        // goes on in the next opening.
        if kind == AttemptKind::Call
            && req.risk.mutates()
            && self.shared.window_closed.is_cancelled()
        {
            return Err(UnitError::Cancelled);
        }
        // No call at all (not even for credentials) while the journal's
        // database cannot be reached: the writer is reconnecting.
        tokio::select! {
            r = self.shared.journal.reachable() => r?,
            () = self.cancel.cancelled() => return Err(UnitError::Cancelled),
        }
        // The resource's lock before the first change to it (held
        // already when known from params): held by another run, nothing
        // is sent and the unit fails, resumable.
        if kind == AttemptKind::Call
            && req.risk.mutates()
            && let Some(locks) = self.shared.resource_locks.get()
        {
            let typed = matches!(&self.step.kind, crate::plan::StepKind::Call { call, .. }
                if cloud::actions::lookup(&call.action).is_some());
            match locks.ensure(self.step, req, typed).await {
                Ok(()) => {}
                Err(super::resources::LockRefusal::Held(holder)) => {
                    return Err(UnitError::Failed(format!(
                        "{holder}; nothing was sent to it. Resume this run once that run has ended (or was abandoned)"
                    )));
                }
                Err(super::resources::LockRefusal::Journal(e)) => {
                    return Err(UnitError::Journal(e));
                }
            }
        }
        // Credentials first: when none can be had, the run stops before
        // this attempt is journaled or sent.
        let identity = match self.shared.api.prepare(req).await {
            Ok(identity) => identity,
            Err(why) => {
                self.shared.stop_for_credentials(why);
                return Err(UnitError::Cancelled);
            }
        };
        // Time-ordered (a version-7 UUID), so the journal's index of keys
        // grows at its end and a commit dirties few of its pages; its random
        // part from the thread's generator (seeded from the OS), not a
        // system call per key.
        let millis = u64::try_from(super::journal::now_ms()).unwrap_or_default();
        let key = uuid::Builder::from_unix_timestamp_millis(millis, &rand::random())
            .into_uuid()
            .simple()
            .to_string();
        let journaled = ActionRequest {
            identity,
            ..req.clone()
        };
        let request_json = serde_json::to_string(&journaled).unwrap_or_default();
        let durable = kind == AttemptKind::Call && req.risk.mutates();
        self.shared
            .journal
            .attempt_intent(
                &key,
                self.run_id(),
                self.step.id.as_str(),
                self.item,
                attempt,
                kind,
                &req.action,
                req.risk,
                request_json,
                durable,
            )
            .await?;
        if kind == AttemptKind::Call {
            self.shared.emit(RunEvent::CallSent {
                step: self.step.id.0.clone(),
                item: self.item_label(),
                attempt,
                action: req.action.clone(),
            });
        }
        let result = self.shared.api.call(req).await;
        match &result {
            Ok(resp) => self.shared.journal.attempt_ok(
                &key,
                resp.request_id.as_deref(),
                resp.http_status,
                &resp.body,
            ),
            Err(e) => self.shared.journal.attempt_failed(&key, e),
        }
        Ok(result)
    }

    fn attempt_failed(
        &self,
        req: &ActionRequest,
        attempt: u32,
        e: &ApiError,
        next: Option<Duration>,
    ) {
        self.shared.emit(RunEvent::AttemptFailed {
            step: self.step.id.0.clone(),
            item: self.item_label(),
            attempt,
            action: req.action.clone(),
            code: e.code.clone(),
            message: e.message.clone(),
            class: e.class,
            request_id: e.request_id.clone(),
            next_delay_ms: next.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        });
    }

    /// Runs a call with retries; returns the response body.
    pub(crate) async fn call(
        &self,
        call: &CallPlan,
        assert: Option<&Condition>,
    ) -> Result<Value, UnitError> {
        let req = self.render_request(call)?;
        let mut backoff = Backoff::seeded(&self.step.retry, self.seed);
        let key = (self.step.id.0.clone(), self.item);
        if let Some(answer) = self.shared.prior.answered.get(&key) {
            // Answered in an earlier attempt at this run: not sent again.
            if let Some(cond) = assert
                && !cond.eval(answer)
            {
                return Err(UnitError::Failed(format!(
                    "assert failed on the answer {} gave in an earlier attempt at this run: `{}` is {}, expected {}",
                    req.action,
                    cond.select,
                    cloud::select(answer, &cond.select)
                        .map_or_else(|| "missing".to_owned(), Value::to_string),
                    describe_matcher(cond)
                )));
            }
            return Ok(answer.clone());
        }
        let started = Instant::now();
        let mut reconcile_first = self.shared.prior.maybe_applied.contains(&key);
        // A status check an earlier attempt at this run began goes on.
        let mut checking_since = self.shared.prior.checking_since.get(&key).copied();
        // The status before the first send: for the changed set a
        // compensation reads, and for a compensation to wait out a transition.
        let mut prechecked = !(req.risk.mutates()
            && (self.step.compensation || changed::prechecked(&self.shared.plan, self.step)));
        let mut attempt = 0u32;
        loop {
            if self.cancel.is_cancelled() {
                return Err(UnitError::Cancelled);
            }
            if reconcile_first {
                match self.reconcile(&req, checking_since.take()).await? {
                    Settled::TookEffect(body) => return check_reconciled(&req, assert, body),
                    Settled::NotApplied => reconcile_first = false,
                    Settled::Unknown(why) => {
                        return Err(UnitError::Failed(format!(
                            "{} may have been applied and its status could not be read ({why}); not sending it again. Check the resource, then resume",
                            req.action
                        )));
                    }
                }
            }
            if self.cancel.is_cancelled() {
                return Err(UnitError::Cancelled);
            }
            if !prechecked {
                prechecked = true;
                self.precheck(&req).await?;
            }
            attempt += 1;
            let e = match self.send(&req, AttemptKind::Call, attempt).await? {
                Ok(resp) => {
                    if let Some(cond) = assert
                        && !cond.eval(&resp.body)
                    {
                        let got = cloud::select(&resp.body, &cond.select)
                            .map_or_else(|| "missing".to_owned(), Value::to_string);
                        return Err(UnitError::Failed(format!(
                            "assert failed: `{}` is {got}, expected {}{}",
                            cond.select,
                            describe_matcher(cond),
                            resp.request_id
                                .as_ref()
                                .map(|r| format!(" (RequestId {r})"))
                                .unwrap_or_default()
                        )));
                    }
                    return Ok(resp.body);
                }
                Err(e) => e,
            };
            if !e.retryable() {
                self.attempt_failed(&req, attempt, &e, None);
                return Err(UnitError::Failed(format!("{} failed: {e}", req.action)));
            }
            if e.outcome_unknown() && req.risk.mutates() {
                if req.spec().and_then(|s| s.effect.as_ref()).is_none() {
                    self.attempt_failed(&req, attempt, &e, None);
                    return Err(UnitError::Failed(format!(
                        "{} may have been applied ({e}) and it has no status call to check: not sending it again. Check the resource by hand",
                        req.action
                    )));
                }
                reconcile_first = true;
            }
            // A call refused by throttling was not processed: it does not
            // use up an attempt, and is sent again until the step's deadline.
            let next = if e.throttled() {
                Some(backoff.next_uncounted())
            } else {
                backoff.next()
            };
            let Some(mut delay) = next else {
                self.attempt_failed(&req, attempt, &e, None);
                if reconcile_first {
                    // The last attempt's outcome is unknown too: settle it
                    // before reporting, so the journal says what happened.
                    match self.reconcile(&req, None).await? {
                        Settled::TookEffect(body) => return check_reconciled(&req, assert, body),
                        Settled::NotApplied => {}
                        Settled::Unknown(why) => {
                            return Err(UnitError::Failed(format!(
                                "{} may have been applied ({e}) and its status could not be read ({why}); not sending it again. Check the resource, then resume",
                                req.action
                            )));
                        }
                    }
                }
                return Err(UnitError::Failed(format!(
                    "{} failed after {attempt} attempts: {e}",
                    req.action
                )));
            };
            delay = self.scale().apply(delay);
            if let Some(after) = e.retry_after {
                delay = delay.max(self.scale().apply(after));
            }
            if e.throttled() {
                let (limit, what) = self.limit(started);
                if Instant::now() + delay >= limit {
                    self.attempt_failed(&req, attempt, &e, None);
                    return Err(UnitError::Failed(format!(
                        "{} was still throttled after {attempt} attempts, and {what} comes before the next: {e}",
                        req.action
                    )));
                }
            }
            self.attempt_failed(&req, attempt, &e, Some(delay));
            self.sleep(delay).await?;
        }
    }

    /// When reads (and throttled calls) that began at `started` stop being
    /// retried, and how to name that moment: the step's deadline, or 15
    /// minutes when the step has no `timeout`.
    fn limit(&self, started: Instant) -> (Instant, String) {
        match self.deadline {
            Some(d) => (
                d.at,
                format!("the step's timeout of {}", humanize(d.timeout)),
            ),
            None => {
                let limit = self.scale().apply(READ_LIMIT);
                (
                    started + limit,
                    format!("the {} limit of a step without a timeout", humanize(limit)),
                )
            }
        }
    }

    /// Reads the status call of a mutating request to learn whether it took
    /// effect. The reads are reads: throttling, 5xx, timeouts and dropped
    /// connections are retried with back-off (at least `x-acs-retry-after`)
    /// until the step's deadline, however many there are; a successful read
    /// starts the back-off over. Only a permanent error, or the deadline,
    /// ends the check without an answer. `since`: when an earlier attempt at
    /// this run began this check (its settle window goes on from there).
    async fn reconcile(
        &self,
        req: &ActionRequest,
        since: Option<jiff::Timestamp>,
    ) -> Result<Settled, UnitError> {
        let Some(effect) = req.spec().and_then(|s| s.effect.as_ref()) else {
            return Ok(Settled::Unknown(format!(
                "{} has no status call",
                req.action
            )));
        };
        let Some(status_spec) = cloud::actions::lookup(effect.status_action) else {
            return Ok(Settled::Unknown(format!(
                "unknown status action {}",
                effect.status_action
            )));
        };
        let mut carried = BTreeMap::new();
        for (from, to) in effect.carry {
            if let Some(v) = req.query.get(*from).or_else(|| req.body.get(*from)) {
                carried.insert((*to).to_owned(), v.clone());
            }
        }
        let mut status_req = ActionRequest::typed(status_spec, &req.region, carried);
        status_req.role_arn.clone_from(&req.role_arn);
        let scale = self.scale();
        let mut backoff = Backoff::unbounded(&self.step.retry, self.seed.wrapping_add(1));
        let started = Instant::now();
        // How long the settle window had run before this process took over.
        let before = since
            .and_then(|t| Duration::try_from(jiff::Timestamp::now().duration_since(t)).ok())
            .unwrap_or_default();
        let window = || started.elapsed() + before;
        let settle = scale.apply(Duration::from_secs(effect.settle_secs));
        let interval = scale.apply(
            Duration::from_millis(self.step.retry.delay_millis)
                .clamp(Duration::from_millis(100), Duration::from_secs(2)),
        );
        let (deadline, limit) = self.limit(started);
        // What the last read gave: an error, or an undecided status.
        let mut last = String::from("no read was answered");
        let mut check = 0u32;
        loop {
            check += 1;
            let sent = match self.send(&status_req, AttemptKind::Reconcile, check).await {
                Err(UnitError::Cancelled) if Instant::now() >= deadline => {
                    return Ok(Settled::Unknown(format!("{limit} passed; {last}")));
                }
                other => other?,
            };
            let delay = match sent {
                Err(e) if !e.retryable() => {
                    self.attempt_failed(&status_req, check, &e, None);
                    return Ok(Settled::Unknown(format!(
                        "{} answered with a permanent error: {e}",
                        status_spec.action
                    )));
                }
                Err(e) => {
                    let mut delay = scale.apply(backoff.next().unwrap_or(interval));
                    if let Some(after) = e.retry_after {
                        delay = delay.max(scale.apply(after));
                    }
                    self.attempt_failed(&status_req, check, &e, Some(delay));
                    last = format!("the last read failed: {e}");
                    delay
                }
                Ok(resp) => {
                    backoff.reset();
                    let observed = cloud::select(&resp.body, effect.select)
                        .cloned()
                        .unwrap_or(Value::Null);
                    let is = |set: &[&str]| {
                        observed
                            .as_str()
                            .is_some_and(|s| set.iter().any(|d| d.eq_ignore_ascii_case(s)))
                    };
                    let took_effect = is(effect.done);
                    // A transitional status decides nothing, and an API whose
                    // effect shows late must show "not done" for a while
                    // before that counts.
                    let undecided = !took_effect && (is(effect.settling) || window() < settle);
                    if !undecided {
                        self.shared.emit(RunEvent::Reconciled {
                            step: self.step.id.0.clone(),
                            item: self.item_label(),
                            action: req.action.clone(),
                            observed,
                            took_effect,
                        });
                        if !took_effect {
                            return Ok(Settled::NotApplied);
                        }
                        let mut body = resp.body;
                        if let Value::Object(map) = &mut body {
                            map.insert(
                                "ReconciledBy".to_owned(),
                                Value::String(status_spec.action.to_owned()),
                            );
                        }
                        return Ok(Settled::TookEffect(body));
                    }
                    last = format!(
                        "{} still reported {observed} after {}{}",
                        status_spec.action,
                        humanize(window()),
                        resp.request_id
                            .map(|r| format!(" (RequestId {r})"))
                            .unwrap_or_default()
                    );
                    interval
                }
            };
            let now = Instant::now();
            if now >= deadline {
                return Ok(Settled::Unknown(format!("{limit} passed; {last}")));
            }
            match self.sleep(delay.min(deadline - now)).await {
                Err(UnitError::Cancelled) if Instant::now() >= deadline => {
                    return Ok(Settled::Unknown(format!("{limit} passed; {last}")));
                }
                other => other?,
            }
        }
    }

    /// Polls until `until` holds; fails at once on `fail_if`, or at the
    /// deadline (`wait.timeout`). A poll that fails for a transient reason
    /// (throttling, 5xx, a timeout, a dropped connection) is retried until
    /// that deadline, backing off beyond `every` while failures last and
    /// honouring `x-acs-retry-after`; a permanent error fails at once.
    pub(crate) async fn wait(&self, wait: &WaitPlan) -> Result<Value, UnitError> {
        let req = self.render_request(&wait.call)?;
        let scale = self.scale();
        let start = Instant::now();
        let timeout = scale.apply(Duration::from_millis(wait.timeout_millis));
        let deadline = start + timeout;
        let max_every = scale.apply(Duration::from_millis(
            wait.max_every_millis.max(wait.every_millis),
        ));
        let mut interval = scale.apply(Duration::from_millis(wait.every_millis));
        let mut backoff = Backoff::unbounded(&self.step.retry, self.seed);
        let mut last: Option<Value> = None;
        let mut poll = 0u32;
        loop {
            if self.cancel.is_cancelled() {
                return Err(UnitError::Cancelled);
            }
            poll += 1;
            let mut delay = interval;
            let mut last_error: Option<ApiError> = None;
            match self.send(&req, AttemptKind::Poll, poll).await? {
                Ok(resp) => {
                    backoff.reset();
                    let value = cloud::select(&resp.body, &wait.until.select)
                        .cloned()
                        .unwrap_or(Value::Null);
                    self.shared.emit(RunEvent::Polled {
                        step: self.step.id.0.clone(),
                        item: self.item_label(),
                        poll,
                        value: value.clone(),
                        elapsed_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                    });
                    if let Some(fail) = &wait.fail_if
                        && fail.eval(&resp.body)
                    {
                        let got = cloud::select(&resp.body, &fail.select)
                            .map_or_else(|| "missing".to_owned(), Value::to_string);
                        return Err(UnitError::Failed(format!(
                            "fail_if held: `{}` is {got} (fails on {}){}",
                            fail.select,
                            describe_matcher(fail),
                            resp.request_id
                                .as_ref()
                                .map(|r| format!(", RequestId {r}"))
                                .unwrap_or_default()
                        )));
                    }
                    if wait.until.eval(&resp.body) {
                        return Ok(resp.body);
                    }
                    last = Some(value);
                }
                Err(e) if !e.retryable() => {
                    self.attempt_failed(&req, poll, &e, None);
                    return Err(UnitError::Failed(format!(
                        "status call {} failed: {e}",
                        req.action
                    )));
                }
                Err(e) => {
                    if let Some(d) = backoff.next() {
                        delay = delay.max(scale.apply(d));
                    }
                    if let Some(after) = e.retry_after {
                        delay = delay.max(scale.apply(after));
                    }
                    self.attempt_failed(&req, poll, &e, Some(delay));
                    last_error = Some(e);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(UnitError::Failed(format!(
                    "timed out after {} waiting for `{}` to be {}; last value: {}{}",
                    humanize(timeout),
                    wait.until.select,
                    describe_matcher(&wait.until),
                    last.map_or_else(|| "none (no successful poll)".to_owned(), |v| v.to_string()),
                    last_error
                        .map(|e| format!("; the last poll failed: {e}"))
                        .unwrap_or_default()
                )));
            }
            self.sleep(delay.min(deadline - now)).await?;
            interval = interval.mul_f64(wait.backoff.max(1.0)).min(max_every);
        }
    }
}

/// The output of a call whose effect was confirmed through its status call.
/// Its own answer was lost, so an `assert` on it cannot be checked: the step
/// fails rather than pass an assert on a different answer.
fn check_reconciled(
    req: &ActionRequest,
    assert: Option<&Condition>,
    body: Value,
) -> Result<Value, UnitError> {
    if let Some(cond) = assert
        && !cond.eval(&body)
    {
        return Err(UnitError::Failed(format!(
            "{} took effect (confirmed through its status call), but its answer was lost, so `assert` on `{}` cannot be checked",
            req.action, cond.select
        )));
    }
    Ok(body)
}

/// `in [Finished]`, `not in [..]`, `= v`, `present`.
pub(crate) fn describe_matcher(cond: &Condition) -> String {
    use crate::plan::Matcher;
    let list = |vs: &[Value]| {
        vs.iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &cond.matcher {
        Matcher::In(vs) => format!("one of [{}]", list(vs)),
        Matcher::NotIn(vs) => format!("none of [{}]", list(vs)),
        Matcher::Equals(v) => format!("{v}"),
        Matcher::Exists(true) => "present".to_owned(),
        Matcher::Exists(false) => "absent".to_owned(),
    }
}

/// `1m 30s`, `250ms`.
pub(crate) fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}
