//! The sections of SNI routing: `[sni]` (the port of a bare-name SNI, certificates chosen by
//! SNI) and `[passthrough]` (the port that splices TLS without terminating it, and the names
//! it may splice to), parsed by more methods of the one [`Parser`].

use super::Parser;
use crate::authz::Pattern;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// `[sni]`: terminated SNI routing on the gateway port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sni {
    /// The port of a target an SNI names by its bare name; `None`: only Istio's form
    /// (`outbound_.<port>_._.<name>`) names a target.
    pub default_port: Option<u16>,
    /// `[[sni.certificate]]`: certificates shown to clients whose SNI they name.
    pub certificates: Vec<SniCertificate>,
}

/// One `[[sni.certificate]]`: a leaf (with its chain) and key, shown when the SNI's host
/// matches one of `names`; reloaded when the files change, like the identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SniCertificate {
    pub names: Vec<Pattern>,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// `[passthrough]`: a port that reads the ClientHello's SNI and splices the raw stream to
/// the target, without terminating TLS. Absent: no such port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passthrough {
    pub listen: SocketAddr,
    /// Target names the port may splice to (`*`, `*.suffix`, exact), besides routing.
    pub allow: Vec<Pattern>,
    /// Open passthrough connections; more wait in the backlog.
    pub max_connections: usize,
}

impl Parser<'_> {
    pub(super) fn sni(&mut self, v: Option<&Value>, base: &Path) -> Sni {
        let empty = Table::new();
        let t = self.section(v, "sni").unwrap_or(&empty);
        self.known(t, "sni", &["default_port", "certificate"]);
        let default_port = self
            .count(t, "default_port", "sni.default_port", 65535)
            .map(|p| p as u16);
        let mut certificates = Vec::new();
        match t.get("certificate") {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let full = format!("sni.certificate[{i}]");
                    let Value::Table(c) = item else {
                        self.error(&full, "expected a table");
                        continue;
                    };
                    if let Some(cert) = self.sni_certificate(c, &full, base) {
                        certificates.push(cert);
                    }
                }
            }
            Some(_) => self.error("sni.certificate", "expected [[sni.certificate]] tables"),
        }
        Sni {
            default_port,
            certificates,
        }
    }

    fn sni_certificate(&mut self, t: &Table, full: &str, base: &Path) -> Option<SniCertificate> {
        self.known(t, full, &["names", "certificate", "key"]);
        let names_key = format!("{full}.names");
        let names = self.patterns(t.get("names"), &names_key, crate::authz::service_pattern);
        if names.is_empty() {
            self.error(&names_key, "missing (e.g. [\"*.ns.svc.cluster.local\"])");
        }
        let certificate = self.file(t, "certificate", full, base);
        let key = self.file(t, "key", full, base);
        Some(SniCertificate {
            names,
            certificate: certificate?,
            key: key?,
        })
    }

    /// A PEM file path relative to `base`, which must exist.
    fn file(&mut self, t: &Table, key: &str, prefix: &str, base: &Path) -> Option<PathBuf> {
        let full = format!("{prefix}.{key}");
        let Some(s) = self.string(t, key, &full) else {
            if t.get(key).is_none() {
                self.error(&full, "missing (a PEM file path)");
            }
            return None;
        };
        let path = base.join(&s);
        if let Err(e) = std::fs::metadata(&path) {
            self.error(&full, format!("cannot read {}: {e}", path.display()));
            return None;
        }
        Some(path)
    }

    pub(super) fn passthrough(
        &mut self,
        v: Option<&Value>,
        max_connections: usize,
    ) -> Option<Passthrough> {
        let t = self.section(v, "passthrough")?;
        self.known(t, "passthrough", &["listen", "allow", "max_connections"]);
        let Some(listen) = self.string(t, "listen", "passthrough.listen") else {
            if t.get("listen").is_none() {
                self.error("passthrough.listen", "missing (e.g. \"0.0.0.0:15443\")");
            }
            return None;
        };
        let listen = self.addr(Some(listen), "passthrough.listen", ([0, 0, 0, 0], 0).into());
        let allow = self.patterns(
            t.get("allow"),
            "passthrough.allow",
            crate::authz::service_pattern,
        );
        if allow.is_empty() {
            self.error(
                "passthrough.allow",
                "missing: the names the port may splice to (e.g. [\"*.ns.svc.cluster.local\"])",
            );
        }
        let max_connections = self
            .count(
                t,
                "max_connections",
                "passthrough.max_connections",
                10_000_000,
            )
            .map_or(max_connections, |n| n as usize);
        Some(Passthrough {
            listen,
            allow,
            max_connections,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Overrides};

    fn parse(extra: &str) -> Result<Config, Vec<String>> {
        let dir = std::env::temp_dir();
        for f in ["cg-sni-ca.crt", "cg-sni-tls.crt", "cg-sni-tls.key"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let text = format!(
            "[identity]\ntrust_anchors = \"cg-sni-ca.crt\"\ncertificate = \"cg-sni-tls.crt\"\nkey = \"cg-sni-tls.key\"\n{extra}"
        );
        Config::parse(&text, "t.toml", &dir, &Overrides::default()).map_err(|e| e.0)
    }

    #[test]
    fn sections() {
        let c = parse("").unwrap();
        assert_eq!(c.sni, Default::default());
        assert!(c.passthrough.is_none());
        let c = parse(
            "[sni]\ndefault_port = 443\n[[sni.certificate]]\nnames = [\"*.ns.svc.cluster.local\"]\n\
             certificate = \"cg-sni-tls.crt\"\nkey = \"cg-sni-tls.key\"\n\
             [passthrough]\nlisten = \"127.0.0.1:15443\"\nallow = [\"*.ns.svc.cluster.local\"]\n",
        )
        .unwrap();
        assert_eq!(c.sni.default_port, Some(443));
        assert_eq!(c.sni.certificates.len(), 1);
        let p = c.passthrough.unwrap();
        assert_eq!(p.listen.port(), 15443);
        assert_eq!(p.allow.len(), 1);
        assert_eq!(p.max_connections, 20_000);
    }

    #[test]
    fn every_problem_named() {
        let errors = parse(
            "[sni]\ndefault_port = 0\ncolour = 1\n[[sni.certificate]]\nnames = [\"a.b:80\"]\n\
             certificate = \"missing.crt\"\n[passthrough]\nlisten = \"nowhere\"\n",
        )
        .unwrap_err();
        let text = errors.join("\n");
        for key in [
            "sni.default_port",
            "sni.colour",
            "sni.certificate[0].names",
            "sni.certificate[0].certificate",
            "sni.certificate[0].key",
            "passthrough.listen",
            "passthrough.allow",
        ] {
            assert!(
                text.contains(&format!("t.toml: {key}:")),
                "{key} in\n{text}"
            );
        }
    }
}
