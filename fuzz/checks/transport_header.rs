//! Bytes a peer sends after the handshake: the transport header decoder and routing must never
//! panic, and anything decoded must re-encode to the same header.

use crossgate::route::Routes;
use crossgate::transport_header::decode;
use std::collections::HashMap;

/// One input, as libFuzzer hands it to the target (and `tests/fuzz_known.rs` replays it).
pub fn check(data: &[u8]) {
    if let Ok(Some((header, n))) = decode(data) {
        assert!(n <= data.len());
        let again = header.encode();
        assert_eq!(decode(&again), Ok(Some((header.clone(), again.len()))));
        if let Some(name) = &header.name {
            let routes = Routes::new("cluster.local", HashMap::new());
            let _ = routes.route(name, header.port);
            let _ = routes.route_authority(name, header.port);
        }
    }
}
