//! The access log: one line per finished connection and, with `all`, per HTTP request, as
//! tracing events under the target `crossgate::access` (JSON with `--log-format json`, so every
//! field is its own key). `[log] access` chooses: `off`, `refusals` (the default: only what the
//! gateway refused or what failed), or `all`. Building a record costs nothing when it is not
//! logged: the mode is checked first.

use crate::refusal::Refusal;
use std::net::SocketAddr;
use std::time::Duration;

/// `[log] access`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    #[default]
    Refusals,
    All,
}

impl std::str::FromStr for AccessLog {
    type Err = String;

    fn from_str(s: &str) -> Result<AccessLog, String> {
        match s {
            "off" => Ok(AccessLog::Off),
            "refusals" => Ok(AccessLog::Refusals),
            "all" => Ok(AccessLog::All),
            other => Err(format!(
                "unknown access log mode {other:?} (expected \"off\", \"refusals\" or \"all\")"
            )),
        }
    }
}

/// How a connection or request ended.
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    /// Served to its end.
    Ok,
    /// Refused by the gateway (a row of the refusal table).
    Refused(&'a Refusal),
    /// Refused before a refusal could be named (handshake, transport header) or failed
    /// midway (an i/o error, an idle deadline); the reason says which.
    Failed(&'a str),
}

impl Outcome<'_> {
    fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }
}

/// One finished connection.
pub struct ConnRecord<'a> {
    pub peer: SocketAddr,
    /// `None` when the handshake did not establish one.
    pub client_id: Option<&'a str>,
    pub target: Option<&'a str>,
    pub endpoint: Option<SocketAddr>,
    /// `opaque`, `http/1`, `http/2` (transport header or SNI sessions), `http` (plain mode),
    /// `tls` when the handshake failed, `passthrough` on the passthrough port.
    pub protocol: &'static str,
    pub outcome: Outcome<'a>,
    /// Bytes from the client and to the client.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
}

/// One finished HTTP request.
pub struct RequestRecord<'a> {
    pub peer: SocketAddr,
    pub client_id: &'a str,
    pub method: &'a str,
    pub target: Option<&'a str>,
    pub endpoint: Option<SocketAddr>,
    pub protocol: &'static str,
    /// The status answered (the gateway's own answer for a refusal).
    pub status: u16,
    pub outcome: Outcome<'a>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
}

impl AccessLog {
    /// Whether connection and request records must be gathered at all (bytes, endpoints).
    pub fn all(self) -> bool {
        self == AccessLog::All
    }

    fn wants(self, outcome: &Outcome<'_>) -> bool {
        match self {
            AccessLog::Off => false,
            AccessLog::Refusals => !outcome.is_ok(),
            AccessLog::All => true,
        }
    }

    /// Logs a finished connection, if the mode wants it.
    pub fn connection(self, r: &ConnRecord<'_>) {
        if !self.wants(&r.outcome) {
            return;
        }
        let (outcome, reason) = describe(&r.outcome);
        tracing::info!(
            target: "crossgate::access",
            kind = "connection",
            peer = %r.peer,
            client_id = r.client_id,
            target = r.target,
            endpoint = r.endpoint.map(tracing::field::display),
            protocol = r.protocol,
            outcome,
            reason = reason.as_deref(),
            bytes_in = r.bytes_in,
            bytes_out = r.bytes_out,
            duration_ms = duration_ms(r.duration),
        );
    }

    /// Logs a finished request, if the mode wants it.
    pub fn request(self, r: &RequestRecord<'_>) {
        if !self.wants(&r.outcome) {
            return;
        }
        let (outcome, reason) = describe(&r.outcome);
        tracing::info!(
            target: "crossgate::access",
            kind = "request",
            peer = %r.peer,
            client_id = r.client_id,
            method = r.method,
            target = r.target,
            endpoint = r.endpoint.map(tracing::field::display),
            protocol = r.protocol,
            status = r.status,
            outcome,
            reason = reason.as_deref(),
            bytes_in = r.bytes_in,
            bytes_out = r.bytes_out,
            duration_ms = duration_ms(r.duration),
        );
    }
}

fn describe(outcome: &Outcome<'_>) -> (&'static str, Option<String>) {
    match outcome {
        Outcome::Ok => ("ok", None),
        Outcome::Refused(r) => ("refused", Some(r.to_string())),
        Outcome::Failed(reason) => ("failed", Some((*reason).to_string())),
    }
}

/// Milliseconds with three decimals.
fn duration_ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!("off".parse(), Ok(AccessLog::Off));
        assert_eq!("refusals".parse(), Ok(AccessLog::Refusals));
        assert_eq!("all".parse(), Ok(AccessLog::All));
        assert!("some".parse::<AccessLog>().is_err());
        assert_eq!(AccessLog::default(), AccessLog::Refusals);
        let refused = Refusal::Unauthorized;
        let cases = [
            (Outcome::Ok, [false, false, true]),
            (Outcome::Refused(&refused), [false, true, true]),
            (Outcome::Failed("i/o"), [false, true, true]),
        ];
        for (outcome, wanted) in cases {
            for (mode, want) in [AccessLog::Off, AccessLog::Refusals, AccessLog::All]
                .into_iter()
                .zip(wanted)
            {
                assert_eq!(mode.wants(&outcome), want, "{mode:?} {outcome:?}");
            }
        }
    }
}
