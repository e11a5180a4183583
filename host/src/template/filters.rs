//! Date and time filters with a time zone: `datetimeformat`, `dateformat`
//! and `timeformat`.
//!
//! Each formats an RFC 3339 string (`"2025-06-01T12:00:00Z"`) or a Unix
//! timestamp in seconds, and takes two keyword arguments:
//!
//! - `format`: `short`, `medium` (the default), `long`, `full`, `iso`, or a
//!   strftime format such as `"%d.%m.%Y %H:%M"` (jiff's `strtime` syntax).
//! - `tz`: an IANA time zone name such as `"Europe/Paris"`. Without it the
//!   filters use the context variable `TIMEZONE`, and without that UTC.
//!
//! ```jinja
//! {{ sent_at | datetimeformat(format="%d.%m.%Y %H:%M", tz="Europe/Paris") }}
//! {{ 1767225600 | dateformat(format="long", tz="America/New_York") }}
//! ```
//!
//! `dateformat` also takes a plain date such as `"2025-06-01"`, which it
//! formats without converting it to a time zone. An undefined value is an
//! undefined-value error, which the render error then names. Time zone rules
//! come from `/usr/share/zoneinfo`, or from the copy of the IANA database
//! built into Herald when the system has none.

use jiff::fmt::strtime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, civil};
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

/// Name of the context variable that sets the default time zone.
const TIME_ZONE_VARIABLE: &str = "TIMEZONE";

/// Adds the date and time filters to `environment`.
pub(super) fn register(environment: &mut Environment<'_>) {
    environment.add_filter("datetimeformat", datetimeformat);
    environment.add_filter("dateformat", dateformat);
    environment.add_filter("timeformat", timeformat);
}

/// Formats a date and time.
fn datetimeformat(state: &State, value: Value, kwargs: Kwargs) -> Result<String, Error> {
    format(Shown::DateTime, state, &value, &kwargs)
}

/// Formats a date.
fn dateformat(state: &State, value: Value, kwargs: Kwargs) -> Result<String, Error> {
    format(Shown::Date, state, &value, &kwargs)
}

/// Formats a time of day.
fn timeformat(state: &State, value: Value, kwargs: Kwargs) -> Result<String, Error> {
    format(Shown::Time, state, &value, &kwargs)
}

/// The fields a filter shows, which select its named formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    DateTime,
    Date,
    Time,
}

impl Shown {
    /// Returns the strftime format behind a named format, or `None` when
    /// `name` is not one.
    fn named_format(self, name: &str) -> Option<&'static str> {
        let format = match (self, name) {
            (Shown::DateTime, "short") => "%Y-%m-%d %H:%M",
            (Shown::DateTime, "medium") => "%b %-d %Y %H:%M",
            (Shown::DateTime, "long") => "%B %-d %Y %H:%M:%S",
            (Shown::DateTime, "full") => "%A, %B %-d %Y %H:%M:%S %Z",
            (Shown::DateTime, "iso") => "%Y-%m-%dT%H:%M:%S%:z",
            (Shown::Date, "short" | "iso") => "%Y-%m-%d",
            (Shown::Date, "medium") => "%b %-d %Y",
            (Shown::Date, "long") => "%B %-d %Y",
            (Shown::Date, "full") => "%A, %B %-d %Y",
            (Shown::Time, "short" | "medium") => "%H:%M",
            (Shown::Time, "long") => "%H:%M:%S",
            (Shown::Time, "full") => "%H:%M:%S %Z",
            (Shown::Time, "iso") => "%H:%M:%S%:z",
            _ => return None,
        };
        Some(format)
    }
}

/// A value to format: an instant, or a calendar date without a time.
enum Moment {
    Instant(Timestamp),
    Date(civil::Date),
}

/// Formats `value` with the `format` and `tz` keyword arguments.
fn format(shown: Shown, state: &State, value: &Value, kwargs: &Kwargs) -> Result<String, Error> {
    let format: Option<&str> = kwargs.get("format")?;
    let zone: Option<&str> = kwargs.get("tz")?;
    kwargs.assert_all_used()?;

    let format = format.unwrap_or("medium");
    let pattern = shown.named_format(format).unwrap_or(format);
    let formatted = match parse_moment(value, shown)? {
        Moment::Instant(timestamp) => {
            let zone = time_zone(state, zone)?;
            strtime::format(pattern, &timestamp.to_zoned_datetime(zone))
        }
        Moment::Date(date) => strtime::format(pattern, date),
    };
    formatted.map_err(|error| invalid(format!("invalid date format \"{format}\": {error}")))
}

/// Reads `value` as an RFC 3339 string or Unix seconds, or for
/// `dateformat` as a plain date.
fn parse_moment(value: &Value, shown: Shown) -> Result<Moment, Error> {
    if value.is_undefined() {
        return Err(Error::from(ErrorKind::UndefinedError));
    }
    let expected = "expected an RFC 3339 time such as \"2025-06-01T12:00:00Z\" or a Unix \
                    timestamp in seconds";
    if let Some(text) = value.as_str() {
        if let Ok(timestamp) = text.parse::<Timestamp>() {
            return Ok(Moment::Instant(timestamp));
        }
        if shown == Shown::Date
            && let Ok(date) = text.parse::<civil::Date>()
        {
            return Ok(Moment::Date(date));
        }
        return Err(invalid(format!("invalid date \"{text}\", {expected}")));
    }
    if value.kind() != ValueKind::Number {
        return Err(invalid(format!(
            "invalid date of type {}, {expected}",
            value.kind()
        )));
    }

    let out_of_range = |_| invalid(format!("timestamp {value} is out of range, {expected}"));
    let timestamp = match value.as_i64() {
        Some(seconds) => Timestamp::from_second(seconds).map_err(out_of_range)?,
        None => {
            let seconds = f64::try_from(value.clone())?;
            let duration = SignedDuration::try_from_secs_f64(seconds).map_err(out_of_range)?;
            Timestamp::from_duration(duration).map_err(out_of_range)?
        }
    };
    Ok(Moment::Instant(timestamp))
}

/// Returns the time zone named by `tz`, else by the context variable
/// [`TIME_ZONE_VARIABLE`], else UTC.
fn time_zone(state: &State, tz: Option<&str>) -> Result<TimeZone, Error> {
    let configured = state
        .lookup(TIME_ZONE_VARIABLE)
        .filter(|value| !value.is_undefined() && !value.is_none());
    let name = match (tz, &configured) {
        (Some(name), _) => name,
        (None, Some(value)) => value.as_str().ok_or_else(|| {
            invalid(format!(
                "the context variable {TIME_ZONE_VARIABLE} is {value}, expected a time zone \
                 name such as \"Europe/Paris\""
            ))
        })?,
        (None, None) => return Ok(TimeZone::UTC),
    };
    TimeZone::get(name).map_err(|_| {
        invalid(format!(
            "unknown time zone \"{name}\", use an IANA time zone name such as \
             \"Europe/Paris\" or \"UTC\""
        ))
    })
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

#[cfg(test)]
mod tests {
    use super::super::render::{Escape, RenderError, render};

    fn render_text(source: &str, context: &str) -> Result<String, RenderError> {
        render(source, context, Escape::None)
    }

    #[test]
    fn rfc3339_string_in_time_zone() {
        let text = render_text(
            r#"{{ at | datetimeformat(format="%Y-%m-%d %H:%M", tz="Europe/Paris") }}"#,
            r#"{"at": "2025-06-01T12:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(text, "2025-06-01 14:00");
    }

    #[test]
    fn offset_string_is_converted() {
        let text = render_text(
            r#"{{ at | datetimeformat(format="iso") }}"#,
            r#"{"at": "2025-06-01T14:00:00+02:00"}"#,
        )
        .unwrap();
        assert_eq!(text, "2025-06-01T12:00:00+00:00");
    }

    #[test]
    fn unix_timestamp_in_time_zone() {
        // 2026-01-01T00:00:00Z is still 31 December in New York.
        let context = r#"{"at": 1767225600, "fractional": 1767225600.5}"#;
        let text = render_text(
            r#"{{ at | datetimeformat(format="iso", tz="America/New_York") }}"#,
            context,
        )
        .unwrap();
        assert_eq!(text, "2025-12-31T19:00:00-05:00");

        let text = render_text(
            r#"{{ fractional | timeformat(format="%H:%M:%S%.3f") }}"#,
            context,
        )
        .unwrap();
        assert_eq!(text, "00:00:00.500");
    }

    #[test]
    fn time_zone_rules_after_2022() {
        // Mexico stopped observing daylight saving time in October 2022, so
        // Mexico City stays at UTC-6 in summer.
        let text = render_text(
            r#"{{ at | timeformat(format="%H:%M %:z", tz="America/Mexico_City") }}"#,
            r#"{"at": "2025-07-01T12:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(text, "06:00 -06:00");
    }

    #[test]
    fn named_formats() {
        let context = r#"{"at": "2025-06-24T16:37:22Z"}"#;
        let cases = [
            ("{{ at | datetimeformat }}", "Jun 24 2025 16:37"),
            (
                r#"{{ at | datetimeformat(format="short") }}"#,
                "2025-06-24 16:37",
            ),
            (
                r#"{{ at | datetimeformat(format="long") }}"#,
                "June 24 2025 16:37:22",
            ),
            (
                r#"{{ at | datetimeformat(format="full", tz="Europe/Paris") }}"#,
                "Tuesday, June 24 2025 18:37:22 CEST",
            ),
            (r#"{{ at | dateformat(format="short") }}"#, "2025-06-24"),
            (
                r#"{{ at | dateformat(format="full", tz="Asia/Tokyo") }}"#,
                "Wednesday, June 25 2025",
            ),
            (r#"{{ at | timeformat(tz="Europe/Paris") }}"#, "18:37"),
            (
                r#"{{ at | timeformat(format="iso", tz="Asia/Kolkata") }}"#,
                "22:07:22+05:30",
            ),
        ];
        for (source, expected) in cases {
            let text = render_text(source, context).unwrap();
            assert_eq!(text, expected, "{source}");
        }
    }

    #[test]
    fn plain_date_is_not_converted() {
        let text = render_text(
            r#"{{ day | dateformat(format="long", tz="Pacific/Auckland") }}"#,
            r#"{"day": "2025-06-01"}"#,
        )
        .unwrap();
        assert_eq!(text, "June 1 2025");

        let error =
            render_text(r#"{{ day | datetimeformat }}"#, r#"{"day": "2025-06-01"}"#).unwrap_err();
        assert!(error.to_string().contains("\"2025-06-01\""), "{error}");
    }

    #[test]
    fn context_time_zone_is_the_default() {
        let context = r#"{"at": "2025-01-15T08:00:00Z", "TIMEZONE": "Asia/Kolkata"}"#;
        let text = render_text("{{ at | timeformat }}", context).unwrap();
        assert_eq!(text, "13:30");

        let text = render_text(r#"{{ at | timeformat(tz="UTC") }}"#, context).unwrap();
        assert_eq!(text, "08:00");
    }

    #[test]
    fn unknown_time_zone_is_named() {
        let error = render_text(
            r#"{{ at | datetimeformat(tz="Mars/Olympus") }}"#,
            r#"{"at": "2025-06-01T12:00:00Z"}"#,
        )
        .unwrap_err();
        let RenderError::RenderFailed(message) = error else {
            panic!("expected render-failed, got {error:?}");
        };
        assert!(message.contains("\"Mars/Olympus\""), "{message}");
        assert!(message.contains("Europe/Paris"), "{message}");

        let error = render_text(
            "{{ at | dateformat }}",
            r#"{"at": "2025-06-01T12:00:00Z", "TIMEZONE": "Nowhere"}"#,
        )
        .unwrap_err();
        assert!(error.to_string().contains("\"Nowhere\""), "{error}");
    }

    #[test]
    fn undefined_date_names_variable() {
        let error = render_text("{{ sent_at | datetimeformat }}", "{}").unwrap_err();
        assert!(error.to_string().contains("\"sent_at\""), "{error}");
    }

    #[test]
    fn invalid_values_and_formats_fail() {
        let cases = [
            (
                r#"{"at": "yesterday"}"#,
                "{{ at | datetimeformat }}",
                "\"yesterday\"",
            ),
            (
                r#"{"at": true}"#,
                "{{ at | datetimeformat }}",
                "of type bool",
            ),
            (
                r#"{"at": 1e30}"#,
                "{{ at | datetimeformat }}",
                "out of range",
            ),
            (
                r#"{"at": "2025-06-01T12:00:00Z"}"#,
                r#"{{ at | datetimeformat(format="%Y-%") }}"#,
                "invalid date format \"%Y-%\"",
            ),
            (
                r#"{"at": "2025-06-01"}"#,
                r#"{{ at | dateformat(format="%H:%M") }}"#,
                "invalid date format",
            ),
            (
                r#"{"at": "2025-06-01T12:00:00Z"}"#,
                r#"{{ at | datetimeformat(zone="UTC") }}"#,
                "zone",
            ),
        ];
        for (context, source, expected) in cases {
            let error = match render_text(source, context) {
                Ok(text) => panic!("{source} rendered {text:?} instead of failing"),
                Err(error) => error,
            };
            assert!(error.to_string().contains(expected), "{source}: {error}");
        }
    }
}
