//! Forwarding once a connection is routed and authorized: opaque TCP ([`tcp`]) and HTTP.

pub mod http;
pub mod tcp;
