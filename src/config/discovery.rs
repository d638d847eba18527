//! `[discovery]`: where Linkerd's Destination API is and how the gateway talks to it. Absent,
//! discovery is static plus DNS. Parsed as one more method of the [`Parser`] that reports every
//! problem with file and key; nothing here dials or resolves.

use super::Parser;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use toml::{Table, Value};

/// `[discovery]`: endpoints from Linkerd's Destination API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovery {
    /// `host:port` of the controller as written (a name is resolved at each connect).
    pub destination_addr: String,
    /// The controller's identity: the SNI sent and the SAN its leaf must carry. `None` only
    /// when `destination_addr` is loopback, and then the stream is plaintext.
    pub destination_name: Option<String>,
    /// Sent in every `Get`; the controller reads the gateway's namespace, node and pod from it.
    pub context_token: String,
    /// What a target gets when the controller cannot be reached.
    pub fallback: Fallback,
    /// How long a resolve waits for a new target's first answer.
    pub stream_initial_timeout: Duration,
}

/// The balancer's settings, in `[discovery]` (they apply to static and DNS endpoints too):
/// `ewma_default_rtt`, `ewma_decay`, `failfast_timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Balancer {
    /// The round trip an endpoint is assumed to have before its first sample.
    pub default_rtt: Duration,
    /// How fast a slow sample is forgotten.
    pub decay: Duration,
    /// How long requests wait for a ready endpoint before failing fast (504).
    pub failfast: Duration,
}

impl Default for Balancer {
    fn default() -> Balancer {
        Balancer {
            default_rtt: Duration::from_millis(30),
            decay: Duration::from_secs(10),
            failfast: Duration::from_secs(3),
        }
    }
}

/// The keys that configure the Destination API (the others configure the balancer).
const DESTINATION_KEYS: &[&str] = &[
    "destination_addr",
    "destination_name",
    "context_token",
    "fallback",
    "stream_initial_timeout",
];

/// What to do when the Destination API gives no answer (unreachable, or too slow at first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fallback {
    /// Resolve the name through DNS, as without `[discovery]`.
    #[default]
    Dns,
    /// Refuse the connection or request.
    Fail,
}

/// Linkerd's context token (`{"ns":…,"nodeName":…,"pod":…}`) from `POD_NAMESPACE`,
/// `NODE_NAME` and `POD_NAME` as `env` gives them; a missing variable is an empty string.
pub fn default_context_token(env: impl Fn(&str) -> Option<String>) -> String {
    #[derive(serde::Serialize)]
    struct Token {
        ns: String,
        #[serde(rename = "nodeName")]
        node_name: String,
        pod: String,
    }
    let token = Token {
        ns: env("POD_NAMESPACE").unwrap_or_default(),
        node_name: env("NODE_NAME").unwrap_or_default(),
        pod: env("POD_NAME").unwrap_or_default(),
    };
    serde_json::to_string(&token).unwrap_or_default()
}

/// The host of a `host:port` address, when it has a port in 1..=65535; an IPv6 host is
/// bracketed (`[::1]:8086`).
pub(super) fn split_host_port(addr: &str) -> Result<(&str, u16), String> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        if sa.port() == 0 {
            return Err("port 0".into());
        }
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        return Ok((host, sa.port()));
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("no port (expected host:port)".into());
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("bad port {port:?}")),
    };
    if !crate::names::is_dns_name(host) {
        return Err(format!("{host:?} is neither a DNS name nor an IP address"));
    }
    Ok((host, port))
}

/// True for `localhost` and loopback IP literals: hosts where a plaintext stream stays on the
/// machine.
pub(super) fn is_loopback(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => crate::names::normalize(bare) == "localhost",
    }
}

impl Parser<'_> {
    /// The balancer's keys of `[discovery]`, defaults where absent.
    pub(super) fn balancer(&mut self, v: Option<&Value>) -> Balancer {
        let d = Balancer::default();
        let Some(Value::Table(t)) = v else {
            return d;
        };
        let mut get = |key: &str, default: Duration| {
            self.duration(t, key, &format!("discovery.{key}"))
                .unwrap_or(default)
        };
        Balancer {
            default_rtt: get("ewma_default_rtt", d.default_rtt),
            decay: get("ewma_decay", d.decay),
            failfast: get("failfast_timeout", d.failfast),
        }
    }

    /// `[discovery]`'s Destination API; `None` when the table is absent or wrong, or names no
    /// Destination API (only balancer keys).
    pub(super) fn discovery(
        &mut self,
        v: Option<&Value>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Option<Discovery> {
        let t: &Table = self.section(v, "discovery")?;
        let mut keys = DESTINATION_KEYS.to_vec();
        keys.extend(["ewma_default_rtt", "ewma_decay", "failfast_timeout"]);
        self.known(t, "discovery", &keys);
        if !DESTINATION_KEYS.iter().any(|k| t.contains_key(*k)) {
            return None;
        }
        let before = self.errors.len();
        let addr = self.string(t, "destination_addr", "discovery.destination_addr");
        // A name is required once the address is known to be more than loopback.
        let mut needs_name = false;
        match &addr {
            None if t.get("destination_addr").is_none() => self.error(
                "discovery.destination_addr",
                "missing (host:port of the Destination API)",
            ),
            None => {}
            Some(a) => match split_host_port(a) {
                Ok((host, _)) => needs_name = !is_loopback(host),
                Err(e) => self.error("discovery.destination_addr", format!("{a:?}: {e}")),
            },
        }
        let name = self.string(t, "destination_name", "discovery.destination_name");
        match &name {
            Some(n) if !crate::names::is_dns_name(n) => self.error(
                "discovery.destination_name",
                format!("{n:?} is not a DNS-like identity"),
            ),
            None if t.get("destination_name").is_none() && needs_name => self
                .error(
                    "discovery.destination_name",
                    "missing (the controller's identity; only a loopback destination_addr may go without TLS)",
                ),
            _ => {}
        }
        let context_token = self
            .string(t, "context_token", "discovery.context_token")
            .unwrap_or_else(|| default_context_token(env));
        let fallback = match self.string(t, "fallback", "discovery.fallback").as_deref() {
            None | Some("dns") => Fallback::Dns,
            Some("fail") => Fallback::Fail,
            Some(other) => {
                self.error(
                    "discovery.fallback",
                    format!("{other:?}: expected \"dns\" or \"fail\""),
                );
                Fallback::Dns
            }
        };
        let stream_initial_timeout = self
            .duration(
                t,
                "stream_initial_timeout",
                "discovery.stream_initial_timeout",
            )
            .unwrap_or(Duration::from_secs(3));
        if self.errors.len() > before {
            return None;
        }
        Some(Discovery {
            destination_addr: addr?,
            destination_name: name,
            context_token,
            fallback,
            stream_initial_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port("127.0.0.1:8086"), Ok(("127.0.0.1", 8086)));
        assert_eq!(split_host_port("[::1]:8086"), Ok(("[::1]", 8086)));
        assert_eq!(
            split_host_port("linkerd-dst-headless.linkerd.svc.cluster.local.:8086"),
            Ok(("linkerd-dst-headless.linkerd.svc.cluster.local.", 8086))
        );
        for bad in ["dst", "dst:", "dst:0", "dst:70000", "::1", "a b:80", ":80"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "127.1.2.3", "[::1]", "localhost", "LOCALHOST."] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["10.0.0.1", "[::2]", "localhost.example", "dst.linkerd"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn context_token_from_env() {
        let env = |k: &str| match k {
            "POD_NAMESPACE" => Some("linkerd-multicluster".to_string()),
            "POD_NAME" => Some("gw-1".to_string()),
            _ => None,
        };
        assert_eq!(
            default_context_token(env),
            r#"{"ns":"linkerd-multicluster","nodeName":"","pod":"gw-1"}"#
        );
        assert_eq!(
            default_context_token(|_| Some("a\"b".into())),
            r#"{"ns":"a\"b","nodeName":"a\"b","pod":"a\"b"}"#
        );
    }
}
