//! Forwarding once a connection is planned: opaque TCP ([`tcp`]) and HTTP ([`http`], with
//! Linkerd's header rules in [`headers`], response metrics and access lines in [`observe`], the
//! gateway's own answers in [`answer`], and `Upgrade` and `CONNECT` tunnels in [`tunnel`]).
//! Upstream connections come from [`crate::upstream`].

pub mod answer;
mod forward;
pub mod headers;
pub mod http;
pub mod observe;
mod routed;
pub mod tcp;
pub mod tunnel;
