//! A future polled only when it may be ready: for the watchers a connection's task keeps
//! beside its protocol (an HTTP connection's idle clock and drain signal, an upstream HTTP/2
//! connection's keep-alive timer), which every wake-up of the task would otherwise poll again
//! (a timer's waker registered anew, a watch's waiter list locked), several times per request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::Sleep;

/// Polls `inner` until a poll of it could register the task's waker (the first, unless the
/// task's cooperative budget was spent), and afterwards only when `due` says it may have
/// become ready (its own cheap check: a timer's `is_elapsed`, a
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

/// A timer polled when due: once it has elapsed.
pub(crate) type DueTimer<'a> = WhenDue<Pin<&'a mut Sleep>, fn(&Pin<&'a mut Sleep>) -> bool>;

/// `sleep` as a [`WhenDue`], checked by [`Sleep::is_elapsed`].
pub(crate) fn timer(sleep: Pin<&mut Sleep>) -> DueTimer<'_> {
    WhenDue::new(sleep, |s| s.is_elapsed())
}

impl<F: Future + Unpin, D: FnMut(&F) -> bool + Unpin> Future for WhenDue<F, D> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if this.polled && !(this.due)(&this.inner) {
            return Poll::Pending;
        }
        // A poll registers only if it may proceed: with the task's budget spent, tokio's own
        // futures (a timer, a watch's `wait_for`) return pending without registering, and
        // have the task woken to try again. Then this poll does not count.
        if tokio::task::coop::has_budget_remaining() {
            this.polled = true;
        }
        Pin::new(&mut this.inner).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::WhenDue;
    use std::future::Future;
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

    #[tokio::test(start_paused = true)]
    async fn a_first_poll_without_budget_does_not_count() {
        let sleep = std::pin::pin!(tokio::time::sleep(Duration::from_secs(5)));
        let mut due = super::timer(sleep);
        // Spend the task's budget, then poll once in the same turn: the timer cannot
        // register, and that poll must not be taken for its registration.
        while tokio::task::coop::has_budget_remaining() {
            tokio::task::consume_budget().await;
        }
        std::future::poll_fn(|cx| {
            assert!(std::pin::Pin::new(&mut due).poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        let start = Instant::now();
        tokio::time::timeout(Duration::from_secs(60), due)
            .await
            .expect("the timer was never registered");
        assert!(start.elapsed() <= Duration::from_secs(5));
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
