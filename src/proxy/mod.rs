//! Forwarding once a connection is routed and authorized: opaque TCP ([`tcp`]) and HTTP
//! ([`http`], with Linkerd's header rules in [`headers`], pooled clients in [`upstream`] and
//! response metrics in [`observe`]).

pub mod headers;
pub mod http;
pub mod observe;
pub mod tcp;
pub mod upstream;
