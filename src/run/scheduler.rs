//! The scheduler: the async driver of the step-state machine
//! ([`super::machine`], which decides which step starts, is blocked or is
//! compensated, and how the run ends). It spawns the steps the machine
//! starts, fans `for_each` steps out under their own limit, applies `when`
//! and step timeouts, and feeds back each step's end and the run's
//! cancellation or time limit.
//!
//! Concurrency invariants:
//! - Only the machine changes step states, and only this driver feeds it. Step tasks report back through the
//!   `JoinSet`; they share nothing mutable except the journal handle (a
//!   channel) and the rate-limit buckets (short std-mutex sections).
//! - A step's result is committed to the journal inside its task, before the
//!   task returns, so no dependent can start before its inputs are durable.
//! - On cancellation, units stop before their next attempt or poll; a call
//!   already sent is allowed to finish, so its outcome is known.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::changed;
use super::journal::ApprovalRow;
use super::machine::{Command, Event, Machine, RunEnd, StepSpec, Stop};
use super::unit::{Deadline, Unit, UnitError, humanize};
use super::waiting::{self, Gate, Park, Verdict, Waited};
use super::window::{Clock, RunWindow};
use super::{
    ApprovalDecision, Approver, EventSink, Journal, JournalError, Outcome, Prior, RateLimits,
    RunEvent, RunOptions, RunStatus, RunSummary, Shared, StepSummary, TimeScale,
};
use crate::cloud::CloudApi;
use crate::plan::{OnFailure, Plan, PlannedStep, StepKind};

/// Runs a plan.
pub struct Runner {
    shared: Arc<Shared>,
    /// The change window the run keeps to, and the clock it is read by.
    window: Option<(RunWindow, Arc<dyn Clock>)>,
}

/// What a step task reports back.
struct StepDone {
    index: usize,
    outcome: Outcome,
    output: Option<Value>,
    detail: Option<String>,
    items: Option<usize>,
    elapsed: Duration,
}

impl Runner {
    /// A runner for `plan`; `prior` carries what an earlier attempt achieved
    /// (empty for a new run).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        plan: Arc<Plan>,
        api: Arc<dyn CloudApi>,
        journal: Journal,
        sink: Arc<dyn EventSink>,
        limits: Arc<RateLimits>,
        approver: Arc<dyn Approver>,
        cancel: CancellationToken,
        options: RunOptions,
        prior: Prior,
    ) -> Runner {
        let drift = super::drift::DriftGuard::new(&plan, &prior);
        Runner {
            shared: Arc::new(Shared {
                drift,
                plan,
                api,
                journal,
                sink,
                limits,
                approver,
                cancel,
                options,
                prior,
                window_closed: CancellationToken::new(),
                window_reason: std::sync::OnceLock::new(),
                credentials_failure: std::sync::Mutex::new(None),
                resource_locks: std::sync::OnceLock::new(),
                elsewhere: super::waiting::Elsewhere::default(),
                gate_end: std::sync::OnceLock::new(),
            }),
            window: None,
        }
    }

    /// Leaves the gates this process cannot answer to others, as
    /// `elsewhere` says (see [`super::waiting`]).
    #[must_use]
    pub fn with_elsewhere(mut self, elsewhere: super::waiting::Elsewhere) -> Runner {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.elsewhere = elsewhere;
        }
        self
    }

    /// Keeps the run to `window`, read by `clock` (the binary passes
    /// [`super::SystemClock`]; tests pass their own). When it closes, no
    /// mutating call is sent any more and the run stops `window_closed`.
    #[must_use]
    pub fn with_window(mut self, window: RunWindow, clock: Arc<dyn Clock>) -> Runner {
        self.window = (!window.is_unbounded()).then_some((window, clock));
        self
    }

    /// Keeps the run's resource locks (taken before it starts, see
    /// [`super::resources`]): every unit takes the lock of a resource it
    /// learns at run time before its first mutating call there, and the
    /// locks are released when the run ends (not when it is parked).
    #[must_use]
    pub fn with_locks(self, locks: super::resources::ResourceLocks) -> Runner {
        let _ = self.shared.resource_locks.set(locks);
        self
    }

    /// Runs to the end (or until cancelled) and returns the summary. Errs
    /// only when the journal fails, in which case nothing more was sent.
    pub async fn execute(self, resumed: bool) -> Result<RunSummary, JournalError> {
        let started = Instant::now();
        let shared = self.shared;
        let run_id = shared.options.run_id.clone();
        shared
            .journal
            .set_run_status(&run_id, RunStatus::Running, false)
            .await?;
        shared.emit(RunEvent::RunStarted {
            run_id,
            name: shared.plan.name.clone(),
            digest: shared.plan.digest.clone(),
            steps: shared.plan.steps.len(),
            resumed,
        });
        let timed_out = watch_run_timeout(&shared);
        let watch = self
            .window
            .and_then(|(window, clock)| watch_window(&shared, window, clock));
        let mut driver = Driver::new(shared, timed_out);
        let end = driver.drive().await;
        if let Some(watch) = watch {
            watch.abort();
        }
        driver.finish(end?, started).await
    }
}

/// Watches the change window: when it closes, no mutating call is sent any
/// more (`window_closed` is cancelled, which the units check before every
/// send), the event is emitted, and the driver stops the run at the next
/// step end. Sleeps and approval gates stop at once; calls in flight, reads
/// and waits finish.
fn watch_window(
    shared: &Arc<Shared>,
    window: RunWindow,
    clock: Arc<dyn Clock>,
) -> Option<tokio::task::JoinHandle<()>> {
    // Closed already (an approval on a terminal took past the close): the
    // gate shuts before the first step is started, not a moment after.
    let now = clock.now();
    if matches!(window.state(now), crate::window::State::Closed { .. }) {
        window_closed(shared, &window, now);
        return None;
    }
    let shared = Arc::clone(shared);
    Some(tokio::spawn(async move {
        let at = tokio::select! {
            at = window.closed(clock.as_ref()) => at,
            () = shared.cancel.cancelled() => return,
        };
        window_closed(&shared, &window, at);
    }))
}

/// Shuts the gate: no mutating call from now on; says why and emits the event.
fn window_closed(shared: &Shared, window: &RunWindow, at: jiff::Timestamp) {
    let next = match window.state(at) {
        crate::window::State::Closed { next, .. } => next.map(|(opens, _)| opens),
        crate::window::State::Open { .. } => None,
    };
    let reason = format!(
        "the change window closed at {}{}",
        window.at(at),
        next.map(|t| format!("; it next opens {}: resume the run then", window.at(t)))
            .unwrap_or_default()
    );
    let _ = shared.window_reason.set(reason);
    shared.window_closed.cancel();
    shared.emit(RunEvent::WindowClosed {
        at: at.to_string(),
        window: window.describe(),
        next_opens: next.map(|t| t.to_string()),
    });
}

/// Cancels the run when its time limit passes; the flag tells that it did.
fn watch_run_timeout(shared: &Shared) -> Arc<AtomicBool> {
    let timed_out = Arc::new(AtomicBool::new(false));
    let scale = shared.options.time_scale;
    if let Some(limit) = shared.options.run_timeout.map(|t| scale.apply(t)) {
        let cancel = shared.cancel.clone();
        let flag = Arc::clone(&timed_out);
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(limit) => { flag.store(true, Ordering::SeqCst); cancel.cancel(); }
                () = cancel.cancelled() => {}
            }
        });
    }
    timed_out
}

/// Drives the [`Machine`]: feeds it what the step tasks and the cancellation
/// token report, and carries out its commands (spawning steps, journaling
/// blocked ones, running compensations). It decides nothing itself.
struct Driver {
    shared: Arc<Shared>,
    machine: Machine,
    tasks: JoinSet<Result<StepDone, JournalError>>,
    /// Outputs of the steps done so far, by id (the render context).
    outputs: HashMap<String, Value>,
    summaries: Vec<Option<StepSummary>>,
    timed_out: Arc<AtomicBool>,
}

impl Driver {
    /// A driver whose machine starts from what an earlier attempt at the run
    /// achieved: those steps are not repeated.
    fn new(shared: Arc<Shared>, timed_out: Arc<AtomicBool>) -> Driver {
        let plan = &shared.plan;
        let mut prior = vec![None; plan.steps.len()];
        let mut outputs = HashMap::new();
        let mut summaries = vec![None; plan.steps.len()];
        for (i, step) in plan.steps.iter().enumerate() {
            if let Some((outcome, output)) = shared.prior.done_steps.get(step.id.as_str()) {
                prior[i] = Some(*outcome);
                if let Some(out) = output {
                    outputs.insert(step.id.0.clone(), out.clone());
                }
                summaries[i] = Some(StepSummary {
                    from_journal: true,
                    ..summary(
                        step,
                        Some(*outcome),
                        Some("done in an earlier attempt (from the journal)".to_owned()),
                    )
                });
            }
        }
        let machine = Machine::new(
            StepSpec::from_plan(plan),
            shared.options.concurrency,
            &prior,
        );
        Driver {
            shared,
            machine,
            tasks: JoinSet::new(),
            outputs,
            summaries,
            timed_out,
        }
    }

    /// Feeds `event`, after any stop the run was asked for since the last
    /// event, and queues the commands.
    fn feed(&mut self, event: Event, queue: &mut VecDeque<Command>) {
        if let Some((status, reason)) = self.shared.gate_end.get() {
            queue.extend(self.machine.on(Event::Stop(Stop::End {
                status: *status,
                reason: reason.clone(),
            })));
        }
        if self.timed_out.load(Ordering::SeqCst) {
            let scale = self.shared.options.time_scale;
            let limit = self
                .shared
                .options
                .run_timeout
                .map(|t| humanize(scale.apply(t)))
                .unwrap_or_default();
            queue.extend(self.machine.on(Event::Stop(Stop::End {
                status: RunStatus::Failed,
                reason: format!("the run timed out after {limit}"),
            })));
        } else if self.shared.cancel.is_cancelled() {
            queue.extend(self.machine.on(Event::Stop(Stop::Cancelled)));
        }
        if self.shared.window_closed.is_cancelled() {
            let reason = self
                .shared
                .window_reason
                .get()
                .cloned()
                .unwrap_or_else(|| "the change window closed".to_owned());
            queue.extend(self.machine.on(Event::Stop(Stop::Window { reason })));
        }
        queue.extend(self.machine.on(event));
    }

    /// Carries out the machine's commands until it ends the run.
    async fn drive(&mut self) -> Result<RunEnd, JournalError> {
        let mut queue = VecDeque::new();
        self.feed(Event::Begin, &mut queue);
        loop {
            while let Some(command) = queue.pop_front() {
                match command {
                    Command::Start(i) => self.start(i),
                    Command::Block { step, blocker } => self.block(step, blocker).await?,
                    Command::Compensate { step, failed } => {
                        let outcome = self.compensate(step, failed).await?;
                        // Its end comes before the rest of the queue.
                        let next = self.machine.on(Event::Finished { step, outcome });
                        for command in next.into_iter().rev() {
                            queue.push_front(command);
                        }
                    }
                    Command::Finish(end) => return Ok(end),
                }
            }
            let done = self.join_next().await?;
            let step = &self.shared.plan.steps[done.index];
            if let Some(out) = &done.output {
                self.outputs.insert(step.id.0.clone(), out.clone());
            }
            self.summaries[done.index] = Some(done.summary(step));
            let event = Event::Finished {
                step: done.index,
                outcome: done.outcome,
            };
            self.feed(event, &mut queue);
        }
    }

    /// Spawns step `index`.
    fn start(&mut self, index: usize) {
        let ctx = context(
            &self.shared.plan,
            &self.shared.plan.steps[index],
            &self.outputs,
        );
        let shared = Arc::clone(&self.shared);
        self.tasks
            .spawn(async move { run_step(shared, index, ctx).await });
    }

    /// Journals step `index` as blocked by `blocker`.
    async fn block(&mut self, index: usize, blocker: usize) -> Result<(), JournalError> {
        let step = &self.shared.plan.steps[index];
        let detail = format!(
            "not run: `{}` did not succeed",
            self.shared.plan.steps[blocker].id
        );
        self.shared
            .journal
            .step_blocked(&self.shared.options.run_id, step.id.as_str(), &detail)
            .await?;
        self.shared.emit(RunEvent::StepFinished {
            step: step.id.0.clone(),
            outcome: Outcome::Skipped,
            elapsed_ms: 0,
            detail: Some(detail.clone()),
        });
        self.summaries[index] = Some(summary(step, Some(Outcome::Skipped), Some(detail)));
        Ok(())
    }

    /// Runs compensation `index` for the failed step `failed`, to its end.
    async fn compensate(&mut self, index: usize, failed: usize) -> Result<Outcome, JournalError> {
        let shared = Arc::clone(&self.shared);
        let step = &shared.plan.steps[index];
        let mut ctx = context(&shared.plan, step, &self.outputs);
        if changed::reads_changed_items(step) {
            // From the journal, so a resume sees the same set.
            shared.journal.flush().await?;
            let record = shared.journal.load_run(&shared.options.run_id)?;
            let items = changed::changed_items(&record, &shared.plan.steps[failed]);
            ctx["failed"] = json!({ "changed_items": items });
        }
        let done = run_step(Arc::clone(&shared), index, ctx).await?;
        self.summaries[index] = Some(done.summary(step));
        Ok(done.outcome)
    }

    /// The next step task to end. When the journal failed (or a task ended
    /// abnormally), the run is cancelled and every task is awaited, so calls
    /// in flight finish, and the error is returned: nothing more is sent.
    async fn join_next(&mut self) -> Result<StepDone, JournalError> {
        let error = match self.tasks.join_next().await {
            Some(Ok(Ok(done))) => return Ok(done),
            Some(Ok(Err(e))) => e,
            Some(Err(join)) => {
                JournalError::Corrupt(format!("a step task ended abnormally: {join}"))
            }
            None => JournalError::Corrupt(
                "internal error: the scheduler waited for a step but none was running".to_owned(),
            ),
        };
        self.shared.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
        Err(error)
    }

    /// Journals how the run ended and sums it up.
    async fn finish(self, end: RunEnd, started: Instant) -> Result<RunSummary, JournalError> {
        let shared = self.shared;
        let run_id = shared.options.run_id.clone();
        shared
            .journal
            .set_run_status(&run_id, end.status, end.status.is_finished())
            .await?;
        if end.status.ends_run()
            && let Some(locks) = shared.resource_locks.get()
        {
            locks.release().await?;
        }
        let elapsed = started.elapsed();
        shared.emit(RunEvent::RunFinished {
            run_id: run_id.clone(),
            outcome: end.status,
            elapsed_ms: millis(elapsed),
        });
        shared.journal.flush().await?;
        let steps = shared
            .plan
            .steps
            .iter()
            .zip(self.summaries)
            .filter(|(step, s)| !step.compensation || s.is_some())
            .map(|(step, s)| {
                s.unwrap_or_else(|| summary(step, None, Some("not started".to_owned())))
            })
            .collect();
        Ok(RunSummary {
            run_id,
            outcome: end.status,
            steps,
            elapsed_ms: millis(elapsed),
            stopped_because: end.reason,
            time_scale: shared.options.time_scale,
            credentials_failure: shared
                .credentials_failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        })
    }
}

/// The summary of a step that did not run (or ran in an earlier attempt).
fn summary(step: &PlannedStep, outcome: Option<Outcome>, detail: Option<String>) -> StepSummary {
    StepSummary {
        id: step.id.0.clone(),
        outcome,
        detail,
        items: None,
        elapsed_ms: 0,
        from_journal: false,
    }
}

impl StepDone {
    fn summary(&self, step: &PlannedStep) -> StepSummary {
        StepSummary {
            items: self.items,
            elapsed_ms: millis(self.elapsed),
            ..summary(step, Some(self.outcome), self.detail.clone())
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The render context of a step: params and the outputs of the steps its
/// templates reference (only those, so a big fan-out does not copy every
/// earlier output into every item's context).
fn context(plan: &Plan, step: &PlannedStep, outputs: &HashMap<String, Value>) -> Value {
    let text = serde_json::to_string(&(&step.kind, &step.when, &step.for_each)).unwrap_or_default();
    let mut steps = Map::new();
    for other in &plan.steps {
        let id = other.id.as_str();
        if let Some(out) = outputs.get(id)
            && references(&text, id)
        {
            steps.insert(id.to_owned(), json!({ "output": out }));
        }
    }
    json!({ "params": plan.params, "steps": steps })
}

/// Whether `text` mentions `steps.<id>` as a whole id.
fn references(text: &str, id: &str) -> bool {
    let needle = format!("steps.{id}");
    text.match_indices(&needle).any(|(at, _)| {
        let next = text[at + needle.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

/// How a step ended, before it is journaled.
struct StepEnd {
    outcome: Outcome,
    output: Option<Value>,
    detail: Option<String>,
    items: Option<usize>,
}

impl StepEnd {
    fn new(
        outcome: Outcome,
        output: Option<Value>,
        detail: Option<String>,
        items: Option<usize>,
    ) -> StepEnd {
        StepEnd {
            outcome,
            output,
            detail,
            items,
        }
    }
}

/// Journals the end of step `index` (started at `started`) and reports it.
async fn finish_step(
    shared: &Shared,
    index: usize,
    started: Instant,
    end: StepEnd,
) -> Result<StepDone, JournalError> {
    let step = &shared.plan.steps[index];
    shared
        .journal
        .step_finished(
            &shared.options.run_id,
            step.id.as_str(),
            end.outcome,
            end.detail.as_deref(),
        )
        .await?;
    let elapsed = started.elapsed();
    shared.emit(RunEvent::StepFinished {
        step: step.id.0.clone(),
        outcome: end.outcome,
        elapsed_ms: millis(elapsed),
        detail: end.detail.clone(),
    });
    Ok(StepDone {
        index,
        outcome: end.outcome,
        output: end.output,
        detail: end.detail,
        items: end.items,
        elapsed,
    })
}

/// Whether the step runs (its `when`) and over which items (its
/// `for_each`), in its render context; `Err` is how it ends without running.
fn prelude(step: &PlannedStep, ctx: &Value) -> Result<Option<Vec<Value>>, (Outcome, String)> {
    if let Some(when) = &step.when {
        match when.eval(ctx) {
            Ok(true) => {}
            Ok(false) => return Err((Outcome::Skipped, "skipped: `when` is false".to_owned())),
            Err(e) => return Err((Outcome::Failed, format!("cannot evaluate `when`: {e}"))),
        }
    }
    step.for_each
        .as_ref()
        .map(|fe| {
            fe.render(ctx)
                .map_err(|e| (Outcome::Failed, format!("cannot render `for_each`: {e}")))
        })
        .transpose()
}

/// The deadline of a step started at `started`: its `timeout` (for a wait,
/// at least the wait's own timeout and 5 s more), compressed by `scale`.
fn step_deadline(step: &PlannedStep, scale: TimeScale, started: Instant) -> Option<Deadline> {
    let timeout = step.timeout_secs.map(|t| {
        let t = Duration::from_secs(t);
        scale.apply(match &step.kind {
            StepKind::Wait(w) => {
                t.max(Duration::from_millis(w.timeout_millis) + Duration::from_secs(5))
            }
            _ => t,
        })
    })?;
    Some(Deadline {
        at: started + timeout,
        timeout,
    })
}

/// Runs one step to its end, journaling it; the `Err` case is a journal failure.
async fn run_step(shared: Arc<Shared>, index: usize, ctx: Value) -> Result<StepDone, JournalError> {
    let started = Instant::now();
    let step = &shared.plan.steps[index];
    let run_id = &shared.options.run_id;
    let items = match prelude(step, &ctx) {
        Ok(items) => items,
        Err((outcome, detail)) => {
            shared
                .journal
                .step_started(run_id, step.id.as_str(), None)
                .await?;
            let end = StepEnd::new(outcome, None, Some(detail), None);
            return finish_step(&shared, index, started, end).await;
        }
    };
    let n_items = items.as_ref().map(Vec::len);
    shared
        .journal
        .step_started(run_id, step.id.as_str(), n_items)
        .await?;
    shared.emit(RunEvent::StepStarted {
        step: step.id.0.clone(),
        items: n_items,
    });
    if let Some(why) = shared.drift.gate(&shared, step).await {
        let end = StepEnd::new(Outcome::Failed, None, Some(why), n_items);
        return finish_step(&shared, index, started, end).await;
    }

    // The step's own token: a step timeout cancels only this step, and like
    // Ctrl-C it lets calls in flight finish so their outcome is journaled.
    let step_cancel = shared.cancel.child_token();
    let deadline = step_deadline(step, shared.options.time_scale, started);
    let body = run_units(
        Arc::clone(&shared),
        index,
        ctx,
        items,
        step_cancel.clone(),
        deadline,
    );
    tokio::pin!(body);
    let result = match deadline {
        Some(deadline) => tokio::select! {
            r = &mut body => r,
            () = tokio::time::sleep_until(deadline.at) => {
                step_cancel.cancel();
                // What the units said when they stopped (a status check that
                // ran out of time says what it last read).
                let (outcome, _, detail) = (&mut body).await?;
                let mut why = format!("step timed out after {}", humanize(deadline.timeout));
                if let (Outcome::Failed, Some(detail)) = (outcome, detail) {
                    why = format!("{why}: {detail}");
                }
                Ok((Outcome::Failed, None, Some(why)))
            }
        },
        None => body.await,
    };
    let (outcome, output, detail) = result?;
    let end = StepEnd::new(outcome, output, detail, n_items);
    finish_step(&shared, index, started, end).await
}

type UnitResult = (Outcome, Option<Value>, Option<String>);
type UnitsResult = Result<UnitResult, JournalError>;

/// Runs every unit of a step (one, or one per item) and folds their results.
async fn run_units(
    shared: Arc<Shared>,
    index: usize,
    ctx: Value,
    items: Option<Vec<Value>>,
    cancel: CancellationToken,
    deadline: Option<Deadline>,
) -> UnitsResult {
    let ctx = Arc::new(ctx);
    let Some(items) = items else {
        return run_unit(Arc::clone(&shared), index, 0, None, ctx, cancel, deadline).await;
    };
    let labels: Vec<String> = items.iter().map(super::label::item_label).collect();
    let mut tally = Tally::new(items.len());
    let mut set = spawn_items(&shared, index, items, &ctx, &cancel, deadline).await;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, Ok(done))) => tally.record(i, done),
            Ok((_, Err(e))) => {
                // The journal failed: the other items start nothing new,
                // and the calls they have in flight finish (dropping the
                // set would abort them mid-request, their outcome unknown).
                cancel.cancel();
                while set.join_next().await.is_some() {}
                return Err(e);
            }
            // A bug, not a cancellation: fail loudly rather than pass the
            // item off as "not started".
            Err(e) => tally.crashed(&e),
        }
    }
    Ok(tally.verdict(&labels))
}

/// Spawns the items of a fan-out, at most the step's `for_each`
/// concurrency at once; stops spawning when the run is cancelled, or when
/// an item failed and the step does not go on past failures.
async fn spawn_items(
    shared: &Arc<Shared>,
    index: usize,
    items: Vec<Value>,
    ctx: &Arc<Value>,
    cancel: &CancellationToken,
    deadline: Option<Deadline>,
) -> JoinSet<(usize, UnitsResult)> {
    let step = &shared.plan.steps[index];
    let limit = step
        .for_each
        .as_ref()
        .and_then(|fe| fe.concurrency)
        .unwrap_or(shared.options.concurrency)
        .max(1);
    let semaphore = Arc::new(Semaphore::new(limit));
    let stop_items = Arc::new(AtomicBool::new(false));
    let keep_going = step.on_failure == OnFailure::Continue;
    let mut set = JoinSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let Ok(permit) = Arc::clone(&semaphore).acquire_owned().await else {
            break;
        };
        if stop_items.load(Ordering::SeqCst)
            || cancel.is_cancelled()
            || (step.risk.mutates() && shared.window_closed.is_cancelled())
        {
            break;
        }
        let shared = Arc::clone(shared);
        let stop_items = Arc::clone(&stop_items);
        let ctx = Arc::clone(ctx);
        let cancel = cancel.clone();
        set.spawn(async move {
            let result = run_unit(shared, index, i, Some(item), ctx, cancel, deadline).await;
            if matches!(&result, Ok((Outcome::Failed, ..))) && !keep_going {
                stop_items.store(true, Ordering::SeqCst);
            }
            drop(permit);
            (i, result)
        });
    }
    set
}

/// The items of a fan-out as they end, folded into the step's result.
struct Tally {
    n: usize,
    outputs: Vec<Value>,
    finished: BTreeSet<usize>,
    failures: Vec<(usize, String)>,
    cancelled: usize,
    crashed: usize,
}

impl Tally {
    fn new(n: usize) -> Tally {
        Tally {
            n,
            outputs: vec![Value::Null; n],
            finished: BTreeSet::new(),
            failures: Vec::new(),
            cancelled: 0,
            crashed: 0,
        }
    }

    /// Item `i` ended.
    fn record(&mut self, i: usize, (outcome, output, error): UnitResult) {
        self.finished.insert(i);
        match outcome {
            Outcome::Succeeded | Outcome::Skipped => {
                self.outputs[i] = output.unwrap_or(Value::Null)
            }
            Outcome::Failed => self.failures.push((i, error.unwrap_or_default())),
            Outcome::Cancelled => self.cancelled += 1,
        }
    }

    /// An item's task ended abnormally.
    fn crashed(&mut self, e: &tokio::task::JoinError) {
        self.crashed += 1;
        self.failures.push((
            usize::MAX,
            format!("internal error: an item's task ended abnormally: {e}"),
        ));
    }

    /// The step's result: failed when an item failed (naming the first by
    /// its label), cancelled when an item was cancelled or never started,
    /// else succeeded with every item's output in order.
    fn verdict(mut self, labels: &[String]) -> UnitResult {
        let n = self.n;
        self.failures.sort_by_key(|(i, _)| *i);
        let not_started = n - self.finished.len() - self.crashed;
        if let Some((first, why)) = self.failures.first() {
            let which = labels
                .get(*first)
                .map_or_else(|| "one item".to_owned(), |label| format!("item {label}"));
            let mut detail = format!(
                "{} of {n} items failed; {which}: {why}",
                self.failures.len()
            );
            if not_started > 0 {
                detail.push_str(&format!("; {not_started} items not started"));
            }
            return (
                Outcome::Failed,
                Some(Value::Array(self.outputs)),
                Some(detail),
            );
        }
        if self.cancelled > 0 || not_started > 0 {
            let done = n - self.cancelled - not_started;
            let detail = format!("{done} of {n} items done before the run stopped");
            return (Outcome::Cancelled, None, Some(detail));
        }
        (Outcome::Succeeded, Some(Value::Array(self.outputs)), None)
    }
}

/// Runs one unit, journaling its start and result.
async fn run_unit(
    shared: Arc<Shared>,
    index: usize,
    item: usize,
    item_value: Option<Value>,
    ctx: Arc<Value>,
    cancel: CancellationToken,
    deadline: Option<Deadline>,
) -> UnitsResult {
    let step = &shared.plan.steps[index];
    if let Some(output) = shared.prior.done_units.get(&(step.id.0.clone(), item)) {
        return Ok((Outcome::Succeeded, Some(output.clone()), None));
    }
    shared.journal.unit_started(
        &shared.options.run_id,
        step.id.as_str(),
        item,
        item_value.as_ref(),
    );
    let unit = Unit {
        shared: &shared,
        step,
        item,
        fan_out: item_value.is_some(),
        ctx: &ctx,
        item_value: item_value.as_ref(),
        seed: unit_seed(&shared, index, item),
        cancel: &cancel,
        deadline,
    };
    let result = settle(&shared, execute(&unit).await)?;
    finish_unit(&unit, result).await
}

/// The unit's random seed: the run's (or a fresh one), apart per step and item.
fn unit_seed(shared: &Shared, index: usize, item: usize) -> u64 {
    shared
        .options
        .seed
        .unwrap_or_else(rand::random)
        .wrapping_add((index as u64) << 32 | item as u64)
}

/// Does what the unit's step does, by its kind.
async fn execute(unit: &Unit<'_>) -> Result<Value, UnitError> {
    let shared = unit.shared;
    match &unit.step.kind {
        StepKind::Call { call, assert } => unit.call(call, assert.as_ref()).await,
        StepKind::Wait(wait) => unit.wait(wait).await,
        StepKind::Sleep { millis } => {
            tokio::select! {
                () = tokio::time::sleep(shared.options.time_scale.apply(Duration::from_millis(*millis))) => Ok(Value::Null),
                () = unit.cancel.cancelled() => Err(UnitError::Cancelled),
                // A sleep holds the run for nothing once the window closed.
                () = shared.window_closed.cancelled() => Err(UnitError::Cancelled),
            }
        }
        StepKind::Approve { message, .. } => {
            approve(shared, unit.step.id.as_str(), message, unit.cancel).await
        }
    }
}

/// A unit's result as an outcome, output and error (a journal failure
/// passes through: it ends the run).
fn settle(shared: &Shared, result: Result<Value, UnitError>) -> UnitsResult {
    Ok(match result {
        Ok(v) => (Outcome::Succeeded, Some(v), None),
        Err(UnitError::Failed(why)) => (Outcome::Failed, None, Some(why)),
        Err(UnitError::Cancelled) => {
            let parked = shared
                .gate_end
                .get()
                .is_some_and(|(status, _)| *status == RunStatus::WaitingApproval);
            let why = if shared.window_closed.is_cancelled() {
                "stopped: the change window closed"
            } else if parked {
                "stopped: the run is parked at an approval (--detach)"
            } else {
                "cancelled"
            };
            (Outcome::Cancelled, None, Some(why.to_owned()))
        }
        Err(UnitError::Journal(e)) => return Err(e),
    })
}

/// Journals a unit's end and reports a fan-out item's.
async fn finish_unit(unit: &Unit<'_>, result: UnitResult) -> UnitsResult {
    let (outcome, output, error) = &result;
    let (shared, step) = (unit.shared, unit.step);
    if *outcome != Outcome::Cancelled {
        // A cancelled unit stays `running` in the journal: resume re-checks it.
        shared
            .journal
            .unit_finished(
                &shared.options.run_id,
                step.id.as_str(),
                unit.item,
                *outcome,
                output.as_ref(),
                error.as_deref(),
            )
            .await?;
    }
    if let Some(value) = unit.item_value {
        shared.emit(RunEvent::ItemFinished {
            step: step.id.0.clone(),
            item: super::ItemRef::new(unit.item, value),
            outcome: *outcome,
            error: error.clone(),
        });
    }
    Ok(result)
}

async fn approve(
    shared: &Shared,
    step: &str,
    message: &str,
    cancel: &CancellationToken,
) -> Result<Value, UnitError> {
    let gate = Gate::Step(step.to_owned());
    let run_id = &shared.options.run_id;
    // Decided in the journal already: approved while the run was parked,
    // or rejected.
    match decided(shared, &gate)? {
        Verdict::Approved(rows) => return Ok(approved_from_journal(shared, step, &rows)),
        Verdict::Rejected { by, reason } => return Err(rejected_at(shared, &gate, &by, &reason)),
        Verdict::Pending => {}
    }
    let policy = waiting::policy_of(&shared.plan, &gate);
    let approver: &dyn Approver = shared.approver.as_ref();
    if approver.can_answer(step) {
        // Asked here (a flag, a terminal): enough, unless the step's
        // policy needs more than this person (then the rest is waited for).
        let output = ask_here(shared, step, message, cancel).await?;
        if policy.is_none() {
            return Ok(output);
        }
        match decided(shared, &gate)? {
            Verdict::Approved(_) => return Ok(output),
            Verdict::Rejected { by, reason } => {
                return Err(rejected_at(shared, &gate, &by, &reason));
            }
            Verdict::Pending => {}
        }
    } else if !shared.elsewhere.asked && policy.is_none() {
        // Nobody may answer it: refused, as the pre-start check says.
        return ask_here(shared, step, message, cancel).await;
    }
    let timeout = shared
        .plan
        .step(step)
        .and_then(|s| s.timeout_secs)
        .map_or_else(
            || shared.elsewhere.timeout.unwrap_or(waiting::DEFAULT_TIMEOUT),
            Duration::from_secs,
        );
    let emit = |e: &RunEvent| shared.emit(e.clone());
    let park = Park {
        journal: &shared.journal,
        run_id,
        plan: &shared.plan,
        gate: gate.clone(),
        elsewhere: &shared.elsewhere,
        timeout: shared.options.time_scale.apply(timeout),
        emit: &emit,
    };
    let waited = tokio::select! {
        w = park.wait(shared.prior.waiting.as_ref(), cancel) => w?,
        // An approval after the window closed could start nothing.
        () = shared.window_closed.cancelled() => Waited::Cancelled,
    };
    match waited {
        Waited::Approved(rows) => {
            shared
                .journal
                .set_run_status(run_id, RunStatus::Running, false)
                .await?;
            Ok(approved_from_journal(shared, step, &rows))
        }
        Waited::Rejected { by, reason } => Err(rejected_at(shared, &gate, &by, &reason)),
        Waited::TimedOut(why) => {
            shared
                .journal
                .set_run_status(run_id, RunStatus::Running, false)
                .await?;
            Err(UnitError::Failed(why))
        }
        Waited::Detached => {
            shared.end_at_gate(
                RunStatus::WaitingApproval,
                format!(
                    "waiting for an approval of {} from elsewhere (--detach)",
                    gate.describe()
                ),
                true,
            );
            Err(UnitError::Cancelled)
        }
        Waited::Cancelled => Err(UnitError::Cancelled),
    }
}

/// What the journal says of `gate` now.
fn decided(shared: &Shared, gate: &Gate) -> Result<Verdict, JournalError> {
    let record = shared.journal.load_run(&shared.options.run_id)?;
    let starter = waiting::starter(&record);
    Ok(waiting::verdict(
        &record.approvals,
        &shared.plan,
        gate,
        starter.as_ref(),
    ))
}

/// The output of an `approve` step approved in the journal (from
/// elsewhere, or before the run was resumed): who approved it last.
fn approved_from_journal(shared: &Shared, step: &str, rows: &[ApprovalRow]) -> Value {
    let last = rows.last();
    let by = rows
        .iter()
        .map(waiting::who_of)
        .collect::<Vec<_>>()
        .join(", ");
    shared.emit(RunEvent::Approval {
        step: Some(step.to_owned()),
        by: by.clone(),
        approved: true,
    });
    json!({ "ApprovedBy": by, "Method": last.map(|r| r.method.clone()).unwrap_or_default() })
}

/// A rejected gate: the step fails (its `on_failure` applies, so a
/// compensation it names runs), nothing new starts, and the run ends
/// `rejected`.
fn rejected_at(shared: &Shared, gate: &Gate, by: &str, reason: &str) -> UnitError {
    shared.emit(RunEvent::Approval {
        step: gate.step().map(str::to_owned),
        by: by.to_owned(),
        approved: false,
    });
    let why = format!("{by} rejected {}: {reason}", gate.describe());
    shared.end_at_gate(RunStatus::Rejected, why.clone(), false);
    UnitError::Failed(why)
}

/// Asks this process's approver (a flag, a terminal) for `step`.
async fn ask_here(
    shared: &Shared,
    step: &str,
    message: &str,
    cancel: &CancellationToken,
) -> Result<Value, UnitError> {
    let approver: &dyn Approver = shared.approver.as_ref();
    let decision = tokio::select! {
        d = approver.approve(step, message, &shared.plan.digest) => d,
        () = cancel.cancelled() => return Err(UnitError::Cancelled),
        // An approval after the window closed could start nothing.
        () = shared.window_closed.cancelled() => return Err(UnitError::Cancelled),
    };
    match decision {
        ApprovalDecision::Approved {
            ref by, ref method, ..
        } => {
            if let Some(row) = decision.to_row(Some(step), &shared.plan.digest) {
                shared
                    .journal
                    .record_approval(&shared.options.run_id, &row)
                    .await?;
            }
            shared.emit(RunEvent::Approval {
                step: Some(step.to_owned()),
                by: by.clone(),
                approved: true,
            });
            Ok(json!({ "ApprovedBy": by, "Method": method }))
        }
        ApprovalDecision::Refused { reason } => {
            shared.emit(RunEvent::Approval {
                step: Some(step.to_owned()),
                by: String::new(),
                approved: false,
            });
            Err(UnitError::Failed(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_match_whole_ids() {
        assert!(references("{{steps.stop.output.X}}", "stop"));
        assert!(!references("{{steps.stop-2.output.X}}", "stop"));
        assert!(references("{{steps.stop-2.output.X}}", "stop-2"));
        assert!(!references("{{params.stop}}", "stop"));
    }

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("FileId={}", 100 + i)).collect()
    }

    #[test]
    fn a_fan_out_succeeds_with_every_output_in_item_order() {
        let mut t = Tally::new(2);
        t.record(1, (Outcome::Succeeded, Some(json!("b")), None));
        t.record(0, (Outcome::Skipped, None, None));
        assert_eq!(
            t.verdict(&labels(2)),
            (Outcome::Succeeded, Some(json!([null, "b"])), None)
        );
    }

    #[test]
    fn a_fan_out_fails_naming_its_first_failed_item_and_those_not_started() {
        let mut t = Tally::new(4);
        t.record(2, (Outcome::Failed, None, Some("late".to_owned())));
        t.record(1, (Outcome::Failed, None, Some("early".to_owned())));
        t.record(0, (Outcome::Succeeded, Some(json!(1)), None));
        let (outcome, output, detail) = t.verdict(&labels(4));
        assert_eq!(outcome, Outcome::Failed);
        assert_eq!(output, Some(json!([1, null, null, null])));
        assert_eq!(
            detail.as_deref(),
            Some("2 of 4 items failed; item FileId=101: early; 1 items not started")
        );
    }

    #[test]
    fn a_fan_out_stopped_before_every_item_ended_is_cancelled() {
        let mut t = Tally::new(3);
        t.record(0, (Outcome::Succeeded, None, None));
        t.record(1, (Outcome::Cancelled, None, Some("cancelled".to_owned())));
        assert_eq!(
            t.verdict(&labels(3)),
            (
                Outcome::Cancelled,
                None,
                Some("1 of 3 items done before the run stopped".to_owned())
            )
        );
    }

    #[test]
    fn a_wait_step_gets_at_least_its_own_timeout_and_five_seconds() {
        let plan = crate::plan::plan_of_yaml(
            r"
name: t
defaults: { region: cn-shanghai }
steps:
  - id: paused
    timeout: 10s
    wait:
      call: dataworks.GetDISyncInstanceInfo
      with: { ProjectId: 1, TaskType: DI_REALTIME, FileId: 1 }
      until: { select: Data.Status, in: [PAUSE] }
      every: 1s
      timeout: 1m
  - id: hold
    timeout: 10s
    sleep: 1m
",
        );
        let at = Instant::now();
        let deadline = |id: &str, scale: &str| {
            step_deadline(plan.step(id).unwrap(), scale.parse().unwrap(), at)
                .unwrap()
                .timeout
        };
        assert_eq!(deadline("paused", "1"), Duration::from_secs(65));
        assert_eq!(deadline("hold", "1"), Duration::from_secs(10));
        assert_eq!(deadline("hold", "10"), Duration::from_secs(1));
    }
}
