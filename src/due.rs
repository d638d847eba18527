//! A future polled only when it may be ready: for the watchers a connection's task keeps
//! beside its protocol (an HTTP connection's idle clock and drain signal, an upstream HTTP/2
//! connection's keep-alive timer), which every wake-up of the task would otherwise poll again
//! (a timer's waker registered anew, a watch's waiter list locked), several times per request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Polls `inner` on the first poll, so that it registers the task's waker, and afterwards only
/// when `due` says it may have become ready (its own cheap check: a timer's `is_elapsed`, a
/// watch's `has_changed`). The waker registered first stays registered: a task's waker does
/// not change, so what makes `inner` ready still wakes the task.
pub(crate) struct WhenDue<F, D> {
    inner: F,
    due: D,
    polled: bool,
}

impl<F, D> WhenDue<F, D> {
    pub(crate) fn new(inner: F, due: D) -> WhenDue<F, D> {
        WhenDue {
            inner,
            due,
            polled: false,
        }
    }
}

impl<F: Future + Unpin, D: FnMut(&F) -> bool + Unpin> Future for WhenDue<F, D> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if this.polled && !(this.due)(&this.inner) {
            return Poll::Pending;
        }
        this.polled = true;
        Pin::new(&mut this.inner).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::WhenDue;
    use std::time::Duration;
    use tokio::sync::watch;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn a_timer_polled_once_still_fires() {
        let sleep = std::pin::pin!(tokio::time::sleep(Duration::from_secs(5)));
        let start = Instant::now();
        let mut polls = 0;
        let due = WhenDue::new(sleep, |s: &std::pin::Pin<&mut tokio::time::Sleep>| {
            polls += 1;
            s.is_elapsed()
        });
        // A busy neighbour wakes the task often; the timer is checked, not polled.
        let busy = async {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = due => {}
            _ = busy => unreachable!(),
        }
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert!(polls >= 100, "checked {polls} times");
    }

    #[tokio::test]
    async fn a_watch_polled_once_still_wakes_the_task() {
        let (tx, mut rx) = watch::channel(false);
        let waiter = tokio::spawn(async move {
            let probe = rx.clone();
            let wait = std::pin::pin!(rx.wait_for(|s| *s));
            WhenDue::new(wait, |_: &_| probe.has_changed().unwrap_or(true))
                .await
                .is_ok()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        tx.send(true).unwrap();
        let done = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(done.expect("the drain signal was missed").unwrap());
    }
}
