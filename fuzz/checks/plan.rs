//! The connection plan: a client (identity, ALPN, SNI) and maybe a transport header, under
//! rules with static routes and a policy. Whatever the input: a planned target (opaque, or
//! fixed HTTP) is routable (never an IP literal, never outside `svc.cluster.local` unless it is
//! exactly a static key, the header's port), an opaque plan or an authorized HTTP session is
//! allowed by the policy, and the gateway's own identity never gets through.

use super::common::*;
use arbitrary::{Result, Unstructured};
use crossgate::names::normalize;
use crossgate::plan::{Alpn, ClientInfo, Plan, plan, sni_route};
use crossgate::refusal::Refusal;
use crossgate::transport_header::{ALPN, SessionProtocol, TransportHeader};

fn case(u: &mut Unstructured) -> Result<(ClientInfo, Option<TransportHeader>)> {
    let id = pick(u, identities())?;
    let alpn: Option<&[u8]> = match u.int_in_range(0..=5)? {
        0 => Some(ALPN),
        1 => Some(b"h2"),
        2 => Some(b"http/1.1"),
        3 => None,
        _ => Some(u.arbitrary::<&[u8]>()?),
    };
    let header = if u.arbitrary()? {
        let name = pick(u, NAMES)?;
        Some(TransportHeader {
            port: if u.ratio(3, 4)? {
                *u.choose(&[80, 443, 8080, 9898])?
            } else {
                u.arbitrary()?
            },
            name: (!name.is_empty()).then(|| name.to_string()),
            protocol: *u.choose(&[
                None,
                Some(SessionProtocol::Http1),
                Some(SessionProtocol::Http2),
            ])?,
        })
    } else {
        None
    };
    let client = ClientInfo {
        id: id.into(),
        addr: "192.0.2.1:40000".parse().unwrap(),
        alpn: Alpn::from_negotiated(alpn),
        sni: u.arbitrary::<Option<&str>>()?.map(Into::into),
    };
    Ok((client, header))
}

/// One input, as libFuzzer hands it to the target (and `tests/fuzz_known.rs` replays it).
pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(open) = u.arbitrary::<bool>() else {
        return;
    };
    let rules = &both_rules()[usize::from(open)];
    let Ok((client, header)) = case(&mut u) else {
        return;
    };
    let result = plan(&client, header.as_ref(), rules);
    let fixed = match &result {
        Ok(Plan::Opaque(t)) => Some((t, true)),
        Ok(Plan::Http { target, .. }) => match target.fixed() {
            Some(fixed) => Some(fixed),
            None => {
                // Plain mode: only without the transport ALPN; each request is judged later.
                assert!(matches!(client.alpn, Alpn::H2 | Alpn::Http1 | Alpn::None));
                None
            }
        },
        Err(_) => None,
    };
    // A target the SNI names (not the gateway's own identity) decides the connection.
    let by_sni = client
        .sni
        .as_deref()
        .and_then(|sni| sni_route(sni, rules))
        .and_then(std::result::Result::ok);
    if let Some((target, authorized)) = fixed {
        assert_routable(target);
        if by_sni.as_ref() != Some(target) {
            let h = header
                .as_ref()
                .expect("a fixed target comes from a header or the SNI");
            assert_eq!(client.alpn, Alpn::Transport);
            assert_eq!(target.port, h.port);
            assert_eq!(*target.name, normalize(h.name.as_deref().unwrap()));
        }
        if authorized {
            assert!(!is_own(&client.id), "own identity let through: {result:?}");
            assert!(
                allowed(rules, &client.id, target),
                "{client:?} -> {result:?}"
            );
        }
    }
    if matches!(client.alpn, Alpn::Other) || (client.alpn == Alpn::Transport && header.is_none()) {
        assert_eq!(result, Err(Refusal::UnknownProtocol));
    }
}
