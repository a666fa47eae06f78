//! Retry delays as an iterator: the policy is data (`plan::RetryPolicy`), this
//! turns it into the sequence of delays between attempts.
//!
//! Exponential backoff doubles from `delay` up to `max_delay`; with full jitter
//! each delay is drawn uniformly from `[0, d]` (AWS's "full jitter", which
//! spreads a fan-out's retries instead of having them hit the API together).
//! The random source is injected so tests are deterministic.
//!
//! A call's retries are counted (`attempts`); a read's are not: a status read
//! goes on until its deadline, and a successful read starts the back-off over
//! ([`Backoff::unbounded`], [`Backoff::reset`]).

use std::time::Duration;

use rand::{Rng, RngExt, SeedableRng};

use crate::plan::{Backoff as BackoffKind, RetryPolicy};

/// How long status reads (and calls refused by throttling) go on being
/// retried when their step has no `timeout`.
pub const READ_LIMIT: Duration = Duration::from_secs(15 * 60);

/// The delays between attempts: yields `attempts - 1` delays, then `None`
/// (or, [`Backoff::unbounded`], never runs out).
pub struct Backoff<R> {
    policy: RetryPolicy,
    /// `None`: unbounded.
    retries_left: Option<u32>,
    next_base: Duration,
    rng: R,
}

impl Backoff<rand::rngs::SmallRng> {
    /// A backoff with a seeded fast RNG (the seed comes from the OS unless a
    /// test passes one).
    pub fn seeded(policy: &RetryPolicy, seed: u64) -> Self {
        Backoff::new(policy, rand::rngs::SmallRng::seed_from_u64(seed))
    }

    /// The delays of `policy` without its attempt count, for reads retried
    /// until a deadline.
    pub fn unbounded(policy: &RetryPolicy, seed: u64) -> Self {
        Backoff {
            retries_left: None,
            ..Backoff::seeded(policy, seed)
        }
    }
}

impl<R: Rng> Backoff<R> {
    /// Delays for `policy`, drawing jitter from `rng`.
    pub fn new(policy: &RetryPolicy, rng: R) -> Self {
        Backoff {
            policy: policy.clone(),
            retries_left: Some(policy.attempts.saturating_sub(1)),
            next_base: Duration::from_millis(policy.delay_millis),
            rng,
        }
    }

    /// Starts the delays over from the first one (after a successful read).
    pub fn reset(&mut self) {
        self.next_base = Duration::from_millis(self.policy.delay_millis);
    }
}

impl<R: Rng> Backoff<R> {
    /// The next delay without using up an attempt (a call refused by
    /// throttling before it was processed).
    pub fn next_uncounted(&mut self) -> Duration {
        let max = Duration::from_millis(self.policy.max_delay_millis.max(self.policy.delay_millis));
        let base = self.next_base.min(max);
        if self.policy.backoff == BackoffKind::Exponential {
            self.next_base = base.saturating_mul(2).min(max);
        }
        if self.policy.jitter && !base.is_zero() {
            let millis = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
            Duration::from_millis(self.rng.random_range(0..=millis))
        } else {
            base
        }
    }
}

impl<R: Rng> Iterator for Backoff<R> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if let Some(left) = &mut self.retries_left {
            if *left == 0 {
                return None;
            }
            *left -= 1;
        }
        Some(self.next_uncounted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(attempts: u32, backoff: BackoffKind, jitter: bool) -> RetryPolicy {
        RetryPolicy {
            attempts,
            backoff,
            delay_millis: 100,
            max_delay_millis: 1_000,
            jitter,
        }
    }

    fn millis(b: impl Iterator<Item = Duration>) -> Vec<u128> {
        b.map(|d| d.as_millis()).collect()
    }

    #[test]
    fn exponential_doubles_up_to_the_cap() {
        let b = Backoff::seeded(&policy(7, BackoffKind::Exponential, false), 1);
        assert_eq!(millis(b), vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn fixed_repeats_the_delay() {
        let b = Backoff::seeded(&policy(4, BackoffKind::Fixed, false), 1);
        assert_eq!(millis(b), vec![100, 100, 100]);
    }

    #[test]
    fn one_attempt_means_no_retry() {
        assert_eq!(
            Backoff::seeded(&policy(1, BackoffKind::Fixed, false), 1).count(),
            0
        );
    }

    #[test]
    fn unbounded_never_runs_out_and_a_reset_starts_over() {
        let mut b = Backoff::unbounded(&policy(1, BackoffKind::Exponential, false), 1);
        let first: Vec<u128> = (&mut b).take(8).map(|d| d.as_millis()).collect();
        assert_eq!(first, vec![100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn uncounted_delays_back_off_without_using_up_attempts() {
        let mut b = Backoff::seeded(&policy(2, BackoffKind::Exponential, false), 1);
        assert_eq!(b.next_uncounted(), Duration::from_millis(100));
        assert_eq!(b.next_uncounted(), Duration::from_millis(200));
        assert_eq!(b.next(), Some(Duration::from_millis(400)));
        assert_eq!(b.next(), None);
    }

    #[test]
    fn full_jitter_stays_within_the_uncapped_delay_and_is_reproducible() {
        let a = millis(Backoff::seeded(
            &policy(7, BackoffKind::Exponential, true),
            42,
        ));
        let b = millis(Backoff::seeded(
            &policy(7, BackoffKind::Exponential, true),
            42,
        ));
        assert_eq!(a, b, "same seed, same delays");
        let caps = [100, 200, 400, 800, 1000, 1000];
        for (d, cap) in a.iter().zip(caps) {
            assert!(*d <= cap, "{d} > {cap}");
        }
        let c = millis(Backoff::seeded(
            &policy(7, BackoffKind::Exponential, true),
            7,
        ));
        assert_ne!(a, c, "different seeds spread the delays");
    }
}
