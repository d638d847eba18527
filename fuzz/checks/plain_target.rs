//! Plain HTTP mode's per-request target: `request_authority` over arbitrary header bytes
//! (`l5d-dst-canonical`, `Host`) and a URI authority that parses (as hyper hands it over), then
//! `request_target` and `check_request`. A target is routable (never an IP literal, port never
//! 0, in the cluster domain or exactly a static key), the chosen authority is the first present
//! text in precedence order, and a request checked through is neither a loop nor from the
//! gateway's own identity nor outside the policy.

use super::common::*;
use arbitrary::{Result, Unstructured};
use crossgate::plan::{check_request, request_authority, request_target};
use crossgate::refusal::Refusal;

/// An authority-ish value: a known name with a port suffix, or arbitrary bytes.
fn value<'a>(u: &mut Unstructured<'a>) -> Result<Option<Vec<u8>>> {
    Ok(match u.int_in_range(0..=3)? {
        0 => None,
        1 => Some(u.arbitrary::<&[u8]>()?.to_vec()),
        _ => {
            let name = pick(u, NAMES)?;
            let port = *u.choose(&[
                "", ":80", ":443", ":8080", ":0", ":", ":65536", ":x", ":+80",
            ])?;
            Some(format!("{name}{port}").into_bytes())
        }
    })
}

/// `l5d-dst-canonical`, the URI's authority, `Host`, the client identity, whether the request
/// has a `Forwarded` element by the gateway itself.
type Case = (
    Option<Vec<u8>>,
    Option<String>,
    Option<Vec<u8>>,
    &'static str,
    bool,
);

fn case(u: &mut Unstructured) -> Result<Case> {
    let dst = value(u)?;
    let uri = value(u)?
        .and_then(|b| http::uri::Authority::try_from(b.as_slice()).ok())
        .map(|a| a.as_str().to_string());
    let host = value(u)?;
    let client = *u.choose(identities())?;
    Ok((dst, uri, host, client, u.arbitrary()?))
}

fn text(v: &Option<Vec<u8>>) -> Option<&str> {
    v.as_deref().and_then(|b| std::str::from_utf8(b).ok())
}

/// One input, as libFuzzer hands it to the target (and `tests/fuzz_known.rs` replays it).
pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(open) = u.arbitrary::<bool>() else {
        return;
    };
    let rules = &both_rules()[usize::from(open)];
    let Ok((dst, uri, host, client, forwarded_by_self)) = case(&mut u) else {
        return;
    };
    let expected = text(&dst).or(uri.as_deref()).or_else(|| text(&host));
    let authority = request_authority(dst.as_deref(), uri.as_deref(), host.as_deref());
    let authority = match (expected, authority) {
        (Some(e), Ok(a)) => {
            assert_eq!(e, a);
            a
        }
        (None, Err(Refusal::BadGatewayDomain)) => return,
        (e, a) => panic!("expected {e:?}, got {a:?}"),
    };
    let Ok(target) = request_target(authority, rules) else {
        return;
    };
    assert_routable(&target);
    if !authority.contains(':') {
        assert_eq!(target.port, 80, "{authority:?}");
    }
    let checked = check_request(client, &target, forwarded_by_self, rules);
    if checked.is_ok() {
        assert!(!forwarded_by_self);
        assert!(!is_own(client), "own identity let through to {target}");
        assert!(allowed(rules, client, &target), "{client} -> {target}");
    }
}
