//! Change windows during a run: the refusal before anything is sent, and
//! the watch that tells the scheduler when the window closes.
//!
//! The window a run keeps to is the plan's (`window` in the playbook, so a
//! saved plan and a resumed run carry it) narrowed by this invocation's
//! `--not-before`/`--not-after` ([`Bounds`]): a resume takes its own
//! flags, so a run stopped by `--not-after` goes on next time with a new one.
//!
//! Time comes from a [`Clock`]. The binary always uses [`SystemClock`];
//! there is no flag or variable that sets the time, since one would be a
//! way around the window. Tests give the engine their own clock.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use jiff::Timestamp;

use crate::plan::Plan;
use crate::window::{Bounds, Closed, State, Window, state};

/// What [`Clock::sleep_until`] returns.
pub type ClockSleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where the engine reads the time of day, and how it waits for a time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;

    /// Resolves at `t` or a little before, when the clock may have been set
    /// meanwhile (the caller reads [`Clock::now`] again). The default sleeps
    /// on tokio's timer for at most half a minute.
    fn sleep_until(&self, t: Timestamp) -> ClockSleep<'_> {
        let left = t
            .as_millisecond()
            .saturating_sub(self.now().as_millisecond());
        let wait = Duration::from_millis(u64::try_from(left).unwrap_or(0).max(1)).min(RECHECK);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// The system's clock: the only one the binary uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The window a run keeps to: the plan's, narrowed by the flags.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunWindow {
    /// The plan's window, if the playbook has one.
    pub window: Option<Window>,
    /// `--not-before` and `--not-after`.
    pub bounds: Bounds,
}

/// Longest the watch sleeps before it reads the clock again (the system
/// clock may be set while a run sleeps).
const RECHECK: Duration = Duration::from_secs(30);

impl RunWindow {
    /// The window of `plan` narrowed by `bounds`.
    pub fn new(plan: &Plan, bounds: Bounds) -> RunWindow {
        RunWindow {
            window: plan.window.clone(),
            bounds,
        }
    }

    /// Whether there is no window at all (every time is inside).
    pub fn is_unbounded(&self) -> bool {
        self.window.is_none() && self.bounds.is_empty()
    }

    /// Whether changes may be made at `now`, and until or from when.
    pub fn state(&self, now: Timestamp) -> State {
        state(self.window.as_ref(), &self.bounds, now)
    }

    /// Admits a run at `now`: `Ok(when the window closes)` (`None`: not
    /// within a year), or the refusal to show (exit 6, nothing sent).
    pub fn admit(&self, now: Timestamp) -> Result<Option<Timestamp>, WindowRefusal> {
        match self.state(now) {
            State::Open { closes } => Ok(closes),
            State::Closed { next, why } => Err(WindowRefusal {
                window: Box::new(self.clone()),
                next,
                why,
            }),
        }
    }

    /// Waits until the window is closed, reading `clock` again at least
    /// every half minute; returns when it closed (at once when it is closed
    /// already). Never returns for a window with no close.
    pub async fn closed(&self, clock: &dyn Clock) -> Timestamp {
        let mut closes = None;
        loop {
            let now = clock.now();
            match self.state(now) {
                // When it was due to close, if the clock passed that; else now.
                State::Closed { .. } => return closes.filter(|&c| c <= now).unwrap_or(now),
                State::Open { closes: Some(c) } => {
                    closes = Some(c);
                    clock.sleep_until(c).await;
                }
                State::Open { closes: None } => {
                    closes = None;
                    tokio::time::sleep(RECHECK).await;
                }
            }
        }
    }

    /// `t` as people read it: in the window's zone and in UTC, or in UTC.
    pub fn at(&self, t: Timestamp) -> String {
        match &self.window {
            Some(w) => format!("{} ({t})", w.local(t)),
            None => t.to_string(),
        }
    }

    /// The window as written, with the flags that narrow it.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(w) = &self.window {
            parts.push(w.describe());
        }
        if let Some(t) = self.bounds.not_before {
            parts.push(format!("--not-before {t}"));
        }
        if let Some(t) = self.bounds.not_after {
            parts.push(format!("--not-after {t}"));
        }
        parts.join(", ")
    }
}

/// A run refused because its window is closed.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowRefusal {
    window: Box<RunWindow>,
    next: Option<(Timestamp, Option<Timestamp>)>,
    why: Closed,
}

impl WindowRefusal {
    /// The next opening, if there is one: when it opens and closes.
    pub fn next(&self) -> Option<(Timestamp, Option<Timestamp>)> {
        self.next
    }

    /// Why the window is closed.
    pub fn why(&self) -> Closed {
        self.why
    }

    /// When it next opens, and what to do.
    pub fn hint(&self) -> String {
        match self.next {
            Some((opens, closes)) => {
                let until = closes
                    .map(|c| format!(" until {}", self.window.at(c)))
                    .unwrap_or_default();
                format!(
                    "it next opens {}{until}; run it then (a timer or CronJob that fires at the opening does)",
                    self.window.at(opens)
                )
            }
            None if self.why == Closed::NotAfter => {
                "it does not open again before --not-after; give a later one (or none) to run it"
                    .to_owned()
            }
            None => {
                "it does not open again within a year: check the window's slots and blackout dates"
                    .to_owned()
            }
        }
    }
}

impl fmt::Display for WindowRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.why {
            Closed::NotBefore => "it is before --not-before".to_owned(),
            Closed::NotAfter => "--not-after has passed".to_owned(),
            Closed::Blackout(day) => format!("{day} is a blackout date"),
            Closed::OutsideSlots => "now is outside its slots".to_owned(),
        };
        write!(
            f,
            "outside the change window ({}): {why}; nothing was sent",
            self.window.describe()
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn window() -> RunWindow {
        let plan = crate::plan::plan_of_yaml(
            "name: w\nwindow: { tz: Asia/Shanghai, slots: [\"Sat 02:00-05:00\"], blackout: [2026-12-12] }\nsteps:\n  - id: nap\n    sleep: 1s\n",
        );
        RunWindow::new(&plan, Bounds::default())
    }

    #[test]
    fn refusals_say_why_and_when_it_opens_in_the_zone_and_in_utc() {
        let w = window();
        let e = w.admit(ts("2026-12-04T12:00:00Z")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "outside the change window (Sat 02:00-05:00 (Asia/Shanghai); blackout 2026-12-12): now is outside its slots; nothing was sent"
        );
        assert_eq!(
            e.hint(),
            "it next opens Sat 2026-12-05 02:00 CST (2026-12-04T18:00:00Z) until Sat 2026-12-05 05:00 CST (2026-12-04T21:00:00Z); run it then (a timer or CronJob that fires at the opening does)"
        );
        // On the blackout Saturday itself.
        let e = w.admit(ts("2026-12-11T19:00:00Z")).unwrap_err();
        assert!(
            e.to_string().contains("2026-12-12 is a blackout date"),
            "{e}"
        );
        assert_eq!(e.next().unwrap().0, ts("2026-12-18T18:00:00Z"));
        assert_eq!(
            w.admit(ts("2026-12-04T19:00:00Z")),
            Ok(Some(ts("2026-12-04T21:00:00Z")))
        );
        let narrowed = RunWindow {
            bounds: Bounds {
                not_before: None,
                not_after: Some(ts("2026-12-04T18:30:00Z")),
            },
            ..w
        };
        let e = narrowed.admit(ts("2026-12-04T19:00:00Z")).unwrap_err();
        assert_eq!(e.why(), Closed::NotAfter);
        assert!(e.hint().contains("later one"), "{}", e.hint());
    }

    /// A clock that follows tokio's (paused) time from a fixed instant.
    struct TokioClock {
        base: Timestamp,
        start: tokio::time::Instant,
    }

    impl Clock for TokioClock {
        fn now(&self) -> Timestamp {
            let d = jiff::SignedDuration::try_from(self.start.elapsed()).unwrap();
            self.base.checked_add(d).unwrap()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_watch_fires_when_the_window_closes() {
        let clock = Arc::new(TokioClock {
            base: ts("2026-12-04T20:59:00Z"),
            start: tokio::time::Instant::now(),
        });
        let w = window();
        let closed = w.closed(clock.as_ref()).await;
        assert_eq!(closed, ts("2026-12-04T21:00:00Z"));
        assert_eq!(clock.start.elapsed(), Duration::from_secs(60));
        // Closed already: at once.
        let at = w.closed(clock.as_ref()).await;
        assert_eq!(at, ts("2026-12-04T21:00:00Z"));
    }
}
