//! Forwarding once a connection is routed and authorized: opaque TCP ([`tcp`]) and HTTP
//! ([`http`], with Linkerd's header rules in [`headers`], pooled clients in [`upstream`],
//! response metrics in [`observe`], the gateway's own answers in [`answer`], and `Upgrade` and
//! `CONNECT` tunnels in [`tunnel`]).

pub mod answer;
pub mod headers;
pub mod http;
pub mod observe;
pub mod tcp;
pub mod tunnel;
pub mod upstream;
