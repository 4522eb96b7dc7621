//! Durations in Kubernetes/Go syntax (`500ms`, `90s`, `1h30m`), plus `d` (24 h) and
//! `w` (7 d), which policies need for cooldowns and archive ages.
//!
//! On the wire a duration is a string ([`GoDuration`]) so that a policy with a junk
//! duration still deserializes and validation can report *every* problem at once
//! instead of failing on the first bad field.

use std::{fmt, time::Duration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Regular expression the CRD schema uses for duration strings: the API server rejects
/// malformed durations before they reach us. Positivity and bounds are checked by
/// [`crate::validation`], since JSON schema cannot compare durations.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|μs|ms|s|m|h|d|w))+$|^0$";

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration; write e.g. \"90s\", \"1h30m\" or \"7d\"")]
    Empty,
    #[error("negative durations are not allowed")]
    Negative,
    #[error("expected a number at byte {at} of {input:?}; write e.g. \"90s\", \"1h30m\" or \"7d\"")]
    MissingNumber { input: String, at: usize },
    #[error("missing unit after {number:?} in {input:?}; units are ns, us, ms, s, m, h, d, w")]
    MissingUnit { input: String, number: String },
    #[error("unknown unit {unit:?} in {input:?}; units are ns, us, ms, s, m, h, d, w")]
    UnknownUnit { input: String, unit: String },
    #[error("{input:?} is too large to represent")]
    Overflow { input: String },
}

/// Parses `s` as a Go-style duration extended with `d` and `w`.
///
/// Accepts a sequence of decimal numbers, each with an optional fraction and a unit
/// (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, `d`, `w`), and the bare `0`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let overflow = || DurationError::Overflow {
        input: s.to_owned(),
    };
    let mut total_nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let at = s.len() - rest.len();
        let digits_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits_end];
        let well_formed = match number.split_once('.') {
            None => !number.is_empty(),
            Some((whole, fraction)) => {
                !whole.is_empty() && !fraction.is_empty() && !fraction.contains('.')
            }
        };
        if !well_formed {
            return Err(DurationError::MissingNumber {
                input: s.to_owned(),
                at,
            });
        }
        rest = &rest[digits_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let unit_nanos: u128 = match unit {
            "" => {
                return Err(DurationError::MissingUnit {
                    input: s.to_owned(),
                    number: number.to_owned(),
                });
            }
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            "w" => 7 * 86_400 * 1_000_000_000,
            other => {
                return Err(DurationError::UnknownUnit {
                    input: s.to_owned(),
                    unit: other.to_owned(),
                });
            }
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let whole: u128 = whole.parse().map_err(|_| overflow())?;
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(overflow)?;
        // The fraction is scaled digit by digit so that "1.5h" is exact and digits
        // finer than a nanosecond are dropped, as Go does.
        let mut scale = unit_nanos;
        for digit in fraction.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos += u128::from(digit - b'0') * scale;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(overflow)?;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| overflow())?;
    let sub = (total_nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, sub))
}

/// Formats `d` in the canonical form this crate prints: largest units first, zero
/// parts left out (`1w2d3h`, `90s` → `1m30s`, `1500ms` → `1s500ms`, zero → `0s`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    const UNITS: [(&str, u128); 9] = [
        ("w", 7 * 86_400 * 1_000_000_000),
        ("d", 86_400 * 1_000_000_000),
        ("h", 3_600 * 1_000_000_000),
        ("m", 60 * 1_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
        ("", 0),
    ];
    let mut rest = d.as_nanos();
    let mut out = String::new();
    for (unit, nanos) in UNITS {
        if nanos == 0 || rest == 0 {
            break;
        }
        let count = rest / nanos;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(unit);
            rest %= nanos;
        }
    }
    out
}

/// A duration as written in a manifest. Kept as the user's string so a malformed value
/// survives deserialization and is reported by validation with its field path.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GoDuration(String);

impl GoDuration {
    /// Wraps a string without checking it; [`GoDuration::parse`] checks.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The canonical string of `d`.
    pub fn from_duration(d: Duration) -> Self {
        Self(format_duration(d))
    }

    /// The string as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the string.
    pub fn parse(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.0)
    }
}

impl fmt::Debug for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for GoDuration {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "Duration in Kubernetes/Go syntax (500ms, 90s, 1h30m) plus d (days) and w (weeks)."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn go_syntax_and_days_and_weeks_parse_to_the_expected_length() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90s"), Ok(secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(secs(5_400)));
        assert_eq!(parse_duration("7d"), Ok(secs(7 * 86_400)));
        assert_eq!(parse_duration("2w"), Ok(secs(14 * 86_400)));
        assert_eq!(parse_duration("1.5h"), Ok(secs(5_400)));
        assert_eq!(
            parse_duration("1w2d3h4m5s6ms7us8ns"),
            Ok(Duration::new(788_645, 6_007_008))
        );
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("3µs"), Ok(Duration::from_micros(3)));
    }

    #[test]
    fn junk_durations_are_rejected_with_a_reason() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("-5m"), Err(DurationError::Negative));
        assert!(matches!(
            parse_duration("5"),
            Err(DurationError::MissingUnit { .. })
        ));
        assert!(matches!(
            parse_duration("5 minutes"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("1y"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("h"),
            Err(DurationError::MissingNumber { .. })
        ));
        assert!(matches!(
            parse_duration("1..5h"),
            Err(DurationError::MissingNumber { .. })
        ));
        assert!(matches!(
            parse_duration("99999999999999999999999w"),
            Err(DurationError::Overflow { .. })
        ));
        let message = parse_duration("10 mins").unwrap_err().to_string();
        assert!(message.contains("unknown unit"), "{message}");
    }

    #[test]
    fn canonical_format_uses_the_largest_units() {
        assert_eq!(format_duration(secs(90)), "1m30s");
        assert_eq!(format_duration(secs(86_400 * 8)), "1w1d");
        assert_eq!(format_duration(Duration::from_millis(1_500)), "1s500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    proptest! {
        #[test]
        fn formatting_then_parsing_gives_back_the_same_duration(nanos in 0u64..u64::MAX) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn the_schema_pattern_accepts_what_the_parser_accepts(s in "[0-9.]{0,4}(ms|s|m|h|d|w|x|)([0-9]{1,2}(s|m|µs))?") {
            let pattern = regex_lite::Regex::new(DURATION_PATTERN).expect("pattern compiles");
            prop_assert_eq!(parse_duration(&s).is_ok(), pattern.is_match(&s));
        }
    }
}
