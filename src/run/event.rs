//! What happens during a run, as data. The runner sends `RunEvent`s to a
//! sink and never prints; `report` renders them for people, `--output json`
//! writes one per line for machines, and the journal stores them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cloud::ErrorClass;

/// How a step (or one fan-out item, or the whole run) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done as asked.
    Succeeded,
    /// Not run: its `when` was false, or a step it needs failed or was skipped.
    Skipped,
    /// Failed (see the error).
    Failed,
    /// Stopped by Ctrl-C or a run timeout before it finished.
    Cancelled,
}

impl Outcome {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// A fan-out item as events name it: `"item": 3, "item_label": "FileId=101"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRef {
    /// 0-based index in the step's items.
    #[serde(rename = "item")]
    pub index: usize,
    /// The item named by its value (see [`super::label`]).
    #[serde(rename = "item_label")]
    pub label: String,
}

impl ItemRef {
    /// Item `index`, whose value is `value`.
    pub fn new(index: usize, value: &Value) -> ItemRef {
        ItemRef {
            index,
            label: super::label::item_label(value),
        }
    }
}

/// One thing that happened in a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// The run began (or resumed).
    RunStarted {
        /// Run id.
        run_id: String,
        /// Playbook name.
        name: String,
        /// Plan digest the run is bound to.
        digest: String,
        /// Number of steps in the plan.
        steps: usize,
        /// Whether this continues an earlier run.
        resumed: bool,
    },
    /// A step started; `items` is the fan-out size.
    StepStarted {
        /// Step id.
        step: String,
        /// Fan-out size, for `for_each` steps.
        items: Option<usize>,
    },
    /// A call was sent (one attempt).
    CallSent {
        /// Step id.
        step: String,
        /// The fan-out item (index and label), for `for_each` steps.
        #[serde(flatten)]
        item: Option<ItemRef>,
        /// 1-based attempt.
        attempt: u32,
        /// RPC action.
        action: String,
    },
    /// An attempt failed; `next_delay_ms` is `None` when no retry follows.
    AttemptFailed {
        /// Step id.
        step: String,
        /// The fan-out item (index and label), for `for_each` steps.
        #[serde(flatten)]
        item: Option<ItemRef>,
        /// 1-based attempt.
        attempt: u32,
        /// RPC action.
        action: String,
        /// Error code.
        code: String,
        /// Error message.
        message: String,
        /// Class of the error.
        class: ErrorClass,
        /// RequestId of the failed answer.
        request_id: Option<String>,
        /// Delay before the next attempt, if any.
        next_delay_ms: Option<u64>,
    },
    /// An unknown outcome was settled through the status call.
    Reconciled {
        /// Step id.
        step: String,
        /// The fan-out item (index and label), for `for_each` steps.
        #[serde(flatten)]
        item: Option<ItemRef>,
        /// The mutating action whose outcome was unknown.
        action: String,
        /// Status value observed.
        observed: Value,
        /// Whether the call had taken effect (true: it is not sent again).
        took_effect: bool,
    },
    /// A wait polled its status call.
    Polled {
        /// Step id.
        step: String,
        /// The fan-out item (index and label), for `for_each` steps.
        #[serde(flatten)]
        item: Option<ItemRef>,
        /// 1-based poll number.
        poll: u32,
        /// Value at the `until` path.
        value: Value,
        /// Time since the wait began.
        elapsed_ms: u64,
    },
    /// An approval was given or refused.
    Approval {
        /// Step id (`None`: the whole plan).
        step: Option<String>,
        /// Who approved (user@host or `--yes`).
        by: String,
        /// Given or refused.
        approved: bool,
    },
    /// The run waits at an approval to be given from elsewhere (`runbook
    /// approve`): parked in the journal as `waiting_approval`.
    WaitingApproval {
        /// The `approve` step (`None`: the plan's approval).
        step: Option<String>,
        /// Since when (RFC 3339, UTC).
        since: String,
        /// Until when it waits before the run fails (RFC 3339, UTC).
        until: Option<String>,
        /// The command that approves it (`runbook approve RUN_ID [STEP] --journal URL`).
        command: String,
        /// Whether this process left it parked and exits (`--detach`).
        detached: bool,
    },
    /// A resource of a refreshed plan is not in the state it was reviewed
    /// in: the step would now do something else (see `plan::drift`).
    Drift {
        /// Step id.
        step: String,
        /// Fan-out item, when the step fans out.
        item: Option<Value>,
        /// The resource (status action and its parameters).
        resource: String,
        /// Status and verdict at review.
        reviewed: String,
        /// Status and verdict now.
        current: String,
        /// Whether `--allow-drift` let the run go on.
        allowed: bool,
    },
    /// The change window closed during the run: no new mutating call
    /// starts; calls in flight finish, then the run stops `window_closed`.
    /// (The hook for notifications.)
    WindowClosed {
        /// When it closed (RFC 3339, UTC).
        at: String,
        /// The window, as written (with the flags that narrowed it).
        window: String,
        /// When it next opens (RFC 3339, UTC), if it does.
        next_opens: Option<String>,
    },
    /// A fan-out item ended.
    ItemFinished {
        /// Step id.
        step: String,
        /// The item (index and label).
        #[serde(flatten)]
        item: ItemRef,
        /// How it ended.
        outcome: Outcome,
        /// Error text when it failed.
        error: Option<String>,
    },
    /// A step ended.
    StepFinished {
        /// Step id.
        step: String,
        /// How it ended.
        outcome: Outcome,
        /// Wall time.
        elapsed_ms: u64,
        /// Error text or skip reason.
        detail: Option<String>,
    },
    /// A notification was delivered, or could not be (see `crate::notify`).
    Notified {
        /// What it was about.
        about: crate::plan::NotifyEvent,
        /// How it was sent.
        kind: crate::plan::NotifyKind,
        /// Where: scheme, host and path (never a token).
        target: String,
        /// Whether the receiver accepted it.
        delivered: bool,
        /// Attempts made (0: the destination could not be set up).
        attempts: u32,
        /// Why it was not delivered.
        error: Option<String>,
    },
    /// The run was abandoned (`runbook abandon`): it ended `cancelled`
    /// with no process, and its resource locks were released.
    Abandoned {
        /// Who (`user@host`).
        by: String,
        /// From which host.
        host: String,
        /// Why, as given.
        reason: String,
    },
    /// The run ended.
    RunFinished {
        /// Run id.
        run_id: String,
        /// How it ended.
        outcome: super::RunStatus,
        /// Wall time.
        elapsed_ms: u64,
    },
}

/// Where events go.
pub trait EventSink: Send + Sync {
    /// Receives one event; must not block for long.
    fn emit(&self, event: &RunEvent);
}

/// Sends events into an unbounded channel (the reporter task reads it).
impl EventSink for tokio::sync::mpsc::UnboundedSender<RunEvent> {
    fn emit(&self, event: &RunEvent) {
        let _ = self.send(event.clone());
    }
}

/// Drops every event (benchmarks, tests).
pub struct NoSink;

impl EventSink for NoSink {
    fn emit(&self, _event: &RunEvent) {}
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_events_carry_the_item_index_and_label() {
        let event = RunEvent::CallSent {
            step: "terminate".to_owned(),
            item: Some(ItemRef::new(2, &json!({"FileId": 101}))),
            attempt: 1,
            action: "TerminateDISyncInstance".to_owned(),
        };
        let v = serde_json::to_value(&event).unwrap();
        assert_eq!(v["item"], 2);
        assert_eq!(v["item_label"], "FileId=101");
        assert_eq!(serde_json::from_value::<RunEvent>(v).unwrap(), event);
        let single = RunEvent::CallSent {
            step: "stop-dts".to_owned(),
            item: None,
            attempt: 1,
            action: "StopDtsJob".to_owned(),
        };
        let v = serde_json::to_value(&single).unwrap();
        assert!(
            v.get("item").is_none() && v.get("item_label").is_none(),
            "{v}"
        );
        assert_eq!(serde_json::from_value::<RunEvent>(v).unwrap(), single);
        let done = RunEvent::ItemFinished {
            step: "terminate".to_owned(),
            item: ItemRef::new(0, &json!(7)),
            outcome: Outcome::Succeeded,
            error: None,
        };
        let v = serde_json::to_value(&done).unwrap();
        assert_eq!(
            (v["item"].clone(), v["item_label"].clone()),
            (json!(0), json!("7"))
        );
        assert_eq!(serde_json::from_value::<RunEvent>(v).unwrap(), done);
    }
}
