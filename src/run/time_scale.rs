//! Compressed time for rehearsals: `run --sim --time-scale N` divides every
//! duration of the run by `N`, the engine's (sleeps, poll intervals,
//! back-offs, `x-acs-retry-after`, step and wait timeouts, settle windows,
//! `--run-timeout`) and the in-process simulator's (transition delays, so a
//! stop that shows late shows late by `1/N` of the time). Every such duration
//! goes through [`TimeScale::apply`]; nothing else divides time.
//!
//! The HTTP timeouts (`--request-timeout`, `--connect-timeout`) and the
//! simulator's `slow` fault are not scaled: they bound one exchange over
//! loopback, which takes real time whatever the scale.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// By how much a rehearsal compresses time: 1 (real time) or more.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct TimeScale(f64);

impl TimeScale {
    /// Real time.
    pub const REAL: TimeScale = TimeScale(1.0);

    /// A scale of `factor` (finite, at least 1).
    pub fn new(factor: f64) -> Result<TimeScale, String> {
        if factor.is_finite() && factor >= 1.0 {
            Ok(TimeScale(factor))
        } else {
            Err(format!(
                "a time scale must be a number of at least 1 (e.g. 10 or 2.5), got {factor}"
            ))
        }
    }

    /// The factor durations are divided by.
    pub fn factor(self) -> f64 {
        self.0
    }

    /// Whether time runs as on the clock.
    pub fn is_real(self) -> bool {
        self.0 == 1.0
    }

    /// `d` in compressed time: `d / N`.
    pub fn apply(self, d: Duration) -> Duration {
        if self.is_real() {
            return d;
        }
        // Huge durations (a fixture's `99999999h`) stay as they are rather
        // than overflow in the conversion.
        Duration::try_from_secs_f64(d.as_secs_f64() / self.0).unwrap_or(d)
    }
}

impl Default for TimeScale {
    fn default() -> TimeScale {
        TimeScale::REAL
    }
}

impl TryFrom<f64> for TimeScale {
    type Error = String;
    fn try_from(factor: f64) -> Result<TimeScale, String> {
        TimeScale::new(factor)
    }
}

impl From<TimeScale> for f64 {
    fn from(t: TimeScale) -> f64 {
        t.0
    }
}

impl FromStr for TimeScale {
    type Err = String;
    fn from_str(s: &str) -> Result<TimeScale, String> {
        let factor: f64 = s.trim().parse().map_err(|_| {
            format!("a time scale must be a number of at least 1 (e.g. 10 or 2.5), got `{s}`")
        })?;
        TimeScale::new(factor)
    }
}

impl fmt::Display for TimeScale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divides_durations_and_leaves_real_time_alone() {
        let t: TimeScale = "10".parse().unwrap();
        assert_eq!(t.apply(Duration::from_secs(20)), Duration::from_secs(2));
        assert_eq!(
            "2.5"
                .parse::<TimeScale>()
                .unwrap()
                .apply(Duration::from_secs(5)),
            Duration::from_secs(2)
        );
        assert_eq!(TimeScale::REAL.apply(Duration::MAX), Duration::MAX);
        assert!(t.apply(Duration::MAX) < Duration::MAX);
    }

    #[test]
    fn refuses_less_than_one_and_non_numbers() {
        for bad in ["0", "0.5", "-3", "NaN", "inf", "ten", ""] {
            assert!(bad.parse::<TimeScale>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<TimeScale>("0.5").is_err());
        assert_eq!(
            serde_json::from_str::<TimeScale>("50").unwrap(),
            TimeScale::new(50.0).unwrap()
        );
    }
}
