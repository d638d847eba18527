//! How `run` and `probe` tell an operator why they refuse to start: one `error: ` line per
//! problem on stderr, or, under `--log-format json`, one JSON log line per problem (as every
//! other line they write), so a log collector parses it. `check` prints for people only.

/// The output format of the logs, which refusals follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Writes each problem: `error: <problem>`, or an `ERROR` log line whose message is the
/// problem (the log subscriber must be installed for JSON).
pub fn report(problems: &[String], format: Format) {
    for p in problems {
        match format {
            Format::Text => eprintln!("error: {p}"),
            Format::Json => tracing::error!("{p}"),
        }
    }
}
