//! `[policy]`: where Linkerd's policy controller is, and how the gateway holds each caller to
//! the target pod's own inbound policy. Keys named after linkerd2-proxy's
//! `LINKERD2_PROXY_POLICY_SVC_*` variables. Absent, no pod policy is enforced. It needs
//! `[discovery]`: the pod and namespace of each endpoint come from the Destination API.
//! Parsed as one more method of the [`Parser`]; nothing here dials.

use super::Parser;
use super::discovery::{is_loopback, split_host_port};
use std::time::Duration;
use toml::{Table, Value};

const KEYS: &[&str] = &[
    "policy_addr",
    "policy_name",
    "enforce",
    "unknown",
    "initial_timeout",
];

/// `[policy]`: the target pod's inbound policy, enforced for the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `host:port` of the policy controller as written (a name is resolved at each connect).
    pub policy_addr: String,
    /// The controller's identity: SNI and the SAN its leaf must carry. `None` only for a
    /// loopback `policy_addr`, and then the stream is plaintext.
    pub policy_name: Option<String>,
    /// Whose identity the pod's policy is applied to; only the caller's for now.
    pub enforce: Enforce,
    /// What a request gets when the pod's policy is not known.
    pub unknown: Unknown,
    /// How long a request waits for a pod's first policy before `unknown` decides.
    pub initial_timeout: Duration,
}

/// `enforce`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Enforce {
    /// The caller's identity and address, as if it had reached the pod directly.
    #[default]
    Caller,
}

/// `unknown`: the controller unreachable, or silent past `initial_timeout`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unknown {
    /// Refused as the pod's proxy refuses under its `deny` default.
    #[default]
    Deny,
    /// Forwarded unchecked (the pod's own proxy still checks the gateway's identity).
    Allow,
}

impl Policy {
    /// One line for `crossgate check`.
    pub fn describe(&self) -> String {
        let how = match &self.policy_name {
            Some(name) => format!("over mTLS to {name}"),
            None => "plaintext (loopback)".to_string(),
        };
        let unknown = match self.unknown {
            Unknown::Deny => "deny",
            Unknown::Allow => "allow",
        };
        format!(
            "policy: each caller held to the target pod's inbound policy from {} ({how}); \
             unknown after {}: {unknown}",
            self.policy_addr,
            humantime::format_duration(self.initial_timeout)
        )
    }
}

impl Parser<'_> {
    /// `[policy]`; `None` when absent or wrong. `discovery` says whether `[discovery]` names
    /// a Destination API, which the policy needs.
    pub(super) fn policy(&mut self, v: Option<&Value>, discovery: bool) -> Option<Policy> {
        let t: &Table = self.section(v, "policy")?;
        self.known(t, "policy", KEYS);
        let before = self.errors.len();
        if !discovery {
            self.error(
                "policy",
                "needs [discovery] with a destination_addr: the pod and namespace of each \
                 endpoint, which name its policy, come from the Destination API",
            );
        }
        let addr = self.string(t, "policy_addr", "policy.policy_addr");
        let mut needs_name = false;
        match &addr {
            None if t.get("policy_addr").is_none() => self.error(
                "policy.policy_addr",
                "missing (host:port of the policy controller, e.g. \
                 linkerd-policy.linkerd.svc.cluster.local.:8090)",
            ),
            None => {}
            Some(a) => match split_host_port(a) {
                Ok((host, _)) => needs_name = !is_loopback(host),
                Err(e) => self.error("policy.policy_addr", format!("{a:?}: {e}")),
            },
        }
        let name = self.string(t, "policy_name", "policy.policy_name");
        match &name {
            Some(n) if !crate::names::is_dns_name(n) => self.error(
                "policy.policy_name",
                format!("{n:?} is not a DNS-like identity"),
            ),
            None if t.get("policy_name").is_none() && needs_name => self.error(
                "policy.policy_name",
                "missing (the controller's identity; only a loopback policy_addr may go \
                 without TLS)",
            ),
            _ => {}
        }
        let enforce = match self.string(t, "enforce", "policy.enforce").as_deref() {
            None | Some("caller") => Enforce::Caller,
            Some(other) => {
                self.error(
                    "policy.enforce",
                    format!("{other:?}: expected \"caller\" (the only mode for now)"),
                );
                Enforce::Caller
            }
        };
        let unknown = match self.string(t, "unknown", "policy.unknown").as_deref() {
            None | Some("deny") => Unknown::Deny,
            Some("allow") => Unknown::Allow,
            Some(other) => {
                self.error(
                    "policy.unknown",
                    format!("{other:?}: expected \"deny\" or \"allow\""),
                );
                Unknown::Deny
            }
        };
        let initial_timeout = self
            .duration(t, "initial_timeout", "policy.initial_timeout")
            .unwrap_or(Duration::from_secs(3));
        if self.errors.len() > before {
            return None;
        }
        Some(Policy {
            policy_addr: addr?,
            policy_name: name,
            enforce,
            unknown,
            initial_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Overrides};

    fn parse(extra: &str) -> Result<Config, Vec<String>> {
        let dir = std::env::temp_dir();
        for f in ["cg-policy-ca.crt", "cg-policy-tls.crt", "cg-policy-tls.key"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let text = format!(
            "{extra}\n[identity]\ntrust_anchors = \"cg-policy-ca.crt\"\n\
             certificate = \"cg-policy-tls.crt\"\nkey = \"cg-policy-tls.key\"\n"
        );
        Config::parse(&text, "t.toml", &dir, &Overrides::default()).map_err(|e| e.0)
    }

    const DISCOVERY: &str = "[discovery]\ndestination_addr = \"127.0.0.1:8086\"\n";

    #[test]
    fn absent_defaults_and_every_key() {
        assert_eq!(parse(DISCOVERY).unwrap().policy, None);
        let c = parse(&format!(
            "{DISCOVERY}[policy]\npolicy_addr = \"127.0.0.1:8090\"\n"
        ))
        .unwrap();
        let p = c.policy.unwrap();
        assert_eq!(
            (p.policy_addr.as_str(), p.policy_name, p.enforce, p.unknown),
            ("127.0.0.1:8090", None, Enforce::Caller, Unknown::Deny)
        );
        assert_eq!(p.initial_timeout, Duration::from_secs(3));
        let name = "linkerd-destination.linkerd.serviceaccount.identity.linkerd.cluster.local";
        let full = format!(
            "{DISCOVERY}[policy]\npolicy_addr = \"linkerd-policy.linkerd.svc.cluster.local.:8090\"\n\
             policy_name = \"{name}\"\nenforce = \"caller\"\nunknown = \"allow\"\n\
             initial_timeout = \"500ms\"\n"
        );
        let p = parse(&full).unwrap().policy.unwrap();
        assert_eq!(p.policy_name.as_deref(), Some(name));
        assert_eq!(
            (p.unknown, p.initial_timeout),
            (Unknown::Allow, Duration::from_millis(500))
        );
        assert_eq!(
            p.describe(),
            format!(
                "policy: each caller held to the target pod's inbound policy from \
                 linkerd-policy.linkerd.svc.cluster.local.:8090 (over mTLS to {name}); \
                 unknown after 500ms: allow"
            )
        );
    }

    #[test]
    fn problems_each_named() {
        let errors = parse(
            "[policy]\npolicy_addr = \"policy.linkerd:8090\"\nenforce = \"gateway\"\n\
             unknown = \"maybe\"\ninitial_timeout = \"soon\"\nextra = 1\n",
        )
        .unwrap_err();
        let want = [
            "t.toml: policy.extra: unknown key",
            "t.toml: policy: needs [discovery] with a destination_addr",
            "t.toml: policy.policy_name: missing (the controller's identity",
            "t.toml: policy.enforce: \"gateway\": expected \"caller\"",
            "t.toml: policy.unknown: \"maybe\": expected \"deny\" or \"allow\"",
            "t.toml: policy.initial_timeout: bad duration \"soon\"",
        ];
        assert_eq!(errors.len(), want.len(), "{errors:#?}");
        for (e, w) in errors.iter().zip(want) {
            assert!(e.starts_with(w), "{e}\n  expected {w}");
        }
        let errors = parse(&format!("{DISCOVERY}[policy]\npolicy_name = \"a b\"\n")).unwrap_err();
        assert!(
            errors[0].starts_with("t.toml: policy.policy_addr: missing"),
            "{errors:?}"
        );
        assert!(errors[1].contains("policy.policy_name: \"a b\" is not a DNS-like identity"));
    }
}
