//! Fault injection: the share of calls the simulator throttles, fails, slows
//! down or drops, and the per-product QPS limits past which it throttles.
//!
//! A spec is a comma-separated list of rules, `KIND[@ACTION]=VALUE[#N]`:
//!
//! | rule | effect |
//! |---|---|
//! | `throttle=0.2` | 20 % of calls answer `Throttling.User` (429 DataWorks, 400 DTS), not applied |
//! | `error=0.05` | 5 % answer 500 `InternalError.System`, not applied |
//! | `drop=0.02` | 2 % close the connection without an answer, *before* the call is applied |
//! | `applied_drop=0.05` | 5 % apply the call, *then* close the connection without an answer |
//! | `deny=0.1` | 10 % answer 403 `Forbidden.RAM` (a permanent error), not applied |
//! | `slow=0.1:2s` | 10 % wait 2 s before answering (after the call is applied) |
//! | `qps=dataworks:20` | at most 20 calls a second to DataWorks (a token bucket); more are throttled |
//!
//! `@ACTION` limits a rule to one RPC action (`applied_drop@TerminateDISyncInstance=1`);
//! `#N` fires it at most N times (`throttle@StopDtsJob=1#2`: the first two
//! `StopDtsJob` calls are throttled, later ones pass). Throttle, error, drop,
//! applied_drop and deny are exclusive: one random draw per call picks at most one
//! of them, so their shares for any action add up to at most 1. Slow is drawn
//! separately and adds its delay to whatever happens. The draws come from a
//! generator seeded with `--seed`, so a sequential client sees the same faults
//! on every run.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::served;

/// What an injected fault does to a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer `Throttling.User` without applying the call.
    Throttle,
    /// Answer 500 `InternalError.System` without applying the call.
    Error,
    /// Close the connection without an answer, before applying the call.
    Drop,
    /// Apply the call, then close the connection without an answer.
    AppliedDrop,
    /// Answer 403 `Forbidden.RAM` (access denied, a permanent error) without
    /// applying the call.
    Deny,
    /// Wait before answering.
    Slow,
    /// Throttled by a per-product QPS limit (not a rule; recorded in the call log).
    Qps,
}

impl FaultKind {
    /// The name used in specs and call logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Throttle => "throttle",
            FaultKind::Error => "error",
            FaultKind::Drop => "drop",
            FaultKind::AppliedDrop => "applied_drop",
            FaultKind::Deny => "deny",
            FaultKind::Slow => "slow",
            FaultKind::Qps => "qps",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule of a fault spec.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    /// What it does (never [`FaultKind::Qps`]).
    pub kind: FaultKind,
    /// Share of the matching calls it hits, in `[0, 1]`.
    pub share: f64,
    /// How long a [`FaultKind::Slow`] answer waits (zero for other kinds).
    pub delay: Duration,
    /// Only calls of this RPC action (`TerminateDISyncInstance`); `None`: all.
    pub action: Option<String>,
    /// Fire at most this many times; `None`: no limit.
    pub limit: Option<u64>,
}

impl FaultRule {
    /// A rule hitting `share` of all calls.
    pub fn new(kind: FaultKind, share: f64) -> FaultRule {
        FaultRule {
            kind,
            share,
            delay: Duration::ZERO,
            action: None,
            limit: None,
        }
    }

    /// Limits the rule to calls of one RPC action.
    #[must_use]
    pub fn on(mut self, action: &str) -> FaultRule {
        self.action = Some(action.to_owned());
        self
    }

    /// Fires at most `n` times.
    #[must_use]
    pub fn times(mut self, n: u64) -> FaultRule {
        self.limit = Some(n);
        self
    }

    fn matches(&self, action: &str) -> bool {
        self.action.as_deref().is_none_or(|a| a == action)
    }
}

/// A parsed `--faults` spec. The default injects nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultSpec {
    /// Rules, in the order written (which is the order they are drawn in).
    pub rules: Vec<FaultRule>,
    /// Calls per second allowed per product (`dataworks`, `dts`).
    pub qps: BTreeMap<String, u32>,
}

/// A `--faults` spec that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid fault `{item}`: {reason}")]
pub struct FaultSpecError {
    /// The rule (or the whole spec) at fault.
    pub item: String,
    /// Why.
    pub reason: String,
}

impl FaultSpec {
    /// Whether the spec injects nothing at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.qps.is_empty()
    }

    /// Adds a rule (builder style, for in-process tests).
    #[must_use]
    pub fn with(mut self, rule: FaultRule) -> FaultSpec {
        self.rules.push(rule);
        self
    }

    /// Adds a QPS limit for a product (builder style).
    #[must_use]
    pub fn with_qps(mut self, product: &str, per_second: u32) -> FaultSpec {
        self.qps.insert(product.to_owned(), per_second);
        self
    }

    /// Checks shares, actions and limits (parsing does this; call it for
    /// specs built in code).
    pub fn validate(&self) -> Result<(), FaultSpecError> {
        let whole = || self.to_string();
        for rule in &self.rules {
            let item = rule_text(rule);
            let err = |reason: String| FaultSpecError {
                item: item.clone(),
                reason,
            };
            if rule.kind == FaultKind::Qps {
                return Err(err("qps limits go in `qps`, not in a rule".to_owned()));
            }
            if !(0.0..=1.0).contains(&rule.share) {
                return Err(err("the share must be between 0 and 1".to_owned()));
            }
            if let Some(action) = &rule.action
                && !served::served().any(|s| s.action == action)
            {
                let known: Vec<_> = served::served().map(|s| s.action).collect();
                return Err(err(format!(
                    "unknown action `{action}` (known: {})",
                    known.join(", ")
                )));
            }
        }
        for (product, limit) in &self.qps {
            if !matches!(product.as_str(), "dataworks" | "dts") {
                return Err(FaultSpecError {
                    item: format!("qps={product}:{limit}"),
                    reason: "the product must be dataworks or dts".to_owned(),
                });
            }
            if *limit == 0 {
                return Err(FaultSpecError {
                    item: format!("qps={product}:{limit}"),
                    reason: "the limit must be at least 1 call per second".to_owned(),
                });
            }
        }
        // Outcome faults are exclusive, and so are slow ones: per action, the
        // shares that can apply together must fit in one draw.
        for slow in [false, true] {
            for action in served::served().map(|s| s.action) {
                let total: f64 = self
                    .rules
                    .iter()
                    .filter(|r| (r.kind == FaultKind::Slow) == slow && r.matches(action))
                    .map(|r| r.share)
                    .sum();
                if total > 1.0 + 1e-9 {
                    let what = if slow {
                        "slow"
                    } else {
                        "throttle, error, drop, applied_drop and deny"
                    };
                    return Err(FaultSpecError {
                        item: whole(),
                        reason: format!(
                            "the {what} shares for {action} add up to {total}, more than 1"
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

fn rule_text(rule: &FaultRule) -> String {
    let mut out = rule.kind.as_str().to_owned();
    if let Some(action) = &rule.action {
        out.push('@');
        out.push_str(action);
    }
    out.push('=');
    out.push_str(&rule.share.to_string());
    if rule.kind == FaultKind::Slow {
        out.push(':');
        out.push_str(&format!("{:?}", rule.delay));
    }
    if let Some(n) = rule.limit {
        out.push('#');
        out.push_str(&n.to_string());
    }
    out
}

impl fmt::Display for FaultSpec {
    /// The spec in the syntax it is parsed from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items = self
            .rules
            .iter()
            .map(rule_text)
            .chain(self.qps.iter().map(|(p, n)| format!("qps={p}:{n}")));
        for (i, item) in items.enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&item)?;
        }
        Ok(())
    }
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(text: &str) -> Result<FaultSpec, FaultSpecError> {
        let mut spec = FaultSpec::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let err = |reason: &str| FaultSpecError {
                item: item.to_owned(),
                reason: reason.to_owned(),
            };
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| err("expected KIND=VALUE"))?;
            let (kind, action) = match key.split_once('@') {
                Some((kind, action)) => (kind.trim(), Some(action.trim().to_owned())),
                None => (key.trim(), None),
            };
            if kind == "qps" {
                if action.is_some() {
                    return Err(err(
                        "a qps limit applies to a whole product, not to one action",
                    ));
                }
                let (product, limit) = value
                    .split_once(':')
                    .ok_or_else(|| err("expected qps=PRODUCT:N, e.g. qps=dataworks:20"))?;
                let limit: u32 = limit
                    .trim()
                    .parse()
                    .map_err(|_| err("the limit must be a whole number"))?;
                spec.qps.insert(product.trim().to_ascii_lowercase(), limit);
                continue;
            }
            let kind = match kind {
                "throttle" => FaultKind::Throttle,
                "error" => FaultKind::Error,
                "drop" => FaultKind::Drop,
                "applied_drop" => FaultKind::AppliedDrop,
                "deny" => FaultKind::Deny,
                "slow" => FaultKind::Slow,
                _ => {
                    return Err(err(
                        "unknown kind (expected throttle, error, drop, applied_drop, deny, slow or qps)",
                    ));
                }
            };
            let (value, limit) = match value.split_once('#') {
                Some((v, n)) => {
                    let n: u64 = n
                        .trim()
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| err("`#N` needs a whole number of at least 1"))?;
                    (v, Some(n))
                }
                None => (value, None),
            };
            let (share, delay) = if kind == FaultKind::Slow {
                let (share, delay) = value
                    .split_once(':')
                    .ok_or_else(|| err("expected slow=SHARE:DURATION, e.g. slow=0.1:2s"))?;
                let delay = crate::duration::parse(delay).map_err(|e| err(&e.to_string()))?;
                (share, delay)
            } else {
                (value, Duration::ZERO)
            };
            let share: f64 = share
                .trim()
                .parse()
                .map_err(|_| err("the share must be a number between 0 and 1"))?;
            if !share.is_finite() {
                return Err(err("the share must be a number between 0 and 1"));
            }
            spec.rules.push(FaultRule {
                kind,
                share,
                delay,
                action,
                limit,
            });
        }
        spec.validate()?;
        Ok(spec)
    }
}

/// What the dice decided for one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Draw {
    /// At most one of throttle, error, drop, applied_drop, deny.
    pub(crate) outcome: Option<FaultKind>,
    /// A slow answer's delay.
    pub(crate) slow: Option<Duration>,
}

/// The live state of fault injection: the seeded generator, what is left of
/// each limited rule, and the QPS buckets.
pub(crate) struct Faults {
    rules: Vec<(FaultRule, Option<u64>)>,
    rng: StdRng,
    buckets: BTreeMap<String, Bucket>,
}

impl Faults {
    pub(crate) fn new(spec: &FaultSpec, seed: u64, now: Instant) -> Faults {
        Faults {
            rules: spec.rules.iter().map(|r| (r.clone(), r.limit)).collect(),
            rng: StdRng::seed_from_u64(seed),
            buckets: spec
                .qps
                .iter()
                .map(|(product, &rate)| (product.clone(), Bucket::new(rate, now)))
                .collect(),
        }
    }

    /// Takes a token from `product`'s bucket, or says how long until one is free.
    pub(crate) fn admit(&mut self, product: &str, now: Instant) -> Result<(), Duration> {
        match self.buckets.get_mut(product) {
            Some(bucket) => bucket.take(now),
            None => Ok(()),
        }
    }

    /// Rolls the dice for one call of `action`.
    pub(crate) fn draw(&mut self, action: &str) -> Draw {
        let outcome = self.pick(action, false).map(|i| self.rules[i].0.kind);
        let slow = self.pick(action, true).map(|i| self.rules[i].0.delay);
        Draw { outcome, slow }
    }

    /// One draw over the rules of one family that still apply to `action`.
    fn pick(&mut self, action: &str, slow: bool) -> Option<usize> {
        let live = |(rule, left): &(FaultRule, Option<u64>)| {
            (rule.kind == FaultKind::Slow) == slow && rule.matches(action) && *left != Some(0)
        };
        // No draw when nothing can fire, so unrelated calls do not shift the sequence.
        if !self.rules.iter().any(live) {
            return None;
        }
        let roll: f64 = self.rng.random();
        let mut upper = 0.0;
        for (i, entry) in self.rules.iter_mut().enumerate() {
            if !live(entry) {
                continue;
            }
            upper += entry.0.share;
            if roll < upper {
                if let Some(left) = &mut entry.1 {
                    *left -= 1;
                }
                return Some(i);
            }
        }
        None
    }
}

/// A token bucket holding at most one second's worth of calls.
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, now: Instant) -> Bucket {
        let rate = f64::from(rate);
        Bucket {
            rate,
            tokens: rate,
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let spec: FaultSpec =
            "throttle=0.2,error=0.05,slow=0.1:2s,drop=0.02,applied_drop=0.05,qps=dataworks:20"
                .parse()
                .unwrap();
        assert_eq!(spec.rules.len(), 5);
        assert_eq!(spec.rules[2].kind, FaultKind::Slow);
        assert_eq!(spec.rules[2].delay, Duration::from_secs(2));
        assert_eq!(spec.qps["dataworks"], 20);
        assert_eq!(
            spec.to_string(),
            "throttle=0.2,error=0.05,slow=0.1:2s,drop=0.02,applied_drop=0.05,qps=dataworks:20"
        );
        let round: FaultSpec = spec.to_string().parse().unwrap();
        assert_eq!(round, spec);
    }

    #[test]
    fn parses_scoped_and_limited_rules() {
        let spec: FaultSpec = "applied_drop@TerminateDISyncInstance=1#1, throttle@StopDtsJob=1"
            .parse()
            .unwrap();
        assert_eq!(
            spec.rules[0],
            FaultRule::new(FaultKind::AppliedDrop, 1.0)
                .on("TerminateDISyncInstance")
                .times(1)
        );
        assert_eq!(spec.rules[1].action.as_deref(), Some("StopDtsJob"));
        assert!("".parse::<FaultSpec>().unwrap().is_empty());
        let slow: FaultSpec = "slow=0.5:1500ms".parse().unwrap();
        assert_eq!(slow.to_string(), "slow=0.5:1.5s");
        assert_eq!(slow.to_string().parse::<FaultSpec>().unwrap(), slow);
    }

    #[test]
    fn refuses_bad_specs_with_the_reason() {
        for (text, reason) in [
            ("throttle", "expected KIND=VALUE"),
            ("boom=0.1", "unknown kind"),
            ("throttle=2", "between 0 and 1"),
            ("throttle=x", "between 0 and 1"),
            ("slow=0.1", "slow=SHARE:DURATION"),
            ("slow=0.1:soon", "invalid duration"),
            ("qps=dataworks", "qps=PRODUCT:N"),
            ("qps=ecs:5", "dataworks or dts"),
            ("qps=dts:0", "at least 1"),
            ("qps@StopDtsJob=dts:1", "whole product"),
            ("drop@Nope=1", "unknown action `Nope`"),
            ("throttle=0.6,error=0.6", "add up to"),
            ("drop=0.5,drop@StopDtsJob=0.6", "for StopDtsJob add up to"),
            ("drop=1#x", "whole number"),
        ] {
            let err = text.parse::<FaultSpec>().unwrap_err();
            assert!(err.to_string().contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn draws_are_deterministic_and_respect_shares_scopes_and_limits() {
        let spec: FaultSpec = "drop=0.5".parse().unwrap();
        let run = |seed| {
            let mut f = Faults::new(&spec, seed, Instant::now());
            (0..64)
                .map(|_| f.draw("StopDtsJob").outcome.is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let hits = run(7).iter().filter(|h| **h).count();
        assert!((16..=48).contains(&hits), "{hits} of 64");

        let spec: FaultSpec = "throttle@StopDtsJob=1#2,slow=1:5ms".parse().unwrap();
        let mut f = Faults::new(&spec, 0, Instant::now());
        assert_eq!(f.draw("DescribeDtsJobDetail").outcome, None);
        assert_eq!(f.draw("StopDtsJob").outcome, Some(FaultKind::Throttle));
        assert_eq!(f.draw("StopDtsJob").outcome, Some(FaultKind::Throttle));
        let third = f.draw("StopDtsJob");
        assert_eq!(third.outcome, None);
        assert_eq!(third.slow, Some(Duration::from_millis(5)));
    }

    #[test]
    fn bucket_allows_a_burst_then_refills() {
        let start = Instant::now();
        let mut f = Faults::new(&FaultSpec::default().with_qps("dts", 4), 0, start);
        for _ in 0..4 {
            assert!(f.admit("dts", start).is_ok());
        }
        let wait = f.admit("dts", start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(250));
        assert!(
            f.admit("dataworks", start).is_ok(),
            "no limit for dataworks"
        );
        assert!(f.admit("dts", start + Duration::from_millis(260)).is_ok());
        assert!(f.admit("dts", start + Duration::from_millis(260)).is_err());
    }
}
