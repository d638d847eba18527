//! Label sets of the exported families, with the exact names and values Linkerd's dashboards
//! read (DESIGN.md part 1). Values a client could invent only reach a label after validation.

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use std::sync::Arc;

/// Labels of one TCP leg.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum TcpLabels {
    /// The client leg on the mTLS port:
    /// `direction="inbound",peer="src",tls="true",client_id,route` (`header`, `sni`, `http`).
    Inbound {
        client_id: Arc<str>,
        route: &'static str,
    },
    /// The client leg on the passthrough port, whose TLS the gateway does not terminate (as
    /// Linkerd labels a passthrough): `direction="inbound",peer="src",tls="opaque",sni,
    /// route="passthrough"`; `sni` is the routed target's name, or `other` until it is known.
    Passthrough { sni: Arc<str> },
    /// The upstream leg: to the endpoint `target_addr` of the target `authority`, over mTLS
    /// when the endpoint has a `server_id`, with the controller's labels as `dst_<key>`.
    Outbound {
        authority: Arc<str>,
        target_addr: Arc<str>,
        server_id: Option<Arc<str>>,
        dst: Arc<[(Arc<str>, Arc<str>)]>,
    },
}

impl EncodeLabelSet for TcpLabels {
    fn encode(&self, enc: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        match self {
            TcpLabels::Inbound { client_id, route } => [
                ("direction", "inbound"),
                ("peer", "src"),
                ("tls", "true"),
                ("client_id", client_id),
                ("route", route),
            ]
            .encode(enc),
            TcpLabels::Passthrough { sni } => [
                ("direction", "inbound"),
                ("peer", "src"),
                ("tls", "opaque"),
                ("sni", sni),
                ("route", "passthrough"),
            ]
            .encode(enc),
            TcpLabels::Outbound {
                authority,
                target_addr,
                server_id,
                dst,
            } => {
                [("direction", "outbound"), ("peer", "dst")].encode(enc)?;
                match server_id {
                    Some(id) => [("tls", "true"), ("server_id", &**id)].encode(enc)?,
                    None => [
                        ("tls", "no_identity"),
                        ("no_tls_reason", "not_provided_by_service_discovery"),
                    ]
                    .encode(enc)?,
                }
                [("authority", &**authority), ("target_addr", &**target_addr)].encode(enc)?;
                for (k, v) in dst.iter() {
                    [(format!("dst_{k}"), &**v)].encode(enc)?;
                }
                Ok(())
            }
        }
    }
}

/// `classification="success"` or `"failure"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Classification(pub bool);

impl EncodeLabelSet for Classification {
    fn encode(&self, enc: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let v = if self.0 { "success" } else { "failure" };
        [("classification", v)].encode(enc)
    }
}

/// `client_id` and `authority`, for authorization and request families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct PeerLabels {
    pub client_id: String,
    pub authority: String,
}

/// The labels of the authorization families: a decision of the gateway's own rules
/// (`client_id`, `authority`), or of a target pod's policy (those, then Linkerd's `srv_*`,
/// `route_*` for a request, `authz_*` when an authorization admitted the caller).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum AuthzLabels {
    Rules(PeerLabels),
    Policy(Arc<PeerLabels>, crate::policy::Labels),
}

impl EncodeLabelSet for AuthzLabels {
    fn encode(&self, enc: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        match self {
            AuthzLabels::Rules(peer) => peer.encode(enc),
            AuthzLabels::Policy(peer, labels) => {
                peer.encode(enc)?;
                server_labels(labels, enc)?;
                if let Some(route) = &labels.route {
                    meta_labels("route", route, enc)?;
                }
                if let Some(authz) = &labels.authz {
                    meta_labels("authz", authz, enc)?;
                }
                Ok(())
            }
        }
    }
}

/// Linkerd's `srv_group`, `srv_kind`, `srv_name`, `srv_port`.
pub(crate) fn server_labels(
    labels: &crate::policy::Labels,
    enc: &mut LabelSetEncoder,
) -> Result<(), std::fmt::Error> {
    meta_labels("srv", &labels.server, enc)?;
    [("srv_port", labels.port.to_string())].encode(enc)
}

/// `<prefix>_group`, `<prefix>_kind`, `<prefix>_name` of a policy resource.
pub(crate) fn meta_labels(
    prefix: &str,
    meta: &crate::policy::Meta,
    enc: &mut LabelSetEncoder,
) -> Result<(), std::fmt::Error> {
    [
        (format!("{prefix}_group"), &*meta.group),
        (format!("{prefix}_kind"), &*meta.kind),
        (format!("{prefix}_name"), &*meta.name),
    ]
    .encode(enc)
}

/// The labels of the HTTP request families: `direction="inbound",tls="true"` plus the peer.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RequestLabels(pub Arc<PeerLabels>);

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, enc: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        [("direction", "inbound"), ("tls", "true")].encode(enc)?;
        self.0.encode(enc)
    }
}

/// The labels of `response_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ResponseLabels {
    pub peer: RequestLabels,
    pub status_code: u16,
    pub success: bool,
}

impl EncodeLabelSet for ResponseLabels {
    fn encode(&self, enc: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.peer.encode(enc)?;
        let code = self.status_code.to_string();
        [("status_code", code.as_str())].encode(enc)?;
        Classification(self.success).encode(enc)
    }
}

/// `error="..."`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: &'static str,
}

/// `reason="..."`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Labels of `inbound_tcp_transport_header_connections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct HeaderLabels {
    pub session_protocol: Option<&'static str>,
    pub target_port: u16,
    pub target_name: String,
    pub client_id: String,
}

impl EncodeLabelSet for HeaderLabels {
    fn encode(&self, enc: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        if let Some(p) = self.session_protocol {
            [("session_protocol", p)].encode(enc)?;
        }
        let port = self.target_port.to_string();
        [
            ("target_port", port.as_str()),
            ("target_name", &self.target_name),
            ("client_id", &self.client_id),
        ]
        .encode(enc)
    }
}

/// `result="ok"` or `"error"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// Labels of `crossgate_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct VersionLabels {
    pub version: &'static str,
}
