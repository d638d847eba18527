//! Name syntax, shared by the transport header, routing, authorization patterns, identities
//! and the configuration: what a DNS name, an IP literal and an identity look like, and the
//! one normal form (lower-case, no trailing dot) names are compared in. Pure; no lookups.

/// True when `name` is a syntactically valid DNS name (a trailing dot is allowed): labels of
/// 1 to 63 letters, digits, `-` and `_`, not starting or ending with `-`, 253 bytes at most.
/// One pass over the bytes: it runs on every connection's target.
pub fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    // The length of the label so far, and its last byte.
    let (mut len, mut last) = (0usize, b'.');
    for &b in name {
        if b == b'.' {
            if len == 0 || last == b'-' {
                return false;
            }
            len = 0;
        } else {
            let ok = b.is_ascii_alphanumeric() || b == b'_' || (b == b'-' && len > 0);
            len += 1;
            if !ok || len > 63 {
                return false;
            }
        }
        last = b;
    }
    len > 0 && last != b'-'
}

/// True when `name` is an IPv4 or IPv6 address, bracketed or not.
pub fn is_ip_literal(name: &str) -> bool {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    // An address has only these bytes; a name with any other is not parsed.
    bare.bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':')
        && bare.parse::<std::net::IpAddr>().is_ok()
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

    /// The rule as first written (a split per label), against the one-pass form.
    fn by_labels(name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name);
        !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    }

    #[test]
    fn one_pass_agrees_with_the_split_per_label() {
        // Every string of up to four bytes over an alphabet that has each case in it.
        let alphabet = [b'a', b'Z', b'0', b'-', b'_', b'.', b' ', 0xc3];
        let mut names = vec![String::new()];
        for len in 1..=4u32 {
            for mut i in 0..alphabet.len().pow(len) {
                let mut bytes = Vec::new();
                for _ in 0..len {
                    bytes.push(alphabet[i % alphabet.len()]);
                    i /= alphabet.len();
                }
                names.push(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
        let long = "x".repeat(63);
        names.extend([
            format!("{long}.a"),
            format!("{long}x.a"),
            format!("a.{long}"),
            format!("a.{long}x"),
            "a.".repeat(126) + "a",
            "a.".repeat(127),
            "a.".repeat(127) + "a",
            "web.ns.svc.cluster.local".into(),
            "web.ns.svc.cluster.local.".into(),
            "web.ns.svc.cluster.local..".into(),
        ]);
        for name in &names {
            assert_eq!(is_dns_name(name), by_labels(name), "{name:?}");
        }
    }

    #[test]
    fn ip_literals() {
        for ip in [
            "10.0.0.1",
            "::1",
            "[::1]",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "FE80::A",
        ] {
            assert!(is_ip_literal(ip), "{ip}");
        }
        assert!(!is_ip_literal("a.b.svc.cluster.local"));
        assert!(!is_ip_literal("cafe.dead"));
        assert!(!is_ip_literal("fe80::1%eth0"));
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
