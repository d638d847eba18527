//! The runtime the binary picks: `threads` when set, else one worker per core the process may
//! use; one means the current-thread scheduler. Pinned to one core with `taskset`, as a pod
//! limited to one CPU is, the default is the current-thread scheduler; the start log says which.

mod http_support;
mod support;

use http_support::BinaryGateway;

/// The `runtime` line of the gateway's log.
fn runtime_line(gw: &BinaryGateway) -> String {
    let log = gw.stderr();
    log.lines()
        .find(|l| l.contains(" runtime") && l.contains("scheduler"))
        .unwrap_or_else(|| panic!("no runtime line in\n{log}"))
        .to_string()
}

#[tokio::test]
async fn one_core_by_default_runs_the_current_thread_scheduler() {
    let mut gw = BinaryGateway::start_under(&["taskset", "-c", "0"], "", "", "info", false).await;
    let line = runtime_line(&gw);
    assert!(line.contains("threads=1"), "{line}");
    assert!(line.contains("cores available"), "{line}");
    assert!(line.contains("current-thread"), "{line}");
    gw.signal("TERM").await;
    assert!(gw.wait_exit(15).await.success());
}

#[tokio::test]
async fn threads_set_runs_that_many_workers() {
    let mut gw =
        BinaryGateway::start_under(&["taskset", "-c", "0"], "threads = 3", "", "info", false).await;
    let line = runtime_line(&gw);
    assert!(line.contains("threads=3"), "{line}");
    assert!(line.contains("server.threads"), "{line}");
    assert!(line.contains("multi-thread"), "{line}");
    gw.signal("TERM").await;
    assert!(gw.wait_exit(15).await.success());
}
