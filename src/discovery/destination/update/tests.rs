//! Decoding and applying updates, without sockets. The `WeightedAddr`s are shaped as Linkerd's
//! destination controller sends them (labels `namespace`, `pod`, `serviceaccount`, ...; a DNS
//! identity for meshed pods; `opaque_transport` 4143 for opaque ports).
use super::*;
use api::protocol_hint::{H2, Opaque, OpaqueTransport, Protocol};
use api::tls_identity::{DnsLikeIdentity, Strategy, UriLikeIdentity};

const POD_ID: &str = "podinfo.test.serviceaccount.identity.linkerd.cluster.local";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn weighted(addr: &str) -> api::WeightedAddr {
    api::WeightedAddr {
        addr: Some(sa(addr).into()),
        weight: 10_000,
        ..Default::default()
    }
}

fn dns(name: &str) -> DnsLikeIdentity {
    DnsLikeIdentity { name: name.into() }
}

fn with_identity(strategy: Strategy, server_name: Option<&str>) -> Endpoint {
    let mut w = weighted("10.0.0.1:9898");
    w.tls_identity = Some(api::TlsIdentity {
        strategy: Some(strategy),
        server_name: server_name.map(dns),
    });
    endpoint(w, &HashMap::new()).unwrap()
}

fn hinted(protocol: Option<Protocol>, inbound_port: Option<u32>) -> Endpoint {
    let mut w = weighted("10.0.0.1:9898");
    w.protocol_hint = Some(api::ProtocolHint {
        protocol,
        opaque_transport: inbound_port.map(|inbound_port| OpaqueTransport { inbound_port }),
    });
    endpoint(w, &HashMap::new()).unwrap()
}

fn add(addrs: &[&str]) -> Change {
    Change::Add(addrs.iter().map(|a| Endpoint::plain(sa(a))).collect())
}

fn addrs(set: &Set) -> Vec<SocketAddr> {
    match set.answer() {
        Some(Answer::Endpoints(eps)) => eps.iter().map(|e| e.addr).collect(),
        other => panic!("expected endpoints, got {other:?}"),
    }
}

#[test]
fn dns_identity_is_id_and_sni() {
    let e = with_identity(Strategy::DnsLikeIdentity(dns(POD_ID)), None);
    let id = e.identity.unwrap();
    assert_eq!((&*id.id, &*id.server_name), (POD_ID, POD_ID));
    // A server_name, when given, is the SNI.
    let e = with_identity(Strategy::DnsLikeIdentity(dns(POD_ID)), Some("sni.example"));
    assert_eq!(&*e.identity.unwrap().server_name, "sni.example");
    // Not a DNS name: no TLS.
    let e = with_identity(Strategy::DnsLikeIdentity(dns("bad name")), None);
    assert_eq!(e.identity, None);
}

#[test]
fn uri_identity_needs_a_server_name() {
    let uri = "spiffe://cluster.local/ns/test/sa/podinfo";
    let strategy = || Strategy::UriLikeIdentity(UriLikeIdentity { uri: uri.into() });
    let e = with_identity(strategy(), Some(POD_ID));
    let id = e.identity.unwrap();
    assert_eq!((&*id.id, &*id.server_name), (uri, POD_ID));
    assert_eq!(with_identity(strategy(), None).identity, None);
    assert_eq!(with_identity(strategy(), Some("bad name")).identity, None);
    let odd = Strategy::UriLikeIdentity(UriLikeIdentity {
        uri: "http://x y".into(),
    });
    assert_eq!(with_identity(odd, Some(POD_ID)).identity, None);
    // No strategy at all: no TLS.
    let mut w = weighted("10.0.0.1:1");
    w.tls_identity = Some(api::TlsIdentity::default());
    assert_eq!(endpoint(w, &HashMap::new()).unwrap().identity, None);
}

#[test]
fn protocol_hints() {
    assert_eq!(hinted(None, None).hint, ProtocolHint::Unknown);
    assert_eq!(
        hinted(Some(Protocol::H2(H2 {})), None).hint,
        ProtocolHint::Http2
    );
    assert_eq!(
        hinted(Some(Protocol::Opaque(Opaque {})), None).hint,
        ProtocolHint::Opaque
    );
    assert_eq!(
        endpoint(weighted("10.0.0.1:1"), &HashMap::new())
            .unwrap()
            .hint,
        ProtocolHint::Unknown
    );
}

#[test]
fn opaque_transport_port_bounds() {
    for (port, want) in [
        (0, None),
        (1, Some(1)),
        (4143, Some(4143)),
        (65534, Some(65534)),
        (65535, None),
        (70_000, None),
    ] {
        assert_eq!(hinted(None, Some(port)).opaque_transport, want, "{port}");
    }
}

#[test]
fn authority_override_parsed_or_ignored() {
    let mut w = weighted("10.0.0.1:4143");
    w.authority_override = Some(api::AuthorityOverride {
        authority_override: "podinfo.test.svc.cluster.local:9898".into(),
    });
    let e = endpoint(w.clone(), &HashMap::new()).unwrap();
    assert_eq!(
        e.authority_override.unwrap().as_str(),
        "podinfo.test.svc.cluster.local:9898"
    );
    w.authority_override = Some(api::AuthorityOverride {
        authority_override: "bad authority/".into(),
    });
    assert_eq!(
        endpoint(w, &HashMap::new()).unwrap().authority_override,
        None
    );
}

#[test]
fn labels_merged_sorted_and_bounded() {
    let map = |kv: &[(&str, &str)]| -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let set = map(&[
        ("namespace", "test"),
        ("service", "podinfo"),
        ("pod", "from-set"),
    ]);
    let long = "é".repeat(40); // 80 bytes
    let mut w = weighted("10.0.0.1:9898");
    w.metric_labels = map(&[
        ("pod", "podinfo-5d9c7b-x2x"),
        ("serviceaccount", "podinfo"),
        ("bad-key", "x"),
        ("__reserved", "x"),
        ("9lives", "x"),
        ("zone", &long),
    ]);
    let e = endpoint(w, &set).unwrap();
    let got: Vec<(&str, &str)> = e.labels.iter().map(|(k, v)| (&**k, &**v)).collect();
    assert_eq!(
        got,
        [
            ("namespace", "test"),
            ("pod", "podinfo-5d9c7b-x2x"),
            ("service", "podinfo"),
            ("serviceaccount", "podinfo"),
            ("zone", &"é".repeat(32)[..]),
        ]
    );
    let many: HashMap<String, String> = (0..40).map(|i| (format!("k{i:02}"), "v".into())).collect();
    let e = endpoint(weighted("10.0.0.1:1"), &many).unwrap();
    assert_eq!(e.labels.len(), MAX_LABELS);
    assert_eq!(&*e.labels[0].0, "k00");
}

#[test]
fn addresses_v4_v6_and_bad_ones() {
    assert_eq!(
        socket_addr(sa("10.1.2.3:80").into()),
        Some(sa("10.1.2.3:80"))
    );
    assert_eq!(
        socket_addr(sa("[fd00::1]:8080").into()),
        Some(sa("[fd00::1]:8080"))
    );
    let mut bad: TcpAddress = sa("10.1.2.3:80").into();
    bad.port = 65_536 + 80; // must not wrap to 80
    assert_eq!(socket_addr(bad), None);
    bad.port = 0;
    assert_eq!(socket_addr(bad), None);
    assert_eq!(socket_addr(TcpAddress { ip: None, port: 80 }), None);
    // An Add whose every address is bad, or an empty update, changes nothing.
    let mut w = weighted("10.0.0.1:1");
    w.addr = None;
    let up = |u| api::Update { update: Some(u) };
    let none = up(api::update::Update::Add(api::WeightedAddrSet {
        addrs: vec![w],
        metric_labels: HashMap::new(),
    }));
    assert_eq!(decode(none), None);
    assert_eq!(decode(api::Update { update: None }), None);
    let remove = up(api::update::Update::Remove(api::AddrSet {
        addrs: vec![sa("10.0.0.1:1").into(), TcpAddress::default()],
    }));
    assert_eq!(decode(remove), Some(Change::Remove(vec![sa("10.0.0.1:1")])));
    let gone = up(api::update::Update::NoEndpoints(api::NoEndpoints {
        exists: false,
    }));
    assert_eq!(decode(gone), Some(Change::NoEndpoints { exists: false }));
}

#[test]
fn add_replace_remove() {
    let mut set = Set::default();
    assert_eq!(set.answer(), None, "nothing said yet");
    set.stream_started();
    assert!(apply(&mut set, add(&["10.0.0.2:80", "10.0.0.1:80"])));
    assert_eq!(addrs(&set), [sa("10.0.0.1:80"), sa("10.0.0.2:80")]);
    // Same address again: replaced, not doubled.
    let mut meshed = Endpoint::plain(sa("10.0.0.1:80"));
    meshed.hint = ProtocolHint::Http2;
    assert!(apply(&mut set, Change::Add(vec![meshed.clone()])));
    match set.answer() {
        Some(Answer::Endpoints(eps)) => assert_eq!(eps[0], meshed),
        other => panic!("{other:?}"),
    }
    assert_eq!(addrs(&set).len(), 2);
    assert!(apply(
        &mut set,
        Change::Remove(vec![sa("10.0.0.1:80"), sa("10.9.9.9:1")])
    ));
    assert_eq!(addrs(&set), [sa("10.0.0.2:80")]);
}

#[test]
fn no_endpoints() {
    let mut set = Set::default();
    apply(&mut set, add(&["10.0.0.1:80"]));
    // The service exists with nothing behind it: an empty set, not a fallback.
    apply(&mut set, Change::NoEndpoints { exists: true });
    assert_eq!(addrs(&set), Vec::<SocketAddr>::new());
    apply(&mut set, Change::NoEndpoints { exists: false });
    assert_eq!(set.answer(), Some(Answer::NoSuchService));
    // It appears later.
    apply(&mut set, add(&["10.0.0.3:80"]));
    assert_eq!(addrs(&set), [sa("10.0.0.3:80")]);
    set.does_not_exist();
    assert_eq!(set.answer(), Some(Answer::NoSuchService));
}

#[test]
fn a_new_stream_replaces_the_set() {
    let mut set = Set::default();
    set.stream_started();
    apply(&mut set, add(&["10.0.0.1:80", "10.0.0.2:80"]));
    // Reconnect: the old set serves until the new stream's first update...
    set.stream_started();
    assert_eq!(addrs(&set).len(), 2);
    // ...a Remove cannot open a stream...
    assert!(!apply(&mut set, Change::Remove(vec![sa("10.0.0.1:80")])));
    assert_eq!(addrs(&set).len(), 2);
    // ...and the first Add replaces, the next ones merge.
    apply(&mut set, add(&["10.0.0.3:80"]));
    assert_eq!(addrs(&set), [sa("10.0.0.3:80")]);
    apply(&mut set, add(&["10.0.0.4:80"]));
    assert_eq!(addrs(&set), [sa("10.0.0.3:80"), sa("10.0.0.4:80")]);
    // NoEndpoints opening a stream replaces too.
    set.stream_started();
    apply(&mut set, Change::NoEndpoints { exists: true });
    apply(&mut set, add(&["10.0.0.5:80"]));
    assert_eq!(addrs(&set), [sa("10.0.0.5:80")]);
}

#[test]
fn endpoints_per_target_bounded() {
    let mut set = Set::default();
    let many: Vec<Endpoint> = (0..MAX_ENDPOINTS as u32 + 5)
        .map(|i| {
            Endpoint::plain(SocketAddr::from((
                std::net::Ipv4Addr::from(0x0a00_0000 + i),
                80,
            )))
        })
        .collect();
    apply(&mut set, Change::Add(many));
    assert_eq!(addrs(&set).len(), MAX_ENDPOINTS);
    assert_eq!(Change::NoEndpoints { exists: true }.op(), "no_endpoints");
}

#[test]
fn policy_workload_from_the_namespace_and_pod_labels() {
    let map = |kv: &[(&str, &str)]| -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let with = |set: &[(&str, &str)], own: &[(&str, &str)]| {
        let mut w = weighted("10.0.0.1:9898");
        w.metric_labels = map(own);
        endpoint(w, &map(set)).unwrap().workload
    };
    let ns = [("namespace", "test"), ("service", "podinfo")];
    assert_eq!(
        with(&ns, &[("pod", "podinfo-5d9c7b-x2x")]).as_deref(),
        Some(r#"{"ns":"test","pod":"podinfo-5d9c7b-x2x"}"#)
    );
    // Not cut as metric label values are (64 bytes), nor lost among many labels.
    let long = format!("{}.{}", "p".repeat(63), "q".repeat(40));
    let mut crowded: Vec<(String, String)> =
        (0..40).map(|i| (format!("a{i:02}"), "v".into())).collect();
    crowded.push(("pod".into(), long.clone()));
    let crowded: Vec<(&str, &str)> = crowded
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let got = with(&ns, &crowded).unwrap();
    assert_eq!(&*got, format!(r#"{{"ns":"test","pod":"{long}"}}"#));
    // The address's own namespace label will do too.
    assert!(with(&[], &[("namespace", "test"), ("pod", "p-0")]).is_some());
    let label = "p".repeat(63);
    let longest = format!("{label}.{label}.{label}.{}", "p".repeat(61)); // 253 bytes
    assert!(with(&ns, &[("pod", &longest)]).is_some());
    let too_long = format!("{longest}p");
    type Labels<'a> = &'a [(&'a str, &'a str)];
    let none: [(Labels, Labels); 6] = [
        (&ns, &[]),                                    // no pod
        (&[], &[("pod", "p-0")]),                      // no namespace
        (&ns, &[("pod", "P-0")]),                      // not a Kubernetes name
        (&ns, &[("pod", "p\",\"ns\":\"kube-system")]), // would break the JSON
        (&[("namespace", "a.b")], &[("pod", "p-0")]),  // a namespace is one label
        (&ns, &[("pod", &too_long)]),                  // 254 bytes
    ];
    for (set, own) in none {
        assert_eq!(with(set, own), None, "{set:?} {own:?}");
    }
    // Static and DNS endpoints have none.
    assert_eq!(Endpoint::plain(sa("10.0.0.1:80")).workload, None);
}
