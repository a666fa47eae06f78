//! Change windows: the hours a playbook may change things in, as a pure
//! function of the time, which is always passed in (never read here).
//!
//! A playbook's `window: { tz, slots, blackout }` is parsed into a
//! [`Window`]; `run`/`resume --not-before/--not-after` are [`Bounds`]; the
//! time a run may change things in is their intersection ([`state`]).
//! Bounds can only narrow a window: a `--not-before` earlier than the
//! window's opening changes nothing, and nothing can widen it.
//!
//! - A slot is `DAYS HH:MM-HH:MM` in the window's time zone. DAYS is
//!   `daily`, a day (`Sat`, or `Saturday`), a range (`Mon-Fri`, `Fri-Mon`
//!   wraps) or a comma list of those (`Sat,Sun`). A slot whose end is
//!   before its start ends the next day (`Sat 22:00-02:00` is Saturday
//!   22:00 to Sunday 02:00); `24:00` is the end of the day.
//! - A blackout date removes the whole local day, also from a slot that
//!   began the day before (the window is the slots minus the blackout days).
//! - Slots that touch or overlap are one opening: `Sat 22:00-24:00` and
//!   `Sun 00:00-02:00` close at 02:00, not at midnight.
//! - Local times that a DST change skips or repeats resolve as RFC 5545
//!   and Temporal's "compatible" rule: a skipped time moves forward by the
//!   gap, a repeated one takes its first occurrence.
//!
//! The time zone database is embedded in the binary (jiff's
//! `tzdb-bundle-always`), not read from `/usr/share/zoneinfo`: a window
//! means the same on a laptop that validated it and in the minimal
//! container that runs it, which often has no zoneinfo at all.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How far ahead openings are looked for (a window that does not open
/// within this many days is reported as not opening again).
const HORIZON_DAYS: i32 = 400;

/// Day names as written in slots, Monday first.
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const DAY_NAMES: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// A change window: weekly slots in a time zone, minus blackout dates.
#[derive(Clone)]
pub struct Window {
    tz: TimeZone,
    tz_name: String,
    slots: Vec<Slot>,
    blackout: Vec<Date>,
}

impl fmt::Debug for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Window")
            .field("tz", &self.tz_name)
            .field("slots", &self.slots)
            .field("blackout", &self.blackout)
            .finish()
    }
}

impl PartialEq for Window {
    fn eq(&self, other: &Window) -> bool {
        self.tz_name == other.tz_name
            && self.slots == other.slots
            && self.blackout == other.blackout
    }
}

/// One weekly slot: the days it starts on and its local start and end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Bit `i` set: the slot starts on day `i` (Monday is 0).
    days: u8,
    /// Minutes after local midnight, `0..1440`.
    start: u16,
    /// Minutes after local midnight, `1..=1440`; not after `start`: the next day.
    end: u16,
}

/// What is wrong with a slot, a time zone or a date, and where in its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    /// A lower-case fragment that reads well after `error: `.
    pub message: String,
    /// Byte offset of the offending part in the text.
    pub offset: usize,
    /// Its length in bytes (the whole text when 0).
    pub len: usize,
    /// What to do about it.
    pub hint: Option<String>,
}

impl SpecError {
    fn new(message: String, offset: usize, len: usize, hint: Option<String>) -> SpecError {
        SpecError {
            message,
            offset,
            len,
            hint,
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// The day `name` names (0 = Monday), case-insensitive, short or long.
fn day_index(name: &str) -> Option<usize> {
    (0..7).find(|&i| DAYS[i].eq_ignore_ascii_case(name) || DAY_NAMES[i].eq_ignore_ascii_case(name))
}

/// Parses `DAYS`; `at` is its offset in the slot text.
fn parse_days(text: &str, at: usize) -> Result<u8, SpecError> {
    if text.eq_ignore_ascii_case("daily") {
        return Ok(0x7f);
    }
    let mut days = 0u8;
    let mut offset = at;
    for part in text.split(',') {
        let day = |name: &str, off: usize| {
            day_index(name).ok_or_else(|| {
                let candidates = DAYS.iter().chain(&DAY_NAMES).copied().chain(["daily"]);
                let hint = crate::playbook::diagnostic::did_you_mean(name, candidates)
                    .unwrap_or_else(|| {
                        "days are `Mon` .. `Sun`, a range `Mon-Fri`, a list `Sat,Sun` or `daily`"
                            .to_owned()
                    });
                let message = if name.is_empty() {
                    "a slot has an empty day".to_owned()
                } else {
                    format!("unknown day `{name}` in a window slot")
                };
                SpecError::new(message, off, name.len(), Some(hint))
            })
        };
        match part.split_once('-') {
            Some((from, to)) => {
                let a = day(from, offset)?;
                let b = day(to, offset + from.len() + 1)?;
                let mut i = a;
                loop {
                    days |= 1 << i;
                    if i == b {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => days |= 1 << day(part, offset)?,
        }
        offset += part.len() + 1;
    }
    Ok(days)
}

/// Parses `HH:MM` (or `H:MM`) into minutes after midnight; `24:00` only
/// when `end`.
fn parse_time(text: &str, at: usize, end: bool) -> Result<u16, SpecError> {
    let bad = |why: String| {
        SpecError::new(
            why,
            at,
            text.len(),
            Some(
                "times are 24-hour `HH:MM` in the window's `tz`, e.g. `Sat 02:00-05:00`".to_owned(),
            ),
        )
    };
    let Some((h, m)) = text.split_once(':') else {
        return Err(bad(format!("`{text}` is not a time")));
    };
    let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(h, 1..=2) || !digits(m, 2..=2) {
        return Err(bad(format!("`{text}` is not a time")));
    }
    let (h, m): (u16, u16) = (h.parse().unwrap_or(99), m.parse().unwrap_or(99));
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad(format!("`{text}` is not a time of day")));
    }
    if h == 24 && !end {
        return Err(SpecError::new(
            "a slot cannot start at `24:00`".to_owned(),
            at,
            text.len(),
            Some("start it at `00:00` of the next day".to_owned()),
        ));
    }
    Ok(h * 60 + m)
}

impl Slot {
    /// Parses `DAYS HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Result<Slot, SpecError> {
        let lead = text.len() - text.trim_start().len();
        let body = text.trim();
        let form = "write a slot as `DAYS HH:MM-HH:MM`, e.g. `Sat 02:00-05:00`, `Mon-Fri 22:00-02:00` or `daily 01:00-03:00`";
        let Some((days_text, rest)) = body.split_once(char::is_whitespace) else {
            return Err(SpecError::new(
                format!("window slot `{body}` needs days and hours"),
                lead,
                body.len(),
                Some(form.to_owned()),
            ));
        };
        let days = parse_days(days_text, lead)?;
        let times_at = lead + body.len() - rest.trim_start().len();
        let times = rest.trim();
        let Some((a, b)) = times.split_once('-') else {
            return Err(SpecError::new(
                format!("window slot `{body}` needs a start and an end, `HH:MM-HH:MM`"),
                times_at,
                times.len(),
                Some(form.to_owned()),
            ));
        };
        let start = parse_time(a.trim(), times_at, false)?;
        let end = parse_time(b.trim(), times_at + a.len() + 1, true)?;
        if start == end {
            return Err(SpecError::new(
                format!("window slot `{body}` is empty: it ends when it starts"),
                times_at,
                times.len(),
                Some("a slot whose end is before its start ends the next day (`Sat 22:00-02:00`); a whole day is `00:00-24:00`".to_owned()),
            ));
        }
        // `00:00` as an end is midnight at the end of the day.
        let end = if end == 0 { 24 * 60 } else { end };
        Ok(Slot { days, start, end })
    }

    /// Whether the slot ends on the day after it starts.
    fn overnight(self) -> bool {
        self.end <= self.start
    }
}

fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days == 0x7f {
            f.write_str("daily")?;
        } else {
            // Runs of consecutive days (Monday first) as ranges of 3 or more.
            let mut parts: Vec<String> = Vec::new();
            let mut i = 0;
            while i < 7 {
                if self.days & (1 << i) == 0 {
                    i += 1;
                    continue;
                }
                let mut j = i;
                while j + 1 < 7 && self.days & (1 << (j + 1)) != 0 {
                    j += 1;
                }
                if j - i >= 2 {
                    parts.push(format!("{}-{}", DAYS[i], DAYS[j]));
                } else {
                    parts.extend((i..=j).map(|k| DAYS[k].to_owned()));
                }
                i = j + 1;
            }
            f.write_str(&parts.join(","))?;
        }
        write!(f, " {}-{}", hhmm(self.start), hhmm(self.end))
    }
}

/// Parses a blackout date, `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Result<Date, SpecError> {
    let t = text.trim();
    let shape = t.len() == 10
        && t.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let hint = Some("write blackout dates as `YYYY-MM-DD`, e.g. `2026-12-31`".to_owned());
    if !shape {
        return Err(SpecError::new(
            format!("`{t}` is not a date"),
            0,
            text.len(),
            hint,
        ));
    }
    t.parse::<Date>().map_err(|_| {
        SpecError::new(
            format!("`{t}` is not a date in the calendar"),
            0,
            text.len(),
            hint,
        )
    })
}

/// The time zone called `name` (an IANA name such as `Asia/Shanghai`,
/// any case), from the embedded database.
pub fn parse_tz(name: &str) -> Result<TimeZone, SpecError> {
    let name = name.trim();
    let not_found = || {
        let db = jiff::tz::db();
        let names: Vec<String> = db.available().map(|n| n.as_str().to_owned()).collect();
        let hint =
            crate::playbook::diagnostic::did_you_mean(name, names.iter().map(String::as_str))
                .or_else(|| {
                    // `Shanghai` for `Asia/Shanghai`: match the last part.
                    let city: Vec<&str> = names
                        .iter()
                        .map(String::as_str)
                        .filter(|n| {
                            n.rsplit('/')
                                .next()
                                .is_some_and(|c| c.eq_ignore_ascii_case(name))
                        })
                        .collect();
                    (!city.is_empty()).then(|| format!("did you mean `{}`?", city.join("` or `")))
                })
                .unwrap_or_else(|| {
                    "use an IANA time zone name, e.g. `Asia/Shanghai`, `Europe/Berlin` or `UTC`"
                        .to_owned()
                });
        SpecError::new(format!("unknown time zone `{name}`"), 0, 0, Some(hint))
    };
    if name.is_empty() || name.starts_with(['+', '-']) {
        return Err(not_found());
    }
    TimeZone::get(name).map_err(|_| not_found())
}

/// A window as written: what the plan records and displays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowText {
    tz: String,
    slots: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    blackout: Vec<String>,
}

impl Window {
    /// A window from its parts as written; the first error found.
    pub fn parse<'a>(
        tz: &str,
        slots: impl IntoIterator<Item = &'a str>,
        blackout: impl IntoIterator<Item = &'a str>,
    ) -> Result<Window, SpecError> {
        let zone = parse_tz(tz)?;
        let tz_name = zone.iana_name().unwrap_or(tz.trim()).to_owned();
        let slots = slots
            .into_iter()
            .map(Slot::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if slots.is_empty() {
            return Err(SpecError::new(
                "a window has no slot".to_owned(),
                0,
                0,
                Some("add `slots: [\"Sat 02:00-05:00\"]`".to_owned()),
            ));
        }
        let mut blackout = blackout
            .into_iter()
            .map(parse_date)
            .collect::<Result<Vec<_>, _>>()?;
        blackout.sort_unstable();
        blackout.dedup();
        Ok(Window {
            tz: zone,
            tz_name,
            slots,
            blackout,
        })
    }

    /// The time zone's IANA name.
    pub fn tz_name(&self) -> &str {
        &self.tz_name
    }

    /// The time zone.
    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// The slots.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The blackout dates, sorted.
    pub fn blackout(&self) -> &[Date] {
        &self.blackout
    }

    /// The blackout date `t` falls on, if it does.
    pub fn blackout_at(&self, t: Timestamp) -> Option<Date> {
        let day = t.to_zoned(self.tz.clone()).date();
        self.blackout.binary_search(&day).ok().map(|_| day)
    }

    fn instant(&self, date: Date, minutes: u16) -> Timestamp {
        let (date, minutes) = if minutes >= 24 * 60 {
            (date.tomorrow().unwrap_or(date), minutes - 24 * 60)
        } else {
            (date, minutes)
        };
        let dt: DateTime = date.at(
            i8::try_from(minutes / 60).unwrap_or(0),
            i8::try_from(minutes % 60).unwrap_or(0),
            0,
            0,
        );
        self.tz
            .to_ambiguous_timestamp(dt)
            .compatible()
            .unwrap_or(Timestamp::MAX)
    }

    /// The openings that end after `from`, merged and in order, looked for
    /// up to [`HORIZON_DAYS`] ahead; the last one may be cut at the horizon
    /// (then its end is `None`).
    pub fn openings(&self, from: Timestamp) -> Vec<(Timestamp, Option<Timestamp>)> {
        let first = from
            .to_zoned(self.tz.clone())
            .date()
            .yesterday()
            .unwrap_or(Date::MIN);
        let mut raw: Vec<(Timestamp, Timestamp)> = Vec::new();
        let mut day = first;
        let mut horizon = Timestamp::MAX;
        for _ in 0..HORIZON_DAYS {
            let weekday = usize::try_from(day.weekday().to_monday_zero_offset()).unwrap_or(0);
            for slot in &self.slots {
                if slot.days & (1 << weekday) == 0 {
                    continue;
                }
                let end = if slot.overnight() {
                    slot.end + 24 * 60
                } else {
                    slot.end
                };
                raw.push((self.instant(day, slot.start), self.instant(day, end)));
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
            horizon = self.instant(day, 0);
        }
        // Blackout days out.
        let mut cut: Vec<(Timestamp, Timestamp)> = Vec::new();
        for (mut s, e) in raw {
            let mut pieces = Vec::new();
            for &b in &self.blackout {
                let (bs, be) = (self.instant(b, 0), self.instant(b, 24 * 60));
                if be <= s || bs >= e {
                    continue;
                }
                if bs > s {
                    pieces.push((s, bs));
                }
                s = s.max(be);
            }
            if s < e {
                pieces.push((s, e));
            }
            cut.extend(pieces);
        }
        cut.sort_unstable();
        let mut merged: Vec<(Timestamp, Timestamp)> = Vec::new();
        for (s, e) in cut {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
            .into_iter()
            .filter(|&(_, e)| e > from)
            .map(|(s, e)| (s, (e < horizon).then_some(e)))
            .collect()
    }

    /// The window as written, normalized (`tz`, `slots`, `blackout`).
    fn text(&self) -> WindowText {
        WindowText {
            tz: self.tz_name.clone(),
            slots: self.slots.iter().map(ToString::to_string).collect(),
            blackout: self.blackout.iter().map(ToString::to_string).collect(),
        }
    }

    /// `Sat 02:00-05:00 (Asia/Shanghai), blackout 2026-12-31`.
    pub fn describe(&self) -> String {
        let slots: Vec<String> = self.slots.iter().map(ToString::to_string).collect();
        let mut s = format!("{} ({})", slots.join(", "), self.tz_name);
        if !self.blackout.is_empty() {
            let dates: Vec<String> = self.blackout.iter().map(ToString::to_string).collect();
            s.push_str(&format!("; blackout {}", dates.join(", ")));
        }
        s
    }

    /// `t` in the window's time zone, as people read it: `Sat 2026-12-05 02:00 CST`.
    pub fn local(&self, t: Timestamp) -> String {
        t.to_zoned(self.tz.clone())
            .strftime("%a %Y-%m-%d %H:%M %Z")
            .to_string()
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.text().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Window, D::Error> {
        let t = WindowText::deserialize(d)?;
        Window::parse(
            &t.tz,
            t.slots.iter().map(String::as_str),
            t.blackout.iter().map(String::as_str),
        )
        .map_err(serde::de::Error::custom)
    }
}

/// `--not-before` and `--not-after`: they narrow a window, never widen it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bounds {
    /// Nothing is changed before this.
    pub not_before: Option<Timestamp>,
    /// Nothing is changed from this time on.
    pub not_after: Option<Timestamp>,
}

impl Bounds {
    /// Whether neither bound is set.
    pub fn is_empty(&self) -> bool {
        self.not_before.is_none() && self.not_after.is_none()
    }
}

/// Whether changes may be made at some time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Open; it closes at `closes` (`None`: not within the horizon, or never).
    Open {
        /// When it closes.
        closes: Option<Timestamp>,
    },
    /// Closed; it next opens at `next` (`None`: never again).
    Closed {
        /// The next opening: when it opens and when that opening closes.
        next: Option<(Timestamp, Option<Timestamp>)>,
        /// Why it is closed.
        why: Closed,
    },
}

/// Why a window is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// Before `--not-before`.
    NotBefore,
    /// At or after `--not-after`.
    NotAfter,
    /// On a blackout date.
    Blackout(Date),
    /// Outside every slot.
    OutsideSlots,
}

/// Whether a run may change things at `now` under `window` (if the
/// playbook has one) narrowed by `bounds`, and until or from when.
pub fn state(window: Option<&Window>, bounds: &Bounds, now: Timestamp) -> State {
    let lo = bounds.not_before.unwrap_or(Timestamp::MIN);
    let hi = bounds.not_after.unwrap_or(Timestamp::MAX);
    let openings: Vec<(Timestamp, Option<Timestamp>)> = match window {
        Some(w) => w.openings(now.max(lo)),
        None => vec![(Timestamp::MIN, None)],
    };
    // Intersect each opening with [lo, hi).
    let clipped = openings.into_iter().filter_map(|(s, e)| {
        let s = s.max(lo);
        let e = match e {
            Some(e) => Some(e.min(hi)),
            None => bounds.not_after,
        };
        match e {
            Some(e) if e <= s => None,
            _ => Some((s, e)),
        }
    });
    for (s, e) in clipped {
        if e.is_some_and(|e| e <= now) {
            continue;
        }
        if s <= now {
            return State::Open { closes: e };
        }
        return State::Closed {
            next: Some((s, e)),
            why: why_closed(window, bounds, now),
        };
    }
    State::Closed {
        next: None,
        why: why_closed(window, bounds, now),
    }
}

fn why_closed(window: Option<&Window>, bounds: &Bounds, now: Timestamp) -> Closed {
    if bounds.not_after.is_some_and(|t| now >= t) {
        Closed::NotAfter
    } else if let Some(day) = window.and_then(|w| w.blackout_at(now)) {
        Closed::Blackout(day)
    } else if bounds.not_before.is_some_and(|t| now < t)
        && window
            .is_none_or(|w| matches!(state(Some(w), &Bounds::default(), now), State::Open { .. }))
    {
        Closed::NotBefore
    } else {
        Closed::OutsideSlots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn w(tz: &str, slots: &[&str], blackout: &[&str]) -> Window {
        Window::parse(tz, slots.iter().copied(), blackout.iter().copied()).unwrap()
    }

    #[test]
    fn slots_parse_and_print_normalized() {
        let cases = [
            ("Sat 02:00-05:00", "Sat 02:00-05:00"),
            ("  sat   2:00-5:00 ", "Sat 02:00-05:00"),
            ("Saturday 02:00-05:00", "Sat 02:00-05:00"),
            ("Mon-Fri 22:00-02:00", "Mon-Fri 22:00-02:00"),
            ("Fri-Mon 01:00-02:00", "Mon,Fri-Sun 01:00-02:00"),
            ("Sat,Sun 00:00-24:00", "Sat,Sun 00:00-24:00"),
            ("daily 01:00-03:00", "daily 01:00-03:00"),
            ("Mon-Sun 01:00-03:00", "daily 01:00-03:00"),
            ("Tue 23:00-00:00", "Tue 23:00-24:00"),
        ];
        for (text, shown) in cases {
            assert_eq!(Slot::parse(text).unwrap().to_string(), shown, "{text}");
        }
    }

    #[test]
    fn bad_slots_say_what_and_where() {
        let e = Slot::parse("Sta 02:00-05:00").unwrap_err();
        assert_eq!(e.message, "unknown day `Sta` in a window slot");
        assert_eq!((e.offset, e.len), (0, 3));
        assert_eq!(e.hint.as_deref(), Some("did you mean `Sat`?"));
        let e = Slot::parse("Mon-Fir 02:00-05:00").unwrap_err();
        assert_eq!((e.offset, e.len), (4, 3));
        assert_eq!(e.hint.as_deref(), Some("did you mean `Fri`?"));
        let e = Slot::parse("Sat 02:00-25:00").unwrap_err();
        assert_eq!(e.message, "`25:00` is not a time of day");
        assert_eq!((e.offset, e.len), (10, 5));
        let e = Slot::parse("Sat 2am-5am").unwrap_err();
        assert!(e.message.contains("not a time"), "{e}");
        let e = Slot::parse("Sat 02:00").unwrap_err();
        assert!(e.message.contains("a start and an end"), "{e}");
        let e = Slot::parse("02:00-05:00").unwrap_err();
        assert!(e.message.contains("needs days"), "{e}");
        let e = Slot::parse("Sat 03:00-03:00").unwrap_err();
        assert!(e.message.contains("empty"), "{e}");
        let e = Slot::parse("Sat 24:00-03:00").unwrap_err();
        assert!(e.message.contains("cannot start"), "{e}");
        let e = Slot::parse("Sat 02:60-03:00").unwrap_err();
        assert!(e.message.contains("time of day"), "{e}");
    }

    #[test]
    fn tz_and_dates() {
        assert_eq!(
            w("asia/shanghai", &["daily 01:00-02:00"], &[]).tz_name(),
            "Asia/Shanghai"
        );
        let e = parse_tz("Asia/Shangai").unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean `Asia/Shanghai`?"));
        let e = parse_tz("Shanghai").unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean `Asia/Shanghai`?"));
        let e = parse_tz("+08:00").unwrap_err();
        assert!(e.hint.unwrap().contains("IANA"));
        assert!(parse_date("2026-12-31").is_ok());
        assert!(
            parse_date("2026-02-30")
                .unwrap_err()
                .message
                .contains("calendar")
        );
        assert!(
            parse_date("31.12.2026")
                .unwrap_err()
                .message
                .contains("not a date")
        );
    }

    #[test]
    fn open_closed_and_next_opening_in_the_zone() {
        // Saturday 2026-12-05 02:00-05:00 in Shanghai is 2026-12-04 18:00-21:00 UTC.
        let win = w("Asia/Shanghai", &["Sat 02:00-05:00"], &[]);
        let b = Bounds::default();
        match state(Some(&win), &b, ts("2026-12-04T17:59:59Z")) {
            State::Closed { next, why } => {
                assert_eq!(
                    next,
                    Some((ts("2026-12-04T18:00:00Z"), Some(ts("2026-12-04T21:00:00Z"))))
                );
                assert_eq!(why, Closed::OutsideSlots);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            state(Some(&win), &b, ts("2026-12-04T18:00:00Z")),
            State::Open {
                closes: Some(ts("2026-12-04T21:00:00Z"))
            }
        );
        // The end is exclusive: at 05:00 the next opening is a week later.
        assert!(matches!(
            state(Some(&win), &b, ts("2026-12-04T21:00:00Z")),
            State::Closed { next: Some((t, _)), .. } if t == ts("2026-12-11T18:00:00Z")
        ));
        assert_eq!(
            win.local(ts("2026-12-04T18:00:00Z")),
            "Sat 2026-12-05 02:00 CST"
        );
    }

    #[test]
    fn overnight_slots_end_the_next_day_and_touching_slots_merge() {
        let win = w("UTC", &["Sat 22:00-02:00"], &[]);
        // Saturday 2026-12-05 23:00 UTC: open until Sunday 02:00.
        assert_eq!(
            state(Some(&win), &Bounds::default(), ts("2026-12-05T23:00:00Z")),
            State::Open {
                closes: Some(ts("2026-12-06T02:00:00Z"))
            }
        );
        let win = w("UTC", &["Sat 22:00-24:00", "Sun 00:00-02:00"], &[]);
        assert_eq!(
            state(Some(&win), &Bounds::default(), ts("2026-12-05T23:00:00Z")),
            State::Open {
                closes: Some(ts("2026-12-06T02:00:00Z"))
            }
        );
        // Always open: no close within the horizon.
        let win = w("UTC", &["daily 00:00-24:00"], &[]);
        assert_eq!(
            state(Some(&win), &Bounds::default(), ts("2026-12-05T23:00:00Z")),
            State::Open { closes: None }
        );
    }

    #[test]
    fn blackout_removes_the_whole_local_day() {
        // 2026-12-31 is a Thursday; a daily slot is shut that day.
        let win = w("Asia/Shanghai", &["daily 22:00-02:00"], &["2026-12-31"]);
        // Wed 30th 23:00 local (15:00 UTC): open, but only until midnight local.
        assert_eq!(
            state(Some(&win), &Bounds::default(), ts("2026-12-30T15:00:00Z")),
            State::Open {
                closes: Some(ts("2026-12-30T16:00:00Z"))
            }
        );
        // Thu 31st 23:00 local: closed (blackout); opens Fri 1st 00:00 local,
        // the part of Thursday's slot past midnight.
        match state(Some(&win), &Bounds::default(), ts("2026-12-31T15:00:00Z")) {
            State::Closed { next, why } => {
                assert_eq!(why, Closed::Blackout("2026-12-31".parse().unwrap()));
                assert_eq!(
                    next,
                    Some((ts("2026-12-31T16:00:00Z"), Some(ts("2026-12-31T18:00:00Z"))))
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bounds_only_narrow() {
        let win = w("UTC", &["Sat 02:00-05:00"], &[]);
        let now = ts("2026-12-05T03:00:00Z");
        // An earlier --not-before and a later --not-after change nothing.
        let wide = Bounds {
            not_before: Some(ts("2026-12-01T00:00:00Z")),
            not_after: Some(ts("2026-12-31T00:00:00Z")),
        };
        assert_eq!(
            state(Some(&win), &wide, now),
            State::Open {
                closes: Some(ts("2026-12-05T05:00:00Z"))
            }
        );
        // --not-after inside the slot closes it earlier.
        let narrow = Bounds {
            not_before: None,
            not_after: Some(ts("2026-12-05T04:00:00Z")),
        };
        assert_eq!(
            state(Some(&win), &narrow, now),
            State::Open {
                closes: Some(ts("2026-12-05T04:00:00Z"))
            }
        );
        // --not-before after now: closed until then, within the slot.
        let later = Bounds {
            not_before: Some(ts("2026-12-05T04:30:00Z")),
            not_after: None,
        };
        assert_eq!(
            state(Some(&win), &later, now),
            State::Closed {
                next: Some((ts("2026-12-05T04:30:00Z"), Some(ts("2026-12-05T05:00:00Z")))),
                why: Closed::NotBefore
            }
        );
        // --not-after passed: never again.
        let past = Bounds {
            not_before: None,
            not_after: Some(ts("2026-12-05T02:30:00Z")),
        };
        assert_eq!(
            state(Some(&win), &past, now),
            State::Closed {
                next: None,
                why: Closed::NotAfter
            }
        );
        // Without a playbook window, the bounds are the window.
        assert_eq!(
            state(None, &narrow, now),
            State::Open {
                closes: Some(ts("2026-12-05T04:00:00Z"))
            }
        );
        assert_eq!(
            state(None, &Bounds::default(), now),
            State::Open { closes: None }
        );
        assert_eq!(
            state(None, &later, now),
            State::Closed {
                next: Some((ts("2026-12-05T04:30:00Z"), None)),
                why: Closed::NotBefore
            }
        );
    }

    #[test]
    fn dst_gaps_resolve_forward() {
        // Europe/Berlin skips 02:00-03:00 on 2027-03-28 (a Sunday).
        let win = w("Europe/Berlin", &["Sun 02:30-04:00"], &[]);
        match state(Some(&win), &Bounds::default(), ts("2027-03-27T12:00:00Z")) {
            State::Closed {
                next: Some((s, Some(e))),
                ..
            } => {
                // 02:30 does not exist: it is 03:30 CEST (01:30 UTC).
                assert_eq!(s, ts("2027-03-28T01:30:00Z"));
                assert_eq!(e, ts("2027-03-28T02:00:00Z"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_time_zone_database_is_the_one_built_in() {
        // Not the host's /usr/share/zoneinfo (absent in minimal containers,
        // and of another release on every host): the embedded one.
        let db = format!("{:?}", jiff::tz::db());
        assert!(db.contains("Bundled"), "{db}");
        assert!(parse_tz("Asia/Shanghai").is_ok());
    }

    #[test]
    fn serde_round_trip_is_normalized() {
        let win = w(
            "asia/shanghai",
            &["sat 2:00-5:00"],
            &["2026-12-31", "2026-12-24"],
        );
        let json = serde_json::to_string(&win).unwrap();
        assert_eq!(
            json,
            r#"{"tz":"Asia/Shanghai","slots":["Sat 02:00-05:00"],"blackout":["2026-12-24","2026-12-31"]}"#
        );
        let back: Window = serde_json::from_str(&json).unwrap();
        assert_eq!(back, win);
        assert!(
            serde_json::from_str::<Window>(r#"{"tz":"Mars/Base","slots":["Sat 02:00-05:00"]}"#)
                .is_err()
        );
    }
}
