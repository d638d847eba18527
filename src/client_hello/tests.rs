//! ClientHellos as a real TLS client writes them (rustls), whole, cut at every byte, and
//! re-fragmented across records; and the bytes that are refused.

use super::*;
use std::sync::Arc;

/// The first flight of a rustls client asking for `server_name`, offering `alpn`.
fn client_hello(server_name: &str, alpn: &[&[u8]]) -> Vec<u8> {
    let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls_pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// The same handshake message in records of at most `size` bytes each.
fn refragment(hello: &[u8], size: usize) -> Vec<u8> {
    let len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
    let message = &hello[5..5 + len];
    let mut out = Vec::new();
    for chunk in message.chunks(size) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

const ISTIO: &str = "outbound_.8080_._.bb.mc-demo.svc.cluster.local";

#[test]
fn a_real_hello_whole_and_cut_at_every_byte() {
    let hello = client_hello(ISTIO, &[b"istio-peer-exchange", b"h2"]);
    assert_eq!(
        parse(&hello),
        Ok(Hello::Complete {
            sni: Some(ISTIO.into())
        })
    );
    for cut in 0..hello.len() {
        assert_eq!(parse(&hello[..cut]), Ok(Hello::Partial), "cut at {cut}");
    }
    // What follows the hello (more of the client's flight) is not the parser's business.
    let mut more = hello.clone();
    more.extend_from_slice(&[23, 3, 3, 0, 1, 0]);
    assert!(matches!(parse(&more), Ok(Hello::Complete { .. })));
}

#[test]
fn a_hello_over_many_records() {
    let hello = client_hello(ISTIO, &[]);
    for size in [1, 3, 7, 100] {
        let split = refragment(&hello, size);
        assert_eq!(
            parse(&split),
            Ok(Hello::Complete {
                sni: Some(ISTIO.into())
            }),
            "records of {size}"
        );
        assert_eq!(parse(&split[..split.len() - 1]), Ok(Hello::Partial));
    }
}

#[test]
fn no_server_name() {
    // rustls sends no SNI for an IP address.
    let hello = client_hello("10.0.0.1", &[]);
    assert_eq!(parse(&hello), Ok(Hello::Complete { sni: None }));
}

#[test]
fn not_a_hello() {
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(HelloError::NotHello));
    assert_eq!(parse(b"PRI * HTTP/2.0"), Err(HelloError::NotHello));
    // A handshake record of another version, or another handshake message.
    assert_eq!(parse(&[22, 2, 0, 0, 4]), Err(HelloError::NotHello));
    assert_eq!(
        parse(&[22, 3, 1, 0, 4, 2, 0, 0, 0]),
        Err(HelloError::NotHello)
    );
    assert_eq!(parse(&[22, 3, 1, 0, 0]), Err(HelloError::Malformed));
    // A hello whose next record is not a handshake record.
    let split = refragment(&client_hello(ISTIO, &[]), 100);
    let mut bad = split[..105].to_vec();
    bad.extend_from_slice(&[23, 3, 3, 0, 1, 0]);
    assert_eq!(parse(&bad), Err(HelloError::Malformed));
}

#[test]
fn malformed_bodies() {
    let hello = client_hello(ISTIO, &[]);
    // The message claims more than the extensions it carries can hold.
    let mut truncated = hello.clone();
    let body_len = truncated.len() - 9;
    truncated.truncate(truncated.len() - 10);
    let new = (body_len - 10) as u32;
    truncated[3..5].copy_from_slice(&((new + 4) as u16).to_be_bytes());
    truncated[6..9].copy_from_slice(&new.to_be_bytes()[1..]);
    assert_eq!(parse(&truncated), Err(HelloError::Malformed));
}

#[test]
fn too_large() {
    // A hello that says it is larger than the buffer: refused at its header.
    assert_eq!(
        parse(&[22, 3, 1, 0x40, 0, 1, 0, 0x80, 0]),
        Err(HelloError::TooLarge)
    );
    // Records that never finish within the buffer.
    let mut endless = Vec::new();
    let mut first = vec![1u8, 0, 0x3f, 0xf0];
    first.resize(1000, 0);
    for chunk in [first.as_slice()]
        .into_iter()
        .chain(std::iter::repeat_n(&[0u8; 1000][..], 20))
    {
        endless.extend_from_slice(&[22, 3, 1]);
        endless.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        endless.extend_from_slice(chunk);
    }
    let cut = &endless[..MAX_HELLO];
    assert_eq!(parse(cut), Err(HelloError::TooLarge));
}

/// Real hellos with bytes flipped, cut and re-fragmented: every answer is an answer (no
/// panic), and a completed prefix completes the whole the same way.
#[test]
fn mutated_hellos_never_panic() {
    let hello = client_hello(ISTIO, &[b"h2"]);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let mut bytes = match next() % 3 {
            0 => hello.clone(),
            1 => refragment(&hello, 1 + (next() % 300) as usize),
            _ => hello[..(next() as usize % hello.len())].to_vec(),
        };
        for _ in 0..(next() % 4) {
            let at = next() as usize % bytes.len().max(1);
            if let Some(b) = bytes.get_mut(at) {
                *b = next() as u8;
            }
        }
        let whole = parse(&bytes);
        let cut = next() as usize % (bytes.len() + 1);
        if let Ok(Hello::Complete { sni }) = parse(&bytes[..cut]) {
            assert_eq!(whole, Ok(Hello::Complete { sni }));
        }
    }
}
