//! Dates for people and logs: Unix seconds as RFC 3339 UTC.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Unix seconds as an RFC 3339 UTC date, e.g. `2026-01-31T12:00:00Z`.
pub fn utc(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{unix} (Unix seconds)"))
}
