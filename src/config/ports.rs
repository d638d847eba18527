//! The ports of `[server]` (`listen`, `admin`, `metrics`) must be bindable together: two on
//! one address, or a port on a wildcard address (`0.0.0.0`, `[::]`) and the same port on an
//! address it covers, would fail at bind time with "Address already in use", after the
//! configuration was accepted. Found here instead, naming both keys.

use super::Parser;
use std::net::{IpAddr, SocketAddr};

impl Parser<'_> {
    /// Reports each pair of `(key, address)` that cannot both be bound.
    pub(super) fn distinct_ports(&mut self, ports: &[(&str, SocketAddr)]) {
        for (i, (a_key, a)) in ports.iter().enumerate() {
            for (b_key, b) in &ports[i + 1..] {
                if !overlaps(*a, *b) {
                    continue;
                }
                let msg = if a == b {
                    format!(
                        "both are {a}: two listeners cannot share one address; give each its own \
                         port (e.g. listen 4143, admin 4191, metrics 9191)"
                    )
                } else {
                    format!(
                        "{a} and {b} share port {}, and {} covers the other address; give \
                         each its own port (e.g. listen 4143, admin 4191, metrics 9191)",
                        a.port(),
                        if a.ip().is_unspecified() {
                            a.ip()
                        } else {
                            b.ip()
                        }
                    )
                };
                self.error(&format!("{a_key} and {b_key}"), msg);
            }
        }
    }
}

/// True when binding both `a` and `b` fails on Linux: the same port (not 0, which picks a free
/// one) on the same address, or on an address the other's wildcard covers. `[::]` covers IPv4
/// too (dual-stack sockets, the default).
pub(super) fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || covers(a.ip(), b.ip()) || covers(b.ip(), a.ip()))
}

fn covers(wildcard: IpAddr, other: IpAddr) -> bool {
    match wildcard {
        IpAddr::V6(w) if w.is_unspecified() => true,
        IpAddr::V4(w) if w.is_unspecified() => match other {
            IpAddr::V4(_) => true,
            IpAddr::V6(o) => o.is_unspecified() || o.to_ipv4_mapped().is_some(),
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::overlaps;

    fn o(a: &str, b: &str) -> bool {
        overlaps(a.parse().unwrap(), b.parse().unwrap())
    }

    #[test]
    fn ports_that_cannot_both_be_bound() {
        assert!(o("127.0.0.1:4191", "127.0.0.1:4191"));
        assert!(o("0.0.0.0:4191", "127.0.0.1:4191"));
        assert!(o("10.0.0.5:4191", "0.0.0.0:4191"));
        assert!(o("[::]:4191", "127.0.0.1:4191"));
        assert!(o("0.0.0.0:4191", "[::]:4191"));
        assert!(o("[::1]:9191", "[::1]:9191"));
        assert!(!o("127.0.0.1:4191", "127.0.0.1:4143"));
        assert!(!o("127.0.0.1:4191", "10.0.0.5:4191"));
        assert!(
            !o("0.0.0.0:4191", "[::1]:4191"),
            "a v4 wildcard leaves IPv6 free"
        );
        assert!(
            !o("127.0.0.1:0", "127.0.0.1:0"),
            "port 0 picks a free port each"
        );
    }
}
