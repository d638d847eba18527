//! linkerd2-proxy's `local_rate_limit/tests.rs`, and when a refused request may come again.

use super::*;

// local_rate_limit/tests.rs `check_rate_limits`: total 35, per identity 5, overrides
// client-3: 10, client-4: 15; five rounds one second apart.
#[test]
fn rate_limit_buckets() {
    let epoch = Instant::now();
    let rl = LocalRateLimit::new(
        None,
        epoch,
        Some(35),
        Some(5),
        vec![(10, vec!["client-3".into()]), (15, vec!["client-4".into()])],
    );
    let refused = |kind, rps| Err::<(), _>((kind, rps));
    for round in 0..5u64 {
        let now = epoch + Duration::from_secs(round);
        let check = |id| rl.check(id, now).map_err(|(k, r, _)| (k, r));
        for _ in 1..=5 {
            assert!(check("client-1").is_ok());
            assert!(check("client-3").is_ok());
            assert!(check("client-4").is_ok());
        }
        assert_eq!(check("client-1"), refused(LimitKind::PerIdentity, 5));
        for _ in 1..=5 {
            assert!(check("client-3").is_ok());
            assert!(check("client-4").is_ok());
        }
        assert_eq!(check("client-3"), refused(LimitKind::Override, 10));
        for _ in 1..=5 {
            assert!(check("client-4").is_ok());
        }
        assert_eq!(check("client-4"), refused(LimitKind::Override, 15));
        for _ in 1..=2 {
            assert!(check("client-2").is_ok());
        }
        assert_eq!(check("client-2"), refused(LimitKind::Total, 35));
    }
}

// A refused request says when the bucket takes one again: at 4 rps, a cell every 250 ms.
#[test]
fn retry_after_is_when_a_cell_is_free() {
    let epoch = Instant::now();
    let rl = LocalRateLimit::new(None, epoch, None, Some(4), vec![]);
    for _ in 0..4 {
        assert!(rl.check("a", epoch).is_ok());
    }
    let (_, _, wait) = rl.check("a", epoch).unwrap_err();
    assert_eq!(wait, Duration::from_millis(250));
    assert!(rl.check("a", epoch + Duration::from_millis(250)).is_ok());
}
