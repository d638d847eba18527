//! The file watch: the files `[identity]` names, loaded again when they change or on SIGHUP,
//! and the leaf's end of life logged ([`Lifetime`]).

use super::{CredentialStore, load, unix_now};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use std::path::Path;
use std::sync::Arc;

/// What the watch listens to and reports besides a new certificate.
#[derive(Clone, Default)]
pub struct WatchHooks {
    /// Notified (on SIGHUP): read the files again now, changed or not.
    pub reload_now: Arc<tokio::sync::Notify>,
    /// Called with each reload's result: true when the new leaf is in force.
    pub reloaded: Option<Arc<dyn Fn(bool) + Send + Sync>>,
}

/// Watches the files `[identity]` names (anchors, certificate, key) and, when any changes or
/// `hooks.reload_now` is notified, loads them again: the new leaf goes into `store` and
/// `on_change` gets the new anchors (to rebuild the TLS configurations). Files that do not
/// load, or a leaf naming another identity, are logged, counted as an error once per set of
/// file stamps, and the current credentials kept. Each tick also checks the leaf's lifetime
/// ([`Lifetime`]). Runs until dropped.
pub async fn watch(
    store: Arc<CredentialStore>,
    files: crate::config::Identity,
    provider: Arc<CryptoProvider>,
    hooks: WatchHooks,
    on_change: impl Fn(&CredentialStore, Arc<RootCertStore>) + Send,
) {
    let stamps = {
        let files = files.clone();
        move || {
            let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            [
                stamp(&files.trust_anchors),
                stamp(&files.certificate),
                stamp(&files.key),
            ]
        }
    };
    let counted = |ok: bool| {
        if let Some(f) = &hooks.reloaded {
            f(ok)
        }
    };
    let mut last = stamps();
    // The stamps of files that did not load: not counted again until they change.
    let mut failed = None;
    let mut lifetime = Lifetime::default();
    let mut tick = tokio::time::interval(files.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            _ = hooks.reload_now.notified() => true,
        };
        lifetime.check(&store, unix_now());
        let Ok(now) = tokio::task::spawn_blocking(stamps.clone()).await else {
            continue;
        };
        if !forced && (now == last || failed == Some(now)) {
            continue;
        }
        let (f, p) = (files.clone(), provider.clone());
        let loaded = tokio::task::spawn_blocking(move || load(&f, &p)).await;
        match loaded {
            Ok(Ok((_, creds))) if creds.identity != store.identity() => {
                tracing::warn!(
                    found = %creds.identity,
                    expected = store.identity(),
                    "rotated certificate names another identity; keeping the current one"
                );
                counted(false);
                failed = Some(now);
            }
            Ok(Ok((roots, creds))) => {
                tracing::info!(
                    not_after = %super::utc(creds.not_after),
                    anchors = roots.len(),
                    forced,
                    "identity reloaded"
                );
                store.replace(creds);
                on_change(&store, roots);
                counted(true);
                lifetime.check(&store, unix_now());
                last = now;
                failed = None;
            }
            Ok(Err(errors)) => {
                // Files may be mid-rotation (cert written, key not yet): tried again when
                // their stamps change.
                tracing::warn!(errors = %errors.join("; "), "rotated identity files do not load; keeping the current certificate");
                counted(false);
                failed = Some(now);
            }
            Err(e) => tracing::warn!(error = %e, "reload task failed"),
        }
    }
}

/// Logs, once per certificate, that the leaf in force has less than 10 % of its lifetime
/// left (`warn`) or has expired (`error`; `/ready` answers 503 meanwhile).
#[derive(Default)]
pub struct Lifetime {
    warned: Option<i64>,
    expired: Option<i64>,
}

impl Lifetime {
    /// Checks the store's leaf at `now` (Unix seconds); true when it logged.
    pub fn check(&mut self, store: &CredentialStore, now: i64) -> bool {
        if !store.has_leaf() {
            // Waiting for the first leaf from the identity controller: nothing has expired.
            return false;
        }
        let (not_before, not_after) = (store.not_before(), store.not_after());
        let not_after_utc = crate::identity::utc(not_after);
        if now >= not_after {
            if self.expired == Some(not_after) {
                return false;
            }
            self.expired = Some(not_after);
            tracing::error!(
                not_after = %not_after_utc,
                "the gateway's own certificate has expired: /ready answers 503 until it is replaced"
            );
            return true;
        }
        let life = (not_after - not_before).max(1);
        if (not_after - now) * 10 >= life || self.warned == Some(not_after) {
            return false;
        }
        self.warned = Some(not_after);
        tracing::warn!(
            not_after = %not_after_utc,
            left_secs = not_after - now,
            "the gateway's own certificate has less than 10 % of its lifetime left"
        );
        true
    }
}
