//! What this process knows about the mutating calls it sent, independent of
//! the journal: when the journal fails mid-run (a full disk, a lost
//! permission), the journal cannot be asked what was sent, and the report
//! must not guess. Every mutating call whose intent the journal committed was
//! sent (the intent is committed just before the request leaves); the
//! journal's writer marks, commit by commit, whether each call's answer
//! reached the database.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use crate::cloud::Risk;

/// One mutating call this process sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentCall {
    /// Step id.
    pub step: String,
    /// Item index (0 without fan-out).
    pub item: usize,
    /// RPC action.
    pub action: String,
    /// Mutating or irreversible.
    pub risk: Risk,
    /// What the service answered, as far as this process knows
    /// (`None`: no answer was received).
    pub answer: Option<String>,
    /// Whether that answer is committed to the journal.
    pub journaled: bool,
}

/// The mutating calls sent by this process, by attempt key, plus the first
/// journal write that failed.
#[derive(Debug, Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Attempt key -> (order sent, the call).
    calls: BTreeMap<String, (usize, SentCall)>,
    first_failure: Option<String>,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The intent of a mutating call was committed: it is being sent.
    pub(crate) fn sent(&self, key: &str, call: SentCall) {
        let mut inner = self.lock();
        let order = inner.calls.len();
        inner.calls.insert(key.to_owned(), (order, call));
    }

    /// The answer to the call sent under `key` (no-op for calls that are
    /// not in the ledger: reads).
    pub(crate) fn answered(&self, key: &str, answer: String) {
        if let Some((_, call)) = self.lock().calls.get_mut(key) {
            call.answer = Some(answer);
        }
    }

    /// The commit holding the answer under `key` succeeded or failed.
    pub(crate) fn answer_committed(&self, key: &str, ok: bool) {
        if let Some((_, call)) = self.lock().calls.get_mut(key) {
            call.journaled = ok;
        }
    }

    /// A journal write failed; the first one is kept.
    pub(crate) fn write_failed(&self, error: &str) {
        self.lock()
            .first_failure
            .get_or_insert_with(|| error.to_owned());
    }

    /// The calls sent, in the order they were sent.
    pub fn calls(&self) -> Vec<SentCall> {
        let inner = self.lock();
        let mut calls: Vec<&(usize, SentCall)> = inner.calls.values().collect();
        calls.sort_by_key(|(order, _)| *order);
        calls.into_iter().map(|(_, c)| c.clone()).collect()
    }

    /// The first journal write that failed, if one did.
    pub fn first_failure(&self) -> Option<String> {
        self.lock().first_failure.clone()
    }

    /// What to tell the user about the calls sent when the journal failed.
    pub fn report(&self) -> SentReport {
        SentReport {
            calls: self.calls(),
        }
    }
}

/// The mutating calls a run sent before its journal failed: how many, and
/// which of them have no journaled answer (listed one per line).
#[derive(Clone, Debug)]
pub struct SentReport {
    /// Every call sent, in order.
    pub calls: Vec<SentCall>,
}

impl fmt::Display for SentReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.calls.is_empty() {
            return write!(f, "sent before: no mutating call");
        }
        let irreversible = self
            .calls
            .iter()
            .filter(|c| c.risk == Risk::Irreversible)
            .count();
        let unjournaled: Vec<&SentCall> = self.calls.iter().filter(|c| !c.journaled).collect();
        write!(
            f,
            "sent before: {} mutating calls ({irreversible} irreversible); the answers of {} are journaled",
            self.calls.len(),
            self.calls.len() - unjournaled.len()
        )?;
        if unjournaled.is_empty() {
            return Ok(());
        }
        write!(f, ", of {} are not:", unjournaled.len())?;
        for c in unjournaled {
            let answer = c.answer.as_deref().map_or_else(
                || "no answer received".to_owned(),
                |a| format!("answered {a}"),
            );
            write!(
                f,
                "\n    {}[{}] {} ({}): {answer}",
                c.step,
                c.item,
                c.action,
                c.risk.as_str()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(step: &str, item: usize) -> SentCall {
        SentCall {
            step: step.to_owned(),
            item,
            action: "TerminateDISyncInstance".to_owned(),
            risk: Risk::Irreversible,
            answer: None,
            journaled: false,
        }
    }

    #[test]
    fn reports_what_was_sent_and_which_answers_are_not_journaled() {
        let ledger = Ledger::default();
        assert_eq!(ledger.report().to_string(), "sent before: no mutating call");
        ledger.sent("b", call("terminate", 0));
        ledger.sent("a", call("terminate", 1));
        ledger.sent("c", call("terminate", 2));
        ledger.answered("b", "ok (RequestId R0)".to_owned());
        ledger.answer_committed("b", true);
        ledger.answered("a", "ok (RequestId R1)".to_owned());
        ledger.answer_committed("a", false);
        ledger.answered("poll", "ok".to_owned());
        ledger.write_failed("disk full");
        ledger.write_failed("later");
        assert_eq!(ledger.first_failure().as_deref(), Some("disk full"));
        assert_eq!(
            ledger.report().to_string(),
            "sent before: 3 mutating calls (3 irreversible); the answers of 1 are journaled, of 2 are not:\n    \
             terminate[1] TerminateDISyncInstance (irreversible): answered ok (RequestId R1)\n    \
             terminate[2] TerminateDISyncInstance (irreversible): no answer received"
        );
    }
}
