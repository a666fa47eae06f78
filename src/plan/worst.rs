//! Worst-case durations of steps, for the critical path.
//!
//! A wait's `timeout`, like a sleep's length, applies to each item of a
//! fan-out, and at most C items run at once (the step's
//! `for_each_concurrency`, else the playbook's `concurrency`): N items take
//! up to ceil(N/C) rounds of it. A step `timeout` bounds the whole step (for
//! a wait, never below the wait's own `timeout`). A call step's `timeout`
//! already covers all its items; an `approve` step counts its `timeout`, or
//! nothing (time waiting for an answer is not counted).
//!
//! When N comes from an earlier step's output it is known only at run time:
//! the worst case then counts one round and says so, unless a step
//! `timeout` bounds it anyway.

use std::time::Duration;

use super::{PlannedStep, StepKind};

/// How long a step can take at worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorstCase {
    /// The bound (for an unknown item count: one round of items).
    pub duration: Duration,
    /// How its items add up, for a wait or sleep that fans out.
    pub rounds: Option<Rounds>,
}

/// The rounds of a fan-out whose items each take up to `per_item`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rounds {
    /// The longest one item takes.
    pub per_item: Duration,
    /// Items in flight at once.
    pub concurrency: usize,
    /// Number of items, when known at plan time.
    pub items: Option<usize>,
    /// Whether the step `timeout` bounds the step before its items would.
    pub capped: bool,
}

impl Rounds {
    /// ceil(items / concurrency), when the item count is known.
    pub fn count(&self) -> Option<u64> {
        self.items.map(|n| rounds(n, self.concurrency))
    }

    /// Whether the worst case grows with an item count known only at run time.
    pub fn open_ended(&self) -> bool {
        self.items.is_none() && !self.capped
    }
}

/// ceil(n / c) with at least 1 in flight.
fn rounds(n: usize, c: usize) -> u64 {
    u64::try_from(n.div_ceil(c.max(1))).unwrap_or(u64::MAX)
}

impl PlannedStep {
    /// The step's worst-case duration when the run's concurrency is
    /// `concurrency` (the plan's).
    pub fn worst_case(&self, concurrency: usize) -> WorstCase {
        let step = self.timeout_secs.map(Duration::from_secs);
        let (per_item, cap) = match &self.kind {
            StepKind::Wait(w) => {
                let own = Duration::from_millis(w.timeout_millis);
                (own, step.map(|s| s.max(own)))
            }
            StepKind::Sleep { millis } => (Duration::from_millis(*millis), step),
            StepKind::Call { .. } | StepKind::Approve { .. } => {
                return WorstCase {
                    duration: step.unwrap_or_default(),
                    rounds: None,
                };
            }
        };
        let Some(fe) = &self.for_each else {
            let duration = cap.map_or(per_item, |c| c.min(per_item));
            return WorstCase {
                duration,
                rounds: None,
            };
        };
        let mut r = Rounds {
            per_item,
            concurrency: fe.concurrency.unwrap_or(concurrency).max(1),
            items: fe.items.as_ref().map(Vec::len),
            capped: false,
        };
        let by_items = match r.count() {
            Some(n) => per_item.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX)),
            None => per_item,
        };
        let duration = match cap {
            Some(c) if r.items.is_none() || c < by_items => {
                r.capped = true;
                c
            }
            _ => by_items,
        };
        WorstCase {
            duration,
            rounds: Some(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::plan::{ForEach, Plan};

    fn plan(yaml: &str) -> Plan {
        crate::plan::plan_of_yaml(yaml)
    }

    /// A wait (or sleep) over `n` items with the given concurrency,
    /// timeouts and item source, from a real playbook.
    fn step(
        kind: &str,
        n: usize,
        c: Option<usize>,
        per_item_s: u64,
        step_s: Option<u64>,
        known: bool,
    ) -> PlannedStep {
        let items: Vec<String> = (0..n).map(|i| (100 + i).to_string()).collect();
        let for_each = if known {
            format!("[{}]", items.join(", "))
        } else {
            "\"{{steps.list.output.Items}}\"".to_owned()
        };
        let concurrency = c.map_or(String::new(), |c| {
            format!("\n    for_each_concurrency: {c}")
        });
        let timeout = step_s.map_or(String::new(), |t| format!("\n    timeout: {t}s"));
        let action = if kind == "wait" {
            format!(
                "wait:\n      call: dataworks.GetDISyncInstanceInfo\n      with: {{ ProjectId: 1, FileId: \"{{{{item}}}}\", TaskType: DI_REALTIME }}\n      until: {{ select: Data.Status, in: [PAUSE] }}\n      timeout: {per_item_s}s"
            )
        } else {
            format!("sleep: {per_item_s}s")
        };
        let yaml = format!(
            r#"
name: w
defaults: {{ region: cn-shanghai }}
concurrency: 3
steps:
  - id: list
    call: dataworks.GetDISyncInstanceInfo
    with: {{ ProjectId: 1, FileId: 1, TaskType: DI_REALTIME }}
  - id: s
    needs: [list]
    for_each: {for_each}{concurrency}{timeout}
    {action}
"#
        );
        let p = plan(&yaml);
        p.step("s").unwrap().clone()
    }

    #[test]
    fn a_call_step_timeout_covers_all_its_items() {
        let p = plan(
            r#"
name: c
defaults: { region: cn-shanghai }
concurrency: 2
steps:
  - id: stop
    for_each: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 1, FileId: "{{item}}", TaskType: DI_REALTIME }
    timeout: 2m
"#,
        );
        let w = p.step("stop").unwrap().worst_case(p.concurrency);
        assert_eq!((w.duration, w.rounds), (Duration::from_secs(120), None));
        assert_eq!(p.worst_case_secs, 120);
    }

    #[test]
    fn items_from_an_output_count_one_round_and_say_so() {
        let s = step("wait", 0, Some(4), 300, None, false);
        let w = s.worst_case(3);
        assert_eq!(w.duration, Duration::from_secs(300));
        let r = w.rounds.unwrap();
        assert_eq!((r.items, r.concurrency, r.open_ended()), (None, 4, true));
        // A step timeout bounds it anyway.
        let s = step("wait", 0, Some(4), 300, Some(900), false);
        let w = s.worst_case(3);
        assert_eq!(w.duration, Duration::from_secs(900));
        assert!(!w.rounds.unwrap().open_ended());
    }

    proptest! {
        /// N items at concurrency C take ceil(N/C) rounds of the per-item
        /// bound, capped by a step timeout (never below one wait), with C
        /// the step's own concurrency or else the playbook's.
        #[test]
        fn fan_out_waits_and_sleeps_take_rounds_of_their_timeout(
            n in 0usize..40,
            c in proptest::option::of(1usize..12),
            per_item in 1u64..600,
            step_timeout in proptest::option::of(1u64..6_000),
            sleep in any::<bool>(),
        ) {
            let kind = if sleep { "sleep" } else { "wait" };
            let s = step(kind, n, c, per_item, step_timeout, true);
            let w = s.worst_case(3);
            let rounds = n.div_ceil(c.unwrap_or(3)) as u64;
            let by_items = rounds * per_item;
            let cap = step_timeout.map(|t| if sleep { t } else { t.max(per_item) });
            let expected = cap.map_or(by_items, |cap| cap.min(by_items));
            prop_assert_eq!(w.duration, Duration::from_secs(expected));
            let r = w.rounds.unwrap();
            prop_assert_eq!(r.count(), Some(rounds));
            prop_assert_eq!(r.items, Some(n));
            prop_assert!(!r.open_ended());
            // Without fan-out: one item.
            let mut one = s.clone();
            one.for_each = None;
            let single = cap.map_or(per_item, |cap| cap.min(per_item));
            prop_assert_eq!(one.worst_case(3).duration, Duration::from_secs(single));
            // The plan's own concurrency counts when the step sets none.
            let mut own = s;
            own.for_each = Some(ForEach { template: String::new(), items: Some(vec![Value::Null; n]), concurrency: None });
            let at_five = cap.map_or(n.div_ceil(5) as u64 * per_item, |cap| cap.min(n.div_ceil(5) as u64 * per_item));
            prop_assert_eq!(own.worst_case(5).duration, Duration::from_secs(at_five));
        }
    }
}
