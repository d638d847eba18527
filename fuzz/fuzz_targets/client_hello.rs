//! Bytes a client sends first on the passthrough port: the ClientHello parser must never
//! panic, must answer the same for every prefix it has already refused or completed (a
//! longer read never un-refuses), and what it finds must plan without a panic.
#![no_main]

use crossgate::client_hello::{Hello, parse};
use crossgate::route::Routes;
use crossgate::sni::SniRules;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    // A complete hello stays complete, a refusal stays a refusal, as more bytes arrive.
    for cut in [data.len() / 2, data.len().saturating_sub(1)] {
        match parse(&data[..cut]) {
            Ok(Hello::Complete { sni }) => assert_eq!(whole, Ok(Hello::Complete { sni })),
            Err(e) if e != crossgate::client_hello::HelloError::TooLarge => {
                assert_eq!(whole, Err(e))
            }
            _ => {}
        }
    }
    if let Ok(Hello::Complete { sni: Some(sni) }) = &whole {
        let routes = Routes::new("cluster.local", HashMap::new()).with_sni(SniRules {
            default_port: Some(443),
            passthrough_allow: vec!["*".parse().unwrap()],
        });
        let _ = routes.route_sni(sni);
        let _ = crossgate::sni::host_of(sni);
    }
});
