//! Wall-clock time as the store keeps it: milliseconds since the Unix epoch,
//! shown to people as RFC 3339 in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// Returns the current time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Formats milliseconds since the Unix epoch as RFC 3339 in UTC, with
/// millisecond precision.
pub fn to_rfc3339(ms: i64) -> String {
    const FORMAT: &[FormatItem<'_>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    let datetime = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    datetime
        .format(FORMAT)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned())
}

/// Parses an RFC 3339 timestamp into milliseconds since the Unix epoch.
pub fn parse_rfc3339(text: &str) -> Result<i64, time::error::Parse> {
    let datetime = OffsetDateTime::parse(text, &Rfc3339)?;
    let ms = datetime.unix_timestamp_nanos() / 1_000_000;
    Ok(i64::try_from(ms).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let ms = 1_765_000_000_123;
        let text = to_rfc3339(ms);
        assert_eq!(text, "2025-12-06T05:46:40.123Z");
        assert_eq!(parse_rfc3339(&text).unwrap(), ms);
    }

    #[test]
    fn rfc3339_accepts_offsets() {
        let ms = parse_rfc3339("2025-12-06T06:46:40+01:00").unwrap();
        assert_eq!(to_rfc3339(ms), "2025-12-06T05:46:40.000Z");
    }
}
