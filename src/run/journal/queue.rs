//! The writer's queue: the journal's writes in the order they were made,
//! handed to the writer thread in batches, one transaction each (group
//! commit).
//!
//! A batch is due at once when a write in it is waited for (the intent of a
//! call, a unit's result, a flush: see `Journal::send_waiting`), when it is
//! full, or when the last handle is gone; writes nobody waits for (an
//! answer, an event, a unit's start) wait at most [`LINGER`] for one that
//! is. While calls are going on, one comes within microseconds, so a batch
//! holds the work of many calls: one commit, and one wake-up of the writer,
//! instead of one for each write.
//!
//! The writer sleeps on a condition variable that a handle signals only when
//! a batch becomes due (or its clock must start): queueing a write that
//! nobody waits for is a lock and a push, no system call.
//!
//! Order is kept: a batch is everything queued before it was taken, so a
//! commit that someone waits for also holds every earlier write.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a write nobody waits for may stay queued before it is
/// committed anyway (the journal's queue; tests make their own). A crash of the process loses at most this much of such
/// writes, which a run tolerates (they are not awaited: a resume re-checks a
/// call whose answer is missing), and another process reading the journal
/// (`runs`, `show`) sees them this much later at most.
pub(super) const LINGER: Duration = Duration::from_millis(20);

/// A batch this long is due at once.
pub(super) const MAX_BATCH: usize = 1024;

/// The queue shared by the handles ([`Sender`]) and the writer.
pub(super) struct Queue<T> {
    state: Mutex<Pending<T>>,
    wake: Condvar,
    /// [`LINGER`], but in tests.
    linger: Duration,
}

struct Pending<T> {
    items: Vec<T>,
    /// When the oldest of `items` was queued.
    since: Option<Instant>,
    /// Some write in `items` is waited for: the batch is due.
    waited: bool,
    /// The writer sleeps on `wake`.
    sleeping: bool,
    /// Live handles; once none is left, the writer commits what is queued
    /// and ends.
    senders: usize,
    /// The writer ended: nothing queued now would be committed.
    closed: bool,
}

impl<T> Queue<T> {
    /// A queue and its first handle; writes nobody waits for stay queued
    /// at most `linger` ([`LINGER`]).
    pub(super) fn new(linger: Duration) -> (Arc<Queue<T>>, Sender<T>) {
        let queue = Arc::new(Queue {
            state: Mutex::new(Pending {
                items: Vec::new(),
                since: None,
                waited: false,
                sleeping: false,
                senders: 1,
                closed: false,
            }),
            wake: Condvar::new(),
            linger,
        });
        let sender = Sender(Arc::clone(&queue));
        (queue, sender)
    }

    fn lock(&self) -> MutexGuard<'_, Pending<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the next batch to commit (see the module doc). `None`
    /// once no handle is left and nothing is queued: the writer ends.
    pub(super) fn next_batch(&self) -> Option<Vec<T>> {
        let mut p = self.lock();
        loop {
            let now = Instant::now();
            let due = p.since.map(|t| t + self.linger);
            if !p.items.is_empty()
                && (p.waited
                    || p.items.len() >= MAX_BATCH
                    || p.senders == 0
                    || due.is_some_and(|d| d <= now))
            {
                p.waited = false;
                p.since = None;
                return Some(std::mem::take(&mut p.items));
            }
            if p.senders == 0 {
                return None;
            }
            p.sleeping = true;
            p = match due {
                None => self.wake.wait(p).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    self.wake
                        .wait_timeout(p, d.saturating_duration_since(now))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            p.sleeping = false;
        }
    }

    /// The writer ended: later writes are refused, and the ones still
    /// queued are dropped (whoever waits for one learns it was not
    /// committed).
    pub(super) fn close(&self) {
        let mut p = self.lock();
        p.closed = true;
        let dropped = std::mem::take(&mut p.items);
        drop(p);
        drop(dropped);
    }
}

/// A handle that queues writes for the writer.
pub(super) struct Sender<T>(Arc<Queue<T>>);

/// The writer has ended; the write was not queued.
#[derive(Debug)]
pub(super) struct Closed;

impl<T> Sender<T> {
    /// Queues `item`; `waited`: someone waits for its commit, so the batch
    /// is due now.
    pub(super) fn send(&self, item: T, waited: bool) -> Result<(), Closed> {
        let mut p = self.0.lock();
        if p.closed {
            return Err(Closed);
        }
        // Wake the writer only when its plan changes: the first write
        // starts the batch's clock, a waited-for one or a full batch makes
        // it due now.
        let wake = p.sleeping
            && (p.items.is_empty() || (waited && !p.waited) || p.items.len() + 1 >= MAX_BATCH);
        if p.items.is_empty() {
            p.since = Some(Instant::now());
        }
        p.waited |= waited;
        p.items.push(item);
        drop(p);
        if wake {
            self.0.wake.notify_one();
        }
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.0.lock().senders += 1;
        Sender(Arc::clone(&self.0))
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut p = self.0.lock();
        p.senders -= 1;
        let last = p.senders == 0;
        let sleeping = p.sleeping;
        drop(p);
        if last && sleeping {
            self.0.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Long enough that a test which sees it pass knows the batch lingered.
    const LONG: Duration = Duration::from_secs(5);

    #[test]
    fn a_waited_write_makes_the_batch_due_at_once_with_everything_before_it() {
        let (q, tx) = Queue::new(LONG);
        for i in 0..5 {
            tx.send(i, false).unwrap();
        }
        tx.send(5, true).unwrap();
        let start = Instant::now();
        assert_eq!(q.next_batch(), Some(vec![0, 1, 2, 3, 4, 5]));
        assert!(start.elapsed() < LONG / 2, "{:?}", start.elapsed());
        // The next write starts a batch of its own.
        tx.send(6, true).unwrap();
        assert_eq!(q.next_batch(), Some(vec![6]));
    }

    #[test]
    fn writes_nobody_waits_for_are_committed_after_the_linger() {
        let linger = Duration::from_millis(50);
        let (q, tx) = Queue::new(linger);
        let writer = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || q.next_batch().map(|b| (Instant::now(), b)))
        };
        // Let the writer fall asleep on the empty queue first: the first
        // write must wake it to start the clock.
        std::thread::sleep(Duration::from_millis(30));
        let start = Instant::now();
        tx.send(1, false).unwrap();
        tx.send(2, false).unwrap();
        let (at, batch) = writer.join().unwrap().unwrap();
        assert_eq!(batch, vec![1, 2]);
        assert!(at - start >= linger, "committed after {:?}", at - start);
    }

    #[test]
    fn a_waited_write_wakes_a_lingering_writer() {
        let (q, tx) = Queue::new(LONG);
        let writer = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || q.next_batch())
        };
        tx.send(1, false).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let start = Instant::now();
        tx.send(2, true).unwrap();
        assert_eq!(writer.join().unwrap(), Some(vec![1, 2]));
        assert!(start.elapsed() < LONG / 2, "{:?}", start.elapsed());
    }

    #[test]
    fn the_last_handle_gone_the_writer_takes_what_is_left_and_ends() {
        let (q, tx) = Queue::new(LONG);
        let other = tx.clone();
        tx.send(1, false).unwrap();
        drop(tx);
        other.send(2, false).unwrap();
        let writer = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || (q.next_batch(), q.next_batch()))
        };
        std::thread::sleep(Duration::from_millis(30));
        let start = Instant::now();
        drop(other);
        assert_eq!(writer.join().unwrap(), (Some(vec![1, 2]), None));
        assert!(start.elapsed() < LONG / 2, "{:?}", start.elapsed());
    }

    #[test]
    fn a_full_batch_is_due_at_once() {
        let (q, tx) = Queue::new(LONG);
        for i in 0..MAX_BATCH {
            tx.send(i, false).unwrap();
        }
        let start = Instant::now();
        assert_eq!(q.next_batch().map(|b| b.len()), Some(MAX_BATCH));
        assert!(start.elapsed() < LONG / 2, "{:?}", start.elapsed());
    }

    #[test]
    fn once_closed_writes_are_refused_and_queued_ones_dropped() {
        let (q, tx) = Queue::new(LONG);
        let (ack, done) = std::sync::mpsc::channel::<()>();
        tx.send(ack, true).unwrap();
        q.close();
        assert!(done.recv().is_err(), "the waiter learns it was dropped");
        let (ack2, _done2) = std::sync::mpsc::channel::<()>();
        assert!(tx.send(ack2, false).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Writes from several threads, some waited for: every write is
        /// committed once, each thread's in its order, and a waited write
        /// never waits for the linger (the queue's is far longer than the test).
        #[test]
        fn every_write_once_in_order_and_no_waited_write_lingers(
            plans in prop::collection::vec(prop::collection::vec(any::<bool>(), 1..40), 1..4)
        ) {
            let (q, tx) = Queue::new(Duration::from_secs(3600));
            let writer = {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    while let Some(b) = q.next_batch() {
                        // Dropping an ack is what releases its waiter.
                        seen.extend(b.into_iter().map(|(t, i, _ack)| (t, i)));
                    }
                    seen
                })
            };
            let threads: Vec<_> = plans
                .iter()
                .cloned()
                .enumerate()
                .map(|(t, plan)| {
                    let tx = tx.clone();
                    std::thread::spawn(move || {
                        for (i, waited) in plan.into_iter().enumerate() {
                            let (ack, done) = std::sync::mpsc::channel::<()>();
                            tx.send((t, i, Some(ack).filter(|_| waited)), waited).unwrap();
                            if waited {
                                // Dropped by the writer once taken: a waited
                                // write that lingered would hang here.
                                let _ = done.recv();
                            }
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            drop(tx);
            let seen: Vec<(usize, usize)> = writer.join().unwrap();
            for (t, plan) in plans.iter().enumerate() {
                let mine: Vec<usize> = seen.iter().filter(|(s, _)| *s == t).map(|(_, i)| *i).collect();
                prop_assert_eq!(mine, (0..plan.len()).collect::<Vec<_>>());
            }
            prop_assert_eq!(seen.len(), plans.iter().map(Vec::len).sum::<usize>());
        }
    }
}
