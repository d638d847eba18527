//! The suite's guard against panics it would not see: a panic in crossgate's code on a task
//! nobody joins (as a connection task is) is counted by `support::watch_src_panics` and fails
//! `support::assert_no_src_panic`, which every gateway helper calls when it stops. Alone in its
//! test binary: the count is per process.

mod support;

#[tokio::test]
async fn a_panic_in_src_on_a_detached_task_fails_the_guard() {
    support::watch_src_panics();
    support::assert_no_src_panic();
    // `LeafSpec::identity` panics (in src/certs) on a name that is not an identity; the task
    // is detached, as the gateway's connection tasks are: tokio only prints the panic.
    let detached = tokio::spawn(async {
        let _ = crossgate::certs::LeafSpec::identity("not an identity");
    });
    while !detached.is_finished() {
        tokio::task::yield_now().await;
    }
    let guard = std::panic::catch_unwind(support::assert_no_src_panic);
    assert!(guard.is_err(), "a panic in src/ went unnoticed");
}
