//! The journal's link to its database as the engine sees it, and what rides
//! on it: whether the database can be reached (up; down while the writer
//! reconnects; given up once that took longer than the run's patience),
//! the run this process holds and until when its lease is known to be
//! valid.
//!
//! One value shared by the engine's tasks (which wait while the link is
//! down: no call, read or mutating, is sent while the journal cannot
//! record it), the writer thread (which reconnects, see
//! [`super::pg::Writer`], and tells the link), the reader thread and the
//! heartbeat.
//!
//! The rules of an outage:
//! - it starts when a write or a read fails for a connection reason (the
//!   server closed it, a network error, a server shutting down or starting
//!   up) and ends at the first commit after a reconnect;
//! - the writer reconnects with bounded exponential back-off and jitter
//!   ([`Backoff`]) until the patience is spent or the lease this process
//!   holds runs out, whichever comes first: a run cut off longer than its
//!   lease has lost it (others may have taken the run, or its resources,
//!   over), so it gives up rather than go on as if it still held it;
//! - once given up, nothing more is written or sent: the run stops as it
//!   is journaled, resumable.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Whether the journal's database can be reached.
#[derive(Clone, Debug)]
pub(crate) enum State {
    /// It can (as far as the last write or read knew).
    Up,
    /// A write or read failed for a connection reason at `since`; the
    /// writer is reconnecting.
    Down { since: Instant },
    /// It could not be reached in time: the run stops.
    GaveUp(Unreachable),
}

/// Why a run gave up on an unreachable journal.
#[derive(Clone, Debug, thiserror::Error)]
#[error(
    "the journal {at} could not be reached for {} ({}); the last error: {cause}",
    shown(*waited),
    if *lease_ran_out { "until this run's lease ran out" } else { "longer than --journal-patience" }
)]
pub struct Unreachable {
    /// The journal, without its password.
    pub at: String,
    /// How long the writer tried.
    pub waited: Duration,
    /// Whether it stopped because this process's lease ran out (rather
    /// than its patience).
    pub lease_ran_out: bool,
    /// The last connection error.
    pub cause: String,
}

/// A measured duration as a person reads it: whole seconds from 1 s on.
fn shown(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        crate::duration::format(Duration::from_secs(d.as_secs()))
    } else {
        crate::duration::format(Duration::from_millis(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        ))
    }
}

/// The run this process holds (see `Journal::claim_run`).
#[derive(Clone, Debug)]
pub(crate) struct Hold {
    pub(crate) run: String,
    pub(crate) holder: String,
    pub(crate) lease_ms: i64,
}

/// See the module doc.
pub(crate) struct Link {
    /// How long an outage is ridden out (ms); 0: not at all, the first
    /// connection error fails the write, as for commands other than
    /// `run` and `resume`.
    patience_ms: AtomicU64,
    state: watch::Sender<State>,
    held: Mutex<Option<Hold>>,
    /// Until when (ms since the epoch) this process's lease is known to be
    /// valid: its last committed heartbeat plus the lease length
    /// (`i64::MAX` until a run is claimed).
    lease_until: AtomicI64,
}

impl Default for Link {
    fn default() -> Link {
        Link {
            patience_ms: AtomicU64::new(0),
            state: watch::Sender::new(State::Up),
            held: Mutex::new(None),
            lease_until: AtomicI64::new(i64::MAX),
        }
    }
}

impl Link {
    pub(crate) fn patience(&self) -> Duration {
        Duration::from_millis(self.patience_ms.load(Ordering::SeqCst))
    }

    pub(crate) fn set_patience(&self, patience: Duration) {
        let ms = u64::try_from(patience.as_millis()).unwrap_or(u64::MAX);
        self.patience_ms.store(ms, Ordering::SeqCst);
    }

    /// The outage this link gave up on, if it did.
    pub(crate) fn gave_up(&self) -> Option<Unreachable> {
        match &*self.state.borrow() {
            State::GaveUp(u) => Some(u.clone()),
            _ => None,
        }
    }

    /// An outage starts (or goes on): returns when it started. `what` the
    /// journal does, for the log (`is locked ...; waiting`).
    pub(crate) fn down(&self, what: &str) -> Instant {
        let mut since = Instant::now();
        self.state.send_if_modified(|s| match s {
            State::Up => {
                tracing::warn!("the journal {what}");
                *s = State::Down { since };
                true
            }
            State::Down { since: started } => {
                since = *started;
                false
            }
            State::GaveUp(_) => false,
        });
        since
    }

    /// The database answered again.
    pub(crate) fn up(&self) {
        self.state.send_if_modified(|s| match s {
            State::Down { since } => {
                tracing::warn!("the journal answers again after {}", shown(since.elapsed()));
                *s = State::Up;
                true
            }
            _ => false,
        });
    }

    /// Gives up for good: every waiting task learns it.
    pub(crate) fn give_up(&self, why: Unreachable) {
        self.state.send_if_modified(|s| match s {
            State::GaveUp(_) => false,
            // Logged by the writer, whose write this fails.
            _ => {
                *s = State::GaveUp(why);
                true
            }
        });
    }

    /// Waits while the link is down; `Err` once it was given up.
    pub(crate) async fn reachable(&self) -> Result<(), Unreachable> {
        if matches!(*self.state.borrow(), State::Up) {
            return Ok(());
        }
        let mut rx = self.state.subscribe();
        let state = rx
            .wait_for(|s| !matches!(s, State::Down { .. }))
            .await
            .map(|s| s.clone());
        match state {
            Ok(State::GaveUp(u)) => Err(u),
            _ => Ok(()),
        }
    }

    pub(crate) fn held(&self) -> Option<Hold> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// This process holds `hold.run` from `at` (ms since the epoch) on.
    pub(crate) fn hold(&self, hold: Hold, at: i64) {
        self.lease_until
            .store(at.saturating_add(hold.lease_ms), Ordering::SeqCst);
        *self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hold);
    }

    pub(crate) fn lease_until(&self) -> i64 {
        self.lease_until.load(Ordering::SeqCst)
    }

    /// Another process took the run over: this one's lease is no longer
    /// valid, whatever the clock says.
    pub(crate) fn lease_lost(&self) {
        self.lease_until.store(i64::MIN, Ordering::SeqCst);
    }

    /// A heartbeat made at `beat` (ms since the epoch) was committed.
    pub(crate) fn renewed(&self, beat: i64) {
        if let Some(h) = self.held() {
            self.lease_until
                .fetch_max(beat.saturating_add(h.lease_ms), Ordering::SeqCst);
        }
    }

    /// When an outage that started at `since` must be given up: its
    /// patience spent, or the lease run out (with a margin for the time a
    /// commit takes), whichever comes first; and whether the lease decides.
    pub(crate) fn deadline(&self, since: Instant) -> (Instant, bool) {
        let by_patience = since + self.patience();
        let now = Instant::now();
        let lease_left = self
            .lease_until()
            .saturating_sub(super::now_ms())
            .saturating_sub(LEASE_MARGIN_MS);
        let lease_left = u64::try_from(lease_left).unwrap_or(0);
        let patience_left = u64::try_from(by_patience.saturating_duration_since(now).as_millis())
            .unwrap_or(u64::MAX);
        if lease_left < patience_left {
            (now + Duration::from_millis(lease_left), true)
        } else {
            (by_patience, false)
        }
    }
}

/// What is kept of the lease for the commit after a reconnect: giving up
/// this long before it runs out leaves the commit time to land within it.
const LEASE_MARGIN_MS: i64 = 500;

/// Delays between reconnect attempts: exponential from 50 ms, at most 2 s,
/// each with jitter (between half and all of it), so the processes of a
/// team do not reconnect in step after a server restart.
pub(crate) struct Backoff {
    next: Duration,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(seed: u64) -> Backoff {
        Backoff {
            next: FIRST_DELAY,
            rng: seed | 1,
        }
    }
}

const FIRST_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_secs(2);

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // xorshift64: jitter needs no more than this.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let full = self.next;
        self.next = (self.next * 2).min(MAX_DELAY);
        let half = full / 2;
        let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
        Some(half + Duration::from_micros(self.rng % spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn back_off_grows_is_bounded_and_jittered(seed in any::<u64>(), n in 1usize..40) {
            let delays: Vec<Duration> = Backoff::new(seed).take(n).collect();
            let mut full = FIRST_DELAY;
            for d in &delays {
                prop_assert!(*d >= full / 2 && *d <= full, "{d:?} outside [{:?}, {full:?}]", full / 2);
                full = (full * 2).min(MAX_DELAY);
            }
            prop_assert!(delays.iter().all(|d| *d <= MAX_DELAY));
        }

        #[test]
        fn the_deadline_is_the_earlier_of_patience_and_lease(
            patience_ms in 0u64..120_000,
            lease_left_ms in -5_000i64..120_000,
        ) {
            let link = Link::default();
            link.set_patience(Duration::from_millis(patience_ms));
            let now = super::super::now_ms();
            link.hold(Hold { run: "r".into(), holder: "h".into(), lease_ms: 0 }, now + lease_left_ms);
            let since = Instant::now();
            let (at, by_lease) = link.deadline(since);
            let by_patience = since + Duration::from_millis(patience_ms);
            prop_assert!(at <= by_patience + Duration::from_millis(5));
            if by_lease {
                // Never past the lease, less the margin (clock steps aside).
                let left = u64::try_from((lease_left_ms - LEASE_MARGIN_MS).max(0)).unwrap();
                prop_assert!(at <= since + Duration::from_millis(left) + Duration::from_millis(50));
            } else {
                prop_assert_eq!(at, by_patience);
            }
        }
    }

    #[tokio::test]
    async fn tasks_wait_while_down_and_learn_when_it_is_given_up() {
        let link = std::sync::Arc::new(Link::default());
        link.reachable().await.unwrap();
        link.down("cannot be reached; reconnecting");
        let waiting = tokio::spawn({
            let link = std::sync::Arc::clone(&link);
            async move { link.reachable().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "a task went on while the link was down"
        );
        link.up();
        waiting.await.unwrap().unwrap();
        link.down("cannot be reached; reconnecting");
        let waiting = tokio::spawn({
            let link = std::sync::Arc::clone(&link);
            async move { link.reachable().await }
        });
        link.give_up(Unreachable {
            at: "postgres://u@h:5432/db".into(),
            waited: Duration::from_secs(3),
            lease_ran_out: false,
            cause: "connection refused".into(),
        });
        let err = waiting.await.unwrap().unwrap_err();
        assert!(
            err.to_string().contains("longer than --journal-patience"),
            "{err}"
        );
        // Given up is for good.
        link.up();
        assert!(link.gave_up().is_some());
    }
}
