//! Forwarding once a connection is routed and authorized: opaque TCP ([`tcp`]) and HTTP
//! ([`http`], with Linkerd's header rules in [`headers`] and pooled clients in [`upstream`]).

pub mod headers;
pub mod http;
pub mod tcp;
pub mod upstream;
