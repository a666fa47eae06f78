//! Durations as people write them: `500ms`, `30s`, `2m`, `1h 30m` (jiff's
//! friendly format; ISO 8601 `PT2M` works too). The one parser and printer
//! of durations, for playbooks, flags, simulator fixtures and faults.

use std::fmt;
use std::time::Duration;

/// What to write instead of a bad duration.
pub const HINT: &str = "write a duration with a unit, like `500ms`, `30s`, `2m` or `1h 30m`";

/// A text that is not a duration: what is wrong, and [`HINT`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError {
    /// What is wrong (`invalid duration `5 parsecs``).
    pub message: String,
}

impl DurationError {
    /// What to write instead.
    pub fn hint(&self) -> &'static str {
        HINT
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({HINT})", self.message)
    }
}

impl std::error::Error for DurationError {}

/// Parses a duration; a bare number (no unit) and negative durations are refused.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.parse::<f64>().is_ok() {
        return Err(DurationError {
            message: format!("a duration needs a unit: `{trimmed}`"),
        });
    }
    let signed: jiff::SignedDuration = trimmed.parse().map_err(|_| DurationError {
        message: format!("invalid duration `{text}`"),
    })?;
    Duration::try_from(signed).map_err(|_| DurationError {
        message: format!("invalid duration `{text}`: it is negative"),
    })
}

/// Parses a duration that may also count days (`7d`, `90d`, `1d 12h`; a day
/// is 24 hours), for ages and expiries on the command line.
pub fn parse_days(text: &str) -> Result<Duration, DurationError> {
    if let Ok(d) = parse(text) {
        return Ok(d);
    }
    let trimmed = text.trim();
    trimmed
        .parse::<jiff::Span>()
        .ok()
        .and_then(|span| {
            span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                .ok()
        })
        .and_then(|d| Duration::try_from(d).ok())
        .ok_or_else(|| DurationError {
            message: format!("invalid duration `{text}` (days count as well: `7d`)"),
        })
}

/// Formats a duration the way playbooks write it (`1h 30m`, `500ms`).
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut parts = Vec::new();
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 {
        parts.push(format!("{s}s"));
    }
    if ms > 0 {
        parts.push(format!("{ms}ms"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_friendly_and_iso_forms() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse(" 500ms "), Ok(Duration::from_millis(500)));
        assert_eq!(parse("PT2M"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            parse("5 parsecs").unwrap_err().message,
            "invalid duration `5 parsecs`"
        );
        assert_eq!(
            parse("-5s").unwrap_err().message,
            "invalid duration `-5s`: it is negative"
        );
        assert_eq!(
            parse("2").unwrap_err().message,
            "a duration needs a unit: `2`"
        );
        assert_eq!(
            parse("").unwrap_err().to_string(),
            format!("invalid duration `` ({HINT})")
        );
    }

    #[test]
    fn formats_back() {
        assert_eq!(format(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(format(Duration::from_millis(1500)), "1s 500ms");
        assert_eq!(format(Duration::ZERO), "0s");
        for text in ["30s", "1h 30m", "2m 5s", "250ms"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
