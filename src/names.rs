//! Name syntax, shared by the transport header, routing, authorization patterns, identities
//! and the configuration: what a DNS name, an IP literal and an identity look like, and the
//! one normal form (lower-case, no trailing dot) names are compared in. Pure; no lookups.

/// True when `name` is a syntactically valid DNS name (a trailing dot is allowed).
pub fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// True when `name` is an IPv4 or IPv6 address, bracketed or not.
pub fn is_ip_literal(name: &str) -> bool {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    bare.parse::<std::net::IpAddr>().is_ok()
}

/// True when `s` has the shape of an identity: a DNS name or a `spiffe://` URI.
pub fn is_identity_syntax(s: &str) -> bool {
    is_dns_name(s)
        || s.strip_prefix("spiffe://")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
}

/// Lower-cases and drops one trailing dot.
pub fn normalize(name: &str) -> String {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        for ok in ["a", "a.b", "a-b.c_d.", "x".repeat(63).as_str()] {
            assert!(is_dns_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a-.b",
            "a b",
            "a/b",
            "x".repeat(64).as_str(),
        ] {
            assert!(!is_dns_name(bad), "{bad}");
        }
        assert!(!is_dns_name(&"a.".repeat(130)));
    }

    #[test]
    fn ip_literals() {
        for ip in ["10.0.0.1", "::1", "[::1]", "2001:db8::1"] {
            assert!(is_ip_literal(ip), "{ip}");
        }
        assert!(!is_ip_literal("a.b.svc.cluster.local"));
        assert!(!is_ip_literal("10.0.0.1:80"));
    }

    #[test]
    fn identities_and_normal_form() {
        assert!(is_identity_syntax(
            "a.b.serviceaccount.identity.linkerd.cluster.local"
        ));
        assert!(is_identity_syntax("spiffe://td/ns/a/sa/b"));
        assert!(!is_identity_syntax("spiffe://"));
        assert!(!is_identity_syntax("spiffe://a b"));
        assert_eq!(
            normalize("Web.Demo.SVC.cluster.local."),
            "web.demo.svc.cluster.local"
        );
    }
}
