//! Dates for people and logs: Unix seconds as RFC 3339 UTC, and spans as `3d 4h`.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Unix seconds as an RFC 3339 UTC date, e.g. `2026-01-31T12:00:00Z`.
pub fn utc(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{unix} (Unix seconds)"))
}

/// A duration for people: `3d 4h`, `5h 12m`, `7m 3s`, `42s`.
pub fn span(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {}s", s % 60),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}
