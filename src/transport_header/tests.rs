//! Decoding the captured Linkerd bytes, every refusal, framing as bytes arrive in pieces.
use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn design_example_round_trips() {
    let bytes = hex(
        "7472616e73706f72742e6c35642e696f2f76310d0a0d0a 0000001c 08c81f \
         1213666f6f2e6261722e6578616d706c652e636f6d 1a021200",
    );
    let h = TransportHeader {
        port: 4040,
        name: Some("foo.bar.example.com".into()),
        protocol: Some(SessionProtocol::Http2),
    };
    assert_eq!(h.encode(), bytes);
    assert_eq!(decode(&bytes).unwrap(), Some((h, bytes.len())));
}

#[test]
fn http1_encoding() {
    let h = TransportHeader {
        port: 9898,
        name: Some("a.b.svc.cluster.local".into()),
        protocol: Some(SessionProtocol::Http1),
    };
    assert!(h.encode().ends_with(&hex("1a020a00")));
}

#[test]
fn captured_vectors_decode() {
    let cases = [
        (
            include_str!("../../tests/vectors/h2-hint.hex"),
            9898,
            "podinfo.test.svc.cluster.local",
            Some(SessionProtocol::Http2),
        ),
        (
            include_str!("../../tests/vectors/h1-nohint.hex"),
            9898,
            "podinfo-h1.test.svc.cluster.local",
            Some(SessionProtocol::Http1),
        ),
        (
            include_str!("../../tests/vectors/opaque.hex"),
            9899,
            "tcpecho.test.svc.cluster.local",
            None,
        ),
        (
            include_str!("../../tests/vectors/bad-domain.hex"),
            9898,
            "podinfo.test.example.com",
            Some(SessionProtocol::Http2),
        ),
    ];
    for (text, port, name, protocol) in cases {
        let bytes = hex(text);
        let (h, n) = decode(&bytes).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(h.port, port);
        assert_eq!(h.name.as_deref(), Some(name));
        assert_eq!(h.protocol, protocol);
        // Re-encoding gives the captured bytes exactly.
        assert_eq!(h.encode(), bytes);
    }
}

#[test]
fn trailing_application_bytes_are_left() {
    let mut bytes = TransportHeader {
        port: 80,
        name: Some("x.y.svc.cluster.local".into()),
        protocol: None,
    }
    .encode();
    let n = bytes.len();
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
    assert_eq!(decode(&bytes).unwrap().unwrap().1, n);
}

#[test]
fn every_prefix_needs_more() {
    let bytes = TransportHeader {
        port: 80,
        name: Some("x.y.svc.cluster.local".into()),
        protocol: Some(SessionProtocol::Http1),
    }
    .encode();
    for i in 0..bytes.len() {
        assert_eq!(decode(&bytes[..i]), Ok(None), "prefix {i}");
    }
}

#[test]
fn refusals() {
    let mut long = PREFACE.to_vec();
    long.extend_from_slice(&((MAX_LEN as u32) + 1).to_be_bytes());
    assert_eq!(decode(&long), Err(HeaderError::TooLong(MAX_LEN + 1)));
    assert_eq!(decode(b"GET / HTTP/1.1\r\n"), Err(HeaderError::BadPreface));
    let port0 = hex("0000 0000");
    let mut b = PREFACE.to_vec();
    b.extend_from_slice(&port0);
    assert!(matches!(decode(&b), Err(HeaderError::BadPort(0))));
    for (port, name) in [(70000, "a.b"), (-1, "a.b"), (80, "bad name!"), (80, "-a.b")] {
        let msg = proto::Header {
            port,
            name: name.into(),
            session_protocol: None,
        };
        let err = decode_message(&msg.encode_to_vec()).unwrap_err();
        assert!(
            matches!(err, HeaderError::BadPort(_) | HeaderError::BadName(_)),
            "{err:?}"
        );
    }
    assert!(matches!(
        decode_message(&[0xff, 0xff]),
        Err(HeaderError::Malformed(_))
    ));
}

/// Arbitrary bytes never panic the decoder, and whatever it accepts re-encodes to a header
/// that decodes to the same value (a deterministic stand-in for the fuzz target).
#[test]
fn arbitrary_input_never_panics() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let valid = TransportHeader {
        port: 9898,
        name: Some("podinfo.test.svc.cluster.local".into()),
        protocol: Some(SessionProtocol::Http2),
    }
    .encode();
    for _ in 0..50_000 {
        // Half the inputs mutate a valid header, half are noise after a valid preface.
        let mut input = if next() % 2 == 0 {
            valid.clone()
        } else {
            let mut v = PREFACE.to_vec();
            let len = (next() % 80) as usize;
            v.extend_from_slice(&(len as u32).to_be_bytes());
            v.extend((0..len).map(|_| next() as u8));
            v
        };
        for _ in 0..(next() % 4) {
            let i = (next() as usize) % input.len();
            input[i] = next() as u8;
        }
        input.truncate(input.len() - (next() % 3) as usize);
        if let Ok(Some((h, n))) = decode(&input) {
            assert!(n <= input.len());
            let again = h.encode();
            assert_eq!(decode(&again), Ok(Some((h, again.len()))));
        }
    }
}

#[tokio::test]
async fn read_split_and_truncated() {
    let bytes = TransportHeader {
        port: 9898,
        name: Some("podinfo.test.svc.cluster.local".into()),
        protocol: Some(SessionProtocol::Http2),
    }
    .encode();
    let (mut client, mut server) = tokio::io::duplex(64);
    let b2 = bytes.clone();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for chunk in b2.chunks(3) {
            client.write_all(chunk).await.unwrap();
            tokio::task::yield_now().await;
        }
        client.write_all(b"rest").await.unwrap();
        client
    });
    let (h, n) = read(&mut server, Duration::from_secs(5)).await.unwrap();
    assert_eq!(h.port, 9898);
    assert_eq!(n, bytes.len());
    let _client = writer.await.unwrap();
    let mut rest = [0u8; 4];
    server.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"rest");

    let (mut client, mut server) = tokio::io::duplex(64);
    {
        use tokio::io::AsyncWriteExt;
        client.write_all(&bytes[..30]).await.unwrap();
        drop(client);
    }
    assert_eq!(
        read(&mut server, Duration::from_secs(5)).await,
        Err(HeaderError::Truncated)
    );
}

#[tokio::test(start_paused = true)]
async fn read_times_out() {
    let (_client, mut server) = tokio::io::duplex(64);
    let err = read(&mut server, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(err, HeaderError::Timeout(Duration::from_secs(10)));
}
